"""Skin textures on ICT's face tile (and its scalp/neck tile): albedo (sRGB), micronormal ((n+1)/2), specular.

Every texel is a closed-form function of its UV coordinate, the region maps (`layout.face_regions`) and the subject
(hash noise, no global state), so a texture is generated in row tiles: an 8192² set needs ~1 GB for the result and
a few hundred MB of temporaries. Row 0 of a returned map is the top (v ≈ 1), like a PNG. Distances are in cm on the
skin (`layout.CM_PER_UV`); heights in cm. Features narrower than ~1 texel fade out with their mean colour kept, so a
512² set looks like a downsampled 4096² one instead of aliasing.

Colour: the subject's cheek tone (measured ISSA facial colours, `subject.py`) times the ISSA per-region gains
(forehead, chin, nose tip, neck), a haemoglobin field (cheeks, nose, ears, lips, capillaries) and a melanin field
(mottling, freckles, moles, under-eye shadow), with brows, lashes, stubble and the hairline painted over it.
Micro-geometry (one height field): pores whose density and size follow the region and age, the polygonal
micro-relief, fine wrinkles that deepen with age (forehead, crow's feet, under-eyes, lips), nasolabial folds, and
stubble. Specular: F0 per subject, raised by sebum on the T-zone and on the lips, lowered in pores and hair.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from uhrtex.captures.heads import layout as L
from uhrtex.captures.heads.noise import fbm, smoothstep, value_noise, worley
from uhrtex.captures.heads.subject import Subject
from uhrtex.common.imaging import linear_to_srgb

TILE_TEXELS = 1 << 20
MAP_CHANNELS = {"albedo": 3, "micronormal": 3, "specular": 1}
F0_PER_SPECULAR = 0.08  # the renderers' F0 = 0.08 · specular (render/shading.py)
# ISSA median colour of each site relative to the cheek, same subjects (docs/heads_and_rendering.md)
REGION_GAIN = {"forehead": (0.93, 0.90, 0.87), "chin": (0.98, 0.92, 0.93), "nose_tip": (1.01, 0.96, 0.93),
               "neck": (0.93, 0.98, 0.87)}


def _fade(width_texels: float) -> float:
    """1 for features >= 1.5 texels wide, 0 below 0.5: unresolvable detail is dropped, not aliased."""
    t = min(max((width_texels - 0.5) / 1.0, 0.0), 1.0)
    return t * t * (3 - 2 * t)


def _rgb(c, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(c, dtype=like.dtype, device=like.device).view(3, 1, 1)


class _Fields:
    """One tile of texels: coordinates (cm), region maps, and a smooth-noise helper."""

    def __init__(self, s: Subject, rows: torch.Tensor, res: int):
        self.s, self.res, self.rows = s, res, rows  # rows: global texel rows (float64), top-down
        dev = rows.device
        v = (1 - (rows + 0.5) / res).float()[:, None].expand(-1, res)
        u = ((torch.arange(res, device=dev, dtype=torch.float64) + 0.5) / res).float()[None, :].expand(rows.numel(), -1)
        self.u, self.v = u, v
        self.qx, self.qy = u * L.CM_PER_UV, v * L.CM_PER_UV
        self.texel_cm = L.CM_PER_UV / res
        self.reg = self._regions()
        self.seed = s.seed * 1009

    def _regions(self) -> dict[str, torch.Tensor]:
        """The region maps' rows of this tile, bilinear from REGION_RES."""
        base = L.face_regions(L.REGION_RES)
        y = ((self.rows + 0.5) / self.res * L.REGION_RES - 0.5).clamp(0, L.REGION_RES - 1)
        x = ((torch.arange(self.res, dtype=torch.float64, device=self.rows.device) + 0.5) / self.res * L.REGION_RES - 0.5
             ).clamp(0, L.REGION_RES - 1)
        y0, x0 = y.floor().long(), x.floor().long()
        y1, x1 = (y0 + 1).clamp_max(L.REGION_RES - 1), (x0 + 1).clamp_max(L.REGION_RES - 1)
        wy, wx = (y - y0).float()[:, None], (x - x0).float()[None, :]
        out = {}
        for k, m in base.items():
            m = m[0].to(self.rows.device)
            top = torch.lerp(m[y0][:, x0], m[y0][:, x1], wx)
            bot = torch.lerp(m[y1][:, x0], m[y1][:, x1], wx)
            out[k] = torch.lerp(top, bot, wy)
        out["coverage"] = (out["coverage"] > 0.5).float()
        return out

    def width(self, cm: float) -> float:
        return cm / self.texel_cm

    def smooth(self, fn, wavelength_cm: float) -> torch.Tensor:
        """fn(qx, qy) for a smooth field whose shortest wavelength is `wavelength_cm`: evaluated on every F-th
        texel of the global grid (F a power of two, >= 6 samples per wavelength) and bilinearly upsampled, so
        tiles agree exactly and low-frequency noise costs ~1/F² of a full evaluation."""
        F_ = 1
        while F_ < 16 and 2 * F_ * 6 <= wavelength_cm / self.texel_cm:
            F_ *= 2
        if F_ == 1:
            return fn(self.qx, self.qy)
        res, dev = self.res, self.rows.device
        k0 = int(self.rows.min()) // F_
        kr = torch.arange(k0, int(self.rows.max()) // F_ + 2, device=dev, dtype=torch.float64) * F_
        kc = torch.arange(0, (res - 1) // F_ + 2, device=dev, dtype=torch.float64) * F_
        qy = ((1 - (kr + 0.5) / res) * L.CM_PER_UV).float()[:, None].expand(-1, kc.numel())
        qx = ((kc + 0.5) / res * L.CM_PER_UV).float()[None, :].expand(kr.numel(), -1)
        g = fn(qx, qy)
        pc = torch.arange(res, device=dev, dtype=torch.float64) / F_
        j = pc.floor().long()
        g = torch.lerp(g[:, j], g[:, j + 1], (pc - j).float())
        pr = self.rows / F_ - k0
        i = pr.floor().long()
        return torch.lerp(g[i], g[i + 1], (pr - i).float()[:, None])


def _lines(phase: torch.Tensor, sharp: float = 6.0) -> torch.Tensor:
    return torch.cos(phase).clamp_min(0) ** sharp


def _wrinkles(f: _Fields) -> torch.Tensor:
    """Fine wrinkle lines in [0, 1] (forehead, crow's feet, under-eyes, lips), ~0.5-1 mm wide; depth set by age."""
    reg, sd = f.reg, f.seed
    lm = L.landmark_uvs() * L.CM_PER_UV
    wob = f.smooth(lambda x, y: fbm(x * 0.5, y * 0.5, sd + 10, octaves=3), 2.0)
    fine = _fade(f.width(0.05))
    forehead = _lines((f.qy + 0.6 * wob) * (2 * math.pi / 1.1)) * reg["forehead"] * fine
    crow = torch.zeros_like(f.qx)
    for corner, sign in ((lm[36], -1.0), (lm[45], 1.0)):  # outer eye corners
        dx, dy = (f.qx - corner[0]) * sign, f.qy - corner[1]
        r = torch.sqrt(dx * dx + dy * dy)
        band = smoothstep(0.2, 0.6, r) * smoothstep(2.2, 1.2, r) * (dx > -0.1).float()
        crow = crow + _lines(torch.atan2(dy, dx.clamp_min(1e-3)) * 9 + 2 * wob) * band * fine
    under = _lines((f.qy + 0.8 * wob) * (2 * math.pi / 0.35)) * reg["under_eyes"] * fine
    lipl = _lines(f.qx * (2 * math.pi / 0.22) + 3 * wob, 4.0) * reg["lips"] * fine
    return (forehead + crow + 0.7 * under + 0.6 * lipl).clamp(0, 1)


def _nasolabial(f: _Fields) -> torch.Tensor:
    """A crease from each nose wing to past the mouth corner, [0, 1]."""
    lm = L.landmark_uvs() * L.CM_PER_UV
    out = torch.zeros_like(f.qx)
    for ala, corner in ((lm[31], lm[48]), (lm[35], lm[54])):
        a = ala + (ala - lm[33]) * 0.3
        b = corner + (corner - lm[51]) * 0.25 - torch.tensor([0.0, 0.8])
        ab = b - a
        t = (((f.qx - a[0]) * ab[0] + (f.qy - a[1]) * ab[1]) / float(ab.dot(ab))).clamp(0, 1)
        d = torch.sqrt((f.qx - a[0] - t * ab[0]) ** 2 + (f.qy - a[1] - t * ab[1]) ** 2)
        out = out + torch.exp(-0.5 * (d / 0.12) ** 2) * (0.3 + 0.7 * torch.sin(t * math.pi))
    return out.clamp(0, 1)


def _skin(f: _Fields):
    """-> (linear albedo 3×h×w, height cm h×w, specular h×w)."""
    s, reg, qx, qy, sd = f.s, f.reg, f.qx, f.qy, f.seed
    age = (s.age - 18) / 57  # 0 .. 1
    # melanin (multiplies every channel a little more in blue) and haemoglobin (takes green and blue) fields
    blotch = f.smooth(lambda x, y: fbm(x * 0.7, y * 0.7, sd + 1, octaves=5), 1 / 11.2)
    mel = 0.09 * blotch + 0.25 * s.under_eye * reg["under_eyes"] + 0.1 * reg["upper_lids"]
    hb = (0.08 * f.smooth(lambda x, y: fbm(x * 0.4, y * 0.4, sd + 2, octaves=3), 1 / 1.6)
          + 0.22 * s.redness * reg["cheeks"] + 0.16 * reg["nose_tip"] + 0.2 * reg["alae"] * s.redness
          + 0.12 * reg["ears"] + 0.06 * reg["chin"])
    # freckles (fair skin): sparse 1-3 mm spots, densest on the nose and cheeks
    # (spots are drawn in UV space: kept off the neck and ears, where the tile is stretched)
    face = reg["coverage"] * (1 - reg["neck"]) * (1 - reg["ears"])
    fd, _, fid = worley(qx * 4.0, qy * 4.0, sd + 3)
    where = (0.2 + reg["cheeks"] + reg["nose"] + 0.4 * reg["forehead"]).clamp(0, 1) * (1 - reg["lips"]) * face
    frad = (0.05 + 0.07 * torch.frac(fid * 7.31)) * 4.0  # 1-2.4 mm spots, in cell units
    mel = mel + 0.3 * (fid < 0.5 * s.freckles * where).float() * smoothstep(frad, frad * 0.5, fd)
    # age spots (solar lentigines): a few, on older skin
    ad, _, aid = worley(qx * 1.2, qy * 1.2, sd + 23)
    mel = mel + 0.25 * (aid < 0.08 * max(0.0, age - 0.5)).float() * smoothstep(0.35, 0.15, ad) * face
    # moles: a few dark, slightly raised spots
    mole = torch.zeros_like(qx)
    for mu, mv, mr in s.moles:
        d = torch.sqrt((qx - mu * L.CM_PER_UV) ** 2 + (qy - mv * L.CM_PER_UV) ** 2)
        mole = torch.maximum(mole, smoothstep(mr, mr * 0.6, d))
    # capillaries: thin meandering red lines (ridged noise) on the nose wings and cheeks
    if _fade(f.width(0.01)) > 0:
        def warped(x, y):
            w = fbm(x * 0.8, y * 0.8, sd + 4, octaves=2)
            return value_noise(x * 1.6 + 1.5 * w, y * 1.6 - 1.5 * w, sd + 5)

        ridge = (f.smooth(warped, 1 / 4.0) - 0.5).abs()
        cap = smoothstep(0.012, 0.0, ridge) * _fade(f.width(0.01))
        hb = hb + 0.35 * cap * (0.4 * reg["cheeks"] + reg["alae"] + 0.3 * reg["nose"]) * s.redness
    # pores: density by region (nose > forehead, chin > cheeks > neck), bigger with age
    pores = torch.zeros_like(qx)
    pore_mean = torch.zeros_like(qx)
    for freq, weight in ((13.0, 0.6 * reg["nose"] + 0.5 * reg["t_zone"] + 0.4 * reg["chin"]),
                         (8.0, (1 - 0.6 * reg["nose"] - 0.4 * reg["chin"]).clamp(0, 1) * (1 - 0.6 * reg["neck"]))):
        rad = 0.0045 * s.pore_scale * (13.0 / freq) ** 0.5  # cm: 0.06-0.14 mm openings
        pf = _fade(f.width(2 * rad))
        area = math.pi * (1.5 * rad) ** 2 * freq * freq * 0.7  # the mean of the pore profile over the skin
        if pf > 0:
            pd, _, pid = worley(qx * freq, qy * freq, sd + 6 + int(freq))
            r = rad * (0.6 + 0.8 * pid) * (1 + 0.3 * reg["cheeks"] * age)
            p = torch.exp(-0.5 * (pd / freq / r) ** 2) * (pid < 0.7).float()
            pores = pores + weight * (pf * p + (1 - pf) * area)
        else:
            pores = pores + weight * area
        pore_mean = pore_mean + weight * area
    skin = reg["coverage"] * (1 - reg["lips"])
    pores = pores * skin
    mel = mel + 0.15 * (pores - pore_mean * skin)
    # micro-relief: the polygonal furrow network (Worley cell edges), ~0.3-0.5 mm cells, deeper with age
    furrow = torch.zeros_like(qx)
    if _fade(f.width(0.006)) > 0:
        ang = 0.6 * f.smooth(lambda x, y: fbm(x * 0.3, y * 0.3, sd + 7, octaves=2), 1 / 0.6)
        ca, sa = torch.cos(ang), torch.sin(ang)
        rx, ry = (ca * qx - sa * qy) * 22.0, (sa * qx + ca * qy) * 28.0
        d1, d2, _ = worley(rx, ry, sd + 8)
        furrow = smoothstep(0.08, 0.0, d2 - d1) * _fade(f.width(0.006)) * reg["coverage"]
    wr = _wrinkles(f) * (0.15 + 0.85 * age)
    naso = _nasolabial(f) * (0.3 + 0.7 * age)
    # albedo
    tone = _rgb(s.tone, qx)
    gain = torch.ones_like(tone) + 0 * qx
    for name, g in REGION_GAIN.items():
        gain = gain * (1 + (_rgb(g, qx) - 1) * reg[name])
    alb = tone * gain * torch.exp(-mel * _rgb((0.8, 1.0, 1.15), qx)) * torch.exp(-hb * _rgb((0.05, 1.0, 0.8), qx))
    lip = tone * _rgb((0.95, 0.62, 0.68), qx) * (1 + 0.08 * reg["lower_lip"]) * (1 - 0.25 * (s.lip_tint - 1))
    alb = torch.lerp(alb, lip, reg["lips"] * (1 - reg["lip_line"]))
    alb = alb * (1 - 0.55 * reg["lip_line"])  # where the lips meet: a shadowed crease
    alb = alb * (1 - 0.6 * mole.unsqueeze(0) * _rgb((1.0, 1.1, 1.15), qx))
    alb = alb * (1 - 0.06 * furrow - 0.1 * wr.clamp(0, 1))
    # height (cm): pores and furrows are pits, wrinkles and folds grooves, moles raised
    height = -0.006 * pores - (0.0015 + 0.003 * age) * furrow - 0.012 * wr - 0.05 * naso + 0.01 * mole
    bumps = f.smooth(lambda x, y: fbm(x * 4, y * 4, sd + 17, octaves=3), 1 / 16)
    height = height + 0.005 * bumps * reg["coverage"]
    if _fade(f.width(0.02)) > 0:
        height = height + 0.0006 * fbm(qx * 25, qy * 25, sd + 9, octaves=2) * _fade(f.width(0.02))
    # specular (F0 = 0.08 · s): the subject's skin F0, sebum on the T-zone, moist lips; pores catch less light
    spec = (s.f0 / F0_PER_SPECULAR) * (1 + 0.45 * s.oiliness * reg["t_zone"] + 0.35 * reg["lips"] - 0.1 * reg["cheeks"]
                                       + 0.08 * blotch - 0.8 * (pores - pore_mean * skin) - 0.15 * furrow - 0.2 * mole)
    return alb, height, spec


def _hair(f: _Fields, alb, height, spec):
    """Brows, lashes, stubble and the hairline over the skin."""
    s, reg, qx, qy, sd = f.s, f.reg, f.qx, f.qy, f.seed
    hc = _rgb(s.hair, alb)
    sfade = _fade(f.width(0.008))
    # brows: strokes along the brow, sparser at the tail
    bstrand = torch.full_like(qx, 0.5)
    if sfade > 0:
        bstrand = 0.5 + (value_noise((qx - 0.35 * qy) * 60, (qy + 0.35 * qx) * 6, sd + 14) - 0.5) * sfade
    brow = (reg["brows"] * s.brow_density * (0.45 + 1.0 * bstrand)).clamp(0, 1)
    # stubble: 20-80 hairs per cm² (upper lip densest), each ~0.15 mm, plus the shaved hairs' shadow under the skin
    zone = torch.maximum(reg["beard"], reg["beard_cheek"] * 0.8)
    zone = torch.maximum(zone, reg["moustache"]) * reg["coverage"]
    stubble = zone * s.beard * 0.08
    if s.beard > 0 and _fade(f.width(0.015)) > 0:
        freq = 6.0 + 3.0 * reg["moustache"]  # cells per cm
        d, _, hid = worley(qx * freq, qy * freq, sd + 15)
        dots = smoothstep(0.012 * freq * 1.3, 0.006 * freq, d) * (hid < 0.85).float()
        stubble = stubble + zone * s.beard * 0.8 * (dots - 0.1) * _fade(f.width(0.015))
    # the hairline: scalp hair above it (short hair seen from the front), soft and sparse at the edge
    above = reg["height_above_brows_cm"] - s.hairline_cm - 0.6 * f.smooth(lambda x, y: fbm(x, y, sd + 18), 1.0)
    strands = torch.full_like(qx, 0.5)
    if sfade > 0:
        strands = 0.5 + (value_noise(qx * 70, qy * 5, sd + 11) * 0.6 + value_noise(qx * 140, qy * 9, sd + 12) * 0.4
                         - 0.5) * sfade
    scalp = smoothstep(-0.2, 0.8, above) * s.hair_amount * reg["coverage"] * (1 - reg["ears"]) * (0.8 + 0.4 * strands)
    temples_hair = reg["temples"] * smoothstep(-1.5, 0.5, above + 1.0) * s.hair_amount
    scalp = torch.maximum(scalp, temples_hair).clamp(0, 1)
    cover = torch.maximum(scalp, stubble.clamp(0, 1))
    alb = torch.lerp(alb, hc * (0.6 + 0.8 * strands), cover)
    brow_c = torch.lerp(hc, _rgb((0.03, 0.02, 0.015), hc), 0.35)  # brows stay darker than greying hair
    alb = torch.lerp(alb, brow_c * (0.6 + 0.8 * bstrand), brow)
    alb = alb * (1 - 0.12 * s.beard * zone * _rgb((1.0, 1.05, 1.1), alb) * (0.25 if s.hair == (0.32, 0.31, 0.30) else 1))
    height = height + cover * 0.002 * (strands - 0.5) * 2
    spec = torch.lerp(spec, 0.25 + 0.2 * strands, torch.maximum(scalp, brow))
    # lashes: the upper lid margin, dark, with a thin lower line
    alb = torch.lerp(alb, hc * 0.3 + 0.004, (reg["lash_line"] * 0.9).clamp(0, 1))
    return alb, height, spec


def _tile(s: Subject, res: int, r0: int, r1: int, device):
    """Maps for texel rows r0..r1 (top-down) -> (albedo sRGB 3×h×W, micronormal 3×h×W, specular 1×h×W)."""
    rows = torch.arange(r0 - 1, r1 + 1, device=device, dtype=torch.float64)  # 1-row halo for the gradient
    f = _Fields(s, rows, res)
    alb, height, spec = _hair(f, *_skin(f))
    texel = L.CM_PER_UV / res
    hp = F.pad(height[None, None], (1, 1, 0, 0), mode="replicate")[0, 0]
    dhdx = (hp[1:-1, 2:] - hp[1:-1, :-2]) / (2 * texel)
    dhdy = (height[:-2] - height[2:]) / (2 * texel)  # rows go down in v
    inv = torch.rsqrt(dhdx * dhdx + dhdy * dhdy + 1)
    n = torch.stack([-dhdx * inv, -dhdy * inv, inv])
    inner = slice(1, -1)
    return linear_to_srgb(alb[:, inner].clamp(0, 1)), (n * 0.5 + 0.5).clamp(0, 1), spec[inner].clamp(0, 1)[None]


def face_textures(s: Subject, res: int, device="cpu", dtype=torch.float32, tile_texels: int = TILE_TEXELS
                  ) -> dict[str, torch.Tensor]:
    """The face tile's {albedo (sRGB), micronormal ((n+1)/2), specular}: C×res×res, row 0 = top."""
    if res < 8:
        raise ValueError(f"texture resolution must be >= 8, got {res}")
    out = {k: torch.empty(c, res, res, device=device, dtype=dtype) for k, c in MAP_CHANNELS.items()}
    step = max(1, tile_texels // res)
    for r0 in range(0, res, step):
        r1 = min(res, r0 + step)
        for k, m in zip(MAP_CHANNELS, _tile(s, res, r0, r1, device)):
            out[k][:, r0:r1] = m.to(dtype)
    return out
