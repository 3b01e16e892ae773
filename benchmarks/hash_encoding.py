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

from uhrtex.networks.hash_encoding import HashGridEncoding


class StandInGDE(nn.Module):
    """Used only when uhrtex.networks.unet is unavailable: 12 3x3 conv blocks (3 levels, 2 enc +
    3 dec), widths 32/64/128, GroupNorm + SiLU, like the paper's GDE description."""

    def __init__(self, cin: int = 16, cout: int = 7, widths=(32, 64, 128)):
        super().__init__()
        block = lambda i, o: nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.GroupNorm(8, o), nn.SiLU())  # noqa: E731
        self.enc = nn.ModuleList()
        c = cin
        for w in widths:
            self.enc.append(nn.Sequential(block(c, w), block(w, w)))
            c = w
        self.dec = nn.ModuleList()
        for w in reversed(widths[:-1]):
            self.dec.append(nn.Sequential(block(c + w, w), block(w, w), block(w, w)))
            c = w
        self.head = nn.Conv2d(c, cout, 1)

    def forward(self, x):
        skips = []
        for i, enc in enumerate(self.enc):
            x = enc(x if i == 0 else nn.functional.avg_pool2d(x, 2))
            skips.append(x)
        for dec, skip in zip(self.dec, reversed(skips[:-1])):
            x = dec(torch.cat([nn.functional.interpolate(x, scale_factor=2.0), skip], 1))
        return torch.sigmoid(self.head(x))


def build_gde() -> tuple[nn.Module, str, bool]:
    """(model, description, stand_in)."""
    try:
        from uhrtex.networks.unet import build_gde as build
    except ImportError:
        build = None
    if build is not None:
        try:
            return build(), "uhrtex.networks.unet.build_gde()", False
        except TypeError:
            return build(in_channels=16, out_channels=7), "uhrtex.networks.unet.build_gde(16, 7)", False
    try:
        from uhrtex.networks.unet import UNet
    except ImportError:
        return StandInGDE(), "benchmark stand-in (12 conv blocks, widths 32/64/128)", True
    # The UNet's defaults are the GDE layout (3 levels, 2 enc + 3 dec blocks = 12 hidden layers).
    return UNet(16, 7), "uhrtex.networks.unet.UNet(16, 7) defaults (build_gde not available)", False


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
    gde, gde_desc, stand_in = build_gde()
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
        gde=gde_desc, stand_in=stand_in, n_params=enc.grid.layout.n_params,
        config=enc.config.to_dict(), peak_rss_mb=round(peak_mb),
    )))


if __name__ == "__main__":
    main()
