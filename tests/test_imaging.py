"""One home for blur, erosion and the sRGB curve (uhrtex.common.imaging): each gives kornia's numbers."""

import kornia
import pytest
import torch

from uhrtex.common.imaging import erode, gaussian_blur, linear_to_srgb, srgb_to_linear


@pytest.mark.parametrize("border", ["reflect", "replicate", "constant"])
def test_gaussian_blur_is_kornias_and_a_separable_reference(border):
    x = torch.rand(2, 3, 40, 52, generator=torch.Generator().manual_seed(0))
    sigma, r = 2.3, 7
    ours = gaussian_blur(x, sigma, r, border)
    ref = kornia.filters.gaussian_blur2d(x, (2 * r + 1, 2 * r + 1), (sigma, sigma), border_type=border)
    assert torch.equal(ours, ref)
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = (k / k.sum()).float()
    pad = torch.nn.functional.pad(x, (r, r, r, r), mode=border) if border != "constant" else torch.nn.functional.pad(x, (r,) * 4)
    sep = torch.nn.functional.conv2d(pad, k.view(1, 1, 1, -1).expand(3, 1, 1, -1), groups=3)
    sep = torch.nn.functional.conv2d(sep, k.view(1, 1, -1, 1).expand(3, 1, -1, 1), groups=3)
    assert torch.allclose(ours, sep, atol=1e-6)


def test_erosion_is_kornias_without_its_memory():
    m = (torch.rand(1, 1, 37, 45, generator=torch.Generator().manual_seed(1)) > 0.15).float()
    for r in (1, 2, 3, 4, 7):  # window sides 3..15: powers of two and not, for the doubling passes
        ref = kornia.morphology.erosion(m, torch.ones(2 * r + 1, 2 * r + 1), border_type="constant", border_value=0.0) > 0.5
        assert torch.equal(erode(m, r, "constant"), ref)
        geo = kornia.morphology.erosion(m, torch.ones(2 * r + 1, 2 * r + 1), border_type="geodesic") > 0.5
        assert torch.equal(erode(m, r, "replicate"), geo)  # the frame's outside does not erode
        assert torch.equal(erode(m, r, "reflect"), geo)
    assert torch.equal(erode(m, 0), m > 0.5)


def test_srgb_curves_are_kornias_for_any_shape():
    x = torch.rand(2, 3, 9, 11)
    assert torch.equal(srgb_to_linear(x), kornia.color.rgb_to_linear_rgb(x))
    assert torch.equal(linear_to_srgb(x), kornia.color.linear_rgb_to_rgb(x))
    flat = torch.rand(17, 3)  # channels last, a count not divisible by 3, a 1-channel map
    for y in (flat, torch.rand(17), torch.rand(1, 5, 7)):
        assert torch.allclose(linear_to_srgb(srgb_to_linear(y)), y, atol=1e-6)
        assert srgb_to_linear(y).shape == y.shape
    assert abs(float(srgb_to_linear(torch.tensor(0.5))) - 0.21404) < 1e-4
    assert float(srgb_to_linear(torch.tensor(-0.2))) == 0.0  # negatives clamp
