"""A framework smoke-test stage: a UNet that learns a fixed local image operator.

It exercises config composition, logging, checkpoint/resume and DDP without depending on the
capture renderer, so framework tests stay fast and independent of the method's data.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from lightning_modules.base import StageModule


class ToyModule(StageModule):
    stage = "toy"

    def __init__(self, net: nn.Module, optimizer, scheduler=None, monitor: str = "val/loss"):
        super().__init__(optimizer=optimizer, scheduler=scheduler, monitor=monitor)
        self.save_hyperparameters(logger=False, ignore=["net", "optimizer", "scheduler"])
        self.net = net

    def predict_batch(self, batch):
        return self.net(batch["input"])

    def loss_terms(self, pred, batch):
        return {"loss": F.l1_loss(pred, batch["target"])}
