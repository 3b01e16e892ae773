"""Rebuild an upstream stage from its checkpoint file alone, and wire the Stage-1 cache into a datamodule.

A stage checkpoint carries `checkpoint["uhrtex"] = {"stage", "model_config", "upstream"?}` (see
`lightning_modules.base`), so `load_stage(path, "gde")` needs no config from the caller. Every failure
is one line naming the file, the problem and the fix.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate

from lightning_modules.base import CHECKPOINT_KEY, StageModule
from uhrtex.stage1 import Stage1
from uhrtex.stage1_cache import CacheSpec, cache_root_for, ensure_cache, file_digest, store_compute

log = logging.getLogger(__name__)
HASH_PREFIX = "hash_encoder."


class CheckpointError(ValueError):
    """An upstream checkpoint that cannot be used; the message is one line and says what to do."""


def read_checkpoint(path: str | Path, what: str) -> dict[str, Any]:
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"{what}: no checkpoint file at {path}; pass the .ckpt of a finished run "
                              f"(logs/<task>/runs/<run>/checkpoints/last.ckpt)")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - corrupt / not a torch file
        raise CheckpointError(f"{what}: {path} is not a readable checkpoint ({type(e).__name__}); pass a .ckpt "
                              f"written by experiments.run") from None


def has_hash_encoder(state_dict: dict[str, Any]) -> bool:
    return any(k.startswith(HASH_PREFIX) for k in state_dict)


def check_hash_match(state_dict: dict[str, Any], hash_enabled: bool, where: str) -> None:
    """One-line error when a GDE checkpoint and a config disagree about the hash encoder."""
    found = has_hash_encoder(state_dict)
    if found == hash_enabled:
        return
    if hash_enabled:
        raise CheckpointError(f"{where} has no hash encoder but the config has model.hash_encoding.enabled=true; "
                              f"set model.hash_encoding.enabled=false (exp gde_nohash) or pass a GDE checkpoint "
                              f"trained with hash encoding")
    raise CheckpointError(f"{where} has a hash encoder but the config has model.hash_encoding.enabled=false; "
                          f"set model.hash_encoding.enabled=true (exp gde) or pass a checkpoint of exp gde_nohash")


def load_stage(path: str | Path, stage: str, hash_enabled: bool | None = None) -> StageModule:
    """The frozen, eval-mode module of `stage` rebuilt from `path`.

    `hash_enabled` (GDE only): the caller's expectation; a checkpoint that disagrees is refused.
    """
    what = f"model.{stage}_ckpt"
    ckpt = read_checkpoint(path, what)
    meta = ckpt.get(CHECKPOINT_KEY) if isinstance(ckpt, dict) else None
    if not meta or "stage" not in meta:
        raise CheckpointError(f"{what}: {path} has no uhrtex stage tag; pass a checkpoint written by "
                              f"`python -m experiments.run +exp={stage}`")
    if meta["stage"] != stage:
        raise CheckpointError(f"{what}: {path} was written by stage '{meta['stage']}', expected '{stage}'; "
                              f"pass a checkpoint of exp {stage}")
    if "model_config" not in meta:
        raise CheckpointError(f"{what}: {path} has no model_config; it was not saved by experiments.run, retrain "
                              f"the stage with `+exp={stage}`")
    state = ckpt.get("state_dict", {})
    if stage == "gde":
        config_hash = bool(meta["model_config"].get("hash_encoding", {}).get("enabled", False))
        check_hash_match(state, config_hash, f"{what}: {path}")  # the file contradicts itself
        if hash_enabled is not None:
            check_hash_match(state, hash_enabled, f"{what}: {path}")
    module: StageModule = instantiate(meta["model_config"])
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else str(e)
        raise CheckpointError(f"{what}: {path} does not match its own model_config ({first}); retrain the stage "
                              f"with this code version") from None
    module.model_config = meta["model_config"]
    module.upstream = meta.get("upstream", {})
    module.requires_grad_(False)
    return module.eval()


def upstream_record(path: str | Path | None) -> dict[str, str] | None:
    """{"path", "sha256"} of an upstream checkpoint, for the downstream stage's own checkpoint."""
    if not path:
        return None
    return {"path": str(Path(path).expanduser().resolve()), "sha256": file_digest(Path(path).expanduser())}


def attach_stage1(module: StageModule, uv_normal_ckpt: str | None, gde_ckpt: str | None,
                  cache: dict[str, Any] | None = None) -> None:
    """Build (on rank 0) or reuse the Stage-1 cache for every capture in the trainer's datamodule, then
    `datamodule.attach_stage1(reader)`. Without `uv_normal_ckpt` the guide is computed from GT geometry."""
    cache = dict(cache or {})
    trainer = module.trainer
    dm = trainer.datamodule
    if dm is None or not hasattr(dm, "attach_stage1"):
        raise RuntimeError(f"stage '{module.stage}' needs the captures datamodule (data=captures), which can attach "
                           f"Stage-1 outputs; got {type(dm).__name__}")
    store = dm._store()  # a fresh read-only CaptureStore handle
    uv_normal = load_stage(uv_normal_ckpt, "uv_normal") if uv_normal_ckpt else None
    gde = load_stage(gde_ckpt, "gde") if gde_ckpt else None
    global_size = int(dm.hparams.global_size)
    stage1 = Stage1(uv_normal.net if uv_normal else None, gde.net if gde else None,
                    getattr(gde, "hash_encoder", None), global_size)
    upstream = {k: file_digest(Path(p).expanduser()) for k, p in (("uv_normal", uv_normal_ckpt), ("gde", gde_ckpt)) if p}
    spec = CacheSpec(upstream=upstream, keys=stage1.keys, global_size=global_size,
                     geometry="predicted" if uv_normal else "gt")
    root = Path(cache["root"]).expanduser() if cache.get("root") else default_cache_root(str(dm.hparams.store))
    captures = list(store.keys())
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
    dm.attach_stage1(reader)


def default_cache_root(store_url: str) -> Path:
    if "://" in store_url:
        raise ValueError(f"the capture store {store_url} is remote; set model.cache.root=<local or shared folder> "
                         f"for the Stage-1 cache")
    return cache_root_for(store_url)


def _refuse(captures: list[str]) -> dict:
    raise RuntimeError(f"Stage-1 cache is incomplete on a non-zero rank ({len(captures)} captures missing); "
                       f"is the cache root on a filesystem all processes share? set model.cache.root")
