"""Rasterize a mesh's UV layout: which triangle covers each texel of a res² texture, and where inside it.

The UV layout is a flat (orthographic, constant-depth) 2-D drawing, so the general rasterizer's depth
test, perspective division and per-pixel derivatives are not needed. This keeps exactly its coverage
(`torch_backend`: the same float64 edge forms and exact per-row column spans, inclusive edges) and its
tie rule for equal depth (the lower triangle index wins), and returns a compact list of the covered
texels instead of a res²×4 image:

    lay = rasterize_uv_layout(uvs, tri, res)   # uvs: corners' texture coordinates in [0, 1]
    lay.texels   # flat raster-convention texel index (row 0 = v≈0), ascending, int64 [N]
    lay.tri      # covering triangle, int64 [N]
    forms = barycentric_forms(uvs, tri)          # [T, 2, 3]: u, v = c + a·X + b·Y at texel centre (X, Y) in NDC

`torch_backend.rasterize` on the same clip positions (uv·2−1, z 0, w 1) gives the same triangle per texel;
its (u, v) are these forms evaluated, clamped to the triangle and rounded to float32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from uhrtex.raster.torch_backend import (CANDIDATE_BUDGET, _check_tri, _chunks, _clipped_rows, _expand, _half_planes,
                                         _tri_index)

__all__ = ["UVLayoutRaster", "rasterize_uv_layout", "barycentric_forms", "texel_centres"]


@dataclass
class UVLayoutRaster:
    res: int
    texels: torch.Tensor  # int64 [N], flat index row * res + col, raster convention (row 0 = v≈0)
    tri: torch.Tensor  # int64 [N]


def _corners(uvs: torch.Tensor, tri: torch.Tensor) -> torch.Tensor:
    """[T, 3, 4] float64 clip-space corners of the flat layout (x, y = uv·2−1 in float32, as a float32 clip
    position array for the general rasterizer would hold them; z 0, w 1)."""
    xy = (uvs.float() * 2 - 1).double()[tri]
    return torch.cat([xy, torch.zeros_like(xy[..., :1]), torch.ones_like(xy[..., :1])], -1)


def _spans(alpha: torch.Tensor, beta: torch.Tensor, res: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Columns px with alpha + beta·X >= 0 for all three edges, X = (2px+1)/res − 1: (first px, count) [S].

    `torch_backend._row_spans` for one winding and without the near/far planes (w = 1, z = 0 inside them)."""
    root = -alpha / torch.where(beta == 0, torch.ones_like(beta), beta)
    lo = torch.where(beta > 0, root, -math.inf).amax(1)
    hi = torch.where(beta < 0, root, math.inf).amin(1)
    never = ((beta == 0) & (alpha < 0)).any(1)
    px_lo = ((lo + 1) * res - 1).div_(2).clamp_(-1, res).ceil_().long().clamp_min_(0)
    px_hi = ((hi + 1) * res - 1).div_(2).clamp_(-1, res).floor_().long().clamp_max_(res - 1)
    return px_lo, (px_hi - px_lo + 1).clamp_min_(0).masked_fill_(never, 0)


@torch.no_grad()
def rasterize_uv_layout(uvs: torch.Tensor, tri: torch.Tensor, res: int, budget: int = CANDIDATE_BUDGET) -> UVLayoutRaster:
    """The covered texels of a res² texture and their triangle (see module doc). uvs [V, 2], tri [T, 3]."""
    _check_tri(tri)
    res = int(res)
    tri = _tri_index(tri, uvs.shape[0], uvs.device)
    v = _corners(uvs, tri)
    edges = _half_planes(v)[:, :3]  # [T, 3 edges, (c, a, b)]
    # Inside is all three edge forms >= 0 (counter-clockwise) or all <= 0 (clockwise): one winding per
    # triangle, both for degenerate ones (area 0), as the general rasterizer tests both.
    area = edges[:, :, 0].sum(1)
    items = [(edges, torch.arange(tri.shape[0]), area >= 0), (-edges, torch.arange(tri.shape[0]), area <= 0)]
    row0, n_rows = _clipped_rows(v, res)
    best = torch.full((res * res,), tri.shape[0], dtype=torch.int64)  # T = empty; amin keeps the lowest id
    for fm_all, ids_all, sel in items:
        sel = sel.nonzero().flatten()
        fm_all, ids_all, r0, nr = fm_all[sel], ids_all[sel], row0[sel], n_rows[sel]
        for i0, i1 in _chunks(nr, max(budget // 8, res)):
            row_in, (first, ids) = _expand(nr[i0:i1], r0[i0:i1], torch.arange(i0, i1))
            py = first + row_in
            fm = fm_all.index_select(0, ids)
            Y = (2 * py + 1).double() / res - 1
            px0, count = _spans(fm[..., 0] + fm[..., 2] * Y[:, None], fm[..., 1], res)  # as _row_spans, no FMA
            keep = (count > 0).nonzero().flatten()
            start, tid, count = (py * res + px0)[keep], ids_all[ids[keep]], count[keep]
            for s0, s1 in _chunks(count, max(budget, res)):
                k, (st, t) = _expand(count[s0:s1], start[s0:s1], tid[s0:s1])
                best.scatter_reduce_(0, st.add_(k), t, "amin")
    texels = (best < tri.shape[0]).nonzero().flatten()
    return UVLayoutRaster(res, texels, best[texels])


def barycentric_forms(uvs: torch.Tensor, tri: torch.Tensor) -> torch.Tensor:
    """[T, 2, 3] float64: the barycentrics (u, v) of corners 0 and 1 as c + a·X + b·Y over NDC (X, Y).

    For the flat layout the area form is constant, so the barycentrics are exactly affine."""
    forms = _half_planes(_corners(uvs, tri.long()))  # rows A_0, A_1, A_2, z-sum, w-sum; cols (c, a, b)
    area = forms[:, 4:5, 0:1]  # the w-sum form: constant 2·signed area (its a, b are 0 for w = 1)
    return forms[:, :2] / torch.where(area == 0, torch.ones_like(area), area)


def texel_centres(texels: torch.Tensor, res: int, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat texel indices -> NDC centres (X, Y) = ((2·col + 1)/res − 1, (2·row + 1)/res − 1)."""
    row = torch.div(texels, res, rounding_mode="floor")
    col = texels - row * res
    return (2 * col + 1).to(dtype) / res - 1, (2 * row + 1).to(dtype) / res - 1
