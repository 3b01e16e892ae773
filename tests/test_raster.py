"""CPU tests of the pure-torch nvdiffrast fallback: rasterize, interpolate, topology, backend choice (specs/backends.md C and D; texture and antialias: test_raster_texture.py)."""

from __future__ import annotations

import importlib
import sys

import pytest
import torch

from uhrtex.common.backends import BackendUnavailable
from uhrtex.raster import Renderer
from uhrtex.raster import torch_backend as tb

pytestmark = pytest.mark.usefixtures("one_torch_thread")


KAT_POS = torch.tensor([[[-0.9, -0.9, 0.5, 1.0], [0.8, -0.9, 0.5, 1.0], [-0.9, 0.8, 0.5, 1.0]]])
ONE_TRI = torch.tensor([[0, 1, 2]], dtype=torch.int32)


def pixel_centers(H, W, dtype=torch.float64):
    """NDC (X, Y) of every pixel, [H, W] each, row 0 at the bottom."""
    Y, X = torch.meshgrid((2 * torch.arange(H, dtype=dtype) + 1) / H - 1, (2 * torch.arange(W, dtype=dtype) + 1) / W - 1, indexing="ij")
    return X, Y


def brute_force_ids(pos, tri, H, W):
    """Independent per-pixel reference: ids [H,W] and a mask of pixels within 1e-6 of any edge.

    Every (pixel, triangle) pair, barycentrics b = A / sum(A); covered when all b >= 0, the
    interpolated w > 0 and -w <= z <= w; the smallest z/w wins.
    """
    X, Y = pixel_centers(H, W)
    X, Y = X.reshape(-1, 1), Y.reshape(-1, 1)
    v = pos.double()[tri.long()]  # [T, 3, 4]
    q = [(v[:, i, 0] - X * v[:, i, 3], v[:, i, 1] - Y * v[:, i, 3]) for i in range(3)]  # each [P, T]
    A = torch.stack([q[j][0] * q[k][1] - q[j][1] * q[k][0] for j, k in ((1, 2), (2, 0), (0, 1))])  # [3, P, T]
    b = A / A.sum(0)
    z = (b * v[:, :, 2].T[:, None, :]).sum(0)
    w = (b * v[:, :, 3].T[:, None, :]).sum(0)
    inside = (b >= 0).all(0) & (w > 0) & (z >= -w) & (z <= w)
    zw = torch.where(inside, z / w, torch.full_like(z, torch.inf))
    best = zw.min(1)
    ids = torch.where(best.values.isfinite(), best.indices + 1, 0)
    near_edge = ((b.abs() < 1e-6).any(0) & (b >= -1e-6).all(0)).any(1)
    return ids.view(H, W), near_edge.view(H, W)


def test_rasterize_known_answer():
    rast, db = tb.rasterize(KAT_POS, ONE_TRI, (4, 4))
    assert rast.shape == db.shape == (1, 4, 4, 4) and rast.dtype == torch.float32
    covered = torch.zeros(4, 4, dtype=torch.bool)
    covered[0, :3] = covered[1, :2] = covered[2, 0] = True  # X + Y < -0.1
    assert torch.equal(rast[0, ..., 3] > 0, covered)
    u = torch.tensor([[0.823529, 0.529412, 0.235294], [0.529412, 0.235294, 0], [0.235294, 0, 0]])
    v = torch.tensor([[0.088235, 0.382353, 0.676471], [0.088235, 0.382353, 0], [0.088235, 0, 0]])
    torch.testing.assert_close(rast[0, :3, :3, 0], u, atol=1e-6, rtol=0)
    torch.testing.assert_close(rast[0, :3, :3, 1], v, atol=1e-6, rtol=0)
    torch.testing.assert_close(rast[0, ..., 2], 0.5 * covered.float())
    torch.testing.assert_close(rast[0, ..., 3], covered.float())
    expected_db = torch.tensor([-0.294118, -0.294118, 0.294118, 0.0])
    torch.testing.assert_close(db[0][covered], expected_db.expand(6, 4), atol=1e-6, rtol=0)
    assert (rast[0][~covered] == 0).all() and (db[0][~covered] == 0).all()


