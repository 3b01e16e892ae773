"""Multiresolution hash-grid encoding of 2-D points: tiny-cuda-nn `HashGrid`, plus an exact torch fallback.

Spec: /work/shared/specs/backends.md, sections A (geometry and forward), B (bindings) and D (design).

* `HashGridConfig`: the tcnn encoding config, validated; `to_tcnn()` gives the dict tcnn wants.
* `grid_layout(config)`: per-level scale, resolution, table size P_l, offsets, n_params, hashed levels.
* `TorchGrid`: tcnn's fp32 forward reproduced in plain torch (fma +0.5 offset, uint32 corner arithmetic,
  CoherentPrime hash, dense wraparound, no clamping, level-major output). Param key `params`.
* `TcnnGrid`: thin wrapper of `tinycudann.Encoding`, imported only when chosen. Same `params` key.
* `HashGridEncoding`: what models use. Picks a backend with `uhrtex.backends.resolve`, takes B×2×H×W UV
  maps or [N, 2] points, clamps to [0, 1] (spec A5), returns B×(L·F)×H×W or [N, L·F].
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from typing import Any
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn
from torch.autograd.function import once_differentiable

from uhrtex import backends

__all__ = ["HashGridConfig", "GridLayout", "grid_layout", "TorchGrid", "TcnnGrid", "HashGridEncoding"]

_PRIME_Y = 2654435761  # CoherentPrime: axis 0's prime is 1, axis 1's is this
_U32 = 0xFFFFFFFF
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
# Torch forward. Points are "planar" ([2, N]) and features [L·F, N] internally: the memory order of
# a 1×2×H×W UV map and of a 1×C×H×W output, so the image path needs no transposes. Work streams one
# level at a time (a level's temporaries stay small) and gathers from that level's slice of the table,
# so indices are level-local and fit int32.

_SMALL = 2.0**-6  # |scale·x| below this: scale·x + 0.5 may be inexact in float64 (48-bit product)


class _Positions:
    """p = fma(scale, x, 0.5), one level at a time (streaming levels beats one [L, 2, N] float64 batch).

    For fp32 x this is tcnn's single-rounding fp32 fma: the product of two fp32 numbers is exact in
    float64, and so is adding 0.5 unless |scale·x| < 2^-6, so rounding that to fp32 is correct; the
    few points below are rounded by hand (a float64 sum there could round twice). float64 x (used by
    gradcheck) gets plain double arithmetic.
    """

    def __init__(self, xs: torch.Tensor, layout: GridLayout):
        self.fp32 = xs.dtype == torch.float32
        self.x = xs.to(torch.float64).contiguous()
        self.half = self.x.new_tensor(0.5)
        self.fix = None
        positive = [s for s in layout.scales if s > 0]
        if self.fp32 and positive:
            ax = xs.abs().reshape(-1)
            sel = ((ax < _SMALL / min(positive)) & (ax > 0)).nonzero().squeeze(1)
            if sel.numel():
                self.fix = (sel, self.x.view(-1)[sel])  # candidates: small |x| at the smallest scale

    def __call__(self, scale: float, t_out: torch.Tensor) -> torch.Tensor:
        """Returns floor(p) [2, N] (float); writes t = p − floor(p) into t_out."""
        p = torch.addcmul(self.half, self.x, self.x.new_tensor(scale))  # 0.5 + x·scale, product exact
        if self.fp32:
            if self.fix is not None:
                sel, xv = self.fix
                q = xv * scale
                small = q.abs() < _SMALL
                q, sel = q[small], sel[small]
                # Result in (0.48, 0.52): round q to the fp32 spacing there (2^-24 above 0.5, 2^-25
                # below), half to even like the hardware; adding 0.5 is then exact.
                step = torch.where(q >= 0, 2.0**-24, 2.0**-25)
                p.view(-1)[sel] = torch.round(q / step) * step + 0.5
            p = p.float()
        fl = torch.floor(p)
        torch.sub(p, fl, out=t_out)
        return fl


def _mul_u32(k: torch.Tensor, m: int) -> torch.Tensor:
    """(k·m) mod 2^32 for 0 <= k < 2^32 without int64 overflow: split k into 16-bit halves."""
    lo = (k & 0xFFFF) * m
    hi = (((k >> 16) * m) & 0xFFFF) << 16
    return (lo + hi) & _U32


_CORNERS = ((0, 0), (1, 0), (0, 1), (1, 1))  # corner c = c0 + 2·c1: bit d is axis d


def _level_indices(fl: torch.Tensor, level: int, layout: GridLayout, lo: float, hi: float, out: torch.Tensor) -> None:
    """Level-local table rows of the corners into out [K, N]: K = 4 (`_CORNERS` order), or 1 (Nearest).

    fl [2, N] is floor(p). tcnn works in uint32: k = (uint32)(int)floor(p) + c, dense h = k0 + k1·res,
    hashed h = k0 XOR (k1·prime), then h mod P. When every value provably stays below 2^31 (always,
    for clamped UVs) that is plain int32 arithmetic, which is what the fast path does; since hashed
    P is a power of two, only h mod P matters there and the prime is reduced mod P first. The
    general path emulates uint32 in int64 with masks, valid for any input.
    """
    res, size = layout.resolutions[level], layout.sizes[level]
    hashed = layout.hashed[level]
    mult = _PRIME_Y % size if hashed else res
    corners = _CORNERS[: out.shape[0]]
    fast = out.dtype == torch.int32 and lo >= 0 and (hi + 1) * (mult + 1) < 2**31
    if fast:
        g = fl.to(torch.int32)
        if hashed:
            mask = size - 1
            k0 = [g[0] & mask, (g[0] + 1).bitwise_and_(mask)]
            m = [g[1].mul(mult).bitwise_and_(mask)]
            m.append((m[0] + mult).bitwise_and_(mask))  # (k1+1)·prime ≡ k1·prime + prime (mod P)
            for i, (c0, c1) in enumerate(corners):
                torch.bitwise_xor(k0[c0], m[c1], out=out[i])
            return
        base = torch.add(g[0], g[1], alpha=res)  # k0 + k1·res
        for i, (c0, c1) in enumerate(corners):
            torch.add(base, c0 + c1 * res, out=out[i])
        if (hi + 1) * (res + 1) >= size:  # the +0.5 offset lets x=1 reach k = res: "wraparound" (A4)
            sel = (base >= size - res - 1).nonzero().squeeze(1)  # only points near the top/right edges
            if sel.numel():
                out[:, sel] = out[:, sel].remainder(size)
        return
    g = fl.to(torch.int64) & _U32  # (uint32)(int)floor(p): negative floors wrap
    for i, (c0, c1) in enumerate(corners):
        k0, k1 = (g[0] + c0) & _U32, (g[1] + c1) & _U32
        if hashed:
            h = (k0 ^ _mul_u32(k1, _PRIME_Y)) & (size - 1)
        else:
            h = ((k0 + _mul_u32(k1, res)) & _U32).remainder_(size)
        out[i] = h


def _interp(t: torch.Tensor, interpolation: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Interpolant a(t) and da/dt (None for Linear, where it is 1)."""
    if interpolation == "Smoothstep":
        return t * t * (3.0 - 2.0 * t), 6.0 * t * (1.0 - t)
    return t, None


