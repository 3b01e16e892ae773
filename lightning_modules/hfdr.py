"""Stage 2: the High-Frequency Detail Refiner (paper §3.4), trained with the GDE frozen.

Input per full-res patch: image ⊕ upsampled uv/normal crops (8 ch); the GDE guide crop (7 ch, resampled
onto the patch pixels) joins after hidden layer 17; output 7 ch; loss L1 + 2·Laplacian. The GDE never
trains here (paper: joint training hurts): its guides come precomputed from the Stage-1 cache, built
from `gde_ckpt` (+ `uv_normal_ckpt`, defaulting to the one the GDE was trained on).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from lightning_modules.gde import geometry_of
from lightning_modules.loading import recorded_upstream
from lightning_modules.texture_stage import TextureStageModule
from uhrtex.checkpoint import CheckpointError, upstream_record
from uhrtex.stage1.run import GUIDE_KEY, hfdr_input


def gde_upstream_uv_normal(gde_ckpt: str) -> str | None:
    """The UV&Normal checkpoint a GDE checkpoint was trained on, if it still exists unchanged."""
    record = recorded_upstream(gde_ckpt, "gde", "uv_normal")
    if not record:
        return None
    if not Path(record["path"]).is_file():
        raise CheckpointError(f"model.gde_ckpt was trained on uv_normal checkpoint {record['path']}, which is gone; "
                              f"pass model.uv_normal_ckpt=... explicitly")
    return record["path"]


class HFDRModule(TextureStageModule):
    stage = "hfdr"

    def __init__(self, net: nn.Module, optimizer, scheduler=None, monitor: str = "val/loss",
                 laplacian_weight: float = 2.0, masked_loss: bool = False, band_weight: float = 0.0,
                 band_factor: int = 4, band_energy_weight: float | dict[str, float] = 0.0, use_gt_geometry: bool = False,
                 gde_ckpt: str | None = None, uv_normal_ckpt: str | None = None, cache: dict | None = None):
        super().__init__(optimizer=optimizer, scheduler=scheduler, monitor=monitor)
        self.save_hyperparameters(logger=False, ignore=["net", "optimizer", "scheduler"])
        self.net = net

    @property
    def band_weights(self) -> tuple:
        return self.hparams.band_weight, self.hparams.band_energy_weight

    def _uv_normal_ckpt(self) -> str | None:
        hp = self.hparams
        if hp.use_gt_geometry:
            return None
        uv_normal = hp.uv_normal_ckpt or gde_upstream_uv_normal(hp.gde_ckpt)
        if not uv_normal:
            raise ValueError("HFDR on predicted geometry needs model.uv_normal_ckpt=... (the GDE checkpoint does "
                             "not name one), or set model.use_gt_geometry=true")
        return uv_normal

    def stage1_request(self) -> dict:
        """What the datamodule must cache for this stage: the frozen GDE's guides (+ predicted uv/normal)."""
        if not self.hparams.gde_ckpt:
            raise ValueError("HFDR needs the frozen GDE's guides: set model.gde_ckpt=<gde run>/checkpoints/last.ckpt")
        return {"uv_normal_ckpt": self._uv_normal_ckpt(), "gde_ckpt": self.hparams.gde_ckpt, "cache": self.hparams.cache}

    def setup(self, stage: str) -> None:
        self.upstream = {"gde": upstream_record(self.hparams.gde_ckpt), "uv_normal": upstream_record(self._uv_normal_ckpt())}

    def predict_batch(self, batch):
        uv, normal = geometry_of(batch, self.hparams.use_gt_geometry)
        return self.net(hfdr_input(batch["image"], uv, normal), batch[GUIDE_KEY])


class PatchOnlyHFDR(HFDRModule):
    """HFDR trained and evaluated with its guide input zeroed: the patch-only baseline (paper Fig. 3)."""

    def predict_batch(self, batch):
        batch = dict(batch)
        batch[GUIDE_KEY] = torch.zeros_like(batch[GUIDE_KEY])
        return super().predict_batch(batch)
