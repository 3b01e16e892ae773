"""Detail-band metrics: how well a prediction reproduces the detail a x`factor` low-resolution input cannot carry.

The band. `high_pass(x) = x - G_sigma * x`, a Gaussian high-pass with sigma = factor * sqrt(2 ln 2) / pi
(3.0 px for factor 8), truncated at 3 sigma. Its response 1 - exp(-2 pi^2 sigma^2 nu^2) is exactly 1/2 at the
low-resolution Nyquist frequency nu = 1 / (2 factor) cycles/px, 0.03 (power) an octave below and 0.94 an
octave above, so it keeps what a x`factor` downsample loses and drops what it keeps. We prefer it to
x - upsample(downsample(x)) because it is shift-invariant (values do not depend on where the 8-px grid falls,
so a prediction shifted by a pixel is not penalised by aliasing), isotropic (it matches the radial spectrum)
and has a known finite support, which fixes the mask erosion below.

Masking. Statistics use only pixels whose whole filter footprint (a (2r+1)^2 square, r = ceil(3 sigma)) lies
in the mask: the mask is eroded by r, so the step at the mask edge (background set to 0, coverage holes)
never shows up as band energy. Image borders are reflect-padded (image and mask alike). A sample whose eroded
mask is empty gives NaN (the project's rule: never a silent 0 or 1).

Metrics per sample, on the band signals p = high_pass(pred), g = high_pass(gt) over the eroded mask and all
channels of one map (per map of `maps.TEXTURE` in `detail_metrics`):
* `band_psnr`  10 log10(1 / mean (p - g)^2), dB, data range 1. Higher is better; +inf = exact detail. A
               blurred prediction (p = 0) scores 10 log10(1 / mean g^2), the "no detail" floor of that GT.
* `band_corr`  Pearson correlation of p and g in [-1, 1]: is the detail in the right place (scale-free).
               Higher is better; 1 = in phase, ~0 = unrelated (e.g. detail shifted by its own scale).
* `hf_ratio`   mean p^2 / mean g^2, the band's power ratio: 0 = blurred, 1 = as much detail as GT, > 1 =
               invented detail (noise, hallucinated texture). Best at 1; read it together with band_corr.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch

from uhrtex.common.imaging import erode, gaussian_blur

from uhrtex.maps import TEXTURE, Layout

TRUNCATE = 3.0
DIRECTIONS = {"band_psnr": "higher is better", "band_corr": "higher is better", "hf_ratio": "best at 1"}


def band_sigma(factor: float) -> float:
    """Gaussian sigma (px) whose high-pass has half amplitude at the x`factor` low-resolution Nyquist."""
    if not factor > 1:
        raise ValueError(f"factor must be > 1 (the input's downsampling factor), got {factor}")
    return factor * math.sqrt(2 * math.log(2)) / math.pi


def band_radius(factor: float) -> int:
    """Half-width of the band filter's support (px); the mask is eroded by this much."""
    return math.ceil(TRUNCATE * band_sigma(factor))


def high_pass(x: torch.Tensor, factor: float = 8) -> torch.Tensor:
    """The detail band of B x C x H x W maps: x - Gaussian(x), sigma = `band_sigma(factor)`."""
    r = band_radius(factor)
    if x.dim() != 4 or min(x.shape[-2:]) <= r:
        raise ValueError(f"need B x C x H x W maps larger than {r} px a side for factor {factor}, got "
                         f"{tuple(x.shape)}; use a smaller factor or larger maps")
    x = x.float()
    return x - gaussian_blur(x, band_sigma(factor), r)


def band_mask(mask: torch.Tensor | None, like: torch.Tensor, factor: float = 8) -> torch.Tensor:
    """Boolean B x 1 x H x W: pixels whose whole band-filter footprint is inside `mask` (> 0.5)."""
    b, _, h, w = like.shape
    if mask is None:
        return torch.ones(b, 1, h, w, dtype=torch.bool, device=like.device)
    if mask.dim() != 4 or mask.shape[1] != 1 or mask.shape[0] != b or mask.shape[2:] != like.shape[2:]:
        raise ValueError(f"mask {tuple(mask.shape)} must be B x 1 x H x W = {(b, 1, h, w)}; pass one mask channel "
                         "per sample at the maps' size")
    return erode(mask, band_radius(factor), border="reflect")


