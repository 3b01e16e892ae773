"""Shared training logic for every stage: optimiser/scheduler wiring, loss logging, stage tags."""

from __future__ import annotations

import inspect
from typing import Any
from collections.abc import Callable

import lightning as L
import torch
from torchmetrics import MeanMetric

from uhrtex.checkpoint import CHECKPOINT_KEY



def _needs_run_length(factory: Callable[..., Any]) -> bool:
    """True for a scheduler partial that still lacks its length `T_max` (CosineAnnealingLR with it left out)."""
    func = getattr(factory, "func", factory)
    keywords = getattr(factory, "keywords", {}) or {}
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False
    return "T_max" in params and "T_max" not in keywords


class StageModule(L.LightningModule):
    """Subclasses set `stage` and implement `predict_batch` (-> prediction) and `loss_terms`.

    `optimizer` and `scheduler` are partials built by Hydra (`_partial_: true`), so the module owns
    neither lr nor patience: the config does.
    """

    stage: str = "base"

    def __init__(
        self,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        monitor: str = "val/loss",
    ):
        super().__init__()
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.monitor = monitor
        # MeanMetric syncs sums and counts across DDP ranks, so the epoch value equals the 1-process value.
        self.train_loss = MeanMetric()
        self.val_loss = MeanMetric()
        self.test_loss = MeanMetric()
        # The resolved `model` config node (plain dict), set by the task before training. Stored in every
        # checkpoint so a later stage can rebuild this module from the file alone.
        self.model_config: dict | None = None

    # --- subclass API -------------------------------------------------------------------
    def predict_batch(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def loss_terms(self, pred: torch.Tensor, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Return {"loss": total, other named terms...}."""
        raise NotImplementedError

    # --- Lightning hooks ----------------------------------------------------------------
    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.predict_batch(batch)

    def _shared_step(self, batch: dict[str, torch.Tensor], split: str) -> tuple[torch.Tensor, torch.Tensor]:
        pred = self.predict_batch(batch)
        terms = self.loss_terms(pred, batch)
        batch_size = pred.shape[0]
        metric = getattr(self, f"{split}_loss")
        metric.update(terms["loss"].detach(), weight=batch_size)
        self.log(f"{split}/loss", metric, on_step=False, on_epoch=True, prog_bar=True, batch_size=batch_size)
        for name, value in terms.items():
            if name != "loss":
                self.log(f"{split}/{name}", value.detach(), on_step=False, on_epoch=True,
                         sync_dist=True, batch_size=batch_size)
        return terms["loss"], pred

    def training_step(self, batch, batch_idx):
        loss, _ = self._shared_step(batch, "train")
        return loss

    def validation_step(self, batch, batch_idx):
        _, pred = self._shared_step(batch, "val")
        return pred

    def test_step(self, batch, batch_idx):
        _, pred = self._shared_step(batch, "test")
        return pred

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = self.optimizer_factory(params=params)
        if self.scheduler_factory is None:
            return optimizer
        if _needs_run_length(self.scheduler_factory):
            # A schedule over the whole run (cosine decay): its length is only known here, in optimiser steps,
            # so it steps per batch. Resumes restore its position from the checkpoint like any scheduler.
            total = int(self.trainer.estimated_stepping_batches)
            scheduler = self.scheduler_factory(optimizer=optimizer, T_max=max(total, 1))
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1}}
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "monitor": self.monitor, "interval": "epoch", "frequency": 1},
        }

    def on_train_start(self) -> None:
        value = getattr(self, "_plateau_replay", None)
        self._plateau_replay = None
        if value is None:
            return
        for config in self.trainer.lr_scheduler_configs:
            if isinstance(config.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau) and config.interval == "epoch":
                config.scheduler.step(value)

    # --- checkpoint tags: which stage wrote this file ----------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        meta = checkpoint.setdefault(CHECKPOINT_KEY, {})
        meta["stage"] = self.stage
        if self.model_config is not None:
            meta["model_config"] = self.model_config
        # Lightning saves epoch-end checkpoints *before* stepping ReduceLROnPlateau, so a resume would skip
        # that step and shift the patience count by an epoch. Keep the metric so on_train_start can replay it.
        value = self.trainer.callback_metrics.get(self.monitor) if self._trainer is not None else None
        if value is not None:
            meta["plateau_metric"] = float(value)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        progress = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_progress", {}).get("current", {})
        step_pending = progress.get("processed", 0) > progress.get("completed", 0)
        self._plateau_replay = checkpoint.get(CHECKPOINT_KEY, {}).get("plateau_metric") if step_pending else None
        found = checkpoint.get(CHECKPOINT_KEY, {}).get("stage")
        if found is not None and found != self.stage:
            raise ValueError(
                f"checkpoint was written by stage '{found}' but is being loaded into stage '{self.stage}'; "
                f"pass a '{self.stage}' checkpoint"
            )
