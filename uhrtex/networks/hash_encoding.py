"""Multiresolution hash-grid encoding of 2-D points: tiny-cuda-nn `HashGrid`, plus an exact torch fallback.

Spec: /work/shared/specs/backends.md, sections A (geometry and forward), B (bindings) and D (design).

* `HashGridConfig`, `grid_layout` (in `hash_config.py`): the validated tcnn config and the table layout.
* `TorchGrid`: tcnn's fp32 forward reproduced in plain torch (fma +0.5 offset, uint32 corner arithmetic,
  CoherentPrime hash, dense wraparound, no clamping, level-major output). Param key `params`.
* `TcnnGrid`: thin wrapper of `tinycudann.Encoding`, imported only when chosen. Same `params` key.
* `HashGridEncoding`: what models use. Picks a backend with `uhrtex.common.backends.resolve`, takes B×2×H×W UV
  maps or [N, 2] points, clamps to [0, 1] (spec A5), returns B×(L·F)×H×W or [N, L·F].
"""

from __future__ import annotations

import contextlib
from typing import Any
from collections.abc import Mapping

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from uhrtex.common import backends
from uhrtex.networks.hash_config import PRIME_Y, U32, GridLayout, HashGridConfig, grid_layout

__all__ = ["HashGridConfig", "GridLayout", "grid_layout", "TorchGrid", "TcnnGrid", "HashGridEncoding"]

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
    return (lo + hi) & U32


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
    mult = PRIME_Y % size if hashed else res
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
    g = fl.to(torch.int64) & U32  # (uint32)(int)floor(p): negative floors wrap
    for i, (c0, c1) in enumerate(corners):
        k0, k1 = (g[0] + c0) & U32, (g[1] + c1) & U32
        if hashed:
            h = (k0 ^ _mul_u32(k1, PRIME_Y)) & (size - 1)
        else:
            h = ((k0 + _mul_u32(k1, res)) & U32).remainder_(size)
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


class _Grid(nn.Module):
    """What both backends share: the validated config, its layout and the tcnn-style dims."""

    def __init__(self, config: HashGridConfig | Mapping[str, Any] | None = None):
        super().__init__()
        self.config = HashGridConfig.coerce(config)
        self.layout = grid_layout(self.config)
        self.n_input_dims = 2
        self.n_output_dims = self.config.n_output_dims


class TorchGrid(_Grid):
    """Pure-torch tcnn HashGrid (2-D). `forward(x[..., 2]) -> [..., L·F]`; `encode_planar([2, N]) -> [L·F, N]`."""

    def __init__(self, config: HashGridConfig | Mapping[str, Any] | None = None, device: torch.device | str | None = None):
        super().__init__(config)
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


class TcnnGrid(_Grid):
    """`tinycudann.Encoding` in fp32, exposing its table as `params` (the same key as TorchGrid)."""

    def __init__(self, config: HashGridConfig | Mapping[str, Any] | None = None, device: torch.device | str | None = None):
        super().__init__(config)
        import tinycudann as tcnn  # lazy: importing it without a usable GPU raises OSError

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
