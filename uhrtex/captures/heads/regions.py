"""Soft facial regions and the shape displacement, as functions of (phi, theta) in degrees.

Geometry (mesh.py) and textures (textures.py) both read these, so the lips' colour sits on the lips'
bulge and the eyes' texture on the eyeballs for every subject.
"""

from __future__ import annotations

import torch

from uhrtex.captures.heads.noise import smoothstep
from uhrtex.captures.heads.subject import Subject


def gauss(phi, theta, p0: float, t0: float, sp: float, st: float) -> torch.Tensor:
    return torch.exp(-0.5 * (((phi - p0) / sp) ** 2 + ((theta - t0) / st) ** 2))


def band(x, lo: float, hi: float, soft: float) -> torch.Tensor:
    """~1 inside [lo, hi], smooth falloff of width `soft` outside."""
    return smoothstep(lo - soft, lo, x) * (1 - smoothstep(hi, hi + soft, x))


def eye_local(s: Subject, phi, theta):
    """Per-eye local coordinates (both eyes folded onto one by |phi|): (ex, ey) in degrees."""
    return phi.abs() - s.eye_phi, theta - s.eye_theta


def eye_opening(s: Subject, phi, theta, soft: float = 0.35) -> torch.Tensor:
    """Almond-shaped visible eyeball (sclera + iris), soft edge ~`soft` degrees."""
    ex, ey = eye_local(s, phi, theta)
    w = 6.5
    xs = (1 - (ex / w) ** 2).clamp_min(0)
    upper, lower = 2.3 * xs**0.8 - 0.2 * ex / w, -1.6 * xs**0.9
    inside = torch.minimum(upper - ey, ey - lower)
    return smoothstep(-soft, soft, inside) * (xs > 0)


def lips(s: Subject, phi, theta):
    """(upper, lower) vermilion masks and the mouth-line distance (degrees)."""
    w = s.mouth_half_width
    lx = phi / w
    xs = (1 - lx**2).clamp_min(0)
    line = s.mouth_theta + 0.6 * xs  # the mouth line bows up a little at the centre
    ly = theta - line
    bow = 0.35 * torch.exp(-0.5 * (phi / 1.2) ** 2)  # cupid's bow dip at the philtrum
    top = s.lip_fullness * (2.3 * xs**0.6 - bow)
    bottom = -s.lip_fullness * 2.9 * xs**0.7
    upper = smoothstep(-0.35, 0.2, top - ly) * smoothstep(-0.05, 0.15, ly) * (xs > 0)
    lower = smoothstep(-0.4, 0.25, ly - bottom) * smoothstep(-0.05, 0.15, -ly) * (xs > 0)
    return upper, lower, ly


def brows(s: Subject, phi, theta) -> torch.Tensor:
    """Eyebrow hair density 0..1 (arched band above each eye)."""
    bx = phi.abs() - s.eye_phi + 1.0
    arch = s.brow_theta + 1.8 * (1 - (bx / 11.0) ** 2) - 0.6
    thick = 1.6 * (1 - smoothstep(-2.0, 11.0, bx) * 0.55)
    across = band(theta - arch, -thick, thick, 0.8)
    along = band(bx, -9.0, 10.5, 2.5)
    return across * along


def hair(s: Subject, phi, theta) -> torch.Tensor:
    """Scalp hair density 0..1: above the hairline, down the sides and the back of the head."""
    ap = phi.abs()
    # hairline height: the subject's at the front, dropping at the temples to the sideburns and the nape
    line = s.hairline_theta - 4.0 * smoothstep(20.0, 45.0, ap) - 28.0 * smoothstep(45.0, 80.0, ap)
    line = line - 35.0 * smoothstep(95.0, 140.0, ap)
    scalp = smoothstep(-2.5, 2.5, theta - line)
    # sideburns end above the jaw; ear region stays skin
    return scalp * s.hair_amount


def beard_region(s: Subject, phi, theta) -> torch.Tensor:
    ap = phi.abs()
    lower = band(theta, -75.0, s.nose_tip_theta - 4.0, 3.0) * band(ap, -1.0, 80.0, 6.0)
    cheeks_clear = 1 - gauss(ap, theta, 28.0, -14.0, 13.0, 8.0)
    lips_u, lips_l, _ = lips(s, phi, theta)
    return (lower * cheeks_clear * (1 - lips_u - lips_l).clamp_min(0)).clamp(0, 1)


