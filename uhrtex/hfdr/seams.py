"""Seam smoothing for assembled patch grids (paper §3.4, "anisotropic Gaussian filtering").

What the paper says: "we process the regions adjacent to the seams with a padding size of 8 pixels. For
horizontal seams, we apply a Gaussian kernel defined by x = 2 and y = 16; for vertical seams ... x = 16
and y = 2. Both ... σ = 5."

What `smooth_seams` implements, exactly:

* A *horizontal seam* is the line between rows s-1 and s for every s = k·patch (0 < s < H); vertical
  seams likewise between columns. Image borders are not seams.
* The *band* of a seam is the `band` = 8 rows on each side (rows s-8 … s+7): 16 rows per seam.
* The kernel is separable Gaussian, σ = 5 on both axes, long *across* the seam and short *along* it
  (horizontal seam: 16 tall × 2 wide). Even tap counts have no centre tap and would shift the band by
  half a pixel against its unfiltered surroundings, so each size k becomes the odd 2·⌊k/2⌋+1 taps
  centred on the pixel: 17 taps (offsets -8…8) across, 3 taps (offsets -1…1) along. Both are truncated
  to those taps and normalised to sum 1. Outside the image, values are replicated.
* Every band pixel is replaced by its filtered value (`feather=0`, the paper's hard band), or by a blend
  that fades from fully filtered at the seam to unfiltered at the band's edge (`feather=1`: raised
  cosine weight ½(1+cos(π·d/band)), d = distance of the pixel centre from the seam line) — this avoids
  a new, weaker edge where the blurred band meets the sharp interior.
* Horizontal seams are processed first, then vertical seams on that result (so seam crossings get both).
  Filtering reads the input of each pass only, never already-smoothed neighbouring bands.

Not in the paper, `keep_detail=True` (the pipeline's default): instead of replacing the band, add the jump
correction of `_keep_detail_band` to it, so the band keeps its pores (the paper's blur leaves a 16-px stripe
without any along every seam). `kernel[1]` and `feather` do not apply to it.
"""

from __future__ import annotations

import math

import kornia
import torch
import torch.nn.functional as F

__all__ = ["smooth_seams", "gaussian_taps", "seam_positions"]

PAPER_BAND = 8
PAPER_KERNEL = (16, 2)  # (across the seam, along the seam), in the paper's numbers
PAPER_SIGMA = 5.0
CORE_ROWS = 2  # keep_detail: rows each side of the seam that get a short blur across it (the patches' border effects)
EDGE_ROWS = 3  # keep_detail: rows each side's continuation past the seam is anchored on (averaging their detail out)


