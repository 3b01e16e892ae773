"""Image panels per validation/test epoch for texture stages: input / GT / prediction for every map.

Three panels per capture (rows: albedo, micronormal, specular; columns: input | GT | prediction | |error|):
* `full`: the whole frame (downsampled to `display` px for viewing);
* `zoom`: a `zoom` px crop at native resolution around the face centre, shown enlarged (nearest) - at 4K,
  pores and fine wrinkles are invisible in the full-frame view;
* `seam`: a crop centred on a patch-grid corner inside the face, enlarged (assembled HFDR frames only).
PNG previews go to `<run>/previews/<split>/epoch<NNN>/<capture>_<panel>.png` (works with any logger); with a
WandbLogger the same panels are logged as images (offline by default, see logger/wandb.yaml).
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch

from callbacks.frames import Frame, FrameCollector
from callbacks.metrics import predicts_texture, wandb_loggers
from uhrtex import maps
from uhrtex.viz.panels import crop_box, face_centre, save_png, show


def seam_centre(frame: Frame) -> tuple[int, int]:
    """The patch-grid corner nearest the face centre."""
    cy, cx = face_centre(frame.region.float())
    p = frame.patch
    h, w = frame.pred.shape[-2:]

    def snap(v: int, n: int) -> int:  # the nearest interior grid line
        return min(max(p * round(v / p), p), n - p)

    return snap(cy, h), snap(cx, w)


def panel(frame: Frame, box: tuple[int, int, int] | None, display: int) -> torch.Tensor:
    """3 x (3 display) x (4 display): rows = TEXTURE maps, columns = input | GT | prediction | |error|."""
    y, x, s = box if box else (0, 0, None)
    crop = (lambda t: t[:, y:y + s, x:x + s]) if s else (lambda t: t)
    pred, target = maps.TEXTURE.split(frame.pred[None]), maps.TEXTURE.split(frame.target[None])
    image = show(crop(frame.image), display)
    rows = []
    for name in maps.TEXTURE.names:
        p, t = crop(pred[name][0]), crop(target[name][0])
        err = (p - t).abs().mean(0, keepdim=True) * 4  # x4 so small errors are visible
        rows.append(torch.cat([image, show(t, display), show(p, display), show(err, display)], dim=2))
    return torch.cat(rows, dim=1)


def frame_panels(frame: Frame, zoom: int = 128, seam: int = 32, display: int = 256) -> dict[str, torch.Tensor]:
    shape = tuple(frame.pred.shape[-2:])
    out = {"full": panel(frame, None, display),
           "zoom": panel(frame, crop_box(face_centre(frame.region.float()), zoom, shape), display)}
    if frame.patch:
        out["seam"] = panel(frame, crop_box(seam_centre(frame), seam, shape), display)
    return out


class TexturePanels(L.Callback):
    def __init__(self, max_captures: int = 2, zoom: int = 128, seam: int = 32, display: int = 256, grid: int = 8,
                 every_n_epochs: int = 1, out_dir: str | None = None, wandb: bool = True):
        self.zoom, self.seam, self.display, self.grid = zoom, seam, display, grid
        self.every, self.out_dir, self.wandb = every_n_epochs, out_dir, wandb
        self.collector = FrameCollector(grid, max_captures)
        self.panels: dict[str, list[tuple[str, torch.Tensor]]] = {}

    def _active(self, trainer, pl_module, split):
        if not predicts_texture(pl_module) or trainer.sanity_checking or not trainer.is_global_zero:
            return False
        return split == "test" or trainer.current_epoch % self.every == 0

    def _start(self, split):
        self.collector.reset()
        self.panels = {}

    def _add(self, frames: list[Frame]):
        for f in frames:
            for kind, img in frame_panels(f, self.zoom, self.seam, self.display).items():
                self.panels.setdefault(kind, []).append((f.key, img))

    def _batch(self, trainer, pl_module, outputs, batch, split):
        if self._active(trainer, pl_module, split):
            self._add(self.collector.add(batch, outputs))

    def _end(self, trainer, pl_module, split):
        if not self._active(trainer, pl_module, split):
            return
        self._add(self.collector.flush())
        root = Path(self.out_dir or trainer.default_root_dir) / "previews" / split / f"epoch{trainer.current_epoch:03d}"
        for kind, items in self.panels.items():
            for key, img in items:
                save_png(root / f"{key}_{kind}.png", img)
        if self.wandb:
            header = "columns: input | GT | prediction | |error|x4; rows: albedo, micronormal, specular"
            for lg in wandb_loggers(trainer):
                for kind, items in self.panels.items():
                    lg.log_image(key=f"{split}/panels/{kind}", images=[img for _, img in items],
                                 caption=[f"{k} ({header})" for k, _ in items], step=trainer.global_step)

    def on_validation_epoch_start(self, trainer, pl_module):
        self._start("val")

    def on_test_epoch_start(self, trainer, pl_module):
        self._start("test")

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._batch(trainer, pl_module, outputs, batch, "val")

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._batch(trainer, pl_module, outputs, batch, "test")

    def on_validation_epoch_end(self, trainer, pl_module):
        self._end(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer, pl_module):
        self._end(trainer, pl_module, "test")
