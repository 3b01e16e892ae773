"""Reconstruction precision: bf16 autocast maps against fp32 maps (quality guard), the pieces that must stay
float32 under autocast (hash grid, UNet heads), the capability switch, and bf16-mixed training of the three
stages. No timings here (benchmarks/reconstruct.py and benchmarks/train_step.py measure speed)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tests.helpers.threads import one_thread
from uhrtex import maps
from uhrtex.common import precision
from uhrtex.networks.hash_encoding import HashGridEncoding
from uhrtex.networks.stages import build_gde, build_hfdr, build_uv_normal
from uhrtex.pipeline.reconstructor import Reconstructor
from uhrtex.stage1.run import gde_input

CPU = {"input_size": 512, "global_size": 128, "patch_size": 64}  # the cpu preset


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float((a.double() - b.double()).pow(2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def mean_angle_deg(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean angle between micronormal maps stored as (n + 1) / 2 (uhrtex.maps)."""
    na, nb = F.normalize(a.double() * 2 - 1, dim=0), F.normalize(b.double() * 2 - 1, dim=0)
    return math.degrees(float((na * nb).sum(0).clamp(-1, 1).acos().mean()))


def portrait(size: int) -> torch.Tensor:
    """Smooth shading plus pixel-level texture, uint8 (what a decoded 8-bit portrait is)."""
    g = torch.Generator().manual_seed(1)
    low = F.interpolate(torch.rand(1, 3, 16, 16, generator=g), size=(size, size), mode="bicubic", align_corners=False)
    img = (low[0] * 0.8 + 0.1 + 0.05 * torch.randn(3, size, size, generator=g)).clamp(0, 1)
    return img.mul(255).round().to(torch.uint8)


def networks(seed: int = 0):
    """cpu-preset networks (width 8, the configs' shapes), random weights made a little less arbitrary: HFDR's head
    gets feature weights (an untrained pass-through head would only show the guide), the texture heads' biases put
    micronormals around +z (a random 0.5 everywhere is the zero vector, whose angle means nothing), and the hash
    grid carries values of a trained grid's size."""
    torch.manual_seed(seed)
    hash_encoder = HashGridEncoding(backend="torch")
    nets = (build_uv_normal((8, 16, 32, 64, 64)), build_gde((8, 16, 32), hash_channels=hash_encoder.n_output_dims),
            build_hfdr((8, 16, 32, 64)))
    less_arbitrary(nets[1], nets[2], hash_encoder)
    return (*nets, hash_encoder)


@torch.no_grad()
def less_arbitrary(gde, hfdr, hash_encoder) -> None:
    """The random-weight tweaks of `networks` (also benchmarks/precision_quality.py at full presets)."""
    hfdr.head.weight[:, :-maps.TEXTURE.channels].normal_(0, 0.05)
    for net in (gde, hfdr):
        net.head.bias[maps.TEXTURE.slice("micronormal")] = torch.tensor([0.0, 0.0, 3.0])  # sigmoid: (.5, .5, .95)
    hash_encoder.grid.params.uniform_(-0.1, 0.1)  # the torch init is ~1e-4: trained grids carry real values


@pytest.fixture(scope="module")
def maps_by_precision():
    with one_thread():
        nets = networks()
        image = portrait(CPU["input_size"])
        out = {}
        hooks = [net.register_forward_pre_hook(lambda m, i, name=name: autocast_on.setdefault(name, []).append(
            torch.is_autocast_enabled("cpu"))) for name, net in (("uv_normal", nets[0]), ("gde", nets[1]))]
        for p in ("fp32", "bf16"):
            autocast_on: dict[str, list[bool]] = {}
            rec = Reconstructor(*nets, **CPU, precision=p)
            assert rec.precision == p
            out[p] = {k: v.clone() for k, v in rec(image).items() if k in ("albedo", "micronormal", "specular", "guide")}
            out[p]["autocast"] = autocast_on
        for hook in hooks:
            hook.remove()
        return out


# The bar for bf16 against fp32 maps. Measured with these networks (2026-12-05): albedo 62.2 dB, specular 61.0 dB,
# 0.11° (the GDE in fp32; the UV&Normal predictor and the HFDR in bf16, the guide then 39.9 dB from the fp32 one).
# With the GDE in bf16 too (an earlier head): 43.6 dB, 41.2 dB, 1.06°, below the bar.
BOUNDS = {"albedo_db": 45.0, "specular_db": 45.0, "angle_deg": 0.5}