def _weights(a: torch.Tensor) -> torch.Tensor:
    """Bilinear corner weights [4, N] from a [2, N]: w_c = f0[c0]·f1[c1] (tcnn's order, axis 0 first)."""
    b = 1.0 - a
    w = torch.empty(4, a.shape[1], dtype=a.dtype, device=a.device)
    torch.mul(b[0], b[1], out=w[0])
    torch.mul(a[0], b[1], out=w[1])
    torch.mul(b[0], a[1], out=w[2])
    torch.mul(a[0], a[1], out=w[3])
    return w


_WIDE = {4: torch.int32, 8: torch.int64, 16: torch.complex128}


class _Rows:
    """Gathers whole table rows (F features). When a row is 4, 8 or 16 bytes it is viewed as one wide
    element, so one 1-D index_select fetches all features (about 2x faster than one per feature)."""

    def __init__(self, params: torch.Tensor, F: int):
        self.F, self.dtype = F, params.dtype
        self.wide = _WIDE.get(F * params.element_size())
        self.rows = params.view(self.wide) if self.wide is not None else params.view(-1, F)

    def gather(self, off: int, size: int, idx: torch.Tensor) -> torch.Tensor:
        """[K, N] level-local rows -> values [K, N, F]."""
        v = self.rows[off : off + size].index_select(0, idx.view(-1))
        return (v.view(self.dtype) if self.wide is not None else v).view(*idx.shape, self.F)


def _index_dtype(layout: GridLayout) -> torch.dtype:
    return torch.int32 if 2 * max(layout.sizes) < 2**31 else torch.int64


