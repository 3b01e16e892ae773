"""Picture helpers shared by the W&B panels, the PNG previews and the comparison figures (plain torch + PIL).

Every panel is built from these: `to_rgb` (1/2/3 channels -> RGB), `show` (a map at display size, crisp when
enlarged), `face_centre` / `crop_box` (where to zoom), `grid` (samples × named maps, uint8 for W&B) and
`save_png` (atomic).
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from uhrtex.common.io import atomic_path


def to_rgb(x: torch.Tensor) -> torch.Tensor:
    """(B×)C×H×W in [0, 1] with C in {1, 2, 3} -> 3 channels (1 ch repeated; 2 ch (uv) gets a zero blue)."""
    x = x.detach().float().clamp(0, 1)
    c = x.shape[-3]
    if c == 1:
        return x.expand(*x.shape[:-3], 3, *x.shape[-2:])
    if c == 2:
        return torch.cat([x, torch.zeros_like(x.narrow(-3, 0, 1))], -3)
    return x.narrow(-3, 0, 3)


def show(x: torch.Tensor, size: int) -> torch.Tensor:
    """C×h×w -> 3×size×size: area-downsample big frames, nearest-enlarge small crops (pixels stay crisp). Resized
    before `to_rgb` widens it to three channels (a 4K specular map is resized once, not three times)."""
    x = x.detach().float().narrow(-3, 0, min(3, x.shape[-3]))[None]
    lo, hi = (float(v) for v in torch.aminmax(x))  # a read-only pass: the clamp's full-size copy only when needed
    x = x.clamp(0, 1) if lo < 0 or hi > 1 else x
    mode = "area" if x.shape[-1] > size else "nearest"
    return to_rgb(F.interpolate(x, size=(size, size), mode=mode)[0])


def face_centre(mask: torch.Tensor) -> tuple[int, int]:
    """(row, col) centroid of a 1×H×W mask; the frame centre when it is empty."""
    m = mask[0] > 0.5
    h, w = m.shape
    if not m.any():
        return h // 2, w // 2
    ys, xs = torch.nonzero(m, as_tuple=True)
    return int(ys.float().mean()), int(xs.float().mean())


def crop_box(centre: tuple[int, int], size: int, shape: tuple[int, int]) -> tuple[int, int, int]:
    """(y, x, size) of a square crop around `centre`, shifted to lie inside `shape`."""
    size = min(size, shape[0], shape[1])
    y = min(max(centre[0] - size // 2, 0), shape[0] - size)
    x = min(max(centre[1] - size // 2, 0), shape[1] - size)
    return y, x, size


def grid(columns: dict[str, torch.Tensor], max_rows: int = 4) -> torch.Tensor:
    """Rows = samples, columns = named B×C×H×W maps (resized to the first column's size): uint8 3×(rH)×(cW).

    uint8, because wandb.Image casts float tensors to bytes without scaling (a [0, 1] panel comes out black).
    """
    size = next(iter(columns.values())).shape[-2:]
    cols = []
    for x in columns.values():
        x = to_rgb(x[:max_rows])
        if x.shape[-2:] != size:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        cols.append(x)
    rows = torch.cat(cols, dim=3)  # B×3×H×(cW)
    return (torch.cat(list(rows), dim=1) * 255).round().to(torch.uint8).cpu()  # 3×(BH)×(cW)


def save_png(path: str | os.PathLike, x: torch.Tensor) -> None:
    """A 3×H×W float [0, 1] (or uint8) picture -> 8-bit PNG, written atomically."""
    arr = x.permute(1, 2, 0).cpu().numpy() if x.dtype == torch.uint8 else \
        (x.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255 + 0.5).astype(np.uint8)
    with atomic_path(path) as tmp:
        Image.fromarray(arr).save(tmp, format="PNG")


TITLE_HEIGHT = 18


def titled(x: torch.Tensor, text: str, height: int = TITLE_HEIGHT) -> torch.Tensor:
    """A 3×H×W picture with a dark title row of `height` px above it (figures, report rows)."""
    from PIL import ImageDraw

    row = Image.new("RGB", (x.shape[-1], height), (24, 24, 24))
    ImageDraw.Draw(row).text((6, 3), text, fill=(230, 230, 230))
    top = torch.from_numpy(np.array(row, dtype=np.float32) / 255).permute(2, 0, 1)
    return torch.cat([top.to(x), x.float()], -2)
