import shutil

import pytest
import torch
import torch.nn.functional as F

from tests.helpers.recon import TINY
from uhrtex.checkpoint import CheckpointError
from uhrtex.hfdr.patches import Box, sample_global
from uhrtex.pipeline.reconstructor import InputError, Reconstructor
from uhrtex.stage1.run import hfdr_input

pytestmark = [pytest.mark.filterwarnings("ignore:hash grid. using the pure-torch backend", "ignore:.*pure-torch"), pytest.mark.usefixtures("one_torch_thread")]


@pytest.fixture(scope="module")
def rec(recon_ckpts):
    return Reconstructor.from_checkpoints(recon_ckpts, patch_batch=4, precision="fp32")  # bf16: tests/test_precision.py


def portrait(h=256, w=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(1, 3, 16, 16, generator=g)
    return F.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)[0].clamp(0, 1)


def test_sizes_come_from_the_checkpoints(rec):
    assert rec.sizes == TINY


def test_output_maps_shapes_and_ranges(rec):
    out = rec(portrait())
    for name, c in (("albedo", 3), ("micronormal", 3), ("specular", 1)):
        x = out[name]
        assert x.shape == (c, 256, 256) and torch.isfinite(x).all() and 0 <= float(x.min()) and float(x.max()) <= 1
    for name, c in (("uv_pred", 2), ("normal_pred", 3), ("mask_pred", 1), ("guide", 7)):
        assert out[name].shape == (c, 64, 64)
    assert set(rec.timings) == {"stage1", "hfdr", "seams"}


def test_hfdr_matches_the_training_contract(rec):
    """A patch of the output = HFDR(patch ⊕ sample_global(uv, normal), guide=sample_global(guide)) (seams off)."""
    img = portrait()
    rec.seams.enabled = False
    try:
        out = rec(img)
    finally:
        rec.seams.enabled = True
    box = Box(96, 160, 32, 32)
    glob = {k: out[k][None] for k in ("uv_pred", "normal_pred", "guide")}
    s = {k: sample_global(v, box, (256, 256)) for k, v in glob.items()}
    patch = img[None, :, 96:128, 160:192]
    with torch.inference_mode():
        ref = rec.hfdr(hfdr_input(patch, s["uv_pred"], s["normal_pred"]), s["guide"])[0]
    got = torch.cat([out["albedo"], out["micronormal"], out["specular"]])[:, 96:128, 160:192]
    assert torch.allclose(got, ref, atol=1e-5)


def test_uint8_and_float_inputs_agree(rec):
    img = (portrait() * 255).round() / 255
    a = rec(img)
    b = rec((img * 255).round().to(torch.uint8))
    assert torch.allclose(a["albedo"], b["albedo"], atol=1e-5)


@pytest.mark.parametrize("h, w", [(192, 256), (256, 300), (512, 512), (250, 250)])
def test_any_size_is_padded_and_cropped_back(rec, h, w):
    img = portrait(h, w)
    out = rec(img)
    g = out["geometry"]
    assert out["albedo"].shape == (3, h, w) and out["specular"].shape == (1, h, w)
    assert g.side % 32 == 0 and g.side >= max(h, w) and g.top == (g.side - h) // 2 and g.left == (g.side - w) // 2
    if (h, w) == (512, 512):
        assert g.grid == 16  # twice the preset: 16×16 patches, Stage 1 still at 64²


def test_global_view_is_area_downsampling_of_the_padded_square(rec):
    for h, w in ((256, 256), (240, 256), (288, 288)):  # integer factor (banded) and non-integer (whole) paths
        img = portrait(h, w)
        g = rec.geometry(h, w)
        padded = F.pad(img[None], (g.left, g.side - w - g.left, g.top, g.side - h - g.top), mode="replicate")
        ref = F.interpolate(padded, size=(64, 64), mode="area")
        assert torch.allclose(rec.global_view(img, g), ref, atol=1e-6)


