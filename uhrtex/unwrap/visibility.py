"""Which texels of a mesh's UV texture a camera sees, and where in the image: the visibility pass of the
`direct` unwrap (and the coverage of `optimize`).

For every texel covered by the UV layout: its 3-D point (barycentric in its triangle), projected by the
camera; kept when in front of the camera, inside the frame, not seen at a grazing angle (|cos| ≥ min_cos
between the face normal and the view ray), not occluded (camera depth ≤ the depth buffer's · (1 + tol))
and with all four bilinear taps on the face mask.

Fast path: the UV layout is rasterized once per (mesh UVs, resolution) (`uhrtex.raster.uv_layout`, the
torch backend's exact coverage), cached in-process and in the cache folder (`uhrtex.common.disk_cache`: a
fixed-topology mesh such as the landmark mesh or a 3DMM has the same layout for every portrait). Because the
layout is flat, every texel quantity the tests need (camera-space position, the normal·view product) is an
affine function of the texel centre within its triangle: each triangle gets its affine coefficients once
(float64), and a texel costs one gather and a few multiply-adds (float32), in chunks. The depth buffer comes
from the rasterizer's depth pass alone (`Renderer.depth`), and triangles wholly behind it or wholly off the mask
are culled before the per-texel work (`occluded_triangles`, `off_mask_triangles`: conservative tests through a
max-pyramid, so the kept texels are the same).
`reference_visible_texels` keeps the former per-texel formulation (full rasterized image, barycentric world
points, float64), for tests.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict

import torch
import torch.nn.functional as F

from uhrtex.render.camera import Camera
from uhrtex.common.disk_cache import cached, source_digest
from uhrtex.common.imaging import erode
from uhrtex.unwrap.mesh import Mesh
from uhrtex.raster import Renderer
from uhrtex.raster.uv_layout import UVLayoutRaster, barycentric_forms, rasterize_uv_layout, texel_centres

__all__ = ["uv_layout", "visible_texels", "reference_visible_texels", "depth_buffer", "clip_positions"]

_CHUNK = 1 << 20  # texels per chunk (bounds temporaries)
_LAYOUTS: OrderedDict[tuple, tuple[UVLayoutRaster, torch.Tensor]] = OrderedDict()
LAYOUT_CACHE_TEXELS = 2 * 4096 * 4096  # at most ~2 4K layouts (~0.4 GB) stay cached
LAYOUT_DISK_ENTRIES = 8  # layouts kept in the cache folder (64 MB each at 4096²), least recently used dropped


def _mesh_key(mesh: Mesh) -> str:
    h = hashlib.sha1()
    for t in (mesh.uvs, mesh.faces_uv):
        h.update(str((t.dtype, tuple(t.shape))).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _raster_digest() -> str:
    """Hash of the rasterizer's source: a code change gets new cache entries."""
    import uhrtex.raster.torch_backend as backend
    import uhrtex.raster.uv_layout as layout

    return source_digest([backend.__file__, layout.__file__])


def _layout_raster(uvs: torch.Tensor, tri: torch.Tensor, res: int, mesh_key: str) -> UVLayoutRaster:
    """`rasterize_uv_layout`, through the disk cache as a res² int32 map of the covering triangle (−1: none)."""
    def compute() -> torch.Tensor:
        lay = rasterize_uv_layout(uvs, tri, res)
        owner = torch.full((res * res,), -1, dtype=torch.int32)
        owner[lay.texels] = lay.tri.int()
        return owner

    owner = cached(f"uv_layout_{mesh_key[:20]}_{res}_{_raster_digest()}.pt", compute, family="uv_layout_",
                   keep=LAYOUT_DISK_ENTRIES)
    texels = (owner >= 0).nonzero().flatten()
    return UVLayoutRaster(res, texels, owner[texels].long())


def uv_layout(mesh: Mesh, res: int) -> tuple[UVLayoutRaster, torch.Tensor]:
    """The mesh's UV layout rasterized at res² and the per-triangle barycentric forms [T, 2, 3] (cached)."""
    key = (_mesh_key(mesh), int(res))
    if key in _LAYOUTS:
        _LAYOUTS.move_to_end(key)
        return _LAYOUTS[key]
    uvs, tri = mesh.uvs.detach().cpu().float(), mesh.faces_uv.cpu()
    out = _layout_raster(uvs, tri, int(res), key[0]), barycentric_forms(uvs, tri)
    _LAYOUTS[key] = out
    while sum(k[1] ** 2 for k in _LAYOUTS) > LAYOUT_CACHE_TEXELS and len(_LAYOUTS) > 1:
        _LAYOUTS.popitem(last=False)
    return out


