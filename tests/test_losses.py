"""L1 + λ·Laplacian against hand-computed values."""

import pytest
import torch

from uhrtex.losses import pixel_laplacian_loss, laplacian


def test_laplacian_of_a_single_spike_is_the_kernel():
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 2] = 1.0
    # valid conv: output 3×3, centred on input pixels (1..3, 1..3); a spike gives the (symmetric) kernel
    assert torch.equal(laplacian(x)[0, 0], torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]]))


def test_laplacian_acts_per_channel_and_kills_linear_ramps():
    ramp = torch.arange(16.0).view(1, 1, 4, 4)  # f = 4y + x: zero Laplacian
    quad = (torch.arange(4.0)[None, :] ** 2).expand(4, 4)[None, None]  # f = x²: Laplacian 2
    lap = laplacian(torch.cat([ramp, quad], 1))
    assert lap.shape == (1, 2, 2, 2)
    assert torch.equal(lap[0, 0], torch.zeros(2, 2)) and torch.equal(lap[0, 1], torch.full((2, 2), 2.0))


def test_pixel_laplacian_loss_by_hand():
    target = torch.zeros(1, 2, 3, 3)
    pred = torch.zeros(1, 2, 3, 3)
    pred[0, 0, 1, 1] = 0.9  # centre spike in channel 0
    pred[0, 1] = 0.3        # constant offset in channel 1 (no Laplacian)
    # L1: (0.9 + 9·0.3) / 18 = 0.2 ; Laplacian (one valid pixel per channel): (|-3.6| + 0) / 2 = 1.8
    terms = pixel_laplacian_loss(pred, target, laplacian_weight=2.0)
    assert terms["l1"].item() == pytest.approx(0.2)
    assert terms["laplacian"].item() == pytest.approx(1.8)
    assert terms["loss"].item() == pytest.approx(0.2 + 2 * 1.8)
    assert pixel_laplacian_loss(pred, target, 1.0)["loss"].item() == pytest.approx(2.0)
    assert set(pixel_laplacian_loss(pred, target, 0.0)) == {"l1", "loss"}


def test_masked_means_ignore_pixels_outside_the_mask():
    target = torch.zeros(1, 1, 4, 4)
    pred = torch.zeros(1, 1, 4, 4)
    pred[0, 0, 0, 0] = 5.0   # outside the mask: must not count
    pred[0, 0, 1, 1] = 1.0   # inside
    mask = torch.zeros(1, 1, 4, 4)
    mask[0, 0, 1:, 1:] = 1.0  # 9 pixels; only (2, 2) has its whole cross stencil inside
    terms = pixel_laplacian_loss(pred, target, 1.0, mask)
    assert terms["l1"].item() == pytest.approx(1 / 9)
    # Laplacian at (2, 2) = pred(1,2)+pred(3,2)+pred(2,1)+pred(2,3)-4·pred(2,2) = 0 -> the spike's corner is not seen
    assert terms["laplacian"].item() == pytest.approx(0.0)
    pred[0, 0, 2, 1] = 1.0  # a stencil neighbour of (2, 2): now the Laplacian sees it
    terms = pixel_laplacian_loss(pred, target, 1.0, mask)
    assert terms["laplacian"].item() == pytest.approx(1.0)
    assert terms["l1"].item() == pytest.approx(2 / 9)


def test_empty_mask_gives_zero_not_nan_and_gradients_flow():
    pred = torch.rand(2, 3, 6, 6, requires_grad=True)
    assert pixel_laplacian_loss(pred, torch.zeros(2, 3, 6, 6), 1.0, torch.zeros(2, 1, 6, 6))["loss"].item() == 0.0
    pixel_laplacian_loss(pred, torch.zeros(2, 3, 6, 6), 1.0)["loss"].backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0


def test_shape_mismatch_is_one_line():
    with pytest.raises(ValueError, match="differ in shape"):
        pixel_laplacian_loss(torch.zeros(1, 3, 4, 4), torch.zeros(1, 7, 4, 4))
    with pytest.raises(ValueError, match="mask must be"):
        pixel_laplacian_loss(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4), mask=torch.ones(1, 3, 4, 4))


