"""Collect texture predictions of validation/test batches into whole frames, one per capture.

Global-view batches (GDE) carry whole frames: every sample is a frame. Patch-view batches (HFDR) carry
full-resolution crops with their `box`; a capture's frame is assembled once its `grid`² patches have arrived
(then evaluated and freed, so 4K frames do not pile up). Patches that never complete a grid (fast_dev_run,
limit_val_batches, a DDP rank's share) are flushed at epoch end with a `coverage` mask of what arrived.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from uhrtex import maps


@dataclass
class Frame:
    key: str
    pred: torch.Tensor  # 7 x H x W, maps.TEXTURE
    target: torch.Tensor  # 7 x H x W
    image: torch.Tensor  # 3 x H x W
    mask: torch.Tensor  # 1 x H x W, the GT face mask
    coverage: torch.Tensor  # 1 x H x W, where predictions arrived
    patch: int | None  # patch size of an assembled frame (None: predicted whole)

    @property
    def region(self) -> torch.Tensor:
        """The evaluation region: face mask inside the predicted area."""
        return (self.mask > 0.5) & (self.coverage > 0.5)


class _Pending:
    def __init__(self, size: int, patch: int):
        self.maps = {k: torch.zeros(c, size, size) for k, c in (("pred", 7), ("target", 7), ("image", 3), ("mask", 1), ("coverage", 1))}
        self.patch, self.count = patch, 0


def texture_target(batch: dict) -> torch.Tensor:
    return maps.TEXTURE.cat({n: batch[n] for n in maps.TEXTURE.names})


class FrameCollector:
    def __init__(self, grid: int, max_frames: int | None = None):
        self.grid, self.max_frames = grid, max_frames
        self.pending: dict[str, _Pending] = {}
        self.done = 0

    def reset(self) -> None:
        self.pending.clear()
        self.done = 0

    def _full(self) -> bool:
        return self.max_frames is not None and self.done + len(self.pending) >= self.max_frames

    def add(self, batch: dict, pred: torch.Tensor) -> list[Frame]:
        """Feed one batch; returns the frames it completed."""
        if pred is None or not isinstance(pred, torch.Tensor) or pred.shape[1] != maps.TEXTURE.channels:
            return []
        pred, target = pred.detach().float().cpu(), texture_target(batch).detach().float().cpu()
        image, mask = batch["image"].detach().float().cpu(), batch["mask"].detach().float().cpu()
        keys = [str(k) for k in batch.get("capture", [f"sample{self.done + i}" for i in range(pred.shape[0])])]
        out = []
        if "box" not in batch:
            for i, key in enumerate(keys):
                if self._full():
                    break
                self.done += 1
                out.append(Frame(key, pred[i], target[i], image[i], mask[i], torch.ones_like(mask[i]), None))
            return out
        for i, (key, box) in enumerate(zip(keys, batch["box"].tolist())):
            y, x, h, w = box
            if key not in self.pending:
                if self._full():
                    continue
                self.pending[key] = _Pending(self.grid * h, h)
            p = self.pending[key]
            for name, src in (("pred", pred), ("target", target), ("image", image), ("mask", mask)):
                p.maps[name][:, y:y + h, x:x + w] = src[i]
            p.maps["coverage"][:, y:y + h, x:x + w] = 1
            p.count += 1
            if p.count == self.grid ** 2:
                out.append(self._finish(key))
        return out

    def _finish(self, key: str) -> Frame:
        p = self.pending.pop(key)
        self.done += 1
        return Frame(key, p.maps["pred"], p.maps["target"], p.maps["image"], p.maps["mask"], p.maps["coverage"], p.patch)

    def flush(self) -> list[Frame]:
        """Frames whose grid never completed (their coverage says which patches arrived)."""
        return [self._finish(k) for k in list(self.pending)]
