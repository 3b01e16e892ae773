"""How well does each geometry place a portrait in the unified UV layout? Held-out procedural captures with GT.

    python -m experiments.face_geometry_eval --store data/captures/2048 --ckpt DIR [--max-captures 4] [--uv-size 1024]

Per capture of the test split (by subject, as training uses), for the landmark geometry (`uhrtex.face`) and
Stage 1's uv map (`--ckpt`; optional; `stage1/…`: the UV&Normal predictor's, or with a model trained with the landmark
uv prior, the landmarks' inside the face and the predictor's elsewhere):
* `uv_err_texels`: median |uv − GT uv| × uv-size over the GT face mask where the geometry covers it;
* `coverage`: the fraction of the GT face mask the geometry covers;
* `unwrap_psnr`: the GT image-space albedo unwrapped with that geometry (landmarks: `direct` through the landmark
  mesh; predictor: `splat` at its uv) against the subject's GT UV albedo, PSNR over the texels both observe
  inside the layout's face region. This isolates the geometry: the maps unwrapped are the ground truth.
Prints one JSON line (per-capture values and their medians).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys

import torch

from datamodules.captures import split_subjects
from uhrtex.captures.format import split_key
from uhrtex.captures.store import CaptureStore
from uhrtex.face.geometry import face_region, landmark_mesh, landmark_uv_map
from uhrtex.face.landmarker import landmarks
from uhrtex.metrics.image import psnr
from uhrtex.unwrap.methods import UnwrapOptions, unwrap


def _uv_error(uv: torch.Tensor, cov: torch.Tensor, cap: dict, res: int) -> tuple[float, float]:
    gt_mask = cap["mask"][0] > 0.99
    inside = gt_mask & (cov[0] > 0.5)
    err = (uv - cap["uv"]).norm(dim=0)[inside] * res
    return float(err.median()) if err.numel() else math.nan, float(inside.sum() / gt_mask.sum().clamp_min(1))


def _psnr(a: torch.Tensor, b: torch.Tensor, m: torch.Tensor) -> float:
    return float(psnr(a[None], b[None], m[None, None])[0])


def evaluate(store: CaptureStore, key: str, rec, res: int) -> dict[str, float]:
    from uhrtex.captures.heads import Subject
    from uhrtex.captures.heads.skin import face_textures

    cap = store.read(key, names=("image", "albedo", "uv", "mask"))
    h, w = cap["image"].shape[-2:]
    gt_tex = face_textures(Subject.from_seed(int(store.meta(key)["mesh"]["seed"])), res)["albedo"]
    region = face_region(res)[0] > 0.5
    opts = UnwrapOptions(resolution=res, fill=False)
    out: dict[str, float] = {}
    face = landmarks(cap["image"])[0]
    uv, cov = landmark_uv_map(face, h, w)
    out["landmarks/uv_err_texels"], out["landmarks/coverage"] = _uv_error(uv, cov, cap, res)
    mesh, cam = landmark_mesh(face, h, w)
    u = unwrap({"albedo": cap["albedo"]}, cap["mask"], "direct", mesh=mesh, camera=cam, options=opts)
    out["landmarks/unwrap_psnr"] = _psnr(u.textures["albedo"], gt_tex, region & (u.coverage[0] > 0.5))
    if rec is not None:
        result = rec(cap["image"])
        uv_pred, mask_pred = rec.full_res(result, "uv_pred"), rec.full_res(result, "mask_pred")
        out["stage1/uv_err_texels"], out["stage1/coverage"] = _uv_error(uv_pred, mask_pred, cap, res)
        u = unwrap({"albedo": cap["albedo"]}, cap["mask"], "splat", uv=uv_pred, options=opts)
        out["stage1/unwrap_psnr"] = _psnr(u.textures["albedo"], gt_tex, region & (u.coverage[0] > 0.5))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--ckpt", default=None, help="checkpoints for the predictor's uv (omit: landmarks only)")
    ap.add_argument("--max-captures", type=int, default=4)
    ap.add_argument("--uv-size", type=int, default=1024)
    ap.add_argument("--split", default="test", choices=("train", "val", "test", "all"))
    args = ap.parse_args(argv)
    store = CaptureStore(args.store)
    keys = store.keys()
    if args.split != "all":
        chosen = set(split_subjects([split_key(k)[0] for k in keys])[args.split])
        keys = [k for k in keys if split_key(k)[0] in chosen]
    keys = keys[: args.max_captures]
    rec = None
    if args.ckpt:
        from uhrtex.pipeline.reconstructor import Reconstructor

        rec = Reconstructor.load(args.ckpt, precision="fp32")
    per = {k: evaluate(store, k, rec, args.uv_size) for k in keys}
    names = sorted({n for v in per.values() for n in v})
    median = {n: round(statistics.median(v[n] for v in per.values()), 4) for n in names}
    print(json.dumps({"captures": keys, "uv_size": args.uv_size, "median": median,
                      "per_capture": {k: {n: round(x, 4) for n, x in v.items()} for k, v in per.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