def test_rasterize_perspective_known_answer():
    pos = KAT_POS.clone()
    pos[0, 1] = torch.tensor([1.6, -1.8, 1.0, 2.0])  # same screen position, w = 2
    rast, _ = tb.rasterize(pos, ONE_TRI, (4, 4))
    torch.testing.assert_close(rast[0, 0, 0, :2], torch.tensor([0.861538, 0.046154]), atol=1e-6, rtol=0)


def test_positive_y_lands_in_upper_rows():
    pos = torch.tensor([[[-0.5, 0.2, 0.0, 1.0], [0.5, 0.2, 0.0, 1.0], [0.0, 0.9, 0.0, 1.0]]])
    rast, _ = tb.rasterize(pos, ONE_TRI, (16, 16))
    rows = (rast[0, ..., 3] > 0).nonzero()[:, 0]
    assert rows.numel() > 0 and rows.min() >= 8


def test_nearer_triangle_wins_in_either_order():
    near = [[-0.9, -0.9, -0.2, 1.0], [0.9, -0.9, -0.2, 1.0], [0.0, 0.9, -0.2, 1.0]]
    far = [[-0.9, 0.9, 0.4, 1.0], [0.9, 0.9, 0.4, 1.0], [0.0, -0.9, 0.4, 1.0]]
    for order in ((near, far), (far, near)):
        pos = torch.tensor([order[0] + order[1]])
        tri = torch.tensor([[0, 1, 2], [3, 4, 5]], dtype=torch.int32)
        rast, _ = tb.rasterize(pos, tri, (8, 8))
        near_id = 1 if order[0] is near else 2
        # pixel (4, 4) lies in both triangles; the near one (z/w = -0.2) must win
        assert rast[0, 4, 4, 3] == near_id and torch.isclose(rast[0, 4, 4, 2], torch.tensor(-0.2))
        ids, _ = brute_force_ids(pos[0], tri, 8, 8)
        assert torch.equal(rast[0, ..., 3].long(), ids) and set(ids.unique().tolist()) == {0, 1, 2}


def test_both_windings_cover_the_same_pixels():
    rast_ccw, _ = tb.rasterize(KAT_POS, ONE_TRI, (16, 16))
    rast_cw, _ = tb.rasterize(KAT_POS, torch.tensor([[0, 2, 1]], dtype=torch.int32), (16, 16))
    assert torch.equal(rast_ccw[..., 3], rast_cw[..., 3])
    torch.testing.assert_close(rast_ccw[..., 0], rast_cw[..., 0])  # u still weights vertex 0
    covered = rast_cw[..., 3] > 0
    torch.testing.assert_close(rast_ccw[..., 1][covered], (1 - rast_cw[..., 0] - rast_cw[..., 1])[covered])


def test_rast_db_matches_finite_differences():
    pos = torch.tensor([[[-0.8, -0.7, 0.2, 1.0], [1.5, -1.2, 0.9, 1.8], [-0.2, 2.1, 1.5, 2.6]]], dtype=torch.float64)
    H, W, eps = 24, 32, 1e-6
    rast, db = tb.rasterize(pos, ONE_TRI, (H, W))
    mask = rast[0, ..., 3] > 0
    assert mask.sum() > 50

    def shifted(axis, d):  # moving every vertex by -d*w shifts the pixel center by +d in NDC
        p = pos.clone()
        p[..., axis] -= d * p[..., 3]
        return tb.rasterize(p, ONE_TRI, (H, W))[0][0, ..., :2]

    for axis, size, cols in ((0, W, (0, 2)), (1, H, (1, 3))):
        fd = (shifted(axis, eps) - shifted(axis, -eps)) / (2 * eps) * (2 / size)  # per pixel
        torch.testing.assert_close(db[0, ..., list(cols)][mask], fd[mask], atol=1e-6, rtol=1e-5)


def test_rasterize_gradients_match_gradcheck():
    pos = torch.tensor([[[-0.8, -0.7, 0.2, 1.0], [1.5, -1.2, 0.9, 1.8], [-0.2, 2.1, 1.5, 2.6]]], dtype=torch.float64, requires_grad=True)

    def fn(p):
        rast, db = tb.rasterize(p, ONE_TRI, (6, 8))
        return rast[..., :2], db

    assert torch.autograd.gradcheck(fn, (pos,), eps=1e-7, atol=1e-6)
    rast, db = tb.rasterize(pos, ONE_TRI, (6, 8), grad_db=False)
    assert not db.requires_grad or torch.autograd.grad(db.sum(), pos, allow_unused=True)[0] is None


