import pytest
import torch

from uhrtex.metrics.seam import seam_metric
from uhrtex.hfdr.seams import CORE_ROWS, gaussian_taps, seam_positions, smooth_seams


def seam_ratio(x: torch.Tensor, patch: int) -> float:
    """The project's seam metric (gradient energy on patch-boundary lines / interior lines; 1 = invisible)."""
    return float(seam_metric(x, patch)[0])


def mosaic(size=256, patch=64, channels=3, seed=0):
    """Fine noise texture with a random offset per patch: visible seams, like independent HFDR patches."""
    g = torch.Generator().manual_seed(seed)
    tex = 0.5 + 0.05 * torch.randn(1, channels, size, size, generator=g)
    n = size // patch
    offsets = 0.15 * torch.randn(1, channels, n, n, generator=g)
    return tex + offsets.repeat_interleave(patch, 2).repeat_interleave(patch, 3)


def test_taps_are_normalised_odd_gaussians():
    t = gaussian_taps(16, 5.0)
    assert t.numel() == 17 and torch.allclose(t, t.flip(0)) and abs(float(t.sum()) - 1) < 1e-6
    assert t.argmax() == 8 and t[0] > 0.2 * t[8]  # σ=5 over ±8: a broad kernel
    assert gaussian_taps(2, 5.0).numel() == 3


@pytest.mark.parametrize("feather", [0.0, 1.0])
def test_smoothing_hides_seams_and_leaves_interiors(feather):
    x = mosaic()
    before = seam_ratio(x, 64)
    y = smooth_seams(x, 64, feather=feather)
    after = seam_ratio(y, 64)
    assert before > 5 and after < 0.5 * before and after < 2.0, (before, after)
    # Only the ±8 px bands change.
    band = torch.zeros(256, dtype=torch.bool)
    for s in seam_positions(256, 64):
        band[s - 8:s + 8] = True
    outside = ~band[:, None] & ~band[None, :]
    assert torch.equal(y[..., outside], x[..., outside])
    assert not torch.equal(y[..., band, :], x[..., band, :])


def test_switch_off_constant_and_linear_inputs():
    x = mosaic()
    assert torch.equal(smooth_seams(x, 64, band=0), x)
    c = torch.full((1, 2, 128, 128), 0.3)
    assert torch.allclose(smooth_seams(c, 32), c, atol=1e-6)
    # Symmetric normalised kernels reproduce linear ramps exactly (away from the image border).
    ramp = torch.linspace(0, 1, 128).view(1, 1, 128, 1) * torch.ones(1, 1, 1, 128)
    assert torch.allclose(smooth_seams(ramp, 32)[..., 16:112, :], ramp[..., 16:112, :], atol=1e-5)


def test_anisotropy_keeps_detail_along_the_seam():
    # Stripes that vary along a horizontal seam (period 8 px) survive; a step across it does not.
    cols = torch.arange(128.0)
    stripes = 0.5 + 0.2 * torch.cos(2 * torch.pi * cols / 8).view(1, 1, 1, -1).expand(1, 1, 128, 128)
    y = smooth_seams(stripes.clone(), (64, 1024))  # only the horizontal seam at row 64
    amp = (y[0, 0, 64] - 0.5).abs().max()
    assert amp > 0.75 * 0.2
    step = torch.zeros(1, 1, 128, 128)
    step[..., 64:, :] = 1.0
    z = smooth_seams(step, (64, 1024))
    assert float((z[0, 0, 64] - z[0, 0, 63]).abs().max()) < 0.15


def test_shapes_inplace_and_errors():
    x = mosaic(size=128, patch=32)
    y = smooth_seams(x[0], 32)
    assert y.shape == x[0].shape and not torch.equal(y, x[0])
    x2 = x.clone()
    out = smooth_seams(x2, 32, inplace=True)
    assert out.data_ptr() == x2.data_ptr() and not torch.equal(x2, x)
    with pytest.raises(ValueError, match="feather"):
        smooth_seams(x, 32, feather=2.0)
    with pytest.raises(ValueError, match="expects"):
        smooth_seams(x[0, 0], 32)


