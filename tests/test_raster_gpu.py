"""GPU tests G5/G6 (specs/backends.md D): the torch raster backend against real nvdiffrast.

Run with `pytest -m gpu tests/test_raster_gpu.py` on a machine with CUDA and nvdiffrast.
Both backends run on the same CUDA tensors; nvdiffrast is the reference.
"""

from __future__ import annotations

import math

import pytest
import torch

from uhrtex.raster import torch_backend as tb

pytestmark = pytest.mark.gpu

if not torch.cuda.is_available():
    pytest.skip("needs CUDA: these tests compare against nvdiffrast on the GPU", allow_module_level=True)
dr = pytest.importorskip("nvdiffrast.torch", reason="needs nvdiffrast (pip install --no-build-isolation git+https://github.com/NVlabs/nvdiffrast)")

DEV = torch.device("cuda")


@pytest.fixture(scope="module")
def glctx():
    return dr.RasterizeCudaContext(device=DEV)


def bumpy_sphere(n_lat=48, n_lon=64, seed=0):
    """A closed, non-convex mesh (self-occluding): positions [V,3], uvs [V,2], faces [T,3] int32."""
    gen = torch.Generator().manual_seed(seed)
    theta = torch.linspace(0, math.pi, n_lat + 1)[1:-1]
    phi = torch.linspace(0, 2 * math.pi, n_lon + 1)[:-1]
    th, ph = torch.meshgrid(theta, phi, indexing="ij")
    r = 1 + 0.25 * torch.sin(3 * th) * torch.cos(4 * ph) + 0.02 * torch.rand(th.shape, generator=gen)
    ring = torch.stack([r * th.sin() * ph.cos(), r * th.cos(), r * th.sin() * ph.sin()], -1).reshape(-1, 3)
    xyz = torch.cat([ring, torch.tensor([[0.0, 1.0, 0.0], [0.0, -1.0, 0.0]])])
    uv = torch.cat([torch.stack([ph / (2 * math.pi), 1 - th / math.pi], -1).reshape(-1, 2), torch.tensor([[0.5, 1.0], [0.5, 0.0]])])
    idx = torch.arange((n_lat - 1) * n_lon).view(n_lat - 1, n_lon)
    nxt = idx.roll(-1, 1)
    faces = [torch.stack([idx[:-1], idx[1:], nxt[:-1]], -1), torch.stack([nxt[:-1], idx[1:], nxt[1:]], -1)]
    top, bottom = len(ring), len(ring) + 1
    caps = [torch.stack([torch.full_like(idx[0], top), idx[0], nxt[0]], -1), torch.stack([torch.full_like(idx[-1], bottom), nxt[-1], idx[-1]], -1)]
    tri = torch.cat([f.reshape(-1, 3) for f in faces + caps]).int()
    return xyz, uv, tri


