"""The low-resolution baselines of +exp=compare (experiments/baselines.py): `lowres_sr` (bicubic) and
`lowres_realesrgan` (Real-ESRGAN x4plus) run a low-res Reconstructor at its own input size on the
area-downsampled input and bring its maps back to the input size; one off its scale is refused."""

import pytest
import torch

from experiments.baselines import Baselines, realesrgan_maps
from experiments.lowres import find_lowres_checkpoints
from uhrtex import maps
from uhrtex.checkpoint import STAGES, read_stage
from uhrtex.pipeline.reconstructor import Reconstructor

FACTOR = 8
# Tiny-preset networks; the low-res pipeline at 256/8 = 32² input with global 16² and patches 8² (the sizes the
# CPU preset's 64² low-res pipeline uses, checked to run; 32/4 = 8² would halve uv_normal's four poolings to 0.5²).
LOW = {"input_size": 32, "global_size": 16, "patch_size": 8}


@pytest.fixture(scope="module")
def recs(recon_ckpts):
    records = {s: read_stage(recon_ckpts / f"{s}.ckpt", s) for s in STAGES}
    full = Reconstructor.from_records(records, patch_batch=16)
    low = Reconstructor.from_records(records, sizes=LOW, patch_batch=16)
    return full, low


def _record_sizes(rec: Reconstructor) -> tuple[list, list]:
    seen_global, seen_patch = [], []
    rec.stage1.uv_normal.register_forward_hook(lambda m, args, out: seen_global.append(tuple(args[0].shape[-2:])))
    rec.hfdr.register_forward_hook(lambda m, args, out: seen_patch.append(tuple(args[0].shape[-2:])))
    return seen_global, seen_patch


def test_lowres_baselines_run_at_their_own_scale_and_return_the_input_size(recs):
    full, low = recs
    assert low.input_size * FACTOR == full.input_size
    seen_global, seen_patch = _record_sizes(low)
    torch.manual_seed(0)
    image = torch.rand(3, full.input_size, full.input_size)
    out = Baselines(full, ["lowres_sr", "lowres_realesrgan"], lowres=low, factor=FACTOR)(image)
    assert list(out) == ["lowres_sr", "lowres_realesrgan"]
    for method, tex in out.items():
        assert set(tex) == set(maps.TEXTURE.names)
        for name, v in tex.items():
            assert v.shape == (maps.TEXTURE.width(name), full.input_size, full.input_size), (method, name, v.shape)
            assert torch.isfinite(v).all() and v.min() >= 0 and v.max() <= 1, (method, name)
    # The low-res pipeline ran once (shared by both methods), at its own sizes: not 8x off.
    assert seen_global == [(LOW["global_size"],) * 2]
    assert seen_patch and set(seen_patch) == {(LOW["patch_size"],) * 2}
    # The two differ only in the upsampler: their area-downsampled maps agree closely, the maps themselves do not.
    a, b = out["lowres_sr"]["albedo"], out["lowres_realesrgan"]["albedo"]
    down = torch.nn.functional.avg_pool2d
    assert (down(a[None], FACTOR) - down(b[None], FACTOR)).abs().mean() < 0.05
    assert not torch.equal(a, b)


def test_a_lowres_pipeline_off_its_scale_is_refused(recs):
    full, _ = recs
    with pytest.raises(ValueError, match="low-res pipeline built for 256"):
        Baselines(full, ["lowres_sr"], lowres=full, factor=FACTOR)(torch.rand(3, full.input_size, full.input_size))


def test_realesrgan_maps_keep_channels_and_treat_specular_as_grey():
    torch.manual_seed(0)
    grey = torch.rand(1, 8, 8)
    tex = {"albedo": grey.expand(3, -1, -1).clone(), "specular": grey}
    up = realesrgan_maps(tex, 2)
    assert up["albedo"].shape == (3, 16, 16) and up["specular"].shape == (1, 16, 16)
    # A grey image through Real-ESRGAN, averaged: the specular equals the albedo's channel mean.
    torch.testing.assert_close(up["specular"], up["albedo"].mean(0, keepdim=True), atol=1e-5, rtol=0)


def test_lowres_checkpoints_are_found_in_a_logs_folder(recon_ckpts, tmp_path):
    import shutil

    for s in STAGES:
        d = tmp_path / f"lowres_{s}" / "runs" / "r0" / "checkpoints"
        d.mkdir(parents=True)
        shutil.copy(recon_ckpts / f"{s}.ckpt", d / "last.ckpt")
    assert set(find_lowres_checkpoints(tmp_path)) == set(STAGES)
    shutil.rmtree(tmp_path / "lowres_gde")
    with pytest.raises(ValueError, match=r"missing stage\(s\) lowres_gde;"):
        find_lowres_checkpoints(tmp_path)
