"""A procedural subject: shape, skin and feature parameters drawn from one integer seed, and the
fixed unified UV layout that every subject shares.

Unified UV space. The head is parametrised by azimuth phi (0 = straight ahead, + towards +x) and
elevation theta (0 near eye level, + up), both in degrees. u and v map to them by fixed warps that
are linear over the face (|phi| <= 70 deg, -58 <= theta <= 50 deg at |2u-1|, |2v-1| <= 0.8) and
squeeze the back of the head / scalp / neck into the outer 10 % of each side, so the face takes
about half of the UV square (u in ~[0.16, 0.84], v in ~[0.12, 0.86]). Same warps for every
subject: a UV coordinate always means the same facial place (up to the subject's own landmark
jitter of a few degrees), which is what the hash-encoding ablation relies on.

Units: 1 world unit = 10 cm; the head centre is the origin, y is up, the face looks along +z.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import torch

# Warp constants (see module doc): linear slope inside |s| <= S0, quadratic ease to +-180 / +-90 outside.
S0 = 0.8
PHI_K = 70.0 / S0  # deg per unit of s = 2u - 1
PHI_C = (180.0 - PHI_K) / (1 - S0) ** 2
THETA_MID, THETA_K = -4.0, 67.5  # theta = THETA_MID + THETA_K * t inside |t| <= S0, t = 2v - 1
THETA_C_UP = (90.0 - (THETA_MID + THETA_K)) / (1 - S0) ** 2
THETA_C_DN = (90.0 + (THETA_MID - THETA_K)) / (1 - S0) ** 2

# Texture "physical" scale: cm per unit of u and of v over the face (arc length of the linear part).
CM_PER_U = 2 * PHI_K * math.pi / 180 * 9.5
CM_PER_V = 2 * THETA_K * math.pi / 180 * 10.0


def phi_of_u(u: torch.Tensor) -> torch.Tensor:
    s = 2 * u - 1
    return PHI_K * s + PHI_C * torch.sign(s) * (s.abs() - S0).clamp_min(0) ** 2


def theta_of_v(v: torch.Tensor) -> torch.Tensor:
    t = 2 * v - 1
    return THETA_MID + THETA_K * t + THETA_C_UP * (t - S0).clamp_min(0) ** 2 - THETA_C_DN * (-t - S0).clamp_min(0) ** 2


def u_of_phi(phi: float) -> float:
    """Inverse warp for the linear (face) range only."""
    assert abs(phi) <= PHI_K * S0 + 1e-9, "u_of_phi is only defined over the face range"
    return (phi / PHI_K + 1) / 2


def v_of_theta(theta: float) -> float:
    t = (theta - THETA_MID) / THETA_K
    assert abs(t) <= S0 + 1e-9, "v_of_theta is only defined over the face range"
    return (t + 1) / 2


@dataclass(frozen=True)
class Subject:
    """Every random choice for one procedural head. Build with `Subject.from_seed(seed)`."""

    seed: int
    # head shape (world units = 10 cm)
    half_width: float
    half_height: float
    half_depth: float
    squareness: float  # horizontal superellipse exponent (2 = ellipse; larger = flatter face and sides)
    jaw_width: float  # lower-face width factor
    # landmarks (degrees of phi / theta)
    eye_theta: float
    eye_phi: float
    brow_theta: float
    nose_tip_theta: float
    mouth_theta: float
    mouth_half_width: float
    chin_theta: float
    hairline_theta: float
    # feature strengths
    nose_size: float
    nose_width: float
    brow_ridge: float
    cheekbones: float
    lip_fullness: float
    chin_size: float
    # skin
    melanin: float  # ~0.03 (very light) .. ~0.6 (very dark)
    haemoglobin: float
    freckles: float  # 0 .. 1 density
    moles: tuple[tuple[float, float, float], ...]  # (phi, theta, radius deg)
    cheek_redness: float
    under_eye: float
    age: float  # 0 .. 1: wrinkle depth
    pore_size: float  # relative
    oiliness: float  # specular boost on the T-zone
    # hair, eyes, lips
    hair_colour: tuple[float, float, float]  # linear RGB
    hair_amount: float  # 0 = bald scalp .. 1 = full hair
    beard: float  # 0 .. 1 stubble
    iris_colour: tuple[float, float, float]
    lip_tint: float
    extra: dict = field(default_factory=dict, compare=False)

    @classmethod
    def from_seed(cls, seed: int) -> Subject:
        r = random.Random(int(seed) * 1_000_003 + 17)
        U = r.uniform
        eye_theta = U(2.5, 6.0)
        # skin tone spans Fitzpatrick-like I..VI: melanin drawn on a log scale
        melanin = math.exp(U(math.log(0.03), math.log(0.6)))
        n_moles = r.randint(0, 7)
        moles = tuple((U(-55, 55), U(-50, 35), U(0.25, 0.7)) for _ in range(n_moles))
        hair_palette = [(0.02, 0.015, 0.012), (0.06, 0.035, 0.02), (0.18, 0.1, 0.05), (0.45, 0.32, 0.16),
                        (0.3, 0.09, 0.03), (0.35, 0.33, 0.31)]
        iris_palette = [(0.06, 0.03, 0.015), (0.12, 0.07, 0.03), (0.08, 0.15, 0.25), (0.1, 0.14, 0.07), (0.15, 0.11, 0.05)]
        hc = r.choice(hair_palette)
        return cls(
            seed=int(seed),
            half_width=U(0.71, 0.8), half_height=U(1.08, 1.2), half_depth=U(0.93, 1.02),
            squareness=U(2.2, 2.8), jaw_width=U(0.72, 0.9),
            eye_theta=eye_theta, eye_phi=U(16.5, 19.5), brow_theta=eye_theta + U(8.0, 10.5),
            nose_tip_theta=U(-15.0, -11.5), mouth_theta=U(-30.0, -26.5), mouth_half_width=U(10.5, 13.5),
            chin_theta=U(-48.0, -43.0), hairline_theta=U(32.0, 44.0),
            nose_size=U(0.8, 1.25), nose_width=U(0.85, 1.2), brow_ridge=U(0.6, 1.3), cheekbones=U(0.6, 1.4),
            lip_fullness=U(0.7, 1.3), chin_size=U(0.6, 1.4),
            melanin=melanin, haemoglobin=U(0.035, 0.08), freckles=r.random() ** 2 * (1.0 if melanin < 0.15 else 0.3),
            moles=moles, cheek_redness=U(0.2, 1.0), under_eye=U(0.2, 1.0), age=U(0.0, 1.0),
            pore_size=U(0.8, 1.3), oiliness=U(0.3, 1.0),
            hair_colour=hc, hair_amount=r.choice([0.0, 0.6, 1.0, 1.0, 1.0]), beard=r.choice([0.0, 0.0, 0.3, 0.7]),
            iris_colour=r.choice(iris_palette), lip_tint=U(0.7, 1.3),
        )  # fmt: skip

    @property
    def id(self) -> str:
        return f"head{self.seed:04d}"
