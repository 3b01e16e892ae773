"""Textures of the materials around the face tile: scalp and neck (with the mouth and eye sockets), gums and
tongue, teeth, and the eyeballs. They are rendered, never reconstructed, so they are simpler and smaller than the
face tile: R/2 for the scalp tile, R/4 for each eye, R/8 for the mouth.

Eyes: ICT's sclera mesh is the eyeball's outer shell with the cornea bulge; its UV is polar about the front pole
(radius ≈ 0.005 per degree from the optical axis, measured on the mean head), so the iris (≈ 24° ≈ r 0.115) and
the pupil are painted on it as disks around that pole (see the note in `uhrtex.head_model.model`).
"""

from __future__ import annotations

from functools import cache

import torch

from uhrtex.captures.heads import layout as L
from uhrtex.captures.heads.noise import fbm, smoothstep, value_noise
from uhrtex.captures.heads.skin import F0_PER_SPECULAR, REGION_GAIN
from uhrtex.captures.heads.subject import Subject
from uhrtex.common.imaging import linear_to_srgb
from uhrtex.head_model import ict_model

FLAT_NORMAL = (0.5, 0.5, 1.0)


@cache
def sclera_pole(material: str) -> tuple[float, float]:
    """UV of the eyeball's front pole (the vertex furthest along +z) in a sclera material's tile."""
    m = ict_model()
    sel = m.material_faces((material,))
    f, t = m.faces[sel].reshape(-1), m.faces_uv[sel].reshape(-1)
    i = int(m.neutral[f, 2].argmax())
    return float(m.uv[t[i], 0]), float(m.uv[t[i], 1])


def _grid(res: int) -> tuple[torch.Tensor, torch.Tensor]:
    c = (torch.arange(res, dtype=torch.float32) + 0.5) / res
    v, u = torch.meshgrid(1 - c, c, indexing="ij")
    return u, v


def _maps(albedo_linear: torch.Tensor, specular: torch.Tensor, dtype) -> dict[str, torch.Tensor]:
    res = albedo_linear.shape[-1]
    return {"albedo": linear_to_srgb(albedo_linear.clamp(0, 1)).to(dtype),
            "micronormal": torch.tensor(FLAT_NORMAL).view(3, 1, 1).expand(3, res, res).to(dtype).clone(),
            "specular": specular.clamp(0, 1).expand(1, res, res).to(dtype).clone()}


def _sclera(s: Subject, material: str, res: int, dtype) -> dict[str, torch.Tensor]:
    u, v = _grid(res)
    cu, cv = sclera_pole(material)
    du, dv = u - cu, v - cv
    r = torch.sqrt(du * du + dv * dv)
    ang = torch.atan2(dv, du)
    sd = s.seed * 31 + (1 if material.endswith("Right") else 0)
    veins = smoothstep(0.02, 0.0, (value_noise(ang * 14, r * 18, sd) - 0.5).abs()) * smoothstep(0.2, 0.45, r)
    white = torch.tensor((0.62, 0.56, 0.5)).view(3, 1, 1) * (1 - 0.08 * smoothstep(0.15, 0.5, r))
    white = white * (1 - 0.45 * veins * torch.tensor((0.0, 1.0, 1.0)).view(3, 1, 1))
    fibres = 0.7 + 0.6 * value_noise(ang * 30, r * 40, sd + 1) * (0.6 + 0.4 * fbm(ang * 6, r * 10, sd + 2, octaves=2))
    ri, rp = s.iris_radius, s.pupil_radius
    collarette = 1 + 0.35 * smoothstep(rp * 1.9, rp * 1.3, r) * smoothstep(rp, rp * 1.2, r)
    limbal = smoothstep(ri - 0.03, ri, r)
    iris_col = torch.tensor(s.iris).view(3, 1, 1) * fibres * collarette * (1 - 0.65 * limbal)
    iris = smoothstep(ri + 0.006, ri - 0.006, r)
    pupil = smoothstep(rp + 0.004, rp - 0.004, r)
    alb = torch.lerp(white, iris_col, iris)
    alb = torch.lerp(alb, torch.full_like(alb, 0.008), pupil)
    return _maps(alb, torch.full((1, res, res), 0.9), dtype)  # a wet surface: high specular


