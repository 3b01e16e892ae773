"""CPU tests of the pure-torch nvdiffrast fallback: texture sampling and antialiasing (specs/backends.md C and D)."""

from __future__ import annotations

import pytest
import torch

from uhrtex.raster import torch_backend as tb

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ONE_TRI = torch.tensor([[0, 1, 2]], dtype=torch.int32)

# --------------------------------------------------------------------------- texture

TEX22 = torch.tensor([[1.0, 2.0], [11.0, 12.0]]).view(1, 2, 2, 1)


def sample(uv, **kw):
    return tb.texture(TEX22, torch.tensor(uv, dtype=torch.float32).view(1, 1, -1, 2), **kw).flatten().tolist()


def test_texture_known_answers():
    uvs = [(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.5, 0.5)]
    for mode in ("wrap", "clamp", "zero"):
        assert sample(uvs, boundary_mode=mode) == pytest.approx([1, 2, 11, 6.5])
    assert sample([(0, 0)], boundary_mode="wrap") == pytest.approx([6.5])
    assert sample([(0, 0)], boundary_mode="clamp") == pytest.approx([1])
    assert sample([(0, 0)], boundary_mode="zero") == pytest.approx([0.25])
    assert sample([(0.49, 0.51)], filter_mode="nearest") == pytest.approx([11])
    assert sample([(1.25, -0.75)], filter_mode="nearest", boundary_mode="wrap") == pytest.approx([1])
    assert sample([(1.25, 0.25)], filter_mode="nearest", boundary_mode="clamp") == pytest.approx([2])
    assert sample([(1.25, 0.25)], filter_mode="nearest", boundary_mode="zero") == pytest.approx([0])
    assert sample([(1.0, 0.5)], boundary_mode="clamp") == pytest.approx([7])  # a tap exactly on the bound


def test_texture_mip_level_one_is_the_box_average():
    gen = torch.Generator().manual_seed(2)
    tex = torch.rand(1, 4, 4, 3, generator=gen, dtype=torch.float64)
    uv = torch.rand(1, 5, 7, 2, generator=gen, dtype=torch.float64)
    da = torch.tensor([0.5, 0.0, 0.0, 0.5], dtype=torch.float64).expand(1, 5, 7, 4)
    level1 = tex.view(1, 2, 2, 2, 2, 3).mean((2, 4))  # 2x2 box average, computed independently
    expected = tb.texture(level1, uv, filter_mode="linear")
    for mode in ("linear-mipmap-linear", "linear-mipmap-nearest", "auto"):
        torch.testing.assert_close(tb.texture(tex, uv, da, filter_mode=mode), expected)
    # half the footprint: level 0.5, an even blend of levels 0 and 1
    half = tb.texture(tex, uv, da * 2 ** -0.5, filter_mode="linear-mipmap-linear")
    torch.testing.assert_close(half, 0.5 * (expected + tb.texture(tex, uv, filter_mode="linear")))
    # the bias alone picks the level; max_mip_level caps it
    bias = torch.full((1, 5, 7), 1.0, dtype=torch.float64)
    torch.testing.assert_close(tb.texture(tex, uv, mip_level_bias=bias), expected)
    torch.testing.assert_close(tb.texture(tex, uv, mip_level_bias=bias * 5, max_mip_level=1), expected)


def test_odd_texture_needs_a_mip_limit():
    tex = torch.rand(1, 6, 6, 1)
    uv = torch.rand(1, 2, 2, 2)
    with pytest.raises(ValueError, match="odd side"):
        tb.texture(tex, uv, mip_level_bias=torch.ones(1, 2, 2))
    tb.texture(tex, uv, mip_level_bias=torch.ones(1, 2, 2), max_mip_level=1)  # 6 -> 3 is fine


@pytest.mark.parametrize("boundary", ["wrap", "clamp", "zero"])
def test_texture_gradcheck(boundary):
    gen = torch.Generator().manual_seed(3)
    tex = torch.rand(1, 2, 4, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    uv = (torch.rand(1, 2, 3, 2, generator=gen, dtype=torch.float64) * 1.4 - 0.2).requires_grad_()
    assert torch.autograd.gradcheck(lambda t, u: tb.texture(t, u, boundary_mode=boundary), (tex, uv))
    da = (torch.rand(1, 2, 3, 4, generator=gen, dtype=torch.float64) * 0.6).requires_grad_()
    fn = lambda t, u, d: tb.texture(t, u, d, filter_mode="linear-mipmap-linear", boundary_mode=boundary)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (tex, uv, da))


