"""Hash-grid encoding: spec /work/shared/specs/backends.md §A and CPU tests 1-3 of §D.

Known answers are worked by hand from the spec; a scalar pure-Python transcription of A3 (`_reference`)
cross-checks the vectorised TorchGrid on random and out-of-range inputs.
"""

from __future__ import annotations

import io
import math
import sys
import types
import warnings
from fractions import Fraction

import numpy as np
import pytest
import torch

from uhrtex.common import backends
from uhrtex.networks import HashGridConfig, HashGridEncoding
from uhrtex.networks import hash_encoding as he
from uhrtex.networks.hash_encoding import TcnnGrid, TorchGrid, grid_layout

KAT = dict(n_levels=2, n_features_per_level=2, log2_hashmap_size=3, base_resolution=2, per_level_scale=2.0)
U32 = 0xFFFFFFFF


def _grid(config: dict, params: torch.Tensor) -> TorchGrid:
    grid = TorchGrid(config)
    grid.params.data = params.clone()
    return grid


def _reference(x: tuple[float, float], params: list[float], cfg: HashGridConfig, fp32: bool = False) -> list[float]:
    """Spec A3 in scalar Python: Python ints for uint32; p = fma(scale, x, 0.5) rounded to fp32 exactly
    when `fp32`, else float64 arithmetic (what TorchGrid does for float64 inputs)."""
    lay, F = grid_layout(cfg), cfg.n_features_per_level
    out = []
    for level in range(cfg.n_levels):
        s, res, size, off = lay.scales[level], lay.resolutions[level], lay.sizes[level], lay.offsets[level]
        p = [_fma_f32(s, xd) if fp32 else s * xd + 0.5 for xd in x]
        g = [math.floor(pd) for pd in p]
        t = [pd - gd for pd, gd in zip(p, g)]
        if cfg.interpolation == "Smoothstep":
            t = [td * td * (3.0 - 2.0 * td) for td in t]
        corners = [(0, 0)] if cfg.interpolation == "Nearest" else [(0, 0), (1, 0), (0, 1), (1, 1)]
        acc = [0.0] * F
        for c0, c1 in corners:
            k0, k1 = (g[0] + c0) & U32, (g[1] + c1) & U32
            h = k0 ^ ((k1 * 2654435761) & U32) if lay.hashed[level] else (k0 + k1 * res) & U32
            e = h % size
            w = 1.0 if len(corners) == 1 else (t[0] if c0 else 1 - t[0]) * (t[1] if c1 else 1 - t[1])
            for f in range(F):
                acc[f] += w * params[(off + e) * F + f]
        out += acc
    return out


# --- 1. layouts ------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "overrides, res, sizes, offsets, hashed, n_params",
    [
        (dict(per_level_scale=2.0), (16, 32, 64, 128), (256, 1024, 4096, 16384), (0, 256, 1280, 5376, 21760), (0, 0, 0, 0), 43520),
        (dict(per_level_scale=2.0, log2_hashmap_size=12), (16, 32, 64, 128), (256, 1024, 4096, 4096), (0, 256, 1280, 5376, 9472), (0, 0, 0, 1), 18944),
        (dict(per_level_scale=2.0, base_resolution=5), (5, 10, 20, 40), (32, 104, 400, 1600), (0, 32, 136, 536, 2136), (0, 0, 0, 0), 4272),
        ({}, (16, 64, 256, 1024), (256, 4096, 65536, 524288), (0, 256, 4352, 69888, 594176), (0, 0, 0, 1), 1188352),
        (KAT, (2, 4), (8, 8), (0, 8, 16), (0, 1), 32),
    ],
    ids=["base16-scale2", "log2T12", "base5", "project-default", "kat"],
)
def test_layouts(overrides, res, sizes, offsets, hashed, n_params):
    cfg = HashGridConfig(**overrides)
    lay = grid_layout(cfg)
    assert lay.resolutions == res and lay.sizes == sizes and lay.offsets == offsets
    assert lay.hashed == tuple(bool(h) for h in hashed)
    assert lay.n_params == n_params == TorchGrid(cfg).params.numel()
    assert lay.scales == tuple(float(r - 1) for r in res)  # power-of-two scales are exact