def test_bf16_maps_match_fp32(maps_by_precision):
    a, b = maps_by_precision["fp32"], maps_by_precision["bf16"]
    assert a.pop("autocast") == {"uv_normal": [False], "gde": [False]}
    assert b.pop("autocast") == {"uv_normal": [True], "gde": [False]}, "the GDE must run in fp32 under every precision"
    assert all(v.dtype == torch.float32 for v in b.values())
    assert not torch.equal(a["albedo"], b["albedo"]), "the bf16 run computed nothing in bf16"
    assert psnr(a["albedo"], b["albedo"]) >= BOUNDS["albedo_db"]
    assert psnr(a["specular"], b["specular"]) >= BOUNDS["specular_db"]
    assert mean_angle_deg(a["micronormal"], b["micronormal"]) <= BOUNDS["angle_deg"]


def test_quality_metrics_can_fail():
    x = torch.rand(3, 32, 32)
    assert psnr(x, (x + 0.01).clamp(0, 1)) < 45
    n = F.normalize(torch.randn(3, 32, 32), dim=0)
    tilted = F.normalize(n + 0.05 * torch.randn(3, 32, 32), dim=0)
    assert mean_angle_deg((n + 1) / 2, (tilted + 1) / 2) > 0.5


def test_hash_grid_stays_fp32_under_autocast():
    torch.manual_seed(0)
    enc = HashGridEncoding(backend="torch")
    with torch.no_grad():
        enc.grid.params.uniform_(-1, 1)
    uv = torch.rand(1, 2, 32, 32)
    image, normal = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    ref = gde_input(image, uv, normal, enc)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        got = gde_input(image, uv, normal, enc)
        # what the hash channels would be from a bf16 uv (the thing the fp32 island prevents)
        lossy = enc(uv.bfloat16().float())
    hash_ref = ref[:, -enc.n_output_dims:]
    torch.testing.assert_close(got[:, -enc.n_output_dims:], hash_ref, rtol=0, atol=0)
    assert not torch.allclose(lossy, hash_ref, atol=1e-3)


@pytest.mark.parametrize("guided", [False, True])
def test_unet_head_is_the_concatenated_head_and_fp32_under_autocast(guided):
    torch.manual_seed(0)
    net = (build_hfdr((8, 16), guide_passthrough=False) if guided else build_gde((8, 16), hash_channels=0)).eval()
    with torch.no_grad():
        net.head.weight.normal_(0, 0.2)
        net.head.bias.normal_(0, 0.2)
    x = torch.rand(2, net.in_channels, 16, 16)
    guide = torch.rand(2, maps.TEXTURE.channels, 16, 16) if guided else None
    feats = {}
    net.layers[-1].register_forward_hook(lambda m, i, o: feats.update(h=o))
    with torch.no_grad():
        out = net(x, guide)
        h = torch.cat([feats["h"], guide], 1) if guided else feats["h"]
        ref = torch.sigmoid(F.conv2d(h, net.head.weight, net.head.bias))
        torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert net(x, guide).dtype == torch.float32


def test_hfdr_head_passes_the_guide_exactly_under_autocast():
    """The head's guide and band terms stay float32 under bf16 autocast (only the features term is bf16): an
    untrained pass-through head returns the float32 guide bit for bit, not a bf16-rounded one."""
    torch.manual_seed(0)
    net = build_hfdr((8, 16), detail_skip=2, guide_passthrough=True, detail_branch=4).eval()
    x, guide = torch.rand(1, net.in_channels, 16, 16), torch.rand(1, maps.TEXTURE.channels, 16, 16) * 0.9
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x.contiguous(memory_format=torch.channels_last), guide.contiguous(memory_format=torch.channels_last))
    assert torch.equal(out, guide)
    assert not torch.equal(guide.bfloat16().float(), guide)


def test_precision_resolves_by_hardware(monkeypatch):
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    assert precision.resolve("auto", "cpu") == "fp32"
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2", "avx512_bf16"}))
    assert precision.resolve("auto", "cpu") == "bf16"
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"amx_bf16", "amx_tile"}))
    assert precision.resolve("auto", "cpu") == "bf16"
    assert precision.resolve("auto", "cuda") == "bf16"
    assert precision.resolve("fp32", "cuda") == "fp32"
    with pytest.raises(ValueError, match="precision"):
        precision.resolve("fp16", "cpu")


@pytest.mark.parametrize("exp", ["uv_normal", "gde", "hfdr"])
def test_bf16_mixed_training_runs_on_cpu(workdir, exp, request):
    from tests.helpers.hydra_run import CPU_OVERRIDES, run_in_process
    from tests.helpers.stage_ckpts import fill_tokens
    from tests.test_exps import SMOKE_OVERRIDES, finite_losses

    extra = fill_tokens(SMOKE_OVERRIDES[exp], request)
    overrides = [f"+exp={exp}", "preset=cpu", "trainer.fast_dev_run=true", "trainer.precision=bf16-mixed",
                 *CPU_OVERRIDES, *extra]
    metrics = run_in_process(overrides, workdir)
    finite_losses(metrics, workdir / "run")
