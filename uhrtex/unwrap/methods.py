"""Image-space maps -> UV textures (paper §3.4 end): three methods behind `unwrap(...)`, then hole filling.

Conventions: input maps are C×H×W, row 0 = top of the picture. Returned textures are C×R×R *top-down
images* (row 0 = v≈1, ready to save as PNG); internally, textures are raster-convention tensors (row 0 =
v≈0, `uhrtex.raster`), flipped once on the way out.

* `direct`: rasterize the mesh in UV space, give every texel its 3-D point, project it with the camera,
  keep it when visible (depth test against the camera's depth buffer, not grazing, all four bilinear taps
  inside the face mask) and sample the maps there.
* `optimize` (paper, nvdiffrast-style): a UV texture rendered through the raster backend
  (rasterize -> interpolate uv + derivatives -> mip-mapped texture) is fitted to the maps on the mask by
  Adam on the squared error, coarse to fine: start_resolution, ×2, ... up to `top_resolution` (paper
  8192), each level initialised from the splat average of the pixels where they land and from the
  upsampled coarser level elsewhere, then area-downsampled to `resolution` (paper 4096).
* `splat`: no mesh. Each face pixel is scattered (bilinear weights) into the unified UV space at its
  predicted UV; texels average what lands on them.

Afterwards (all methods) `fill`: holes are filled by push-pull (the masked texture's pyramid pulled back
up, so the fill is smooth and continuous with its border), then blended with a template texture: the
template is tone-matched to the reconstruction by the mean face colour (per-channel gain in linear
space, measured over the observed texels), and weighted by w = max(coverage, gaussian(coverage)), so
observed texels are kept, the fill dominates near them, and the template takes over far from any
observation (e.g. the back of the head).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F

from uhrtex.render.camera import Camera
from uhrtex.common.imaging import erode
from uhrtex.unwrap.mesh import Mesh, MeshError, check_camera
from uhrtex.hfdr.patches import Box, sample_global
from uhrtex.raster import Renderer
from uhrtex.unwrap.fill import blend_template, flat_template, head_template, is_unified_layout, push_pull
from uhrtex.unwrap.visibility import clip_positions as _clip
from uhrtex.unwrap.visibility import uv_layout
from uhrtex.unwrap.visibility import visible_texels as _visible_texels

__all__ = ["METHODS", "UnwrapOptions", "UnwrapResult", "unwrap", "push_pull", "blend_template", "flat_template",
           "head_template", "is_unified_layout"]

METHODS = ("optimize", "direct", "splat")
_CHUNK = 1 << 20  # texels / pixels per chunk in the sampling passes (bounds temporaries)


@dataclass
class UnwrapOptions:
    resolution: int = 4096  # output texture side
    # optimize
    top_resolution: int | None = None  # cascade top; None: 2 × resolution (paper 8192 -> 4096)
    start_resolution: int = 256
    steps: int = 20  # Adam steps per cascade level (each level starts from a splat average)
    lr: float = 0.02
    pixels_per_step: int = 1 << 20  # random subset of the mask's pixels per step (CPU cost)
    # visibility (direct, and the coverage of optimize)
    depth_resolution: int = 2048  # long side of the depth buffer
    depth_tolerance: float = 0.01  # relative to the texel's depth
    min_cos: float = 0.1  # drop texels seen at more grazing angles than this
    # fill
    fill: bool = True
    template_sigma: float = 1 / 32  # template blend falloff, as a fraction of the texture side
    seed: int = 0


@dataclass
class UnwrapResult:
    textures: dict[str, torch.Tensor]  # name -> C×R×R, top-down, in [0, 1]
    coverage: torch.Tensor  # 1×R×R top-down: 1 where the image observed the texel
    method: str
    stats: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------------ helpers


def _binary_mask(mask: torch.Tensor) -> torch.Tensor:
    return (mask.reshape(1, 1, *mask.shape[-2:]) > 0.5).float()


def _erode(m: torch.Tensor, px: int = 1) -> torch.Tensor:
    """Binary 1×1×H×W erosion by a (2px+1)² square; the frame's outside does not erode (`imaging.erode`)."""
    return erode(m, px, border="replicate").to(m.dtype) if px > 0 else m


