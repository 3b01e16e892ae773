"""The model that ships with uhrtex (uhrtex/weights/, MODEL_CARD.md): it loads, reconstructs without --ckpt and names
itself in the manifest; a damaged or mismatched bundle is one line; `+exp=release` makes one (slow)."""

from __future__ import annotations

import json

import pytest
import torch

from uhrtex.bundle import bundle_meta, load_bundle, shipped_bundle
from uhrtex.checkpoint import CheckpointError, file_sha256
from uhrtex.common import io as uio

pytestmark = pytest.mark.filterwarnings("ignore:raster. using the pure-torch backend")


def test_the_shipped_bundle_is_small_and_says_what_it_is():
    path = shipped_bundle()
    assert path.stat().st_size < 20e6
    meta = bundle_meta(path)
    card = json.loads((path.parent / f"{meta['name']}.card.json").read_text())
    assert meta["name"] == card["name"] == path.stem and card["bundle"]["sha256"] == file_sha256(path)
    assert card["data"]["head_model"].startswith("ict-facekit") and card["method"]["name"] == "uhrtex"
    records, sizes = load_bundle(path)
    assert sizes["input_size"] == card["sizes"]["input_size"] and set(records) == {"uv_normal", "gde", "hfdr"}
    assert all(v.dtype == torch.float32 for r in records.values() for v in r.state_dict.values()
               if torch.is_tensor(v) and v.is_floating_point())  # a float16 bundle is read back as float32


def test_reconstruct_without_ckpt_uses_the_shipped_model(tmp_path, capsys):
    from experiments.reconstruct import main
    from uhrtex.captures.render import render_capture

    size = json.loads((shipped_bundle().parent / f"{shipped_bundle().stem}.card.json").read_text())["sizes"]["input_size"]
    cap = render_capture(9001, 0, 0, size // 2, texture_resolution=256)  # a held-out head, the smallest input accepted
    uio.write_png(tmp_path / "p.png", cap.maps["image"])
    code = main([str(tmp_path / "p.png"), "--out", str(tmp_path / "out"), "--no-crop", "--unwrap", "none"])
    assert code == 0, capsys.readouterr().err
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    w = manifest["weights"]
    assert w["kind"] == "bundle" and w["shipped"] and w["name"] == shipped_bundle().stem
    assert w["sha256"] == file_sha256(shipped_bundle())
    albedo = uio.read_image(tmp_path / "out" / "albedo.png")
    face = cap.maps["mask"][0] > 0
    assert float((albedo - cap.maps["albedo"]).abs()[:, face].mean()) < 0.15  # a face's albedo, not noise


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong_shape"])
def test_a_damaged_bundle_is_one_line(tmp_path, damage):
    from uhrtex.pipeline import Reconstructor

    path = tmp_path / "bad.bundle"
    good = shipped_bundle().read_bytes()
    if damage == "garbage":
        path.write_bytes(b"not a bundle at all" * 100)
    elif damage == "truncated":
        path.write_bytes(good[: len(good) // 3])
    else:
        data = torch.load(shipped_bundle(), weights_only=True)
        sd = data["stages"]["hfdr"]["state_dict"]
        key = next(k for k, v in sd.items() if v.dim() == 4)
        sd[key] = sd[key][:, :1].clone()  # a weight of another network
        torch.save(data, path)
    with pytest.raises(CheckpointError) as e:
        Reconstructor.load(path)
    assert "\n" not in str(e.value) and str(path.name) in str(e.value)


@pytest.mark.slow
def test_release_at_the_tiny_preset_trains_evaluates_and_bundles(workdir):
    from tests.helpers.hydra_run import CPU_OVERRIDES, run_in_process
    from uhrtex.pipeline import Reconstructor

    metrics = run_in_process(["+exp=release", "preset=tiny", *CPU_OVERRIDES, "pipeline.captures.subjects=7",
                              "pipeline.captures.lightings=1", "metrics.perceptual=none",
                              "callbacks.texture_panels=null"], workdir)
    assert metrics["held_out/ours/albedo/psnr"] > 10
    bundle = next(workdir.rglob("release/uhrtex-detail.bundle"))
    card = json.loads((bundle.parent / "card.json").read_text())
    assert card["bundle"]["sha256"] == file_sha256(bundle) and card["dtype"] in ("float16", "float32")
    rec = Reconstructor.load(bundle)
    assert rec.input_size == 256
    # an interrupted release is packaged from its trained stages, without training them again
    trained, stage_runs = bundle.parents[1], sorted(workdir.rglob("logs/*/runs/*"))
    again = run_in_process(["+exp=release", "preset=tiny", *CPU_OVERRIDES, "pipeline.captures.subjects=7",
                            "pipeline.captures.lightings=1", "metrics.perceptual=none", "callbacks.texture_panels=null",
                            f"release.trained_run={trained}"], workdir)
    assert again["held_out/ours/albedo/psnr"] == pytest.approx(metrics["held_out/ours/albedo/psnr"], abs=1e-6)
    assert [p for p in sorted(workdir.rglob("logs/*/runs/*")) if p not in stage_runs and "compare" not in p.parts] == []
    assert json.loads((bundle.parent / "card.json").read_text())["training_val_loss"] == card["training_val_loss"]


def test_release_from_a_run_without_finished_training_is_one_line(workdir):
    """`release.trained_run` packages an earlier run's stages; a folder without its summary.json says what to pass."""
    from tests.helpers.hydra_run import CPU_OVERRIDES, run_in_process

    empty = workdir / "not_a_release_run"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no summary.json") as e:
        run_in_process(["+exp=release", "preset=tiny", *CPU_OVERRIDES, f"release.trained_run={empty}"], workdir)
    assert "\n" not in str(e.value)
