"""Time capture generation with the built-in renderer; prints one JSON line.

    python benchmarks/make_captures.py [--subjects 12] [--lightings 2] [--size 512] [--big 4096] [--threads N]

Part 1 renders subjects × lightings at `--size` into a fresh store, textures and store writes included
(goal: 12 × 2 at 512² in under 120 s on 2 cores). Part 2 renders one `--big` capture in memory (0 skips it)
and reports its time and this process's peak RSS (which the big render dominates).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from uhrtex.captures import render  # noqa: E402
from uhrtex.captures.generate import make_captures, plan  # noqa: E402
from uhrtex.captures.store import CaptureStore  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=12)
    ap.add_argument("--lightings", type=int, default=2)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--big", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    out: dict = {"subjects": args.subjects, "lightings": args.lightings, "size": args.size,
                 "threads": torch.get_num_threads(), "load_avg_1min": round(os.getloadavg()[0], 2)}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        report = make_captures(CaptureStore(str(Path(tmp) / "store"), mode="a"),
                               plan(args.subjects, args.lightings, 1), args.size, "builtin", progress=False)
        out["captures"] = len(report["written"])
        out["seconds"] = round(time.perf_counter() - t0, 1)
    out["goal_seconds"] = 120
    if args.big:
        t0 = time.perf_counter()
        cap = render.render_capture(11, "sky3_r045", 2, args.big)
        out["big_size"] = list(cap.size)
        out["big_seconds"] = round(time.perf_counter() - t0, 1)
        out["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
