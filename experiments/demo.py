"""`make demo`: the main job on a real photo with the model that ships with uhrtex, no training.

    python -m experiments.demo [--out outputs/demo] [--portrait astronaut|PATH] [extra flags of experiments.reconstruct]

Reconstructs scikit-image's bundled `astronaut()` (a real portrait, offline) with the shipped weights
(`uhrtex/weights/`, MODEL_CARD.md) and prints where report.png, the maps and head.glb are. `make demo-train` is the
training demo instead (`+exp=demo`: render captures, train the three stages for minutes, reconstruct the same photo).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from experiments import reconstruct


def astronaut_png(folder: Path) -> Path:
    """skimage's astronaut as a PNG file in `folder` (the CLI reads files)."""
    from skimage.data import astronaut

    from uhrtex.common import io as uio

    path = folder / "astronaut.png"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        uio.write_png(path, torch.from_numpy(astronaut()).permute(2, 0, 1) / 255.0)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m experiments.demo", description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="outputs/demo")
    ap.add_argument("--portrait", default="astronaut", help="astronaut (skimage's) or a path to your photo")
    args, extra = ap.parse_known_args(argv)
    out = Path(args.out)
    portrait = astronaut_png(out.parent) if args.portrait == "astronaut" else Path(args.portrait)
    t0 = time.perf_counter()
    code = reconstruct.main([str(portrait), "--out", str(out), *extra])
    if code == 0:
        import json

        blob = json.loads((out / "manifest.json").read_text())["albedo_off_skin_blob"]
        print(f"demo: {time.perf_counter() - t0:.1f} s. Maps: {out}/albedo.png micronormal.png specular.png; "
              f"UV textures: {out}/uv_*.png; Blender: {out}/head.glb; overview: {out}/report.png; "
              f"largest non-skin region of the albedo: {blob:.2%} of the face")
    return code


if __name__ == "__main__":
    sys.exit(main())
