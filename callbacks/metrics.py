"""Texture metrics per validation/test epoch for stages that predict maps.TEXTURE (GDE, HFDR).

Per capture (whole frames, see callbacks/frames.py), in image space over the GT face mask:
SSIM, PSNR, the perceptual metric (LPIPS-alex or ST-LPIPS-alex, named in the key), micronormal angular
error and, for assembled patch frames, the seam metric (of the error map, and `seam_pred` of the prediction). Logged as `<split>/<map>/<metric>` (mean over
captures), written per capture to `<run>/metrics/<split>_epoch<NNN>.csv`, and sent as a W&B table when a
WandbLogger is attached. The perceptual net is slow on CPU, so by default it runs on test epochs only.
Under DDP each rank evaluates the captures it saw and the logged means are averaged across ranks.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch

from callbacks.frames import Frame, FrameCollector
from uhrtex.metrics import Evaluator, mean_std

log = logging.getLogger(__name__)
TEXTURE_STAGES = ("gde", "hfdr")


def predicts_texture(pl_module: L.LightningModule) -> bool:
    return getattr(pl_module, "stage", None) in TEXTURE_STAGES


def wandb_loggers(trainer: L.Trainer) -> list:
    try:
        from lightning.pytorch.loggers import WandbLogger
    except ImportError:
        return []
    return [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]


def evaluate_frame(evaluator: Evaluator, frame: Frame) -> dict[str, float]:
    row = evaluator(frame.pred[None], frame.target[None], frame.region[None].float(), patch=frame.patch)[0]
    return {"capture": frame.key, **row}


class TextureMetrics(L.Callback):
    def __init__(self, perceptual: str | None = "auto", perceptual_splits: Sequence[str] = ("test",), tile: int = 1024,
                 grid: int = 8, every_n_epochs: int = 1, max_captures: int | None = None, out_dir: str | None = None,
                 detail: float | None = 8):
        self.evaluators = {split: Evaluator(perceptual if split in perceptual_splits else None, tile=tile, detail=detail)
                           for split in ("val", "test")}
        self.grid, self.every, self.max_captures = grid, every_n_epochs, max_captures
        self.out_dir = out_dir
        self.collector = FrameCollector(grid, max_captures)
        self.rows: list[dict] = []
        self.last: dict[str, dict] = {}  # split -> {key: mean} of the last epoch (for the ablation/compare drivers)

    def _active(self, trainer, pl_module, split: str) -> bool:
        if not predicts_texture(pl_module) or trainer.sanity_checking:
            return False
        return split == "test" or trainer.current_epoch % self.every == 0

    # --- collection ---------------------------------------------------------------------------------
    def _start(self, trainer, pl_module, split):
        self.collector.reset()
        self.rows = []

    def _batch(self, trainer, pl_module, outputs, batch, split):
        if self._active(trainer, pl_module, split):
            self.rows += [evaluate_frame(self.evaluators[split], f) for f in self.collector.add(batch, outputs)]

    def on_validation_epoch_start(self, trainer, pl_module):
        self._start(trainer, pl_module, "val")

    def on_test_epoch_start(self, trainer, pl_module):
        self._start(trainer, pl_module, "test")

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._batch(trainer, pl_module, outputs, batch, "val")

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._batch(trainer, pl_module, outputs, batch, "test")

    # --- epoch summary ------------------------------------------------------------------------------
    def _end(self, trainer, pl_module, split):
        if not self._active(trainer, pl_module, split):
            return
        self.rows += [evaluate_frame(self.evaluators[split], f) for f in self.collector.flush()]
        if not self.rows:
            return
        stats = mean_std([{k: v for k, v in r.items() if k != "capture"} for r in self.rows])
        means = {k: m for k, (m, _, n) in stats.items() if n}
        for key, value in means.items():
            if torch.isfinite(torch.tensor(value)):
                pl_module.log(f"{split}/{key}", value, sync_dist=True)
        self.last[split] = means
        self._write(trainer, split)

    def on_validation_epoch_end(self, trainer, pl_module):
        self._end(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer, pl_module):
        self._end(trainer, pl_module, "test")

    def _write(self, trainer, split: str) -> None:
        if not trainer.is_global_zero:
            return
        columns = ["capture"] + sorted({k for r in self.rows for k in r} - {"capture"})
        data = [[r.get(c, "") for c in columns] for r in self.rows]
        root = Path(self.out_dir or trainer.default_root_dir) / "metrics"
        root.mkdir(parents=True, exist_ok=True)
        with open(root / f"{split}_epoch{trainer.current_epoch:03d}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            writer.writerows(data)
        for lg in wandb_loggers(trainer):
            lg.log_table(key=f"{split}/per_capture_metrics", columns=columns, data=data, step=trainer.global_step)
