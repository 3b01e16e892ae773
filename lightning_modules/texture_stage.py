"""What the GDE and the HFDR share: both predict the 7-channel texture (maps.TEXTURE) from frozen upstream stages."""

from __future__ import annotations

from lightning_modules.base import StageModule
from uhrtex import maps
from uhrtex.checkpoint import CHECKPOINT_KEY
from uhrtex.losses import band_energy_loss, band_loss, channel_weights, pixel_laplacian_loss


class TextureStageModule(StageModule):
    """Loss L1 + λ·Laplacian against the texture maps (hparams `laplacian_weight`, `masked_loss`; the HFDR's band terms), and the
    upstream checkpoints it trained on (`upstream`, set in `setup`) recorded in every checkpoint it writes."""

    def __init__(self, optimizer, scheduler=None, monitor: str = "val/loss"):
        super().__init__(optimizer=optimizer, scheduler=scheduler, monitor=monitor)
        self.upstream: dict = {}

    def loss_terms(self, pred, batch):
        mask = batch["mask"] if self.hparams.masked_loss else None
        target = maps.TEXTURE.cat(batch)
        terms = pixel_laplacian_loss(pred, target, self.hparams.laplacian_weight, mask)
        weight = self.band_weights[0]
        if weight:
            terms["band"] = band_loss(pred, target, int(self.hparams.band_factor), mask)
            terms["loss"] = terms["loss"] + weight * terms["band"]
        energy_weight, per_channel = channel_weights(self.band_weights[1], maps.TEXTURE)
        if energy_weight:
            terms["band_energy"] = band_energy_loss(pred, target, int(self.hparams.band_factor), mask,
                                                    channel_weight=per_channel)
            terms["loss"] = terms["loss"] + energy_weight * terms["band_energy"]
        return terms

    @property
    def band_weights(self) -> tuple:
        """(band_weight, band_energy_weight): the HFDR's detail-band terms; the GDE has none."""
        return 0.0, 0.0

    def on_save_checkpoint(self, checkpoint):
        super().on_save_checkpoint(checkpoint)
        checkpoint[CHECKPOINT_KEY]["upstream"] = self.upstream