def gaussian_taps(size: int, sigma: float, dtype=torch.float32) -> torch.Tensor:
    """Normalised 1-D Gaussian with the odd tap count 2·⌊size/2⌋+1 (see module doc; kornia's kernel)."""
    r = max(int(size) // 2, 0)
    return kornia.filters.get_gaussian_kernel1d(2 * r + 1, float(sigma), device="cpu", dtype=torch.float64).reshape(-1).to(dtype)


def seam_positions(size: int, patch: int, offset: int = 0) -> list[int]:
    """Indices s of the first row/column after each interior seam of a grid starting at -offset."""
    return [s for s in range(patch - offset % patch, size, patch) if 0 < s < size]


def _keep_detail_band(x: torch.Tensor, s: int, a: int, z: int, patch: int, k_across: torch.Tensor) -> torch.Tensor:
    """Rows a..z-1 around the seam at s with only the low-frequency jump between the two patches smoothed.

    The jump is (the two-sided across filter) - (each side's own across filter, reading only its patch). A side
    is continued past the seam by point reflection about the mean of its last `EDGE_ROWS` rows, which continues
    a linear ramp exactly (an even mirror would bend every smooth gradient at the seam into a visible line); rows
    past the patch or the image are clamped. Blurred along the seam by the same taps, the jump carries no detail,
    and it is 0 beyond ±r rows, so the band meets its surroundings without an edge.
    """
    r, h, c = k_across.shape[2] // 2, x.shape[2], x.shape[1]
    top, bottom = max(a - r, 0), min(z + r, h)
    slab = x[:, :, top:bottom].contiguous()  # small; also makes the vertical pass's transposed view cheap to read

    def rows_of(index: torch.Tensor) -> torch.Tensor:
        return slab.index_select(2, (index - top).to(slab.device))

    both = F.conv2d(rows_of(torch.arange(a - r, z + r).clamp(0, h - 1)), k_across, groups=c)
    sides = []
    for lo, hi, first, last, inward in ((a, s, max(s - patch, 0), s - 1, -1), (s, z, s, min(s + patch, h) - 1, 1)):
        edge_rows = torch.arange(EDGE_ROWS) * inward + (s - 1 if inward < 0 else s)
        edge_rows = edge_rows.clamp(first, last)
        centre = edge_rows.double().mean()  # the point the side is reflected about (a row position)
        edge = rows_of(edge_rows).mean(2, keepdim=True)
        rows = torch.arange(lo - r, hi + r)
        past = rows >= s if inward < 0 else rows < s
        mirrored = (2 * centre - rows).round().long().clamp(first, last)
        values = rows_of(torch.where(past, mirrored, rows.clamp(first, last)))
        values = torch.where(past.view(1, 1, -1, 1).to(slab.device), 2 * edge - values, values)
        sides.append(F.conv2d(values, k_across, groups=c))
    step = both - torch.cat(sides, dim=2)
    step = F.conv2d(F.pad(step, (r, r, 0, 0), mode="replicate"), k_across.transpose(2, 3), groups=c)
    kept = slab[:, :, a - top:z - top] + step
    # The patches' outermost rows carry the network's own border effects (zero padding): a thin line that is not
    # pore detail. The CORE_ROWS rows on each side of the seam get a short binomial blur across it.
    core_lo, core_hi = max(s - CORE_ROWS, a), min(s + CORE_ROWS, z)
    if core_hi > core_lo:
        binomial = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], dtype=kept.dtype, device=kept.device) / 16
        rows = (torch.arange(core_lo - 2, core_hi + 2).clamp(a, z - 1) - a).to(kept.device)
        core = F.conv2d(kept.index_select(2, rows), binomial.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
        kept[:, :, core_lo - a:core_hi - a] = core
    # Like a blur, never outside the values it was made from (the pipeline's maps are [0, 1]).
    return kept.clamp_(*(float(v) for v in slab.aminmax()))


def _smooth_axis(x: torch.Tensor, patch: int, band: int, across: torch.Tensor, along: torch.Tensor,
                 feather: float, offset: int, keep_detail: bool = False) -> None:
    """Smooth seams between rows of `x` (B×C×H×W, possibly a transposed view), in place."""
    b, c, h, w = x.shape
    seams = seam_positions(h, patch, offset)
    if not seams:
        return
    r, q = across.numel() // 2, along.numel() // 2
    dev, dt = x.device, x.dtype
    k_across = across.to(dev, dt).view(1, 1, -1, 1).expand(c, 1, -1, 1)
    k_along = along.to(dev, dt).view(1, 1, 1, -1).expand(c, 1, 1, -1)

    out = []
    for s in seams:  # filter every band from this pass's input before writing any of them
        a, z = max(s - band, 0), min(s + band, h)  # the band's rows inside the image
        if keep_detail:
            out.append((a, z, _keep_detail_band(x, s, a, z, patch, k_across)))
            continue
        lo, hi = a - r, z + r
        slab = x[:, :, max(lo, 0):min(hi, h)]
        if q or lo < 0 or hi > h:
            slab = F.pad(slab, (q, q, max(-lo, 0), max(hi - h, 0)), mode="replicate")
        y = F.conv2d(slab, k_across, groups=c)  # valid across: exactly the band's rows
        y = F.conv2d(y, k_along, groups=c)  # valid along: the replicate pad above keeps the width
        if feather:
            # Raised-cosine weight by the distance of each row centre from the seam line.
            d = (torch.arange(a, z, device=dev, dtype=torch.float64) + 0.5 - s).abs()
            wgt = 1.0 - feather * (1.0 - 0.5 * (1.0 + torch.cos(math.pi * d / band)))
            y = torch.lerp(x[:, :, a:z], y, wgt.to(dt).view(1, 1, -1, 1))
        out.append((a, z, y))
    for a, z, y in out:
        x[:, :, a:z].copy_(y)


@torch.no_grad()
def smooth_seams(image: torch.Tensor, patch: int | tuple[int, int], band: int = PAPER_BAND,
                 kernel: tuple[int, int] = PAPER_KERNEL, sigma: float = PAPER_SIGMA, feather: float = 0.0,
                 inplace: bool = False, offset: tuple[int, int] = (0, 0), keep_detail: bool = False) -> torch.Tensor:
    """Anisotropic Gaussian on ±`band` px around the seams of a `patch`-sized grid (see module doc).

    `image` is B×C×H×W (or C×H×W); `patch` an int or (patch_h, patch_w); `kernel` = (across, along) taps
    in the paper's numbers. `band` is clamped to half a patch. `offset` = (rows, cols) by which the image
    starts inside the grid (a crop of a padded grid: seams at k·patch - offset). New tensor unless `inplace`.
    `keep_detail` (not in the paper): smooth only the low-frequency jump between patches, not the band's detail.
    """
    squeeze = image.dim() == 3
    x = image.unsqueeze(0) if squeeze else image
    if x.dim() != 4:
        raise ValueError(f"smooth_seams expects C×H×W or B×C×H×W, got shape {tuple(image.shape)}")
    if not 0.0 <= feather <= 1.0:
        raise ValueError(f"feather must be in [0, 1], got {feather}")
    ph, pw = (patch, patch) if isinstance(patch, int) else patch
    if not inplace:
        x = x.clone()
    across, along = gaussian_taps(kernel[0], sigma), gaussian_taps(kernel[1], sigma)
    if band > 0:
        _smooth_axis(x, ph, min(band, ph // 2), across, along, feather, offset[0], keep_detail)  # horizontal seams
        _smooth_axis(x.transpose(-1, -2), pw, min(band, pw // 2), across, along, feather, offset[1], keep_detail)  # vertical
    return x[0] if squeeze else x
