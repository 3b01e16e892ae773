"""OmegaConf resolvers used by the config tree (sizes derive from one knob; a preset picks a stage's lr schedule)."""

import os

from omegaconf import OmegaConf


def _div(a, b) -> int:
    a, b = int(a), int(b)
    if a % b:
        raise ValueError(f"size {a} is not divisible by {b}; pick input_size as a multiple of {b * 8}")
    return a // b


OmegaConf.register_new_resolver("div", _div, replace=True)
OmegaConf.register_new_resolver("mul", lambda a, b: int(a) * int(b), replace=True)
# The launch directory, absolute. Unlike ${hydra:runtime.cwd} it also resolves while Hydra's
# sweeper computes hydra.sweep.dir, before the Hydra config is set.
OmegaConf.register_new_resolver("cwd", lambda: os.getcwd(), replace=True)

# Learning-rate schedules a preset's recipe picks by name (config.yaml `recipe.gde_lr_schedule`). The module gives
# a schedule with `T_max` the run's length in optimiser steps (lightning_modules.base).
LR_SCHEDULES = {
    "plateau": {"_target_": "torch.optim.lr_scheduler.ReduceLROnPlateau", "_partial_": True, "mode": "min", "patience": 5},
    "cosine": {"_target_": "torch.optim.lr_scheduler.CosineAnnealingLR", "_partial_": True},
}


def _lr_schedule(name: str):
    if name not in LR_SCHEDULES:
        raise ValueError(f"unknown lr schedule '{name}'; valid: {', '.join(LR_SCHEDULES)}")
    return OmegaConf.create(LR_SCHEDULES[name])  # a config node, so that Hydra's instantiate builds it


OmegaConf.register_new_resolver("lr_schedule", _lr_schedule, replace=True)