def test_seam_smoothing_switch_changes_only_bands(rec):
    img = portrait()
    on = rec(img)["albedo"].clone()
    rec.seams.enabled = False
    try:
        off = rec(img)["albedo"]
    finally:
        rec.seams.enabled = True
    diff = (on - off).abs().amax(0)
    idx = torch.arange(256)
    near = ((idx % 32) < 8) | ((idx % 32) >= 24)  # ±8 px around every multiple of 32
    assert (diff[near] > 0).any()
    assert not (diff[~near][:, ~near] > 0).any()  # interiors untouched


def test_bundle_round_trip(rec, tmp_path):
    path = tmp_path / "model.uhrtex"
    rec.export_bundle(path)
    data = torch.load(path, weights_only=True)  # plain torch: no Lightning, no stand-ins needed
    assert data["format"] == "uhrtex-bundle" and data["sizes"] == TINY
    rec2 = Reconstructor.load(path, patch_batch=4, precision="fp32")
    img = portrait()
    a, b = rec(img), rec2(img)
    for k in ("albedo", "micronormal", "specular", "guide", "mask_pred"):
        assert torch.equal(a[k], b[k]), k


def test_run_folders_are_found(recon_ckpts, tmp_path):
    for stage in ("uv_normal", "gde", "hfdr"):
        d = tmp_path / stage / "runs" / "2026-01-01_00-00-00" / "checkpoints"
        d.mkdir(parents=True)
        shutil.copy(recon_ckpts / f"{stage}.ckpt", d / "last.ckpt")
    assert Reconstructor.from_checkpoints(tmp_path).sizes == TINY


def test_checkpoint_errors_are_one_line(recon_ckpts, tmp_path):
    def expect(match, path=tmp_path):
        with pytest.raises(CheckpointError, match=match) as e:
            Reconstructor.from_checkpoints(path)
        assert "\n" not in str(e.value)

    expect("no such directory", tmp_path / "nope")
    shutil.copy(recon_ckpts / "uv_normal.ckpt", tmp_path / "uv_normal.ckpt")
    shutil.copy(recon_ckpts / "gde.ckpt", tmp_path / "gde.ckpt")
    expect("missing stage.*hfdr")
    shutil.copy(recon_ckpts / "uv_normal.ckpt", tmp_path / "hfdr.ckpt")
    expect("written by stage 'uv_normal', expected 'hfdr'")
    data = (recon_ckpts / "hfdr.ckpt").read_bytes()
    (tmp_path / "hfdr.ckpt").write_bytes(data[: len(data) // 2])
    expect("not a readable torch checkpoint")
    (tmp_path / "hfdr.ckpt").write_bytes(b"garbage")
    expect("not a readable torch checkpoint")
    torch.save({"state_dict": {}}, tmp_path / "hfdr.ckpt")
    expect("no uhrtex stage tag")
    with pytest.raises(CheckpointError, match="not a uhrtex bundle"):
        Reconstructor.from_bundle(tmp_path / "uv_normal.ckpt")


def test_sizes_missing_need_input_size(tmp_path):
    from tests.helpers.stage_ckpts import save_stage_checkpoint

    for stage in ("uv_normal", "gde", "hfdr"):
        overrides = ["model.gde_ckpt=/trained/gde.ckpt"] if stage == "hfdr" else []
        save_stage_checkpoint(stage, tmp_path / f"{stage}.ckpt", overrides, preset="tiny")
    with pytest.raises(CheckpointError, match="input_size"):
        Reconstructor.from_checkpoints(tmp_path)
    assert Reconstructor.from_checkpoints(tmp_path, input_size=256).sizes == TINY


def test_bad_images(rec):
    with pytest.raises(InputError, match="too small"):
        rec(portrait(100, 256))
    bad = portrait()
    bad[0, 5, 5] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        rec(bad)
    with pytest.raises(InputError, match="RGB"):
        rec(portrait()[:1])
    with pytest.raises(InputError, match="outside"):
        rec(portrait() * 3)
