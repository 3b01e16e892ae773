"""One exported file holding all three stages: plain dicts + tensors, loadable with weights_only=True.

    {"format": "uhrtex-bundle", "version": 1, "sizes": {"input_size", "global_size", "patch_size"},
     "stages": {stage: {"model_config": {...}, "state_dict": {...}, "sha256": "..."}}}

Stage checkpoints are read by `uhrtex.checkpoint`; this file only writes and reads bundles.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch

from uhrtex.checkpoint import SIZE_KEYS, STAGES, CheckpointError, StageRecord, safe_load

BUNDLE_FORMAT = "uhrtex-bundle"
BUNDLE_VERSION = 1


def save_bundle(path: str | os.PathLike, records: Mapping[str, StageRecord], sizes: Mapping[str, int]) -> None:
    """All stages in one plain file (atomic write)."""
    from uhrtex.common.io import atomic_path

    payload = {"format": BUNDLE_FORMAT, "version": BUNDLE_VERSION, "sizes": {k: int(sizes[k]) for k in SIZE_KEYS},
               "stages": {s: {"model_config": r.model_config, "sha256": r.sha256,
                              "state_dict": {k: v.detach().cpu().contiguous() if torch.is_tensor(v) else v
                                             for k, v in r.state_dict.items() if k.startswith(("net.", "hash_encoder."))}}
                          for s, r in records.items()}}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_bundle(path: str | os.PathLike) -> tuple[dict[str, StageRecord], dict[str, int]]:
    data = safe_load(path, "bundle")
    if not isinstance(data, dict) or data.get("format") != BUNDLE_FORMAT:
        raise CheckpointError(f"bundle: {path} is not a uhrtex bundle; make one with Reconstructor.export_bundle "
                              "or pass a checkpoint directory")
    if data.get("version") != BUNDLE_VERSION:
        raise CheckpointError(f"bundle: {path} has version {data.get('version')}, this code reads {BUNDLE_VERSION}")
    missing = [s for s in STAGES if s not in data.get("stages", {})]
    if missing:
        raise CheckpointError(f"bundle: {path} lacks stage(s) {', '.join(missing)}; re-export it")
    recs = {s: StageRecord(s, d["model_config"], d["state_dict"], dict(data["sizes"]), str(path), d.get("sha256", ""))
            for s, d in data["stages"].items()}
    return recs, dict(data["sizes"])
