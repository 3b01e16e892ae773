"""Does a reconstructed albedo look like skin? `off_skin_blob`: the largest 8-connected region inside the face mask
whose colour is not a skin hue (HSV hue outside [−20°, 70°] with saturation ≥ 0.25: green, blue, purple blotches),
as a fraction of the mask. Skin of every tone sits inside that hue range (red through yellow-orange); a few stray
pixels (eyes, lashes) form small regions, a blotch a large one.
"""

from __future__ import annotations

import math

import kornia
import numpy as np
import torch

HUE_RANGE_DEG = (-20.0, 70.0)
MIN_SATURATION = 0.25
_CHUNK = 1 << 18  # pixels per colour conversion


def off_skin_pixels(albedo: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """H×W bool: inside the mask (> 0.5), saturated and outside the skin hues. `albedo`: 3×H×W sRGB in [0, 1]."""
    inside = mask.reshape(albedo.shape[-2:]) > 0.5
    idx = inside.reshape(-1).nonzero().flatten()  # colour-converted inside the mask only (a face: ~1/3 of a portrait)
    flat, (lo, hi) = albedo.reshape(3, -1), HUE_RANGE_DEG
    out = torch.zeros(inside.numel(), dtype=torch.bool)
    # In cache-sized chunks: the conversion is a dozen memory-bound passes; over a 4K face's ~6 M pixels at once
    # each pass streams from memory (0.9 s), chunked they stay in cache (0.2 s), with the same values.
    for s0 in range(0, idx.numel(), _CHUNK):
        i = idx[s0:s0 + _CHUNK]
        rgb = flat.index_select(1, i).float().clamp_(0, 1)
        hsv = kornia.color.rgb_to_hsv(rgb[:, None])[:, 0]  # hue in radians [0, 2π)
        hue = torch.rad2deg(hsv[0])
        hue = torch.where(hue > 180, hue - 360, hue)
        out[i] = (hsv[1] >= MIN_SATURATION) & ((hue < lo) | (hue > hi))
    return out.view_as(inside)


def off_skin_blob(albedo: torch.Tensor, mask: torch.Tensor) -> float:
    """Area of the largest 8-connected off-skin region / the mask's area (0 for an empty mask)."""
    import cv2  # its 8-connected labelling: the areas of scipy.ndimage.label's, in half the time at 4K

    off = off_skin_pixels(albedo, mask).cpu().numpy()
    area = float((mask > 0.5).sum())
    if area == 0 or not off.any():
        return 0.0
    n, _, stats, _ = cv2.connectedComponentsWithStats(off.view(np.uint8), connectivity=8)
    largest = int(stats[1:, cv2.CC_STAT_AREA].max()) if n > 1 else 0
    return float(largest) / area if not math.isnan(area) else 0.0
