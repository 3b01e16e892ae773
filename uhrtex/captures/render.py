"""The built-in capture renderer: plain torch, any device, exact ground truth.

    cap = render_capture(subject_seed=3, lighting="studio_r090", camera_seed=0, resolution=512)

Pipeline: rasterize the subject's head (`uhrtex.raster`, back faces culled) -> interpolate UV, normal,
tangent -> sample the UV textures (nvdiffrast `texture`, bilinear; mip-mapped when the texture has
more than twice the capture's resolution) -> the image-space GT maps -> `shade(maps)`: Principled-like
diffuse (SH irradiance) + GGX split-sum specular with the micronormal-perturbed normal, under the
environment (see `environments.py`). No antialiasing and no shadows: GT maps stay exact, and
`reshade(capture)` recomputes `image` from the stored maps + meta alone.

Memory at 4096^2 is bounded by shading the covered pixels in chunks of `SHADE_CHUNK`.
"""

from __future__ import annotations

import math
import random
from collections import OrderedDict

import torch

from uhrtex.render.environments import resolve_lighting
from uhrtex.render.environments import ROUGHNESS, Environment, load_environment
from uhrtex.captures.format import CV_FROM_GL, Camera, Capture, look_at
from uhrtex.captures.framing import Frame, fitted_near_far, head_frame
from uhrtex.captures.heads import DEFAULT_GRID, HeadAsset, asset_from_meta, head_asset
from uhrtex.common.io import linear_to_srgb, srgb_to_linear
from uhrtex.maps import CAPTURE, TEXTURE, decode_normal, encode_normal
from uhrtex.raster import Renderer

FOV_Y_DEG = 20.0
TARGET = (0.0, -0.15, 0.35)  # roughly the middle of the face (world units)
FRAME_HALF_HEIGHT = 1.45  # world units visible above/below the target at the nominal distance
SHADE_CHUNK = 1 << 20
F0_SCALE = 0.08  # specular map s -> F0 = 0.08 s (Principled "Specular IOR Level": 0.5 -> F0 0.04)


def lighting_name(lighting: int | str, environments=None) -> str:
    """An int picks the i-th of `default_lightings` (bpy's HDRIs x rotations when installed, else skies; plus
    the maps in `environments`, a folder: `envdir.py`)."""
    if isinstance(lighting, str):
        return lighting
    return resolve_lighting(lighting, environments)[0]


def make_camera(camera_seed: int, resolution: int, jitter: bool = True, frame: Frame | None = None) -> tuple[Camera, dict]:
    """Mostly frontal portrait camera: yaw ~N(0, 12 deg) (clipped +-30), pitch ~N(0, 6) (+-15), distance
    x[0.9, 1.1], roll +-3 deg, small aim jitter. Returns the Camera and the drawn parameters.

    `frame` (`framing.head_frame` of a mesh): aim at its target and see its half height (aim jitter scales with it);
    None: the procedural heads' `TARGET` and `FRAME_HALF_HEIGHT`."""
    r = random.Random(int(camera_seed) * 7_777_777 + 5)
    clip = lambda x, m: max(-m, min(m, x))  # noqa: E731
    p = {"yaw_deg": clip(r.gauss(0, 12), 30), "pitch_deg": clip(r.gauss(0, 6), 15), "distance_scale": r.uniform(0.9, 1.1),
         "roll_deg": r.uniform(-3, 3), "aim": [r.uniform(-0.05, 0.05), r.uniform(-0.05, 0.05), 0.0]}
    if not jitter:
        p = {"yaw_deg": 0.0, "pitch_deg": 0.0, "distance_scale": 1.0, "roll_deg": 0.0, "aim": [0.0, 0.0, 0.0]}
    center, half = (TARGET, FRAME_HALF_HEIGHT) if frame is None else (frame.target, frame.half_height)
    unit = 1.0 if frame is None else half / FRAME_HALF_HEIGHT
    dist = half / math.tan(math.radians(FOV_Y_DEG) / 2) * p["distance_scale"]
    yaw, pitch, roll = (math.radians(p[k]) for k in ("yaw_deg", "pitch_deg", "roll_deg"))
    target = [t + a * unit for t, a in zip(center, p["aim"])]
    eye = [target[0] + dist * math.sin(yaw) * math.cos(pitch), target[1] + dist * math.sin(pitch),
           target[2] + dist * math.cos(yaw) * math.cos(pitch)]
    w2c = look_at(eye, target)
    rz = torch.eye(4, dtype=torch.float64)  # roll about the viewing axis
    rz[:2, :2] = torch.tensor([[math.cos(roll), -math.sin(roll)], [math.sin(roll), math.cos(roll)]])
    cam = Camera.from_fov(FOV_Y_DEG, resolution, resolution, rz @ w2c, id=f"c{int(camera_seed):02d}")
    p["distance"] = dist
    if frame is not None:
        p["frame"] = frame.meta()
    return cam, p


