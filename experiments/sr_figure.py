"""A Fig.-style crop comparison of the two SR baselines on a real photo (skimage's astronaut, NASA, public domain).

    python -m experiments.sr_figure --out /tmp/sr_compare.png

A ``size``² crop of the photo is area-downsampled ×``factor`` (the low-res input), then brought back by
bicubic and by Real-ESRGAN x4plus. Panels, left to right: input (nearest, so its pixels show) | bicubic |
Real-ESRGAN | the original crop. Prints one JSON line: PSNR of each against the original, a gradient
(edge) energy ratio to the original, and the Real-ESRGAN wall time.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from uhrtex.common.io import write_png
from uhrtex.sr import bicubic_upscale, load_realesrgan_x4plus, upscale


def _grad(z: torch.Tensor) -> float:
    return float((z[:, 1:] - z[:, :-1]).abs().mean() + (z[..., 1:] - z[..., :-1]).abs().mean())


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(-10 * torch.log10(((a - b) ** 2).mean()))


def _label(panel: torch.Tensor, text: str) -> np.ndarray:
    img = Image.fromarray(np.round(panel.permute(1, 2, 0).numpy() * 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    draw.rectangle([0, 0, 8 + 6 * len(text), 14], fill=(0, 0, 0))
    draw.text((4, 2), text, fill=(255, 255, 255))
    return np.asarray(img)


def compare_figure(out: str, y0: int = 40, x0: int = 120, size: int = 256, factor: int = 4, zoom: int = 2) -> dict:
    from skimage import data

    orig = torch.from_numpy(np.ascontiguousarray(data.astronaut()[y0:y0 + size, x0:x0 + size])).permute(2, 0, 1)
    orig = orig.float() / 255
    low = F.avg_pool2d(orig[None], factor)[0]
    load_realesrgan_x4plus()  # load outside the timing
    start = time.perf_counter()
    sr = upscale(low, scale=factor)
    seconds = time.perf_counter() - start
    bic = bicubic_upscale(low, factor)
    near = F.interpolate(low[None], scale_factor=factor, mode="nearest")[0]
    panels = [(near, f"input {low.shape[-1]}px"), (bic, f"bicubic x{factor}"),
              (sr, f"Real-ESRGAN x{factor}"), (orig, "original")]
    row = np.concatenate([_label(F.interpolate(p[None], scale_factor=zoom, mode="nearest")[0], t) for p, t in panels], 1)
    write_png(out, torch.from_numpy(row).permute(2, 0, 1).float() / 255)
    g = _grad(orig)
    return {"out": out, "input": list(low.shape[-2:]), "factor": factor, "realesrgan_s": round(seconds, 2),
            "psnr_bicubic": round(_psnr(bic, orig), 2), "psnr_realesrgan": round(_psnr(sr, orig), 2),
            "grad_ratio_bicubic": round(_grad(bic) / g, 3), "grad_ratio_realesrgan": round(_grad(sr) / g, 3),
            "mean_abs_realesrgan_minus_bicubic": round(float((sr - bic).abs().mean()), 4)}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="sr_compare.png")
    p.add_argument("--y0", type=int, default=40)
    p.add_argument("--x0", type=int, default=120)
    p.add_argument("--size", type=int, default=256, help="crop side in the original photo (512² astronaut)")
    p.add_argument("--factor", type=int, default=4)
    p.add_argument("--zoom", type=int, default=2, help="nearest-neighbour display zoom of every panel")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: leave as is)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    print(json.dumps(compare_figure(a.out, a.y0, a.x0, a.size, a.factor, a.zoom)))


if __name__ == "__main__":
    main()
