"""Lighting for the renderers: 20 vendored CC0 HDRIs everywhere, bpy's 8 where bpy is installed, procedural skies.

Lighting ids (valid store-key parts):
* `ph-<slug>_r<deg>`: one of the 20 CC0 Poly Haven HDRIs vendored in `uhrtex/render/hdri/` (256×128 float16 EXR,
  licence and sources there, rebuilt by `tools/derive_hdris.py`), rotated by <deg> about the vertical axis. Always
  available: the default lightings of the captures draw from these (`default_lightings`).
* `<hdri>_r<deg>`: one of the 8 CC0 Poly Haven HDRIs inside the bpy wheel (`city courtyard forest
  interior night studio sunrise sunset`, 1K EXR), rotated by <deg> about the vertical axis. Found in
  `$UHRTEX_HDRI_DIR`, else `<repo>/.venv-blender/lib/python3.11/site-packages/bpy/5.0/datafiles/
  studiolights/world`, else an importable `bpy`'s own copy. `UHRTEX_HDRI_DIR=off`: none, as on a machine without
  bpy (lighting index i is then a procedural sky: how to extend a store that was rendered without bpy).
* `sky<k>_r<deg>`: a procedural sky (seed k): sun disk + sky gradient + ground. Always available.
* `env-<slug>_r<deg>`: one of your own maps (`captures.environments=DIR`, see `envdir.py`); its file is the
  `source` passed to `load_environment`.

An `Environment` is an equirectangular linear-radiance map in *Blender's* world orientation, so the
Blender path can use the very same image: our world is y-up with the face towards +z; a world
direction (x, y, z) is Blender's (x, -z, y); Blender's equirect lookup is u = 0.5 - atan2(dy, dx) /
2pi, v = 0.5 + atan2(dz, hypot(dx, dy)) / pi (Blender axes; checked against a Cycles render), after
rotating the direction by the lighting's angle about Blender's z (a Mapping node on the Generated
coordinate, in the scene).

Shading helpers (both documented approximations of Cycles' Principled BSDF, no visibility):
* diffuse: irradiance from the map's 9-coefficient spherical-harmonics projection (Ramamoorthi &
  Hanrahan 2001), E(n) = sum_lm A_l L_lm Y_lm(n); radiance = albedo * E / pi.
* specular: the split-sum approximation (Karis 2013): the map prefiltered once with a GGX lobe of
  `ROUGHNESS` (assuming n = v = r, on a 64x32 grid from a 128x64 downsample) times an analytic
  environment-BRDF fit (F0 * A + B).
`exposure` scales the raw map so the frontal irradiance is the same for every lighting (applied in
both renderers: the Blender world strength is `exposure`).
"""

from __future__ import annotations

import importlib.util
import math
import os
import random
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F

from uhrtex.render.envdir import env_name, environment_files, read_environment

HDRI_NAMES = ("city", "courtyard", "forest", "interior", "night", "studio", "sunrise", "sunset")
ROUGHNESS = 0.45  # skin, both renderers
FRONT_IRRADIANCE = 2.4  # target frontal irradiance after exposure (albedo 0.35 -> radiance ~0.27)
_ID = re.compile(r"^(?P<name>[a-z]+|sky(?P<seed>\d+)|(?P<ph>ph-[a-z0-9]+(-[a-z0-9]+)*)|(?P<user>env-[a-z0-9]+(-[a-z0-9]+)*))"
                 r"_r(?P<rot>\d{1,3})$")
VENDORED_DIR = Path(__file__).with_name("hdri")
VENDORED = tuple(f"ph-{p.stem}" for p in sorted(VENDORED_DIR.glob("*.exr")))
_BLENDER_REL = Path("lib/python3.11/site-packages/bpy/5.0/datafiles/studiolights/world")


class LightingError(ValueError):
    """An unknown or unavailable lighting id (one line, with the fix)."""