def _near_far(mesh: Mesh, camera: Camera) -> tuple[float, float]:
    z = camera.project(mesh.verts)[:, 2]
    return float(z.min()) * 0.5, float(z.max()) * 2.0


def clip_positions(mesh: Mesh, camera: Camera, near_far: tuple[float, float] | None = None) -> torch.Tensor:
    """Clip-space positions 1×V×4 with near/far bracketing the mesh (`_near_far`, unless given)."""
    homo = torch.cat([mesh.verts, torch.ones_like(mesh.verts[:, :1])], 1)
    near, far = near_far or _near_far(mesh, camera)
    return (homo.double() @ camera.clip_from_world(near, far, torch.float64).T).float()[None]


def depth_buffer(mesh: Mesh, camera: Camera, res: int, renderer: Renderer) -> tuple[torch.Tensor, Camera]:
    """Camera-space depth per pixel (1×1×h×w top-down, +inf off the mesh) at long side ≤ res: the nearest z/w
    from the renderer's depth pass, mapped back to camera depth (z/w = A + B / depth for the projection's A, B)."""
    s = min(1.0, res / max(camera.width, camera.height))
    cam = camera.scaled(max(1, round(camera.width * s)), max(1, round(camera.height * s)))
    near, far = _near_far(mesh, cam)
    zw = renderer.depth(clip_positions(mesh, cam, (near, far)).contiguous(), mesh.faces.int(), (cam.height, cam.width))
    a, b = (far + near) / (far - near), -2 * far * near / (far - near)
    z = b / (zw.double() - a)  # +inf z/w (no surface) -> 0: restored below
    z = torch.where(torch.isfinite(zw), z.float(), torch.full_like(zw, math.inf)).flip(1)  # raster row 0 = bottom
    return z[:, None], cam


def _inside_mask(mask: torch.Tensor) -> torch.Tensor:
    """1×1×H×W: the face mask eroded by one pixel, so a bilinear sample of 1 means all four taps are on it."""
    m = (mask.reshape(1, 1, *mask.shape[-2:]) > 0.5).float()
    return erode(m, 1, border="replicate").to(m.dtype)


def _face_normals(pos: torch.Tensor) -> torch.Tensor:
    p = pos.view(-1, 3, 3).double()
    fn = torch.linalg.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    return fn / fn.norm(dim=1, keepdim=True).clamp_min(1e-30)


def _camera_centre(camera: Camera) -> torch.Tensor:
    ext = camera.extrinsics()
    return -torch.linalg.solve(ext[:3, :3], ext[:3, 3])


def _affine_forms(mesh: Mesh, camera: Camera, bary: torch.Tensor) -> torch.Tensor:
    """[T, K, 3] float32: per triangle, K texel quantities as c + a·X + b·Y over the texel centre (NDC):
    camera-space x, y, z, the face normal · (camera centre − point), and the point − camera centre."""
    pos = mesh.verts.double()[mesh.faces]  # [T, 3 corners, 3]
    # world point = p2 + u (p0 − p2) + v (p1 − p2), u and v affine in (X, Y)
    world = pos[:, 2, :, None] * torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    world = world + (pos[:, 0] - pos[:, 2])[:, :, None] * bary[:, 0, None, :]
    world = world + (pos[:, 1] - pos[:, 2])[:, :, None] * bary[:, 1, None, :]  # [T, 3 xyz, 3 (c, a, b)]
    ext = camera.extrinsics()
    cam = torch.einsum("ij,tjk->tik", ext[:3, :3], world)
    cam[:, :, 0] += ext[:3, 3]
    fn = _face_normals(pos.reshape(-1, 3))
    rel = world.clone()
    rel[:, :, 0] -= _camera_centre(camera)  # point − centre
    nview = -(fn[:, :, None] * rel).sum(1, keepdim=True)
    return torch.cat([cam, nview, rel], 1).float()


def _max_pyramid(z: torch.Tensor) -> list[torch.Tensor]:
    """H×W -> [z, 2×2 max, 4×4 max, ...] down to one cell (odd edges padded with −inf: the max stays covering)."""
    levels = [z]
    while max(levels[-1].shape) > 1:
        levels.append(F.max_pool2d(levels[-1][None, None], 2, ceil_mode=True)[0, 0])
    return levels


