"""experiments.guide_eval: GDE guides of {variant}_seed{seed} runs scored on any store's captures."""

import json
import math

import pytest
import torch

from experiments.guide_eval import main
from tests.helpers.stage_ckpts import make_store, save_stage_checkpoint
from uhrtex import maps
from uhrtex.captures.store import CaptureStore
from uhrtex.checkpoint import build_stage, read_stage
from uhrtex.stage1.run import gde_input


def test_guides_scored_per_capture_over_the_gt_face(tmp_path, capsys):
    store = make_store(tmp_path / "held_out", 256, subjects=2, first_subject=7)
    for variant, enabled in (("hash", "true"), ("nohash", "false")):
        save_stage_checkpoint("gde", tmp_path / f"run/{variant}_seed0/checkpoints/best_epoch003.ckpt",
                              [f"model.hash_encoding.enabled={enabled}"])
    out = main(["--ckpt", str(tmp_path / "run/{variant}_seed{seed}"), "--store", store, "--keys", "s0008__l00__c00",
                "--size", "64", "--seeds", "0"])
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["captures"] == ["s0008__l00__c00"] and len(out) == 2
    # Recomputed here with a plain masked MSE: the guide from GT geometry, over the GT face mask.
    ckpt = tmp_path / "run/hash_seed0/checkpoints/best_epoch003.ckpt"
    gde = build_stage(read_stage(ckpt, "gde"))
    cap = {n: t[None].float() for n, t in CaptureStore(store).read_global("s0008__l00__c00", 64).items()}
    with torch.no_grad():
        guide = maps.TEXTURE.split(gde["net"](gde_input(cap["image"], cap["uv"], cap["normal"], gde["hash_encoder"]),
                                              cap["mask"]))
    face = (cap["mask"][0, 0] > 0.5)
    mse = ((guide["albedo"][0] - cap["albedo"][0])[:, face] ** 2).mean()
    row = out[str(tmp_path / "run/hash_seed0")]["per_capture"]["s0008__l00__c00"]
    assert math.isclose(row["albedo/psnr"], float(-10 * torch.log10(mse)), rel_tol=1e-4)
    assert out[str(tmp_path / "run/hash_seed0")]["mean"] == row


def test_a_folder_without_checkpoints_says_what_to_pass(tmp_path):
    store = make_store(tmp_path / "s", 256, subjects=1)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="pass a GDE .ckpt or a GDE run folder"):
        main(["--ckpt", str(tmp_path / "empty"), "--store", store, "--size", "64"])