def framed_camera(verts: torch.Tensor, camera_seed: int, resolution: int, jitter: bool = True,
                  framing: str = "auto") -> tuple[Camera, dict]:
    """`make_camera` for a head mesh (N x 3 world vertices): "auto" framed on the mesh (`framing.py`), "fixed" on
    `TARGET` / `FRAME_HALF_HEIGHT`. Both renderers use it, so an asset gets the same camera in each."""
    if framing not in ("auto", "fixed"):
        raise ValueError(f"framing={framing!r} is not supported; use auto (framed on the mesh) or fixed")
    return make_camera(camera_seed, resolution, jitter, head_frame(verts) if framing == "auto" else None)


def _eye_and_rot(cam: Camera) -> tuple[torch.Tensor, torch.Tensor]:
    m = cam.extrinsics()
    rot = m[:3, :3]
    return -rot.T @ m[:3, 3], rot


def pixel_rays(cam: Camera, device="cpu") -> torch.Tensor:
    """Unit world directions through every pixel centre, H x W x 3 (row 0 = top)."""
    _, rot = _eye_and_rot(cam)
    j = (torch.arange(cam.width, device=device, dtype=torch.float64) + 0.5 - cam.cx) / cam.fx
    i = (torch.arange(cam.height, device=device, dtype=torch.float64) + 0.5 - cam.cy) / cam.fy
    ii, jj = torch.meshgrid(i, j, indexing="ij")
    d = torch.stack([jj, ii, torch.ones_like(jj)], -1) @ rot.to(device)  # R^T d_cv, row-vector form
    return (d / d.norm(dim=-1, keepdim=True)).float()


def gl_view_rotation(cam: Camera) -> torch.Tensor:
    """3 x 3 world -> view axes (x right, y up, z towards the viewer) of the `normal` map."""
    return (CV_FROM_GL[:3, :3] @ cam.extrinsics()[:3, :3]).float()


# --------------------------------------------------------------------------------- geometry buffers


def _culled_tris(asset: HeadAsset, eye: torch.Tensor) -> torch.Tensor:
    """Triangles facing the eye (closed mesh: the visible surface is unchanged, raster work halves)."""
    v, t = asset.mesh.verts, asset.mesh.tri.long()
    p0 = v[t[:, 0]]
    fn = torch.linalg.cross(v[t[:, 1]] - p0, v[t[:, 2]] - p0)
    keep = (fn * (eye.to(v) - p0)).sum(-1) > 0
    return asset.mesh.tri[keep]


def geometry_buffers(asset: HeadAsset, cam: Camera, renderer: Renderer, mip: bool = False,
                     fit_depth: bool = False) -> dict[str, torch.Tensor]:
    """Rasterize the head: per-pixel uv, world normal, world tangent (+sign), mask; all H x W x C, row 0 = top.

    Clip planes: |eye| -+ 4 world units (the procedural heads' fixed framing), or with `fit_depth` (auto framing,
    any units) around the mesh's depths."""
    dev = asset.mesh.verts.device
    eye, _ = _eye_and_rot(cam)
    dist = float(eye.norm())
    near, far = fitted_near_far(asset.mesh.verts, cam.extrinsics()) if fit_depth else (max(dist - 4.0, 0.1), dist + 4.0)
    clip = cam.clip_from_world(near=near, far=far).to(dev)
    m = asset.mesh
    pos = (torch.cat([m.verts, torch.ones_like(m.verts[:, :1])], 1) @ clip.T)[None].contiguous()
    tri = _culled_tris(asset, eye).contiguous()
    rast, rast_db = renderer.rasterize(pos, tri, (cam.height, cam.width), grad_db=mip)
    attr = torch.cat([m.uv, m.normals, m.tangents], 1)[None].contiguous()
    out, da = renderer.interpolate(attr, rast, tri, rast_db=rast_db if mip else None, diff_attrs=[0, 1] if mip else None)
    flip = lambda x: x[0].flip(0)  # noqa: E731 - raster row 0 is the bottom
    buf = {"uv": flip(out[..., 0:2]), "normal": flip(out[..., 2:5]), "tangent": flip(out[..., 5:9]),
           "mask": flip(rast[..., 3:4] > 0).float()}
    if mip:
        buf["uv_da"] = flip(da)
    return buf


