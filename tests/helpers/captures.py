"""Small random captures for store/ingest/datamodule tests (no renderer needed)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from uhrtex.captures.format import Camera, Capture, look_at
from uhrtex.maps import CAPTURE


def random_capture(subject: int = 0, lighting: int = 0, size: int = 32, camera: int = 0, smooth: bool = True) -> Capture:
    """Valid capture with arbitrary float values (not on the store's 16-bit grid) and an ellipse mask."""
    g = torch.Generator().manual_seed(subject * 7919 + lighting * 31 + camera)
    maps = {}
    for name in CAPTURE.names:
        c = CAPTURE.width(name)
        x = torch.rand(1, c, max(size // 4, 2), max(size // 4, 2), generator=g)
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)[0] if smooth else torch.rand(c, size, size, generator=g)
        maps[name] = x.clamp(0, 1).contiguous()
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    mask = ((xs / 0.7) ** 2 + (ys / 0.9) ** 2 < 1).float()[None]
    for name in CAPTURE.names:
        if name not in ("image", "mask"):
            maps[name] = maps[name] * mask
    maps["mask"] = mask
    cam = Camera.from_fov(20.0, size, size, look_at((0, 0, 1.0), (0, 0, 0)), id=f"c{camera:02d}")
    meta = {"subject": f"s{subject:04d}", "lighting": f"l{lighting:02d}", "camera": cam.to_dict(), "mesh": None,
            "renderer": "builtin", "resolution": size}
    return Capture(maps, meta).validate()


def one_line(err: BaseException, *names: str) -> str:
    """The error message, asserted to be one line that mentions every name."""
    msg = str(err.value if hasattr(err, "value") else err)
    assert "\n" not in msg, msg
    for n in names:
        assert str(n) in msg, f"{n!r} not in: {msg}"
    return msg
