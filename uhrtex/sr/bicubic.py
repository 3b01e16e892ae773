"""The bicubic super-resolution baseline, with the same call shape as :func:`uhrtex.sr.upscale`."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bicubic_upscale(image: torch.Tensor, scale: int = 8) -> torch.Tensor:
    """Bicubic (a = -0.75, align_corners=False) ×``scale`` of a 3×H×W or B×C×H×W float image, clamped to [0,1]."""
    if image.dim() not in (3, 4):
        raise ValueError(f"bicubic_upscale: expected C×H×W or B×C×H×W, got shape {tuple(image.shape)}")
    if int(scale) != scale or scale < 1:
        raise ValueError(f"bicubic_upscale: scale must be a positive integer, got {scale}")
    single = image.dim() == 3
    x = (image[None] if single else image).float()
    y = F.interpolate(x, scale_factor=int(scale), mode="bicubic", align_corners=False).clamp(0, 1)
    return y[0] if single else y
