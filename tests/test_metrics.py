"""Each metric against a hand-computed case, masking included."""

import math

import pytest
import torch

from uhrtex.maps import TEXTURE, encode_normal
from uhrtex.metrics import Evaluator, angular_error, masked_mean, mean_std, psnr, seam_energies, seam_metric, ssim
from uhrtex.metrics.perceptual import build_perceptual, lpips_problem, perceptual_distance


def test_masked_mean_by_hand():
    values = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 1, 2, 2)
    mask = torch.tensor([[True, False], [True, True]]).view(1, 1, 2, 2)
    assert masked_mean(values, mask).item() == pytest.approx((1 + 3 + 4) / 3)
    assert math.isnan(masked_mean(values, torch.zeros_like(mask)).item())


def test_ssim_constant_images_by_hand():
    # Flat images: SSIM reduces to the luminance term (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1), C1 = (0.01 L)^2.
    pred, target = torch.full((1, 3, 32, 32), 0.5), torch.full((1, 3, 32, 32), 0.25)
    c1 = 0.01 ** 2
    expected = (2 * 0.5 * 0.25 + c1) / (0.5 ** 2 + 0.25 ** 2 + c1)
    assert ssim(pred, target).item() == pytest.approx(expected, rel=1e-5)


def test_ssim_ignores_differences_outside_the_mask_only():
    g = torch.Generator().manual_seed(0)
    target = torch.rand(2, 3, 48, 48, generator=g)
    mask = torch.zeros(2, 1, 48, 48)
    mask[:, :, 8:40, 8:40] = 1
    outside = torch.where(mask.bool(), target, torch.rand(2, 3, 48, 48, generator=g))
    inside = torch.where(mask.bool(), torch.rand(2, 3, 48, 48, generator=g), target)
    assert torch.allclose(ssim(outside, target, mask), torch.ones(2), atol=1e-5)
    assert (ssim(inside, target, mask) < 0.5).all()
    # Without the mask the outside noise counts.
    assert (ssim(outside, target) < 0.9).all()


def test_ssim_and_psnr_empty_mask_is_nan():
    x = torch.rand(1, 1, 16, 16)
    assert math.isnan(ssim(x, x, torch.zeros(1, 1, 16, 16)).item())
    assert math.isnan(psnr(x, x, torch.zeros(1, 1, 16, 16)).item())


def test_psnr_over_masked_pixels_by_hand():
    target = torch.rand(2, 3, 16, 16)
    mask = torch.zeros(2, 1, 16, 16)
    mask[0, :, :8] = 1
    mask[1, :, :, 4:] = 1
    pred = torch.where(mask.bool(), target + 0.1, target - 0.5)  # error 0.1 inside -> MSE 0.01 -> 20 dB
    assert torch.allclose(psnr(pred, target, mask), torch.tensor([20.0, 20.0]), atol=1e-4)
    assert psnr(pred, target).mean() < 15  # the outside error counts without a mask
    assert psnr(target, target, mask)[0].item() == math.inf


def _normals(angle_deg: torch.Tensor) -> torch.Tensor:
    """Unit normals tilted by `angle` (H x W degrees) from +z towards +x, encoded, 1 x 3 x H x W."""
    a = torch.deg2rad(angle_deg)
    return encode_normal(torch.stack([a.sin(), torch.zeros_like(a), a.cos()])[None])


def test_angular_error_by_hand_with_mask():
    target = _normals(torch.zeros(4, 4))
    angles = torch.full((4, 4), 90.0)
    angles[:, :2] = 30.0
    angles[0, 0] = 60.0
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2] = 1  # seven pixels at 30 degrees, one at 60
    assert angular_error(_normals(angles), target, mask).item() == pytest.approx((7 * 30 + 60) / 8, abs=1e-3)
    assert angular_error(_normals(angles), target).item() == pytest.approx((7 * 30 + 60 + 8 * 90) / 16, abs=1e-3)


def _ramp_with_jumps(h: int, w: int, patch: int) -> torch.Tensor:
    # x[j] = j + j // patch: step 1 inside patches, 2 across a patch boundary.
    j = torch.arange(w, dtype=torch.float32)
    return (j + torch.div(j, patch, rounding_mode="floor")).expand(1, 1, h, w).clone()


def test_seam_metric_by_hand():
    x = _ramp_with_jumps(16, 16, 8)
    # Horizontal: boundary diffs (7|8) 16 of value 2 (energy 4); reference diffs at patch offsets 2, 4, 6
    # (1|2, 3|4, 5|6, 9|10, 11|12, 13|14) 96 of value 1. Vertical: 16 boundary + 96 reference zeros.
    boundary, reference = seam_energies(x, 8)
    assert boundary.item() == pytest.approx(16 * 4 / 32)
    assert reference.item() == pytest.approx(96 / 192)
    assert seam_metric(x, 8).item() == pytest.approx(4.0)
    assert seam_metric(x.repeat(1, 3, 1, 1), 8).item() == pytest.approx(4.0)  # channels pool consistently


