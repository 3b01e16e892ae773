"""The one place that defines channel layouts.

Every image tensor is B x C x H x W, float32 in [0, 1]; normals are stored encoded as (n + 1) / 2.
Code asks this module for slices by name instead of hard-coding channel ranges.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Mapping

import torch


@dataclass(frozen=True)
class Layout:
    """An ordered list of named map groups, each with a channel count."""

    groups: tuple[tuple[str, int], ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.groups)

    @property
    def channels(self) -> int:
        return sum(n for _, n in self.groups)

    def slice(self, name: str) -> slice:
        start = 0
        for group, n in self.groups:
            if group == name:
                return slice(start, start + n)
            start += n
        raise KeyError(f"map '{name}' is not in layout {self.names}")

    def width(self, name: str) -> int:
        s = self.slice(name)
        return s.stop - s.start

    def split(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """B x C x H x W -> {name: B x c x H x W} (views, no copy)."""
        if x.shape[1] != self.channels:
            raise ValueError(f"expected {self.channels} channels {self.names}, got {x.shape[1]}")
        return {name: x[:, self.slice(name)] for name in self.names}

    def cat(self, maps: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """{name: B x c x H x W} -> B x C x H x W in layout order."""
        missing = [n for n in self.names if n not in maps]
        if missing:
            raise KeyError(f"missing maps {missing} for layout {self.names}")
        for name in self.names:
            if maps[name].shape[1] != self.width(name):
                raise ValueError(f"map '{name}' has {maps[name].shape[1]} channels, expected {self.width(name)}")
        return torch.cat([maps[n] for n in self.names], dim=1)


# The reconstructed PBR maps (the method's output and the HFDR/GDE target).
TEXTURE = Layout((("albedo", 3), ("micronormal", 3), ("specular", 1)))
# Stage-1 geometry prediction (UV&Normal predictor output).
GEOMETRY = Layout((("uv", 2), ("normal", 3)))
# The radiance image and the face mask.
IMAGE = Layout((("image", 3),))
MASK = Layout((("mask", 1),))

# Everything a capture stores, in storage order.
CAPTURE = Layout(IMAGE.groups + TEXTURE.groups + GEOMETRY.groups + MASK.groups)

# Maps whose values are encoded unit vectors (n + 1) / 2.
NORMAL_MAPS = ("micronormal", "normal")
# Maps stored as sRGB-encoded colour (everything else is linear data).
SRGB_MAPS = ("image", "albedo")


def encode_normal(n: torch.Tensor) -> torch.Tensor:
    """Unit vectors in [-1, 1] -> [0, 1]."""
    return (n + 1.0) * 0.5


def decode_normal(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """[0, 1] -> unit vectors (renormalised, since interpolation shortens them)."""
    n = x * 2.0 - 1.0
    return n / n.norm(dim=dim, keepdim=True).clamp_min(eps)
