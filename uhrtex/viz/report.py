"""`report.png`: one picture of a reconstruction, the first thing to look at.

    input crop (face box + landmarks) | albedo | micronormal | specular | UV albedo | UV photo | relit preview

`UV photo` is the portrait itself unwrapped with the same geometry (observed texels only): where the face lands in
the UV layout, independent of what the networks predict.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from PIL import Image, ImageDraw

from uhrtex.viz.panels import show

PANEL = 384
TITLES = ("input", "albedo", "micronormal", "specular", "UV albedo", "UV photo")


def _picture(x: torch.Tensor, size: int) -> Image.Image:
    return Image.fromarray((show(x, size).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8))


def _annotated_input(image: torch.Tensor, landmarks: np.ndarray | None, box, size: int) -> Image.Image:
    h, w = image.shape[-2:]
    pic = _picture(image, size)
    if landmarks is None:
        return pic
    d = ImageDraw.Draw(pic)
    sx, sy = size / w, size / h
    for x, y in landmarks[:, :2]:
        d.ellipse([x * sx - 1, y * sy - 1, x * sx + 1, y * sy + 1], fill=(60, 255, 60))
    if box is not None:
        x, y, bw, bh = box
        d.rectangle([x * sx, y * sy, (x + bw) * sx, (y + bh) * sy], outline=(255, 200, 0), width=2)
    return pic


def report_image(image: torch.Tensor, maps: Mapping[str, torch.Tensor], uv_albedo: torch.Tensor | None,
                 preview: torch.Tensor | None, landmarks: np.ndarray | None = None, box=None,
                 size: int = PANEL, uv_photo: torch.Tensor | None = None) -> torch.Tensor:
    """3×(size+title)×(n·size) float in [0, 1]: the panels that exist, titled, left to right."""
    pics = [_annotated_input(image, landmarks, box, size)]
    panels = (image, maps["albedo"], maps["micronormal"], maps["specular"], uv_albedo, uv_photo)
    for x in panels[1:]:
        if x is not None:
            pics.append(_picture(x, size))
    titles = [t for t, x in zip(TITLES, panels) if x is not None]
    if preview is not None:  # the preview's lightings side by side: keep its aspect, height = size
        pics.append(_picture(preview[:, :, : preview.shape[1]], size))
        titles.append("preview")
    title_h = 18
    sheet = Image.new("RGB", (size * len(pics), size + title_h), (24, 24, 24))
    d = ImageDraw.Draw(sheet)
    for i, (pic, t) in enumerate(zip(pics, titles)):
        sheet.paste(pic, (i * size, title_h))
        d.text((i * size + 6, 3), t, fill=(230, 230, 230))
    return torch.from_numpy(np.array(sheet, dtype=np.float32) / 255).permute(2, 0, 1).contiguous()
