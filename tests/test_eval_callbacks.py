"""Metrics/panels callbacks on a fake texture stage: frame assembly, logged values, CSV, PNG previews, W&B."""

import csv

import lightning as L
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from callbacks.frames import FrameCollector
from callbacks.metrics import TextureMetrics
from callbacks.panels import TexturePanels
from uhrtex import maps
from uhrtex.hfdr.patches import grid_boxes

SIZE, GRID = 32, 4
PATCH = SIZE // GRID


def _capture(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    # Smooth maps (bilinear from 4x4), so seams stand out as they would on skin.
    coarse = {n: torch.rand(1, maps.CAPTURE.width(n), 4, 4, generator=g) for n in maps.CAPTURE.names}
    cap = {n: torch.nn.functional.interpolate(c, size=(SIZE, SIZE), mode="bilinear")[0] for n, c in coarse.items()}
    cap["mask"] = torch.zeros(1, SIZE, SIZE)
    cap["mask"][:, 4:28, 4:28] = 1
    return cap


def _patch_batches(keys=("a__l__c", "b__l__c"), batch=5) -> list[dict]:
    items = []
    for i, key in enumerate(keys):
        cap = _capture(i)
        for y, x, h, w in grid_boxes(SIZE, SIZE, PATCH):
            items.append({**{n: v[:, y:y + h, x:x + w] for n, v in cap.items()}, "box": torch.tensor([y, x, h, w]), "capture": key})
    return [{k: (torch.stack([it[k] for it in items[s:s + batch]]) if k != "capture" else [it[k] for it in items[s:s + batch]])
             for k in items[0]} for s in range(0, len(items), batch)]


def _global_batches() -> list[dict]:
    caps = [_capture(i) for i in range(3)]
    return [{**{n: torch.stack([c[n] for c in caps]) for n in maps.CAPTURE.names}, "capture": ["x__l__c", "y__l__c", "z__l__c"]}]


def test_collector_reassembles_patches_and_flushes_partial_grids():
    batches = _patch_batches()
    col = FrameCollector(GRID)
    frames = [f for b in batches for f in col.add(b, maps.TEXTURE.cat(b))]
    assert [f.key for f in frames] == ["a__l__c", "b__l__c"] and not col.pending
    cap = _capture(0)
    assert torch.equal(frames[0].image, cap["image"]) and torch.equal(frames[0].target, maps.TEXTURE.cat({n: cap[n][None] for n in maps.TEXTURE.names})[0])
    assert frames[0].coverage.all() and frames[0].patch == PATCH
    col.reset()
    assert col.add(batches[0], maps.TEXTURE.cat(batches[0])) == []  # 5 of 16 patches
    [partial] = col.flush()
    assert int(partial.coverage.sum()) == 5 * PATCH * PATCH


class FakeStage(L.LightningModule):
    """Predicts the target (plus a constant jump inside every patch's first column when `seams`)."""

    def __init__(self, stage: str, seams: bool = False):
        super().__init__()
        self.stage, self.seams = stage, seams
        self.w = torch.nn.Parameter(torch.zeros(()))

    def training_step(self, batch, i):
        return (self.w - 1) ** 2

    def _pred(self, batch):
        pred = maps.TEXTURE.cat(batch).clone()
        if self.seams:
            pred[..., :, 0] = (pred[..., :, 0] + 0.2).clamp(0, 1)
        return pred

    def validation_step(self, batch, i):
        return self._pred(batch)

    def test_step(self, batch, i):
        return self._pred(batch)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _trainer(tmp_path, callbacks, logger=False):
    return L.Trainer(default_root_dir=tmp_path, max_epochs=1, logger=logger, callbacks=callbacks, accelerator="cpu",
                     enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                     num_sanity_val_steps=0)


def _loader(batches):
    return DataLoader(batches, batch_size=None)


def test_metrics_callback_logs_perfect_gde_and_writes_csv(tmp_path):
    metrics = TextureMetrics(perceptual=None, grid=GRID)
    trainer = _trainer(tmp_path, [metrics])
    trainer.validate(FakeStage("gde"), _loader(_global_batches()))
    logged = trainer.callback_metrics
    assert logged["val/albedo/ssim"].item() == pytest.approx(1.0, abs=1e-5)
    assert logged["val/micronormal/angle"].item() < 0.1
    assert "val/albedo/seam" not in logged  # whole-frame predictions have no patch grid
    with open(tmp_path / "metrics" / "val_epoch000.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["capture"] for r in rows] == ["x__l__c", "y__l__c", "z__l__c"]


def test_metrics_callback_sees_hfdr_seams(tmp_path):
    metrics = TextureMetrics(perceptual=None, grid=GRID)
    _trainer(tmp_path, [metrics]).test(FakeStage("hfdr", seams=True), _loader(_patch_batches()))
    seamy = metrics.last["test"]
    metrics = TextureMetrics(perceptual=None, grid=GRID)
    _trainer(tmp_path, [metrics]).test(FakeStage("hfdr"), _loader(_patch_batches()))
    clean = metrics.last["test"]
    assert clean["albedo/psnr"] == float("inf") or clean["albedo/psnr"] > 80
    assert seamy["albedo/seam"] > 3 * clean["albedo/seam"]
    assert seamy["albedo/ssim"] < clean["albedo/ssim"]


def test_callbacks_skip_non_texture_stages(tmp_path):
    metrics, panels = TextureMetrics(perceptual=None, grid=GRID), TexturePanels(grid=GRID)
    _trainer(tmp_path, [metrics, panels]).validate(FakeStage("uv_normal"), _loader(_global_batches()))
    assert not metrics.last and not (tmp_path / "previews").exists()


def test_panels_write_pngs_and_wandb_images(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    from lightning.pytorch.loggers import WandbLogger

    logger = WandbLogger(save_dir=str(tmp_path), offline=True, project="uhrtex-test")
    panels = TexturePanels(max_captures=1, zoom=8, seam=8, display=16, grid=GRID)
    metrics = TextureMetrics(perceptual=None, grid=GRID)
    trainer = _trainer(tmp_path, [panels, metrics], logger=logger)
    trainer.test(FakeStage("hfdr", seams=True), _loader(_patch_batches()))
    out = tmp_path / "previews" / "test" / "epoch000"
    assert sorted(p.name for p in out.iterdir()) == [f"a__l__c_{k}.png" for k in ("full", "seam", "zoom")]
    assert Image.open(out / "a__l__c_full.png").size == (4 * 16, 3 * 16)
    import wandb

    run_dir = wandb.run.dir
    wandb.finish()
    wandb.teardown()  # stop this process's W&B service; it would otherwise outlive the test
    media = list((tmp_path / "wandb").rglob("*.png")) + list((tmp_path / "wandb").rglob("*.table.json"))
    assert any(p.suffix == ".png" for p in media) and any(p.name.endswith(".table.json") for p in media), run_dir
