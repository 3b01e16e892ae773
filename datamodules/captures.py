"""CaptureDataModule: the one datamodule of all three stages (see docs/contracts.md and docs/captures.md).

* view "global": whole frames area-downsampled to `global_size` (UV&Normal predictor, GDE).
* view "patch": full-resolution `patch_size` crops (HFDR): random offsets for training
  (`patches_per_capture` per capture per epoch), the fixed R x C grid for val/test.
* Split by subject, deterministic: subjects are ordered by sha256(f"{split_seed}:{subject}") and cut by
  `split_ratios` (train:val:test, default 5:1:1, i.e. the paper's 5:1 train:test plus a validation
  split the size of the test split). Every split gets at least one subject when its ratio is > 0.
  Fewer than 3 subjects (smoke runs) cannot be split without leaking: then val/test reuse subjects,
  with a warning.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from typing import Any
from collections.abc import Mapping, Sequence

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from datamodules.loaders import make_loader, per_device_batch
from uhrtex.captures.format import split_key
from uhrtex.captures.store import CaptureStore
from uhrtex.maps import CAPTURE
from uhrtex.hfdr.patches import Box, grid_boxes, sample_global

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")
STAGE1_NAMES = ("uv_pred", "normal_pred", "mask_pred", "guide")


def split_subjects(subjects: Sequence[str], ratios: Sequence[float] = (5, 1, 1), seed: int = 0) -> dict[str, list[str]]:
    """Deterministic subject-level split (see the module doc) -> {"train": [...], "val": [...], "test": [...]}."""
    if len(ratios) != 3 or min(ratios) < 0 or ratios[0] <= 0:
        raise ValueError(f"data.split_ratios={list(ratios)} must be three non-negative numbers train:val:test with train > 0")
    order = sorted(set(subjects), key=lambda s: hashlib.sha256(f"{seed}:{s}".encode()).hexdigest())
    n, total = len(order), float(sum(ratios))
    if n < 3:
        if n == 0:
            raise ValueError("no subjects to split")
        warnings.warn(f"only {n} subject(s): val/test reuse subjects (smoke-test fallback, not a real split)", stacklevel=2)
        return {"train": order[:1], "val": order[-1:], "test": order[-1:]}
    n_val = max(1, round(n * ratios[1] / total)) if ratios[1] > 0 else 0
    n_test = max(1, round(n * ratios[2] / total)) if ratios[2] > 0 else 0
    n_train = n - n_val - n_test
    if n_train < 1:
        raise ValueError(f"{n} subjects leave none for training with split_ratios={list(ratios)}")
    return {"train": order[:n_train], "val": order[n_train:n_train + n_val], "test": order[n_train + n_val:]}


class _Stage1Mixin:
    """Optional Stage-1 outputs (contracts.md): `reader.keys` names, `reader.read(capture) -> {name: c x g x g}`."""

    stage1: Any = None
    _stage1_cache: tuple[str, dict] | None = None

    def _stage1(self, key: str) -> dict[str, torch.Tensor]:
        if self._stage1_cache is None or self._stage1_cache[0] != key:  # patches of one capture come in runs
            maps = self.stage1.read(key)
            missing = [n for n in self.stage1.keys if n not in maps]
            if missing:
                raise KeyError(f"stage-1 reader returned no {missing} for capture '{key}'")
            self._stage1_cache = (key, {n: maps[n] for n in self.stage1.keys})
        return self._stage1_cache[1]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_stage1_cache": None}


class GlobalCaptures(_Stage1Mixin, Dataset):
    """One item per capture: every map at `size`², plus `capture` and `subject`."""

    def __init__(self, store: CaptureStore, keys: Sequence[str], size: int, names: Sequence[str] = CAPTURE.names):
        self.store, self.keys, self.size, self.names = store, list(keys), int(size), tuple(names)

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int) -> dict[str, Any]:
        key = self.keys[i]
        sample: dict[str, Any] = dict(self.store.read_global(key, self.size, self.names))
        if self.stage1 is not None:
            for name, m in self._stage1(key).items():
                if tuple(m.shape[-2:]) != (self.size, self.size):
                    raise ValueError(f"stage-1 '{name}' of '{key}' is {tuple(m.shape[-2:])}, expected {self.size}² (global size)")
                sample[name] = m
        sample.update(capture=key, subject=split_key(key)[0])
        return sample


class PatchCaptures(_Stage1Mixin, Dataset):
    """Full-resolution crops: `random` (per_capture offsets drawn per access) or the fixed `grid`."""

    def __init__(self, store: CaptureStore, keys: Sequence[str], full_size: int, patch: int, mode: str = "grid",
                 per_capture: int = 16, names: Sequence[str] = CAPTURE.names):
        if mode not in ("random", "grid"):
            raise ValueError(f"patch mode '{mode}' is not random or grid")
        self.store, self.keys, self.full, self.patch, self.mode = store, list(keys), int(full_size), int(patch), mode
        self.per_capture, self.names = int(per_capture), tuple(names)
        self.boxes = grid_boxes(self.full, self.full, self.patch)

    def __len__(self) -> int:
        return len(self.keys) * (self.per_capture if self.mode == "random" else len(self.boxes))

    def box(self, i: int) -> tuple[str, Box]:
        if self.mode == "grid":
            return self.keys[i // len(self.boxes)], self.boxes[i % len(self.boxes)]
        # Drawn from torch's global RNG: seeded per worker by Lightning (seed_everything(workers=True)).
        y, x = torch.randint(0, self.full - self.patch + 1, (2,)).tolist()
        return self.keys[i // self.per_capture], Box(y, x, self.patch, self.patch)

    def __getitem__(self, i: int) -> dict[str, Any]:
        key, box = self.box(i)
        sample: dict[str, Any] = dict(self.store.read(key, self.names, box))
        if self.stage1 is not None:
            for name, m in self._stage1(key).items():
                sample[name] = sample_global(m[None].float(), box, (self.full, self.full))[0]
        sample.update(box=torch.tensor(tuple(box), dtype=torch.long), capture=key, subject=split_key(key)[0])
        return sample


class CaptureDataModule(L.LightningDataModule):
    def __init__(self, store: str, view: str = "global", input_size: int = 512, global_size: int = 128,
                 patch_size: int = 64, batch_size: int = 8, num_workers: int = 0, patches_per_capture: int = 16,
                 split_ratios: Sequence[float] = (5, 1, 1), split_seed: int = 0, shuffle: bool = True,
                 storage_options: Mapping | None = None, generate_if_missing: Mapping | None = None):
        super().__init__()
        if view not in ("global", "patch"):
            raise ValueError(f"data.view='{view}' is not 'global' or 'patch'")
        self.save_hyperparameters(logger=False)
        self.batch_size_per_device = batch_size
        self.stage1 = None
        self.splits: dict[str, list[str]] = {}
        self.datasets: dict[str, Dataset] = {}

    def _store(self, mode: str = "r") -> CaptureStore:
        return CaptureStore(self.hparams.store, mode=mode, storage_options=dict(self.hparams.storage_options or {}))

    def prepare_data(self) -> None:
        """Rank 0 only: render missing captures if asked to, and cache the global level in the store."""
        hp = self.hparams
        if hp.generate_if_missing:
            from uhrtex.captures.generate import make_captures, plan

            opts = dict(hp.generate_if_missing)
            items = plan(int(opts.pop("subjects", 3)), int(opts.pop("lightings", 1)), int(opts.pop("cameras", 1)))
            make_captures(self._store("a"), items, hp.input_size, opts.pop("renderer", "builtin"),
                          global_sizes=[hp.global_size], progress=False, **opts)
        if hp.view == "global":
            try:
                self._store("r").keys()
            except ValueError:  # no store yet: setup() raises the one-line error
                return
            try:
                store = self._store("a")
                for key in store.keys():
                    store.ensure_global(key, hp.global_size)
            except OSError as e:  # read-only location: read_global computes on the fly instead
                log.warning("cannot cache %d² levels in %s (%s); computing them on the fly", hp.global_size, hp.store, e)

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        self.batch_size_per_device = per_device_batch(hp.batch_size, self.trainer)
        if self.datasets:
            return
        store = self._store()
        keys = store.keys()
        if not keys:
            raise ValueError(f"capture store {hp.store} has no finished captures; render some with `python -m "
                             f"experiments.run +exp=make_captures input_size={hp.input_size}` or ingest them")
        for key in keys[:1] + keys[-1:]:
            if store.size(key) != (hp.input_size, hp.input_size):
                h, w = store.size(key)
                raise ValueError(f"capture '{key}' in {hp.store} is {h}x{w} but input_size={hp.input_size}; "
                                 "point data.store at captures of this size or render them (+exp=make_captures)")
        self._prepare_stage1(store, keys)
        subjects = split_subjects([split_key(k)[0] for k in keys], hp.split_ratios, hp.split_seed)
        self.splits = {s: [k for k in keys if split_key(k)[0] in set(subjects[s])] for s in SPLITS}
        log.info("capture split by subject: %s", {s: f"{len(subjects[s])} subjects / {len(self.splits[s])} captures" for s in SPLITS})
        for split in SPLITS:
            if hp.view == "global":
                ds = GlobalCaptures(store, self.splits[split], hp.global_size)
            else:
                ds = PatchCaptures(store, self.splits[split], hp.input_size, hp.patch_size,
                                   "random" if split == "train" else "grid", hp.patches_per_capture)
            ds.stage1 = self.stage1
            self.datasets[split] = ds

    def _prepare_stage1(self, store: CaptureStore, keys: list[str]) -> None:
        """Cache the Stage-1 outputs the trained module asks for (`stage1_request()`), once."""
        module = self.trainer.lightning_module if self.trainer is not None else None
        request = module.stage1_request() if hasattr(module, "stage1_request") else None
        if request is None or self.stage1 is not None:
            return
        from datamodules.stage1 import prepare_stage1

        self.attach_stage1(prepare_stage1(store, keys, self.trainer, int(self.hparams.global_size),
                                          str(self.hparams.store), request))

    def attach_stage1(self, reader) -> None:
        """Carry Stage-1 outputs (contracts.md) in every batch from now on."""
        unknown = [n for n in reader.keys if n not in STAGE1_NAMES]
        if unknown:
            raise ValueError(f"stage-1 reader keys {unknown} are not among {list(STAGE1_NAMES)}")
        self.stage1 = reader
        for ds in self.datasets.values():
            ds.stage1 = reader

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        if not self.datasets:
            self.setup()
        return make_loader(self.datasets[split], self.batch_size_per_device, shuffle, self.trainer,
                           self.hparams.num_workers, seed=self.hparams.split_seed)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.hparams.shuffle)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)
