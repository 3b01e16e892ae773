"""Detail-band metrics (uhrtex/metrics/detail.py) on known cases: a procedural texture with real fine detail
against itself, a blurred copy, a copy with added fine noise, a copy whose detail is shifted by a few pixels;
the mask edge; UV-space use; the spectrum plot; bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from uhrtex.maps import TEXTURE
from uhrtex.metrics import Evaluator
from uhrtex.common.imaging import gaussian_blur as _blur
from uhrtex.metrics.detail import (band_correlation, band_energy, band_mask, band_psnr, band_radius, band_sigma,
                                   detail_metrics, high_pass, hf_energy_ratio, radial_power_spectrum, spectrum_figure)

N = 192
MAPS = TEXTURE.names


def texture(n: int = N, seed: int = 0) -> torch.Tensor:
    """1 x 7 x n x n: smooth base (bicubic from 6x6 noise) + pore-scale noise (correlation length ~1 px) + thin
    oblique lines (edges), in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    c = TEXTURE.channels
    base = F.interpolate(torch.rand(1, c, n // 32, n // 32, generator=g), size=(n, n), mode="bicubic", align_corners=False)
    fine = _blur(torch.randn(1, c, n, n, generator=g), 0.6, 2)
    yy, xx = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    lines = ((xx + 2 * yy) % 61 < 2).float()[None, None]
    return (0.3 + 0.4 * base + 0.08 * fine + 0.1 * lines).clamp(0, 1)


def face_mask(n: int = N) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, n), torch.linspace(-1, 1, n), indexing="ij")
    return ((xx / 0.85) ** 2 + (yy / 0.95) ** 2 < 1).float()[None, None]


def values(m: dict, key: str) -> list[float]:
    return [float(m[f"{name}/{key}"][0]) for name in MAPS]


@pytest.fixture(scope="module")
def gt():
    return texture()


def test_band_filter_halves_at_the_low_res_nyquist():
    # The high-pass keeps what a x8 downsample cannot carry: amplitude 1/2 at 1/16 cycles/px, ~0 well below, ~1 above.
    n = 256
    x = torch.arange(n, dtype=torch.float32)
    for freq, lo, hi in ((1 / 16, 0.45, 0.55), (1 / 64, 0.0, 0.06), (1 / 4, 0.97, 1.01)):
        wave = torch.cos(2 * math.pi * freq * x).expand(1, 1, n, n)
        hp = high_pass(wave, 8)[..., 64:-64, 64:-64]
        assert lo < float(hp.abs().amax()) < hi, freq
    assert band_sigma(8) == pytest.approx(3.0, abs=0.01) and band_radius(8) == 9


def test_gt_against_itself(gt):
    m = detail_metrics(gt, gt, face_mask())
    assert set(m) == {f"{n}/{k}" for n in MAPS for k in ("band_psnr", "band_corr", "hf_ratio")}
    assert all(v == math.inf for v in values(m, "band_psnr"))
    assert values(m, "band_corr") == pytest.approx([1.0] * 3, abs=1e-6)
    assert values(m, "hf_ratio") == pytest.approx([1.0] * 3, abs=1e-6)


def test_blurred_copy_has_no_detail_and_scores_the_no_detail_floor(gt):
    mask = face_mask()
    blurred = _blur(gt, 4.0, 12)
    m = detail_metrics(blurred, gt, mask)
    assert max(values(m, "hf_ratio")) < 0.05
    good = detail_metrics(gt + 0.003 * torch.randn(gt.shape, generator=torch.Generator().manual_seed(1)), gt, mask)
    for name, blur_psnr, good_psnr in zip(MAPS, values(m, "band_psnr"), values(good, "band_psnr")):
        floor = 10 * math.log10(1 / float(band_energy(TEXTURE.split(gt)[name], mask)[0]))
        assert abs(blur_psnr - floor) < 0.5, name  # as bad as predicting no detail at all
        assert blur_psnr < good_psnr - 10, name


def test_added_fine_noise_is_invented_detail(gt):
    noisy = gt + 0.05 * torch.randn(gt.shape, generator=torch.Generator().manual_seed(2))
    m = detail_metrics(noisy, gt, face_mask())
    assert min(values(m, "hf_ratio")) > 1.5
    assert min(values(m, "band_corr")) > 0.3  # the true detail is still there, under the noise


def test_shifted_detail_has_the_energy_but_not_the_place(gt):
    low = _blur(gt, band_sigma(8), band_radius(8))
    shifted = low + torch.roll(gt - low, (3, 3), (2, 3))
    m = detail_metrics(shifted, gt, face_mask())
    assert values(m, "hf_ratio") == pytest.approx([1.0] * 3, abs=0.15)
    assert max(abs(v) for v in values(m, "band_corr")) < 0.2
    # In band PSNR misplaced detail is worse than none (the perception-distortion trade-off the ratio exposes).
    blurred = detail_metrics(low, gt, face_mask())
    assert all(s < b for s, b in zip(values(m, "band_psnr"), values(blurred, "band_psnr")))


