"""Compose the real config with test overrides and run it in-process (no subprocess start-up cost)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict, read_write

from experiments.cli import compose_config

REPO = Path(__file__).resolve().parents[2]
# Small, quiet, CPU-only settings shared by every framework test.
CPU_OVERRIDES = ["trainer.accelerator=cpu", "trainer.devices=1", "logger=csv", "callbacks.progress_bar=null",
                 "callbacks.model_summary=null", "data.num_workers=0"]


def compose(overrides: list[str], root: Path) -> DictConfig:
    GlobalHydra.instance().clear()
    cfg = compose_config(overrides)
    with open_dict(cfg):
        cfg.paths.root_dir = str(root)
        cfg.paths.log_dir = str(root / "logs")
        cfg.paths.data_dir = str(root / "data")
        cfg.paths.output_dir = str(root / "run")
    with read_write(cfg.hydra):
        cfg.hydra.runtime.output_dir = str(root / "run")
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    return cfg


def run_in_process(overrides: list[str], root: Path) -> dict:
    from experiments.run import run

    return run(compose(overrides, root))


def cli(args: list[str], root: Path, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `python -m experiments.run ARGS` with the project root at `root` (logs go there)."""
    full_env = {**os.environ, "UHRTEX_ROOT": str(root), "PYTHONPATH": str(REPO), "WANDB_SILENT": "true",
                "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "experiments.run", *args], cwd=root, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