def _scalp(s: Subject, res: int, dtype) -> dict[str, torch.Tensor]:
    geo = L.tile_geometry("M_BackHead", res)
    pos, part = geo["position"], geo["part"][0]
    names = ict_model().part_names
    sockets = sum((part == names.index(n)).float() for n in ("mouth_socket", "eye_socket_left", "eye_socket_right"))
    m3 = ict_model().neutral[ict_model().landmarks68]
    eye_y, jaw_y = float(m3[36:48, 1].mean()), float(m3[8, 1])
    y, z = pos[1], pos[2]
    u, v = _grid(res)
    sd = s.seed * 17
    strands = 0.5 + 0.5 * (value_noise(u * 900, v * 60, sd) - 0.5) + 0.3 * (fbm(u * 40, v * 40, sd + 1, octaves=3))
    # hair above the ears all round (short hair), receding from the top of a balding head
    line = eye_y + 0.5 + 1.5 * fbm(u * 12, v * 12, sd + 2, octaves=2) - 1.5 * smoothstep(2.0, -4.0, z)
    hair = smoothstep(line - 0.5, line + 1.0, y) * s.hair_amount * (1 - sockets)
    neck = smoothstep(jaw_y + 3.0, jaw_y - 1.0, y)
    tone = torch.tensor(s.tone).view(3, 1, 1)
    neck_gain = torch.tensor(REGION_GAIN["neck"]).view(3, 1, 1)
    skin = tone * (1 + (neck_gain - 1) * neck) * (1 + 0.05 * fbm(u * 30, v * 30, sd + 3, octaves=3))
    alb = torch.lerp(skin, torch.tensor(s.hair).view(3, 1, 1) * (0.6 + 0.8 * strands), hair.clamp(0, 1))
    # the sockets are seen only in deep shadow: dark red (the renderers have no occlusion term)
    alb = torch.lerp(alb, torch.tensor((0.1, 0.02, 0.02)).view(3, 1, 1), sockets)
    spec = (s.f0 / F0_PER_SPECULAR) * (1 - hair * 0.3)[None]
    return _maps(alb, spec, dtype)


def _flat(colour, specular: float, res: int, seed: int, dtype) -> dict[str, torch.Tensor]:
    u, v = _grid(res)
    alb = torch.tensor(colour).view(3, 1, 1) * (1 + 0.08 * fbm(u * 20, v * 20, seed, octaves=3))
    return _maps(alb, torch.full((1, res, res), specular), dtype)


def material_textures(s: Subject, res: int, device="cpu", dtype=torch.float32) -> dict[str, dict[str, torch.Tensor]]:
    """{material: maps} for every rendered material but the face tile (see the module doc for the sizes)."""
    aged = 1 - 0.25 * max(0.0, (s.age - 25) / 50)
    out = {"M_BackHead": _scalp(s, max(16, res // 2), dtype),
           "M_GumsTongue": _flat((0.3, 0.07, 0.07), 0.6, max(16, res // 8), s.seed * 5 + 1, dtype),
           "M_Teeth": _flat((0.72 * aged, 0.6 * aged, 0.36 * aged ** 2), 0.5, max(16, res // 8), s.seed * 5 + 2, dtype),
           "M_ScleraLeft": _sclera(s, "M_ScleraLeft", max(16, res // 4), dtype),
           "M_ScleraRight": _sclera(s, "M_ScleraRight", max(16, res // 4), dtype)}
    return {m: {k: t.to(device) for k, t in maps.items()} for m, maps in out.items()}