def test_mask_edge_makes_no_band_energy():
    # A smooth face whose background is 0 (as in captures): the hard mask edge is the only fine structure.
    n = N
    yy, xx = torch.meshgrid(torch.linspace(0, 1, n), torch.linspace(0, 1, n), indexing="ij")
    mask = face_mask(n)
    smooth = (0.4 + 0.3 * xx * yy + 0.1 * torch.sin(3 * xx))[None, None].expand(1, 3, n, n) * mask
    edge_energy = float((high_pass(smooth) ** 2 * mask).sum() / (mask.sum() * 3))  # the mask not eroded
    assert band_energy(smooth, mask)[0] < 1e-4 * edge_energy
    # Different backgrounds outside the mask do not matter.
    other = smooth + (1 - mask) * 0.9
    assert band_psnr(other, smooth, mask)[0] > 80
    # The eroded mask stays inside the mask by the filter's support.
    eroded = band_mask(mask, smooth)
    assert eroded.any() and not (eroded & (mask < 0.5)).any()
    assert float(F.max_pool2d((~eroded).float() * 0 + (mask < 0.5).float(), 2 * band_radius(8) + 1, 1, band_radius(8))
                 .mul(eroded.float()).max()) == 0.0


def test_uv_space_with_texel_coverage(gt):
    # UV texture: coverage is a few chart islands; what lies outside the charts must not count.
    cover = torch.zeros(1, 1, N, N)
    cover[..., 10:90, 12:180] = 1
    cover[..., 110:185, 40:150] = 1
    pred = torch.where(cover > 0.5, gt, torch.rand(gt.shape, generator=torch.Generator().manual_seed(3)))
    m = detail_metrics(pred, gt, cover)
    assert all(v == math.inf for v in values(m, "band_psnr"))
    # Dict input (a method with only some maps), and the Evaluator's per-map rows use the same numbers.
    blurred = _blur(gt, 4.0, 12)
    sub = detail_metrics({"albedo": TEXTURE.split(blurred)["albedo"]}, TEXTURE.split(gt), cover, names=("albedo",))
    row = Evaluator(perceptual=None)(blurred, gt, cover)[0]
    assert set(sub) == {"albedo/band_psnr", "albedo/band_corr", "albedo/hf_ratio"}
    for key, v in sub.items():
        assert row[key] == pytest.approx(float(v[0]), rel=1e-6)
    assert row["micronormal/hf_ratio"] < 0.05 and row["specular/hf_ratio"] < 0.05


def test_single_functions_and_batches(gt):
    a = TEXTURE.split(gt)["albedo"]
    noisy = a + 0.05 * torch.randn(a.shape, generator=torch.Generator().manual_seed(4))
    pred, target = torch.cat([a, noisy]), torch.cat([a, a])
    mask = torch.cat([face_mask(), torch.zeros(1, 1, N, N)])
    assert hf_energy_ratio(pred, target, mask).tolist()[0] == pytest.approx(1.0)
    assert math.isnan(hf_energy_ratio(pred, target, mask)[1])  # empty mask -> NaN, never a silent value
    assert math.isnan(band_psnr(pred, target, mask)[1]) and math.isnan(band_correlation(pred, target, mask)[1])
    flat = torch.full_like(a, 0.5)
    assert math.isnan(hf_energy_ratio(a, flat)[0])  # GT without detail: the ratio is undefined
    assert band_correlation(flat, a)[0] == 0.0


def test_spectra_and_figure(gt, tmp_path):
    mask = face_mask()
    blurred = _blur(gt, 4.0, 12)
    f, p_gt = radial_power_spectrum(TEXTURE.split(gt)["albedo"], mask)
    _, p_blur = radial_power_spectrum(TEXTURE.split(blurred)["albedo"], mask)
    assert f.shape == p_gt.shape[1:] and float(f.max()) < 0.5
    hi, lo = f > 0.25, f < 1 / 32
    assert float(p_blur[0, hi].mean()) < 1e-3 * float(p_gt[0, hi].mean())  # blur kills the fine band ...
    assert float(p_blur[0, lo].mean()) == pytest.approx(float(p_gt[0, lo].mean()), rel=0.3)  # ... not the coarse one
    noisy = gt + 0.05 * torch.randn(gt.shape, generator=torch.Generator().manual_seed(5))
    path = tmp_path / "spectrum.png"
    img = spectrum_figure({"blur": blurred[0], "noise": noisy[0]}, gt[0], path, mask=mask[0])
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3 and path.stat().st_size > 1000
    from PIL import Image

    assert np.array_equal(np.asarray(Image.open(path).convert("RGB")), img)
    assert (img < 128).any(axis=2).sum() > 2000  # lines and text were drawn
    one = spectrum_figure({"blur": TEXTURE.split(blurred)["specular"]}, TEXTURE.split(gt)["specular"])
    assert one.shape[1] < img.shape[1]  # one panel for a single map


def test_bad_input_says_how_to_fix(gt):
    with pytest.raises(ValueError, match="one shape"):
        detail_metrics(gt[..., :-8], gt)
    with pytest.raises(ValueError, match="B x 1 x H x W"):
        detail_metrics(gt, gt, torch.ones(1, 3, N, N))
    with pytest.raises(ValueError, match="factor must be > 1"):
        band_psnr(gt, gt, factor=1)
    with pytest.raises(ValueError, match="smaller factor or larger maps"):
        band_psnr(gt[..., :8, :8], gt[..., :8, :8])
    with pytest.raises(ValueError, match="names="):
        detail_metrics({"albedo": gt[:, :3]}, TEXTURE.split(gt))
    with pytest.raises(ValueError, match="must match gt"):
        spectrum_figure({"x": gt[0, :3]}, gt[0])
