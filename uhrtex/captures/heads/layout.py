"""Where things are on ICT's UV tiles, computed once from the mean head: the maps every subject's skin is painted
through. Region maps are "drawn once on the ICT face tile" from the mean head's 68 landmarks (their UVs) and its
3-D shape, so a UV coordinate means the same facial place for every identity.

* `tile_geometry(material, res)`: per texel of a material's tile, the mean head's 3-D position (cm), the part id
  (README geometry table) and coverage, top-down res×res.
* `face_regions(res)`: soft [0, 1] masks on the face tile: lips, upper/lower lip, brows, upper lids, lash lines,
  under-eyes, nose, nose tip, alae, cheeks, chin, beard zone, moustache, forehead, T-zone, ears, neck, temples.
* `CM_PER_UV`: the face tile's scale (the median of its triangles' 3-D/UV length ratio on the mean head).

Everything is cached per resolution (regions are smooth: textures above `REGION_RES` upsample them).
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import torch

from uhrtex.head_model import ict_model
from uhrtex.raster.uv_layout import barycentric_forms, rasterize_uv_layout, texel_centres

CM_PER_UV = 29.6  # median over the face tile's triangles on the mean head (25-75 %: 27.5-32.8)
REGION_RES = 1024
TILE_OFFSETS = {"M_Face": 0.0, "M_BackHead": 1.0, "M_GumsTongue": 2.0, "M_Teeth": 3.0, "M_ScleraLeft": 0.0,
                "M_ScleraRight": 0.0}


def attribute_map(uv: torch.Tensor, tri_uv: torch.Tensor, attrs: torch.Tensor, tri_attr: torch.Tensor, res: int
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-vertex attributes (A×C, indexed by tri_attr) interpolated over the UV layout (uv, tri_uv): (C×res×res
    values, 1×res×res coverage), top-down rows, texel centres."""
    lay = rasterize_uv_layout(uv, tri_uv, res)
    forms = barycentric_forms(uv, tri_uv)[lay.tri]  # N×2×3
    x, y = texel_centres(lay.texels, res, torch.float64)
    b = forms[..., 0] + forms[..., 1] * x[:, None] + forms[..., 2] * y[:, None]  # N×2
    w = torch.stack([b[:, 0], b[:, 1], 1 - b[:, 0] - b[:, 1]], 1).clamp(0, 1)
    corners = attrs.double()[tri_attr[lay.tri]]  # N×3×C
    vals = (w[..., None] * corners).sum(1)
    out = torch.zeros(res * res, attrs.shape[1], dtype=torch.float64)
    out[lay.texels] = vals
    cov = torch.zeros(res * res)
    cov[lay.texels] = 1.0
    flip = lambda t: t.view(res, res, -1).permute(2, 0, 1).flip(1)  # noqa: E731 - raster row 0 = v≈0 -> top-down
    return flip(out).float(), flip(cov[:, None])


@cache
def tile_geometry(material: str, res: int) -> dict[str, torch.Tensor]:
    """{"position": 3×res×res cm (mean head), "part": 1×res×res part id, "coverage": 1×res×res} of a tile."""
    m = ict_model()
    sel = m.material_faces((material,))
    uv = m.uv - torch.tensor([TILE_OFFSETS[material], 0.0])
    part = torch.zeros(m.neutral.shape[0], 1)
    for k in range(len(m.part_names)):
        part[m.part_vertices(m.part_names[k])] = float(k)
    attrs = torch.cat([m.neutral, part], 1)
    vals, cov = attribute_map(uv, m.faces_uv[sel], attrs, m.faces[sel], res)
    return {"position": vals[:3], "part": vals[3:].round(), "coverage": cov}


@cache
def landmark_uvs() -> torch.Tensor:
    """68×2 face-tile UVs of the Multi-PIE landmarks (v up)."""
    m = ict_model()
    sel = m.material_faces(("M_Face",))
    f, fu = m.faces[sel].reshape(-1), m.faces_uv[sel].reshape(-1)
    first = {}
    for v, t in zip(f.tolist(), fu.tolist()):
        first.setdefault(v, t)
    return torch.stack([m.uv[first[int(v)]] for v in m.landmarks68])


def _polygon(points: torch.Tensor, res: int, closed: bool = True, width_uv: float = 0.0) -> torch.Tensor:
    """1×res×res {0, 1}: a filled polygon (or a polyline of `width_uv`) through UV points, top-down."""
    from PIL import Image, ImageDraw

    img = Image.new("L", (res, res), 0)
    d = ImageDraw.Draw(img)
    xy = [(float(u) * res, (1 - float(v)) * res) for u, v in points]
    if closed:
        d.polygon(xy, fill=255)
    else:
        d.line(xy, fill=255, width=max(1, round(width_uv * res)), joint="curve")
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0)[None]


def soften(mask: torch.Tensor, sigma_cm: float) -> torch.Tensor:
    """A Gaussian blur of sigma_cm on the face tile (kornia; the tile's scale is CM_PER_UV)."""
    import kornia

    sigma = sigma_cm / CM_PER_UV * mask.shape[-1]
    if sigma < 0.3:
        return mask
    k = 2 * math.ceil(3 * sigma) + 1
    return kornia.filters.gaussian_blur2d(mask[None], (k, k), (sigma, sigma), border_type="replicate")[0]


def _disk(center_uv: torch.Tensor, radius_cm: float, res: int, falloff_cm: float | None = None,
          aspect: float = 1.0) -> torch.Tensor:
    """Soft disk on the face tile: 1 inside radius, smooth to 0 over `falloff_cm` (default the radius)."""
    v = 1 - (torch.arange(res) + 0.5) / res
    u = (torch.arange(res) + 0.5) / res
    dv, du = torch.meshgrid((v - center_uv[1]) * CM_PER_UV, (u - center_uv[0]) * CM_PER_UV, indexing="ij")
    d = torch.sqrt(du * du + (dv / aspect) ** 2)
    fall = radius_cm if falloff_cm is None else falloff_cm
    t = ((d - radius_cm) / fall).clamp(0, 1)
    return (1 - t * t * (3 - 2 * t))[None]


