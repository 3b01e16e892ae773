"""A subject: every random choice for one head, drawn from one integer seed.

Shape: ICT-FaceKit identity weights ~ N(0, 1) over its 100 modes (the model's own sampler), a mild expression
(neutral, smile, open jaw, blink, brow raise, squint, or two of them at low weights) and an eye gaze. Skin: a tone
from the measured facial colours of the ISSA archive (six ITA° classes, ~Fitzpatrick I-VI; docs/heads_and_rendering.md
cites the numbers), sex (beard), age (wrinkles, spots, pores), and the features skin has.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch

# Median facial colour (linear sRGB, D65, specular included) of the ISSA archive's ITA° classes, very light ..
# dark (computed from its 7,553 facial readings, docs/heads_and_rendering.md), and the per-class 10-90 % spread of
# R. The diffuse albedo is this minus ~0.03 of surface reflection (SPECULAR_INCLUDED).
ISSA_TONES = ((0.524, 0.345, 0.284), (0.492, 0.302, 0.229), (0.446, 0.258, 0.184), (0.387, 0.214, 0.143),
              (0.293, 0.156, 0.098), (0.150, 0.081, 0.056))
ISSA_R_SPREAD = (0.03, 0.04, 0.04, 0.04, 0.06, 0.045)
SPECULAR_INCLUDED = 0.03
# Hair colours (linear sRGB): black, dark brown, brown, light brown, blond, auburn/red, grey
HAIR = ((0.012, 0.010, 0.009), (0.035, 0.022, 0.014), (0.09, 0.055, 0.03), (0.2, 0.13, 0.07), (0.42, 0.32, 0.17),
        (0.25, 0.08, 0.03), (0.32, 0.31, 0.30))
# Iris colours (linear sRGB): dark brown, brown, hazel, green, blue, grey
IRIS = ((0.03, 0.015, 0.008), (0.08, 0.04, 0.015), (0.12, 0.09, 0.03), (0.07, 0.12, 0.05), (0.06, 0.12, 0.25),
        (0.16, 0.18, 0.2))
# Mild expressions: (ICT blendshapes, weight range), one or two per subject
EXPRESSIONS = {
    "neutral": (),
    "smile": (("mouthSmile_L", "mouthSmile_R"), (0.2, 0.7)),
    "smile_cheeks": (("mouthSmile_L", "mouthSmile_R", "cheekSquint_L", "cheekSquint_R"), (0.15, 0.5)),
    "jaw_open": (("jawOpen",), (0.08, 0.35)),
    "blink": (("eyeBlink_L", "eyeBlink_R"), (0.1, 0.5)),
    "brow_raise": (("browInnerUp_L", "browInnerUp_R", "browOuterUp_L", "browOuterUp_R"), (0.2, 0.6)),
    "squint": (("eyeSquint_L", "eyeSquint_R"), (0.2, 0.5)),
    "frown": (("browDown_L", "browDown_R"), (0.15, 0.45)),
}


@dataclass(frozen=True)
class Subject:
    """Build with `Subject.from_seed(seed)`."""

    seed: int
    identity: tuple[float, ...]  # 100 ICT identity weights
    expression: tuple[tuple[str, float], ...]  # ICT expression blendshape weights
    gaze_deg: tuple[float, float]  # eyeball rotation: yaw (+ towards the subject's left), pitch (+ up)
    tone_class: int  # 0..5: ISSA ITA° class (very light .. dark), ~Fitzpatrick I..VI
    tone: tuple[float, float, float]  # diffuse albedo of the cheek, linear sRGB
    male: bool
    age: float  # years
    beard: float  # stubble density 0 (none / shaved clean) .. 1 (a few days' growth)
    hairline_cm: float  # height of the hairline above the brows (large: bald forehead)
    hair_amount: float  # 0 bald scalp .. 1 full (short) hair
    hair: tuple[float, float, float]
    brow_density: float
    iris: tuple[float, float, float]
    iris_radius: float  # in the sclera tile's UV (see eyes.py)
    pupil_radius: float
    freckles: float  # 0..1 density
    moles: tuple[tuple[float, float, float], ...]  # (u, v, radius cm) on the face tile
    redness: float  # cheeks, nose, ears
    under_eye: float
    lip_tint: float
    oiliness: float  # T-zone sebum (specular)
    f0: float  # specular reflectance at normal incidence
    pore_scale: float

    @classmethod
    def from_seed(cls, seed: int) -> Subject:
        r = random.Random(int(seed) * 1_000_003 + 29)
        gen = torch.Generator().manual_seed(int(seed) * 7 + 1)
        identity = tuple(float(w) for w in torch.randn(100, generator=gen))
        expression = []
        kinds = r.choices(list(EXPRESSIONS), weights=(4, 2, 1, 1.5, 1, 1, 1, 0.7), k=r.choice((1, 1, 2)))
        for kind in dict.fromkeys(kinds):
            if EXPRESSIONS[kind]:
                names, (lo, hi) = EXPRESSIONS[kind]
                w = r.uniform(lo, hi)
                expression += [(n, w * r.uniform(0.85, 1.0)) for n in names]
        tone_class = r.randrange(6)
        base = ISSA_TONES[tone_class]
        k = 1 + r.gauss(0, 0.5) * ISSA_R_SPREAD[tone_class] / base[0]
        chroma = (1.0, 1 + r.gauss(0, 0.03), 1 + r.gauss(0, 0.05))
        male = r.random() < 0.5
        sex = r.uniform(0.86, 0.93) if male else 1.0  # men's faces are 3-7 L* darker (ISSA medians)
        tone = tuple(max(0.01, c * k * h * sex - SPECULAR_INCLUDED) for c, h in zip(base, chroma))
        age = r.uniform(18, 75)
        dark = tone_class >= 4
        hair = r.choices(HAIR, weights=(5, 4, 1, 0.3, 0.1, 0.1, 0.5) if dark else (2, 3, 3, 2, 1.5, 0.8, 1))[0]
        if age > 55 and r.random() < 0.6:
            hair = HAIR[-1]
        iris = r.choices(IRIS, weights=(6, 3, 1, 0.2, 0.2, 0.2) if dark else (1.5, 2, 1.5, 1, 2, 1))[0]
        bald = male and age > 30 and r.random() < 0.3
        moles = tuple((r.uniform(0.2, 0.8), r.uniform(0.3, 0.92), r.uniform(0.05, 0.22))
                      for _ in range(min(8, int(r.expovariate(1 / 2.5)))))
        return cls(
            seed=int(seed), identity=identity, expression=tuple(expression),
            gaze_deg=(r.gauss(0, 7), r.gauss(0, 4)), tone_class=tone_class, tone=tone, male=male, age=age,
            beard=(r.choice((0.0, 0.15, 0.35, 0.6, 0.9)) if male else 0.0),
            hairline_cm=(r.uniform(7.0, 11.0) if bald else r.uniform(4.2, 6.0) + (0.8 if male else 0.0) * r.random()),
            hair_amount=(r.uniform(0.0, 0.4) if bald else r.uniform(0.75, 1.0)), hair=hair,
            brow_density=r.uniform(0.55, 1.0), iris=iris, iris_radius=r.uniform(0.105, 0.12),
            pupil_radius=r.uniform(0.032, 0.05),
            freckles=(r.random() ** 2 if tone_class <= 1 and r.random() < 0.5 else 0.0), moles=moles,
            redness=r.uniform(0.1, 1.0) * (0.5 if dark else 1.0), under_eye=r.uniform(0.2, 1.0),
            lip_tint=r.uniform(0.75, 1.25), oiliness=r.uniform(0.2, 1.0), f0=r.uniform(0.025, 0.045),
            pore_scale=r.uniform(0.8, 1.25) * (1 + 0.3 * max(0.0, age - 40) / 35),
        )  # fmt: skip

    @property
    def id(self) -> str:
        return f"head{self.seed:04d}"

    def weights(self) -> dict:
        """What capture meta records of the shape (`"head_model": "ict-facekit"`)."""
        return {"identity": [round(w, 5) for w in self.identity], "expression": {n: round(w, 4) for n, w in self.expression},
                "gaze_deg": [round(g, 3) for g in self.gaze_deg]}


def expression_weights(s: Subject) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, w in s.expression:
        out[name] = max(out.get(name, 0.0), w)
    return out


def yaw_pitch_matrix(yaw_deg: float, pitch_deg: float) -> torch.Tensor:
    """3×3 rotation: pitch about x, then yaw about y (y up, +z forward)."""
    y, p = math.radians(yaw_deg), math.radians(pitch_deg)
    ry = torch.tensor([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rx = torch.tensor([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    return ry @ rx