# --------------------------------------------------------------------------------- shading


def _env_brdf(roughness: float, n_dot_v: torch.Tensor):
    """Analytic split-sum environment BRDF (Karis 2014, 'mobile' fit): F = F0 * A + B."""
    c0 = torch.tensor([-1.0, -0.0275, -0.572, 0.022], device=n_dot_v.device)
    c1 = torch.tensor([1.0, 0.0425, 1.04, -0.04], device=n_dot_v.device)
    r = roughness * c0 + c1
    a004 = torch.minimum(torch.full_like(n_dot_v, float(r[0] * r[0])), torch.exp2(-9.28 * n_dot_v)) * r[0] + r[1]
    return -1.04 * a004 + r[2], 1.04 * a004 + r[3]


def shade_pixels(albedo, micronormal, specular, normal_view, tangent, view, env: Environment, view_to_world) -> torch.Tensor:
    """Linear radiance [N, 3] of covered pixels from GT map values [N, c] (encoded as stored).

    tangent [N, 4] world (xyz, handedness); view [N, 3] world unit vectors towards the camera.
    """
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
    diffuse = srgb_to_linear(albedo) * env.irradiance(ns).clamp_min(0) / math.pi
    return diffuse * (1 - spec_w) + env.specular(refl) * spec_w


def shade(maps: dict[str, torch.Tensor], tangent: torch.Tensor, cam: Camera, env: Environment, background="env") -> torch.Tensor:
    """The `image` map (3 x H x W, sRGB) from GT maps (C x H x W) + tangent buffer (H x W x 4)."""
    H, W = maps["mask"].shape[-2:]
    dev = maps["mask"].device
    rays = pixel_rays(cam, dev).view(-1, 3)
    if background == "env":
        rad = torch.cat([env.background(rays[s : s + SHADE_CHUNK]) for s in range(0, H * W, SHADE_CHUNK)])
    else:
        rad = srgb_to_linear(torch.full((H * W, 3), float(background), device=dev))
    idx = (maps["mask"].view(-1) > 0).nonzero().flatten()
    v2w = gl_view_rotation(cam).to(dev).T
    flat = {k: maps[k].view(maps[k].shape[0], -1) for k in ("albedo", "micronormal", "specular", "normal")}
    tan = tangent.reshape(-1, 4)
    for s in range(0, idx.numel(), SHADE_CHUNK):
        i = idx[s : s + SHADE_CHUNK]
        px = {k: x[:, i].T for k, x in flat.items()}
        rad[i] = shade_pixels(px["albedo"], px["micronormal"], px["specular"], px["normal"], tan[i], -rays[i], env, v2w)
    return linear_to_srgb(rad).clamp(0, 1).T.reshape(3, H, W).contiguous()


# --------------------------------------------------------------------------------- captures


def _gt_maps(asset: HeadAsset, buf: dict, cam: Camera, renderer: Renderer, mip: bool) -> dict[str, torch.Tensor]:
    mask = buf["mask"]
    H, W = mask.shape[:2]
    uv = buf["uv"].clamp(0, 1)
    tex = asset.raster_texture.to(uv.device)
    sampled = renderer.texture(tex, uv[None].contiguous(), uv_da=buf["uv_da"][None].contiguous() if mip else None,
                               filter_mode="linear-mipmap-linear" if mip else "linear", boundary_mode="clamp")[0]
    n = buf["normal"] / buf["normal"].norm(dim=-1, keepdim=True).clamp_min(1e-12)
    n_view = n @ gl_view_rotation(cam).to(n.device).T
    maps = {"uv": uv, "normal": encode_normal(n_view).clamp(0, 1), "mask": mask}
    maps.update(TEXTURE.split(sampled.permute(2, 0, 1)[None]))
    maps = {k: (v[0] if v.dim() == 4 else v.permute(2, 0, 1)) for k, v in maps.items()}
    maps = {k: (v * mask[None, :, :, 0] if k != "mask" else v).clamp(0, 1).contiguous() for k, v in maps.items()}
    return {k: maps[k].float() for k in CAPTURE.names if k != "image"}


_GEOMETRY_CACHE: OrderedDict[tuple, tuple] = OrderedDict()


