"""Untrained stage checkpoints in the format experiments.run writes (state_dict + uhrtex tag), in seconds."""

from __future__ import annotations

from pathlib import Path

import torch
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import OmegaConf

from experiments.cli import compose_config
from lightning_modules.base import CHECKPOINT_KEY


def model_config(stage: str, overrides: list[str] = (), preset: str = "tiny") -> dict:
    GlobalHydra.instance().clear()
    cfg = compose_config([f"model={stage}", f"preset={preset}", *overrides])
    GlobalHydra.instance().clear()
    return OmegaConf.to_container(cfg.model, resolve=True)


def build_module(stage: str, overrides: list[str] = (), preset: str = "tiny"):
    config = model_config(stage, overrides, preset)
    module = instantiate(config)
    module.model_config = config
    return module


def save_stage_checkpoint(stage: str, path: Path, overrides: list[str] = (), preset: str = "tiny",
                          seed: int = 0) -> str:
    torch.manual_seed(seed)
    module = build_module(stage, overrides, preset)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": module.state_dict(),
                CHECKPOINT_KEY: {"stage": module.stage, "model_config": module.model_config}}, path)
    return str(path)
