"""The shared renderer: rasterize a RenderMesh, sample its material textures, shade under an environment. The capture
renderer (`uhrtex.captures.render`) and the reconstruction preview (`uhrtex.export.preview`) both draw with it.

* `geometry_buffers`: per pixel uv, world normal, world tangent (+ handedness), material id and coverage.
* `sample_materials`: every covered pixel's albedo | micronormal | specular from its material's texture.
* `shade`: Principled-like diffuse (SH irradiance, `environments.py`) + GGX split-sum specular with the
  micronormal-perturbed normal. Diffuse light is spread under the skin: red uses a normal between the bumped and
  the smooth one, blue and green less so (the "bent normals" approximation of subsurface scattering), so pores and
  wrinkles soften in red as in skin. No shadows and no antialiasing: the GT maps stay exact.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from uhrtex.common.imaging import linear_to_srgb, srgb_to_linear
from uhrtex.maps import TEXTURE, decode_normal
from uhrtex.raster import Renderer
from uhrtex.render.camera import CV_FROM_GL, Camera
from uhrtex.render.environments import ROUGHNESS, Environment
from uhrtex.render.framing import fitted_near_far
from uhrtex.render.mesh import RenderMesh

F0_SCALE = 0.08  # F0 = F0_SCALE · specular (specular 0.35 -> F0 0.028, skin's IOR 1.4)
SHADE_CHUNK = 1 << 20
# Subsurface softening of the diffuse normal per channel (0: the micronormal-bumped normal, 1: the smooth one)
SSS_BLEND = (0.7, 0.45, 0.35)


def eye_and_rotation(cam: Camera) -> tuple[torch.Tensor, torch.Tensor]:
    m = cam.extrinsics()
    rot = m[:3, :3]
    return -rot.T @ m[:3, 3], rot


def pixel_rays(cam: Camera, device="cpu") -> torch.Tensor:
    """Unit world directions through every pixel centre, H×W×3 (row 0 = top)."""
    _, rot = eye_and_rotation(cam)
    j = (torch.arange(cam.width, device=device, dtype=torch.float64) + 0.5 - cam.cx) / cam.fx
    i = (torch.arange(cam.height, device=device, dtype=torch.float64) + 0.5 - cam.cy) / cam.fy
    ii, jj = torch.meshgrid(i, j, indexing="ij")
    d = torch.stack([jj, ii, torch.ones_like(jj)], -1) @ rot.to(device)  # R^T d_cv, row-vector form
    return (d / d.norm(dim=-1, keepdim=True)).float()


def gl_view_rotation(cam: Camera) -> torch.Tensor:
    """3×3 world -> view axes (x right, y up, z towards the viewer) of the `normal` map."""
    return (CV_FROM_GL[:3, :3] @ cam.extrinsics()[:3, :3]).float()


def _facing(mesh: RenderMesh, eye: torch.Tensor) -> torch.Tensor:
    """Indices of the triangles facing the eye (the visible surface of a closed mesh; raster work halves)."""
    v, t = mesh.verts, mesh.tri.long()
    p0 = v[t[:, 0]]
    fn = torch.linalg.cross(v[t[:, 1]] - p0, v[t[:, 2]] - p0)
    return torch.nonzero((fn * (eye.to(v) - p0)).sum(-1) > 0).flatten()


def geometry_buffers(mesh: RenderMesh, cam: Camera, renderer: Renderer, mip: bool = False) -> dict[str, torch.Tensor]:
    """Rasterize: per-pixel uv, world normal, world tangent (+sign), material id (int64, -1 = background) and
    coverage ("mask"); H×W×C, row 0 = top."""
    dev = mesh.verts.device
    eye, _ = eye_and_rotation(cam)
    near, far = fitted_near_far(mesh.verts, cam.extrinsics())
    clip = cam.clip_from_world(near=near, far=far).to(dev)
    pos = (torch.cat([mesh.verts, torch.ones_like(mesh.verts[:, :1])], 1) @ clip.T)[None].contiguous()
    keep = _facing(mesh, eye)
    tri = mesh.tri[keep].contiguous()
    rast, rast_db = renderer.rasterize(pos, tri, (cam.height, cam.width), grad_db=mip)
    attr = torch.cat([mesh.uv, mesh.normals, mesh.tangents], 1)[None].contiguous()
    out, da = renderer.interpolate(attr, rast, tri, rast_db=rast_db if mip else None, diff_attrs=[0, 1] if mip else None)
    flip = lambda x: x[0].flip(0)  # noqa: E731 - raster row 0 is the bottom
    tri_id = flip(rast[..., 3:4]).long()[..., 0] - 1  # -1: no triangle
    material = torch.full_like(tri_id, -1)
    hit = tri_id >= 0
    mat = mesh.material if mesh.material is not None else torch.zeros(mesh.tri.shape[0], dtype=torch.int64, device=dev)
    material[hit] = mat[keep][tri_id[hit]]
    buf = {"uv": flip(out[..., 0:2]), "normal": flip(out[..., 2:5]), "tangent": flip(out[..., 5:9]),
           "mask": hit[..., None].float(), "material": material}
    if mip:
        buf["uv_da"] = flip(da)
    return buf


def sample_materials(buf: dict, textures: Mapping[int, torch.Tensor], renderer: Renderer, offsets: Mapping[int, float],
                     mip: bool = False) -> torch.Tensor:
    """7×H×W albedo | micronormal | specular of every covered pixel from its material's raster texture ([1, R, R, 7],
    row 0 = v ≈ 0); `offsets`: the u of each material's UV tile (ICT's tiles sit side by side in u)."""
    H, W = buf["mask"].shape[:2]
    out = torch.zeros(H, W, TEXTURE.channels, device=buf["uv"].device)
    for mat, tex in textures.items():
        sel = buf["material"] == mat
        if not bool(sel.any()):
            continue
        uv = buf["uv"].clone()
        uv[..., 0] -= offsets.get(mat, 0.0)
        uv = uv.clamp(0, 1)
        if mip and tex.shape[1] > 2 * max(H, W) // 4:  # a big texture seen small: mip-mapped
            s = renderer.texture(tex.to(uv.device), uv[None].contiguous(), uv_da=buf["uv_da"][None].contiguous(),
                                 filter_mode="linear-mipmap-linear", boundary_mode="clamp")[0]
            out[sel] = s[sel]
        else:  # bilinear at the covered pixels only (most materials cover few pixels)
            g = uv[sel] * 2 - 1
            t = tex[0].permute(2, 0, 1)[None].to(uv.device)
            s = torch.nn.functional.grid_sample(t, g.view(1, 1, -1, 2), mode="bilinear", padding_mode="border",
                                                align_corners=False)
            out[sel] = s[0, :, 0].T
    return out.permute(2, 0, 1)


def _env_brdf(roughness: float, n_dot_v: torch.Tensor):
    """Analytic split-sum environment BRDF (Karis 2014, 'mobile' fit): F = F0 · A + B."""
    c0 = torch.tensor([-1.0, -0.0275, -0.572, 0.022], device=n_dot_v.device)
    c1 = torch.tensor([1.0, 0.0425, 1.04, -0.04], device=n_dot_v.device)
    r = roughness * c0 + c1
    a004 = torch.minimum(torch.full_like(n_dot_v, float(r[0] * r[0])), torch.exp2(-9.28 * n_dot_v)) * r[0] + r[1]
    return -1.04 * a004 + r[2], 1.04 * a004 + r[3]


def shade_pixels(albedo, micronormal, specular, normal_view, tangent, view, env: Environment, view_to_world) -> torch.Tensor:
    """Linear radiance N×3 of covered pixels from map values N×c (encoded as stored). tangent N×4 world (xyz,
    handedness); view N×3 world unit vectors towards the camera."""
    n = decode_normal(normal_view, dim=-1) @ view_to_world.T
    t = tangent[:, :3] - (tangent[:, :3] * n).sum(-1, keepdim=True) * n
    t = t / t.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    b = torch.linalg.cross(n, t) * torch.where(tangent[:, 3:4] < 0, -1.0, 1.0)
    m = decode_normal(micronormal, dim=-1)
    ns = m[:, 0:1] * t + m[:, 1:2] * b + m[:, 2:3] * n
    ns = ns / ns.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    n_dot_v = (ns * view).sum(-1, keepdim=True)
    refl = 2 * n_dot_v * ns - view
    n_dot_v = n_dot_v.clamp(1e-4, 1.0)
    a, bb = _env_brdf(ROUGHNESS, n_dot_v)
    spec_w = (F0_SCALE * specular) * a + bb
    irr = torch.stack([env.irradiance(_unit(torch.lerp(ns, n, k)))[:, c] for c, k in enumerate(SSS_BLEND)], -1)
    diffuse = srgb_to_linear(albedo) * irr.clamp_min(0) / math.pi
    return diffuse * (1 - spec_w) + env.specular(refl) * spec_w


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def shade(maps: Mapping[str, torch.Tensor], tangent: torch.Tensor, cam: Camera, env: Environment, background="env"
          ) -> torch.Tensor:
    """The image (3×H×W, sRGB) from maps (C×H×W: albedo, micronormal, specular, normal, mask = what to shade) and the
    tangent buffer (H×W×4)."""
    H, W = maps["mask"].shape[-2:]
    dev = maps["mask"].device
    rays = pixel_rays(cam, dev).view(-1, 3)
    if background == "env":
        rad = torch.cat([env.background(rays[s : s + SHADE_CHUNK]) for s in range(0, H * W, SHADE_CHUNK)])
    else:
        rad = srgb_to_linear(torch.full((H * W, 3), float(background), device=dev))
    idx = (maps["mask"].reshape(-1) > 0).nonzero().flatten()
    v2w = gl_view_rotation(cam).to(dev).T
    flat = {k: maps[k].reshape(maps[k].shape[0], -1) for k in ("albedo", "micronormal", "specular", "normal")}
    tan = tangent.reshape(-1, 4)
    for s in range(0, idx.numel(), SHADE_CHUNK):
        i = idx[s : s + SHADE_CHUNK]
        px = {k: x[:, i].T for k, x in flat.items()}
        rad[i] = shade_pixels(px["albedo"], px["micronormal"], px["specular"], px["normal"], tan[i], -rays[i], env, v2w)
    return linear_to_srgb(rad).clamp(0, 1).T.reshape(3, H, W).contiguous()
