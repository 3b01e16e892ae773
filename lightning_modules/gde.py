"""Stage 1b: the Global Distribution Extractor with its facial hash encoding, trained jointly (paper §3.3).

Input at the global size: image ⊕ uv ⊕ normal ⊕ hash(uv) -> 7-channel guide (maps.TEXTURE); loss
L1 + 1·Laplacian. uv/normal are the frozen UV&Normal predictor's outputs (as in the paper), read from
the Stage-1 cache built from `uv_normal_ckpt`; `use_gt_geometry=true` uses the captures' own uv/normal
instead (ablations, smoke tests). `hash_encoding.enabled=false` is the no-hash ablation (8-ch input).
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import islice
from typing import Any

import torch
from torch import nn

from lightning_modules.loading import check_hash_match
from lightning_modules.texture_stage import TextureStageModule
from uhrtex import maps
from uhrtex.checkpoint import upstream_record
from uhrtex.networks.hash_encoding import HashGridEncoding
from uhrtex.networks.stages import gde_input_layout
from uhrtex.stage1.run import UV_PRIORS, gde_input


def make_hash_encoder(hash_encoding: dict[str, Any] | None) -> HashGridEncoding | None:
    cfg = dict(hash_encoding or {})
    if not cfg.get("enabled", True):
        return None
    backend = cfg.get("backend", "auto")
    # tcnn needs its tensors on CUDA from the start; the torch backend is device-agnostic.
    device = "cuda" if backend != "torch" and torch.cuda.is_available() else None
    return HashGridEncoding(cfg.get("config"), backend=backend, device=device)


def geometry_of(batch: dict[str, torch.Tensor], use_gt: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(uv, normal) a downstream network sees: ground truth, or the cached Stage-1 prediction."""
    if use_gt:
        return batch["uv"], batch["normal"]
    if "uv_pred" not in batch:
        raise KeyError("batch has no Stage-1 'uv_pred'; set model.uv_normal_ckpt=... or model.use_gt_geometry=true")
    return batch["uv_pred"], batch["normal_pred"]


def face_mask_of(batch: dict[str, torch.Tensor], use_gt: bool) -> torch.Tensor:
    """The face mask that goes with `geometry_of`: the captures' own, or the Stage-1 predicted one."""
    return batch["mask"] if use_gt else batch["mask_pred"]


MEAN_BATCHES = 64  # start_from_mean: enough training batches for a mean colour, a bounded cost on a large store


@torch.no_grad()
def face_means(batches) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel means of the target texture (maps.TEXTURE) and of the image inside the face masks of `batches`."""
    texture, image, count = torch.zeros(maps.TEXTURE.channels), torch.zeros(maps.IMAGE.channels), torch.zeros(())
    for batch in batches:
        mask = batch["mask"].float().cpu()
        texture += (maps.TEXTURE.cat(batch).float().cpu() * mask).sum((0, 2, 3))
        image += (batch["image"].float().cpu() * mask).sum((0, 2, 3))
        count += mask.sum()
    if count <= 0:
        raise ValueError("start_from_mean: the training captures have no face pixels (empty masks); check the store")
    return texture / count, image / count


class GDEModule(TextureStageModule):
    stage = "gde"

    def __init__(self, net: Callable[..., nn.Module], optimizer, scheduler=None, monitor: str = "val/loss",
                 hash_encoding: dict | None = None, laplacian_weight: float = 1.0, masked_loss: bool = False,
                 use_gt_geometry: bool = False, uv_normal_ckpt: str | None = None, cache: dict | None = None,
                 start_from_mean: bool = False, uv_prior: str = "none"):
        super().__init__(optimizer=optimizer, scheduler=scheduler, monitor=monitor)
        if uv_prior not in UV_PRIORS:
            raise ValueError(f"model.uv_prior={uv_prior} is not one of {UV_PRIORS}")
        self.save_hyperparameters(logger=False, ignore=["net", "optimizer", "scheduler"])
        self.hash_encoder = make_hash_encoder(hash_encoding)  # trained jointly: its params are in self.parameters()
        hash_channels = self.hash_encoder.n_output_dims if self.hash_encoder is not None else 0
        self.net = net(hash_channels=hash_channels) if not isinstance(net, nn.Module) else net
        expected = gde_input_layout(hash_channels).channels
        if self.net.in_channels != expected:
            raise ValueError(f"GDE net takes {self.net.in_channels} channels but image ⊕ uv ⊕ normal ⊕ hash is "
                             f"{expected}; build it with build_gde(hash_channels={hash_channels})")

    def stage1_request(self) -> dict | None:
        """What the datamodule must cache for this stage (uv/normal predictions), or None for GT geometry."""
        if self.hparams.use_gt_geometry:
            return None
        if not self.hparams.uv_normal_ckpt:
            raise ValueError("GDE trains on predicted uv/normal: set model.uv_normal_ckpt=<uv_normal run>/checkpoints/"
                             "last.ckpt (or model.use_gt_geometry=true for ground-truth geometry)")
        return {"uv_normal_ckpt": self.hparams.uv_normal_ckpt, "gde_ckpt": None, "cache": self.hparams.cache,
                "uv_prior": self.hparams.uv_prior}

    def setup(self, stage: str) -> None:
        if not self.hparams.use_gt_geometry:
            self.upstream = {"uv_normal": upstream_record(self.hparams.uv_normal_ckpt)}

    def predict_batch(self, batch):
        use_gt = self.hparams.use_gt_geometry
        uv, normal = geometry_of(batch, use_gt)
        return self.net(gde_input(batch["image"], uv, normal, self.hash_encoder), face_mask_of(batch, use_gt))

    def on_train_start(self) -> None:
        super().on_train_start()
        if self.hparams.start_from_mean and self.global_step == 0:  # a fresh run, not a resumed one
            means = face_means(islice(self.trainer.train_dataloader, MEAN_BATCHES))
            means = self.trainer.strategy.broadcast(means, src=0)  # DDP: every rank starts from rank 0's weights
            self.net.start_from(*means)

    def on_load_checkpoint(self, checkpoint):
        super().on_load_checkpoint(checkpoint)
        check_hash_match(checkpoint.get("state_dict", {}), self.hash_encoder is not None, "the GDE checkpoint")