def hdri_dir() -> Path | None:
    """Folder holding the 8 bpy studio HDRIs, or None when none is found or `UHRTEX_HDRI_DIR=off`."""
    if os.environ.get("UHRTEX_HDRI_DIR", "").lower() == "off":
        return None
    cands = []
    if os.environ.get("UHRTEX_HDRI_DIR"):
        cands.append(Path(os.environ["UHRTEX_HDRI_DIR"]))
    cands.append(Path(__file__).resolve().parents[2] / ".venv-blender" / _BLENDER_REL)
    spec = importlib.util.find_spec("bpy")
    if spec is not None and spec.origin:
        cands.append(Path(spec.origin).parent / "5.0/datafiles/studiolights/world")
    return next((c for c in cands if (c / "studio.exr").is_file()), None)


def lighting_id(name: str, rotation_deg: int) -> str:
    return f"{name}_r{int(rotation_deg) % 360:03d}"


def default_lightings(n: int, seed: int = 0, extra=()) -> list[str]:
    """A subject's n lightings: environments drawn without repeats from the 20 vendored HDRIs and the `extra` names
    (your own maps, `envdir.py`), each at a rotation in 15° steps, all seeded by the subject (`seed`).

    The i-th id does not depend on n, and needs nothing machine-specific (bpy's HDRIs are used only by name), so a
    subject's lighting index i means the same environment on every machine."""
    names = list(VENDORED) + list(extra)
    rng = random.Random(int(seed) * 104_729 + 7)
    out, pool = [], []
    for _ in range(n):
        if not pool:
            pool = rng.sample(names, len(names))
        out.append(lighting_id(pool.pop(), 15 * rng.randrange(24)))
    return out


def parse_lighting(lighting: str) -> tuple[str, int]:
    m = _ID.match(str(lighting))
    if not m or (m["seed"] is None and m["user"] is None and m["name"] not in HDRI_NAMES + VENDORED):
        raise LightingError(f"unknown lighting {lighting!r}; use 'ph-<slug>_r<deg>' with slug one of uhrtex/render/hdri/ "
                            f"({', '.join(v[3:] for v in VENDORED[:3])}, ...), '<hdri>_r<deg>' with bpy's hdri in "
                            f"{list(HDRI_NAMES)}, 'sky<k>_r<deg>' (procedural) or 'env-<file>_r<deg>' (captures.environments), "
                            "e.g. 'ph-venice-sunset_r090'")
    return m["name"], int(m["rot"])


# ------------------------------------------------------------------------------------------ maps


def procedural_sky(seed: int, width: int = 512) -> torch.Tensor:
    """3 x H x W linear radiance (H = W/2, row 0 = zenith), Blender world orientation."""
    r = random.Random(seed * 7919 + 11)
    elev = math.radians(r.uniform(8, 65))
    azim = r.uniform(-math.pi, math.pi)
    warm = 1 - elev / math.radians(65)  # low sun: warmer and dimmer
    sun_col = torch.tensor([1.0, 0.93 - 0.25 * warm, 0.85 - 0.45 * warm]) * r.uniform(2.5, 4.0)
    zenith = torch.tensor([0.12, 0.22, 0.55]) * r.uniform(0.7, 1.3)
    horizon = torch.tensor([0.55, 0.6, 0.7]) + warm * torch.tensor([0.25, 0.05, -0.2])
    ground = torch.tensor([0.18, 0.16, 0.13]) * r.uniform(0.6, 1.6)
    H = width // 2
    d = _equirect_dirs(H, width)  # 3 x H x W, Blender axes
    up = d[2]
    t = up.clamp_min(0) ** 0.6
    sky = horizon[:, None, None] * (1 - t) + zenith[:, None, None] * t
    sky = torch.where(up[None] >= 0, sky, ground[:, None, None] * (1 - 0.5 * (-up).clamp(0, 1)[None]))
    sd = torch.tensor([math.cos(elev) * math.cos(azim), math.cos(elev) * math.sin(azim), math.sin(elev)])
    cosang = (d * sd[:, None, None]).sum(0)
    rad = math.radians(2.5)  # a big soft sun: easier on Cycles' noise, same look at portrait scale
    disk = torch.sigmoid((cosang - math.cos(rad)) / 2e-4)
    glow = torch.exp((cosang - 1) / 0.02) * 0.6
    sun = sun_col[:, None, None] * (disk * 1.0 / (2 * math.pi * (1 - math.cos(rad))) + glow)[None]
    return (sky + sun).float()


