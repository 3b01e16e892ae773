"""Time the torch raster backend on a ~20k-triangle sphere; prints one JSON line.

    python benchmarks/raster.py [--res 512 2048] [--repeats 3] [--threads N]

Per resolution: rasterize, interpolate (uv + derivatives), texture (1024^2, linear-mipmap-linear),
antialias, each the median of `repeats` runs, in wall-clock milliseconds; plus peak RSS of the
process and the 1-minute load average (timings on a shared machine are only as good as it is idle).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import time

import torch

from uhrtex.raster import torch_backend as tb


def uv_sphere(n_lat: int = 100, n_lon: int = 100):
    """Closed-ish UV sphere: positions [V,3], uvs [V,2], faces [T,3] int32 (2*n_lon*(n_lat-1) tris)."""
    theta = torch.linspace(0, math.pi, n_lat + 1)
    phi = torch.linspace(0, 2 * math.pi, n_lon + 1)
    th, ph = torch.meshgrid(theta, phi, indexing="ij")
    xyz = torch.stack([th.sin() * ph.cos(), th.cos(), th.sin() * ph.sin()], -1).reshape(-1, 3)
    uv = torch.stack([ph / (2 * math.pi), 1 - th / math.pi], -1).reshape(-1, 2)
    idx = torch.arange((n_lat + 1) * (n_lon + 1)).view(n_lat + 1, n_lon + 1)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
    quads = [torch.stack([a, c, b], -1)[1:], torch.stack([b, c, d], -1)[:-1]]  # skip pole slivers
    faces = torch.cat([q.reshape(-1, 3) for q in quads]).int()
    return xyz, uv, faces


def perspective_clip(xyz: torch.Tensor, distance: float = 3.0, fov_deg: float = 45.0, near: float = 0.1, far: float = 10.0):
    """Camera on +z looking at the origin -> clip-space [1,V,4]."""
    f = 1 / math.tan(math.radians(fov_deg) / 2)
    x, y, z = xyz.unbind(-1)
    zc = z - distance  # camera space, looking down -z
    clip_z = (far + near) / (near - far) * zc + 2 * far * near / (near - far)
    return torch.stack([f * x, f * y, clip_z, -zc], -1)[None]


def timed(fn, repeats: int):
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t0) * 1000)
    return out, round(statistics.median(times), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--res", type=int, nargs="+", default=[512, 2048])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    xyz, uv, faces = uv_sphere()
    pos = perspective_clip(xyz)
    tex = torch.rand(1, 1024, 1024, 3)
    results = []
    for res in args.res:
        with torch.no_grad():
            (rast, db), t_rast = timed(lambda: tb.rasterize(pos, faces, (res, res)), args.repeats)
            (uvs, uv_da), t_interp = timed(lambda: tb.interpolate(uv, rast, faces, db, diff_attrs="all"), args.repeats)
            color, t_tex = timed(lambda: tb.texture(tex, uvs, uv_da, filter_mode="linear-mipmap-linear"), args.repeats)
            _, t_aa = timed(lambda: tb.antialias(color, rast, pos, faces), args.repeats)
        coverage = float((rast[..., 3] > 0).float().mean())
        results.append(dict(res=res, coverage=round(coverage, 3), rasterize_ms=t_rast, interpolate_ms=t_interp, texture_ms=t_tex, antialias_ms=t_aa))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    summary = dict(backend="torch", device="cpu", threads=torch.get_num_threads(), load_avg_1min=round(os.getloadavg()[0], 2))
    print(json.dumps(dict(summary, tris=faces.shape[0], results=results, peak_rss_mb=round(peak_mb))))


if __name__ == "__main__":
    main()
