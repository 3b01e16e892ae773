"""Per-pixel image operations with one home each: Gaussian blur, binary erosion, the sRGB transfer curve.

Blur and colour go through kornia (`kornia.filters.gaussian_blur2d`, `kornia.color`); tests/test_imaging.py checks
every function against kornia. Erosion is two separable max-pools: `kornia.morphology.erosion` gives the same
result but unfolds a k×k neighbourhood per pixel (k² copies of the mask: 25 copies of a 4096² mask for k = 5), which
the unwrap and the detail metrics cannot afford at 4K.
"""

from __future__ import annotations

import math

import kornia
import torch
import torch.nn.functional as F


def gaussian_blur(x: torch.Tensor, sigma: float, radius: int | None = None, border: str = "reflect") -> torch.Tensor:
    """Separable Gaussian of B×C×H×W with taps exp(-t²/2σ²) over |t| ≤ radius (default ⌈3σ⌉), normalised; `border`:
    reflect | replicate | constant (0) | circular."""
    r = math.ceil(3 * sigma) if radius is None else int(radius)
    k = 2 * r + 1
    return kornia.filters.gaussian_blur2d(x, (k, k), (float(sigma), float(sigma)), border_type=border)


def erode(mask: torch.Tensor, radius: int, border: str = "constant") -> torch.Tensor:
    """Binary erosion of a B×C×H×W mask (> 0.5 is inside) by a (2·radius+1)² square -> bool. `border`: constant (the
    frame's outside counts as outside) | reflect | replicate."""
    if radius <= 0:
        return mask > 0.5
    outside = 1.0 - (mask > 0.5).float()
    pad = (radius,) * 4
    outside = F.pad(outside, pad, value=1.0) if border == "constant" else F.pad(outside, pad, mode=border)
    k = 2 * radius + 1
    return F.max_pool2d(F.max_pool2d(outside, (1, k), stride=1), (k, 1), stride=1) < 0.5


def _elementwise(fn, x: torch.Tensor) -> torch.Tensor:
    """kornia's colour functions want ...×3×H×W; the curves are per element, so any tensor is viewed as 3 rows."""
    if x.dim() >= 3 and x.shape[-3] == 3:
        return fn(x)
    flat = x.reshape(-1)
    n = flat.numel()
    y = fn(F.pad(flat, (0, (-n) % 3)).view(3, -1, 1))
    return y.reshape(-1)[:n].view_as(x)


def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    """sRGB-encoded [0, 1] -> linear (IEC 61966-2-1 piecewise curve); negatives clamp to 0."""
    return _elementwise(kornia.color.rgb_to_linear_rgb, x.clamp_min(0))


def linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    """Linear -> sRGB-encoded; values above 1 stay above 1 (clamp afterwards for display)."""
    return _elementwise(kornia.color.linear_rgb_to_rgb, x.clamp_min(0))