def _equirect_dirs(H: int, W: int, device=None) -> torch.Tensor:
    """Unit directions (Blender axes) at texel centres of an equirect map (row 0 = top): 3 x H x W."""
    u = (torch.arange(W, device=device, dtype=torch.float64) + 0.5) / W
    v = 1 - (torch.arange(H, device=device, dtype=torch.float64) + 0.5) / H
    lon = (0.5 - u) * 2 * math.pi  # atan2(dy, dx)
    lat = (v - 0.5) * math.pi
    lat, lon = torch.meshgrid(lat, lon, indexing="ij")
    return torch.stack([torch.cos(lat) * torch.cos(lon), torch.cos(lat) * torch.sin(lon), torch.sin(lat)]).float()


def to_blender(d: torch.Tensor) -> torch.Tensor:
    """World directions [..., 3] (y up, face +z) -> Blender axes (z up)."""
    return torch.stack([d[..., 0], -d[..., 2], d[..., 1]], -1)


def _rotate_z(d: torch.Tensor, deg: float) -> torch.Tensor:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return torch.stack([c * d[..., 0] - s * d[..., 1], s * d[..., 0] + c * d[..., 1], d[..., 2]], -1)


def sample_equirect(img: torch.Tensor, d_blender: torch.Tensor) -> torch.Tensor:
    """Bilinear lookup (wrap in u, clamp in v) of a 3 x H x W equirect map: [..., 3] dirs -> [..., 3]."""
    C, H, W = img.shape
    d = d_blender / d_blender.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    u = 0.5 - torch.atan2(d[..., 1], d[..., 0]) / (2 * math.pi)
    v = torch.atan2(d[..., 2], torch.hypot(d[..., 0], d[..., 1])) / math.pi + 0.5
    x, y = u * W - 0.5, (1 - v) * H - 0.5
    x0, y0 = torch.floor(x), torch.floor(y)
    ax, ay = (x - x0)[..., None], (y - y0)[..., None]
    x0, y0 = x0.long(), y0.long()
    flat = img.permute(1, 2, 0).reshape(-1, C)

    def tap(yy, xx):
        return flat[yy.clamp(0, H - 1) * W + xx % W]

    top = torch.lerp(tap(y0, x0), tap(y0, x0 + 1), ax)
    bot = torch.lerp(tap(y0 + 1, x0), tap(y0 + 1, x0 + 1), ax)
    return torch.lerp(top, bot, ay)


def _sh_basis(d: torch.Tensor) -> torch.Tensor:
    """Real SH up to l=2 at unit directions [..., 3] -> [..., 9]."""
    x, y, z = d.unbind(-1)
    return torch.stack([
        torch.full_like(x, 0.282095), 0.488603 * y, 0.488603 * z, 0.488603 * x,
        1.092548 * x * y, 1.092548 * y * z, 0.315392 * (3 * z * z - 1), 1.092548 * x * z, 0.546274 * (x * x - y * y),
    ], -1)  # fmt: skip


_SH_BAND = torch.tensor([math.pi] + [2 * math.pi / 3] * 3 + [math.pi / 4] * 5)


def _solid_angles(H: int, W: int) -> torch.Tensor:
    lat = (0.5 - (torch.arange(H, dtype=torch.float64) + 0.5) / H) * math.pi
    return (torch.cos(lat) * (2 * math.pi / W) * (math.pi / H)).float()[:, None].expand(H, W)


