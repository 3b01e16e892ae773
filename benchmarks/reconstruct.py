"""Time a full reconstruction (Stage 1 + HFDR over all patches + seam smoothing) with random weights; one JSON line.

    python benchmarks/reconstruct.py --preset paper --size 4096 [--patch-batch 8] [--threads N]

The networks are the configured ones (`experiments/configs/model/*.yaml` at the preset's width); the cost
does not depend on the weights. The input is a uint8 image (what a decoded 8-bit portrait is).

* `wall_s`: per stage and `total` (the `Reconstructor` call).
* `model_gflop`: counted with torch.utils.flop_counter on Stage 1 once + HFDR on one patch batch, scaled to
  all patches (convolutions and matmuls; norms/activations/resampling are not FLOPs by that counter). That
  counting pass also warms up oneDNN for the run's shapes.
* `gemm_peak_gflops_per_s`: best of several 4096² fp32 `torch.mm`, timed in this process before and after
  the run (the machine may be shared: the higher one is the achievable peak).
* `fraction_of_peak` = model_gflop / total wall / gemm peak. `peak_rss_gb`: the process's high-water mark.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402


def gemm_peak(n: int = 4096, repeats: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    c = torch.empty(n, n)
    torch.mm(a, b, out=c)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b, out=c)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def build_networks(preset: str):
    """Random-weight networks exactly as configured (`model=<stage> preset=<preset>`), and the preset sizes."""
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from experiments.cli import compose_config
    from uhrtex.bundle import STAGES, _call_target
    from uhrtex.networks.hash_encoding import HashGridEncoding

    nets, sizes, hash_encoder = {}, None, None
    for stage in STAGES:
        GlobalHydra.instance().clear()
        cfg = compose_config([f"model={stage}", f"preset={preset}"])
        GlobalHydra.instance().clear()
        mc = OmegaConf.to_container(cfg.model, resolve=True)
        sizes = {k: int(cfg[k]) for k in ("input_size", "global_size", "patch_size")}
        extra = {}
        if stage == "gde":
            hcfg = mc.get("hash_encoding") or {}
            if hcfg.get("enabled"):
                hash_encoder = HashGridEncoding(hcfg.get("config"), backend="torch")
            extra["hash_channels"] = hash_encoder.n_output_dims if hash_encoder is not None else 0
        nets[stage] = _call_target(mc["net"], stage, **extra)
    return nets, hash_encoder, sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--size", type=int, default=None, help="input side (default: the preset's input size)")
    parser.add_argument("--patch-batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-channels-last", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from uhrtex.pipeline import Reconstructor

    peak0 = gemm_peak()
    nets, hash_encoder, sizes = build_networks(args.preset)
    rec = Reconstructor(nets["uv_normal"], nets["gde"], nets["hfdr"], hash_encoder, **sizes,
                        patch_batch=args.patch_batch, channels_last=not args.no_channels_last)
    size = args.size or sizes["input_size"]
    # A smooth random portrait-like uint8 image (content does not change the cost).
    low = torch.rand(1, 3, 64, 64)
    image = torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear")[0].mul_(255).round_().to(torch.uint8)

    # Count FLOPs (and warm oneDNN up) on the run's shapes: Stage 1 once, HFDR on one patch batch.
    g = rec.geometry(size, size)
    with FlopCounterMode(display=False) as fc:
        s1 = rec.run_stage1(image, g)
    s1_flop = fc.get_total_flops()
    out = torch.empty(7, size, size)
    n_patches = g.grid ** 2
    g1 = type(g)(g.height, g.width, g.side, g.top, g.left, g.patch)
    first = g.boxes()[: args.patch_batch]
    g1.boxes = lambda: first  # type: ignore[method-assign]
    with FlopCounterMode(display=False) as fc:
        rec.run_hfdr(image, g1, s1, out)
    hfdr_flop = fc.get_total_flops() / len(first) * n_patches
    del out, s1

    t = time.perf_counter()
    result = rec(image)
    total = time.perf_counter() - t
    del result
    peak1 = gemm_peak()
    peak = max(peak0, peak1)
    gflop = (s1_flop + hfdr_flop) / 1e9
    achieved = gflop / total
    print(json.dumps({
        "preset": args.preset, "size": size, "patches": n_patches, "patch_batch": args.patch_batch,
        "threads": torch.get_num_threads(), "channels_last": not args.no_channels_last,
        "wall_s": {**{k: round(v, 2) for k, v in rec.timings.items()}, "total": round(total, 2)},
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
        "model_gflop": round(gflop, 1), "stage1_gflop": round(s1_flop / 1e9, 1), "hfdr_gflop": round(hfdr_flop / 1e9, 1),
        "achieved_gflops_per_s": round(achieved, 2),
        "gemm_peak_gflops_per_s": round(peak, 2), "gemm_before_after": [round(peak0, 1), round(peak1, 1)],
        "fraction_of_peak": round(achieved / peak, 3),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }))


if __name__ == "__main__":
    main()
