"""Per-pixel image operations with one home each: Gaussian blur, binary erosion, the sRGB transfer curve.

Blur and colour go through kornia (`kornia.filters.gaussian_blur2d`, `kornia.color`); tests/test_imaging.py checks
every function against kornia. Erosion is separable logical ANDs of shifted byte masks: `kornia.morphology.erosion`
gives the same result but unfolds a k×k neighbourhood per pixel (k² copies of the mask: 25 copies of a 4096² mask for
k = 5), which the unwrap and the detail metrics cannot afford at 4K; float max-pools cost 0.6-0.9 s per 4096² mask on
one core, the byte ANDs 0.03-0.15 s.
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
    frame's outside counts as outside) | reflect | replicate (for a square window both mean the outside does not
    erode: every reflected or replicated pixel is already inside the window)."""
    inside = mask > 0.5
    if radius <= 0:
        return inside
    outside_value = 0 if border == "constant" else 1
    x = F.pad(inside.to(torch.uint8), (radius,) * 4, value=outside_value)
    k = 2 * radius + 1
    return _window_and(_window_and(x, k, -1), k, -2).bool()


def _window_and(x: torch.Tensor, k: int, dim: int) -> torch.Tensor:
    """AND over every run of k along `dim` (length n -> n − k + 1) in log2(k) + 1 passes: runs of p = 2^j by
    doubling, then each k-run as two overlapping p-runs."""
    n, p = x.shape[dim], 1
    while 2 * p <= k:
        m = x.shape[dim] - p
        x = x.narrow(dim, 0, m) & x.narrow(dim, p, m)
        p *= 2
    m = n - k + 1
    return x.narrow(dim, 0, m) & x.narrow(dim, k - p, m)


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