@dataclass
class Environment:
    """One lighting: raw equirect radiance (Blender orientation), its rotation and exposure."""

    id: str
    radiance: torch.Tensor  # 3 x H x W linear, unscaled
    rotation_deg: float
    exposure: float
    sh: torch.Tensor  # 9 x 3 SH coefficients of radiance * exposure, in *world* (y-up) axes, rotation applied
    prefiltered: torch.Tensor  # 3 x 32 x 64 GGX-prefiltered radiance * exposure (Blender orientation, unrotated)
    source: str  # file path, or "procedural"

    def to(self, device) -> Environment:
        return Environment(self.id, self.radiance.to(device), self.rotation_deg, self.exposure,
                           self.sh.to(device), self.prefiltered.to(device), self.source)

    def _map_dirs(self, d_world: torch.Tensor) -> torch.Tensor:
        return _rotate_z(to_blender(d_world), self.rotation_deg)

    def background(self, d_world: torch.Tensor) -> torch.Tensor:
        """Radiance seen along world directions [..., 3] (exposure applied)."""
        return sample_equirect(self.radiance, self._map_dirs(d_world)) * self.exposure

    def irradiance(self, n_world: torch.Tensor) -> torch.Tensor:
        """E(n) for unit world normals [..., 3] -> [..., 3] (exposure applied)."""
        return (_sh_basis(n_world) * _SH_BAND.to(n_world)) @ self.sh

    def specular(self, r_world: torch.Tensor) -> torch.Tensor:
        """GGX-prefiltered radiance around reflection directions [..., 3] (exposure applied)."""
        return sample_equirect(self.prefiltered, self._map_dirs(r_world))

    def meta(self) -> dict:
        return {"id": self.id, "source": self.source, "rotation_deg": self.rotation_deg, "exposure": self.exposure,
                "convention": "equirect, Blender world axes; world (x,y,z) = Blender (x,-z,y); rotated about Blender z"}


def _project_sh(radiance: torch.Tensor, rotation_deg: float) -> torch.Tensor:
    """9 x 3 SH of the map in world axes: sum over texels of L * Y(world dir) * solid angle."""
    _, H, W = radiance.shape
    db = _equirect_dirs(H, W).permute(1, 2, 0)  # map-space (Blender) directions
    # the texel seen along world direction w has map direction R_z(rot) * blender(w): invert it
    db = _rotate_z(db, -rotation_deg)
    dw = torch.stack([db[..., 0], db[..., 2], -db[..., 1]], -1)  # Blender -> world axes
    wgt = _solid_angles(H, W)[..., None]
    Y = _sh_basis(dw)  # H x W x 9
    return torch.einsum("hwk,hwc->kc", Y * wgt, radiance.permute(1, 2, 0))


