"""Time the unwrap + template + export path of `experiments.reconstruct` (`direct` onto a head mesh); one JSON line.

    python benchmarks/unwrap_export.py [--size 4096] [--threads N] [--method direct|splat]

Input: a built-in capture (procedural head, 512² render) whose image-space maps are upsampled to --size, its
head mesh and camera; the texture is --size² (the CLI's default `--uv-size`). Steps, wall seconds:

* `template_generate`: the head template's textures generated (disk cache off); `template`: what the CLI pays
  with the disk cache warm (`uhrtex.unwrap.fill`), both including the upsampling to --size².
* `uv_raster`, `visibility` (projection, grazing test, depth buffer + depth test, mask test), `sample`,
  `fill` (push-pull), `blend` (template tone match + blend): `unwrap`'s own timings (`stats["timings_s"]`),
  first call (cold UV-layout cache); `uv_raster_cached`: the layout on a second call.
* `png_encode`: uv_albedo (8-bit), uv_micronormal, uv_specular (16-bit), uv_coverage written as the CLI writes
  them (`uhrtex.export.glb.write_pngs`); `glb_encode`: `glb_bytes` (four embedded PNGs); `preview`: the relit
  512² preview (`render_preview`) and its PNG.
* `total`: the sum (template with a warm cache). `peak_rss_gb`: the process's high-water mark.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=4096)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--method", default="direct", choices=("direct", "splat"))
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    warnings.filterwarnings("ignore")
    from uhrtex import maps as M
    from uhrtex.unwrap import fill as T
    from uhrtex.unwrap import visibility as unwrap_direct
    from uhrtex.render.environments import default_lightings
    from uhrtex.captures.heads import head_asset
    from uhrtex.captures.render import render_capture
    from uhrtex.export.glb import glb_bytes, render_preview, write_pngs
    from uhrtex.unwrap.mesh import Mesh
    from uhrtex.unwrap.methods import UnwrapOptions, unwrap

    S = a.size
    cap = render_capture(3, "sky0_r000", 0, 512, texture_resolution=512)
    up = lambda x: F.interpolate(x[None], size=(S, S), mode="bilinear", align_corners=False)[0]  # noqa: E731
    maps = {k: up(cap.maps[k]) for k in M.TEXTURE.names}
    mask = (up(cap.maps["mask"]) > 0.5).float()
    mesh, cam = Mesh.from_head(head_asset(3, 16).mesh), cap.camera.scaled(S, S)
    wall = {}

    def timed(name, fn):
        t = time.perf_counter()
        out = fn()
        wall[name] = time.perf_counter() - t
        return out

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["UHRTEX_CACHE_DIR"] = "off"
        T._TEXTURES.clear()
        timed("template_generate", lambda: T.head_template(S))
        os.environ["UHRTEX_CACHE_DIR"] = str(Path(tmp) / "cache")
        T._TEXTURES.clear()
        T.head_template(S)  # fills the disk cache
        T._TEXTURES.clear()
        _, tpl = timed("template", lambda: T.head_template(S))
        unwrap_direct._LAYOUTS.clear()
        opts = UnwrapOptions(resolution=S)
        kw = {"mesh": mesh, "camera": cam} if a.method == "direct" else {"uv": cap.maps["uv"]}
        res = unwrap(maps, mask, a.method, options=opts, template=tpl, **kw)
        wall.update({k: v for k, v in res.stats["timings_s"].items() if k != a.method})
        if a.method == "direct":
            wall["uv_raster_cached"] = unwrap(maps, mask, a.method, options=opts, template=tpl,
                                              **kw).stats["timings_s"]["uv_raster"]
        out = Path(tmp) / "out"
        jobs = [(out / f"uv_{k}.png", res.textures[k], b) for k, b in (("albedo", 8), ("micronormal", 16),
                                                                        ("specular", 16))]
        timed("png_encode", lambda: write_pngs([*jobs, (out / "uv_coverage.png", res.coverage, 8)]))
        timed("glb_encode", lambda: glb_bytes(mesh, res.textures))
        timed("preview", lambda: write_pngs([(out / "preview.png", render_preview(
            mesh, res.textures, cam, default_lightings(2), 512), 8)]))
    steps = ("template", "uv_raster", "visibility", "sample", "fill", "blend", "png_encode", "glb_encode", "preview")
    wall["total"] = sum(wall.get(k, 0.0) for k in steps)
    print(json.dumps({
        "size": S, "method": a.method, "threads": torch.get_num_threads(), "coverage": round(res.stats["coverage"], 4),
        "wall_s": {k: round(v, 3) for k, v in wall.items()},
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "load_avg_1min": round(os.getloadavg()[0], 2),
    }))


if __name__ == "__main__":
    main()
