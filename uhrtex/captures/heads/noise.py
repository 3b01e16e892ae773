"""Stateless procedural noise: every value is a hash of (lattice point, seed), so any tile of a
texture can be computed on its own and tiles agree exactly where they meet.

All functions take coordinate tensors of any shape (float32, any device) and return the same shape.
"""

from __future__ import annotations

import torch

_M1, _M2, _M3 = 0x27D4EB2D, 0x165667B1, 0x5BD1E995
_MASK31 = 0x7FFFFFFF


def hash_int(ix: torch.Tensor, iy: torch.Tensor, seed: int) -> torch.Tensor:
    """int64 lattice coordinates -> well-mixed non-negative int64 (31 bits)."""
    h = (ix * 374761393 + iy * 668265263 + (seed * 2654435761 & _MASK31)) & 0xFFFFFFFF
    h = ((h ^ (h >> 15)) * _M1) & 0xFFFFFFFF
    h = ((h ^ (h >> 13)) * _M2) & 0xFFFFFFFF
    h = ((h ^ (h >> 16)) * _M3) & 0xFFFFFFFF
    return (h ^ (h >> 15)) & _MASK31


def hash_float(ix: torch.Tensor, iy: torch.Tensor, seed: int) -> torch.Tensor:
    """Uniform float32 in [0, 1) per lattice point."""
    return (hash_int(ix, iy, seed) & 0xFFFFFF).to(torch.float32) * (1.0 / 16777216.0)


class _Lattice:
    """Hash values of every lattice point a tile touches, computed once and gathered per texel.

    A texel needs 4 (value noise) or 27 (Worley) lattice hashes; tiles touch far fewer lattice points
    than they have texels, so hashing the lattice and gathering is several times faster.
    """

    def __init__(self, ix: torch.Tensor, iy: torch.Tensor, seed: int, n: int, margin: int):
        self.x0, self.y0 = int(ix.min()) - margin, int(iy.min()) - margin
        nx, ny = int(ix.max()) + margin - self.x0 + 1, int(iy.max()) + margin - self.y0 + 1
        gx = torch.arange(self.x0, self.x0 + nx, device=ix.device)
        gy = torch.arange(self.y0, self.y0 + ny, device=ix.device)
        self.nx = nx
        self.tables = [hash_float(gx[None, :], gy[:, None], seed + k).reshape(-1) for k in range(n)]

    def index(self, ix: torch.Tensor, iy: torch.Tensor) -> torch.Tensor:
        return (iy - self.y0) * self.nx + (ix - self.x0)

    def get(self, k: int, idx: torch.Tensor) -> torch.Tensor:
        return self.tables[k].take(idx)


def _fade(t: torch.Tensor) -> torch.Tensor:
    return t * t * (3.0 - 2.0 * t)


def value_noise(x: torch.Tensor, y: torch.Tensor, seed: int) -> torch.Tensor:
    """Smooth value noise with unit lattice spacing, values in [0, 1]."""
    fx, fy = torch.floor(x), torch.floor(y)
    ix, iy = fx.long(), fy.long()
    tx, ty = _fade(x - fx), _fade(y - fy)
    lat = _Lattice(ix, iy, seed, 1, 1)
    i = lat.index(ix, iy)
    a, b = lat.get(0, i), lat.get(0, i + 1)
    c, d = lat.get(0, i + lat.nx), lat.get(0, i + lat.nx + 1)
    return torch.lerp(torch.lerp(a, b, tx), torch.lerp(c, d, tx), ty)


def fbm(x: torch.Tensor, y: torch.Tensor, seed: int, octaves: int = 4, lacunarity: float = 2.0, gain: float = 0.5) -> torch.Tensor:
    """Fractal sum of value noise, zero-mean-ish, roughly in [-1, 1]."""
    out = torch.zeros_like(x)
    amp, freq, norm = 1.0, 1.0, 0.0
    for o in range(octaves):
        out += amp * (value_noise(x * freq, y * freq, seed + 7919 * o) * 2.0 - 1.0)
        norm += amp
        amp *= gain
        freq *= lacunarity
    return out / norm


def worley(x: torch.Tensor, y: torch.Tensor, seed: int, jitter: float = 0.9):
    """Cellular noise, one feature point per unit cell.

    Returns (d1, d2, cell_hash): distances to the nearest and second-nearest points (lattice units)
    and a uniform [0, 1) id of the nearest point's cell (for per-feature random size / presence).
    """
    fx, fy = torch.floor(x), torch.floor(y)
    ix, iy = fx.long(), fy.long()
    rx, ry = x - fx, y - fy
    lat = _Lattice(ix, iy, seed, 3, 1)
    base = lat.index(ix, iy)
    d1 = torch.full_like(x, 1e9)
    d2, idn = d1.clone(), torch.zeros_like(x)
    for oy in (-1, 0, 1):
        for ox in (-1, 0, 1):
            i = base + (oy * lat.nx + ox)
            px = (ox + 0.5 - 0.5 * jitter) + jitter * lat.get(0, i) - rx
            py = (oy + 0.5 - 0.5 * jitter) + jitter * lat.get(1, i) - ry
            d = torch.sqrt(px * px + py * py)
            closer = d < d1
            d2 = torch.where(closer, d1, torch.minimum(d2, d))
            idn = torch.where(closer, lat.get(2, i), idn)
            d1 = torch.where(closer, d, d1)
    return d1, d2, idn


def smoothstep(e0: float, e1: float, x: torch.Tensor) -> torch.Tensor:
    t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)
