"""Time one 2048² capture of a fresh training head with the built-in renderer (textures included) and its peak
memory, beside the retired egg heads in the same run; prints one JSON line.

    python benchmarks/heads_render.py [--size 2048] [--baseline-checkout DIR] [--threads 1]

Each render runs in its own process (cold caches, its own peak RSS). `--baseline-checkout`: a checkout of commit
2053a30 (the last egg-head code: `git worktree add /tmp/egg 2053a30`), timed the same way, so `time_ratio` is the
issue's "≤ 2× today's time" and `peak_rss_gb` its "≤ 3 GB".
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CODE = """
import json, resource, sys, time, torch
torch.set_num_threads(int(sys.argv[2]))
from uhrtex.captures.render import render_capture
t0 = time.perf_counter()
cap = render_capture(4242, 0, 0, int(sys.argv[1]))
s = time.perf_counter() - t0
print(json.dumps({"seconds": s, "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))
"""


def _time(root: Path, size: int, threads: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(root), "UHRTEX_HDRI_DIR": "off", "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run([sys.executable, "-c", CODE, str(size), str(threads)], cwd=root, env=env, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--baseline-checkout", default=None)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    ours = _time(REPO, a.size, a.threads)
    out = {"size": a.size, "threads": a.threads, "ict_seconds": round(ours["seconds"], 2),
           "peak_rss_gb": round(ours["peak_rss_gb"], 2)}
    if a.baseline_checkout:
        egg = _time(Path(a.baseline_checkout), a.size, a.threads)
        out.update(egg_seconds=round(egg["seconds"], 2), egg_peak_rss_gb=round(egg["peak_rss_gb"], 2),
                   time_ratio=round(ours["seconds"] / egg["seconds"], 2))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
