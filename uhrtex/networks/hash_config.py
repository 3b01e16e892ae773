"""The hash grid's configuration (tcnn's HashGrid encoding config, validated) and its table layout.

* `HashGridConfig`: the tcnn encoding config, validated; `to_tcnn()` gives the dict tcnn wants.
* `grid_layout(config)`: per-level scale, resolution, table size P_l, offsets, n_params, hashed levels.
Spec: /work/shared/specs/backends.md, section A.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

PRIME_Y = 2654435761  # CoherentPrime: axis 0's prime is 1, axis 1's is this
U32 = 0xFFFFFFFF
_INTERPOLATIONS = {"linear": "Linear", "nearest": "Nearest", "smoothstep": "Smoothstep"}
_OTYPES = {"grid": "HashGrid", "hashgrid": "HashGrid"}
# tcnn keys accepted only at their default value, and keys accepted only as false.
_ONLY_DEFAULT = {"type": "Hash", "hash": "CoherentPrime"}
_ONLY_FALSE = ("stochastic_interpolation", "fixed_point_pos")


@dataclass(frozen=True)
class HashGridConfig:
    """tcnn `HashGrid` config. Defaults are the project's (paper §3.3: L=4, F=2), not tcnn's."""

    otype: str = "HashGrid"
    n_levels: int = 4
    n_features_per_level: int = 2
    log2_hashmap_size: int = 19
    base_resolution: int = 16
    per_level_scale: float = 4.0
    interpolation: str = "Linear"

    def __post_init__(self) -> None:
        otype = _OTYPES.get(str(self.otype).lower())
        if otype is None:
            raise ValueError(f"hash-grid otype '{self.otype}' has no torch fallback; use otype 'HashGrid' (or 'Grid')")
        interp = _INTERPOLATIONS.get(str(self.interpolation).lower())
        if interp is None:
            raise ValueError(f"unknown hash-grid interpolation '{self.interpolation}'; valid: Linear, Nearest, Smoothstep")
        for key, lo, hi in (("n_levels", 1, 128), ("log2_hashmap_size", 1, 32), ("base_resolution", 1, 2**24)):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not lo <= v <= hi:
                raise ValueError(f"hash-grid {key} must be an integer in [{lo}, {hi}], got {v!r}")
        if self.n_features_per_level not in (1, 2, 4, 8) or isinstance(self.n_features_per_level, bool):
            raise ValueError(f"hash-grid n_features_per_level must be 1, 2, 4 or 8, got {self.n_features_per_level!r}")
        if isinstance(self.per_level_scale, bool) or not float(self.per_level_scale) > 0:
            raise ValueError(f"hash-grid per_level_scale must be a positive number, got {self.per_level_scale!r}")
        for key in ("n_levels", "n_features_per_level", "log2_hashmap_size", "base_resolution"):
            object.__setattr__(self, key, int(getattr(self, key)))
        object.__setattr__(self, "otype", otype)
        object.__setattr__(self, "interpolation", interp)
        object.__setattr__(self, "per_level_scale", float(self.per_level_scale))

    @classmethod
    def valid_keys(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)] + ["n_features", *_ONLY_DEFAULT, *_ONLY_FALSE]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> HashGridConfig:
        """Accepts tcnn-style dicts; missing keys take the project defaults."""
        d = dict(d)
        unknown = sorted(set(d) - set(cls.valid_keys()))
        if unknown:
            raise ValueError(f"unknown hash-grid config key(s) {unknown}; valid keys: {', '.join(cls.valid_keys())}")
        for key in _ONLY_FALSE:
            if d.pop(key, False):
                raise ValueError(f"hash-grid '{key}: true' is not supported (no torch fallback); remove it or set it false")
        for key, default in _ONLY_DEFAULT.items():
            if key in d and str(d.pop(key)).lower() != default.lower():
                raise ValueError(f"hash-grid {key} must be '{default}' (the only one with a torch fallback)")
        if "n_features" in d:  # tcnn's alternative to n_levels: total features L·F
            if "n_levels" in d:
                raise ValueError("give hash-grid n_levels or n_features (= n_levels·n_features_per_level), not both")
            total, per = d.pop("n_features"), d.get("n_features_per_level", cls.n_features_per_level)
            if total % per:
                raise ValueError(f"hash-grid n_features {total} is not a multiple of n_features_per_level {per}")
            d["n_levels"] = total // per
        return cls(**d)

    @classmethod
    def coerce(cls, config: HashGridConfig | Mapping[str, Any] | None) -> HashGridConfig:
        if config is None:
            return cls()
        return config if isinstance(config, cls) else cls.from_dict(config)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_tcnn(self) -> dict[str, Any]:
        return self.to_dict()  # already exactly tcnn's key names and value spellings

    @property
    def n_output_dims(self) -> int:
        return self.n_levels * self.n_features_per_level


@dataclass(frozen=True)
class GridLayout:
    """Level geometry (spec A2). `offsets` has L+1 entries, in table rows (entries) of F features."""

    scales: tuple[float, ...]
    resolutions: tuple[int, ...]
    sizes: tuple[int, ...]
    offsets: tuple[int, ...]
    hashed: tuple[bool, ...]
    n_features_per_level: int

    @property
    def n_levels(self) -> int:
        return len(self.scales)

    @property
    def n_entries(self) -> int:
        return self.offsets[-1]

    @property
    def n_params(self) -> int:
        return self.n_features_per_level * self.offsets[-1]


def grid_layout(config: HashGridConfig | Mapping[str, Any] | None = None) -> GridLayout:
    cfg = HashGridConfig.coerce(config)
    f32 = np.float32
    log2_scale = np.log2(f32(cfg.per_level_scale))  # float32 throughout, like the CUDA code
    table = 2**cfg.log2_hashmap_size
    scales, res, sizes, offsets, hashed = [], [], [], [0], []
    for level in range(cfg.n_levels):
        scale = np.exp2(f32(level) * log2_scale) * f32(cfg.base_resolution) - f32(1.0)
        r = int(np.ceil(scale)) + 1
        dense = 8 * -(-(r * r) // 8)  # rounded up to a multiple of 8
        p = min(dense, table)
        scales.append(float(scale))
        res.append(r)
        sizes.append(p)
        offsets.append(offsets[-1] + p)
        hashed.append(p < r * r)  # tcnn hashes exactly when the table is smaller than the grid
    return GridLayout(tuple(scales), tuple(res), tuple(sizes), tuple(offsets), tuple(hashed), cfg.n_features_per_level)


# ---------------------------------------------------------------------------------------------
