"""DataLoader construction shared by the datamodules, DDP-safe and honest about `shuffle`.

Lightning replaces a plain sampler with a DistributedSampler that always shuffles the training set.
We build the DistributedSampler ourselves (Lightning leaves an existing one alone and still calls
`set_epoch`), so `shuffle=false` means the same sample order on 1 or N processes.
"""

from __future__ import annotations

import lightning as L
from torch.utils.data import DataLoader, Dataset, DistributedSampler


def world_size(trainer: L.Trainer | None) -> int:
    return trainer.world_size if trainer is not None else 1


def per_device_batch(global_batch: int, trainer: L.Trainer | None) -> int:
    world = world_size(trainer)
    if global_batch % world:
        raise ValueError(f"data.batch_size={global_batch} is the global batch and must be divisible by the "
                         f"number of processes ({world}); change data.batch_size or trainer.devices")
    return global_batch // world


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool, trainer: L.Trainer | None, num_workers: int = 0,
                seed: int = 0, drop_last: bool = False) -> DataLoader:
    sampler = None
    if world_size(trainer) > 1:
        sampler = DistributedSampler(dataset, num_replicas=trainer.world_size, rank=trainer.global_rank,
                                     shuffle=shuffle, seed=seed, drop_last=drop_last)
        shuffle = False
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, sampler=sampler, num_workers=num_workers,
                      persistent_workers=num_workers > 0, drop_last=drop_last)