def test_texture_batches_and_custom_mips():
    tex = torch.rand(2, 4, 4, 3)
    uv = torch.rand(2, 3, 3, 2)
    out = tb.texture(tex, uv)
    for b in range(2):
        torch.testing.assert_close(out[b], tb.texture(tex[b : b + 1], uv[b : b + 1])[0])
    bias = torch.ones(2, 3, 3)
    custom = [torch.full((2, 2, 2, 3), 7.0), torch.full((2, 1, 1, 3), 9.0)]
    torch.testing.assert_close(tb.texture(tex, uv, mip_level_bias=bias, mip=custom), torch.full((2, 3, 3, 3), 7.0))


# --------------------------------------------------------------------------- antialias


def edge_scene(edge_px):
    """A quad covering columns left of pixel x = edge_px (pixel units, centers on integers), 8x8."""
    W = 8
    x = (edge_px + 0.5) / (W / 2) - 1  # pixel coordinate -> NDC
    pos = torch.tensor([[[-2.0, -2.0, 0.0, 1.0], [x, -2.0, 0.0, 1.0], [x, 2.0, 0.0, 1.0], [-2.0, 2.0, 0.0, 1.0]]], requires_grad=True)
    tri = torch.tensor([[0, 1, 2], [0, 2, 3]], dtype=torch.int32)
    rast, _ = tb.rasterize(pos, tri, (8, W))
    color = (rast[..., 3:4] > 0).float()  # 1 on the quad, 0 behind
    return pos, tri, rast, color


def test_antialias_is_a_no_op_when_ids_are_constant():
    pos = torch.tensor([[[-3.0, -3.0, 0.0, 1.0], [5.0, -3.0, 0.0, 1.0], [-3.0, 5.0, 0.0, 1.0]]])
    rast, _ = tb.rasterize(pos, ONE_TRI, (8, 8))
    assert (rast[..., 3] == 1).all()
    color = torch.rand(1, 8, 8, 3)
    torch.testing.assert_close(tb.antialias(color, rast, pos, ONE_TRI), color, rtol=0, atol=0)


@pytest.mark.parametrize("edge_px, column, expected", [(3.3, 3, 0.8), (3.7, 4, 0.2)])
def test_antialias_blends_by_covered_fraction(edge_px, column, expected):
    pos, tri, rast, color = edge_scene(edge_px)
    out = tb.antialias(color, rast, pos, tri)
    changed = (out != color).any(-1)[0]
    assert changed[:, column].all() and changed.sum() == 8  # only the silhouette, not the diagonal
    torch.testing.assert_close(out[0, :, column, 0], torch.full((8,), expected), atol=1e-5, rtol=0)
    # moving the edge right by one NDC unit moves it W/2 = 4 px: d(coverage)/dx = 4 per row
    grad = torch.autograd.grad(out[0, :, column, 0].sum(), pos)[0]
    torch.testing.assert_close(grad[0, 1:3, 0].sum(), torch.tensor(4.0 * 8), atol=1e-3, rtol=0)
    boosted = torch.autograd.grad(tb.antialias(color, rast, pos, tri, pos_gradient_boost=2.0)[0, :, column, 0].sum(), pos)[0]
    torch.testing.assert_close(boosted, 2 * grad)
    ranged = tb.antialias(color, rast, pos[0], tri)  # range mode: pos [V,4] serves every image
    torch.testing.assert_close(ranged, out)


def test_mipmap_nearest_takes_the_finer_level():
    """linear-mipmap-nearest uses level floor(ℓ), as nvdiffrast does (compared on an H200), not the rounded level."""
    tex = torch.rand(1, 4, 4, 3, generator=torch.Generator().manual_seed(0))
    uv = torch.rand(1, 2, 2, 2, generator=torch.Generator().manual_seed(1))
    at = lambda d: torch.tensor([d, 0.0, 0.0, d]).expand(1, 2, 2, 4)  # noqa: E731 - ℓ = log2(4d)
    level_1_6 = tb.texture(tex, uv, at(2**1.6 / 4), filter_mode="linear-mipmap-nearest", boundary_mode="clamp")
    level_1 = tb.texture(tex, uv, at(0.5), filter_mode="linear-mipmap-linear", boundary_mode="clamp")
    level_2 = tb.texture(tex, uv, at(1.0), filter_mode="linear-mipmap-linear", boundary_mode="clamp")
    torch.testing.assert_close(level_1_6, level_1)
    assert not torch.allclose(level_1_6, level_2)
