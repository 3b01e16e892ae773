"""Reconstruct Albedo / Micronormal / Specular from one portrait; optionally unwrap them onto a head mesh.

    python -m experiments.reconstruct PORTRAIT --out DIR [--ckpt DIR|BUNDLE]     # default: the shipped model
        [--no-crop] [--geometry auto|landmarks|predictor] [--mesh head.obj --camera cam.json]
        [--unwrap optimize|direct|splat|none] [--patch-batch N] [--exr] [--uv-size N]
        [--device auto|cpu|cuda] [--precision auto|bf16|fp32]

By default the face is found (468 landmarks, `uhrtex.face`), the portrait is cropped to a square around it and
resized to the model's input, the maps are masked to the face, and the landmarks' mesh in the unified UV layout
drives the unwrap. Writes into DIR (see docs/reconstruction.md): albedo.png (sRGB 8-bit), micronormal.png,
specular.png (16-bit), mask.png; with --exr the same as EXR (albedo linear); when unwrapping uv_albedo.png,
uv_micronormal.png, uv_specular.png, uv_coverage.png, head.glb (PBR material) and preview.png (the textured head
under two environments); report.png (input with landmarks | maps | UV albedo | UV photo | preview); manifest.json
last. Everything is written to a staging folder beside DIR and moved in only when complete, so a crash leaves no
partial output. Bad input: one line on stderr, exit status 2. The flow itself is a library function,
`uhrtex.pipeline.portrait.reconstruct_portrait`: this file only parses the flags.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

import torch

from uhrtex.pipeline.portrait import USER_ERRORS, PortraitOptions, reconstruct_portrait
from uhrtex.unwrap.methods import METHODS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m experiments.reconstruct", description=__doc__.splitlines()[0])
    p.add_argument("portrait", help="the portrait (PNG/JPEG/TIFF 8/16-bit, or linear EXR)")
    p.add_argument("--ckpt", default=None, help="folder with uv_normal.ckpt gde.ckpt hfdr.ckpt (or the stage runs' "
                   "logs/ folder), or a bundle file from Reconstructor.export_bundle; default: the shipped model")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--mesh", help="head mesh: OBJ with UVs (its UV space receives the textures)")
    p.add_argument("--camera", help="camera JSON of the portrait for --mesh (OpenCV; see docs/reconstruction.md)")
    p.add_argument("--unwrap", choices=(*METHODS, "none"), default=None,
                   help="default: optimize with a mesh on CUDA, direct with a mesh on CPU, splat without a mesh")
    p.add_argument("--patch-batch", type=int, default=8, help="HFDR patches per forward (memory ~ this)")
    p.add_argument("--exr", action="store_true", help="also write half-float EXR maps")
    p.add_argument("--no-crop", action="store_true", help="use the portrait as it is: no face crop (it must already be "
                   "framed like the training captures) and no face mask")
    p.add_argument("--geometry", choices=("auto", "landmarks", "predictor"), default="auto",
                   help="what places the maps in UV space without --mesh: the face landmarks' mesh (auto when a face "
                   "is found) or the UV&Normal predictor's uv map (splat)")
    p.add_argument("--uv-size", type=int, default=None, help="UV texture side (default: the model's input size)")
    p.add_argument("--cascade-top", type=int, default=None, help="optimize: finest cascade level (paper 8192 for a "
                   "4096 texture; default 2× uv-size on CUDA, uv-size on CPU)")
    p.add_argument("--template", choices=("auto", "head", "flat"), default="auto",
                   help="texture for unseen texels: the neutral procedural head (unified UV layout) or flat skin")
    p.add_argument("--input-size", type=int, default=None, help="preset input size, if the checkpoints lack it")
    p.add_argument("--no-seams", action="store_true", help="skip seam smoothing (ablation)")
    p.add_argument("--seam-feather", type=float, default=0.0, help="0: the paper's hard ±8 px band; 1: fade the "
                   "smoothing out towards the band's edge (see docs/reconstruction.md)")
    p.add_argument("--seam-keep-detail", action=argparse.BooleanOptionalAction, default=True,
                   help="smooth only the low-frequency jump between patches and keep the bands' pores (default); "
                   "--no-seam-keep-detail: the paper's blur of the whole ±8 px band")
    p.add_argument("--preview-size", type=int, default=512)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto", help="auto: bf16 autocast on CUDA "
                   "and on CPUs with AVX512-BF16/AMX, fp32 elsewhere (see docs/reconstruction.md)")
    return p


def options(args: argparse.Namespace) -> PortraitOptions:
    return PortraitOptions(**{k: v for k, v in vars(args).items() if k != "portrait"})


def run(args: argparse.Namespace, image: torch.Tensor | None = None) -> dict:
    return reconstruct_portrait(args.portrait, options(args), image)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        manifest = run(args)
    except USER_ERRORS as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    face = manifest["face"]
    note = f" (face crop upscaled {face['upscale']:.2f}x)" if face.get("crop") else ""
    cov = (manifest["unwrap"] or {}).get("face_uv_coverage")
    note += f"; face UV coverage {cov:.0%}" if cov is not None else ""
    print(f"wrote {len(manifest['files'])} files to {args.out} in {manifest['total_s']:.1f} s{note}")
    print(f"look at {Path(args.out) / 'report.png'}")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
