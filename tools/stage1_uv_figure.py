"""docs/figures/stage1_uv.png: where Stage 1 puts the face in the unified layout, on held-out heads.

    python tools/stage1_uv_figure.py [--ckpt DIR|BUNDLE] [--subjects 4] [--size 1024] [--panel 256] [--out docs/figures/stage1_uv.png]

Per row, one render of a held-out subject (seeds 5000+, never trained on): the image | the ground-truth uv | the
UV&Normal predictor's uv | the landmark mesh's uv (Stage 1's uv prior) | Stage 1's uv as the model uses it, uv shown as
(u, v, 0) colour, all at the global size. Prints one JSON line with each uv's median error in texels of 1024² over the
ground-truth face mask (the prior: where it covers).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from uhrtex.captures.render import render_capture  # noqa: E402
from uhrtex.common import io as uio  # noqa: E402
from uhrtex.face.geometry import landmark_uv_prior  # noqa: E402
from uhrtex.face.landmarker import landmarks  # noqa: E402
from uhrtex.pipeline.reconstructor import Reconstructor  # noqa: E402
from uhrtex.stage1.run import uv_normal_parts  # noqa: E402


def _colour(uv: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.cat([uv, torch.zeros_like(uv[:1])]).clamp(0, 1) * mask


def _median_texels(uv: torch.Tensor, gt: torch.Tensor, where: torch.Tensor) -> float:
    return round(float(((uv - gt).norm(dim=0)[where] * 1024).median()), 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", default=None, help="checkpoints or bundle (default: the shipped model)")
    ap.add_argument("--subjects", type=int, default=4)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--out", default="docs/figures/stage1_uv.png")
    ap.add_argument("--panel", type=int, default=256, help="pixels per panel side")
    args = ap.parse_args()
    rec = Reconstructor.load(args.ckpt, precision="fp32")
    gs = rec.global_size
    rows, errors = [], {"predictor": [], "landmarks": [], "stage1": []}
    for i in range(args.subjects):
        cap = render_capture(5000 + i, i, 5000 + i, args.size)
        image = cap.maps["image"]
        small = {k: F.interpolate(cap.maps[k][None], size=(gs, gs), mode="area")[0] for k in ("image", "uv", "mask")}
        g = rec.geometry(*image.shape[-2:])
        face = landmarks(image)[0]
        with torch.inference_mode():
            x = F.interpolate(image[None], size=(gs, gs), mode="area")
            predictor = uv_normal_parts(rec.stage1.uv_normal(x))["uv"][0]
            stage1 = rec.run_stage1(image, g, face=face)["uv_pred"][0]
        prior = landmark_uv_prior(face, g.top, g.left, g.side, gs)
        face_px = small["mask"][0] > 0.99
        covered = face_px & (prior[2] > 0.99)
        errors["predictor"].append(_median_texels(predictor, small["uv"], face_px))
        errors["landmarks"].append(_median_texels(prior[:2], small["uv"], covered))
        errors["stage1"].append(_median_texels(stage1, small["uv"], face_px))
        m = small["mask"]
        panels = [small["image"], _colour(small["uv"], m), _colour(predictor, m), _colour(prior[:2], prior[2:3]),
                  _colour(stage1, m)]
        rows.append(torch.cat([F.interpolate(p[None], size=(args.panel, args.panel), mode="area")[0] for p in panels], 2))
    uio.write_png(Path(args.out), torch.cat(rows, 1), bits=8)
    print(json.dumps({"out": args.out, "uv_prior": rec.stage1.uv_prior, "median_texels_1024": errors}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
