"""Filling the texels a photo did not see: push-pull, and the template texture blended in far from them.

* `push_pull`: the masked texture's pyramid pulled back up, so the fill is smooth and continuous with its
  border.
* `head_template`: the template head (ICT mean head, mid-tone textures shipped with the package,
  `uhrtex.head_model.template`) in the unified UV layout (`flat_template` for other layouts).
* `blend_template`: tone-match the template to the observed texels (mean face colour, per channel, in
  linear space for sRGB maps) and blend it in with w = max(coverage, gaussian(coverage)).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache

import torch
import torch.nn.functional as F

from uhrtex import maps as M
from uhrtex.common.imaging import gaussian_blur
from uhrtex.unwrap.mesh import Mesh

__all__ = ["push_pull", "flat_template", "head_template", "is_unified_layout", "blend_template", "template_face_mesh"]


def _pooled_sum(v: torch.Tensor) -> torch.Tensor:
    """2×2 sums (odd edges padded with 0)."""
    ph, pw = v.shape[-2] % 2, v.shape[-1] % 2
    return F.avg_pool2d(F.pad(v, (0, pw, 0, ph)) if ph or pw else v, 2, divisor_override=1)


_ROWS = 32  # finest-level rows per block: a block's temporaries (7 channels × 32 rows × 4K) stay in cache


def push_pull(tex: torch.Tensor, weight: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """Fill texels with weight 0 from coarser pyramid levels (C×H×W, weight 1×H×W in [0, 1]); `inplace` (float32
    `tex`): the result overwrites `tex`.

    The finest level (the weighted sums pooled from it, the upsampled fill and the blend into it) is done in blocks
    of rows: the same numbers as whole-level steps, but its temporaries stay in cache and never exist for the
    whole texture (at 4096², 7 channels: ≈ 1 GB less)."""
    wt0 = weight[None].float()
    c, (h, w) = tex.shape[0], tex.shape[-2:]
    if h == 1 and w == 1:
        return tex.clone()
    # Even sides: blocks of even rows pool as the whole level does (no 2×2 window straddles two blocks) and upsample
    # at its exact scale (`_upsampled_rows`); odd sides take the level in one block.
    n = h // _ROWS if h % 2 == 0 and w % 2 == 0 else 1
    edges = [i * _ROWS for i in range(max(n, 1))] + [h]
    blocks = list(zip(edges[:-1], edges[1:]))  # the last block takes the remainder: no block under _ROWS rows
    wt = _pooled_sum(wt0)
    v = torch.empty(1, c, *wt.shape[-2:], dtype=torch.promote_types(tex.dtype, wt0.dtype))
    for r0, r1 in blocks:
        block = _pooled_sum(tex[None, :, r0:r1] * wt0[..., r0:r1, :])
        v[..., r0 // 2:r0 // 2 + block.shape[-2], :] = block
    stack = []
    while v.shape[-1] > 1 or v.shape[-2] > 1:
        stack.append((v, wt))
        v, wt = _pooled_sum(v), _pooled_sum(wt)
    filled = v / wt.clamp_min(1e-8)
    for v, wt in reversed(stack):
        up = F.interpolate(filled, size=v.shape[-2:], mode="bilinear", align_corners=False)
        a = wt.clamp(0, 1)
        filled = (v / wt.clamp_min(1e-8)).mul_(a).add_(up.mul_(1 - a))
    binary = bool(((wt0 == 0) | (wt0 == 1)).all())
    out = tex if inplace and tex.dtype == torch.float32 else torch.empty_like(tex, dtype=torch.promote_types(tex.dtype, torch.float32))
    for r0, r1 in blocks:
        up = _upsampled_rows(filled, h, w, r0, r1)  # 1×C×(r1 − r0)×w
        t, wb = tex[None, :, r0:r1], wt0[..., r0:r1, :]
        if binary:  # 0/1 weights: v / wt · 1 + up · 0 is exactly tex
            out[:, r0:r1] = torch.where(wb > 0, t, up)[0]
        else:
            a0 = wb.clamp(0, 1)
            out[:, r0:r1] = (t * wb / wb.clamp_min(1e-8)).mul_(a0).add_(up.mul_(1 - a0))[0]
    return out


def _upsampled_rows(coarse: torch.Tensor, h: int, w: int, r0: int, r1: int) -> torch.Tensor:
    """Rows r0:r1 of `coarse` (1×C×h'×w') bilinearly upsampled to h×w, from the coarse rows they read plus one on
    each side. With h = 2h' and w = 2w' the block's scale is the whole image's (0.5 exactly), so its rows are those
    of the whole upsampling, bit for bit (tested)."""
    hc, wc = coarse.shape[-2:]
    if r1 - r0 == h:
        return F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    assert (h, w) == (2 * hc, 2 * wc), "row blocks need the exact 2x scale"
    c0, c1 = max(r0 // 2 - 1, 0), min(r1 // 2 + 1, hc)
    up = F.interpolate(coarse[..., c0:c1, :], size=(2 * (c1 - c0), w), mode="bilinear", align_corners=False)
    return up[..., r0 - 2 * c0:r1 - 2 * c0, :]


def flat_template(resolution: int, names: Mapping[str, int] | None = None) -> dict[str, torch.Tensor]:
    """A neutral template for UV layouts we have no head for: mid skin tone, flat normal, mild specular. Read-only
    broadcast views (no memory per texel: 7 × 4096² floats would be 470 MB)."""
    values = {"albedo": (0.72, 0.55, 0.47), "micronormal": (0.5, 0.5, 1.0), "specular": (0.25,)}
    names = names or {k: len(v) for k, v in values.items()}
    return {k: torch.tensor(values.get(k, (0.5,) * n)[:n]).view(n, 1, 1).expand(n, resolution, resolution)
            for k, n in names.items()}


@cache
def template_face_mesh() -> Mesh:
    """The ICT mean head's face tile (the unified UV layout) as an unwrap Mesh, world units (1 = 10 cm)."""
    from uhrtex.head_model import face_tile, mean_head

    return Mesh.from_head(face_tile(mean_head()), "template_head")


