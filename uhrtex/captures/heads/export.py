"""Export a training head as OBJ (+ MTL) and PNG maps, e.g. for Blender or another renderer.

    python -m uhrtex.captures.heads.export --seed 3 --res 1024 OUT_DIR [--face-only]

Writes OUT_DIR/head0003.obj (+ .mtl, one material per ICT material: `usemtl M_Face` ...), per material
`<material>_albedo.png` (sRGB), `_micronormal.png` and `_specular.png` (linear data), all 16-bit, and asset.json
(the subject's weights and the layout version). PNGs are top-down, so UV (0, 0) of a tile is the bottom-left corner
of its image, as OBJ/Blender expect; ICT's tiles sit side by side in u (`layout.TILE_OFFSETS`), so a material's
maps are looked up at (u - offset, v). `--face-only`: the face tile alone (the unified UV layout: what a
reconstruction's textures fit), as `albedo.png`, `micronormal.png`, `specular.png`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from uhrtex.captures.heads import head_asset
from uhrtex.captures.heads.layout import TILE_OFFSETS
from uhrtex.head_model import FACE_MATERIAL, UV_LAYOUT, face_tile
from uhrtex.render.mesh import write_obj

MAPS = ("albedo", "micronormal", "specular")


def export_asset(seed: int, res: int, out_dir: str | Path, face_only: bool = False) -> dict[str, Path]:
    """Write the asset files; returns {"obj", "mtl", "meta", and per map "<material>_<map>" (or "<map>")} paths."""
    from uhrtex.common import io as uio

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    asset = head_asset(seed, res)
    name = asset.subject.id
    paths = {"obj": out / f"{name}.obj", "mtl": out / f"{name}.mtl", "meta": out / "asset.json"}
    materials = (FACE_MATERIAL,) if face_only else tuple(asset.textures)
    mtl = []
    for m in materials:
        files = {k: (k if face_only else f"{m}_{k}") for k in MAPS}
        for k, stem in files.items():
            paths[stem] = out / f"{stem}.png"
            uio.write_png(paths[stem], asset.textures[m][k].float().clamp(0, 1), bits=16)
        mtl.append(f"newmtl {m}\nKd 1 1 1\nmap_Kd {files['albedo']}.png\nnorm {files['micronormal']}.png\n"
                   f"map_Ks {files['specular']}.png\n")
    paths["mtl"].write_text("".join(mtl))
    write_obj(face_tile(asset.mesh) if face_only else asset.mesh, paths["obj"], mtl_name=name,
              materials=None if face_only else asset.mesh.materials)
    meta = {**asset.meta(), "files": {k: p.name for k, p in paths.items() if k != "meta"},
            "tile_offsets": {m: TILE_OFFSETS[m] for m in materials},
            "subject_params": {k: v for k, v in dataclasses.asdict(asset.subject).items() if k != "identity"},
            "colour": {"albedo": "sRGB", "micronormal": "tangent space (x +u, y +v, OpenGL), (n+1)/2", "specular": "linear"}}
    paths["meta"].write_text(json.dumps(meta, indent=1))
    return paths


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m uhrtex.captures.heads.export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out_dir")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--res", type=int, default=1024, help="face texture resolution (square), e.g. 1024, 4096, 8192")
    p.add_argument("--face-only", action="store_true", help="the face tile only (the unified UV layout)")
    args = p.parse_args(argv)
    try:
        paths = export_asset(args.seed, args.res, args.out_dir, args.face_only)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{UV_LAYOUT} head seed {args.seed}: " + ", ".join(str(v) for v in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