def test_clipping_and_chunking_match_brute_force():
    gen = torch.Generator().manual_seed(0)
    T, H, W = 60, 24, 40
    xyw = torch.randn(3 * T, 3, generator=gen) * torch.tensor([1.2, 1.2, 0.6]) + torch.tensor([0.0, 0.0, 1.0])
    z = torch.randn(3 * T, generator=gen) * 1.3 * xyw[:, 2].abs()  # many corners outside -w..w
    pos = torch.stack([xyw[:, 0], xyw[:, 1], z, xyw[:, 2]], -1)
    tri = torch.arange(3 * T, dtype=torch.int32).view(T, 3)
    clipped = ((pos[:, 2] < -pos[:, 3]) | (pos[:, 2] > pos[:, 3])).view(T, 3).any(1)
    assert clipped.sum() > T // 4 and (pos[:, 3] < 0).any()
    ids, near_edge = brute_force_ids(pos, tri, H, W)
    for budget in (300, 1 << 21):  # small budget: many chunks of rows and spans
        rast, _ = tb.rasterize(pos[None], tri, (H, W), candidate_budget=budget)
        got = rast[0, ..., 3].long()
        assert torch.equal(got[~near_edge], ids[~near_edge])
        assert (rast[0, ..., 2].abs() <= 1).all()
    assert (ids > 0).float().mean() > 0.3


def test_nearest_depth_is_the_rasterized_depth():
    gen = torch.Generator().manual_seed(1)
    T, H, W = 60, 24, 40
    xyw = torch.randn(3 * T, 3, generator=gen) * torch.tensor([1.2, 1.2, 0.6]) + torch.tensor([0.0, 0.0, 1.0])
    z = torch.randn(3 * T, generator=gen) * 1.3 * xyw[:, 2].abs()  # clipped corners, overlaps in both orders
    pos = torch.stack([xyw[:, 0], xyw[:, 1], z, xyw[:, 2]], -1)[None]
    tri = torch.arange(3 * T, dtype=torch.int32).view(T, 3)
    rast, _ = tb.rasterize(pos, tri, (H, W))
    depth = Renderer("torch").depth(pos, tri, (H, W))
    hit = rast[..., 3] > 0
    assert torch.equal(depth.isfinite(), hit) and hit.float().mean() > 0.3
    assert torch.allclose(depth[hit], rast[..., 2][hit], atol=1e-6, rtol=1e-5)
    assert (depth[hit] < 0).any() and (depth[hit] > 0).any()  # both signs of z/w decode


def test_mesh_is_watertight():
    n = 12  # a tilted, perspective grid of 2*n*n triangles that covers the whole screen
    g = torch.linspace(-1.6, 1.6, n + 1, dtype=torch.float64)
    gy, gx = torch.meshgrid(g, g, indexing="ij")
    gx = gx + 0.05 * torch.sin(3 * gy)
    w = 1.0 + 0.3 * gx + 0.2 * gy
    pos = torch.stack([gx * w, gy * w, 0.1 * w, w], -1).reshape(1, -1, 4).float()
    idx = torch.arange((n + 1) ** 2).view(n + 1, n + 1)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
    tri = torch.cat([torch.stack([a, b, d], -1).reshape(-1, 3), torch.stack([a, d, c], -1).reshape(-1, 3)]).int()
    rast, _ = tb.rasterize(pos, tri, (61, 67))
    assert (rast[..., 3] > 0).all()


