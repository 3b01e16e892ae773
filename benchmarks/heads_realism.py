"""Do the training heads look like people to a real face detector? Prints one JSON line.

    python benchmarks/heads_realism.py [--subjects 24] [--views 2] [--size 1024] [--first-subject 5000]

Renders `subjects` × `views` fresh captures of held-out subjects (seeds from `--first-subject`, never used for
training) with the built-in renderer, camera yaw within ±30°, lighting index = view, and runs the project's own
face front end (`uhrtex.face.landmarker`, mediapipe's models) on each:
* `face_found_rate`: the fraction of renders where it finds one face with all 468 landmarks;
* `landmark_uv_median_texels`: the median distance, in texels of a 1024² layout, between each found landmark's
  entry in the landmark → UV table (`uhrtex/face/landmark_uv.json`) and the capture's ground-truth `uv` at that
  landmark's pixel (landmarks inside the face mask only);
* `oracle_table_median_texels`: the same median for the best fixed table these renders allow (each landmark's
  median ground-truth UV over them, in-sample, so optimistic): what no landmark → UV table can beat with this
  detector, because a landmark's surface point moves with identity, expression and view;
* `render_s_median`: the median time per render (textures + raster + shading), for scale.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from uhrtex.captures.render import render_capture  # noqa: E402
from uhrtex.face.geometry import landmark_uv  # noqa: E402
from uhrtex.face.landmarker import N_LANDMARKS, landmarks  # noqa: E402
from uhrtex.captures.landmark_table import sample  # noqa: E402

MAX_YAW = 30.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=24)
    ap.add_argument("--views", type=int, default=2)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--first-subject", type=int, default=5000)
    args = ap.parse_args()
    table_uv, seen = landmark_uv()
    found, errors, times, renders, per_render = 0, [], [], 0, []
    camera_seed = 0
    for s in range(args.first_subject, args.first_subject + args.subjects):
        for view in range(args.views):
            while True:  # the next camera seed whose yaw is within ±MAX_YAW (the same cameras for every head model)
                t0 = time.perf_counter()
                cap = render_capture(s, view, camera_seed, args.size)
                camera_seed += 1
                if abs(cap.meta["camera_params"]["yaw_deg"]) <= MAX_YAW:
                    break
            times.append(time.perf_counter() - t0)
            renders += 1
            faces = landmarks(cap.maps["image"])
            if len(faces) != 1 or len(faces[0].landmarks) != N_LANDMARKS:
                continue
            found += 1
            lm = np.asarray(faces[0].landmarks)
            inside = (sample(cap.maps["mask"], lm)[:, 0] > 0.99) & seen.numpy()
            gt = sample(cap.maps["uv"], lm)
            errors.extend((np.linalg.norm(gt - table_uv.numpy(), axis=1)[inside] * 1024).tolist())
            per_render.append(np.where(inside[:, None], gt, np.nan))
    oracle = None
    if per_render:
        gts = np.stack(per_render)  # renders × landmarks × 2, NaN where not scored
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN landmarks (never scored)
            oracle = float(np.nanmedian(np.linalg.norm(gts - np.nanmedian(gts, 0)[None], axis=2)) * 1024)
    print(json.dumps({"renders": renders, "face_found_rate": round(found / renders, 4),
                      "landmark_uv_median_texels": round(float(np.median(errors)), 3) if errors else None,
                      "oracle_table_median_texels": round(oracle, 3) if oracle is not None else None,
                      "landmarks_scored": len(errors), "render_s_median": round(statistics.median(times), 3),
                      "size": args.size, "torch_threads": torch.get_num_threads()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
