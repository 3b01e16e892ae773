"""Entry point: `python -m experiments.run +exp=NAME [overrides]`.

The exp's `entry` key names the task function (default `experiments.train:train`); this file only
validates the command line, records the run, and makes sure W&B is closed even when a task
crashes, so one failed run does not take a W&B sweep agent down with it.
"""

from __future__ import annotations

import importlib
import logging
import os
from pathlib import Path
from collections.abc import Callable

import hydra
from omegaconf import DictConfig

from experiments.cli import main_guard
from experiments.run_record import record_launch
from experiments.run_record import finish_wandb
from experiments.train import is_rank_zero

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent.parent


def resolve_entry(spec: str) -> Callable[[DictConfig], dict]:
    module, _, func = spec.partition(":")
    try:
        return getattr(importlib.import_module(module), func or "main")
    except (ImportError, AttributeError) as e:
        raise ValueError(f"entry '{spec}' cannot be imported ({e}); use 'package.module:function'") from e


def run(cfg: DictConfig) -> dict[str, float]:
    """Run one configured task; W&B is finished on success and on failure."""
    if is_rank_zero():
        record_launch(cfg, Path(cfg.paths.output_dir), ROOT)
    failed = True
    try:
        metrics = resolve_entry(cfg.get("entry", "experiments.train:train"))(cfg) or {}
        failed = False
        return metrics
    finally:
        finish_wandb(failed)


@hydra.main(version_base="1.3", config_path="configs", config_name="config")
def main(cfg: DictConfig) -> float | None:
    metrics = run(cfg)
    log.info("run directory: %s", cfg.paths.output_dir)
    value = metrics.get(cfg.get("optimized_metric") or "", None)
    return value


if __name__ == "__main__":
    os.environ.setdefault("HYDRA_FULL_ERROR", "0")
    # Own a W&B service instead of joining a parent's (as `wandb agent` does for its children): a
    # run SIGKILLed inside a shared service leaves its stream registered, and `ckpt_path=last`
    # would then fail with "run ID ... is in use".
    os.environ.pop("WANDB_SERVICE", None)
    main_guard()
    main()
