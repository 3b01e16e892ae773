"""The built-in capture renderer: plain torch, any device, exact ground truth.

    cap = render_capture(subject_seed=3, lighting="ph-venice-sunset_r090", camera_seed=0, resolution=512)

Pipeline (`uhrtex.render.shading`): rasterize the subject's head (back faces culled) -> interpolate UV, normal,
tangent, material -> sample each material's textures (bilinear; mip-mapped when the face texture has more than
twice the capture's resolution) -> `shade`. The GT maps are the face tile's pixels only (`mask`): the scalp, neck
back, eyes and mouth are drawn but are not part of the unified UV layout. No antialiasing and no shadows: GT maps
stay exact, and `reshade(capture)` recomputes `image` from the stored maps, the re-rasterized head and the meta.

Camera (`make_camera`): yaw within ±35°, pitch ±15°, roll ±5°, a focal length of 35-135 mm (full-frame equivalent,
log-uniform) at the distance that keeps the head framed as before (half height `FRAME_HALF_HEIGHT`).
"""

from __future__ import annotations

import math
import random
from collections import OrderedDict

import torch

from uhrtex.captures.format import Capture
from uhrtex.render.framing import Frame, head_frame
from uhrtex.captures.heads import HeadAsset, asset_from_meta, head_asset
from uhrtex.maps import CAPTURE, TEXTURE, encode_normal
from uhrtex.raster import Renderer
from uhrtex.render.camera import Camera, look_at
from uhrtex.render.environments import ROUGHNESS, load_environment, resolve_lighting
from uhrtex.render.shading import F0_SCALE, geometry_buffers, gl_view_rotation, sample_materials, shade

FILM_HALF_HEIGHT_MM = 12.0  # full-frame 35 mm film: 24 mm tall
FOCAL_MM = (35.0, 135.0)
NOMINAL_FOCAL_MM = 68.0  # the fixed camera's focal length (a 20° vertical field of view)
MAX_YAW, MAX_PITCH, MAX_ROLL = 35.0, 15.0, 5.0


def lighting_name(lighting: int | str, environments=None, subject_seed: int = 0) -> str:
    """An int picks the subject's i-th lighting (`environments.default_lightings`)."""
    return resolve_lighting(lighting, environments, subject_seed)[0]


def make_camera(camera_seed: int, resolution: int, frame: Frame, jitter: bool = True) -> tuple[Camera, dict]:
    """A portrait camera aimed at `frame` (`framing.head_frame`). Returns the Camera and the drawn parameters."""
    r = random.Random(int(camera_seed) * 7_777_777 + 5)
    clip = lambda x, m: max(-m, min(m, x))  # noqa: E731
    p = {"yaw_deg": clip(r.gauss(0, 15), MAX_YAW), "pitch_deg": clip(r.gauss(0, 6), MAX_PITCH),
         "roll_deg": r.uniform(-MAX_ROLL, MAX_ROLL), "distance_scale": r.uniform(0.92, 1.08),
         "focal_mm": math.exp(r.uniform(*(math.log(f) for f in FOCAL_MM))),
         "aim": [r.uniform(-0.05, 0.05), r.uniform(-0.05, 0.05), 0.0]}
    if not jitter:
        p.update(yaw_deg=0.0, pitch_deg=0.0, roll_deg=0.0, distance_scale=1.0, focal_mm=NOMINAL_FOCAL_MM, aim=[0.0, 0.0, 0.0])
    fov_y = 2 * math.degrees(math.atan(FILM_HALF_HEIGHT_MM / p["focal_mm"]))
    dist = frame.half_height / math.tan(math.radians(fov_y) / 2) * p["distance_scale"]
    yaw, pitch, roll = (math.radians(p[k]) for k in ("yaw_deg", "pitch_deg", "roll_deg"))
    target = [t + a * frame.half_height for t, a in zip(frame.target, p["aim"])]
    eye = [target[0] + dist * math.sin(yaw) * math.cos(pitch), target[1] + dist * math.sin(pitch),
           target[2] + dist * math.cos(yaw) * math.cos(pitch)]
    w2c = look_at(eye, target)
    rz = torch.eye(4, dtype=torch.float64)  # roll about the viewing axis
    rz[:2, :2] = torch.tensor([[math.cos(roll), -math.sin(roll)], [math.sin(roll), math.cos(roll)]])
    cam = Camera.from_fov(fov_y, resolution, resolution, rz @ w2c, id=f"c{int(camera_seed):02d}")
    p.update(distance=dist, fov_y_deg=fov_y, frame=frame.meta())
    return cam, p


