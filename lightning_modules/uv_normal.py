"""Stage 1a: the UV&Normal predictor (paper §3.2). image -> uv ⊕ normal ⊕ face mask, at the global size.

Loss: L1 (+ optional Laplacian) on uv/normal, masked to the ground-truth face; plus a BCE on the mask
channel (weight `mask_weight`), computed by hand in fp32 so it is autocast-safe.
"""

from __future__ import annotations

import torch
from torch import nn

from lightning_modules.base import StageModule
from lightning_modules.images import log_panel
from uhrtex import maps
from uhrtex.losses import pixel_laplacian_loss
from uhrtex.stage1.run import split_uv_normal, uv_normal_parts


def bce(prob: torch.Tensor, target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    p = prob.float().clamp(eps, 1 - eps)
    t = target.float()
    return -(t * p.log() + (1 - t) * (1 - p).log()).mean()


class UVNormalModule(StageModule):
    stage = "uv_normal"

    def __init__(self, net: nn.Module, optimizer, scheduler=None, monitor: str = "val/loss",
                 laplacian_weight: float = 0.0, mask_weight: float = 1.0):
        super().__init__(optimizer=optimizer, scheduler=scheduler, monitor=monitor)
        self.save_hyperparameters(logger=False, ignore=["net", "optimizer", "scheduler"])
        self.net = net

    def predict_batch(self, batch):
        return self.net(batch["image"])

    def loss_terms(self, pred, batch):
        parts = uv_normal_parts(pred)
        geo = maps.GEOMETRY.cat(parts)  # uv ⊕ normal, not multiplied by the predicted mask
        terms = pixel_laplacian_loss(geo, maps.GEOMETRY.cat(batch), self.hparams.laplacian_weight, mask=batch["mask"])
        terms = {f"geometry_{k}" if k != "loss" else k: v for k, v in terms.items()}
        if "mask" in parts:
            terms["mask_bce"] = bce(parts["mask"], batch["mask"])
            terms["loss"] = terms["loss"] + self.hparams.mask_weight * terms["mask_bce"]
        return terms

    def on_validation_batch_end(self, outputs, batch, batch_idx, dataloader_idx=0):
        if batch_idx == 0:
            out = split_uv_normal(outputs)
            log_panel(self, "val/panel", {"image": batch["image"], "uv": batch["uv"], "uv_pred": out["uv_pred"],
                                          "normal": batch["normal"], "normal_pred": out["normal_pred"],
                                          "mask": batch["mask"], "mask_pred": out["mask_pred"]})
