"""Build (on rank 0) or reuse the Stage-1 cache of every capture, for the stage being trained.

The LightningModule only says what it needs (`stage1_request()`: upstream checkpoints + cache settings);
the datamodule calls `prepare_stage1` from its own `setup`, so no module reaches into the datamodule.
Without a UV&Normal checkpoint the guide is computed from ground-truth geometry.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from lightning_modules.loading import load_stage, stage_config
from uhrtex.checkpoint import file_sha256
from uhrtex.stage1.run import Stage1, uv_prior_of
from uhrtex.stage1.cache import CacheSpec, Stage1Reader, cache_root_for, ensure_cache, store_compute

log = logging.getLogger(__name__)


def prepare_stage1(store, captures: list[str], trainer, global_size: int, store_url: str,
                   request: dict[str, Any]) -> Stage1Reader:
    """-> a reader of the cached Stage-1 outputs for `captures`, built by rank 0 and checked by the others."""
    uv_normal_ckpt, gde_ckpt = request.get("uv_normal_ckpt"), request.get("gde_ckpt")
    cache = dict(request.get("cache") or {})
    uv_normal = load_stage(uv_normal_ckpt, "uv_normal") if uv_normal_ckpt else None
    gde = load_stage(gde_ckpt, "gde") if gde_ckpt else None
    # The uv prior is the GDE's: its own setting while it trains, its checkpoint's for the stages after it.
    uv_prior = uv_prior_of(stage_config(gde_ckpt, "gde")) if gde_ckpt else request.get("uv_prior") or "none"
    stage1 = Stage1(uv_normal["net"] if uv_normal else None, gde["net"] if gde else None,
                    gde.get("hash_encoder") if gde else None, global_size, uv_prior if uv_normal else "none")
    upstream = {k: file_sha256(Path(p).expanduser()) for k, p in (("uv_normal", uv_normal_ckpt), ("gde", gde_ckpt)) if p}
    spec = CacheSpec(upstream=upstream, keys=stage1.keys, global_size=global_size,
                     geometry="predicted" if uv_normal else "gt",
                     extra={"uv_prior": stage1.uv_prior} if stage1.uv_prior != "none" else {})
    root = Path(cache["root"]).expanduser() if cache.get("root") else default_cache_root(store_url)
    reader = None
    if trainer.is_global_zero:
        device = trainer.strategy.root_device
        stage1.to(device)
        reader = ensure_cache(store, captures, store_compute(store, stage1, device), spec, root,
                              batch_size=int(cache.get("batch_size", 4)), verify=bool(cache.get("verify", False)),
                              progress=bool(cache.get("progress", True)))
        stage1.to("cpu")
    trainer.strategy.barrier("stage1_cache")
    if not trainer.is_global_zero:  # rank 0 built it; the others only check and read
        reader = ensure_cache(store, captures, _refuse, spec, root, progress=False)
    log.info("Stage-1 outputs %s from %s", reader.keys, reader.directory)
    return reader


def default_cache_root(store_url: str) -> Path:
    if "://" in store_url:
        raise ValueError(f"the capture store {store_url} is remote; set model.cache.root=<local or shared folder> "
                         f"for the Stage-1 cache")
    return cache_root_for(store_url)


def _refuse(captures: list[str]) -> dict:
    raise RuntimeError(f"Stage-1 cache is incomplete on a non-zero rank ({len(captures)} captures missing); "
                       f"is the cache root on a filesystem all processes share? set model.cache.root")
