"""Time the torch hash-grid encoding against the GDE forward on 1024² UV maps; prints one JSON line.

    python benchmarks/hash_encoding.py [--res 1024] [--repeats 3] [--threads N]

hash_ms: HashGridEncoding (project config: L=4, F=2, base 16, scale 4, log2T 19; torch backend) on a
1×2×res×res UV map, forward in inference_mode. gde_forward_ms: the GDE network (16 -> 7 channels) at
the same resolution, forward in inference_mode. ratio = hash_ms / gde_forward_ms; goal <= 0.10.
Also hash forward+backward: params only, and params + UV. Medians of `repeats` runs, interleaved so
load from other processes hits all of them alike.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time

import torch
from torch import nn

from uhrtex.networks import stages
from uhrtex.networks.hash_encoding import HashGridEncoding


def build_gde() -> tuple[nn.Module, str]:
    """The real GDE at the paper preset (width 32: widths 32/64/128, 12 hidden layers, 16 -> 7 channels)."""
    return stages.build_gde(widths=(32, 64, 128), hash_channels=8), "uhrtex.networks.stages.build_gde(widths=(32, 64, 128))"


def face_uv(res: int) -> torch.Tensor:
    """A smooth warped UV map inside an ellipse, 0 outside (like a masked UV prediction): 1×2×res×res."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, res), torch.linspace(0, 1, res), indexing="ij")
    uv = torch.stack([xx + 0.05 * torch.sin(6 * yy), yy + 0.05 * torch.cos(5 * xx)]).clamp(0, 1)
    inside = ((xx - 0.5) / 0.42) ** 2 + ((yy - 0.5) / 0.48) ** 2 <= 1
    return (uv * inside)[None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--res", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    enc = HashGridEncoding(backend="torch")
    gde, gde_desc = build_gde()
    gde.eval()
    uv = face_uv(args.res)
    uv_grad = uv.clone().requires_grad_()
    gde_in = torch.randn(1, 16, args.res, args.res)

    def hash_fwd():
        with torch.inference_mode():
            return enc(uv)

    def gde_fwd():
        with torch.inference_mode():
            return gde(gde_in)

    def hash_fwd_bwd(x):
        enc.zero_grad(set_to_none=True)
        enc(x).square().sum().backward()

    runs = {"hash_ms": hash_fwd, "gde_forward_ms": gde_fwd, "hash_fwd_bwd_ms": lambda: hash_fwd_bwd(uv),
            "hash_fwd_bwd_uv_grad_ms": lambda: hash_fwd_bwd(uv_grad)}
    shapes = {name: fn() for name, fn in runs.items()}  # warm-up
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t0) * 1000)
    med = {name: round(statistics.median(ts), 1) for name, ts in times.items()}
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(dict(
        med, ratio=round(med["hash_ms"] / med["gde_forward_ms"], 4), goal_ratio=0.10,
        res=args.res, backend=enc.backend, threads=torch.get_num_threads(), repeats=args.repeats,
        hash_out=list(shapes["hash_ms"].shape), gde_out=list(shapes["gde_forward_ms"].shape),
        gde=gde_desc, n_params=enc.grid.layout.n_params,
        config=enc.config.to_dict(), peak_rss_mb=round(peak_mb),
    )))


if __name__ == "__main__":
    main()
