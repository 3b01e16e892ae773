"""Pure-PyTorch reference for nvdiffrast's rasterize / interpolate / texture / antialias.

Written from `specs/backends.md` section C (no nvdiffrast code was read). Same signatures,
conventions and numbers as nvdiffrast; gradients come from autograd. Runs on any device.

Conventions (nvdiffrast's): pixel (px, py) has its center at X = (2px+1)/W - 1, Y = (2py+1)/H - 1,
so row 0 is the bottom (Y = -1). `rast[..., :4] = (u, v, z/w, triangle_id + 1)`; u weights
tri[:, 0], v weights tri[:, 1], 1-u-v weights tri[:, 2]; empty pixels are all zero.

How rasterize works: the C1 quantities A_0, A_1, A_2, sum z_i A_i and sum w_i A_i are linear in
(X, Y) for each triangle, so for every pixel row the covered columns are an exact interval
(float64). Covered pixels become (pixel, triangle) depth candidates, reduced with
scatter_reduce("amin") on a (z/w, triangle) key, in chunks; the winners' u, v, z/w and rast_db
are then evaluated in float64 (differentiably in pos) and rounded once.

Where this can differ from nvdiffrast (single pixels on edges only):
- Coverage is exact and inclusive on edges instead of using vertices snapped to 1/16 px;
  neighbouring triangles still never leave a gap. Ties in z/w go to the lower triangle index.
- Clipping to -w <= z <= w is per pixel: a pixel is covered when its ray meets the triangle
  at a point with -w <= z <= w, i.e. exactly the coverage of the clipped polygon. Triangles that
  cross the near or far plane (or w = 0) render partially, with their perspective barycentrics.
- antialias follows C4; which silhouette edge and which pixel get the blend are reconstructed
  from the spec's description (see `antialias`).
"""

from __future__ import annotations

import math
import operator

import torch
import torch.nn.functional as F

# (pixel, triangle) candidate pairs tested per chunk. Each costs ~150 bytes of temporaries, so
# a chunk peaks near 300 MB: 20k triangles at 4096^2 fit in a few GB on CPU.
CANDIDATE_BUDGET = 1 << 21
# Pixels per chunk in passes that need no autograd graph (the graph would keep every chunk anyway).
PIXEL_CHUNK = 1 << 20

_NO_HIT = torch.iinfo(torch.int64).max
_LOW32 = 0xFFFFFFFF
FILTER_MODES = ("auto", "nearest", "linear", "linear-mipmap-nearest", "linear-mipmap-linear")
BOUNDARY_MODES = ("wrap", "clamp", "zero", "cube")


# --------------------------------------------------------------------------- input checks


def _desc(x) -> str:
    if isinstance(x, torch.Tensor):
        return f"{x.dtype} tensor of shape {list(x.shape)}"
    return type(x).__name__


def _check_tri(tri) -> None:
    if not isinstance(tri, torch.Tensor) or tri.dtype not in (torch.int32, torch.int64) or tri.dim() != 2 or tri.shape[1] != 3:
        raise ValueError(f"tri must be an int32/int64 tensor of shape [T,3], got {_desc(tri)}; build it with torch.tensor(faces, dtype=torch.int32)")


def _check_float(name: str, x, dims: tuple[int, ...], shape_hint: str) -> None:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() not in dims:
        raise ValueError(f"{name} must be a float tensor of shape {shape_hint}, got {_desc(x)}")


def _check_rast(rast) -> None:
    _check_float("rast", rast, (4,), "[B,H,W,4] (the first output of rasterize)")
    if rast.shape[-1] != 4:
        raise ValueError(f"rast must be [B,H,W,4] (the first output of rasterize), got shape {list(rast.shape)}")


def _tri_index(tri: torch.Tensor, n_verts: int, device) -> torch.Tensor:
    """tri as int64 on `device`, with indices checked against the vertex count."""
    tri = tri.to(device=device, dtype=torch.int64)
    if tri.numel() and (int(tri.min()) < 0 or int(tri.max()) >= n_verts):
        raise ValueError(f"tri indexes vertices {int(tri.min())}..{int(tri.max())} but there are only {n_verts}; fix the face list or pass all vertices")
    return tri


def _triangle_ids(rast_id: torch.Tensor, n_tris: int) -> torch.Tensor:
    """rast channel 3 (float id+1) of covered pixels -> int64 triangle index."""
    t = rast_id.detach().round().long() - 1
    if t.numel() and int(t.max()) >= n_tris:
        raise ValueError(f"rast holds triangle id {int(t.max()) + 1} but tri has {n_tris} rows; pass the tri used to rasterize")
    return t


# --------------------------------------------------------------------------- chunked row helpers


def _scatter_rows(n_rows: int, rows: torch.Tensor, compute, widths: tuple[int, ...], like: torch.Tensor, need_grad: bool):
    """Zero tensors [n_rows, width] whose `rows` hold compute(sel) (values for rows[sel]).

    With a graph, one differentiable index_copy; without, chunked in place so temporaries stay small.
    """
    outs = [like.new_zeros(n_rows, w) for w in widths]
    if need_grad:
        return [o.index_copy(0, rows, v) for o, v in zip(outs, compute(slice(None)))]
    for s in range(0, rows.numel(), PIXEL_CHUNK):
        sel = slice(s, s + PIXEL_CHUNK)
        for o, v in zip(outs, compute(sel)):
            o.index_copy_(0, rows[sel], v)
    return outs


# --------------------------------------------------------------------------- rasterize