class _GridFunction(torch.autograd.Function):
    """index_select gathers forward, index_add_ scatters backward (far faster than autograd's generic
    gather backward); the input gradient re-gathers corner values instead of storing them."""

    @staticmethod
    def forward(ctx, xs, params, layout: GridLayout, interpolation: str):  # xs [2, N]; params same dtype
        F, L, N = layout.n_features_per_level, layout.n_levels, xs.shape[1]
        K = 1 if interpolation == "Nearest" else 4
        rows = _Rows(params, F)
        t_all = torch.empty(L, 2, N, dtype=params.dtype, device=params.device)
        idx_all = torch.empty(L, K, N, dtype=_index_dtype(layout), device=params.device)
        out = torch.empty(L, F, N, dtype=params.dtype, device=params.device)
        positions = _Positions(xs, layout)
        for level in range(L):
            fl = positions(layout.scales[level], t_all[level])
            lo, hi = torch.stack(torch.aminmax(fl)).tolist() if N else (0.0, 0.0)  # picks the index path
            idx = idx_all[level]
            _level_indices(fl, level, layout, lo, hi, idx)
            w = None if K == 1 else _weights(_interp(t_all[level], interpolation)[0])
            vals = rows.gather(layout.offsets[level], layout.sizes[level], idx)  # [K, N, F]
            for f in range(F):
                o = out[level, f]
                if w is None:
                    o.copy_(vals[0, :, f])
                else:  # Σ_c w_c·value_c, corners in order
                    torch.mul(vals[0, :, f], w[0], out=o)
                    for c in range(1, K):
                        o.addcmul_(vals[c, :, f], w[c])
        ctx.save_for_backward(params, t_all, idx_all)
        ctx.layout, ctx.interpolation = layout, interpolation
        return out.view(L * F, N)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        params, t_all, idx_all = ctx.saved_tensors
        layout, interpolation = ctx.layout, ctx.interpolation
        F, L, K, N = layout.n_features_per_level, layout.n_levels, idx_all.shape[1], t_all.shape[-1]
        grad = grad.reshape(L, F, N).contiguous()
        want_x, want_p = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        gp = torch.zeros(F, layout.n_entries, dtype=params.dtype, device=params.device) if want_p else None
        gx = torch.zeros(2, N, dtype=t_all.dtype, device=t_all.device) if want_x else None
        rows = _Rows(params, F) if want_x and K == 4 else None
        for level in range(L):
            off, size = layout.offsets[level], layout.sizes[level]
            idx = idx_all[level].view(-1)
            a, da = _interp(t_all[level], interpolation)
            w = None if K == 1 else _weights(a)
            if want_p:
                for f in range(F):
                    src = grad[level, f].unsqueeze(0) if w is None else w * grad[level, f]
                    gp[f, off : off + size].index_add_(0, idx, src.view(-1))
            if rows is not None:  # ∂y/∂x_d = scale·da/dt·Σ_c ∂w_c/∂a_d·(Σ_f grad_f·value_cf)
                vals = rows.gather(off, size, idx_all[level])
                dv = vals[..., 0] * grad[level, 0]
                for f in range(1, F):
                    dv.addcmul_(vals[..., f], grad[level, f])
                d0, d1, d2, d3 = dv.unbind(0)
                ga = torch.stack([torch.lerp(d1 - d0, d3 - d2, a[1]), torch.lerp(d2 - d0, d3 - d1, a[0])])
                if da is not None:
                    ga.mul_(da)
                gx.add_(ga, alpha=layout.scales[level])
        grad_params = gp.t().reshape(-1) if want_p else None
        return gx, grad_params, None, None


