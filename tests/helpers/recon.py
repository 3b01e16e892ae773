"""Untrained tiny-preset stage checkpoints shaped like experiments.run's (state_dict + uhrtex tag + the
datamodule's sizes, with an OmegaConf object in the hyper-parameters as Lightning pickles them)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from tests.helpers.stage_ckpts import build_module

TINY = {"input_size": 256, "global_size": 64, "patch_size": 32}


def save_like_experiments_run(stage: str, path: Path, seed: int = 0, sizes: dict | None = None) -> Path:
    torch.manual_seed(seed)
    overrides = ["model.gde_ckpt=/trained/gde.ckpt"] if stage == "hfdr" else []  # recorded, never opened here
    module = build_module(stage, overrides, preset="tiny")
    dm = {"store": "/nowhere", "view": "global", **(sizes or TINY),
          "split_ratios": OmegaConf.create([5, 1, 1])}  # pickled as a ListConfig, like real checkpoints
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": module.state_dict(), "datamodule_hyper_parameters": dm,
                "hyper_parameters": OmegaConf.create({"monitor": "val/loss"}),
                "uhrtex": {"stage": stage, "model_config": module.model_config}}, path)
    return path


@pytest.fixture(scope="session")
def recon_ckpts(tmp_path_factory) -> Path:
    """A folder with uv_normal.ckpt gde.ckpt hfdr.ckpt (tiny preset, random weights)."""
    root = tmp_path_factory.mktemp("recon_ckpts")
    for i, stage in enumerate(("uv_normal", "gde", "hfdr")):
        save_like_experiments_run(stage, root / f"{stage}.ckpt", seed=i)
    return root
