"""Patch grid geometry shared by training (datamodule) and inference (pipeline).

* `grid_boxes` / `split` / `assemble`: the R x C grid of full-resolution patches (paper: 8 x 8 of 512²).
* `sample_global`: the crop of a global-resolution map (Stage-1 output) that aligns with a full-resolution
  patch, resampled to the patch's pixel grid. It samples the *whole* global map at the patch's pixel
  centres, so neighbouring patches get continuous guides (cropping first and then upsampling would
  clamp at the crop border and put a seam into every guide).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F


class Box(NamedTuple):
    y: int
    x: int
    h: int
    w: int


def grid_boxes(height: int, width: int, patch: int) -> list[Box]:
    """Row-major boxes of a grid of `patch`-sized tiles covering an image whose sides are multiples of patch."""
    if height % patch or width % patch:
        raise ValueError(f"image {height}x{width} is not a multiple of the patch size {patch}; pad it first (pad_to_multiple)")
    return [Box(y, x, patch, patch) for y in range(0, height, patch) for x in range(0, width, patch)]


def split(image: torch.Tensor, patch: int) -> torch.Tensor:
    """B x C x H x W -> (B * R * C) x C x patch x patch, row-major per image."""
    b, c, h, w = image.shape
    grid_boxes(h, w, patch)  # validates
    tiles = image.unfold(2, patch, patch).unfold(3, patch, patch)  # B, C, R, Cg, p, p
    return tiles.permute(0, 2, 3, 1, 4, 5).reshape(-1, c, patch, patch)


def assemble(tiles: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Inverse of `split`: (B * rows * cols) x C x p x p -> B x C x (rows p) x (cols p)."""
    n, c, p, q = tiles.shape
    if n % (rows * cols):
        raise ValueError(f"{n} tiles do not fill a {rows}x{cols} grid")
    b = n // (rows * cols)
    return tiles.reshape(b, rows, cols, c, p, q).permute(0, 3, 1, 4, 2, 5).reshape(b, c, rows * p, cols * q)


def pad_to_multiple(image: torch.Tensor, multiple: int, mode: str = "replicate") -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad bottom/right so H and W are multiples of `multiple`; returns the padded image and the original size."""
    h, w = image.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        image = F.pad(image, (0, pw, 0, ph), mode=mode)
    return image, (h, w)


def sample_global(global_map: torch.Tensor, box: Box | tuple[int, int, int, int], full_size: tuple[int, int],
                  mode: str = "bilinear") -> torch.Tensor:
    """Resample `global_map` (B x C x h x w, covering the full image) onto the pixels of `box` in the full image.

    `full_size` is the full image's (H, W). Pixel centres follow the align_corners=False convention, so this
    equals `F.interpolate(global_map, size=full_size, mode=mode)[..., y:y+h, x:x+w]` without building the
    full-resolution map.
    """
    y, x, h, w = box
    full_h, full_w = full_size
    b = global_map.shape[0]
    dev, dt = global_map.device, global_map.dtype
    # Normalised coordinates (align_corners=False) of the full-res pixel centres in the box.
    ys = (torch.arange(y, y + h, device=dev, dtype=dt) + 0.5) / full_h * 2 - 1
    xs = (torch.arange(x, x + w, device=dev, dtype=dt) + 0.5) / full_w * 2 - 1
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).expand(b, h, w, 2)
    return F.grid_sample(global_map, grid, mode=mode, padding_mode="border", align_corners=False)
