"""The default task: build datamodule, module, callbacks, loggers and trainer from the config; fit/test."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from experiments.run_record import wandb_run_id
from uhrtex.common.memory import keep_freed_memory

log = logging.getLogger(__name__)


def is_rank_zero() -> bool:
    return os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0"


def instantiate_group(group: DictConfig | None) -> list[Any]:
    """Instantiate every `_target_` entry of a callbacks/logger group (null entries are switched off)."""
    if not group:
        return []
    return [instantiate(node) for node in group.values() if isinstance(node, DictConfig) and "_target_" in node]


def build_loggers(cfg: DictConfig, run_dir: Path) -> list[Any]:
    logger_cfg = cfg.get("logger")
    if logger_cfg and "wandb" in logger_cfg and logger_cfg.wandb is not None:
        with open_dict(logger_cfg):
            logger_cfg.wandb.id = logger_cfg.wandb.id or wandb_run_id(run_dir)
            # "allow": continue the run if this id exists, start it otherwise.
            logger_cfg.wandb.resume = "allow"
        os.environ.setdefault("WANDB_DIR", str(run_dir))
        os.environ.setdefault("WANDB_SILENT", "true")
    loggers = instantiate_group(logger_cfg)
    config = OmegaConf.to_container(cfg, resolve=True)
    for lg in loggers:
        lg.log_hyperparams(config)
    return loggers


def train(cfg: DictConfig) -> dict[str, float]:
    L.seed_everything(cfg.seed, workers=True)
    run_dir = Path(cfg.paths.output_dir)
    datamodule: L.LightningDataModule = instantiate(cfg.data)
    model: L.LightningModule = instantiate(cfg.model)
    if hasattr(model, "model_config"):
        model.model_config = OmegaConf.to_container(cfg.model, resolve=True)
    callbacks = instantiate_group(cfg.get("callbacks"))
    loggers = build_loggers(cfg, run_dir)
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)

    if cfg.get("train", True):
        # On CPU, glibc keeps freed blocks for reuse during training: otherwise every layer's fresh activation
        # is page-faulted in zero-filled (uhrtex.common.memory.keep_freed_memory; about half the HFDR step time).
        with keep_freed_memory() if trainer.strategy.root_device.type == "cpu" else contextlib.nullcontext():
            trainer.fit(model=model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    if cfg.get("test", False):
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        ckpt = best or (None if cfg.get("train", True) else cfg.get("ckpt_path"))
        # Hyper-parameters are plain containers (`_convert_: all`), so our checkpoints load with weights_only.
        trainer.test(model=model, datamodule=datamodule, ckpt_path=ckpt, weights_only=True)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1})
    return metrics