def test_base5_padding_and_project_default_geometry():
    lay = grid_layout(dict(per_level_scale=2.0, base_resolution=5))
    assert lay.sizes[0] - lay.resolutions[0] ** 2 == 7
    enc = HashGridEncoding(backend="torch")
    assert enc.n_output_dims == 8 and enc.config.to_tcnn() == {
        "otype": "HashGrid", "n_levels": 4, "n_features_per_level": 2, "log2_hashmap_size": 19,
        "base_resolution": 16, "per_level_scale": 4.0, "interpolation": "Linear",
    }


def test_config_validation():
    cfg = HashGridConfig.from_dict({"otype": "Grid", "type": "hash", "interpolation": "smoothstep", "n_features": 8,
                                    "stochastic_interpolation": False, "fixed_point_pos": False, "hash": "CoherentPrime"})
    assert (cfg.otype, cfg.interpolation, cfg.n_levels) == ("HashGrid", "Smoothstep", 4)
    bad = [
        ({"n_level": 4}, "valid keys: otype, n_levels"),
        ({"stochastic_interpolation": True}, "stochastic_interpolation"),
        ({"fixed_point_pos": True}, "fixed_point_pos"),
        ({"otype": "DenseGrid"}, "use otype 'HashGrid'"),
        ({"hash": "Prime"}, "CoherentPrime"),
        ({"interpolation": "cubic"}, "Linear, Nearest, Smoothstep"),
        ({"n_features_per_level": 3}, "1, 2, 4 or 8"),
        ({"n_levels": 4, "n_features": 8}, "not both"),
        ({"per_level_scale": 0}, "positive"),
    ]
    for d, fragment in bad:
        with pytest.raises(ValueError) as err:
            HashGridConfig.from_dict(d)
        assert fragment in str(err.value) and "\n" not in str(err.value)


# --- 2. known answers (spec D test 2, then wrap / Smoothstep / Nearest variants) ---------------

def test_grid_known_answer():
    x = torch.tensor([[0.3, 0.6]], dtype=torch.float64)
    y64 = _grid(KAT, torch.arange(32, dtype=torch.float64))(x)
    torch.testing.assert_close(y64, torch.tensor([[6.0, 7.0, 19.48, 20.48]], dtype=torch.float64), rtol=0, atol=1e-12)
    y32 = _grid(KAT, torch.arange(32.0))(x.float())
    assert y32.dtype == torch.float32
    torch.testing.assert_close(y32, torch.tensor([[6.0, 7.0, 19.48, 20.48]]), rtol=0, atol=4e-6)


@pytest.mark.parametrize("level, expected", [(0, {2: 0.18, 3: 0.72, 4: 0.02, 5: 0.08}), (1, {3: 0.42, 0: 0.28, 2: 0.18, 1: 0.12})])
def test_known_answer_corner_entries(level, expected):
    """Probe one entry at a time: level 0 reaches padding entries 4, 5 by wrap; level 1 is hashed."""
    x = torch.tensor([[0.3, 0.6]], dtype=torch.float64)
    for e in range(8):
        params = torch.zeros(32, dtype=torch.float64)
        params[(8 * level + e) * 2] = 1.0
        y = _grid(KAT, params)(x)[0]
        assert y[2 * level].item() == pytest.approx(expected.get(e, 0.0), abs=1e-12), e
        assert y.abs().sum().item() == pytest.approx(expected.get(e, 0.0), abs=1e-12)


