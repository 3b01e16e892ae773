"""Shared pieces of the evaluation tasks (+exp=ablation_hash, +exp=compare): per-capture rows, W&B tables."""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from experiments.run_record import finish_wandb
from uhrtex.metrics import Table

log = logging.getLogger(__name__)
MAP_HEADERS = {"albedo": "Albedo", "micronormal": "MicroNormal", "specular": "Specular"}


def read_rows(path: Path) -> list[dict[str, float | str]]:
    """Per-capture rows of a metrics CSV (callbacks/metrics.py): `capture` stays a string, the rest floats."""
    with open(path, newline="") as f:
        return [{k: (v if k == "capture" else float(v) if v != "" else math.nan) for k, v in r.items()} for r in csv.DictReader(f)]


def latest_test_rows(run_dir: Path) -> list[dict]:
    found = sorted((Path(run_dir) / "metrics").glob("test_epoch*.csv"))
    if not found:
        raise RuntimeError(f"no test metrics under {run_dir}/metrics; the texture_metrics callback must be enabled "
                           "(callbacks.texture_metrics) and test: true")
    return read_rows(found[-1])


def perceptual_key(rows: list[Mapping[str, Any]]) -> str | None:
    keys = {k.split("/", 1)[1] for r in rows for k in r if "/" in k}
    found = [k for k in ("lpips", "stlpips") if k in keys]
    if len(found) > 1:
        raise RuntimeError("rows mix LPIPS-alex and ST-LPIPS-alex; evaluate every method with one metrics.perceptual")
    return found[0] if found else None


PERCEPTUAL_NAMES = {"lpips": "LPIPS-alex", "stlpips": "ST-LPIPS-alex"}


def log_wandb_table(cfg: DictConfig, key: str, table: Table, job_type: str) -> None:
    """Log `table` to a W&B run of this task when the config has a wandb logger (offline by default)."""
    lg = cfg.get("logger")
    if not lg or lg.get("wandb") is None:
        return
    import wandb

    finish_wandb()
    w = lg.wandb
    run_dir = Path(cfg.paths.output_dir)
    run = wandb.init(dir=str(run_dir), project=w.get("project"), entity=w.get("entity"), group=w.get("group"),
                     name=f"{cfg.task_name}/{cfg.run_name}", job_type=job_type, tags=list(w.get("tags") or []),
                     mode="offline" if w.get("offline", True) else "online", reinit=True)
    columns, data = table.records()
    run.log({key: wandb.Table(columns=columns, data=data)})
    run.summary["table_markdown"] = table.markdown()
    run.finish()
