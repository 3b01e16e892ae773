"""Deterministic synthetic image pairs for framework tests (no rendering, no files)."""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from datamodules.loaders import make_loader, per_device_batch


def _smooth_noise(generator: torch.Generator, channels: int, size: int) -> torch.Tensor:
    coarse = torch.rand(1, channels, max(size // 8, 2), max(size // 8, 2), generator=generator)
    return F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)[0]


class ToyPairs(Dataset):
    """input: 3-ch smooth noise; target: a fixed channel mix + blur of it (learnable by a small UNet)."""

    def __init__(self, n: int, size: int, out_channels: int, seed: int):
        self.n, self.size, self.out_channels, self.seed = n, size, out_channels, seed
        mix = torch.Generator().manual_seed(1234)  # the operator is the same for every split
        self.mix = torch.rand(out_channels, 3, generator=mix)
        self.mix = self.mix / self.mix.sum(1, keepdim=True)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + i)
        x = _smooth_noise(g, 3, self.size)
        y = torch.einsum("oc,chw->ohw", self.mix, x)
        y = F.avg_pool2d(y[None], 3, stride=1, padding=1, count_include_pad=False)[0]
        return {"input": x, "target": y}


class ToyDataModule(L.LightningDataModule):
    def __init__(self, size: int = 64, out_channels: int = 5, n_train: int = 16, n_val: int = 8,
                 batch_size: int = 4, num_workers: int = 0, shuffle: bool = True):
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.batch_size_per_device = batch_size

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        self.batch_size_per_device = per_device_batch(hp.batch_size, self.trainer)
        self.train_set = ToyPairs(hp.n_train, hp.size, hp.out_channels, seed=1)
        self.val_set = ToyPairs(hp.n_val, hp.size, hp.out_channels, seed=2)

    def _loader(self, dataset, shuffle: bool) -> DataLoader:
        return make_loader(dataset, self.batch_size_per_device, shuffle, self.trainer, self.hparams.num_workers)

    def train_dataloader(self):
        return self._loader(self.train_set, self.hparams.shuffle)

    def val_dataloader(self):
        return self._loader(self.val_set, False)

    def test_dataloader(self):
        return self._loader(self.val_set, False)