def test_wrap_at_x_equals_one():
    # KAT: level 0 p = 1.5 -> corners (1,1),(2,1),(1,2),(2,2) -> entries 3,4,5,6; level 1 p = 3.5 ->
    # hashed (3^3, 4^3, 3^4, 4^4) mod 8 = 0,7,7,0. All weights 1/4.
    y = _grid(KAT, torch.arange(32, dtype=torch.float64))(torch.tensor([[1.0, 1.0]], dtype=torch.float64))
    assert y[0].tolist() == [9.0, 10.0, 23.0, 24.0]
    # Single dense 16x16 level with P = 256 exactly: x=(1,1) reaches k=16 -> h = 255, 256, 271, 272,
    # wrapped to 255, 0, 15, 16 (a clamped index would give 255 everywhere). x=(1,0) wraps into row 1.
    grid = _grid(dict(n_levels=1), torch.arange(512, dtype=torch.float64))
    y = grid(torch.tensor([[1.0, 1.0], [1.0, 0.0]], dtype=torch.float64))
    assert y.tolist() == [[2 * 71.5, 2 * 71.5 + 1], [2 * 23.5, 2 * 23.5 + 1]]
    y32 = _grid(dict(n_levels=1), torch.arange(512.0))(torch.tensor([[1.0, 1.0]]))
    assert y32.tolist() == [[143.0, 144.0]]


def test_smoothstep_and_nearest_known_answers():
    x = torch.tensor([[0.3, 0.6], [1.0, 1.0]], dtype=torch.float64)
    params = torch.arange(32, dtype=torch.float64)
    # Smoothstep s(t) = t^2(3-2t): level 0 s(.8)=.896, s(.1)=.028 -> weights .101088/.870912/.002912/.025088;
    # level 1 s(.4)=.352, s(.3)=.216 -> .508032/.275968/.139968/.076032. At t=.5 s=.5: same as Linear.
    y = _grid({**KAT, "interpolation": "Smoothstep"}, params)(x)
    torch.testing.assert_close(y, torch.tensor([[5.904, 6.904, 19.760128, 20.760128], [9.0, 10.0, 23.0, 24.0]],
                                               dtype=torch.float64), rtol=0, atol=1e-12)
    # Nearest: vertex floor(p) = round(scale·x): level 0 (0,1) -> entry 2; level 1 (1,2) -> 1^2 = 3.
    # At x=1: level 0 (1,1) -> 3; level 1 (3,3) -> 0.
    y = _grid({**KAT, "interpolation": "Nearest"}, params)(x)
    assert y.tolist() == [[4.0, 5.0, 22.0, 23.0], [6.0, 7.0, 16.0, 17.0]]


@pytest.mark.parametrize("config", [dict(log2_hashmap_size=12), dict(per_level_scale=2.0, base_resolution=5),
                                    dict(per_level_scale=1.5, log2_hashmap_size=8), dict(interpolation="Smoothstep", log2_hashmap_size=12),
                                    dict(interpolation="Nearest", log2_hashmap_size=12)],
                         ids=["2-hashed-levels", "base5", "scale1.5", "smoothstep", "nearest"])
def test_matches_scalar_reference(config):
    """Random points in [0, 1] (int32 fast path) and out of range (negative floors: uint32 wrap path)."""
    cfg = HashGridConfig(**config)
    gen = torch.Generator().manual_seed(0)
    inside = torch.cat([torch.rand(40, 2, generator=gen, dtype=torch.float64),
                        torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)])
    outside = torch.cat([torch.rand(20, 2, generator=gen, dtype=torch.float64) * 6 - 3,
                         torch.tensor([[-1.0, 2.0], [-1e-3, 1.0]], dtype=torch.float64)])
    params = torch.rand(grid_layout(cfg).n_params, generator=gen, dtype=torch.float64) * 2 - 1
    plist = params.tolist()
    grid = _grid(config, params)
    for x in (inside, outside):
        ref = torch.tensor([_reference(tuple(p), plist, cfg) for p in x.tolist()], dtype=torch.float64)
        torch.testing.assert_close(grid(x), ref, rtol=0, atol=1e-12)
    # fp32: the reference rounds p with an exact single-rounding fma; the rest is float64.
    grid32 = _grid(config, params.float())
    x = torch.cat([inside, outside]).float()
    ref = torch.tensor([_reference(tuple(p), params.float().tolist(), cfg, fp32=True) for p in x.tolist()], dtype=torch.float64)
    torch.testing.assert_close(grid32(x).double(), ref, rtol=0, atol=2e-6)