def regions(s: Subject, phi, theta) -> dict[str, torch.Tensor]:
    """Named soft masks in [0, 1] used for colour, specular and the region tests."""
    ap = phi.abs()
    up, lo, _ = lips(s, phi, theta)
    eye = eye_opening(s, phi, theta)
    ex, ey = eye_local(s, phi, theta)
    face = band(ap, -1.0, 62.0, 10.0) * band(theta, -55.0, s.hairline_theta, 6.0)
    return {
        "face": face,
        "lips": (up + lo).clamp(0, 1),
        "eyes": eye,
        "brows": brows(s, phi, theta),
        "hair": hair(s, phi, theta),
        "cheeks": gauss(ap, theta, 30.0, s.nose_tip_theta + 2.0, 9.0, 7.0),
        "nose": gauss(phi, theta, 0.0, (s.eye_theta + s.nose_tip_theta) / 2, 5.0, 9.0),
        "nose_tip": gauss(phi, theta, 0.0, s.nose_tip_theta, 4.5, 3.0),
        "forehead": band(theta, s.brow_theta + 2.0, s.hairline_theta - 1.0, 4.0) * band(ap, -1.0, 35.0, 10.0),
        "t_zone": (band(theta, s.brow_theta, s.hairline_theta, 4.0) * band(ap, -1.0, 14.0, 8.0)
                   + gauss(phi, theta, 0.0, (s.eye_theta + s.nose_tip_theta) / 2, 5.5, 11.0)).clamp(0, 1),
        "under_eye": gauss(ex, ey, 0.0, -3.6, 5.0, 1.8) * (1 - eye),
        "chin": gauss(phi, theta, 0.0, s.chin_theta, 11.0, 6.0),
        "beard": beard_region(s, phi, theta),
    }  # fmt: skip


def displacement(s: Subject, phi, theta) -> torch.Tensor:
    """Outward displacement (world units) of the face features on top of the base head shape."""
    ap = phi.abs()
    ex, ey = eye_local(s, phi, theta)
    d = -0.11 * gauss(ex, ey, 0.0, 0.0, 8.0, 6.0)  # eye sockets
    d += 0.06 * gauss(ex, ey, 0.0, -0.3, 5.0, 3.2)  # eyeballs / lids
    d += 0.03 * s.brow_ridge * gauss(ex, theta, 0.0, s.brow_theta + 1.0, 14.0, 3.5)  # brow ridge
    d += 0.015 * gauss(phi, theta, 0.0, s.brow_theta - 1.0, 6.0, 4.0)  # glabella
    d += 0.05 * s.cheekbones * gauss(ap, theta, 30.0, s.eye_theta - 11.0, 10.0, 7.0)
    d -= 0.02 * gauss(ap, theta, 30.0, s.mouth_theta - 3.0, 8.0, 8.0)  # below the cheekbones
    # nose: a ridge from the bridge (between the eyes) growing to the tip, sharp cut below the tip
    tb, tt = s.eye_theta + 1.0, s.nose_tip_theta
    frac = ((tb - theta) / (tb - tt)).clamp(0, 1)
    below = torch.exp(-0.5 * ((theta - tt).clamp(max=0) / 2.2) ** 2)
    above = torch.exp(-0.5 * ((theta - tb).clamp(min=0) / 4.0) ** 2)
    width = s.nose_width * (2.6 + 2.2 * frac**2)
    d += s.nose_size * (0.03 + 0.2 * frac**1.6) * below * above * torch.exp(-0.5 * (phi / width) ** 2)
    d += 0.06 * s.nose_size * gauss(ap, theta, 5.0 * s.nose_width, tt - 1.5, 2.6, 2.2)  # alae
    d -= 0.03 * gauss(ap, theta, 3.2 * s.nose_width, tt - 3.2, 1.2, 0.9)  # nostrils
    # lips and mouth line
    up, lo, ly = lips(s, phi, theta)
    d += 0.05 * s.lip_fullness * gauss(phi, theta, 0.0, s.mouth_theta + 1.6, s.mouth_half_width * 0.7, 1.8)
    d += 0.06 * s.lip_fullness * gauss(phi, theta, 0.0, s.mouth_theta - 2.2, s.mouth_half_width * 0.6, 2.2)
    d += 0.03 * gauss(phi, theta, 0.0, s.mouth_theta, s.mouth_half_width * 1.3, 6.0)  # muzzle
    d -= 0.025 * torch.exp(-0.5 * (ly / 0.45) ** 2) * band(ap, -1.0, s.mouth_half_width, 1.5)
    d -= 0.012 * gauss(phi, theta, 0.0, (s.mouth_theta + tt) / 2, 1.5, 2.0)  # philtrum
    d += 0.05 * s.chin_size * gauss(phi, theta, 0.0, s.chin_theta, 11.0, 5.5)
    return d