def framed_camera(verts: torch.Tensor, camera_seed: int, resolution: int, jitter: bool = True,
                  subject_seed: int | None = None) -> tuple[Camera, dict]:
    """`make_camera` framed on a head mesh (N×3 world vertices, y up, face towards +z). Both renderers use it. With
    `subject_seed` the camera is drawn per subject (camera index `camera_seed` of that subject), so a dataset's
    subjects are not all seen from one viewpoint."""
    seed = camera_seed if subject_seed is None else int(subject_seed) * 1000 + int(camera_seed)
    cam, p = make_camera(seed, resolution, head_frame(verts), jitter)
    cam.id = f"c{int(camera_seed):02d}"
    return cam, p


def _gt_maps(head, buf: dict, shading: torch.Tensor, cam: Camera) -> dict[str, torch.Tensor]:
    """The image-space GT maps: the face material's pixels of the shading maps, uv, view-space normal and mask."""
    face = torch.zeros_like(buf["material"], dtype=torch.bool)
    for m in head.gt_materials:
        face |= buf["material"] == m
    mask = face[None].float()
    n = buf["normal"] / buf["normal"].norm(dim=-1, keepdim=True).clamp_min(1e-12)
    maps = {"uv": buf["uv"].clamp(0, 1).permute(2, 0, 1), "mask": mask,
            "normal": encode_normal(n @ gl_view_rotation(cam).to(n.device).T).clamp(0, 1).permute(2, 0, 1),
            **{k: v[0] for k, v in TEXTURE.split(shading[None]).items()}}
    maps = {k: (v * mask if k != "mask" else v).clamp(0, 1).contiguous() for k, v in maps.items()}
    return {k: maps[k].float() for k in CAPTURE.names if k != "image"}


def _shading_maps(gt: dict, buf: dict, shading: torch.Tensor) -> dict[str, torch.Tensor]:
    """What `shade` needs: the GT maps where they exist, the other materials' maps elsewhere, over the whole head."""
    head_mask = buf["mask"].permute(2, 0, 1)
    n = buf["normal"] / buf["normal"].norm(dim=-1, keepdim=True).clamp_min(1e-12)
    out = {k: torch.where(gt["mask"] > 0, gt[k], v[0]) for k, v in TEXTURE.split(shading[None]).items()}
    out["normal"] = torch.where(gt["mask"] > 0, gt["normal"], encode_normal(n @ buf["view_rot"].T).permute(2, 0, 1))
    out["mask"] = head_mask
    return out


_GEOMETRY_CACHE: OrderedDict[tuple, tuple] = OrderedDict()


def _rasterized(head, cam: Camera, renderer: Renderer, mip: bool, key) -> tuple[dict, torch.Tensor]:
    if key is not None and key in _GEOMETRY_CACHE:  # consecutive lightings of one subject and camera reuse the raster pass
        return _GEOMETRY_CACHE[key]
    buf = geometry_buffers(head.mesh, cam, renderer, mip)
    buf["view_rot"] = gl_view_rotation(cam).to(buf["normal"].device)
    shading = sample_materials(buf, head.material_textures, renderer, head.tile_offsets, mip)
    if key is not None and cam.width <= 2048:
        _GEOMETRY_CACHE[key] = (buf, shading)
        while len(_GEOMETRY_CACHE) > 4:
            _GEOMETRY_CACHE.popitem(last=False)
    return buf, shading


