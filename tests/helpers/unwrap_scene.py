"""A textured sphere seen by a pinhole camera: image-space maps with exact ground-truth UV textures."""

from __future__ import annotations

import math

import torch

from uhrtex.captures.format import Camera, look_at
from uhrtex.unwrap.mesh import Mesh
from uhrtex.raster import Renderer


def uv_sphere(n_lat: int = 48, n_lon: int = 64) -> Mesh:
    """Sphere of radius 1 with a longitude/latitude UV layout (a UV seam at u = 0/1, separate vt indices)."""
    th = torch.linspace(0, math.pi, n_lat + 1)
    ph = torch.linspace(0, 2 * math.pi, n_lon + 1)[:-1]
    t, p = torch.meshgrid(th, ph, indexing="ij")
    verts = torch.stack([t.sin() * p.sin(), t.cos(), t.sin() * p.cos()], -1).reshape(-1, 3)
    tu, tv = torch.meshgrid(torch.linspace(1, 0, n_lat + 1), torch.linspace(0, 1, n_lon + 1), indexing="ij")
    uvs = torch.stack([tv, tu], -1).reshape(-1, 2)
    vi = torch.arange((n_lat + 1) * n_lon).view(n_lat + 1, n_lon)
    vi = torch.cat([vi, vi[:, :1]], 1)  # wrap positions, not UVs
    ti = torch.arange((n_lat + 1) * (n_lon + 1)).view(n_lat + 1, n_lon + 1)
    faces, faces_uv = [], []
    for idx, out in ((vi, faces), (ti, faces_uv)):
        a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
        out.append(torch.cat([torch.stack([a, c, b], -1)[1:].reshape(-1, 3), torch.stack([b, c, d], -1)[:-1].reshape(-1, 3)]))
    return Mesh(verts.float(), faces[0].long(), uvs.float(), faces_uv[0].long(), "sphere")


def gt_texture(res: int, channels: int = 7) -> torch.Tensor:
    """Smooth multi-frequency pattern, C×res×res top-down, in [0.1, 0.9]."""
    v, u = torch.meshgrid(torch.linspace(1, 0, res), torch.linspace(0, 1, res), indexing="ij")
    chans = [0.5 + 0.4 * torch.sin(2 * math.pi * (k + 1) * u + k) * torch.cos(2 * math.pi * (k % 3 + 1) * v)
             for k in range(channels)]
    return torch.stack(chans)


def camera(size: int, distance: float = 3.0, fov: float = 45.0, yaw: float = 20.0) -> Camera:
    eye = (distance * math.sin(math.radians(yaw)), 0.4, distance * math.cos(math.radians(yaw)))
    return Camera.from_fov(fov, size, size, look_at(eye, (0, 0, 0), (0, 1, 0)))


def render_maps(mesh: Mesh, cam: Camera, tex_topdown: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Image-space maps C×H×W and mask 1×H×W (top-down) of the textured mesh."""
    from uhrtex.unwrap.methods import _clip

    r = Renderer("torch")
    rast, _ = r.rasterize(_clip(mesh, cam).contiguous(), mesh.faces.int(), (cam.height, cam.width), grad_db=False)
    uv, _ = r.interpolate(mesh.uvs[None].contiguous(), rast, mesh.faces_uv.int())
    tex = tex_topdown.flip(-2).permute(1, 2, 0)[None].contiguous()  # raster convention
    img = r.texture(tex, uv, filter_mode="linear", boundary_mode="clamp")
    mask = (rast[..., 3:] > 0).float()
    img = (img * mask).flip(1)[0].permute(2, 0, 1)
    return img.contiguous(), mask.flip(1)[0].permute(2, 0, 1).contiguous()


def _uv_image(mesh: Mesh, cam: Camera) -> torch.Tensor:
    """The mesh's UV coordinates per pixel, 2×H×W top-down, 0 off the mesh (like a capture's `uv` map)."""
    from uhrtex.unwrap.methods import _clip

    r = Renderer("torch")
    rast, _ = r.rasterize(_clip(mesh, cam).contiguous(), mesh.faces.int(), (cam.height, cam.width), grad_db=False)
    uv, _ = r.interpolate(mesh.uvs[None].contiguous(), rast, mesh.faces_uv.int())
    return uv.flip(1)[0].permute(2, 0, 1).contiguous()


def save_obj(path, mesh: Mesh) -> None:
    """Minimal OBJ writer for test meshes with separate position/UV indices."""
    lines = [f"v {x:.7g} {y:.7g} {z:.7g}" for x, y, z in mesh.verts.tolist()]
    lines += [f"vt {u:.7g} {v:.7g}" for u, v in mesh.uvs.tolist()]
    f = (torch.stack([mesh.faces, mesh.faces_uv], -1) + 1).reshape(-1, 6)
    lines += [f"f {a}/{b} {c}/{d} {e}/{g}" for a, b, c, d, e, g in f.tolist()]
    open(path, "w").write("\n".join(lines) + "\n")