def render_captures(subject_seed: int, lightings, camera_seed: int, resolution: int, texture_resolution: int | None = None,
                    device="cpu", raster_backend: str = "auto", background="env", grid: tuple[int, int] = DEFAULT_GRID,
                    camera_jitter: bool = True, asset=None, environments=None, framing: str | None = None) -> list:
    """One rasterization, one Capture per lighting (same subject and camera).

    `environments`: a folder of your own equirect HDR maps (`envdir.py`): extra lightings (ids `env-<name>_r<deg>`).
    `asset`: a loaded head asset (`uhrtex.captures.assets.Asset`) rendered instead of the procedural head of
    `subject_seed` (ignored then), with the same camera and lighting; its maps set the texture resolution.
    `framing`: "auto" (the camera framed on the mesh's head, `framing.py`; the default for assets) or "fixed"
    (`TARGET` / `FRAME_HALF_HEIGHT`, the default for procedural heads).
    """
    renderer = Renderer(raster_backend, device)
    if asset is None:
        tex_res = int(texture_resolution or resolution)
        asset = head_asset(subject_seed, tex_res, device, grid)
        ident = (int(subject_seed), tuple(grid))
    else:
        tex_res, ident = int(asset.texture_resolution), ("asset", str(asset.folder), asset.uv_fingerprint, asset.stamp)
        asset = asset.head(device)
    framing = framing or ("fixed" if isinstance(asset, HeadAsset) else "auto")
    cam, cam_params = framed_camera(asset.mesh.verts, camera_seed, resolution, camera_jitter, framing)
    auto = framing == "auto"
    mip = tex_res > 2 * resolution
    key = (ident, int(camera_seed), int(resolution), tex_res, str(device), renderer.backend, camera_jitter, framing)
    if key in _GEOMETRY_CACHE:  # consecutive lightings of one subject and camera reuse the raster pass
        buf, gt = _GEOMETRY_CACHE[key]
    else:
        buf = geometry_buffers(asset, cam, renderer, mip, fit_depth=auto)
        gt = _gt_maps(asset, buf, cam, renderer, mip)
        if resolution <= 2048:
            _GEOMETRY_CACHE[key] = (buf, gt)
            while len(_GEOMETRY_CACHE) > 4:
                _GEOMETRY_CACHE.popitem(last=False)
    out = []
    for lighting in lightings:
        name, source = resolve_lighting(lighting, environments)
        env = load_environment(name, device, source)
        image = shade(gt, buf["tangent"], cam, env, background)
        meta = {"subject": asset.meta()["subject"], "lighting": env.id, "camera": cam.to_dict(), "camera_params": cam_params,
                "mesh": asset.meta(), "renderer": "builtin", "resolution": int(resolution), "environment": env.meta(),
                "shading": {"model": "SH9 irradiance diffuse + GGX split-sum specular, no shadows, no antialiasing",
                            "roughness": ROUGHNESS, "specular_f0": f"{F0_SCALE} * specular", "background": background,
                            "texture_filter": "linear-mipmap-linear" if mip else "linear"}}
        out.append(Capture({"image": image, **gt}, meta).validate())
    return out


def render_capture(subject_seed: int, lighting: int | str, camera_seed: int, resolution: int, texture_resolution: int | None = None,
                   device="cpu", raster_backend: str = "auto", **kwargs):
    """-> Capture (see module doc). `lighting`: an id such as 'studio_r090' / 'sky2_r045', or an int index."""
    return render_captures(subject_seed, [lighting], camera_seed, resolution, texture_resolution, device, raster_backend, **kwargs)[0]


def tangent_buffer(capture, device="cpu", raster_backend: str = "auto") -> torch.Tensor:
    """Re-rasterize a built-in capture's head from its meta: the per-pixel tangent frame (H x W x 4)."""
    if (capture.meta["mesh"] or {}).get("kind") == "asset":  # a scanned asset: read its folder again
        from uhrtex.captures.assets import load_asset

        asset = load_asset(capture.meta["mesh"]["folder"]).head(device)
    else:
        asset = asset_from_meta(capture.meta["mesh"], device)
    mip = capture.meta.get("shading", {}).get("texture_filter", "linear") != "linear"
    auto = "frame" in (capture.meta.get("camera_params") or {})
    return geometry_buffers(asset, capture.camera, Renderer(raster_backend, device), mip, fit_depth=auto)["tangent"]


def reshade(capture, device="cpu", raster_backend: str = "auto") -> torch.Tensor:
    """`image` recomputed from the capture's stored GT maps, camera and lighting (3 x H x W sRGB)."""
    env = load_environment(capture.meta["environment"]["id"], device, capture.meta["environment"].get("source"))
    maps = {k: v.to(device) for k, v in capture.maps.items()}
    return shade(maps, tangent_buffer(capture, device, raster_backend), capture.camera, env,
                 capture.meta.get("shading", {}).get("background", "env"))