def head_template(resolution: int, max_resolution: int = 1024) -> tuple[Mesh, dict[str, torch.Tensor]]:
    """The template head in the unified UV layout: the mean head's face tile and its shipped mid-tone textures
    (`uhrtex.head_model.template`), top-down, resolution². The template only fills what the photo did not see, so
    textures above its stored size are upsampled."""
    from uhrtex.head_model.template import template_textures

    tex = template_textures()
    r = min(int(resolution), int(max_resolution))
    out = {}
    for k, v in tex.items():
        if v.shape[-1] != r:
            v = F.interpolate(v[None], size=(r, r), mode="area" if v.shape[-1] > r else "bilinear", align_corners=None)[0]
        if r != resolution:
            v = F.interpolate(v[None], size=(resolution, resolution), mode="bilinear", align_corners=False)[0]
        out[k] = v.clone()
    return template_face_mesh(), out


def is_unified_layout(mesh: Mesh) -> bool:
    """Whether `mesh` carries the unified UV layout (ICT's face tile; then the template head fits it): its UVs hold
    (almost) every UV point of the mean head's face tile, in any order or vertex splitting."""
    key = lambda uv: set(map(tuple, torch.round(uv.double() * 1e4).long().tolist()))  # noqa: E731
    ref, ours = key(template_face_mesh().uvs), key(mesh.uvs)
    return len(ref & ours) >= 0.99 * len(ref) and len(ours) < 2 * len(ref)


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian on 1×C×H×W through a downsampled copy when sigma is large (cheap at 8K): kornia's blur, replicate
    borders, on an f× area-pooled copy with sigma/f, upsampled back."""
    if sigma < 0.5:
        return x
    f = max(1, int(sigma // 4))
    small = F.avg_pool2d(x, f) if f > 1 else x
    y = gaussian_blur(small, sigma / f, int(3 * sigma / f), border="replicate")
    return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False) if f > 1 else y


_BLEND_CHUNK = 1 << 21  # texels per blend chunk


def blend_template(textures: Mapping[str, torch.Tensor], coverage: torch.Tensor,
                   template: Mapping[str, torch.Tensor], sigma: float,
                   inplace: bool = False) -> tuple[dict[str, torch.Tensor], dict]:
    """Tone-match `template` to the observed texels (mean face colour) and blend it in away from them.

    out = w·tex + (1 − w)·template', w = max(coverage, gaussian(coverage)); where w = 1 that is tex, so the
    template is converted and blended only on the texels with w < 1, and the gains are sums over the observed
    texels (coverage > 0) only. `inplace`: the results overwrite `textures` (no second full-size copy)."""
    from uhrtex.common.imaging import linear_to_srgb, srgb_to_linear

    res = coverage.shape[-1]
    cov = coverage[None].float()
    w = torch.maximum(cov, _gaussian_blur(cov, sigma * res).clamp(0, 1)).reshape(-1)
    cflat = cov.reshape(-1)
    seen = (cflat > 0).nonzero().flatten()
    part = (w < 1).nonzero().flatten()
    cw, wp = cflat[seen], w[part]
    n = float(cw.sum())
    out, gains = {}, {}
    for name, tex in textures.items():
        if name not in template:
            out[name] = tex
            continue
        t = template[name].float()
        if t.shape[-1] != res:
            t = F.interpolate(t[None], size=(res, res), mode="area" if t.shape[-1] > res else "bilinear")[0]
        c = tex.shape[0]
        tf, xf = t.reshape(c, -1), tex.reshape(c, -1)
        gain = None
        if name not in M.NORMAL_MAPS and n > 0:
            lin = name in M.SRGB_MAPS
            conv = srgb_to_linear if lin else (lambda v: v)
            a, b = conv(xf.index_select(1, seen)), conv(tf.index_select(1, seen))
            gain = ((a * cw).sum(1) / (b * cw).sum(1).clamp_min(1e-6)).clamp(0.1, 10)
            gains[name] = [round(float(g), 4) for g in gain]
        o = xf.clamp_(0, 1) if inplace else xf.clamp(0, 1)  # w = 1: the texture itself
        flat = tf.stride(1) == 0  # a constant template (`flat_template`'s broadcast views): filled, not gathered
        for s0 in range(0, part.numel(), _BLEND_CHUNK):  # chunks: the template's temporaries stay small
            idx, wc = part[s0:s0 + _BLEND_CHUNK], wp[s0:s0 + _BLEND_CHUNK]
            tp = tf[:, :1].expand(-1, idx.numel()).contiguous() if flat else tf.index_select(1, idx)
            tp = tp[..., None]  # where it shows (C×n×1: an image to kornia)
            if gain is not None:
                tp = conv(tp).mul_(gain[:, None, None])
                tp = linear_to_srgb(tp) if lin else tp
            val = wc * xf.index_select(1, idx)
            o.index_copy_(1, idx, val.add_(tp[..., 0] * (1 - wc)).clamp_(0, 1))
        out[name] = o.view_as(tex)
    return out, {"template_gain": gains}
