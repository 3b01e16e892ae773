"""One exported file holding all three stages: plain dicts + tensors, loadable with weights_only=True.

    {"format": "uhrtex-bundle", "version": 1, "sizes": {"input_size", "global_size", "patch_size"},
     "stages": {stage: {"model_config": {...}, "state_dict": {...}, "sha256": "..."}}, "meta": {...}}

Stage checkpoints are read by `uhrtex.checkpoint`; this file only writes and reads bundles. `half=True` stores the
weights as float16 (half the file; they are read back as float32); `meta` is free JSON (name, method, training).
The shipped model (`uhrtex/weights/`, `shipped_bundle()`) is such a file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch

from uhrtex.checkpoint import SIZE_KEYS, STAGES, CheckpointError, StageRecord, safe_load

BUNDLE_FORMAT = "uhrtex-bundle"
BUNDLE_VERSION = 1


WEIGHTS_DIR = Path(__file__).with_name("weights")
SHIPPED_NAME = "uhrtex-detail"


def shipped_bundle() -> Path:
    """The model that ships with uhrtex (package data): used when no checkpoint is given."""
    path = WEIGHTS_DIR / f"{SHIPPED_NAME}.bundle"
    if not path.is_file():
        raise CheckpointError(f"no shipped weights at {path} (a source checkout without them, or a damaged install); "
                              "pass --ckpt DIR|BUNDLE, or train them with python -m experiments.run +exp=release")
    return path


def _stored(v, half: bool):
    if not torch.is_tensor(v):
        return v
    v = v.detach().cpu().contiguous()
    return v.half() if half and v.is_floating_point() else v


def save_bundle(path: str | os.PathLike, records: Mapping[str, StageRecord], sizes: Mapping[str, int], half: bool = False,
                meta: Mapping | None = None) -> None:
    """All stages in one plain file (atomic write); `half`: float16 weights."""
    from uhrtex.common.io import atomic_path

    payload = {"format": BUNDLE_FORMAT, "version": BUNDLE_VERSION, "sizes": {k: int(sizes[k]) for k in SIZE_KEYS},
               "stages": {s: {"model_config": r.model_config, "sha256": r.sha256,
                              "state_dict": {k: _stored(v, half) for k, v in r.state_dict.items()
                                             if k.startswith(("net.", "hash_encoder."))}}
                          for s, r in records.items()},
               "meta": {**dict(meta or {}), "dtype": "float16" if half else "float32"}}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_bundle(path: str | os.PathLike) -> tuple[dict[str, StageRecord], dict[str, int]]:
    """(stage records with float32 weights, sizes); one-line CheckpointError for a file that is not a whole bundle."""
    data = safe_load(path, "bundle")
    if not isinstance(data, dict) or data.get("format") != BUNDLE_FORMAT:
        raise CheckpointError(f"bundle: {path} is not a uhrtex bundle; make one with Reconstructor.export_bundle "
                              "or pass a checkpoint directory")
    if data.get("version") != BUNDLE_VERSION:
        raise CheckpointError(f"bundle: {path} has version {data.get('version')}, this code reads {BUNDLE_VERSION}")
    missing = [s for s in STAGES if s not in data.get("stages", {})]
    if missing:
        raise CheckpointError(f"bundle: {path} lacks stage(s) {', '.join(missing)}; re-export it")
    try:
        recs = {s: StageRecord(s, d["model_config"], {k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v
                                                      for k, v in d["state_dict"].items()},
                               dict(data["sizes"]), str(path), d.get("sha256", ""))
                for s, d in data["stages"].items()}
    except (KeyError, TypeError, AttributeError) as e:
        raise CheckpointError(f"bundle: {path} is damaged ({type(e).__name__}: {e}); re-export or reinstall it") from None
    return recs, dict(data["sizes"])


def bundle_meta(path: str | os.PathLike) -> dict:
    return dict(safe_load(path, "bundle").get("meta") or {})