def _check(pred: torch.Tensor, gt: torch.Tensor) -> None:
    if pred.dim() != 4 or pred.shape != gt.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and gt {tuple(gt.shape)} must be B x C x H x W of one shape; "
                         "resize the prediction to the GT first")


def band_stats(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None = None,
               factor: float = 8) -> dict[str, torch.Tensor]:
    """Per sample (B,) band statistics: `pred`, `gt` (mean power), `err` (mean squared difference), `corr`."""
    _check(pred, gt)
    m = band_mask(mask, pred, factor).float()
    p, g = high_pass(pred, factor), high_pass(gt, factor)
    n = m.flatten(1).double().sum(1) * pred.shape[1]
    count = n.clamp_min(1)

    def mean(v: torch.Tensor) -> torch.Tensor:  # float32 maps, float64 sums
        return (v * m).flatten(1).double().sum(1) / count

    area = m.sum((2, 3), keepdim=True).clamp_min(1)
    cp, cg = p - (p * m).sum((2, 3), keepdim=True) / area, g - (g * m).sum((2, 3), keepdim=True) / area
    vp, vg, cov = mean(cp * cp), mean(cg * cg), mean(cp * cg)
    corr = torch.where(vp > 0, cov / (vp * vg).sqrt().clamp_min(1e-300), torch.zeros_like(cov))
    out = {"pred": mean(p * p), "gt": mean(g * g), "err": mean((p - g) ** 2),
           "corr": torch.where(vg > 0, corr, torch.full_like(corr, math.nan))}
    return {k: v.where(n > 0, math.nan).float().cpu() for k, v in out.items()}


def band_energy(x: torch.Tensor, mask: torch.Tensor | None = None, factor: float = 8) -> torch.Tensor:
    """Per sample (B,) mean power of the detail band of x over the eroded mask."""
    return band_stats(x, x, mask, factor)["gt"]