def _work_items(pos: torch.Tensor, tri: torch.Tensor, ranges):
    """(batch, triangle) pairs to rasterize, and the flat vertex rows of each pair's corners."""
    dev = pos.device
    T = tri.shape[0]
    if ranges is None:
        B, V = pos.shape[:2]
        batch = torch.arange(B, device=dev).repeat_interleave(T)
        tri_id = torch.arange(T, device=dev).repeat(B)
        vrows = batch[:, None] * V + tri[tri_id]
    else:
        spans = [(int(s), int(c)) for s, c in ranges.tolist()]
        tri_id = torch.cat([torch.arange(s, s + c, device=dev) for s, c in spans]) if spans else tri.new_zeros(0)
        batch = torch.arange(len(spans), device=dev).repeat_interleave(torch.tensor([c for _, c in spans], device=dev, dtype=torch.long))
        vrows = tri[tri_id]
    return batch, tri_id, vrows


def _clipped_rows(v: torch.Tensor, H: int):
    """First pixel row and row count each triangle can cover after clipping to -w <= z <= w.

    v: [N,3,4] float64 clip-space corners. The clipped polygon's corners are the corners inside
    both planes plus the edge/plane crossings that lie inside the other plane.
    """
    near = v[..., 2] + v[..., 3]  # >= 0 inside the near plane
    far = v[..., 3] - v[..., 2]  # >= 0 inside the far plane
    a, b = v, v.roll(-1, dims=1)  # edges (0,1), (1,2), (2,0)
    pts, ok = [v], [(near >= 0) & (far >= 0)]
    for d, other_sign in ((near, -1.0), (far, 1.0)):  # the other plane is w + other_sign * z >= 0
        da, db = d, d.roll(-1, dims=1)
        crosses = (da * db) < 0
        p = a + (da / torch.where(crosses, da - db, torch.ones_like(da)))[..., None] * (b - a)
        pts.append(p)
        ok.append(crosses & (p[..., 3] + other_sign * p[..., 2] >= -1e-12 * p[..., 3].abs()))
    pts, ok = torch.cat(pts, 1), torch.cat(ok, 1)  # [N, 9, 4], [N, 9]
    w = pts[..., 3]
    at_eye = (ok & (w <= 1e-12)).any(1)  # a clipped corner at the eye: no usable bound, take all rows
    good = ok & (w > 1e-12)
    ndc_y = pts[..., 1] / torch.where(good, w, torch.ones_like(w))
    lo = torch.where(good, ndc_y, torch.full_like(w, math.inf)).amin(1)
    hi = torch.where(good, ndc_y, torch.full_like(w, -math.inf)).amax(1)
    lo = torch.where(at_eye, torch.full_like(lo, -1.0), lo)
    hi = torch.where(at_eye, torch.full_like(hi, 1.0), hi)
    # row p has its center at ((ndc + 1) * H - 1) / 2; a 0.01 px margin absorbs rounding
    p_lo = (((lo + 1) * H - 1) / 2 - 0.01).clamp(-1, H).ceil().long().clamp(0, H)
    p_hi = (((hi + 1) * H - 1) / 2 + 0.01).clamp(-1, H).floor().long().clamp(-1, H - 1)
    return p_lo, (p_hi - p_lo + 1).clamp_min(0) * ok.any(1)


def _half_planes(v: torch.Tensor) -> torch.Tensor:
    """Per triangle, the linear forms c + a X + b Y of A_0, A_1, A_2, sum z_i A_i, sum w_i A_i: [N,5,3].

    A_i = q_j x q_k with q = (x - X w, y - Y w) and (i, j, k) cyclic. A shared edge seen from the
    other triangle gets exactly negated coefficients, so neighbours agree on every pixel's side.
    """
    x, y, z, w = v.unbind(-1)  # [N, 3]
    xj, yj, wj = x.roll(-1, 1), y.roll(-1, 1), w.roll(-1, 1)
    xk, yk, wk = x.roll(-2, 1), y.roll(-2, 1), w.roll(-2, 1)
    edge = torch.stack([xj * yk - yj * xk, yj * wk - wj * yk, wj * xk - xj * wk], -1)  # [N, 3 (i), 3 (c, a, b)]
    zsum = (z[..., None] * edge).sum(1, keepdim=True)
    wsum = (w[..., None] * edge).sum(1, keepdim=True)
    return torch.cat([edge, zsum, wsum], 1)


