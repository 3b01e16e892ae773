"""Seam metric: how visible the patch grid is in an assembled map.

    seam = mean squared gradient across patch-boundary lines / mean squared gradient across interior lines

Gradients are forward differences between neighbouring pixels, horizontally and vertically. A difference
lies on a boundary line when its two pixels belong to different patches (columns p-1|p, 2p-1|2p, ...).
Both directions are pooled, channels too. 1.0 means the boundaries look like any other line (invisible
seams); > 1 visible seams (jumps); < 1 seams blurred more than the rest (over-smoothing). Only differences
whose two pixels are inside the mask count. A map without any gradient gives 1.0.
"""

from __future__ import annotations

import torch

EPS = 1e-12


def seam_energies(x: torch.Tensor, patch: int, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample (B,) mean squared gradient on boundary lines and on interior lines."""
    if x.dim() != 4:
        raise ValueError(f"expected B x C x H x W, got {tuple(x.shape)}")
    if patch < 2:
        raise ValueError(f"patch size must be >= 2, got {patch}")
    b, _, h, w = x.shape
    m = torch.ones_like(x[:, :1]) if mask is None else (mask > 0.5).to(x.dtype)
    x = x.float()
    sums = {True: torch.zeros(b), False: torch.zeros(b)}
    counts = {True: torch.zeros(b), False: torch.zeros(b)}
    for dim, n in ((3, w), (2, h)):
        d = x.diff(dim=dim).pow(2).sum(1, keepdim=True)  # B x 1 x ...: squared gradient summed over channels
        valid = m.narrow(dim, 0, n - 1) * m.narrow(dim, 1, n - 1)
        on_line = (torch.arange(n - 1) + 1) % patch == 0  # difference between pixel i and i+1 crosses a boundary
        shape = [1, 1, 1, 1]
        shape[dim] = n - 1
        on_line = on_line.view(shape).to(x.dtype)
        for boundary, sel in ((True, on_line), (False, 1 - on_line)):
            sums[boundary] += (d * valid * sel).flatten(1).sum(1).cpu()
            counts[boundary] += (valid * sel).expand_as(d).flatten(1).sum(1).cpu() * x.shape[1]
    mean = {k: sums[k] / counts[k].clamp_min(1) for k in sums}
    return mean[True], mean[False]


def seam_metric(x: torch.Tensor, patch: int, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per sample (B,): boundary-line gradient energy / interior-line gradient energy (1.0 = invisible seams)."""
    boundary, interior = seam_energies(x, patch, mask)
    return (boundary + EPS) / (interior + EPS)