def test_offset_grid_matches_the_uncropped_result():
    # Smoothing a crop of a padded grid (seams at k·patch - offset) equals cropping the smoothed full grid,
    # away from the crop's own border (where the full grid had more context).
    x = mosaic(size=256, patch=64)
    full = smooth_seams(x, 64)
    crop = smooth_seams(x[..., 10:250, 20:240], 64, offset=(10, 20))
    assert torch.allclose(crop[..., 20:-20, 20:-20], full[..., 30:230, 40:220], atol=1e-6)
    assert seam_positions(240, 64, 10) == [54, 118, 182]


def _band_detail(x: torch.Tensor, patch: int) -> float:
    """Mean squared fine detail (x minus its 3×3 mean) in the horizontal seams' bands, outside the rows next to
    the seam line that keep_detail blurs (CORE_ROWS, plus the 3×3 mean's reach) and away from the vertical seams."""
    fine = x - torch.nn.functional.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
    rows = torch.zeros(x.shape[-1], dtype=torch.bool)
    for s in seam_positions(x.shape[-1], patch):
        rows[s - 7:s - CORE_ROWS - 1] = rows[s + CORE_ROWS + 1:s + 7] = True
    cols = (torch.arange(x.shape[-1]) % patch - patch // 2).abs() < patch // 4
    return float(fine[..., rows, :][..., cols].pow(2).mean())


def test_keep_detail_hides_the_step_and_keeps_the_texture():
    x = mosaic()
    paper, kept = smooth_seams(x, 64), smooth_seams(x, 64, keep_detail=True)
    before, after = seam_ratio(x, 64), seam_ratio(kept, 64)
    assert before > 5 and after < 2.0, (before, after)
    # The paper's blur removes most of the fine texture in the bands; keep_detail leaves it (~ the input's).
    detail_in = _band_detail(x, 64)
    assert _band_detail(paper, 64) < 0.2 * detail_in
    assert abs(_band_detail(kept, 64) / detail_in - 1) < 0.02, (_band_detail(kept, 64), detail_in)
    # The jump is gone: across every seam the mean levels now meet (the step of the offsets is < 20% left).
    s = 64
    jump_in = (x[..., s, :] - x[..., s - 1, :]).mean(-1).abs().mean()
    jump_out = (kept[..., s, :] - kept[..., s - 1, :]).mean(-1).abs().mean()
    assert jump_out < 0.2 * jump_in, (float(jump_in), float(jump_out))
    assert x.min() <= kept.min() and kept.max() <= x.max()  # like a blur, never outside the input's range
    # A smooth gradient without seams stays as it is: no line where a patch border would be (an even mirror of
    # each side bent every gradient at the seam: seam metric 22 on this image).
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 256), torch.linspace(0, 1, 256), indexing="ij")
    smooth = (0.3 + 0.4 * torch.sin(3 * xx + 2 * yy) * torch.cos(2 * xx - yy)).expand(1, 3, 256, 256)
    assert abs(seam_ratio(smooth_seams(smooth, 64, keep_detail=True), 64) - seam_ratio(smooth, 64)) < 0.05
    # Outside the bands nothing changes, a constant stays constant, and crops of a padded grid agree.
    assert torch.equal(kept[..., 20:44, 20:44], x[..., 20:44, 20:44])
    c = torch.full((1, 2, 128, 128), 0.3)
    assert torch.allclose(smooth_seams(c, 32, keep_detail=True), c, atol=1e-6)
    crop = smooth_seams(x[..., 10:250, 20:240], 64, offset=(10, 20), keep_detail=True)
    torch.testing.assert_close(crop[..., 20:-20, 20:-20], kept[..., 30:230, 40:220])  # away from the crop border


def test_keep_detail_hides_a_patch_border_frame(monkeypatch):
    """A network's border effect (each patch's outermost rows off by a constant) is a thin line, not detail."""
    import uhrtex.hfdr.seams as seams
    x = 0.5 + 0.02 * torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(1))
    edge = torch.arange(256) % 64 == 0  # each patch's first row and column
    x[..., edge, :] += 0.05
    x[..., :, edge] += 0.05
    before, after = seam_ratio(x, 64), seam_ratio(smooth_seams(x, 64, keep_detail=True), 64)
    assert before > 3 and after < 1.5, (before, after)
    monkeypatch.setattr(seams, "CORE_ROWS", 0)  # without the short blur at the seam the frame stays
    assert seam_ratio(smooth_seams(x, 64, keep_detail=True), 64) > 2