def test_range_mode_matches_instanced_subsets():
    gen = torch.Generator().manual_seed(1)
    pos = torch.cat([torch.rand(12, 2, generator=gen) * 2 - 1, torch.rand(12, 1, generator=gen) - 0.5, torch.ones(12, 1)], 1)
    tri = torch.randint(0, 12, (7, 3), generator=gen, dtype=torch.int32)
    ranges = torch.tensor([[0, 3], [3, 4], [5, 0]], dtype=torch.int32)
    rast, db = tb.rasterize(pos, tri, (16, 20), ranges=ranges)
    assert rast.shape == (3, 16, 20, 4)
    for b, (start, count) in enumerate(ranges.tolist()):
        sub, sub_db = tb.rasterize(pos[None], tri[start : start + count], (16, 20))
        expected = sub.clone()
        expected[..., 3] = torch.where(sub[..., 3] > 0, sub[..., 3] + start, 0)  # ids stay global
        torch.testing.assert_close(rast[b], expected[0])
        torch.testing.assert_close(db[b], sub_db[0])
    attr = torch.rand(12, 2, generator=gen)
    out, _ = tb.interpolate(attr, rast, tri)
    out_inst, _ = tb.interpolate(attr[None], rast, tri)  # [V,C] behaves like a broadcast batch
    torch.testing.assert_close(out, out_inst)


def test_instanced_batch_matches_single_images():
    pos = torch.stack([KAT_POS[0], KAT_POS[0] * torch.tensor([-1.0, 1.0, 1.0, 1.0])])
    rast, _ = tb.rasterize(pos, ONE_TRI, (8, 8))
    for b in range(2):
        torch.testing.assert_close(rast[b], tb.rasterize(pos[b : b + 1], ONE_TRI, (8, 8))[0][0])
    assert not torch.equal(rast[0], rast[1])


# --------------------------------------------------------------------------- interpolate


def test_interpolate_known_answer_and_derivatives():
    rast, db = tb.rasterize(KAT_POS, ONE_TRI, (4, 4))
    attr = torch.tensor([[[1.0, -0.9, -0.9], [2.0, 0.8, -0.9], [4.0, -0.9, 0.8]]])  # value, NDC x, NDC y
    out, out_da = tb.interpolate(attr, rast, ONE_TRI, rast_db=db, diff_attrs=[1, 2])
    u, v = 0.823529, 0.088235
    torch.testing.assert_close(out[0, 0, 0, 0], torch.tensor(u * 1 + v * 2 + (1 - u - v) * 4), atol=1e-5, rtol=0)
    covered = rast[0, ..., 3] > 0
    X, Y = pixel_centers(4, 4, torch.float32)
    torch.testing.assert_close(out[0, ..., 1][covered], X[covered])  # interpolating NDC x gives X
    torch.testing.assert_close(out[0, ..., 2][covered], Y[covered])
    # d(NDC x)/dpixel = 2/W along X, 0 along Y; interleaved (dx/dX, dx/dY, dy/dX, dy/dY)
    torch.testing.assert_close(out_da[0][covered], torch.tensor([0.5, 0.0, 0.0, 0.5]).expand(6, 4), atol=1e-6, rtol=0)
    assert (out[0][~covered] == 0).all() and (out_da[0][~covered] == 0).all()
    assert tb.interpolate(attr, rast, ONE_TRI)[1].shape == (1, 4, 4, 0)
    _, all_da = tb.interpolate(attr, rast, ONE_TRI, rast_db=db, diff_attrs="all")
    torch.testing.assert_close(all_da[..., 2:], out_da)


def test_interpolate_gradcheck():
    pos = torch.tensor([[[-0.8, -0.7, 0.2, 1.0], [1.5, -1.2, 0.9, 1.8], [-0.2, 2.1, 1.5, 2.6]]], dtype=torch.float64)
    rast, db = tb.rasterize(pos, ONE_TRI, (5, 6))
    attr = torch.rand(1, 3, 2, dtype=torch.float64, requires_grad=True)
    uv, db = rast[..., :2].clone().requires_grad_(), db.requires_grad_()
    fixed = rast[..., 2:]  # z/w and id carry no gradient

    def fn(a, u, d):
        return tb.interpolate(a, torch.cat([u, fixed], -1), ONE_TRI, rast_db=d, diff_attrs="all")

    assert torch.autograd.gradcheck(fn, (attr, uv, db))


def test_topology_pairs_shared_edges():
    tri = torch.tensor([[0, 1, 2], [0, 2, 3]], dtype=torch.int32)
    topo = tb.construct_topology(tri)
    # edge (2,0) of tri 0 borders tri 1 whose far vertex is 3; edge (0,2) of tri 1 -> vertex 1
    assert topo.tolist() == [[-1, -1, 3], [1, -1, -1]]


# --------------------------------------------------------------------------- end to end


