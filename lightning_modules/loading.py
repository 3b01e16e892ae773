"""Upstream stages for training, read through the one checkpoint reader (`uhrtex.checkpoint`).

A stage checkpoint carries `checkpoint["uhrtex"] = {"stage", "model_config", "upstream"?}` (see
`lightning_modules.base`), so `load_stage(path, "gde")` needs no config from the caller. Loading is
`weights_only=True` and builds networks only through the allow-listed builders. Every failure is a
one-line `CheckpointError` naming the file, the problem and the fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from uhrtex.checkpoint import CheckpointError, build_stage, read_stage

HASH_PREFIX = "hash_encoder."


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


def load_stage(path: str | Path, stage: str, hash_enabled: bool | None = None) -> dict[str, nn.Module]:
    """{"net": module} (+ "hash_encoder" for a GDE trained with one): frozen, eval mode, rebuilt from `path`.

    `hash_enabled` (GDE only): the caller's expectation; a checkpoint that disagrees is refused.
    """
    what = f"model.{stage}_ckpt"
    record = read_stage(Path(path).expanduser(), stage, what)
    if stage == "gde" and hash_enabled is not None:
        check_hash_match(record.state_dict, hash_enabled, f"{what}: {path}")
    return build_stage(record)


def recorded_upstream(path: str | Path, stage: str, upstream: str) -> dict[str, str] | None:
    """The `{"path", "sha256"}` record of the `upstream` checkpoint that the `stage` checkpoint at `path` trained on."""
    return read_stage(Path(path).expanduser(), stage, f"model.{stage}_ckpt").upstream.get(upstream)


def stage_config(path: str | Path, stage: str) -> dict:
    """The model config the `stage` checkpoint at `path` was trained with."""
    return read_stage(Path(path).expanduser(), stage, f"model.{stage}_ckpt").model_config
