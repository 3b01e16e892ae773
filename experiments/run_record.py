"""What every run directory keeps so a result can be traced and reproduced.

<run_dir>/config_resolved.yaml   the fully resolved config
<run_dir>/cmd.txt                one line per launch (resumes append)
<run_dir>/git.txt                revision, branch, dirty files; git.diff holds uncommitted changes
<run_dir>/code.tar.gz            snapshot of the tracked source files at launch
<run_dir>/wandb_id.txt           the W&B run id, reused on resume
"""

from __future__ import annotations

import io
import logging
import os
import shlex
import subprocess
import sys
import tarfile
from datetime import datetime, timezone
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from uhrtex.common.io import write_bytes_atomic, write_text_atomic

log = logging.getLogger(__name__)

SNAPSHOT_DIRS = ("uhrtex", "lightning_modules", "datamodules", "callbacks", "experiments", "benchmarks", "tests")


def _git(root: Path, *args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def _snapshot(root: Path, out: Path) -> None:
    files = _git(root, "ls-files", "--cached", "--others", "--exclude-standard").split()
    if not files:  # not a git checkout (e.g. an installed package): take the package folders
        files = [str(p.relative_to(root)) for d in SNAPSHOT_DIRS for p in (root / d).rglob("*")
                 if p.is_file() and "__pycache__" not in p.parts]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for f in files:
            path = root / f
            if path.is_file() and path.stat().st_size < 2_000_000:
                tar.add(path, arcname=f)
    write_bytes_atomic(out, buf.getvalue())


def record_launch(cfg: DictConfig, run_dir: Path, root: Path) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    cmd = shlex.join([os.path.basename(sys.executable), "-m", "experiments.run", *sys.argv[1:]])
    with open(run_dir / "cmd.txt", "a") as f:
        f.write(f"{stamp}\t{cmd}\n")
    write_text_atomic(run_dir / "config_resolved.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    rev = _git(root, "rev-parse", "HEAD").strip() or "unknown (not a git checkout)"
    branch = _git(root, "rev-parse", "--abbrev-ref", "HEAD").strip()
    dirty = _git(root, "status", "--porcelain")
    write_text_atomic(run_dir / "git.txt", f"revision: {rev}\nbranch: {branch}\ndirty:\n{dirty}")
    diff = _git(root, "diff", "HEAD")
    if diff:
        write_text_atomic(run_dir / "git.diff", diff)
    if not (run_dir / "code.tar.gz").exists():  # keep the snapshot of the first launch on resume
        _snapshot(root, run_dir / "code.tar.gz")


def wandb_run_id(run_dir: Path) -> str:
    """The run's W&B id: created once, then read back so resumes continue the same W&B run."""
    path = run_dir / "wandb_id.txt"
    if path.is_file():
        return path.read_text().strip()
    import secrets

    run_id = secrets.token_hex(4)
    write_text_atomic(path, run_id + "\n")
    return run_id


def finish_wandb(failed: bool = False) -> None:
    """End the current W&B run (if any), so the next run's WandbLogger starts its own."""
    try:
        import wandb
    except ImportError:
        return
    if wandb.run is not None:
        log.info("closing W&B run %s", wandb.run.id)
        wandb.finish(exit_code=1 if failed else 0)