def test_seam_reference_lines_share_the_boundary_phase():
    # A map with period-4 gradients (like a 4x upsampled one): energy 9 on diffs 3|4, 7|8, ... and 1 elsewhere.
    steps = torch.ones(31)
    steps[3::4] = 3.0
    x = torch.cat([torch.zeros(1), steps.cumsum(0)]).expand(1, 1, 32, 32).clone()
    assert seam_metric(x, 16).item() == pytest.approx(1.0)  # boundaries (15|16) vs 3|4, 7|8, 11|12: same phase
    boundary, _ = seam_energies(x, 6)  # 6 is not a multiple of 4: all interior lines are the reference
    assert boundary.item() > 0


def test_seam_metric_masking_and_invisible_seams():
    x = _ramp_with_jumps(16, 16, 8)
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., :8] = 1  # no horizontal difference across column 7|8 has both pixels inside
    boundary, reference = seam_energies(x, 8, mask)
    # Boundary: only vertical zeros (row 7|8, 8 columns). Reference: horizontal 1|2, 3|4, 5|6 (16 rows x 3 of 1)
    # and vertical zeros at row offsets 2, 4, 6 (6 rows x 8 columns).
    assert boundary.item() == 0.0 and reference.item() == pytest.approx(48 / (48 + 48))
    smooth = torch.arange(16.0).expand(1, 1, 16, 16)
    assert seam_metric(smooth, 4).item() == pytest.approx(1.0)
    assert seam_metric(torch.zeros(1, 1, 8, 8), 4).item() == pytest.approx(1.0)


def test_perceptual_kind_validation_and_lpips_error():
    with pytest.raises(ValueError, match="metrics.perceptual"):
        build_perceptual("vgg")
    if lpips_problem() is None:
        pytest.skip("lpips is usable here")
    with pytest.raises(RuntimeError) as err:
        build_perceptual("lpips")
    message = str(err.value)
    assert "\n" not in message and "pip install -e '.[lpips]'" in message and "stlpips" in message
    assert build_perceptual("auto").name == "ST-LPIPS-alex"


class _MeanAbs(torch.nn.Module):
    """A stand-in perceptual net: mean absolute difference (lets tiling be checked by hand)."""

    name, key = "MAD", "mad"

    def __init__(self):
        super().__init__()
        self.register_buffer("dummy", torch.zeros(1))

    def forward(self, a, b):
        return (a - b).abs().mean((1, 2, 3))


def test_perceptual_tiles_weighted_by_mask():
    pred, target = torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8)
    pred[..., :4, :4] = 1.0  # top-left tile differs everywhere
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :4, :] = 1  # top-left and top-right tiles fully inside, bottom tiles outside
    # Tiled (4 px): tiles TL=1, TR=0 with weight 1 each; bottom tiles have no mask and are skipped.
    assert perceptual_distance(_MeanAbs(), pred, target, mask, tile=4, min_side=1).item() == pytest.approx(0.5)
    # Untiled: one pass over the mask's bounding box (the top half): 16 differing pixels of 32.
    assert perceptual_distance(_MeanAbs(), pred, target, mask, tile=8, min_side=1).item() == pytest.approx(16 / 32)
    # Grown to min_side (here the whole frame) around a small region.
    assert perceptual_distance(_MeanAbs(), pred, target, mask, tile=8, min_side=8).item() == pytest.approx(16 / 64)
    assert perceptual_distance(_MeanAbs(), pred, target, None, tile=8).item() == pytest.approx(16 / 64)


def test_evaluator_keys_and_identity():
    g = torch.Generator().manual_seed(0)
    target = torch.rand(2, TEXTURE.channels, 32, 32, generator=g)
    ev = Evaluator(perceptual=None)
    rows = ev(target, target, torch.ones(2, 1, 32, 32), patch=8)
    assert len(rows) == 2
    assert set(rows[0]) == {f"{m}/{k}" for m in TEXTURE.names for k in ("ssim", "psnr", "seam", "seam_pred", "band_psnr", "band_corr", "hf_ratio")} | {"micronormal/angle"}
    assert rows[0]["albedo/ssim"] == pytest.approx(1.0, abs=1e-5) and rows[0]["micronormal/angle"] < 0.1


def test_evaluator_seam_is_measured_on_the_error():
    # Content with strong edges on the patch boundaries: the prediction's own seam ratio is large, but a
    # prediction that reproduces it has no seam artifact (error seam 1); a jump added at the seams does.
    target = torch.zeros(1, TEXTURE.channels, 32, 32)
    target[..., 16:] = 0.8  # an edge exactly on the 16-px boundary
    target += 0.05 * torch.rand(target.shape, generator=torch.Generator().manual_seed(0))
    smooth_error = torch.linspace(0, 0.1, 32).expand(1, TEXTURE.channels, 32, 32)
    ev = Evaluator(perceptual=None)
    good = ev(target + smooth_error, target, patch=16)[0]
    assert good["albedo/seam_pred"] > 5 and good["albedo/seam"] == pytest.approx(1.0, abs=0.05)
    jump = target.clone()
    jump[..., :, :16] += 0.1
    assert ev(jump, target, patch=16)[0]["albedo/seam"] > 5


def test_mean_std_by_hand():
    stats = mean_std([{"a": 1.0, "b": math.nan}, {"a": 3.0, "b": 2.0}])
    assert stats["a"] == pytest.approx((2.0, math.sqrt(2.0), 2))
    assert stats["b"] == (2.0, 0.0, 1)
