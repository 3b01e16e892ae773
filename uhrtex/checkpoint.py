"""One checkpoint reader for every consumer: training hand-off, the Stage-1 cache, reconstruction, evaluation.

Nothing here imports Lightning or Hydra. A stage checkpoint (written by `experiments.run`) carries
`state_dict` (keys `net.*`, GDE also `hash_encoder.*`), `checkpoint["uhrtex"] = {"stage", "model_config",
"upstream"?}` and, from the datamodule, `datamodule_hyper_parameters` with the preset's `input_size /
global_size / patch_size`.

Loading never runs code from the file: `torch.load(weights_only=True)`. The only globals a checkpoint may
name are plain builtins and the config containers that older Lightning runs pickled into hyper-parameters
(OmegaConf, AttributeDict), which become inert stand-ins; anything else (a pickled function or class) is
refused with a one-line CheckpointError. Networks are built only by the builders in `_BUILDERS`.
"""

from __future__ import annotations

import hashlib
import importlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

STAGES = ("uv_normal", "gde", "hfdr")
CHECKPOINT_KEY = "uhrtex"
SIZE_KEYS = ("input_size", "global_size", "patch_size")
# Network builders a config may name (a checkpoint must not make us call anything else).
_BUILDERS = {f"uhrtex.networks.stages.build_{s}" for s in STAGES} | {"uhrtex.networks.unet.UNet"}
_SAFE_BUILTINS = {"builtins.list": list, "builtins.dict": dict, "builtins.int": int, "builtins.float": float,
                  "builtins.str": str, "builtins.tuple": tuple, "builtins.set": set, "builtins.bool": bool}
# Config containers older runs pickled into hyper-parameters: loaded as inert stand-ins, never imported.
_CONFIG_PREFIXES = ("omegaconf.", "lightning.fabric.utilities.data.AttributeDict",
                    "lightning_fabric.utilities.data.AttributeDict", "pytorch_lightning.utilities.parsing.AttributeDict",
                    "collections.defaultdict", "typing.Any", "pathlib.")


class CheckpointError(ValueError):
    """A checkpoint/bundle that cannot be used; one line: the file, the problem, the fix."""


# ------------------------------------------------------------------------------------------ reading