def test_quad_mesh_texture_optimisation_reduces_the_loss():
    """Spec D test 10: fit a 64^2 texture to renders of a perspective quad mesh."""
    torch.manual_seed(0)
    n = 4
    g = torch.linspace(0, 1, n + 1)
    gv, gu = torch.meshgrid(g, g, indexing="ij")
    uv = torch.stack([gu, gv], -1).reshape(-1, 2)
    xyz = torch.stack([gu * 1.6 - 0.8, gv * 1.6 - 0.8, 0.3 * (gu - 0.5)], -1).reshape(-1, 3)
    w = 1.5 + xyz[:, 2]
    pos = torch.cat([xyz[:, :2], (0.1 * w)[:, None], w[:, None]], 1)[None]
    idx = torch.arange((n + 1) ** 2).view(n + 1, n + 1)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
    tri = torch.cat([torch.stack([a, b, d], -1).reshape(-1, 3), torch.stack([a, d, c], -1).reshape(-1, 3)]).int()
    r = Renderer(backend="torch")
    rast, db = r.rasterize(pos, tri, (48, 48))
    texc, texd = r.interpolate(uv[None], rast, tri, rast_db=db, diff_attrs="all")
    mask = rast[..., 3:4] > 0
    target_tex = torch.nn.functional.interpolate(torch.rand(1, 3, 8, 8), size=(64, 64), mode="bilinear").permute(0, 2, 3, 1)
    target = r.texture(target_tex, texc, texd, filter_mode="linear-mipmap-linear") * mask
    tex = torch.full((1, 64, 64, 3), 0.5, requires_grad=True)
    opt = torch.optim.Adam([tex], lr=0.05)
    losses = []
    for _ in range(40):
        img = r.texture(tex, texc, texd, filter_mode="linear-mipmap-linear") * mask
        loss = (img - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]


# --------------------------------------------------------------------------- API


def test_renderer_backend_choice_and_lazy_import():
    assert Renderer(backend="torch").backend == "torch"
    with pytest.warns(UserWarning, match="pure-torch"):
        import uhrtex.common.backends as backends

        backends._warned.discard("raster")
        assert Renderer(backend="auto", device="cpu").backend == "torch"
    with pytest.raises(BackendUnavailable, match="nvdiffrast"):
        Renderer(backend="nvdiffrast", device="cpu")


def test_torch_backend_never_imports_nvdiffrast(monkeypatch):
    monkeypatch.setitem(sys.modules, "nvdiffrast", None)  # any import of it now raises ImportError
    monkeypatch.setitem(sys.modules, "nvdiffrast.torch", None)
    import uhrtex.raster as raster

    importlib.reload(raster)
    raster.Renderer(backend="torch").rasterize(KAT_POS, ONE_TRI, (4, 4))


def test_bad_inputs_raise_one_line_value_errors():
    cases = [
        lambda: tb.rasterize(KAT_POS, ONE_TRI.float(), (4, 4)),
        lambda: tb.rasterize(KAT_POS[0], ONE_TRI, (4, 4)),
        lambda: tb.rasterize(KAT_POS[..., :3], ONE_TRI, (4, 4)),
        lambda: tb.rasterize(KAT_POS, ONE_TRI + 5, (4, 4)),
        lambda: tb.rasterize(KAT_POS, ONE_TRI, 4),
        lambda: tb.rasterize(KAT_POS, ONE_TRI, (4, 0)),
        lambda: tb.interpolate(torch.rand(2, 3, 1), torch.zeros(1, 4, 4, 4), ONE_TRI),
        lambda: tb.interpolate(torch.rand(1, 3, 1), torch.zeros(1, 4, 4, 4), ONE_TRI, diff_attrs="all"),
        lambda: tb.texture(torch.rand(1, 4, 4, 1), torch.rand(1, 2, 2, 2), filter_mode="linear-mipmap-linear"),
        lambda: tb.texture(torch.rand(1, 4, 4, 1), torch.rand(1, 2, 2, 2), boundary_mode="mirror"),
    ]
    for case in cases:
        with pytest.raises(ValueError) as err:
            case()
        assert "\n" not in str(err.value)
    with pytest.raises(NotImplementedError):
        tb.texture(torch.rand(1, 4, 4, 1), torch.rand(1, 2, 2, 2), boundary_mode="cube")