def render_captures(subject_seed: int, lightings, camera_seed: int, resolution: int, texture_resolution: int | None = None,
                    device="cpu", raster_backend: str = "auto", background="env", camera_jitter: bool = True, asset=None,
                    environments=None, camera: Camera | None = None) -> list:
    """One rasterization, one Capture per lighting (same subject and camera).

    `environments`: a folder of your own equirect HDR maps (`uhrtex.render.envdir`): extra lightings.
    `asset`: a loaded head asset (`uhrtex.captures.assets.Asset`) rendered instead of the head of `subject_seed`,
    with the same camera and lighting; its maps set the texture resolution.
    `camera`: render through this camera instead of drawing one (e.g. a scan seen as a procedural head was).
    """
    renderer = Renderer(raster_backend, device)
    if asset is None:
        tex_res = int(texture_resolution or resolution)
        head = head_asset(subject_seed, tex_res, device)
        ident = ("ict", int(subject_seed))
    else:
        tex_res, ident = int(asset.texture_resolution), ("asset", str(asset.folder), asset.uv_fingerprint, asset.stamp)
        head = asset.head(device)
    if camera is None:
        cam, cam_params = framed_camera(head.mesh.verts, camera_seed, resolution, camera_jitter,
                                        subject_seed if asset is None else None)
    else:
        cam, cam_params = camera.scaled(resolution, resolution), {"given": True}
    mip = tex_res > 2 * resolution
    key = (ident, int(camera_seed), int(resolution), tex_res, str(device), renderer.backend, camera_jitter,
           None if camera is None else repr(cam.to_dict()))
    buf, shading = _rasterized(head, cam, renderer, mip, key)
    gt = _gt_maps(head, buf, shading, cam)
    shading_maps = _shading_maps(gt, buf, shading)
    out = []
    seed = int(subject_seed) if asset is None else 0
    for lighting in lightings:
        name, source = resolve_lighting(lighting, environments, seed)
        env = load_environment(name, device, source)
        image = shade(shading_maps, buf["tangent"], cam, env, background)
        meta = {"subject": head.meta()["subject"], "lighting": env.id, "camera": cam.to_dict(), "camera_params": cam_params,
                "mesh": head.meta(), "renderer": "builtin", "resolution": int(resolution), "environment": env.meta(),
                "shading": {"model": "SH9 irradiance diffuse (per-channel softened normal) + GGX split-sum specular, no "
                                     "shadows, no antialiasing", "roughness": ROUGHNESS, "specular_f0": f"{F0_SCALE} * specular",
                            "background": background, "texture_filter": "linear-mipmap-linear" if mip else "linear"}}
        if isinstance(head, HeadAsset):
            meta["head_model"] = head.meta()["head_model"]
        out.append(Capture({"image": image, **gt}, meta).validate())
    return out


def render_capture(subject_seed: int, lighting: int | str, camera_seed: int, resolution: int, texture_resolution: int | None = None,
                   device="cpu", raster_backend: str = "auto", **kwargs):
    """-> Capture (see module doc). `lighting`: an id such as 'ph-venice-sunset_r090' / 'sky2_r045', or an int index."""
    return render_captures(subject_seed, [lighting], camera_seed, resolution, texture_resolution, device, raster_backend, **kwargs)[0]


def _head_of(capture, device):
    if (capture.meta["mesh"] or {}).get("kind") == "asset":  # a scanned asset: read its folder again
        from uhrtex.captures.assets import load_asset

        return load_asset(capture.meta["mesh"]["folder"]).head(device)
    return asset_from_meta(capture.meta["mesh"], device)


def reshade(capture, device="cpu", raster_backend: str = "auto") -> torch.Tensor:
    """`image` recomputed from the capture's stored GT maps, its re-rasterized head (the materials outside the face
    tile), camera and lighting (3×H×W sRGB)."""
    head = _head_of(capture, device)
    mip = capture.meta.get("shading", {}).get("texture_filter", "linear") != "linear"
    buf, shading = _rasterized(head, capture.camera, Renderer(raster_backend, device), mip, None)
    env = load_environment(capture.meta["environment"]["id"], device, capture.meta["environment"].get("source"))
    gt = {k: v.to(device) for k, v in capture.maps.items()}
    return shade(_shading_maps(gt, buf, shading), buf["tangent"], capture.camera, env,
                 capture.meta.get("shading", {}).get("background", "env"))
