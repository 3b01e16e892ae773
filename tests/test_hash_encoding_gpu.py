"""GPU checks G1-G4 of /work/shared/specs/backends.md §D: tinycudann against the torch HashGrid fallback.

    python -m pytest -m gpu tests/test_hash_encoding_gpu.py

Skipped (with the reason) without CUDA or a usable tinycudann. All configs use power-of-two
per_level_scale, which keeps tcnn's fast-math scale exact (spec A2 caveat).
"""

from __future__ import annotations

import pytest
import torch

from uhrtex.networks.hash_encoding import HashGridConfig, HashGridEncoding, TcnnGrid, TorchGrid, grid_layout


def _unusable() -> str | None:
    if not torch.cuda.is_available():
        return "CUDA is not available"
    try:
        import tinycudann  # noqa: F401
    except (ImportError, OSError) as e:  # OSError: installed but no usable GPU / arch (spec B)
        return f"tinycudann is not usable ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
    return None


_REASON = _unusable()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(_REASON is not None, reason=f"needs CUDA and tinycudann: {_REASON}")]

CONFIGS = {
    "project-default": HashGridConfig(),  # L=4, base 16, scale 4, log2T 19: finest level hashed
    "spec-default": HashGridConfig(per_level_scale=2.0),  # no level hashed
    "log2T12": HashGridConfig(per_level_scale=2.0, log2_hashmap_size=12),
    "smoothstep": HashGridConfig(interpolation="Smoothstep"),
    "base5": HashGridConfig(per_level_scale=2.0, base_resolution=5),
    "nearest": HashGridConfig(interpolation="Nearest"),
}


def _pair(cfg: HashGridConfig, dtype=torch.float32, seed: int = 0):
    """tcnn.Encoding and TorchGrid on CUDA holding the same params ~U(-1, 1)."""
    import tinycudann as tcnn

    native = tcnn.Encoding(2, cfg.to_tcnn(), dtype=dtype)
    ref = TorchGrid(cfg, device="cuda")
    assert native.params.numel() == grid_layout(cfg).n_params and native.n_output_dims == cfg.n_output_dims
    gen = torch.Generator(device="cuda").manual_seed(seed)
    params = torch.rand(ref.params.numel(), device="cuda", generator=gen) * 2 - 1
    with torch.no_grad():
        native.params.copy_(params)
        ref.params.copy_(params)
    return native, ref


def _points(cfg: HashGridConfig, n: int = 2**16, seed: int = 0) -> torch.Tensor:
    """Random points plus 0, 1 and values on/next to every level's grid lines (p = scale·x + 0.5 integer)."""
    gen = torch.Generator(device="cuda").manual_seed(seed)
    x = torch.rand(n, 2, device="cuda", generator=gen)
    special = [0.0, 1.0, 0.5, 1.0 - 2.0**-24, 2.0**-24]
    for s in grid_layout(cfg).scales:
        for k in range(1, int(s) + 1, max(1, int(s) // 7)):
            special.append((k - 0.5) / s)
    sp = torch.tensor(special, device="cuda").clamp(0, 1)
    grid_pts = torch.stack(torch.meshgrid(sp, sp, indexing="ij"), -1).reshape(-1, 2)
    return torch.cat([x, grid_pts, grid_pts.flip(1)])


@pytest.mark.parametrize("name", list(CONFIGS))
def test_g1_forward_fp32_matches_tcnn(name):
    cfg = CONFIGS[name]
    native, ref = _pair(cfg)
    x = _points(cfg)
    with torch.no_grad():
        y_native, y_ref = native(x).float(), ref(x)
    torch.testing.assert_close(y_ref, y_native, rtol=0, atol=1e-5)
    # The fallback gives the same numbers on CPU and CUDA.
    cpu = TorchGrid(cfg)
    cpu.load_state_dict({k: v.cpu() for k, v in ref.state_dict().items()})
    with torch.no_grad():
        torch.testing.assert_close(cpu(x.cpu()), y_ref.cpu(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ["project-default", "log2T12", "smoothstep"])
def test_g2_forward_fp16_matches_within_half_precision(name):
    cfg = CONFIGS[name]
    native, ref = _pair(cfg, dtype=torch.float16)
    with torch.no_grad():
        ref.params.copy_(ref.params.half().float())  # tcnn casts params to half
        x = _points(cfg)
        y_native = native(x)
        assert y_native.dtype == torch.float16
        torch.testing.assert_close(ref(x), y_native.float(), rtol=0, atol=4e-3 * ref.params.abs().max().item())


@pytest.mark.parametrize("name", ["project-default", "log2T12", "smoothstep", "base5"])
def test_g3_gradients_fp32_match_tcnn(name):
    cfg = CONFIGS[name]
    native, ref = _pair(cfg)
    gen = torch.Generator(device="cuda").manual_seed(1)
    x = torch.rand(2**14, 2, device="cuda", generator=gen)
    w = torch.randn(len(x), cfg.n_output_dims, device="cuda", generator=gen)
    grads = []
    for enc in (native, ref):
        xi = x.clone().requires_grad_()
        enc.params.grad = None
        (enc(xi).float() * w).sum().backward()
        grads.append((xi.grad, enc.params.grad))
    for got, want in zip(grads[1], grads[0]):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * want.abs().max().item())


def test_g4_init_range_checkpoints_and_auto_backend():
    import tinycudann as tcnn

    cfg = CONFIGS["project-default"]
    p = tcnn.Encoding(2, cfg.to_tcnn(), dtype=torch.float32).params
    assert p.abs().max().item() <= 1e-4 and p.abs().max().item() > 0
    assert TorchGrid(cfg, device="cuda").params.abs().max().item() <= 1e-4

    wrapped = TcnnGrid(cfg, device="cuda")
    assert list(wrapped.state_dict()) == ["params"]
    auto = HashGridEncoding(cfg, backend="auto", device="cuda")
    assert auto.backend == "tcnn"
    torch_enc = HashGridEncoding(cfg, backend="torch", device="cuda")
    with torch.no_grad():
        auto.grid.params.uniform_(-1, 1)
    torch_enc.load_state_dict(auto.state_dict())  # tcnn-trained checkpoint -> torch backend
    assert torch_enc.checkpoint_backend == "tcnn"
    uv = torch.rand(2, 2, 32, 48, device="cuda")
    with torch.no_grad():
        y_tcnn, y_torch = auto(uv), torch_enc(uv)
    assert y_tcnn.shape == (2, 8, 32, 48) and y_tcnn.dtype == torch.float32
    torch.testing.assert_close(y_torch, y_tcnn, rtol=0, atol=1e-5)
    back = HashGridEncoding(cfg, backend="tcnn", device="cuda")
    back.load_state_dict(torch_enc.state_dict())  # and back
    with torch.no_grad():
        torch.testing.assert_close(back(uv), y_tcnn, rtol=0, atol=0)
