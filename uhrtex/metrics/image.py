"""Masked full-reference metrics on B x C x H x W maps in [0, 1] (plain functions, one value per sample).

Masking (the evaluation region is a B x 1 x H x W mask, > 0.5 = inside):
* SSIM: both images are set to 0 outside the mask (so background never differs), torchmetrics' SSIM
  map (Gaussian 11x11, sigma 1.5, reflect padding) is computed on the whole frame, then averaged over
  the mask's pixels and all channels. Windows that straddle the mask border see the shared zero
  background, which is the same for prediction and target, so only in-mask differences lower the value.
* PSNR: torchmetrics' PSNR on the masked pixels only (MSE over mask pixels x channels).
* Angular error: degrees between decoded unit normals, averaged over the mask.
A sample whose mask is empty gives NaN (never a silent 0 or 1).
"""

from __future__ import annotations

import math

import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from uhrtex.maps import decode_normal


def _check(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if pred.shape != target.shape or pred.dim() != 4:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must both be B x C x H x W")
    if mask is None:
        return torch.ones_like(pred[:, :1], dtype=torch.bool)
    if mask.shape[0] != pred.shape[0] or mask.shape[1] != 1 or mask.shape[2:] != pred.shape[2:]:
        raise ValueError(f"mask {tuple(mask.shape)} must be B x 1 x H x W matching pred {tuple(pred.shape)}")
    return mask > 0.5


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-sample mean of B x C x H x W `values` over a boolean B x 1 x H x W mask (and all channels)."""
    m = mask.to(values.dtype).expand_as(values)
    count = m.flatten(1).sum(1)
    total = (values * m).flatten(1).sum(1)
    return torch.where(count > 0, total / count.clamp_min(1), torch.full_like(total, math.nan))


def ssim(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
         data_range: float = 1.0) -> torch.Tensor:
    """Masked SSIM per sample (B,). Identical images in the mask -> 1."""
    m = _check(pred, target, mask)
    mf = m.to(pred.dtype)
    _, full = structural_similarity_index_measure(pred.float() * mf, target.float() * mf, data_range=data_range,
                                                  return_full_image=True, reduction="none")
    return masked_mean(full, m)


def psnr(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
         data_range: float = 1.0) -> torch.Tensor:
    """Masked PSNR in dB per sample (B,). Identical images -> +inf."""
    m = _check(pred, target, mask)
    out = []
    for p, t, mk in zip(pred.float(), target.float(), m):
        sel = mk[0]
        if not sel.any():
            out.append(torch.tensor(math.nan))
            continue
        out.append(peak_signal_noise_ratio(p[:, sel], t[:, sel], data_range=data_range))
    return torch.stack(out)


def angular_error(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean angle in degrees between encoded normals ((n+1)/2, 3 channels) per sample (B,)."""
    m = _check(pred, target, mask)
    cos = (decode_normal(pred.float()) * decode_normal(target.float())).sum(1, keepdim=True)
    angle = torch.rad2deg(torch.acos(cos.clamp(-1.0, 1.0)))
    return masked_mean(angle, m)
