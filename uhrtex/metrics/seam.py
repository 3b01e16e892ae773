"""Seam metric: how visible the patch grid is in an assembled map.

    seam = mean squared gradient across patch-boundary lines / mean squared gradient across reference lines

Gradients are forward differences between neighbouring pixels, horizontally and vertically, pooled over both
directions and all channels. A difference lies on a boundary line when its two pixels belong to different
patches (columns p-1|p, 2p-1|2p, ...). The reference lines are the interior lines at a quarter, half and
three quarters of each patch (p/4-1|p/4, ...): they have the same phase as the boundaries under any resampling
by a factor dividing p/4 - e.g. the 4x bilinear upsampling of the global guide - so a smooth upsampled map
without seams gives ~1 (against *all* interior lines it would not: the gradient of an upsampled map depends
on the phase). Patches whose side is not a multiple of 4 use all interior lines as reference.

1.0: boundaries look like any other line (invisible seams); > 1: visible jumps; < 1: the seams are smoother
than the rest (seam smoothing, or detail fading towards the patch borders). Only differences whose two pixels
are inside the mask count. A map without any gradient gives 1.0.
"""

from __future__ import annotations

import torch

EPS = 1e-12


def line_kinds(n: int, patch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean masks over the n-1 differences (i, i+1): (boundary lines, reference lines)."""
    pos = (torch.arange(n - 1) + 1) % patch  # position of pixel i+1 inside its patch
    boundary = pos == 0
    if patch % 4 == 0:
        reference = (pos == patch // 4) | (pos == patch // 2) | (pos == 3 * patch // 4)
    else:
        reference = ~boundary
    return boundary, reference


def seam_energies(x: torch.Tensor, patch: int, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample (B,) mean squared gradient on boundary lines and on reference lines."""
    if x.dim() != 4:
        raise ValueError(f"expected B x C x H x W, got {tuple(x.shape)}")
    if patch < 2:
        raise ValueError(f"patch size must be >= 2, got {patch}")
    b, c, h, w = x.shape
    m = torch.ones_like(x[:, :1]) if mask is None else (mask > 0.5).to(x.dtype)
    x = x.float()
    sums, counts = torch.zeros(2, b), torch.zeros(2, b)
    for dim, n in ((3, w), (2, h)):
        d = x.diff(dim=dim).pow(2).sum(1, keepdim=True)  # B x 1 x ...: squared gradient summed over channels
        valid = m.narrow(dim, 0, n - 1) * m.narrow(dim, 1, n - 1)
        shape = [1, 1, 1, 1]
        shape[dim] = n - 1
        for k, sel in enumerate(line_kinds(n, patch)):
            sel = sel.view(shape).to(x.dtype)
            sums[k] += (d * valid * sel).flatten(1).sum(1).cpu()
            counts[k] += (valid * sel).flatten(1).sum(1).cpu() * c
    mean = sums / counts.clamp_min(1)
    return mean[0], mean[1]


def seam_metric(x: torch.Tensor, patch: int, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per sample (B,): boundary-line gradient energy / reference-line gradient energy (1.0 = invisible seams)."""
    boundary, reference = seam_energies(x, patch, mask)
    return (boundary + EPS) / (reference + EPS)
