"""Task `experiments.make_captures:make_captures`: render captures into a CaptureStore (see exp/make_captures.yaml)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from uhrtex.captures.generate import make_captures as render_into_store
from uhrtex.captures.assets import load_assets
from uhrtex.render.envdir import load_environments
from uhrtex.captures.generate import parse_shard, plan, plan_assets, shard_items
from uhrtex.captures.store import CaptureStore

log = logging.getLogger(__name__)


def make_captures(cfg: DictConfig) -> dict[str, float]:
    c = cfg.captures
    subjects, lightings, resolution, url = c.subjects, c.lightings, c.resolution, c.store
    global_sizes = [int(s) for s in c.global_sizes]
    if cfg.trainer.get("fast_dev_run"):  # smoke run: a couple of tiny captures, never into the real store
        f = c.fast_dev_run
        subjects, lightings, resolution = f.subjects, f.lightings, f.resolution
        global_sizes = [max(resolution // 4, 1)]
        url = str(Path(cfg.paths.output_dir) / "captures_fast_dev_run")
    options = cfg.data.get("storage_options")
    shard = c.get("shard")
    parse_shard(shard)  # a bad value fails before anything is read or rendered
    assets = load_assets(c.assets) if c.get("assets") else None  # every asset validated before any render
    env_dir = c.get("environments")
    if env_dir:
        load_environments(env_dir)  # every map read and checked before any render
    if assets and cfg.trainer.get("fast_dev_run"):
        assets = assets[:subjects]
    items = plan_assets(assets, lightings, c.cameras) if assets else plan(subjects, lightings, c.cameras, c.first_subject)
    items = shard_items(items, shard)
    store = CaptureStore(url, mode="a", storage_options=OmegaConf.to_container(options) if options else None)
    start = time.perf_counter()
    extra = {"environments": str(env_dir)} if env_dir else {}
    report = render_into_store(store, items, resolution, c.renderer, global_sizes=global_sizes, progress=c.progress,
                               assets=assets, **extra, **(OmegaConf.to_container(c.render) if c.render else {}))
    seconds = time.perf_counter() - start
    log.info("%s: %d rendered, %d already there (%.1f s)", url, len(report["written"]), len(report["skipped"]), seconds)
    return {"captures/written": float(len(report["written"])), "captures/skipped": float(len(report["skipped"])),
            "captures/total": float(len(store.keys(refresh=True))), "captures/seconds": seconds}