@cache
def face_regions(res: int = REGION_RES) -> dict[str, torch.Tensor]:
    """Soft region masks on the face tile, 1×res×res each, top-down (see module doc)."""
    lm = landmark_uvs()
    geo = tile_geometry("M_Face", res)
    pos, cov = geo["position"], geo["coverage"]
    x, y, z = pos[0:1], pos[1:2], pos[2:3]
    m3 = ict_model().neutral[ict_model().landmarks68]  # 68×3 cm
    smooth = lambda a, b, t: ((t - a) / (b - a)).clamp(0, 1).pow(2) * (3 - 2 * ((t - a) / (b - a)).clamp(0, 1))  # noqa: E731
    r: dict[str, torch.Tensor] = {}
    outer, inner = lm[48:60], lm[60:68]
    lips = soften(_polygon(outer, res), 0.08)
    r["lips"] = lips
    mouth_mid_v = float(inner[:, 1].mean())
    vv = 1 - (torch.arange(res) + 0.5) / res
    upper = (vv[:, None] > mouth_mid_v).float()[None].expand(1, res, res)
    r["upper_lip"], r["lower_lip"] = lips * upper, lips * (1 - upper)
    r["lip_line"] = soften(_polygon(torch.cat([inner, inner[:1]]), res, closed=False, width_uv=0.06 / CM_PER_UV), 0.05)
    brows = torch.zeros(1, res, res)
    for a, b in ((17, 22), (22, 27)):
        brows = torch.maximum(brows, _polygon(lm[a:b], res, closed=False, width_uv=0.75 / CM_PER_UV))
    r["brows"] = soften(brows, 0.12)
    lids, lash, under = torch.zeros(1, res, res), torch.zeros(1, res, res), torch.zeros(1, res, res)
    for e, b in ((36, 17), (42, 22)):
        eye = lm[e:e + 6]
        upper_arc, lower_arc = eye[[0, 1, 2, 3]], eye[[3, 4, 5, 0]]
        brow = lm[b:b + 5]
        lids = torch.maximum(lids, _polygon(torch.cat([upper_arc, brow.flip(0)]), res))
        lash = torch.maximum(lash, _polygon(upper_arc, res, closed=False, width_uv=0.09 / CM_PER_UV))
        shift = torch.tensor([0.0, -0.7 / CM_PER_UV])
        under = torch.maximum(under, _polygon(torch.cat([lower_arc, (lower_arc + shift).flip(0)]), res))
    r["upper_lids"] = soften(lids, 0.15)
    r["lash_line"] = soften(lash, 0.03)
    r["under_eyes"] = soften(under, 0.35)
    nose = _polygon(torch.cat([lm[27:28] + torch.tensor([-0.9, 0]) / CM_PER_UV, lm[31:36],
                               lm[27:28] + torch.tensor([0.9, 0]) / CM_PER_UV]), res)
    r["nose"] = soften(nose, 0.3)
    r["nose_tip"] = _disk(lm[30], 0.6, res, 0.8)
    r["alae"] = torch.maximum(_disk(lm[31], 0.45, res, 0.5), _disk(lm[35], 0.45, res, 0.5))
    cheek_c = [(lm[2] * 0.45 + lm[31] * 0.55), (lm[14] * 0.45 + lm[35] * 0.55)]
    r["cheeks"] = torch.maximum(_disk(cheek_c[0], 1.6, res, 1.8), _disk(cheek_c[1], 1.6, res, 1.8))
    r["chin"] = _disk(lm[8] + torch.tensor([0.0, 1.0 / CM_PER_UV]), 1.4, res, 1.2, aspect=0.8)
    # 3-D zones on the mean head (cm; y up, face towards +z)
    nose_bottom_y, brow_y = float(m3[33, 1]), float(m3[17:27, 1].mean())
    jaw_y, eye_y = float(m3[8, 1]), float(m3[36:48, 1].mean())
    side = x.abs()
    ears = smooth(7.0, 7.8, side) * smooth(3.5, 1.0, z)
    r["ears"] = ears * cov
    r["neck"] = smooth(jaw_y + 0.5, jaw_y - 2.0, y) * smooth(-1.0, 2.0, z) * cov
    front = smooth(6.8, 5.5, side) * cov
    below_nose = smooth(nose_bottom_y + 0.3, nose_bottom_y - 0.6, y)
    r["beard"] = (front * below_nose * (1 - soften(lips, 0.1)) * smooth(jaw_y - 4.5, jaw_y - 1.0, y)).clamp(0, 1)
    r["beard_cheek"] = front * smooth(eye_y - 2.8, eye_y - 4.2, y) * smooth(1.5, 2.8, side) * (1 - r["nose"])
    r["moustache"] = below_nose * smooth(float(m3[51, 1]) - 0.1, float(m3[51, 1]) + 0.4, y) * smooth(2.6, 1.6, side)
    r["forehead"] = smooth(brow_y + 0.6, brow_y + 1.6, y) * front
    r["temples"] = smooth(brow_y - 1.0, brow_y + 0.5, y) * smooth(4.5, 6.0, side) * (1 - ears)
    r["t_zone"] = torch.maximum(r["forehead"] * smooth(4.0, 2.0, side), r["nose"])
    r["height_above_brows_cm"] = (y - brow_y) * cov  # the hairline is drawn per subject from this
    r["coverage"] = cov
    return r