class TorchGrid(nn.Module):
    """Pure-torch tcnn HashGrid (2-D). `forward(x[..., 2]) -> [..., L·F]`; `encode_planar([2, N]) -> [L·F, N]`."""

    def __init__(self, config: HashGridConfig | Mapping[str, Any] | None = None, device: torch.device | str | None = None):
        super().__init__()
        self.config = HashGridConfig.coerce(config)
        self.layout = grid_layout(self.config)
        self.n_input_dims = 2
        self.n_output_dims = self.config.n_output_dims
        # fp32 flat table like tcnn's `params`, padding included; tcnn's init range (spec A4).
        self.params = nn.Parameter(torch.empty(self.layout.n_params, device=device).uniform_(-1e-4, 1e-4))

    def encode_planar(self, xs: torch.Tensor) -> torch.Tensor:
        if xs.dim() != 2 or xs.shape[0] != 2:
            raise ValueError(f"TorchGrid.encode_planar expects points as [2, N], got {tuple(xs.shape)}")
        dtype = torch.float64 if torch.float64 in (xs.dtype, self.params.dtype) else torch.float32
        return _GridFunction.apply(xs.to(dtype), self.params.to(dtype), self.layout, self.config.interpolation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != 2:
            raise ValueError(f"TorchGrid expects points [..., 2], got {tuple(x.shape)}")
        y = self.encode_planar(x.reshape(-1, 2).t())
        return y.t().contiguous().view(*x.shape[:-1], self.n_output_dims)


class TcnnGrid(nn.Module):
    """`tinycudann.Encoding` in fp32, exposing its table as `params` (the same key as TorchGrid)."""

    def __init__(self, config: HashGridConfig | Mapping[str, Any] | None = None, device: torch.device | str | None = None):
        super().__init__()
        import tinycudann as tcnn  # lazy: importing it without a usable GPU raises OSError

        self.config = HashGridConfig.coerce(config)
        self.layout = grid_layout(self.config)
        self.n_input_dims = 2
        self.n_output_dims = self.config.n_output_dims
        dev = torch.device(device) if device is not None else None
        ctx = torch.cuda.device(dev) if dev is not None and dev.type == "cuda" else contextlib.nullcontext()
        with ctx:
            enc = tcnn.Encoding(2, self.config.to_tcnn(), dtype=torch.float32)
        # Keep the tcnn module unregistered so the state_dict key is `params`, not `enc.params`.
        object.__setattr__(self, "_enc", enc)
        self.params = enc.params
        if self.params.numel() != self.layout.n_params:
            raise RuntimeError(f"tinycudann made {self.params.numel()} params, the spec layout says {self.layout.n_params}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != 2:
            raise ValueError(f"TcnnGrid expects points [..., 2], got {tuple(x.shape)}")
        if self._enc.params is not self.params:  # e.g. after `grid.params = nn.Parameter(...)`
            self._enc.params = self.params
        y = self._enc(x.reshape(-1, 2).contiguous())
        return y.float().reshape(*x.shape[:-1], self.n_output_dims)


class HashGridEncoding(nn.Module):
    """Hash-encodes UV maps: B×2×H×W -> B×(L·F)×H×W, or [N, 2] -> [N, L·F]. UVs are clamped to [0, 1].

    The state_dict holds `grid.params` plus extra state {"backend", "config"}: a checkpoint records
    which backend trained it (loadable by either) and refuses to load into a different config.
    """

    def __init__(
        self,
        config: HashGridConfig | Mapping[str, Any] | None = None,
        backend: str = "auto",
        device: torch.device | str | None = None,
    ):
        super().__init__()
        self.config = HashGridConfig.coerce(config)
        self.backend = backends.resolve("hashgrid", backend, device)
        self.grid = (TcnnGrid if self.backend == "tcnn" else TorchGrid)(self.config, device=device)
        self.n_output_dims = self.config.n_output_dims
        self.checkpoint_backend: str | None = None  # set when a checkpoint is loaded

    def forward(self, uv: torch.Tensor) -> torch.Tensor:
        if uv.dim() == 2 and uv.shape[1] == 2:
            return self.grid(uv.clamp(0.0, 1.0))
        if uv.dim() != 4 or uv.shape[1] != 2:
            raise ValueError(f"HashGridEncoding expects UV as B×2×H×W or [N, 2], got shape {tuple(uv.shape)}")
        B, _, H, W = uv.shape
        uv = uv.clamp(0.0, 1.0)
        if self.backend == "torch":
            y = self.grid.encode_planar(uv.transpose(0, 1).reshape(2, -1))  # a view when B == 1
            return y.view(self.n_output_dims, B, H, W).transpose(0, 1).contiguous()
        y = self.grid(uv.permute(0, 2, 3, 1))
        return y.permute(0, 3, 1, 2).contiguous()

    def get_extra_state(self) -> dict[str, Any]:
        return {"backend": self.backend, "config": self.config.to_dict()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        # Runs before the child's `grid.params` is copied, so a mismatch leaves this module untouched.
        if not isinstance(state, Mapping) or "config" not in state:
            raise ValueError(f"hash-grid checkpoint extra state {state!r} has no 'config'; save it from a HashGridEncoding")
        theirs = HashGridConfig.coerce(state["config"])
        if theirs != self.config:
            raise ValueError(
                f"hash-grid checkpoint config {theirs.to_dict()} differs from this encoder's config "
                f"{self.config.to_dict()}; build the encoder with the checkpoint's config"
            )
        self.checkpoint_backend = state.get("backend")

    def extra_repr(self) -> str:
        return f"backend={self.backend}, config={self.config.to_dict()}"