def test_band_loss_sees_only_detail_finer_than_the_factor():
    from uhrtex.losses import band_loss

    target = torch.zeros(1, 3, 16, 16)
    smooth = torch.linspace(0, 1, 16).view(1, 1, 1, 16).expand(1, 3, 16, 16) + 0.3  # a ramp + an offset
    fine = target.clone()
    fine[:, :, ::2, ::2] = 0.5  # detail finer than 1/4 resolution
    assert band_loss(fine, target, 4, None).item() > 0.1
    assert band_loss(smooth, target, 4, None).item() < 0.1 * band_loss(fine, target, 4, None).item()
    assert band_loss(smooth, target, 4, None).item() < 0.03 * smooth.abs().mean().item()
    mask = torch.zeros(1, 1, 16, 16)
    assert band_loss(fine, target, 4, mask).item() == 0.0


def test_band_energy_sees_amplitude_not_placement():
    from uhrtex.losses import band_energy_loss, band_loss

    gen = torch.Generator().manual_seed(0)
    target = 0.5 + 0.1 * torch.randn(1, 3, 32, 32, generator=gen)
    shifted = target.roll(3, -1)  # the same detail, misplaced
    muted = 0.5 + 0.2 * (target - 0.5)  # the detail in place, at a fifth of its amplitude
    flat = torch.full_like(target, 0.5)
    energy = lambda p, m=None: band_energy_loss(p, target, 4, m).item()  # noqa: E731
    assert energy(target) < 1e-4
    assert energy(shifted) < 0.15 * energy(muted)  # amplitude matched -> small, whatever the placement
    assert energy(flat) > energy(muted) > 0.5 * energy(flat)
    assert band_loss(shifted, target, 4, None).item() > band_loss(muted, target, 4, None).item()
    left = torch.zeros(1, 1, 32, 32)
    left[..., :16] = 1.0
    louder = target.clone()
    louder[..., 16:] = 0.5 + 3 * (target[..., 16:] - 0.5)  # wrong only outside the mask
    assert energy(louder, left) < 0.1 * energy(louder)
    border = target.clone()
    border[..., :, :2] = 1.0  # a bright line along the crop's border: left out, whatever its energy
    assert energy(border) < 1e-4
    with pytest.raises(ValueError, match="divisible"):
        band_energy_loss(target[..., :30], target[..., :30], 4)
    small = band_energy_loss(flat[..., :16, :16].requires_grad_(), target[..., :16, :16], 4)
    assert small.item() == 0.0 and small.requires_grad  # no interior cell: no term, and training still steps


def test_band_energy_weights_per_map():
    """`band_energy_weight` per map: equal values are the single number; a map's weight scales only its error."""
    from uhrtex import maps
    from uhrtex.losses import band_energy_loss, channel_weights

    gen = torch.Generator().manual_seed(1)
    target = 0.5 + 0.1 * torch.randn(1, maps.TEXTURE.channels, 32, 32, generator=gen)
    flat_mn = target.clone()
    flat_mn[:, maps.TEXTURE.slice("micronormal")] = 0.5  # only the micronormal loses its detail

    def weighted(weights):
        top, per = channel_weights(weights, maps.TEXTURE)
        return top * band_energy_loss(flat_mn, target, 4, channel_weight=per).item()

    assert channel_weights(20.0, maps.TEXTURE) == (20.0, None)
    same = weighted({"albedo": 20, "micronormal": 20, "specular": 20})
    assert same == pytest.approx(weighted(20.0), rel=1e-6) and same > 0
    assert weighted({"albedo": 20, "micronormal": 5, "specular": 20}) == pytest.approx(same / 4, rel=1e-5)
    assert weighted({"albedo": 1, "micronormal": 20, "specular": 1}) == pytest.approx(same, rel=1e-5)
    with pytest.raises(ValueError, match="exactly the maps"):
        channel_weights({"albedo": 1.0}, maps.TEXTURE)
