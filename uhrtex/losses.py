"""Training losses (paper §3.3/§3.4): L1 + λ·Laplacian, over all channels, optionally masked.

    L = mean|P - T| + λ · mean|K * P - K * T|,   K = [[0, 1, 0], [1, -4, 1], [0, 1, 0]]

`band_loss` (not in the paper) adds an L1 error on the detail band alone, which (with a masked loss and the HFDR's
detail branch) made the HFDR's micronormal and specular detail correlate with the GT (docs/results.md).
The loss's band is `networks.unet.detail_band` (x − up(avgpool₄ x): above the guide's resolution, where the HFDR's
job starts, and cheap at every step), not the tables' ×8 Gaussian band (`metrics.detail.high_pass`): on the GT maps
of 6 ICT captures at 2048² the two correlate 0.95 / 0.97 / 0.98 (albedo / micronormal / specular) and the loss band
holds 64 / 80 / 92 % of the metric band's energy, so the loss trains what the tables score.
`band_energy_loss` compares the band's local amplitude only, not its placement: pointwise losses shrink detail
whose exact position the network is unsure of (the PSNR-optimal amplitude is the correlation times the GT's),
so this term is what keeps the recovered detail visible (docs/results.md, "muted detail").

The Laplacian is a "valid" convolution (no padding), so image borders add no fake edges.
With a mask, both terms are masked means: L1 over pixels with mask > 0 (weighted by the mask), the
Laplacian over pixels whose whole 3×3 cross stencil lies inside the mask (so the face outline is not
an edge the network must reproduce). GDE uses λ = 1, HFDR λ = 2.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from uhrtex.maps import Layout
from uhrtex.networks.unet import detail_band

LAPLACIAN_KERNEL = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])
_CROSS = torch.tensor([[0.0, 1.0, 0.0], [1.0, 1.0, 1.0], [0.0, 1.0, 0.0]])


def laplacian(x: torch.Tensor) -> torch.Tensor:
    """Per-channel 3×3 Laplacian, valid convolution: B×C×H×W -> B×C×(H-2)×(W-2)."""
    c = x.shape[1]
    k = LAPLACIAN_KERNEL.to(x.device, x.dtype).expand(c, 1, 3, 3)
    return F.conv2d(x, k, groups=c)


def _stencil_mask(mask: torch.Tensor) -> torch.Tensor:
    """Binary B×1×H×W mask -> B×1×(H-2)×(W-2): 1 where all five stencil pixels are inside."""
    inside = (mask > 0).to(mask.dtype)
    count = F.conv2d(inside, _CROSS.to(mask.device, mask.dtype)[None, None])
    return (count > 4.5).to(mask.dtype)


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over all elements, or over (pixel, channel) pairs weighted by a B×1×H×W mask (0 if it is empty)."""
    if mask is None:
        return x.mean()
    w = mask.expand_as(x)
    return (x * w).sum() / w.sum().clamp_min(1e-8)


def pixel_laplacian_loss(pred: torch.Tensor, target: torch.Tensor, laplacian_weight: float = 1.0,
                         mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """{"loss": l1 + λ·laplacian, "l1": the pixel term, "laplacian": ...}; mask is B×1×H×W in [0, 1] or None."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    if mask is not None and (mask.shape[1] != 1 or mask.shape[-2:] != pred.shape[-2:]):
        raise ValueError(f"mask must be B×1×{pred.shape[-2]}×{pred.shape[-1]}, got {tuple(mask.shape)}")
    pixel = masked_mean((pred - target).abs(), mask)
    terms = {"l1": pixel}
    if laplacian_weight:
        lap_mask = None if mask is None else _stencil_mask(mask)
        lap = masked_mean((laplacian(pred) - laplacian(target)).abs(), lap_mask)
        terms["laplacian"] = lap
        terms["loss"] = pixel + laplacian_weight * lap
    else:
        terms["loss"] = pixel
    return terms


def band_loss(pred: torch.Tensor, target: torch.Tensor, factor: int, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean L1 error of the detail bands (not in the paper). The HFDR's job is the band the guide
    cannot carry; on full maps that band is a small, sparse part of the error (low-frequency guide errors
    dominate). Supervising the band itself gives it its own gradient (docs/results.md, detail preset)."""
    return masked_mean((detail_band(pred, factor) - detail_band(target, factor)).abs(), mask)


def band_energy_loss(pred: torch.Tensor, target: torch.Tensor, factor: int, mask: torch.Tensor | None = None,
                     eps: float = 1e-6, channel_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean |local RMS of pred's detail band − the target's| over non-overlapping (2·factor)² cells, per channel,
    cells weighted by the fraction of their pixels inside the mask (not in the paper). Blind to where inside a
    cell the detail sits, so it rewards showing detail at the GT's amplitude, and the band loss placing it.
    The ring of cells along the crop's border is left out: there, zero padding tells the network where it is,
    and a bright line along the border would be cheap energy (it appeared at the patch seams when it was in).
    Crops under 3 cells a side have no such cell: the term is 0 there. `channel_weight` (C values) scales each
    channel's error before the mean (`channel_weights`: one weight per map)."""
    cell = 2 * max(int(factor), 1)
    h, w = pred.shape[-2:]
    if min(h, w) < 3 * cell:  # no cell away from the border (e.g. a low-resolution baseline's 8² patches)
        return pred.sum() * 0.0
    if h % cell or w % cell:
        raise ValueError(f"band_energy_loss needs H and W divisible by 2·band_factor = {cell}, got {(h, w)}")
    rms = lambda x: (F.avg_pool2d(detail_band(x, factor).square(), cell) + eps).sqrt()  # noqa: E731
    weight = torch.ones(1, 1, h // cell, w // cell, dtype=pred.dtype, device=pred.device) if mask is None \
        else F.avg_pool2d(mask, cell)
    weight = F.pad(weight[..., 1:-1, 1:-1], (1, 1, 1, 1))
    err = (rms(pred) - rms(target)).abs()
    if channel_weight is not None:
        err = err * channel_weight.to(err)[None, :, None, None]
    return masked_mean(err, weight)


def channel_weights(weights: float | Mapping[str, float], layout: Layout) -> tuple[float, torch.Tensor | None]:
    """A loss weight given as one number or per map ({albedo: 20, micronormal: 5, specular: 20}, every map of
    `layout`) -> (overall weight, per-channel weights relative to it or None). The split keeps a per-map dict with
    equal values identical to that single number."""
    if not isinstance(weights, Mapping):
        return float(weights), None
    if set(weights) != set(layout.names):
        raise ValueError(f"per-map loss weights {dict(weights)} must name exactly the maps {list(layout.names)}; "
                         "or give one number for all")
    top = max(float(w) for w in weights.values())
    if top <= 0:
        return 0.0, None
    per = torch.cat([torch.full((layout.width(n),), float(weights[n]) / top) for n in layout.names])
    return top, per