def _sample(image: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """image 1×C×H×W at grid N×2 -> N×C (bilinear, align_corners=False)."""
    return F.grid_sample(image, grid.view(1, -1, 1, 2).to(image.dtype), mode="bilinear", padding_mode="border",
                         align_corners=False)[0, :, :, 0].T


def _camera_for(camera: Camera, h: int, w: int, name: str) -> Camera:
    if abs(camera.width / camera.height - w / h) > 0.01 * w / h:
        raise MeshError(f"{name}: camera is {camera.width}x{camera.height} but the image is {w}x{h}; the camera does "
                        "not match the image (pass the camera of this photo, or do not crop it)")
    return camera if (camera.width, camera.height) == (w, h) else camera.scaled(w, h)


def _channel_names(maps: Mapping[str, torch.Tensor]) -> list[tuple[str, int]]:
    return [(k, int(v.shape[-3]) if v.dim() == 3 else 1) for k, v in maps.items()]


def _gather_channels(maps: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """All maps as one 1×C×H×W float tensor (a full-size copy: `direct` samples the maps one by one instead)."""
    return torch.cat([v.reshape(-1, *v.shape[-2:]).float() for v in maps.values()], 0)[None]


def _split_channels(x: torch.Tensor, names: list[tuple[str, int]]) -> dict[str, torch.Tensor]:
    out, c = {}, 0
    for k, n in names:
        out[k] = x[c:c + n]
        c += n
    return out


def _splat(values: torch.Tensor, s: torch.Tensor, t: torch.Tensor, res: int, acc: torch.Tensor,
           wacc: torch.Tensor) -> None:
    """Bilinear splat N×C values at texture coordinates (s, t) into raster-convention accumulators."""
    X, Y = s * res - 0.5, t * res - 0.5
    x0, y0 = torch.floor(X), torch.floor(Y)
    fx, fy = X - x0, Y - y0
    x0, y0 = x0.long(), y0.long()
    for dx, dy, wt in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        xi, yi = x0 + dx, y0 + dy
        ok = (xi >= 0) & (xi < res) & (yi >= 0) & (yi < res) & (wt > 0)
        idx = (yi * res + xi)[ok]
        wk = wt[ok]
        acc.index_add_(1, idx, (values[ok] * wk[:, None]).T)
        wacc.index_add_(1, idx, wk[None])


# ------------------------------------------------------------------------------------------ methods


@torch.no_grad()
def _direct(maps, mask, mesh, camera, res, opts, renderer, timings):
    """-> (C×R×R texture, 1×R×R coverage) already *top-down* (the other methods return raster rows): each map is
    sampled in place and written to its flipped row, so no gathered copy of the maps and no flipped copy of the
    texture is made (≈ 1 GB less at 4096²)."""
    t0 = time.perf_counter()
    uv_layout(mesh, res)  # rasterized once per mesh and resolution (cached); timed on its own
    t1 = time.perf_counter()
    idx, grid = _visible_texels(mesh, camera, mask, res, opts, renderer)
    t2 = time.perf_counter()
    idx = (res - 1 - idx // res) * res + idx % res  # raster row r -> top-down row res - 1 - r
    c = sum(n for _, n in _channel_names(maps))
    tex = torch.zeros(c, res * res)
    c0 = 0
    for v in maps.values():
        img = v.reshape(1, -1, *v.shape[-2:])
        img = img if img.dtype == torch.float32 else img.float()
        n = img.shape[1]
        for s0 in range(0, idx.numel(), _CHUNK):
            tex[c0:c0 + n, idx[s0:s0 + _CHUNK]] = _sample(img, grid[s0:s0 + _CHUNK]).T
        c0 += n
    cov = torch.zeros(1, res * res)
    cov[:, idx] = 1.0
    timings.update(uv_raster=t1 - t0, visibility=t2 - t1, sample=time.perf_counter() - t2)
    return tex.view(c, res, res), cov.view(1, res, res), {"visible_texels": int(idx.numel())}


def _image_uv(mesh, camera, h, w, renderer):
    """Per image pixel (top-down): texture coordinates and their pixel derivatives, and coverage."""
    rast, db = renderer.rasterize(_clip(mesh, camera).contiguous(), mesh.faces.int(), (h, w))
    uv, uv_da = renderer.interpolate(mesh.uvs[None].contiguous(), rast, mesh.faces_uv.int(), db, diff_attrs="all")
    cov = (rast[..., 3] > 0).float()
    # Raster row 0 is the bottom: flip to top-down; the Y derivatives change sign with it.
    uv, uv_da, cov = uv.flip(1), uv_da.flip(1) * torch.tensor([1.0, -1.0, 1.0, -1.0]), cov.flip(1)
    return uv[0], uv_da[0], cov[0]


def _mip_levels(uv_da: torch.Tensor, res: int) -> torch.Tensor:
    """nvdiffrast's mip level (spec C3) of each pixel footprint on a res² texture, computed once."""
    sx, sy, tx, ty = (uv_da * res).unbind(1)
    a, b, c = sx * sx + tx * tx, sy * sy + ty * ty, sx * sy + tx * ty
    lam2 = (a + b) / 2 + torch.sqrt(((a - b) / 2) ** 2 + c * c)
    return 0.5 * torch.log2(lam2.clamp_min(1e-30))  # the backend clamps to [0, levels - 1]


def _optimize(x, mask, mesh, camera, res, opts, renderer, progress):
    h, w = x.shape[-2:]
    top = opts.top_resolution or 2 * res
    uv, uv_da, cov = _image_uv(mesh, camera, h, w, renderer)
    # Loss pixels: on the mesh and the mask, away from both silhouettes (edge pixels mix background).
    valid = _erode(_binary_mask(mask) * cov[None, None], 1)[0, 0].reshape(-1) > 0
    sel = valid.nonzero().flatten()
    if sel.numel() == 0:
        raise MeshError(f"{mesh.name}: the mesh covers none of the face mask in this camera; the camera does not match")
    uv, uv_da = uv.reshape(-1, 2)[sel], uv_da.reshape(-1, 4)[sel]
    target = x[0].reshape(x.shape[1], -1)[:, sel].T.contiguous()  # N×C
    levels = []
    r = min(opts.start_resolution, top)
    while r < top:
        levels.append(r)
        r *= 2
    levels.append(top)
    gen = torch.Generator().manual_seed(opts.seed)
    tex = None
    losses = []
    for lvl in levels:
        # Init: splat average where pixels land, the upsampled coarser level (or the mean) elsewhere.
        acc, wacc = torch.zeros(target.shape[1], lvl * lvl), torch.zeros(1, lvl * lvl)
        for s0 in range(0, sel.numel(), _CHUNK):
            _splat(target[s0:s0 + _CHUNK], uv[s0:s0 + _CHUNK, 0], uv[s0:s0 + _CHUNK, 1], lvl, acc, wacc)
        if tex is None:
            prior = target.mean(0)[:, None].expand(-1, lvl * lvl)
        else:
            prior = F.interpolate(tex.permute(0, 3, 1, 2), size=(lvl, lvl), mode="bilinear", align_corners=False)
            prior = prior[0].reshape(-1, lvl * lvl)
        a = wacc.clamp(max=1.0)
        init = (acc / wacc.clamp_min(1e-8)) * a + prior * (1 - a)
        tex = init.T.reshape(1, lvl, lvl, -1).contiguous().requires_grad_(True)
        opt = torch.optim.Adam([tex], lr=opts.lr)
        bias = _mip_levels(uv_da, lvl)  # geometry is fixed: the mip level of every pixel too
        for _ in range(opts.steps):
            n = min(opts.pixels_per_step, sel.numel())
            pick = torch.randint(0, sel.numel(), (n,), generator=gen) if n < sel.numel() else slice(None)
            out = renderer.texture(tex, uv[pick].view(1, 1, -1, 2), mip_level_bias=bias[pick].view(1, 1, -1),
                                   filter_mode="linear-mipmap-linear", boundary_mode="clamp")
            loss = (out.view(-1, tex.shape[-1]) - target[pick]).pow(2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                tex.clamp_(0, 1)
            if progress is not None:
                progress(1)
        losses.append(float(loss.detach()) if opts.steps else float("nan"))
        tex = tex.detach()
    out = tex.permute(0, 3, 1, 2)
    if top > res:  # paper: optimise at 8192², deliver 4096²
        out = F.interpolate(out, size=(res, res), mode="area")
    elif top < res:
        out = F.interpolate(out, size=(res, res), mode="bilinear", align_corners=False)
    idx, _ = _visible_texels(mesh, camera, mask, res, opts, renderer)
    covt = torch.zeros(1, res * res)
    covt[:, idx] = 1.0
    return out[0], covt.view(1, res, res), {"levels": levels, "final_loss": losses[-1] if losses else None,
                                            "loss_pixels": int(sel.numel())}


@torch.no_grad()
def _splat_method(x, mask, uv_map, res, opts):
    h, w = x.shape[-2:]
    c = x.shape[1]
    uvg = uv_map.reshape(1, 2, *uv_map.shape[-2:]).float()
    # The predicted UV is 0 off the face: drop pixels whose upsampled UV mixes in off-face global pixels.
    inside = _erode(_binary_mask(mask), 1 + math.ceil(max(h / uvg.shape[-2], w / uvg.shape[-1])))[0, 0]
    acc, wacc = torch.zeros(c, res * res), torch.zeros(1, res * res)
    rows = max(1, _CHUNK // w)
    for y0 in range(0, h, rows):  # full-res UV per band of rows, resampled from the (global) UV map
        hb = min(rows, h - y0)
        keep = inside[y0:y0 + hb].reshape(-1) > 0
        if not keep.any():
            continue
        if uvg.shape[-2:] == (h, w):
            uvb = uvg[0, :, y0:y0 + hb].reshape(2, -1)
        else:
            uvb = sample_global(uvg, Box(y0, 0, hb, w), (h, w))[0].reshape(2, -1)
        uvb = uvb.T[keep]
        vals = x[0, :, y0:y0 + hb].reshape(c, -1).T[keep]
        _splat(vals, uvb[:, 0].clamp(0, 1), uvb[:, 1].clamp(0, 1), res, acc, wacc)
    tex = acc / wacc.clamp_min(1e-8)
    cov = (wacc > 1e-3).float()
    return tex.view(c, res, res), cov.view(1, res, res), {"splat_pixels": int(inside.sum())}


# ------------------------------------------------------------------------------------------ interface


def unwrap(maps: Mapping[str, torch.Tensor], mask: torch.Tensor, method: str = "direct", *,
           mesh: Mesh | None = None, camera: Camera | None = None, uv: torch.Tensor | None = None,
           options: UnwrapOptions | None = None, template: Mapping[str, torch.Tensor] | None = None,
           renderer: Renderer | None = None, progress: Callable[[int], None] | None = None) -> UnwrapResult:
    """Image-space `maps` ({name: C×H×W}, top-down) inside `mask` (1×H×W) -> UV textures (see module doc).

    direct / optimize need `mesh` + `camera`; splat needs `uv` (2×h×w, any h×w covering the image, e.g. the
    Stage-1 prediction). `template` ({name: C×r×r} top-down, in the same UV layout) defaults to a flat one.
    """
    opts = options or UnwrapOptions()
    if method not in METHODS:
        raise ValueError(f"unknown unwrap method {method!r}; valid: {', '.join(METHODS)}")
    names = _channel_names(maps)
    h, w = next(iter(maps.values())).shape[-2:]
    if mask.shape[-2:] != (h, w):
        raise ValueError(f"mask is {tuple(mask.shape[-2:])} but the maps are {(h, w)}")
    res = int(opts.resolution)
    renderer = renderer or Renderer("auto", "cpu")
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    if method in ("direct", "optimize"):
        if mesh is None or camera is None:
            raise MeshError(f"unwrap method '{method}' needs a mesh with UVs and its camera (--mesh, --camera); "
                            "use --unwrap splat without a mesh")
        camera = _camera_for(camera, h, w, "camera")
        check_camera(mesh, camera)
        if method == "direct":
            tex, cov, stats = _direct(maps, mask, mesh, camera, res, opts, renderer, timings)
        else:
            tex, cov, stats = _optimize(_gather_channels(maps), mask, mesh, camera, res, opts, renderer, progress)
    else:
        if uv is None:
            raise ValueError("unwrap method 'splat' needs the predicted UV map")
        tex, cov, stats = _splat_method(_gather_channels(maps), mask, uv, res, opts)
    timings.setdefault(method, time.perf_counter() - t0)
    if method != "direct":  # raster convention (row 0 = v≈0) -> top-down images
        tex, cov = tex.flip(-2), cov.flip(-2)
    stats["coverage"] = float(cov.mean())
    if opts.fill:
        t0 = time.perf_counter()
        if float(cov.sum()) > 0:
            tex = push_pull(tex, cov, inplace=True)
        textures = _split_channels(tex.clamp_(0, 1), names)
        t1 = time.perf_counter()
        tpl = template or flat_template(res, dict(names))
        textures, extra = blend_template(textures, cov, tpl, opts.template_sigma, inplace=True)
        timings.update(fill=t1 - t0, blend=time.perf_counter() - t1)
        stats.update(extra)
    else:
        textures = _split_channels(tex.clamp_(0, 1), names)
    stats["timings_s"] = {k: round(v, 3) for k, v in timings.items()}
    return UnwrapResult(textures, cov, method, stats)
