"""The process memory policy (`uhrtex.common.memory.configure_process`) against glibc's and torch's defaults, side by side; one
JSON line.

    python benchmarks/process_memory.py [--pairs 3] [--preset paper] [--size 4096] [--unwrap direct]

Runs `benchmarks/reconstruct.py --end-to-end` in fresh processes, alternating `UHRTEX_PROCESS_MEMORY=default` and the
policy (default first in each pair), so both see the same stretch of a shared machine. Prints, per setting, the
end-to-end ×GEMM ratios, the unwrap + export + report seconds and the peak RSS of every run, their medians, and
`gemms_ratio` = median policy ÷ median default (< 1: the policy is faster).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SETTINGS = ("default", "tuned")


def one_run(setting: str, args: argparse.Namespace) -> dict:
    env = {**os.environ, "UHRTEX_PROCESS_MEMORY": setting}
    cmd = [sys.executable, str(REPO / "benchmarks" / "reconstruct.py"), "--preset", args.preset, "--end-to-end",
           "--unwrap", args.unwrap] + (["--size", str(args.size)] if args.size else [])
    out = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"benchmarks/reconstruct.py failed ({setting}): {out.stderr.strip().splitlines()[-1:]}")
    line = json.loads(out.stdout.strip().splitlines()[-1])
    wall = line["wall_s"]
    return {"gemms": line["end_to_end_gemms"], "unwrap_export_report_s": round(
        wall["unwrap"] + wall["export"] + wall["report"], 2), "peak_rss_gb": line["peak_rss_gb"],
        "applied": line["process_memory"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--preset", default="paper")
    p.add_argument("--size", type=int, default=4096)
    p.add_argument("--unwrap", default="direct", choices=("direct", "optimize", "splat", "none"))
    args = p.parse_args()
    if args.pairs < 1:
        raise SystemExit("--pairs must be ≥ 1")
    runs: dict[str, list[dict]] = {s: [] for s in SETTINGS}
    for _ in range(args.pairs):
        for s in SETTINGS:
            runs[s].append(one_run(s, args))
    out: dict = {"preset": args.preset, "size": args.size, "unwrap": args.unwrap, "pairs": args.pairs}
    for s in SETTINGS:
        out[s] = {k: [r[k] for r in runs[s]] for k in ("gemms", "unwrap_export_report_s", "peak_rss_gb")}
        out[s]["median_gemms"] = statistics.median(out[s]["gemms"])
        out[s]["applied"] = runs[s][0]["applied"]
    out["gemms_ratio"] = round(out["tuned"]["median_gemms"] / out["default"]["median_gemms"], 3)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
