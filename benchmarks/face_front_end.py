"""Time the face front end of `experiments.reconstruct` on a real portrait; one JSON line.

    python benchmarks/face_front_end.py [--size 4096] [--input-size 4096] [--repeats 5]

Portrait: scikit-image's astronaut (512²) upsampled to --size² (bicubic). Median wall milliseconds of:
* `landmarks_ms`: face detection + the two face-mesh passes (`uhrtex.face.landmarker.landmarks`), the analysis
  the front end adds to a reconstruction;
* `crop_ms`: the square crop resized to --input-size (a reconstruction resizes the portrait to the model's input
  with or without the front end) and `mask_ms`: the landmarks' hull rasterized at --input-size;
* `total_ms`: find_face + crop + mask. `goal_ms`: 100 for `landmarks_ms` (the issue's budget per portrait).
The first call (interpreter start-up) is reported separately as `first_call_ms`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings

import torch
import torch.nn.functional as F


def _ms(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), out


def main(argv: list[str] | None = None) -> int:
    from skimage.data import astronaut

    from uhrtex.face.front import crop_to_face, face_mask, find_face
    from uhrtex.face.landmarker import landmarks

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--input-size", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    photo = torch.from_numpy(astronaut()).permute(2, 0, 1).float() / 255
    image = F.interpolate(photo[None], size=(args.size, args.size), mode="bicubic", align_corners=False)[0].clamp(0, 1)
    t0 = time.perf_counter()
    landmarks(image)
    first = (time.perf_counter() - t0) * 1000
    lm_ms, faces = _ms(lambda: landmarks(image), args.repeats)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        info = find_face(image)
        crop_ms, (crop, info2) = _ms(lambda: crop_to_face(image, info, args.input_size), args.repeats)
        mask_ms, _ = _ms(lambda: face_mask(info2.face, args.input_size, args.input_size), args.repeats)
        total_ms, _ = _ms(lambda: face_mask(crop_to_face(image, find_face(image), args.input_size)[1].face,
                                            args.input_size, args.input_size), args.repeats)
    print(json.dumps({"size": args.size, "input_size": args.input_size, "threads": torch.get_num_threads(),
                      "faces": len(faces), "first_call_ms": round(first, 1), "landmarks_ms": round(lm_ms, 1),
                      "crop_ms": round(crop_ms, 1), "mask_ms": round(mask_ms, 1), "total_ms": round(total_ms, 1),
                      "goal_ms": 100, "landmarks_within_goal": lm_ms <= 100}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