def _fma_f32(scale: float, x: float) -> float:
    """float32(scale·x + 0.5) rounded once, exactly (Fraction arithmetic), ties to even."""
    q = Fraction(scale) * Fraction(x) + Fraction(1, 2)
    if q == 0:
        return 0.0
    mag = abs(q)
    e = mag.numerator.bit_length() - mag.denominator.bit_length()
    e += 1 if Fraction(2) ** e <= mag else 0
    while Fraction(2) ** (e - 1) > mag:
        e -= 1  # now 2^(e-1) <= mag < 2^e
    ulp = Fraction(2) ** (max(e, -125) - 24)
    return float(round(q / ulp) * ulp)


def test_offset_is_a_single_rounding_fma():
    rng = np.random.default_rng(0)
    # The last value sits just off an fp32 rounding midpoint at scale 11.0045... (base 3, per_level_scale
    # 1.26, level 6): computing scale·x + 0.5 in float64 and then rounding to fp32 rounds twice and is wrong.
    xs = np.concatenate([rng.random(1000), 10.0 ** rng.uniform(-9, -2, 1000), -(10.0 ** rng.uniform(-9, -2, 500)),
                         [0.0, 1.0, 2.0**-30, 1.0 - 2.0**-24, 2.708191226830081e-09]]).astype(np.float32)
    x = torch.from_numpy(xs)
    naive_differs = double_rounding = 0
    for lay in (grid_layout({}), grid_layout(dict(base_resolution=3, per_level_scale=1.26, n_levels=7))):
        pos = he._Positions(torch.cat([x, x[:1]]).view(2, -1), lay)  # internal: per level floor(p) and t
        for level, scale in enumerate(lay.scales):
            t = torch.empty(2, (len(xs) + 1) // 2)
            fl = pos(scale, t).view(-1)[: len(xs)].numpy()
            want = np.array([_fma_f32(scale, float(v)) for v in xs], dtype=np.float32)
            assert np.array_equal(fl, np.floor(want)), (lay, level)
            assert np.array_equal(t.view(-1)[: len(xs)].numpy(), want - np.floor(want)), (lay, level)  # fp32 subtract
            naive_differs += int((np.float32(scale) * xs + np.float32(0.5) != want).sum())
            double_rounding += int(((np.float64(scale) * xs + 0.5).astype(np.float32) != want).sum())
    assert naive_differs > 0 and double_rounding > 0  # the inputs separate fma from both shortcuts


# --- 3. gradients ----------------------------------------------------------------------------

def _away_from_grid_lines(cfg: HashGridConfig, n: int, seed: int) -> torch.Tensor:
    """Points whose p = scale·x + 0.5 is >= 1e-3 from an integer at every level (finite differences
    must not cross a cell boundary, where the encoding's derivative jumps)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(8 * n, 2, generator=gen, dtype=torch.float64)
    keep = torch.ones(len(x), dtype=torch.bool)
    for s in grid_layout(cfg).scales:
        p = s * x + 0.5
        keep &= ((p - p.round()).abs() > 1e-3).all(1)
    return x[keep][:n].clone()


@pytest.mark.parametrize("config", [KAT, {**KAT, "interpolation": "Smoothstep"}, dict(n_levels=3, per_level_scale=2.0, base_resolution=5, log2_hashmap_size=6)],
                         ids=["linear", "smoothstep", "base5-hashed"])
def test_gradcheck(config):
    cfg = HashGridConfig(**config)
    grid = TorchGrid(cfg)
    x = _away_from_grid_lines(cfg, 12, seed=1).requires_grad_()
    params = (torch.rand(grid.layout.n_params, dtype=torch.float64) * 2 - 1).requires_grad_()
    fn = lambda x, p: torch.func.functional_call(grid, {"params": p}, (x,))  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, params), eps=1e-6, atol=1e-7)


def test_nearest_gradients():
    grid = TorchGrid({**KAT, "interpolation": "Nearest"})
    x = _away_from_grid_lines(grid.config, 6, seed=2).requires_grad_()
    params = (torch.rand(32, dtype=torch.float64) * 2 - 1).requires_grad_()
    fn = lambda x, p: torch.func.functional_call(grid, {"params": p}, (x,))  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, params), eps=1e-6, atol=1e-7)
    fn(x, params).sum().backward()
    assert x.grad.abs().sum() == 0


def test_fp32_gradients_match_float64():
    """The fp32 path (fma emulation, int32 index fast path) against the float64 path."""
    grid = TorchGrid(dict(log2_hashmap_size=12))
    x = _away_from_grid_lines(grid.config, 200, seed=3).float().double()  # same x in both precisions
    w = torch.randn(len(x), grid.n_output_dims, dtype=torch.float64)
    grads = []
    for dtype in (torch.float32, torch.float64):
        xi = x.to(dtype).requires_grad_()
        p = grid.params.detach().to(dtype).mul(1e4).requires_grad_()
        (torch.func.functional_call(grid, {"params": p}, (xi,)) * w.to(dtype)).sum().backward()
        grads.append((xi.grad.double(), p.grad.double()))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * b.abs().max().item())


# --- module behaviour ------------------------------------------------------------------------

def test_init_range_and_param_key():
    grid = TorchGrid()
    p = grid.params
    assert list(grid.state_dict()) == ["params"] and p.dtype == torch.float32 and p.requires_grad
    assert p.abs().max().item() <= 1e-4 and p.std().item() == pytest.approx(1e-4 / math.sqrt(3), rel=0.02)


def test_image_layout_equals_points_and_clamps():
    enc = HashGridEncoding(dict(log2_hashmap_size=10), backend="torch")
    enc.grid.params.data.uniform_(-1, 1)
    uv = torch.rand(2, 2, 5, 7) * 1.6 - 0.3  # some out of [0, 1]: clamped
    y = enc(uv)
    assert y.shape == (2, 8, 5, 7) and y.is_contiguous()
    pts = uv.permute(0, 2, 3, 1).reshape(-1, 2)
    torch.testing.assert_close(y.permute(0, 2, 3, 1).reshape(-1, 8), enc(pts), rtol=0, atol=0)
    torch.testing.assert_close(enc(pts), enc(pts.clamp(0, 1)), rtol=0, atol=0)
    assert enc(uv[:1]).shape == (1, 8, 5, 7)
    with pytest.raises(ValueError, match="B×2×H×W or \\[N, 2\\]"):
        enc(torch.rand(1, 3, 4, 4))


def test_training_step_reaches_params_and_uv():
    enc = HashGridEncoding(backend="torch")
    uv = torch.rand(1, 2, 16, 16, requires_grad=True)
    enc(uv).square().sum().backward()
    assert enc.grid.params.grad is not None and enc.grid.params.grad.abs().sum() > 0 and uv.grad is not None


def test_checkpoint_round_trip_and_config_mismatch():
    cfg = HashGridConfig(log2_hashmap_size=12)
    a, b = HashGridEncoding(cfg, backend="torch"), HashGridEncoding(cfg.to_dict(), backend="torch")
    sd = a.state_dict()
    assert set(sd) == {"grid.params", "_extra_state"} and sd["_extra_state"]["backend"] == "torch"
    buf = io.BytesIO()
    torch.save(sd, buf)
    buf.seek(0)
    b.load_state_dict(torch.load(buf))
    uv = torch.rand(1, 2, 8, 8)
    assert torch.equal(a(uv), b(uv)) and b.checkpoint_backend == "torch"
    # A checkpoint trained with tcnn loads into the torch backend (same `params` key and layout).
    b.load_state_dict({**sd, "_extra_state": {**sd["_extra_state"], "backend": "tcnn"}})
    assert b.checkpoint_backend == "tcnn"
    for other in (HashGridConfig(log2_hashmap_size=13), HashGridConfig(log2_hashmap_size=12, interpolation="Smoothstep")):
        c = HashGridEncoding(other, backend="torch")
        before = c.grid.params.detach().clone()
        with pytest.raises(ValueError) as err:
            c.load_state_dict(sd)
        msg = str(err.value)
        assert "\n" not in msg and str(cfg.to_dict()) in msg and str(other.to_dict()) in msg
        assert torch.equal(c.grid.params, before)  # refused before any tensor was copied


def test_auto_falls_back_to_torch_on_cpu_with_one_warning(monkeypatch):
    monkeypatch.delenv("UHRTEX_HASHGRID_BACKEND", raising=False)
    monkeypatch.setattr(backends, "_warned", set())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        encs = [HashGridEncoding(backend="auto"), HashGridEncoding(backend="auto", device="cpu")]
    assert [e.backend for e in encs] == ["torch", "torch"]
    assert len(caught) == 1 and "pure-torch" in str(caught[0].message)
    with pytest.raises(backends.BackendUnavailable):
        HashGridEncoding(backend="tcnn")


class _FakeTcnnEncoding(torch.nn.Module):
    """Stands in for tinycudann.Encoding (CPU): fp32 `params`, [B, 2] -> half [B, L·F]."""

    def __init__(self, n_input_dims, encoding_config, seed=1337, dtype=None):
        super().__init__()
        assert n_input_dims == 2 and dtype == torch.float32
        self.config = encoding_config
        self._ref = TorchGrid(encoding_config)
        self.params = torch.nn.Parameter(self._ref.params.detach().clone())

    def forward(self, x):
        assert x.dim() == 2 and x.is_contiguous()
        return torch.func.functional_call(self._ref, {"params": self.params}, (x,)).half()


def test_tcnn_wrapper_plumbing_with_a_fake_module(monkeypatch):
    monkeypatch.setitem(sys.modules, "tinycudann", types.SimpleNamespace(Encoding=_FakeTcnnEncoding))
    cfg = HashGridConfig(log2_hashmap_size=10)
    tg, ref = TcnnGrid(cfg), TorchGrid(cfg)
    assert list(tg.state_dict()) == ["params"] and tg._enc.config == cfg.to_tcnn()
    ref.params.data.uniform_(-1, 1)
    tg.load_state_dict(ref.state_dict())  # a torch-trained checkpoint loads into the tcnn wrapper
    x = torch.rand(3, 5, 2)
    y = tg(x)
    assert y.shape == (3, 5, 8) and y.dtype == torch.float32
    torch.testing.assert_close(y, ref(x), rtol=0, atol=2e-3)


def test_int64_index_path_and_empty_input(monkeypatch):
    """Tables too big for int32 indices take the int64 path; check it on a small table instead."""
    cfg = HashGridConfig(log2_hashmap_size=10, interpolation="Smoothstep")
    grid = TorchGrid(cfg)
    grid.params.data.uniform_(-1, 1)
    x = torch.cat([torch.rand(50, 2), torch.rand(10, 2) * 4 - 2])
    outs = []
    for dtype in (torch.int32, torch.int64):
        monkeypatch.setattr(he, "_index_dtype", lambda layout, dtype=dtype: dtype)
        xi = x.clone().requires_grad_()
        grid.params.grad = None
        y = grid(xi)
        y.square().sum().backward()
        outs.append((y, xi.grad, grid.params.grad))
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    enc = HashGridEncoding(cfg, backend="torch")
    assert enc(torch.zeros(0, 2)).shape == (0, 8) and enc(torch.zeros(2, 2, 0, 3)).shape == (2, 8, 0, 3)
