"""UV textures of a procedural subject: albedo (sRGB), micronormal (tangent space, (n+1)/2), specular.

Every texel is a closed-form function of its UV coordinate and the subject (hash noise, no global
state), so the texture is generated in row tiles of ~1M texels: an 8192^2 set needs ~1 GB for the
result and a few hundred MB of temporaries. Row 0 of a returned map is the *top* (v ~ 1), like a
PNG; `to_raster` flips it for `uhrtex.raster` (row 0 = v ~ 0).

Skin colour follows a two-chromophore model: linear albedo = R0 * exp(-k_mel * melanin - k_hb *
haemoglobin) per RGB channel, with spatial melanin / haemoglobin maps carrying the regions (red
lips, cheeks and nose tip, darker under-eyes, freckles, moles, capillaries). Micro-geometry is one
height field in cm (pores, the skin's polygonal micro-furrows, fine wrinkles, hair strands), turned
into tangent-space normals by central differences. Features narrower than ~1 texel are faded out
(their mean colour kept), so a 512^2 set looks like a downsampled 4096^2 one instead of aliasing.
"""

from __future__ import annotations

import math

import torch

from uhrtex.captures.heads import regions as R
from uhrtex.captures.heads.noise import fbm, smoothstep, value_noise, worley
from uhrtex.captures.heads.subject import CM_PER_U, CM_PER_V, Subject, phi_of_u, theta_of_v
from uhrtex.common.io import linear_to_srgb

# Two-chromophore skin model (linear RGB), tuned so melanin 0.03 -> light, 0.6 -> very dark skin.
R0 = (0.72, 0.59, 0.45)
K_MEL = (3.2, 3.8, 4.3)
K_HB = (1.1, 4.5, 3.8)
TILE_TEXELS = 1 << 20
MAP_CHANNELS = {"albedo": 3, "micronormal": 3, "specular": 1}


def _fade(width_texels: float) -> float:
    """1 for features >= 1.5 texels wide, 0 below 0.5: unresolvable detail is dropped, not aliased."""
    t = min(max((width_texels - 0.5) / 1.0, 0.0), 1.0)
    return t * t * (3 - 2 * t)


