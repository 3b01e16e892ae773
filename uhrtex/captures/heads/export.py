"""Export a procedural head as OBJ (+ MTL) and PNG maps, e.g. for Blender or another renderer.

    python -m uhrtex.captures.heads.export --seed 3 --res 1024 OUT_DIR

Writes OUT_DIR/head0003.obj (+ .mtl), albedo.png (sRGB), micronormal.png and specular.png (linear
data), all 16-bit, and asset.json (the subject's parameters and the layout version). PNGs are
top-down, so UV (0, 0) is the bottom-left corner of each image, as OBJ/Blender expect.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from uhrtex.captures.heads import UV_LAYOUT, head_asset
from uhrtex.captures.heads.mesh import write_obj

MAP_FILES = {"albedo": ("albedo.png", 16), "micronormal": ("micronormal.png", 16), "specular": ("specular.png", 16)}


def export_asset(seed: int, res: int, out_dir: str | Path, grid=None) -> dict[str, Path]:
    """Write the asset files; returns {"obj", "mtl", "albedo", "micronormal", "specular", "meta"} paths."""
    from uhrtex.common import io as uio

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    asset = head_asset(seed, res) if grid is None else head_asset(seed, res, grid=grid)
    name = asset.subject.id
    paths = {"obj": out / f"{name}.obj", "mtl": out / f"{name}.mtl", "meta": out / "asset.json"}
    for k, (fname, bits) in MAP_FILES.items():
        paths[k] = out / fname
        uio.write_png(paths[k], asset.textures[k].float().clamp(0, 1), bits=bits)
    paths["mtl"].write_text(f"newmtl {name}\nKd 1 1 1\nmap_Kd {MAP_FILES['albedo'][0]}\n"
                            f"norm {MAP_FILES['micronormal'][0]}\nmap_Ks {MAP_FILES['specular'][0]}\n")
    write_obj(asset.mesh, paths["obj"], mtl_name=name)
    meta = {**asset.meta(), "files": {k: p.name for k, p in paths.items() if k != "meta"},
            "subject_params": {k: v for k, v in dataclasses.asdict(asset.subject).items() if k != "extra"},
            "colour": {"albedo": "sRGB", "micronormal": "tangent space (x +u, y +v, OpenGL), (n+1)/2", "specular": "linear"}}
    paths["meta"].write_text(json.dumps(meta, indent=1))
    return paths


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m uhrtex.captures.heads.export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out_dir")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--res", type=int, default=1024, help="texture resolution (square), e.g. 1024, 4096, 8192")
    args = p.parse_args(argv)
    try:
        paths = export_asset(args.seed, args.res, args.out_dir)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{UV_LAYOUT} head seed {args.seed}: " + ", ".join(str(v) for v in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
