"""Regenerate `landmark_uv.json`: where each of the 468 face-mesh landmarks lies in the unified UV layout.

    python -m uhrtex.captures.landmark_table [--subjects 24] [--cameras 2] [--size 512] [--out uhrtex/face/landmark_uv.json]

Renders procedural heads (subjects 1000.. : disjoint from the training and test subjects 0..), runs the
landmarker on each render, reads the ground-truth `uv` map at every landmark (bilinear, inside the face mask)
and keeps each landmark's median over the views: a robust estimate that ignores the odd misplaced landmark.
The spread (median absolute deviation, in texels of a 1024² layout) is stored too, per landmark.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from uhrtex.common import io as uio
from uhrtex.face.landmarker import N_LANDMARKS, landmarks

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "face" / "landmark_uv.json"
FIRST_SUBJECT = 1000


def sample(x: torch.Tensor, pts: np.ndarray) -> np.ndarray:
    """C×H×W at N pixel positions (x, y; pixel centres at +0.5) -> N×C, bilinear."""
    h, w = x.shape[-2:]
    g = torch.from_numpy(pts[:, :2]).float()
    g = torch.stack([g[:, 0] / w * 2 - 1, g[:, 1] / h * 2 - 1], -1)[None, None]
    return F.grid_sample(x[None].float(), g, mode="bilinear", align_corners=False)[0, :, 0].T.numpy()


def main(argv: list[str] | None = None) -> int:
    from uhrtex.captures.render import render_capture

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=24)
    ap.add_argument("--cameras", type=int, default=2)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    args = ap.parse_args(argv)
    uvs, views = [], 0
    jobs = [(FIRST_SUBJECT + s, c) for s in range(args.subjects) for c in range(args.cameras)]
    for subject, cam in tqdm(jobs, desc="landmark uv", unit="render"):
        cap = render_capture(subject, cam % 8, cam, args.size)
        faces = landmarks(cap.maps["image"])
        if not faces:
            continue
        lm = faces[0].landmarks
        inside = sample(cap.maps["mask"], lm)[:, 0] > 0.99
        uv = sample(cap.maps["uv"], lm)
        uv[~inside] = np.nan
        uvs.append(uv)
        views += 1
    if views < 3:
        print(f"error: the landmarker found a face in only {views} of {len(jobs)} renders", file=sys.stderr)
        return 1
    stack = np.stack(uvs)  # views × N × 2
    med = np.nanmedian(stack, 0)
    mad = np.nanmedian(np.abs(stack - med).max(-1), 0) * 1024
    seen = np.isfinite(stack[..., 0]).sum(0)
    table = {"about": "median unified-layout (u, v) of each face-mesh landmark over procedural renders; "
                      "regenerate with python -m uhrtex.captures.landmark_table",
             "subjects": args.subjects, "cameras": args.cameras, "size": args.size, "views": views,
             "uv": np.round(med, 5).tolist(), "mad_texels_1024": np.round(mad, 2).tolist(), "seen": seen.tolist()}
    assert len(table["uv"]) == N_LANDMARKS
    uio.write_text_atomic(Path(args.out), json.dumps(table))
    print(json.dumps({"views": views, "renders": len(jobs), "median_mad_texels_1024": float(np.nanmedian(mad)),
                      "landmarks_never_inside": int((seen == 0).sum())}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
