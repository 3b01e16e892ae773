"""Renderer `placeholder`: a valid Capture of smooth random maps in an ellipse mask, in milliseconds.

Not a face (no geometry, no shading): for I/O benchmarks and smoke tests that need a store quickly
(`renderer: placeholder`). Real data comes from `render.py` (builtin) or the Blender path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from uhrtex.captures.format import Camera, Capture, look_at
from uhrtex.maps import CAPTURE, encode_normal


def _smooth(g: torch.Generator, c: int, size: int, cells: int = 8) -> torch.Tensor:
    coarse = torch.rand(1, c, cells, cells, generator=g)
    return F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)[0]


def render_capture(subject_seed: int, lighting: int, camera_seed: int, resolution: int, **_: object) -> Capture:
    g = torch.Generator().manual_seed(subject_seed * 1_000_003 + lighting * 1009 + camera_seed)
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, resolution), torch.linspace(-1, 1, resolution), indexing="ij")
    mask = (((xs / 0.7) ** 2 + (ys / 0.9) ** 2) < 1).float()[None]
    maps = {n: _smooth(g, CAPTURE.width(n), resolution) for n in CAPTURE.names if n not in ("mask", "image")}
    for n in ("micronormal", "normal"):
        v = maps[n] * 2 - 1
        v[2] = v[2].abs() + 0.5
        maps[n] = encode_normal(v / v.norm(dim=0, keepdim=True))
    maps = {n: (m * mask).contiguous() for n, m in maps.items()}
    maps["image"] = (maps["albedo"] * (0.6 + 0.4 * maps["specular"]) + (1 - mask) * 0.3).clamp(0, 1)
    maps["mask"] = mask
    camera = Camera.from_fov(20.0, resolution, resolution, look_at((0, 0, 1.0), (0, 0, 0)), id=f"c{camera_seed:02d}")
    meta = {"subject": f"s{subject_seed:04d}", "lighting": f"l{lighting:02d}", "camera": camera.to_dict(), "mesh": None,
            "renderer": "placeholder", "resolution": resolution}
    return Capture(maps, meta).validate()