def _psnr(err: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:  # NaN stays NaN, 0 error gives +inf
    return torch.where(err > 0, 10 * torch.log10(data_range ** 2 / err.clamp_min(1e-30)), err.where(err.isnan(), math.inf))


def _ratio(s: Mapping[str, torch.Tensor]) -> torch.Tensor:
    return torch.where(s["gt"] > 0, s["pred"] / s["gt"].clamp_min(1e-30), torch.full_like(s["gt"], math.nan))


def band_psnr(pred, gt, mask=None, factor: float = 8, data_range: float = 1.0) -> torch.Tensor:
    """(B,) PSNR of the detail band, dB (higher is better; +inf = exact)."""
    return _psnr(band_stats(pred, gt, mask, factor)["err"], data_range)


def band_correlation(pred, gt, mask=None, factor: float = 8) -> torch.Tensor:
    """(B,) Pearson correlation of the predicted and GT detail bands (higher is better; NaN if GT has none)."""
    return band_stats(pred, gt, mask, factor)["corr"]


def hf_energy_ratio(pred, gt, mask=None, factor: float = 8) -> torch.Tensor:
    """(B,) detail-band power of pred over GT: 0 blurred, 1 matched, > 1 invented detail (NaN if GT has none)."""
    return _ratio(band_stats(pred, gt, mask, factor))


def detail_applicable(h: int, w: int, factor: float = 8) -> bool:
    """Whether maps of h x w can have any pixel whose band footprint fits (else the metrics are NaN/undefined)."""
    return min(h, w) > 2 * band_radius(factor)


def detail_metrics(pred: torch.Tensor | Mapping[str, torch.Tensor], gt: torch.Tensor | Mapping[str, torch.Tensor],
                   mask: torch.Tensor | None = None, factor: float = 8, layout: Layout = TEXTURE,
                   names=None) -> dict[str, torch.Tensor]:
    """`<map>/band_psnr`, `<map>/band_corr`, `<map>/hf_ratio` (each (B,)) for every map of `layout` (or `names`).

    pred/gt: B x C x H x W in `layout` order, or {map: B x c x H x W}. Works the same in image space (mask = face
    region) and UV space (mask = texel coverage)."""
    p = layout.split(pred) if isinstance(pred, torch.Tensor) else pred
    g = layout.split(gt) if isinstance(gt, torch.Tensor) else gt
    out = {}
    for name in (layout.names if names is None else names):
        if name not in p or name not in g:
            raise ValueError(f"map '{name}' is missing from pred or gt; pass names= with the maps both have")
        s = band_stats(p[name], g[name], mask, factor)
        out[f"{name}/band_psnr"], out[f"{name}/band_corr"], out[f"{name}/hf_ratio"] = _psnr(s["err"]), s["corr"], _ratio(s)
    return out


def radial_power_spectrum(x: torch.Tensor, mask: torch.Tensor | None = None, taper: int = 8,
                          bins: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Radially averaged power spectrum of B x C x H x W maps: (frequency (n,) in cycles/px, power (B, n)).

    The signal minus its (masked) mean is windowed before the FFT so edges do not leak power: a separable Hann
    window without a mask; with one, the mask eroded by `taper` px (outside the frame counts as outside) and
    blurred (sigma taper/3, support taper) to fall smoothly to 0 at the mask edge.
    Power is |FFT|^2 / sum(window^2), averaged over channels."""
    if x.dim() != 4:
        raise ValueError(f"expected B x C x H x W, got {tuple(x.shape)}; add a batch dimension with x[None]")
    b, _, h, w = x.shape
    x = x.float()
    if mask is None:
        win = torch.outer(torch.hann_window(h, periodic=False), torch.hann_window(w, periodic=False))
        win = win.to(x.device).expand(b, 1, h, w)
    else:
        if mask.shape != (b, 1, h, w):
            raise ValueError(f"mask {tuple(mask.shape)} must be B x 1 x H x W = {(b, 1, h, w)}")
        m = erode(mask, taper, border="constant").float()
        win = gaussian_blur(m, max(taper / 3, 0.5), taper, border="constant")  # 0 beyond the original mask, smooth edge
    wsum = win.sum((2, 3), keepdim=True)
    mean = (x * win).sum((2, 3), keepdim=True) / wsum.clamp_min(1e-12)
    spec = torch.fft.fft2((x - mean) * win).abs().pow(2).mean(1) / win.pow(2).sum((1, 2, 3))[:, None, None].clamp_min(1e-12)
    fy, fx = torch.fft.fftfreq(h, device=x.device), torch.fft.fftfreq(w, device=x.device)
    radius = (fy[:, None] ** 2 + fx[None, :] ** 2).sqrt()
    n = bins or min(h, w) // 2
    idx = (radius / 0.5 * n).long().flatten()
    keep = (idx < n) & (idx > 0)  # drop DC (the mean is removed) and the corners beyond 0.5 cycles/px
    counts = torch.bincount(idx[keep], minlength=n).clamp_min(1).to(spec.dtype)
    power = torch.stack([torch.bincount(idx[keep], weights=s.flatten()[keep].double(), minlength=n).to(spec.dtype)
                         for s in spec]) / counts
    freq = (torch.arange(n, dtype=torch.float32) + 0.5) * 0.5 / n
    return freq[1:].cpu(), power[:, 1:].cpu()


_COLORS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14), (23, 190, 207), (140, 86, 75)]


def _line(draw, pts, color, width, dashed, dash=6.0):
    if not dashed:
        draw.line(pts, fill=color, width=width)
        return
    run = 0.0  # arc length so far; dashes are on for even multiples of `dash`
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        seg = math.hypot(x1 - x0, y1 - y0)
        t = 0.0
        while t < seg:
            step = min(dash - run % dash, seg - t)
            if (run // dash) % 2 == 0:
                a, b = t / seg, (t + step) / seg
                draw.line([(x0 + a * (x1 - x0), y0 + a * (y1 - y0)), (x0 + b * (x1 - x0), y0 + b * (y1 - y0))],
                          fill=color, width=width)
            t, run = t + step, run + step


def _panel(draw, font, box, title, series, nyquist):
    x0, y0, x1, y1 = box
    fmin = min(float(f[0]) for _, f, _, _, _ in series)
    logs = [math.log10(v) for _, _, p, _, _ in series for v in p.tolist() if v > 0]
    gt_logs = [math.log10(v) for v in series[0][2].tolist() if v > 0] or [0.0]
    top = math.ceil(max(logs)) if logs else 0
    bottom = max(math.floor(min(logs)) if logs else top - 1, math.floor(min(gt_logs)) - 3)  # 3 decades below GT
    lx0, lx1 = math.log2(fmin), math.log2(0.5)
    sx = lambda f: x0 + (math.log2(f) - lx0) / (lx1 - lx0) * (x1 - x0)
    sy = lambda v: y1 - (min(max(math.log10(v), bottom), top) - bottom) / max(top - bottom, 1) * (y1 - y0)
    draw.rectangle(box, outline=(0, 0, 0))
    draw.text((x0, y0 - 16), title, fill=(0, 0, 0), font=font)
    for k in range(1, 64):
        f = 2.0 ** -k
        if f < fmin:
            break
        draw.line([(sx(f), y1), (sx(f), y1 + 4)], fill=(0, 0, 0))
        draw.text((sx(f) - 8, y1 + 6), f"1/{2 ** k}", fill=(0, 0, 0), font=font)
    for e in range(bottom, top + 1):
        yy = sy(10.0 ** e)
        draw.line([(x0, yy), (x1, yy)], fill=(225, 225, 225))
        draw.text((x0 - 40, yy - 6), f"1e{e}", fill=(0, 0, 0), font=font)
    if fmin <= nyquist <= 0.5:
        _line(draw, [(sx(nyquist), y0), (sx(nyquist), y1)], (120, 120, 120), 1, True)
        draw.text((sx(nyquist) + 3, y0 + 3), f"input/{round(0.5 / nyquist)} Nyquist", fill=(90, 90, 90), font=font)
    for _, f, p, color, dashed in series:
        pts = [(sx(fv), sy(pv)) for fv, pv in zip(f.tolist(), p.tolist()) if pv > 0]
        if len(pts) > 1:
            _line(draw, pts, color, 2, dashed)


def spectrum_figure(curves: Mapping[str, torch.Tensor], gt: torch.Tensor, path=None, mask: torch.Tensor | None = None,
                    factor: float = 8, layout: Layout = TEXTURE, errors: bool = True):
    """Plot radially averaged power spectra of GT (black), each method's output (solid) and its error pred - GT
    (dashed) against frequency (cycles/px, log-log), with the x`factor` low-res Nyquist marked. One panel per map
    when the maps have `layout`'s channels, else one. Writes a PNG to `path` (if given); returns H x W x 3 uint8.

    curves: {method: C x H x W or 1 x C x H x W}; gt the same shape; mask 1 x H x W or 1 x 1 x H x W."""
    from PIL import Image, ImageDraw, ImageFont

    gt = gt[None] if gt.dim() == 3 else gt
    mask = mask[None] if mask is not None and mask.dim() == 3 else mask
    preds = {name: (v[None] if v.dim() == 3 else v) for name, v in curves.items()}
    for name, v in preds.items():
        if v.shape != gt.shape or gt.shape[0] != 1:
            raise ValueError(f"curve '{name}' {tuple(v.shape)} must match gt {tuple(gt.shape)} (one sample each)")
    panels = layout.names if gt.shape[1] == layout.channels else ("map",)
    split = (lambda x: layout.split(x)) if panels != ("map",) else (lambda x: {"map": x})
    g_maps, p_maps = split(gt), {name: split(v) for name, v in preds.items()}
    pw, ph, ml, mt = 420, 300, 60, 30
    legend = [("GT", (0, 0, 0), False)] + [(f"{n} output", _COLORS[i % 7], False) for i, n in enumerate(preds)] \
        + ([(f"{n} error", _COLORS[i % 7], True) for i, n in enumerate(preds)] if errors else [])
    width, height = len(panels) * (pw + ml + 20) + 10, mt + ph + 40 + 18 * len(legend) + 10
    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw, font = ImageDraw.Draw(img), ImageFont.load_default()
    for j, name in enumerate(panels):
        f, p = radial_power_spectrum(g_maps[name], mask)
        series = [("GT", f, p[0], (0, 0, 0), False)]
        for i, (method, pm) in enumerate(p_maps.items()):
            fo, po = radial_power_spectrum(pm[name], mask)
            series.append((method, fo, po[0], _COLORS[i % 7], False))
            if errors:
                e = radial_power_spectrum(pm[name] - g_maps[name], mask)
                series.append((method, e[0], e[1][0], _COLORS[i % 7], True))
        x0 = 10 + j * (pw + ml + 20) + ml
        _panel(draw, font, (x0, mt, x0 + pw, mt + ph), f"{name}: power vs cycles/px", series, 0.5 / factor)
    y = mt + ph + 36
    for label, color, dashed in legend:
        _line(draw, [(20, y + 6), (60, y + 6)], color, 2, dashed)
        draw.text((68, y), label, fill=(0, 0, 0), font=font)
        y += 18
    arr = np.asarray(img).copy()
    if path is not None:
        from uhrtex.common.io import write_png

        write_png(path, arr.transpose(2, 0, 1).astype(np.float32) / 255.0)
    return arr