def _chunks(counts: torch.Tensor, budget: int):
    """Consecutive [start, end) item ranges holding at most budget + max(counts) units each."""
    cum = counts.cumsum(0)
    total = int(cum[-1]) if cum.numel() else 0
    marks = torch.arange(1, -(-total // budget) + 1, device=counts.device) * budget
    ends = torch.searchsorted(cum, marks, right=True).tolist() + [counts.numel()]
    start = 0
    for end in ends:
        if end > start:
            yield start, end
            start = end


def _expand(counts: torch.Tensor, *tables: torch.Tensor):
    """Repeat each table row counts[i] times; also return each repeat's index within its row."""
    n = int(counts.sum())
    first = (counts.cumsum(0) - counts).repeat_interleave(counts, output_size=n)
    local = torch.arange(n, device=counts.device) - first
    return local, [t.repeat_interleave(counts, 0, output_size=n) for t in tables]


def _row_spans(forms: torch.Tensor, Y: torch.Tensor, W: int):
    """Covered pixel columns of each (triangle, row): (first px, count) for each winding, [S, 2] each.

    Inside means A_0, A_1, A_2 >= 0 and -1 <= z/w <= 1 with w > 0 (all signs flipped for the
    other winding). For a fixed row each condition is a half-line in X, so coverage is exact.
    """
    c, a, b = forms.unbind(-1)  # [S, 5]
    zsum, wsum = c[:, 3:4] + b[:, 3:4] * Y[:, None], c[:, 4:5] + b[:, 4:5] * Y[:, None]
    alpha = torch.cat([c[:, :3] + b[:, :3] * Y[:, None], wsum + zsum, wsum - zsum], 1)  # value at X = 0
    beta = torch.cat([a[:, :3], a[:, 4:5] + a[:, 3:4], a[:, 4:5] - a[:, 3:4]], 1)  # slope in X
    root = -alpha / torch.where(beta == 0, torch.ones_like(beta), beta)
    inf = torch.full_like(root, math.inf)
    firsts, counts = [], []
    for sign in (1, -1):
        rising = sign * beta > 0
        lo = torch.where(rising, root, -inf).amax(1)
        hi = torch.where(sign * beta < 0, root, inf).amin(1)
        never = ((beta == 0) & (sign * alpha < 0)).any(1)
        # pixel px is inside when lo <= (2px+1)/W - 1 <= hi
        px_lo = (((lo + 1) * W - 1) / 2).clamp(-1, W).ceil().long().clamp_min(0)
        px_hi = (((hi + 1) * W - 1) / 2).clamp(-1, W).floor().long().clamp_max(W - 1)
        firsts.append(px_lo)
        counts.append((px_hi - px_lo + 1).clamp_min(0) * ~never)
    return torch.stack(firsts, 1), torch.stack(counts, 1)


def _depth_key(zw: torch.Tensor, tri_id: torch.Tensor) -> torch.Tensor:
    """int64 key ordered by z/w, then by triangle index: one amin finds the nearest triangle."""
    bits = zw.float().view(torch.int32).long()
    bits = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)  # float order as signed-int order
    return (bits << 32) | tri_id


def _rasterize_ids(v, forms, batch, H, W, B, budget):
    """[B*H*W] int64: key (z/w, then work item) of the nearest covering item, _NO_HIT where empty.

    v: [N,3,4] float64 corners of each (batch, triangle) work item, forms their _half_planes
    (float64 keeps span ends exact enough to be watertight). Items -> rows (clipped y extent) ->
    exact covered column spans per row -> one depth candidate per covered pixel, folded into the
    buffer with scatter_reduce("amin"). Chunked so temporaries stay within `budget` candidates.
    """
    best = torch.full((B * H * W,), _NO_HIT, dtype=torch.int64, device=v.device)
    if v.shape[0] == 0:
        return best
    row0, n_rows = _clipped_rows(v, H)
    items = torch.stack([row0, batch, torch.arange(v.shape[0], device=v.device)], 1)
    for i0, i1 in _chunks(n_rows, max(budget // 16, H)):
        row_in, (it, fm) = _expand(n_rows[i0:i1], items[i0:i1], forms[i0:i1])
        py = it[:, 0] + row_in
        Y = (2 * py + 1).double() / H - 1
        px0, count = _row_spans(fm, Y, W)  # [S, 2] each, one column per winding
        # per span: pixel index of column 0, item, first column; depth forms along the row
        base = ((it[:, 1] * H + py) * W)[:, None].expand(-1, 2)
        ints = torch.stack([base, it[:, 2:3].expand(-1, 2), px0], -1).reshape(-1, 3)
        dz = torch.stack([fm[:, 3, 0] + fm[:, 3, 2] * Y, fm[:, 3, 1], fm[:, 4, 0] + fm[:, 4, 2] * Y, fm[:, 4, 1]], 1)
        floats = dz[:, None, :].expand(-1, 2, -1).reshape(-1, 4).float()
        count = count.reshape(-1)
        keep = (count > 0).nonzero().flatten()
        ints, floats, count = ints[keep], floats[keep], count[keep]
        for s0, s1 in _chunks(count, max(budget, W)):
            k, (sp_int, sp_f) = _expand(count[s0:s1], ints[s0:s1], floats[s0:s1])
            px = sp_int[:, 2] + k
            X = (2 * px + 1).float() / W - 1
            zn, wn = sp_f[:, 0] + sp_f[:, 1] * X, sp_f[:, 2] + sp_f[:, 3] * X
            key = _depth_key((zn / wn).clamp(-1, 1), sp_int[:, 1])
            key = torch.where(wn != 0, key, _NO_HIT)  # w = 0 exactly: the eye, not a surface
            best.scatter_reduce_(0, sp_int[:, 0] + px, key, "amin")
    return best


def _sum3(x: torch.Tensor) -> torch.Tensor:
    """x[:, 0] + x[:, 1] + x[:, 2] as [n, 1] (explicit adds: small-axis sums are slow on CPU)."""
    return x[:, 0:1] + x[:, 1:2] + x[:, 2:3]


def _barycentrics(forms, X, Y, H, W):
    """C1 outputs for covered pixels from their triangle's linear forms.

    forms: [n,3,5] = (c, a, b) of A_0, A_1, A_2, sum z_i A_i, sum w_i A_i (see _half_planes);
    X, Y: [n] pixel centers. Returns (u, v, z/w) [n,3] and rast_db [n,4].
    """
    c, a, b = forms.unbind(1)  # [n, 5] each
    vals = torch.addcmul(torch.addcmul(c, a, X[:, None]), b, Y[:, None])
    S = _sum3(vals)
    raw = vals[:, :2] / S  # unclamped (u, v)
    uv = raw.clamp(0, 1)
    uv = uv / (uv[:, 0:1] + uv[:, 1:2]).clamp_min(1)  # u + v > 1: divide both by u + v
    zw = (vals[:, 3:4] / vals[:, 4:5]).detach().clamp(-1, 1)
    # d/dX of A_i is a_i (per NDC unit); per pixel that is times 2/W (2/H for Y)
    dX = (a[:, :2] - raw * _sum3(a)) * ((2 / W) / S)
    dY = (b[:, :2] - raw * _sum3(b)) * ((2 / H) / S)
    return torch.cat([uv, zw], 1), torch.stack([dX, dY], -1).reshape(-1, 4)  # (du/dX, du/dY, dv/dX, dv/dY)


def _depth_pass(pos, tri, resolution, ranges, candidate_budget: int):
    """Validated inputs -> (best [B*H*W] depth keys (`_rasterize_ids`), forms [N,5,3] (differentiable in pos),
    tri_id [N], H, W) for the (batch, triangle) work items: what `rasterize` and `nearest_depth` share."""
    _check_tri(tri)
    try:
        H, W = (operator.index(r) for r in resolution)
    except (TypeError, ValueError):
        H = W = 0
    if min(H, W) <= 0:
        raise ValueError(f"resolution must be (height, width) positive ints, got {resolution!r}")
    if ranges is None:
        _check_float("pos", pos, (3,), "[B,V,4] in instanced mode (or [V,4] with ranges=[B,2])")
        B = pos.shape[0]
    else:
        _check_float("pos", pos, (2,), "[V,4] in range mode (or [B,V,4] without ranges)")
        if not isinstance(ranges, torch.Tensor) or ranges.is_floating_point() or ranges.dim() != 2 or ranges.shape[1] != 2:
            raise ValueError(f"ranges must be an int tensor [B,2] of (first triangle, count), got {_desc(ranges)}")
        if ranges.numel() and (int(ranges.min()) < 0 or int((ranges[:, 0] + ranges[:, 1]).max()) > tri.shape[0]):
            raise ValueError(f"ranges must lie inside the {tri.shape[0]} triangles of tri, got {ranges.tolist()}")
        B = ranges.shape[0]
    if pos.shape[-1] != 4:
        raise ValueError(f"pos must hold homogeneous clip-space xyzw in its last axis (size 4), got shape {list(pos.shape)}")
    V = pos.shape[-2]
    tri = _tri_index(tri, V, pos.device)

    batch, tri_id, vrows = _work_items(pos, tri, ranges)
    corners = pos.reshape(-1, 4).index_select(0, vrows.flatten()).view(-1, 3, 4).double()
    forms = _half_planes(corners)  # [N, 5, 3], differentiable in pos
    best = _rasterize_ids(corners.detach(), forms.detach(), batch, H, W, B, int(candidate_budget))
    return best, forms, tri_id, H, W


def rasterize(pos, tri, resolution, ranges=None, grad_db=True, candidate_budget: int = CANDIDATE_BUDGET):
    """nvdiffrast.rasterize without the context: returns (rast, rast_db), each [B,H,W,4].

    pos: [B,V,4] clip-space positions (instanced), or [V,4] with `ranges` [B,2] = (first triangle,
    count) per image; ids stay global triangle indices. tri: int32/int64 [T,3], either winding.
    `candidate_budget` bounds the (pixel, triangle) pairs held at once (memory, not results).
    """
    best, forms, tri_id, H, W = _depth_pass(pos, tri, resolution, ranges, candidate_budget)
    B = best.numel() // (H * W)
    pix = (best != _NO_HIT).nonzero().flatten()
    item = best[pix] & _LOW32
    # Evaluated in float64 and rounded once, so outputs sit within float32 rounding of exact C1.
    X = (2 * (pix % W) + 1).double() / W - 1
    Y = (2 * torch.div(pix % (H * W), W, rounding_mode="floor") + 1).double() / H - 1
    ids = (tri_id + 1).to(pos.dtype)
    forms = forms.transpose(1, 2).contiguous()  # [N, (c, a, b), 5]: per-pixel gathers read rows
    need_grad = torch.is_grad_enabled() and pos.requires_grad

    def compute(sel):
        it = item[sel]
        f = forms.index_select(0, it)
        rast, db = _barycentrics(f, X[sel], Y[sel], H, W)
        if not grad_db and need_grad:  # pos gets gradients through rast_db only with grad_db
            db = _barycentrics(f.detach(), X[sel], Y[sel], H, W)[1]
        return torch.cat([rast.to(pos.dtype), ids.index_select(0, it)[:, None]], 1), db.to(pos.dtype)

    rast, db = _scatter_rows(B * H * W, pix, compute, (4, 4), pos, need_grad)
    return rast.view(B, H, W, 4), db.view(B, H, W, 4)


@torch.no_grad()
def nearest_depth(pos, tri, resolution, ranges=None, candidate_budget: int = CANDIDATE_BUDGET) -> torch.Tensor:
    """[B,H,W] float32 z/w of the nearest surface (+inf where none): what `rasterize(...)[0][..., 2]` holds on
    covered pixels, from the depth pass alone (the nearest item's key carries its z/w), so no barycentrics.
    Arguments as `rasterize`."""
    best, _, _, H, W = _depth_pass(pos, tri, resolution, ranges, candidate_budget)
    bits = best >> 32
    bits = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits).to(torch.int32)  # undo _depth_key's order map
    depth = bits.view(torch.float32)
    return torch.where(best != _NO_HIT, depth, torch.full_like(depth, math.inf)).view(-1, H, W)


# --------------------------------------------------------------------------- interpolate


def interpolate(attr, rast, tri, rast_db=None, diff_attrs=None):
    """nvdiffrast.interpolate: per-pixel attributes and, for `diff_attrs`, their pixel derivatives.

    attr: [B|1,V,C], or [V,C] (range mode; shared by all images). Returns (out [B,H,W,C],
    out_da [B,H,W,2n]) with out_da interleaving (dA/dX, dA/dY) per selected attribute.
    """
    _check_rast(rast)
    _check_tri(tri)
    _check_float("attr", attr, (2, 3), "[B,V,C], [1,V,C] or [V,C]")
    B, H, W, _ = rast.shape
    attr3 = attr[None] if attr.dim() == 2 else attr
    if attr3.shape[0] not in (1, B):
        raise ValueError(f"attr has batch {attr3.shape[0]} but rast has {B}; pass [B,V,C] or [1,V,C]")
    _, V, C = attr3.shape
    if diff_attrs is None:
        sel_attrs = []
    elif diff_attrs == "all":
        sel_attrs = list(range(C))
    else:
        sel_attrs = [int(i) for i in diff_attrs]
        if any(i < 0 or i >= C for i in sel_attrs):
            raise ValueError(f"diff_attrs {diff_attrs} must index the {C} attribute channels, or be 'all'")
    if sel_attrs:
        _check_float("rast_db", rast_db, (4,), "[B,H,W,4] (the second output of rasterize) when diff_attrs is given")
        if rast_db.shape != rast.shape:
            raise ValueError(f"rast_db has shape {list(rast_db.shape)} but rast has {list(rast.shape)}; pass the pair from one rasterize call")
    tri = _tri_index(tri, V, attr.device)
    rflat = rast.reshape(-1, 4)
    pix = (rflat[:, 3].detach() >= 0.5).nonzero().flatten()  # ids are integers stored as floats
    t = _triangle_ids(rflat[:, 3].index_select(0, pix), tri.shape[0])
    vrows = tri.index_select(0, t)
    if attr3.shape[0] > 1:
        vrows = vrows + torch.div(pix, H * W, rounding_mode="floor")[:, None] * V
    aflat = attr3.reshape(-1, C)
    sel_idx = torch.tensor(sel_attrs, dtype=torch.long, device=attr.device)
    grads = [attr, rast] + ([rast_db] if sel_attrs else [])
    need_grad = torch.is_grad_enabled() and any(g.requires_grad for g in grads)

    def compute(sel):
        p = pix[sel]
        a0, a1, a2 = (aflat.index_select(0, r) for r in vrows[sel].unbind(1))  # [n, C] each
        uv = rflat.index_select(0, p)
        u, v = uv[:, 0:1], uv[:, 1:2]
        out = u * a0 + v * a1 + (1 - u - v) * a2
        if not sel_attrs:
            return out, out.new_zeros(out.shape[0], 0)
        db = rast_db.reshape(-1, 4).index_select(0, p)
        d0, d1 = a0 - a2, a1 - a2
        if len(sel_attrs) < C:
            d0, d1 = d0.index_select(1, sel_idx), d1.index_select(1, sel_idx)
        dX = db[:, 0:1] * d0 + db[:, 2:3] * d1
        dY = db[:, 1:2] * d0 + db[:, 3:4] * d1
        return out, torch.stack([dX, dY], -1).reshape(out.shape[0], 2 * len(sel_attrs))

    like = attr if attr.dtype == rast.dtype else rast
    out, out_da = _scatter_rows(B * H * W, pix, compute, (C, 2 * len(sel_attrs)), like, need_grad)
    return out.view(B, H, W, C), out_da.view(B, H, W, 2 * len(sel_attrs))


# --------------------------------------------------------------------------- texture


def build_mip_levels(tex: torch.Tensor, max_mip_level=None) -> list[torch.Tensor]:
    """[tex, level 1, ...]: 2x2 box averages down to 1x1 (a side of 1 stays 1), [B,H,W,C] each."""
    levels = [tex]
    cur = tex.permute(0, 3, 1, 2)
    limit = math.inf if max_mip_level is None else int(max_mip_level)
    while len(levels) - 1 < limit and (cur.shape[2] > 1 or cur.shape[3] > 1):
        h, w = cur.shape[2:]
        if (h > 1 and h % 2) or (w > 1 and w % 2):
            raise ValueError(
                f"texture {tex.shape[1]}x{tex.shape[2]} cannot be mipmapped: level {len(levels) - 1} is {h}x{w} with an odd side; "
                f"use power-of-two sizes or max_mip_level={len(levels) - 1}"
            )
        cur = F.avg_pool2d(cur, (2 if h > 1 else 1, 2 if w > 1 else 1))
        levels.append(cur.permute(0, 2, 3, 1))
    return levels


def _wrap_pad(level):
    """Pad [1,C,H,W] by one texel copied from the opposite side, so clamp-sampling it wraps."""
    return F.pad(level, (1, 1, 1, 1), mode="circular")


def _sample_level(level, s, t, boundary, nearest):
    """Sample one [1,C,Hl,Wl] texture image at flat (s, t) per C3 -> [n,C].

    Bilinear taps go through grid_sample, whose align_corners=False texel centers are C3's
    ((c+.5)/Wt, (r+.5)/Ht): "border" is clamp and "zeros" is zero. For bilinear wrap, `level`
    comes padded by _wrap_pad and is clamp-sampled at X + 1.
    """
    _, C, Hl, Wl = level.shape
    if boundary == "wrap":
        s, t = s - torch.floor(s), t - torch.floor(t)
    if nearest:
        i, j = torch.floor(s * Wl).long(), torch.floor(t * Hl).long()
        flat = level.reshape(C, Hl * Wl)
        val = flat.index_select(1, j.clamp(0, Hl - 1) * Wl + i.clamp(0, Wl - 1)).T
        if boundary == "zero":  # texels outside read 0
            val = val * ((i >= 0) & (i < Wl) & (j >= 0) & (j < Hl))[:, None].to(val.dtype)
        return val
    if boundary == "wrap":
        Hl, Wl = Hl - 2, Wl - 2
        gx, gy = (2 * s * Wl + 2) / (Wl + 2) - 1, (2 * t * Hl + 2) / (Hl + 2) - 1  # texel X -> X + 1
    else:
        gx, gy = 2 * s - 1, 2 * t - 1
    grid = torch.stack([gx, gy], -1).view(1, -1, 1, 2).to(level.dtype)
    pad = "zeros" if boundary == "zero" else "border"
    return F.grid_sample(level, grid, mode="bilinear", padding_mode=pad, align_corners=False)[0, :, :, 0].T


def _mip_level(uv_da, bias, Ht, Wt, n_levels):
    """Continuous mip level per pixel (C3): 0.5 log2 of the footprint's major axis squared."""
    if uv_da is not None:
        sX, sY, tX, tY = uv_da.unbind(1)
        sX, sY, tX, tY = sX * Wt, sY * Wt, tX * Ht, tY * Ht
        A, Bq, Cq = sX * sX + tX * tX, sY * sY + tY * tY, sX * sY + tX * tY
        r2 = ((A - Bq) / 2) ** 2 + Cq * Cq
        r = torch.where(r2 > 0, torch.sqrt(torch.where(r2 > 0, r2, torch.ones_like(r2))), torch.zeros_like(r2))
        lam2 = (A + Bq) / 2 + r
        level = torch.where(lam2 > 0, 0.5 * torch.log2(torch.where(lam2 > 0, lam2, torch.ones_like(lam2))), torch.full_like(lam2, -1e4))
    else:
        level = bias.new_zeros(bias.shape)
    if bias is not None:
        level = level + bias
    return level.clamp(0, n_levels - 1)


def texture(tex, uv, uv_da=None, mip_level_bias=None, mip=None, filter_mode="auto", boundary_mode="wrap", max_mip_level=None):
    """nvdiffrast.texture: sample `tex` [B|1,Ht,Wt,C] at `uv` [B,h,w,2] -> [B,h,w,C].

    uv[...,0] indexes columns and uv[...,1] rows; row 0 is the first row of the tensor (no flip).
    `mip` may be a list of prebuilt levels 1..N (gradients then stop at those tensors).
    """
    if boundary_mode not in BOUNDARY_MODES:
        raise ValueError(f"boundary_mode must be one of {BOUNDARY_MODES}, got {boundary_mode!r}")
    if boundary_mode == "cube":
        raise NotImplementedError("cube-map textures are not supported by the torch raster backend; use backend='nvdiffrast'")
    if filter_mode not in FILTER_MODES:
        raise ValueError(f"filter_mode must be one of {FILTER_MODES}, got {filter_mode!r}")
    _check_float("tex", tex, (4,), "[B|1,Ht,Wt,C]")
    _check_float("uv", uv, (4,), "[B,h,w,2]")
    if uv.shape[-1] != 2:
        raise ValueError(f"uv must be [B,h,w,2], got shape {list(uv.shape)}")
    B, h, w, _ = uv.shape
    Bt, Ht, Wt, C = tex.shape
    if Bt not in (1, B):
        raise ValueError(f"tex has batch {Bt} but uv has {B}; pass [B,Ht,Wt,C] or [1,Ht,Wt,C]")
    if max(Ht, Wt) > 65536:
        raise ValueError(f"texture sides must be <= 65536, got {Ht}x{Wt}; split the texture")
    if filter_mode == "auto":
        filter_mode = "linear-mipmap-linear" if (uv_da is not None or mip_level_bias is not None) else "linear"
    use_mip = filter_mode.startswith("linear-mipmap")
    if use_mip and uv_da is None and mip_level_bias is None:
        raise ValueError(f"filter_mode {filter_mode!r} needs uv_da or mip_level_bias to choose a mip level; pass one or use filter_mode='linear'")
    if use_mip and uv_da is not None and (uv_da.dim() != 4 or uv_da.shape != (B, h, w, 4)):
        raise ValueError(f"uv_da must be [B,h,w,4] = (ds/dX, ds/dY, dt/dX, dt/dY), got {_desc(uv_da)}")
    if use_mip and mip_level_bias is not None and tuple(mip_level_bias.shape) != (B, h, w):
        raise ValueError(f"mip_level_bias must be [B,h,w], got {_desc(mip_level_bias)}")

    if not use_mip:
        levels = [tex]
    elif mip is None:
        levels = build_mip_levels(tex, max_mip_level)
    else:
        extra = list(mip)[: None if max_mip_level is None else int(max_mip_level)]
        levels = [tex] + extra
        if any(m.dim() != 4 or m.shape[0] != Bt or m.shape[-1] != C for m in extra):
            raise ValueError(f"mip must be a list of [{Bt},h_l,w_l,{C}] tensors for levels 1..N")

    inputs = levels + [x for x in (uv, uv_da, mip_level_bias) if x is not None]
    need_grad = torch.is_grad_enabled() and any(x.requires_grad for x in inputs)
    levels = [lev.permute(0, 3, 1, 2) for lev in levels]  # NCHW views for grid_sample
    if boundary_mode == "wrap" and filter_mode != "nearest":
        levels = [_wrap_pad(lev) for lev in levels]
    n = h * w  # pixels per image; images are sampled one at a time when tex has a batch
    dtype = torch.result_type(tex, uv)
    uv_flat = uv.reshape(B, n, 2)
    da_flat = uv_da.reshape(B, n, 4) if (use_mip and uv_da is not None) else None
    bias_flat = mip_level_bias.reshape(B, n) if (use_mip and mip_level_bias is not None) else None

    def sample(bi, sel):
        s, t = uv_flat[bi, sel, 0], uv_flat[bi, sel, 1]
        ti = bi if Bt > 1 else 0
        if not use_mip:
            return _sample_level(levels[0][ti : ti + 1], s, t, boundary_mode, filter_mode == "nearest")
        level = _mip_level(None if da_flat is None else da_flat[bi, sel], None if bias_flat is None else bias_flat[bi, sel], Ht, Wt, len(levels))
        if filter_mode == "linear-mipmap-nearest":  # floor, as nvdiffrast's __float2int_rd (measured on an H200)
            l0, frac = torch.floor(level.detach()).long(), torch.zeros_like(level)
        else:
            l0f = torch.floor(level.detach())
            l0, frac = l0f.long(), level - l0f
        top = len(levels) - 1
        used = torch.bincount(l0, minlength=top + 1).nonzero().flatten().tolist()
        out = None if len(used) == 1 else s.new_zeros(s.shape[0], C, dtype=dtype)
        for k in used:
            rows = None if out is None else (l0 == k).nonzero().flatten()
            sr, tr, fr = (s, t, frac) if rows is None else (x.index_select(0, rows) for x in (s, t, frac))
            val = _sample_level(levels[k][ti : ti + 1], sr, tr, boundary_mode, False)
            blend = (fr > 0).nonzero().flatten() if k < top else fr.new_zeros(0, dtype=torch.long)
            if blend.numel():  # toward the next coarser level by frac(level); magnified pixels skip it
                fb = fr.index_select(0, blend)[:, None]
                coarse = _sample_level(levels[k + 1][ti : ti + 1], sr.index_select(0, blend), tr.index_select(0, blend), boundary_mode, False)
                val.index_copy_(0, blend, (1 - fb) * val.index_select(0, blend) + fb * coarse)
            out = val if rows is None else out.index_copy_(0, rows, val)
        return out

    if need_grad:
        return torch.stack([sample(bi, slice(None)) for bi in range(B)]).view(B, h, w, C)
    out = uv.new_empty(B, n, C, dtype=dtype)
    for bi in range(B):
        for s0 in range(0, n, PIXEL_CHUNK):
            out[bi, s0 : s0 + PIXEL_CHUNK] = sample(bi, slice(s0, s0 + PIXEL_CHUNK))
    return out.view(B, h, w, C)


# --------------------------------------------------------------------------- antialias


def construct_topology(tri: torch.Tensor) -> torch.Tensor:
    """[T,3] int64: for edge e = (tri[:,e], tri[:,e+1]), the far vertex of the triangle across it.

    -1 where the edge has no neighbour, or is shared by more than two triangles (non-manifold:
    treated as a boundary, so it may be antialiased).
    """
    _check_tri(tri)
    tri = tri.long()
    T = tri.shape[0]
    if T == 0:
        return tri.new_zeros(0, 3)
    a, b, opp = tri, tri.roll(-1, 1), tri.roll(-2, 1)
    n_v = int(tri.max()) + 1
    key = (torch.minimum(a, b) * n_v + torch.maximum(a, b)).flatten()
    order = torch.argsort(key)
    ks = key[order]
    same_next = torch.zeros_like(ks, dtype=torch.bool)
    same_next[:-1] = ks[1:] == ks[:-1]
    group_start = torch.ones_like(same_next)
    group_start[1:] = ~same_next[:-1]
    # a pair is a group start whose next is the same key and whose next-next is not
    after_pair = torch.zeros_like(same_next)
    after_pair[:-2] = same_next[1:-1]
    pair = group_start & same_next & ~after_pair
    first = order[pair]
    second = order[pair.nonzero().flatten() + 1]
    opp_flat = opp.flatten()
    result = torch.full((3 * T,), -1, dtype=torch.long, device=tri.device)
    result[first] = opp_flat[second]
    result[second] = opp_flat[first]
    return result.view(T, 3)


def _side(lines, px, py):
    """Sign of each edge line (c, ex, ey) at points (px, py)."""
    return torch.sign(lines[..., 0] + lines[..., 1] * px + lines[..., 2] * py)


class _ScaleGrad(torch.autograd.Function):
    """Identity whose backward multiplies the gradient by k (antialias's pos_gradient_boost)."""

    @staticmethod
    def forward(ctx, x, k):
        ctx.k = k
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return g * ctx.k, None


def antialias(color, rast, pos, tri, topology_hash=None, pos_gradient_boost=1.0):
    """nvdiffrast.antialias (C4): blend across silhouette edges; gradients reach `pos` and `color`.

    For every horizontally or vertically adjacent pixel pair with different ids, the triangle in
    front (or the only one) is projected to pixels. Its edge that the segment between the two
    centers crosses nearest to its own pixel is used if that edge is a silhouette (no neighbour
    across it, or the neighbour folds to the same side). With the crossing at fraction dc from the
    first pixel (tolerance 1/16, clamped to [0,1]), the pixel whose area the edge enters gets
    (0.5 - dc) * (c_second - c_first): its colour moves toward the other by the covered fraction.
    """
    _check_float("color", color, (4,), "[B,H,W,C]")
    _check_rast(rast)
    _check_tri(tri)
    _check_float("pos", pos, (2, 3), "[B,V,4] or [V,4]")
    B, H, W, C = color.shape
    if rast.shape[:3] != color.shape[:3]:
        raise ValueError(f"color {list(color.shape)} and rast {list(rast.shape)} must share [B,H,W]")
    V = pos.shape[-2]
    tri = _tri_index(tri, V, pos.device)
    topo = construct_topology(tri) if topology_hash is None else topology_hash.to(pos.device).long()
    if topo.shape != tri.shape:
        raise ValueError(f"topology_hash has shape {list(topo.shape)}, expected {list(tri.shape)}; build it with antialias_construct_topology_hash(tri)")
    if pos_gradient_boost != 1.0:
        pos = _ScaleGrad.apply(pos, float(pos_gradient_boost))

    # Per (image, triangle) item: corners in pixel units and each edge's line f_e(p) = c + ex px + ey py,
    # edge e running from corner e to corner e+1 (f_e > 0 on its left).
    T, n_img = tri.shape[0], (pos.shape[0] if pos.dim() == 3 else 1)
    flat_pos = pos.reshape(-1, 4)
    image_base = torch.arange(n_img, device=pos.device)[:, None, None] * (V if pos.dim() == 3 else 0)

    def project(vertex_ids):  # [T,3] vertex indices -> pixel coordinates per item, [I,3] each
        v = flat_pos.index_select(0, (image_base + vertex_ids).flatten()).view(-1, 3, 4)
        return (v[..., 0] / v[..., 3] + 1) * (W / 2) - 0.5, (v[..., 1] / v[..., 3] + 1) * (H / 2) - 0.5, v[..., 3]

    sx, sy, w = project(tri)
    ex, ey = sy - sy.roll(-1, 1), sx.roll(-1, 1) - sx
    lines = torch.stack([-(ex * sx + ey * sy), ex, ey], -1)  # [I, 3 edges, (c, ex, ey)]
    with torch.no_grad():
        inside = _side(lines, sx.roll(-2, 1), sy.roll(-2, 1))  # where the own far corner lies
        far_x, far_y, _ = project(topo.clamp_min(0))
        silhouette = (topo.repeat(n_img, 1) < 0) | (_side(lines, far_x, far_y) == inside)  # no neighbour, or it folds over
        usable = (w > 0).all(1)  # the projection of a triangle reaching behind the eye is meaningless

    ids = rast[..., 3].detach().round().long()
    zw = rast[..., 2].detach().reshape(-1)
    flat_color = color.reshape(-1, C)
    targets, deltas = [], []
    for axis, (a, b), step in ((0, (ids[:, :, :-1], ids[:, :, 1:]), 1), (1, (ids[:, :-1, :], ids[:, 1:, :]), W)):
        bi, yi, xi = (a != b).nonzero().unbind(1)
        if bi.numel() == 0:
            continue
        p0 = (bi * H + yi) * W + xi
        p1 = p0 + step
        i0, i1 = ids.view(-1)[p0], ids.view(-1)[p1]
        own_is_0 = (i1 == 0) | ((i0 != 0) & (zw[p0] <= zw[p1]))  # the front (or only) triangle
        item = _triangle_ids(torch.where(own_is_0, i0, i1).to(zw.dtype), T)
        if pos.dim() == 3:
            item = item + bi * T
        L = lines.index_select(0, item)  # [n, 3, 3]
        f0 = L[..., 0] + L[..., 1] * xi[:, None].to(L.dtype) + L[..., 2] * yi[:, None].to(L.dtype)
        slope = L[..., 1 + axis]  # f(p1) - f(p0)
        dc = -f0 / torch.where(slope == 0, torch.ones_like(slope), slope)  # crossing, 0 at p0, 1 at p1
        f_other = torch.where(own_is_0[:, None], f0 + slope, f0).detach()
        ok = (inside.index_select(0, item) * f_other < 0) & (slope != 0) & (dc >= -1 / 16) & (dc <= 1 + 1 / 16)
        ok &= usable.index_select(0, item)[:, None]
        dist = torch.where(ok, torch.where(own_is_0[:, None], dc, 1 - dc).detach(), math.inf)
        e = dist.argmin(1, keepdim=True)  # the edge the segment leaves the own triangle through
        keep = (ok.gather(1, e) & silhouette.index_select(0, item).gather(1, e)).squeeze(1).nonzero().flatten()
        if keep.numel() == 0:
            continue
        dck = dc.gather(1, e).squeeze(1)[keep].clamp(0, 1)
        k0, k1 = p0[keep], p1[keep]
        targets.append(torch.where(dck.detach() < 0.5, k0, k1))
        deltas.append((0.5 - dck)[:, None].to(color.dtype) * (flat_color[k1] - flat_color[k0]))
    if not targets:
        return color + 0  # a new tensor, like nvdiffrast's output
    return flat_color.index_add(0, torch.cat(targets), torch.cat(deltas)).view(B, H, W, C)