def _box_max(mesh: Mesh, camera: Camera, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per triangle, an upper bound of `image` (h×w, any resolution over the camera's frame) over the pixels its
    projection can touch, whether it is wholly in front of the camera, and its projected corners -> (float64 [T],
    bool [T], float64 [T, 3, (u, v, z)]).

    A triangle in front of the camera projects inside its corners' bounding box; the box is grown by a pixel (a
    nearest or bilinear lookup reaches one pixel out) and read from a max-pyramid level whose cells are at least
    the box's size, so at most 2 × 2 cells cover it: one gather per triangle, whatever its size."""
    hd, wd = image.shape[-2:]
    p = camera.project(mesh.verts)[mesh.faces]  # [T, 3, (u, v, z)] float64, full-image pixels
    front = (p[..., 2] > 0).all(1)
    cols = (p[..., 0] * (wd / camera.width)).floor()
    rows = (p[..., 1] * (hd / camera.height)).floor()
    x0, x1 = (cols.amin(1) - 1).clamp(0, wd - 1).long(), (cols.amax(1) + 1).clamp(0, wd - 1).long()
    y0, y1 = (rows.amin(1) - 1).clamp(0, hd - 1).long(), (rows.amax(1) + 1).clamp(0, hd - 1).long()
    span = torch.maximum(x1 - x0, y1 - y0) + 1
    level = torch.ceil(torch.log2(span.double())).long()  # cells of 2^level px: the box spans at most 2 × 2 of them
    out = torch.full(level.shape, math.inf, dtype=torch.float64)
    for k, zk in enumerate(_max_pyramid(image.reshape(hd, wd))):  # in its own dtype: a max is exact
        i = (level == k).nonzero().flatten()
        if i.numel() == 0:
            continue
        a, b, c, d = x0[i] >> k, x1[i] >> k, y0[i] >> k, y1[i] >> k
        out[i] = torch.stack([zk[c, a], zk[c, b], zk[d, a], zk[d, b]]).amax(0).double()
    return out, front, p


def occluded_triangles(mesh: Mesh, camera: Camera, zbuf: torch.Tensor, tolerance: float) -> torch.Tensor:
    """bool [T]: triangles every point of which fails the depth test, a conservative cull (hierarchical z).

    A triangle's camera depth is at least its nearest corner's. If that depth exceeds the farthest depth-buffer
    value over the pixels it can touch (`_box_max`) times (1 + tolerance), no texel of it can pass, so its texels
    are skipped before any per-texel work; the kept texels are exactly those of the uncut test."""
    farthest, front, p = _box_max(mesh, camera, zbuf)
    nearest = p[..., 2].amin(1)
    return front & (nearest > farthest * (1 + tolerance) * (1 + 1e-5))  # 1e-5: float32 rounding of texel depths


def off_mask_triangles(mesh: Mesh, camera: Camera, inside: torch.Tensor) -> torch.Tensor:
    """bool [T]: triangles none of whose texels can have all four bilinear taps on the (eroded) mask `inside`
    (h×w at the image's resolution): no inside pixel within a pixel of their projection. Conservative, like
    `occluded_triangles`; on a portrait this drops the neck, the ears and the scalp edge before the per-texel work."""
    most, front, _ = _box_max(mesh, camera, inside)
    return front & (most < 0.5)


@torch.no_grad()
def visible_texels(mesh: Mesh, camera: Camera, mask: torch.Tensor, res: int, opts, renderer: Renderer):
    """Texels of a res² raster-convention texture seen by the camera inside the mask (see module doc).

    -> (flat texel indices N, ascending; grid N×2 into the image for grid_sample, align_corners=False)."""
    h, w = mask.shape[-2:]
    lay, bary = uv_layout(mesh, res)
    forms = _affine_forms(mesh, camera, bary)  # [T, 7, 3]
    zbuf, _ = depth_buffer(mesh, camera, opts.depth_resolution, renderer)
    inside = _inside_mask(mask)
    hidden = occluded_triangles(mesh, camera, zbuf, opts.depth_tolerance) | off_mask_triangles(mesh, camera, inside)
    fx, fy, cx, cy = (float(v) for v in (camera.fx, camera.fy, camera.cx, camera.cy))
    # The cheap, selective tests first: position (3 forms) -> in front, in the frame, on the mask; only the texels
    # that pass get the view forms (4) for the grazing-angle and depth tests.
    pos_forms, view_forms = forms[:, :3].contiguous(), forms[:, 3:].contiguous()
    keep_idx, keep_grid = [], []
    for s0 in range(0, lay.texels.numel(), _CHUNK):
        tri = lay.tri[s0:s0 + _CHUNK]
        sel = (~hidden.index_select(0, tri)).nonzero().flatten()
        t, tri = lay.texels[s0:s0 + _CHUNK][sel], tri[sel]
        X, Y = texel_centres(t, res)
        f = pos_forms.index_select(0, tri)  # [n, 3, 3]
        p = torch.addcmul(torch.addcmul(f[..., 0], f[..., 1], X[:, None]), f[..., 2], Y[:, None])  # [n, 3]
        z = p[:, 2]
        grid = torch.stack([(fx * p[:, 0] / z + cx) / w * 2 - 1, (fy * p[:, 1] / z + cy) / h * 2 - 1], -1)
        sel = ((z > 0) & (grid.abs() <= 1).all(1)).nonzero().flatten()
        m = F.grid_sample(inside, grid[sel].view(1, -1, 1, 2), mode="bilinear", padding_mode="zeros",
                          align_corners=False)
        sel = sel[(m.view(-1) >= 0.999).nonzero().flatten()]  # the survivors gathered once, not twice
        grid, z, t, tri, X, Y = grid[sel], z[sel], t[sel], tri[sel], X[sel], Y[sel]
        f = view_forms.index_select(0, tri)  # [n, 4, 3]
        val = torch.addcmul(torch.addcmul(f[..., 0], f[..., 1], X[:, None]), f[..., 2], Y[:, None])  # [n, 4]
        zb = F.grid_sample(zbuf, grid.view(1, -1, 1, 2), mode="nearest", padding_mode="border", align_corners=False)
        ok = (val[:, 0].abs() >= opts.min_cos * val[:, 1:4].norm(dim=1)) & (z <= zb.view(-1) * (1 + opts.depth_tolerance))
        sel = ok.nonzero().flatten()
        keep_idx.append(t[sel])
        keep_grid.append(grid[sel])
    return torch.cat(keep_idx), torch.cat(keep_grid)


def _interpolated_depth_buffer(mesh: Mesh, camera: Camera, res: int, renderer: Renderer) -> torch.Tensor:
    """`depth_buffer` the long way (full rasterization, camera depth interpolated per pixel), for the reference."""
    s = min(1.0, res / max(camera.width, camera.height))
    cam = camera.scaled(max(1, round(camera.width * s)), max(1, round(camera.height * s)))
    rast, _ = renderer.rasterize(clip_positions(mesh, cam).contiguous(), mesh.faces.int(), (cam.height, cam.width),
                                 grad_db=False)
    z, _ = renderer.interpolate(cam.project(mesh.verts)[:, 2:3].float()[None].contiguous(), rast, mesh.faces.int())
    return torch.where(rast[..., 3:4] > 0, z, torch.full_like(z, math.inf)).flip(1).permute(0, 3, 1, 2)


@torch.no_grad()
def reference_visible_texels(mesh: Mesh, camera: Camera, mask: torch.Tensor, res: int, opts, renderer: Renderer):
    """The same test, per texel from a full UV-space rasterization, in float64 (slow; for tests)."""
    h, w = mask.shape[-2:]
    pos, uv = mesh.corners()
    tri = torch.arange(uv.shape[0], dtype=torch.int32).view(-1, 3)
    clip = torch.cat([uv * 2 - 1, torch.zeros_like(uv[:, :1]), torch.ones_like(uv[:, :1])], 1)[None]
    rast, _ = renderer.rasterize(clip.contiguous(), tri, (res, res), grad_db=False)
    rflat = rast.reshape(-1, 4)
    texels = (rflat[:, 3] > 0).nonzero().flatten()
    zbuf = _interpolated_depth_buffer(mesh, camera, opts.depth_resolution, renderer)
    inside = _inside_mask(mask)
    fn = _face_normals(pos)
    r = rflat[texels]
    f = r[:, 3].long() - 1
    c = tri.long()[f]
    u, v = r[:, 0:1].double(), r[:, 1:2].double()
    x = u * pos[c[:, 0]] + v * pos[c[:, 1]] + (1 - u - v) * pos[c[:, 2]]
    proj = camera.project(x)
    view = _camera_centre(camera) - x
    ok = (proj[:, 2] > 0) & ((fn[f] * view).sum(1).abs() / view.norm(dim=1).clamp_min(1e-30) >= opts.min_cos)
    grid = torch.stack([proj[:, 0] / w * 2 - 1, proj[:, 1] / h * 2 - 1], -1)
    ok &= (grid.abs() <= 1).all(1)
    g4 = grid.view(1, -1, 1, 2).float()
    zb = F.grid_sample(zbuf, g4, mode="nearest", padding_mode="border", align_corners=False).view(-1).double()
    ok &= proj[:, 2] <= zb * (1 + opts.depth_tolerance)
    ok &= F.grid_sample(inside, g4, mode="bilinear", padding_mode="zeros", align_corners=False).view(-1) >= 0.999
    return texels[ok], grid[ok].float()