def _rgb(c, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(c, dtype=like.dtype, device=like.device).view(3, 1, 1)


class _Fields:
    """Everything about one tile of texels: coordinates, regions, noise features."""

    def __init__(self, s: Subject, rows: torch.Tensor, res: int, dtype=torch.float32):
        self.s, self.res, self.rows = s, res, rows  # rows: global texel row indices (float64), top-down
        v = (1 - (rows + 0.5) / res).to(dtype)[:, None].expand(-1, res)
        u = ((torch.arange(res, device=rows.device, dtype=torch.float64) + 0.5) / res).to(dtype)[None, :].expand(rows.numel(), -1)
        self.phi, self.theta = phi_of_u(u), theta_of_v(v)
        self.qx, self.qy = u * CM_PER_U, v * CM_PER_V  # ~cm over the face
        self.texel_cm = CM_PER_U / res
        self.reg = R.regions(s, self.phi, self.theta)
        self.seed = s.seed * 1009

    def width(self, cm: float) -> float:
        return cm / self.texel_cm

    def smooth(self, fn, wavelength_cm: float) -> torch.Tensor:
        """fn(qx, qy) for a smooth field whose shortest wavelength is `wavelength_cm`.

        Evaluated on a coarser lattice of every F-th texel (F a power of two, >= 6 samples per
        wavelength) fixed in the *global* texel grid, then bilinearly upsampled: tiles still agree
        exactly, and low-frequency noise costs ~1/F^2 of a full evaluation at 4K.
        """
        F = 1
        while F < 16 and 2 * F * 6 <= wavelength_cm / self.texel_cm:
            F *= 2
        if F == 1:
            return fn(self.qx, self.qy)
        res, dev, dt = self.res, self.rows.device, self.qx.dtype
        k0 = int(self.rows.min()) // F
        kr = torch.arange(k0, int(self.rows.max()) // F + 2, device=dev, dtype=torch.float64) * F
        kc = torch.arange(0, (res - 1) // F + 2, device=dev, dtype=torch.float64) * F
        qy = ((1 - (kr + 0.5) / res) * CM_PER_V).to(dt)[:, None].expand(-1, kc.numel())
        qx = ((kc + 0.5) / res * CM_PER_U).to(dt)[None, :].expand(kr.numel(), -1)
        g = fn(qx, qy)
        pc = torch.arange(res, device=dev, dtype=torch.float64) / F
        j = pc.floor().long()
        g = torch.lerp(g[:, j], g[:, j + 1], (pc - j).to(dt))
        pr = self.rows / F - k0
        i = pr.floor().long()
        return torch.lerp(g[i], g[i + 1], (pr - i).to(dt)[:, None])


def _skin(f: _Fields):
    """-> (linear albedo 3xhxw, height cm hxw, specular hxw) of skin with all its features."""
    s, reg, qx, qy, sd = f.s, f.reg, f.qx, f.qy, f.seed
    # chromophore maps
    blotch = f.smooth(lambda x, y: fbm(x * 0.7, y * 0.7, sd + 1, octaves=5), 1 / 11.2)
    mel = s.melanin * (1 + 0.3 * blotch + 0.35 * s.under_eye * reg["under_eye"] + 0.15 * reg["hair"])
    hb = s.haemoglobin * (1 + 0.25 * f.smooth(lambda x, y: fbm(x * 0.4, y * 0.4, sd + 2, octaves=3), 1 / 1.6)
                          + 1.6 * s.cheek_redness * reg["cheeks"] + 1.1 * reg["nose_tip"] + 0.4 * reg["chin"]
                          + 3.2 * s.lip_tint * reg["lips"])  # fmt: skip
    # freckles: sparse 1-3 mm spots, densest on nose and cheeks
    fd, _, fid = worley(qx * 3.5, qy * 3.5, sd + 3)
    where = (0.3 + reg["cheeks"] + reg["nose"] + 0.5 * reg["forehead"]) * reg["face"] * (1 - reg["lips"])
    frad = 0.12 + 0.18 * torch.frac(fid * 7.31)
    freck = (fid < s.freckles * where.clamp(0, 1)).float() * smoothstep(frad, frad * 0.5, fd)
    mel = mel * (1 + 1.8 * freck)
    # moles: a handful of dark raised spots
    mole = torch.zeros_like(qx)
    for mp, mt, mr in s.moles:
        mole = torch.maximum(mole, smoothstep(mr, mr * 0.55, torch.sqrt((f.phi - mp) ** 2 + (f.theta - mt) ** 2)))
    mel = mel * (1 + 5.0 * mole) + 0.3 * mole
    # capillaries: thin meandering lines (ridged noise) on cheeks and nose wings
    if _fade(f.width(0.01)) > 0:  # (skipped where a texel is too coarse to show them)
        def warped(x, y):
            w = fbm(x * 0.8, y * 0.8, sd + 4, octaves=2)
            return value_noise(x * 1.6 + 1.5 * w, y * 1.6 - 1.5 * w, sd + 5)

        ridge = (f.smooth(warped, 1 / 4.0) - 0.5).abs()  # the line is thin, the field under it is smooth
        cap = smoothstep(0.012, 0.0, ridge) * _fade(f.width(0.01))  # ~0.08 mm wide
        hb = hb * (1 + 2.5 * cap * (0.4 * reg["cheeks"] + reg["nose_tip"] + 0.3 * reg["nose"]) * s.cheek_redness)
    # pores: ~8 per cm, bigger on nose and cheeks; mean-subtracted so low resolutions keep the colour
    pfreq = 8.0 / s.pore_size
    pfade = _fade(f.width(2 * 0.09 / pfreq))
    pore_mean = 2 * math.pi * 0.09**2 * 1.1
    pore = torch.zeros_like(qx)
    if pfade > 0:
        pd, _, pid = worley(qx * pfreq, qy * pfreq, sd + 6)
        psig = 0.09 * (1 + 0.6 * reg["nose"] + 0.4 * reg["cheeks"]) * (0.7 + 0.6 * pid)
        pore = torch.exp(-0.5 * (pd / psig) ** 2) * reg["face"] * (1 - reg["lips"]) * (1 - reg["eyes"])
    pore_c = pfade * pore + (1 - pfade) * pore_mean * reg["face"]
    mel = mel * (1 + 0.2 * (pore_c - pore_mean * reg["face"]))
    # micro-furrows: the skin's polygonal network (Worley cell edges), ~3 cells per cm, stretched
    furrow = torch.zeros_like(qx)
    if _fade(f.width(0.007)) > 0:
        ang = 0.6 * f.smooth(lambda x, y: fbm(x * 0.3, y * 0.3, sd + 7, octaves=2), 1 / 0.6)
        ca, sa = torch.cos(ang), torch.sin(ang)
        rx, ry = (ca * qx - sa * qy) * 3.0, (sa * qx + ca * qy) * 4.2
        d1, d2, _ = worley(rx, ry, sd + 8)
        furrow = smoothstep(0.07, 0.0, d2 - d1) * _fade(f.width(0.007))
    # fine wrinkles, deeper with age
    wr = _wrinkles(f) * (0.3 + 0.7 * s.age)
    # albedo
    alb = torch.stack([r0 * torch.exp(-km * mel - kh * hb) for r0, km, kh in zip(R0, K_MEL, K_HB)])
    alb = alb * (1 - 0.08 * furrow - 0.12 * wr.clamp(0, 1))
    alb = alb * (1 - 0.12 * s.under_eye * reg["under_eye"] * _rgb((0.2, 0.35, 0.0), alb))  # bluish-purple shade
    # height (cm): pores and furrows are pits, moles raised
    height = -0.004 * pore * pfade - 0.0018 * furrow - 0.01 * wr + 0.015 * mole
    bumps = f.smooth(lambda x, y: fbm(x * 4, y * 4, sd + 17, octaves=3), 1 / 16)
    height = height + 0.006 * bumps * reg["face"]  # mm-scale unevenness
    if _fade(f.width(0.02)) > 0:  # sub-millimetre bumpiness
        height = height + 0.0008 * fbm(qx * 25, qy * 25, sd + 9, octaves=2) * _fade(f.width(0.02))
    # specular: oily T-zone, moist lips, drier cheeks; pores and furrows catch less light
    spec = (0.42 + 0.28 * s.oiliness * reg["t_zone"] + 0.3 * reg["lips"] - 0.1 * reg["cheeks"] + 0.05 * blotch
            - 0.15 * pore_c - 0.08 * furrow - 0.1 * mole)  # fmt: skip
    return alb, height, spec


def _wrinkles(f: _Fields) -> torch.Tensor:
    """Fine wrinkle lines in [0, 1]: forehead, crow's feet, under-eye, nasolabial folds, lip lines."""
    s, reg, phi, th, sd = f.s, f.reg, f.phi, f.theta, f.seed
    wob = f.smooth(lambda x, y: fbm(x * 0.5, y * 0.5, sd + 10, octaves=3), 1 / 2.0)
    fine = _fade(f.width(0.05))  # lines ~0.5-1 mm wide: visible from ~512^2 up

    def lines(phase, sharp=6.0):
        return torch.cos(phase).clamp_min(0) ** sharp

    forehead = lines((th + 1.5 * wob) * (2 * math.pi / 2.6)) * reg["forehead"] * fine
    ex, ey = R.eye_local(s, phi, th)
    cx = ex - 7.0
    crow = lines(torch.atan2(ey, cx) * 9 + 2 * wob) * R.band(torch.sqrt(cx**2 + ey**2), 2.5, 6.0, 1.5) * (cx > -1).float() * fine
    under = lines((torch.sqrt(ex**2 + (ey - 1.0) ** 2) + wob) * (2 * math.pi / 1.3)) * reg["under_eye"] * fine
    # nasolabial fold: a crease from the nose wing to past the mouth corner
    ax, ay = 6.0 * s.nose_width, s.nose_tip_theta - 1.0
    bx, by = s.mouth_half_width + 2.5, s.mouth_theta - 3.0
    t = (((phi.abs() - ax) * (bx - ax) + (th - ay) * (by - ay)) / ((bx - ax) ** 2 + (by - ay) ** 2)).clamp(0, 1)
    dist = torch.sqrt((phi.abs() - ax - t * (bx - ax)) ** 2 + (th - ay - t * (by - ay)) ** 2)
    naso = torch.exp(-0.5 * (dist / 0.5) ** 2) * (0.4 + 0.6 * t)
    lipl = lines(phi * (2 * math.pi / 0.9) + 3 * wob, 4.0) * reg["lips"] * fine
    return (forehead + crow + under + 0.7 * naso + 0.6 * lipl).clamp(0, 1)


def _hair_and_eyes(f: _Fields, alb, height, spec):
    """Overlay scalp hair, brows, lashes, stubble and the eyes onto the skin."""
    s, reg, qx, qy, sd = f.s, f.reg, f.qx, f.qy, f.seed
    hc = _rgb(s.hair_colour, alb)
    # strands: noise stretched along the hair direction (down the scalp, sideways in the brows)
    sfade = _fade(f.width(0.012))
    strands = torch.full_like(qx, 0.5)
    if sfade > 0:
        strands = value_noise(qx * 40, qy * 2, sd + 11) * 0.6 + value_noise(qx * 90, qy * 4, sd + 12) * 0.4
        strands = 0.5 + (strands - 0.5) * sfade
    hair = reg["hair"] * (0.75 + 0.5 * f.smooth(lambda x, y: fbm(x * 0.8, y * 0.8, sd + 13, octaves=2), 1 / 1.6)).clamp(0, 1)
    bstrand = torch.full_like(qx, 0.5)
    if sfade > 0:
        bstrand = 0.5 + (value_noise((qx - 0.4 * qy) * 45, (qy + 0.4 * qx) * 5, sd + 14) - 0.5) * sfade
    brow = (reg["brows"] * (0.5 + 0.9 * bstrand)).clamp(0, 1)
    stubble = reg["beard"] * s.beard * 0.45
    if s.beard > 0 and _fade(f.width(0.02)) > 0:
        sd_, _, sid = worley(qx * 14, qy * 14, sd + 15)
        dots = smoothstep(0.25, 0.1, sd_) * (sid < 0.8).float() - 0.1  # ~zero-mean dots
        stubble = stubble + reg["beard"] * s.beard * dots * _fade(f.width(0.02))
    cover = torch.maximum(torch.maximum(hair, brow), stubble.clamp(0, 1))
    hair_alb = hc * (0.55 + 0.9 * strands)
    alb = torch.lerp(alb, hair_alb, cover)
    height = height + cover * 0.003 * (strands - 0.5) * 2
    spec = torch.lerp(spec, 0.22 + 0.2 * strands, torch.maximum(hair, brow))
    # eyes: sclera, iris, pupil, limbal ring; lash line along the lid edges
    ex, ey = R.eye_local(s, f.phi, f.theta)
    eye = reg["eyes"]
    rr = torch.sqrt(ex**2 + (ey - 0.35) ** 2)
    ang = torch.atan2(ey - 0.35, f.phi - torch.sign(f.phi) * s.eye_phi)
    fibres = 0.75 + 0.5 * value_noise(ang * 12, rr * 2, sd + 16)
    iris_rad = 2.3
    iris = smoothstep(iris_rad + 0.12, iris_rad - 0.12, rr)
    pupil = smoothstep(0.95, 0.8, rr)
    limbal = smoothstep(iris_rad - 0.6, iris_rad, rr) * iris
    sclera = _rgb((0.58, 0.52, 0.48), alb) * (1 - 0.25 * smoothstep(4.0, 6.5, ex.abs()) * _rgb((0.0, 0.5, 0.5), alb))
    eye_alb = torch.lerp(sclera, _rgb(s.iris_colour, alb) * fibres * (1 - 0.6 * limbal), iris)
    eye_alb = torch.lerp(eye_alb, _rgb((0.01, 0.01, 0.01), alb), pupil)
    alb = torch.lerp(alb, eye_alb, eye)
    spec = torch.lerp(spec, torch.full_like(spec, 0.95), eye)
    height = height * (1 - eye)
    w = 6.5
    xs = (1 - (ex / w) ** 2).clamp_min(0)
    lash = torch.exp(-0.5 * ((ey - (2.3 * xs**0.8 - 0.2 * ex / w)) / 0.28) ** 2) * (xs > 0)
    lash = lash + 0.4 * torch.exp(-0.5 * ((ey + 1.6 * xs**0.9) / 0.2) ** 2) * (xs > 0)
    alb = torch.lerp(alb, hc * 0.3 + 0.005, lash.clamp(0, 1) * 0.9)
    # nostrils: dark openings under the tip
    nost = R.gauss(f.phi.abs(), f.theta, 3.2 * s.nose_width, s.nose_tip_theta - 3.2, 1.0, 0.7)
    alb = alb * (1 - 0.8 * nost)
    return alb, height, spec


def _tile(s: Subject, res: int, r0: int, r1: int, device, dtype=torch.float32):
    """Maps for texel rows r0..r1 (top-down) -> (albedo sRGB 3xhxW, micronormal 3xhxW, specular 1xhxW)."""
    rows = torch.arange(r0 - 1, r1 + 1, device=device, dtype=torch.float64)  # 1-row halo for the gradient
    f = _Fields(s, rows, res, dtype)
    alb, height, spec = _skin(f)
    alb, height, spec = _hair_and_eyes(f, alb, height, spec)
    # tangent-space normal from the height field: x along +u, y along +v (OpenGL / Blender convention)
    hp = torch.nn.functional.pad(height[None, None], (1, 1, 0, 0), mode="replicate")[0, 0]
    dhdx = (hp[1:-1, 2:] - hp[1:-1, :-2]) / (2 * CM_PER_U / res)
    dhdy = (height[:-2] - height[2:]) / (2 * CM_PER_V / res)  # rows go down in v
    inv = torch.rsqrt(dhdx * dhdx + dhdy * dhdy + 1)
    n = torch.stack([-dhdx * inv, -dhdy * inv, inv])
    inner = slice(1, -1)
    return linear_to_srgb(alb[:, inner].clamp(0, 1)), (n * 0.5 + 0.5).clamp(0, 1), spec[inner].clamp(0, 1)[None]


def make_textures(subject: Subject | int, res: int = 1024, device="cpu", dtype=torch.float32, tile_texels: int = TILE_TEXELS) -> dict[str, torch.Tensor]:
    """{albedo (sRGB), micronormal ((n+1)/2), specular}: C x res x res, row 0 = top (v ~ 1), `dtype`.

    Pass dtype=torch.float16 to halve the memory of very large sets (8192^2: 0.9 GB instead of 1.8 GB).
    """
    s = subject if isinstance(subject, Subject) else Subject.from_seed(int(subject))
    if res < 8:
        raise ValueError(f"texture resolution must be >= 8, got {res}")
    out = {k: torch.empty(c, res, res, device=device, dtype=dtype) for k, c in MAP_CHANNELS.items()}
    step = max(1, tile_texels // res)
    for r0 in range(0, res, step):
        r1 = min(res, r0 + step)
        for k, m in zip(MAP_CHANNELS, _tile(s, res, r0, r1, device)):
            out[k][:, r0:r1] = m.to(dtype)
    return out


def region_maps(subject: Subject | int, res: int = 256, device="cpu") -> dict[str, torch.Tensor]:
    """The soft region masks at texel centres (1 x res x res each, row 0 = top) — for tests and figures."""
    s = subject if isinstance(subject, Subject) else Subject.from_seed(int(subject))
    c = (torch.arange(res, device=device, dtype=torch.float32) + 0.5) / res
    v, u = torch.meshgrid(1 - c, c, indexing="ij")
    return {k: m[None] for k, m in R.regions(s, phi_of_u(u), theta_of_v(v)).items()}


def to_raster(tex: torch.Tensor) -> torch.Tensor:
    """C x H x W (row 0 = top) -> [1, H, W, C] with row 0 = v ~ 0, as `uhrtex.raster.texture` wants."""
    return tex.flip(-2).permute(1, 2, 0)[None].contiguous()


def stacked_raster(textures: dict[str, torch.Tensor]) -> torch.Tensor:
    """[1, R, R, 7] albedo|micronormal|specular (MAP_CHANNELS order) with row 0 = v ~ 0, for `uhrtex.raster.texture`."""
    return to_raster(torch.cat([textures[k].float() for k in MAP_CHANNELS]))