@lru_cache(maxsize=4)
def _prefilter_weights(roughness: float, out_hw: tuple[int, int], in_hw: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The GGX lobe weights (M output × N input directions) and their row sums: the same for every map, so they
    are computed once per process (0.5 s each) instead of once per environment."""
    ds = _equirect_dirs(*in_hw).reshape(3, -1)  # 3 x N
    dout = _equirect_dirs(*out_hw).reshape(3, -1)  # 3 x M
    a2 = roughness**4  # alpha = roughness^2
    cos_rl = dout.T @ ds  # M x N
    cos_rh = torch.sqrt(((1 + cos_rl) / 2).clamp_min(0))  # half vector of r and l
    D = a2 / (math.pi * ((cos_rh**2) * (a2 - 1) + 1) ** 2)
    w = D * cos_rl.clamp_min(0) * _solid_angles(*in_hw).reshape(1, -1)
    return w, w.sum(1, keepdim=True).clamp_min(1e-12)


def _prefilter(radiance: torch.Tensor, roughness: float = ROUGHNESS, out_hw=(32, 64), in_hw=(64, 128)) -> torch.Tensor:
    """GGX-weighted average of the map around each output direction (n = v = r), in map space."""
    src = F.adaptive_avg_pool2d(radiance[None], in_hw)[0]  # area average keeps a small sun's energy
    w, wsum = _prefilter_weights(float(roughness), tuple(out_hw), tuple(in_hw))
    out = (w @ src.reshape(3, -1).T) / wsum
    return out.T.reshape(3, *out_hw).contiguous()


def _prefilter_cached(radiance: torch.Tensor) -> torch.Tensor:
    """`_prefilter` through the cache folder (`uhrtex.common.disk_cache`), keyed by the map's own bytes and this
    file's code: a repeat run's preview and renders read it back instead of recomputing the GGX weights (0.3 s)."""
    import hashlib

    from uhrtex.common.disk_cache import cached, source_digest

    content = hashlib.sha256(radiance.contiguous().numpy().tobytes()).hexdigest()[:20]
    key = source_digest([__file__], content, tuple(radiance.shape), ROUGHNESS)
    return cached(f"prefilter_{key}.pt", lambda: _prefilter(radiance), family="prefilter_", keep=64)


_FRONT = torch.tensor([[0, 0, 1], [0.5, 0, 0.866], [-0.5, 0, 0.866], [0, 0.4, 0.917], [0, -0.3, 0.954]], dtype=torch.float32)


@lru_cache(maxsize=64)
def _load_cpu(lighting: str, hdri_path: str | None, source: str | None = None) -> Environment:
    name, rot = parse_lighting(lighting)
    if name.startswith("env-"):

        if source is None or env_name(source) != name:
            raise LightingError(f"lighting {lighting!r} is one of your own maps; pass its folder "
                                f"(captures.environments=DIR, holding {name[4:]}.exr or .hdr)")
        radiance = read_environment(source)
    elif name.startswith("sky"):
        radiance, source = procedural_sky(int(name[3:])), "procedural"
    elif name.startswith("ph-"):
        path = VENDORED_DIR / f"{name[3:]}.exr"
        radiance, source = read_environment(path), str(path)
    else:
        if hdri_path is None:
            raise LightingError(f"lighting {lighting!r} needs the bpy studio HDRIs, which are not installed; run "
                                "`make blender-venv`, set UHRTEX_HDRI_DIR, or use a procedural 'sky<k>_r<deg>'")
        path = Path(hdri_path) / f"{name}.exr"
        radiance, source = read_environment(path, clamp_negative=True), str(path)
    sh = _project_sh(radiance, rot)
    basis = _sh_basis(_FRONT / _FRONT.norm(dim=-1, keepdim=True)) * _SH_BAND
    front = (basis @ sh).clamp_min(0) @ torch.tensor([0.2126, 0.7152, 0.0722])
    exposure = float(FRONT_IRRADIANCE / max(float(front.mean()), 1e-6))
    return Environment(lighting, radiance, float(rot), exposure, sh * exposure, _prefilter_cached(radiance) * exposure,
                       source)


def load_environment(lighting: str, device="cpu", source: str | None = None) -> Environment:
    """The Environment for a lighting id (cached on CPU; moved to `device`). `source`: the file of an `env-` id."""
    d = hdri_dir()
    user = parse_lighting(str(lighting))[0].startswith("env-")
    return _load_cpu(str(lighting), None if d is None else str(d), str(source) if user and source else None).to(device)


def resolve_lighting(lighting: int | str, folder: str | Path | None = None, subject_seed: int = 0
                     ) -> tuple[str, str | None]:
    """(lighting id, source file or None): an int picks the subject's i-th `default_lightings`, DIR's maps added."""
    files = environment_files(folder) if folder else {}
    name = lighting if isinstance(lighting, str) else default_lightings(int(lighting) + 1, subject_seed, tuple(files))[-1]
    source = files.get(parse_lighting(name)[0])
    return name, None if source is None else str(source)