def random_views(xyz, n_views, aspect, seed=0):
    """Clip-space positions [n,V,4] for random perspective cameras looking at the mesh."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_views):
        q = torch.randn(4, generator=gen)
        q = q / q.norm()
        w, x, y, z = q
        rot = torch.tensor(
            [
                [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
            ]
        )
        cam = xyz @ rot.T + torch.tensor([0.2, -0.1, 0.0]) * torch.randn(3, generator=gen)
        cam[:, 2] -= 2.5 + torch.rand(1, generator=gen) * 1.5  # camera looks down -z
        f, near, far = 1 / math.tan(math.radians(50) / 2), 0.1, 20.0
        clip = torch.stack(
            [f / aspect * cam[:, 0], f * cam[:, 1], (far + near) / (near - far) * cam[:, 2] + 2 * far * near / (near - far), -cam[:, 2]], -1
        )
        out.append(clip)
    return torch.stack(out)


def edge_pixels(ids):
    """Pixels with a 4-neighbour of different id. ids: [B,H,W]."""
    edge = torch.zeros_like(ids, dtype=torch.bool)
    dx, dy = ids[:, :, 1:] != ids[:, :, :-1], ids[:, 1:] != ids[:, :-1]
    edge[:, :, 1:] |= dx
    edge[:, :, :-1] |= dx
    edge[:, 1:] |= dy
    edge[:, :-1] |= dy
    return edge


@pytest.mark.parametrize("resolution", [(256, 256), (384, 512)])
def test_g5_rasterize_matches_nvdiffrast(glctx, resolution):
    H, W = resolution
    xyz, _, tri = bumpy_sphere()
    pos = random_views(xyz, 4, W / H).to(DEV).contiguous()
    tri = tri.to(DEV)
    ref, ref_db = dr.rasterize(glctx, pos, tri, resolution)
    ours, ours_db = tb.rasterize(pos, tri, resolution)
    ids_ref, ids_ours = ref[..., 3].long(), ours[..., 3].long()
    same = ids_ref == ids_ours
    assert same.float().mean() >= 0.995, f"ids agree on only {same.float().mean():.4%} of pixels"
    stray = ~same & ~(edge_pixels(ids_ref) | edge_pixels(ids_ours))
    assert not stray.any(), f"{int(stray.sum())} id mismatches away from any edge"
    hit = same & (ids_ref > 0)
    assert hit.float().mean() > 0.1
    torch.testing.assert_close(ours[..., :2][hit], ref[..., :2][hit], atol=1e-5, rtol=0)
    torch.testing.assert_close(ours[..., 2][hit], ref[..., 2][hit], atol=1e-6, rtol=0)
    # rast_db relative to each pixel's largest derivative
    scale = ref_db[hit].abs().amax(-1, keepdim=True)
    assert ((ours_db[hit] - ref_db[hit]).abs() <= 1e-4 * scale).all()


def test_g5_depth_pass_matches_nvdiffrast():
    from uhrtex.raster import Renderer

    xyz, _, tri = bumpy_sphere()
    pos = random_views(xyz, 2, 1.0).to(DEV).contiguous()
    tri = tri.to(DEV)
    ref = Renderer("nvdiffrast", DEV).depth(pos, tri, (256, 256))
    ours = Renderer("torch", DEV).depth(pos, tri, (256, 256))
    same = ref.isfinite() == ours.isfinite()
    assert same.float().mean() >= 0.995
    # G5 compares depth where both pick the same triangle; depth() returns no ids, so leave out the pixels next to an
    # id edge (where the two may pick different triangles: 0.3% of pixels, up to 0.017 in z/w, on an H200).
    ids, _ = dr.rasterize(dr.RasterizeCudaContext(device=DEV), pos, tri, (256, 256))
    hit = same & ref.isfinite() & ~edge_pixels(ids[..., 3].long())
    assert hit.float().mean() > 0.1
    torch.testing.assert_close(ours[hit], ref[hit], atol=1e-6, rtol=0)


def test_g5_rasterize_gradients_match_nvdiffrast(glctx):
    xyz, _, tri = bumpy_sphere()
    pos = random_views(xyz, 2, 1.0, seed=1).to(DEV).contiguous()
    tri = tri.to(DEV)
    ref, _ = dr.rasterize(glctx, pos, tri, (256, 256))
    weights = torch.rand(ref.shape[:-1] + (4,), device=DEV)
    grads = []
    for fn in (lambda p: dr.rasterize(glctx, p, tri, (256, 256)), lambda p: tb.rasterize(p, tri, (256, 256))):
        p = pos.clone().requires_grad_()
        rast, db = fn(p)
        same = (rast[..., 3] == ref[..., 3]).unsqueeze(-1)  # only where both agree on the triangle
        loss = (rast[..., :2] * weights[..., :2] * same).sum() + (db * weights * same).sum()
        grads.append(torch.autograd.grad(loss, p)[0])
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-3, atol=1e-3 * grads[0].abs().max().item())


@pytest.fixture(scope="module")
def scene(glctx):
    xyz, uv, tri = bumpy_sphere()
    pos = random_views(xyz, 2, 1.0, seed=2).to(DEV).contiguous()
    tri, uv = tri.to(DEV), uv.to(DEV)
    rast, rast_db = dr.rasterize(glctx, pos, tri, (256, 256))
    return dict(pos=pos, tri=tri, uv=uv, rast=rast, rast_db=rast_db)


def test_g6_interpolate_matches_nvdiffrast(scene):
    attr = torch.cat([scene["uv"], torch.rand(scene["uv"].shape[0], 3, device=DEV)], 1)[None].contiguous()
    ref, ref_da = dr.interpolate(attr, scene["rast"], scene["tri"], rast_db=scene["rast_db"], diff_attrs="all")
    ours, ours_da = tb.interpolate(attr, scene["rast"], scene["tri"], rast_db=scene["rast_db"], diff_attrs="all")
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(ours_da, ref_da, atol=1e-5, rtol=1e-5)
    _, ref_sel_da = dr.interpolate(attr, scene["rast"], scene["tri"], rast_db=scene["rast_db"], diff_attrs=[0, 3])
    _, ours_sel_da = tb.interpolate(attr, scene["rast"], scene["tri"], rast_db=scene["rast_db"], diff_attrs=[0, 3])
    torch.testing.assert_close(ours_sel_da, ref_sel_da, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("boundary", ["wrap", "clamp", "zero"])
@pytest.mark.parametrize("filter_mode", ["linear", "nearest", "linear-mipmap-linear", "linear-mipmap-nearest"])
def test_g6_texture_matches_nvdiffrast(scene, boundary, filter_mode):
    gen = torch.Generator(device=DEV).manual_seed(3)
    tex = torch.rand(1, 128, 256, 3, device=DEV, generator=gen)
    uv, uv_da = dr.interpolate(scene["uv"][None].contiguous(), scene["rast"], scene["tri"], rast_db=scene["rast_db"], diff_attrs="all")
    uv = (uv * 1.5 - 0.25).contiguous()  # reach outside [0,1] to exercise the boundary mode
    uv_da = (uv_da * 1.5 * 4).contiguous()  # minify: several mip levels in use
    mip = filter_mode.startswith("linear-mipmap")
    kwargs = dict(filter_mode=filter_mode, boundary_mode=boundary)
    if mip:
        kwargs["uv_da"] = uv_da
    tol = 1e-4 if mip else 1e-5
    outs, grads = [], []
    for fn in (dr.texture, tb.texture):
        t, u = tex.clone().requires_grad_(), uv.clone().requires_grad_()
        out = fn(t, u, **kwargs)
        weights = torch.linspace(0.5, 1.5, out.numel(), device=DEV).view_as(out)
        g = torch.autograd.grad((out * weights).sum(), (t, u) if filter_mode != "nearest" else (t,))
        outs.append(out.detach())
        grads.append(g)
    # wrap samples a one-texel padded copy: remapping s to it costs float32 rounding of s·(Wt+2) (~1.5e-5 at Wt=256)
    close = (outs[1] - outs[0]).abs() <= (2 * tol if boundary == "wrap" else tol)
    if filter_mode == "nearest":  # floor() may land on the other texel at exact texel boundaries
        assert close.float().mean() >= 0.9999
    else:
        assert close.all(), f"max |diff| {float((outs[1] - outs[0]).abs().max()):.3g}"
    tex_grad_ref, tex_grad = grads[0][0], grads[1][0]
    if boundary == "zero" and filter_mode != "nearest" and not torch.allclose(tex_grad, tex_grad_ref, rtol=1e-4, atol=1e-5 * tex_grad_ref.abs().max().item()):
        # Measured on an H200 (2026-12-04, nvdiffrast 0.4.0): the outputs agree, but nvdiffrast's zero-mode texture
        # gradient does not (0.2% of texels, up to 3.0, in linear; every texel in mipmap-linear). Ours is the
        # derivative of this same forward (tests/test_raster_texture.py::test_texture_gradcheck).
        pytest.xfail("nvdiffrast's zero-boundary texture gradient differs from the derivative of the shared forward")
    if filter_mode == "nearest":  # the pixels that landed on the other texel move their gradient with them
        grad_close = (tex_grad - tex_grad_ref).abs() <= 1e-5 * tex_grad_ref.abs().max().item()
        assert grad_close.float().mean() >= 0.9999
        return
    torch.testing.assert_close(tex_grad, tex_grad_ref, rtol=1e-5 if not mip else 1e-4, atol=1e-5 * tex_grad_ref.abs().max().item())
    if filter_mode != "nearest":
        uv_ref, uv_ours = grads[0][1], grads[1][1]
        frac_close = ((uv_ours - uv_ref).abs() <= 1e-5 * max(1.0, uv_ref.abs().max().item())).float().mean()
        assert frac_close >= (0.999 if not mip else 0.99), f"uv gradients agree on {frac_close:.4%}"


def test_g6_antialias_matches_nvdiffrast(scene):
    color, _ = dr.interpolate(torch.rand(scene["uv"].shape[0], 3, device=DEV)[None].contiguous(), scene["rast"], scene["tri"])
    ref = dr.antialias(color, scene["rast"], scene["pos"], scene["tri"])
    ours = tb.antialias(color, scene["rast"], scene["pos"], scene["tri"])
    changed_ref, changed_ours = (ref != color).any(-1), (ours != color).any(-1)
    assert changed_ref.any()
    agree = (changed_ref == changed_ours).float().mean()
    assert agree >= 0.999, f"antialias touches different pixels ({agree:.4%} agree)"
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)