def _stand_in(name: str) -> type:
    """An inert class named like `name`: accepts any constructor args and state, runs nothing."""

    def init(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs

    def setstate(self, state):
        self.state = state

    return type(name.rpartition(".")[2], (), {"__init__": init, "__setstate__": setstate, "__module__": "uhrtex.bundle"})


def safe_load(path: str | os.PathLike, what: str) -> Any:
    """torch.load(weights_only=True), with Lightning's pickled config objects mapped to inert stand-ins."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what}: no checkpoint file at {path}; pass the .ckpt of a finished run "
                              "(logs/<task>/runs/<run>/checkpoints/last.ckpt)")
    try:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception as e:  # noqa: BLE001 - truncated zip, not a torch file, ...
        msg = " ".join(str(e).split())[:160]
        raise CheckpointError(f"{what}: {path} is not a readable torch checkpoint ({type(e).__name__}: {msg}); "
                              "pass a .ckpt written by experiments.run or a bundle from export_bundle") from None
    foreign = sorted(n for n in unsafe if n not in _SAFE_BUILTINS and not n.startswith(_CONFIG_PREFIXES))
    if foreign:
        raise CheckpointError(f"{what}: {path} carries pickled code ({', '.join(foreign[:3])}); refusing to load it. "
                              "Use a checkpoint written by experiments.run or a bundle from export_bundle")
    try:
        allow = [(_SAFE_BUILTINS.get(n) or _stand_in(n), n) for n in unsafe]
        with torch.serialization.safe_globals(allow):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - truncated zip, not a torch file, ...
        msg = " ".join(str(e).split())[:160]
        raise CheckpointError(f"{what}: {path} is not a readable torch checkpoint ({type(e).__name__}: {msg}); "
                              "pass a .ckpt written by experiments.run or a bundle from export_bundle") from None


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes: the identity of a checkpoint (upstream records, Stage-1 cache keys)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class StageRecord:
    stage: str
    model_config: dict
    state_dict: dict[str, torch.Tensor]
    sizes: dict[str, int] = field(default_factory=dict)
    source: str = ""
    sha256: str = ""
    upstream: dict = field(default_factory=dict)


def read_stage(path: str | os.PathLike, stage: str, what: str | None = None) -> StageRecord:
    """One stage checkpoint -> StageRecord (one-line errors, starting with `what`, for a wrong/untagged/corrupt file)."""
    what = what or f"{stage} checkpoint"
    ckpt = safe_load(path, what)
    meta = ckpt.get(CHECKPOINT_KEY) if isinstance(ckpt, dict) else None
    if not isinstance(meta, dict) or "stage" not in meta:
        raise CheckpointError(f"{what}: {path} has no uhrtex stage tag; pass a checkpoint written by "
                              f"`python -m experiments.run +exp={stage}`")
    if meta["stage"] != stage:
        raise CheckpointError(f"{what}: {path} was written by stage '{meta['stage']}', expected '{stage}'")
    if not isinstance(meta.get("model_config"), dict) or not isinstance(ckpt.get("state_dict"), Mapping):
        raise CheckpointError(f"{what}: {path} lacks model_config or state_dict; retrain the stage with experiments.run")
    dm = ckpt.get("datamodule_hyper_parameters") or {}
    sizes = {k: int(dm[k]) for k in SIZE_KEYS if isinstance(dm, Mapping) and isinstance(dm.get(k), int)}
    return StageRecord(stage, meta["model_config"], dict(ckpt["state_dict"]), sizes, str(path), file_sha256(path),
                       meta.get("upstream") or {})


def newest_run_checkpoint(runs_dir: str | os.PathLike) -> Path | None:
    """`<runs_dir>/<newest run>/checkpoints/last.ckpt` (by modification time), or None: the one home of "the
    latest run" (resume with ckpt_path=last, a logs/ folder given as checkpoints)."""
    runs = sorted(Path(runs_dir).glob("*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
    return runs[-1] if runs else None


def stage_checkpoints(spec, prefix: str = "", what: str = "--ckpt") -> dict[str, str]:
    """{stage: file} from a folder (`find_checkpoints`) or a {uv_normal, gde, hfdr[, ...]} mapping (extra keys kept)."""
    if isinstance(spec, (str, os.PathLike)):
        return {s: str(p) for s, p in find_checkpoints(spec, prefix, what).items()}
    spec = dict(spec)
    missing = [s for s in STAGES if not spec.get(s)]
    if missing:
        raise CheckpointError(f"{what} lacks {missing}; give a folder (e.g. logs/) or all of {list(STAGES)}")
    return {k: str(v) for k, v in spec.items() if v}


def find_checkpoints(directory: str | os.PathLike, prefix: str = "", what: str = "--ckpt") -> dict[str, Path]:
    """{stage: file} from `DIR/<prefix><stage>.ckpt`, `DIR/<prefix><stage>/checkpoints/last.ckpt` or
    `DIR/<prefix><stage>/runs/<newest run>/checkpoints/last.ckpt` (a `logs/` folder works). `prefix` names runs of
    a variant (e.g. `lowres_`); `what` names the option in the one-line errors."""
    d = Path(directory)
    if not d.is_dir():
        raise CheckpointError(f"{what} {d}: no such directory; pass the folder with {prefix}uv_normal.ckpt "
                              f"{prefix}gde.ckpt {prefix}hfdr.ckpt (or the logs/ folder of the stage runs, or a bundle file)")
    found, missing = {}, []
    for stage in STAGES:
        name = prefix + stage
        candidates = [d / f"{name}.ckpt", d / name / "checkpoints" / "last.ckpt", newest_run_checkpoint(d / name / "runs")]
        hit = next((p for p in candidates if p is not None and p.is_file()), None)
        if hit is None:
            missing.append(name)
        else:
            found[stage] = hit
    if missing:
        raise CheckpointError(f"{what} {d}: missing stage(s) {', '.join(missing)}; expected {missing[0]}.ckpt or "
                              f"{missing[0]}/[runs/<run>/]checkpoints/last.ckpt there")
    return found


# ------------------------------------------------------------------------------------------ building


def _call_target(node: Mapping[str, Any], where: str, **extra) -> nn.Module:
    target = node.get("_target_")
    if target not in _BUILDERS:
        raise CheckpointError(f"{where}: network target {target!r} is not one of {sorted(_BUILDERS)}")
    module, _, name = target.rpartition(".")
    fn = getattr(importlib.import_module(module), name)
    kwargs = {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in node.items() if not k.startswith("_")}
    return fn(**kwargs, **extra)


def _sub_state(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def build_stage(rec: StageRecord) -> dict[str, nn.Module]:
    """-> {"net": module} (+ {"hash_encoder": module} for a GDE trained with one), eval mode, frozen."""
    where = f"{rec.stage} ({rec.source or 'bundle'})"
    cfg = rec.model_config
    if not isinstance(cfg.get("net"), Mapping):
        raise CheckpointError(f"{where}: model_config has no 'net' node")
    out: dict[str, nn.Module] = {}
    extra = {}
    if rec.stage == "gde":
        hcfg = dict(cfg.get("hash_encoding") or {})
        has_hash = any(k.startswith("hash_encoder.") for k in rec.state_dict)
        if bool(hcfg.get("enabled", False)) != has_hash:
            raise CheckpointError(f"{where}: model_config and weights disagree about the hash encoder; re-export it")
        if has_hash:
            from uhrtex.networks.hash_encoding import HashGridEncoding

            backend = hcfg.get("backend", "auto")
            backend = "torch" if backend == "auto" and not torch.cuda.is_available() else backend
            out["hash_encoder"] = HashGridEncoding(hcfg.get("config"), backend=backend)
        extra["hash_channels"] = out["hash_encoder"].n_output_dims if has_hash else 0
    out["net"] = _call_target(cfg["net"], where, **extra)
    for name, module in out.items():
        try:
            module.load_state_dict(_sub_state(rec.state_dict, f"{name}."), strict=True)
        except RuntimeError as e:
            first = next((ln.strip() for ln in str(e).splitlines()[1:] if ln.strip()), str(e))[:200]
            raise CheckpointError(f"{where}: weights do not match the network its config builds ({first})") from None
        module.requires_grad_(False).eval()
    return out


def upstream_record(path: str | os.PathLike | None) -> dict[str, str] | None:
    """{"path", "sha256"} of an upstream checkpoint, recorded in the downstream stage's own checkpoint."""
    if not path:
        return None
    p = Path(path).expanduser()
    return {"path": str(p.resolve()), "sha256": file_sha256(p)}
