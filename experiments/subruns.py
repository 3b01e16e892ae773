"""The one place that composes and runs sub-runs of a task (demo, compare, ablation), and closes W&B.

A task that chains runs (`train_all`: captures -> uv_normal -> gde -> hfdr; `compare`: those + the
guide-less HFDR; `ablation_hash`: GDE variants) composes each one here, the way `python -m experiments.run`
would, runs it through the same wrapper (run record, W&B closed even on failure), and gets Hydra's global
config restored afterwards, whatever happened.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from experiments.cli import CONFIG_MODULE, CONFIG_NAME, normalize_overrides

log = logging.getLogger(__name__)
# Overrides of the parent command that never reach a sub-run (they name the parent task itself).
PARENT_ONLY = ("exp", "pipeline", "hydra", "entry", "task_name", "ckpt_path", "run_name", "train", "test",
               "trainer.fast_dev_run", "tags", "compare", "seeds", "seed", "ablation", "release")
# fast_dev_run writes no checkpoint; a smoke sub-run runs one batch each but keeps them, so hand-offs run too.
SMOKE_STAGE = ["trainer.max_epochs=1", "trainer.limit_train_batches=1", "trainer.limit_val_batches=1",
               "trainer.num_sanity_val_steps=0"]


def plain(value):
    """A config value as plain Python: a DictConfig becomes a dict (a checkpoint spec given on the command line)."""
    return OmegaConf.to_container(value) if isinstance(value, DictConfig) else value


def _key(override: str) -> str:
    return override.lstrip("+~").split("=", 1)[0]


INHERITED_GROUPS = ("preset", "method")


def parent_overrides(cfg: DictConfig) -> list[str]:
    """The parent's command-line overrides a sub-run inherits, plus its seed, run name and paths (from `cfg`, so
    a per-seed copy of the parent config gives per-seed sub-runs)."""
    try:
        hc = HydraConfig.get()
        task, choices = list(hc.overrides.task), dict(hc.runtime.choices)
    except ValueError:  # no Hydra config set (direct call)
        task, choices = [], {}
    keep = [o for o in normalize_overrides(task)
            if not any(_key(o) == k or _key(o).startswith((k + ".", k + "/")) for k in PARENT_ONLY)]
    # The scale and the recipe as the parent resolved them: an exp may choose them in its own defaults
    # (exp/release.yaml: preset=detail), which a sub-run composing another exp would not see.
    keep += [f"{g}={choices[g]}" for g in INHERITED_GROUPS if g in choices and not any(_key(o) == g for o in keep)]
    return [*keep, f"seed={cfg.seed}", f"run_name={cfg.run_name}", f"paths.root_dir={cfg.paths.root_dir}",
            f"paths.log_dir={cfg.paths.log_dir}", f"paths.data_dir={cfg.paths.data_dir}"]


def _compose(overrides: Sequence[str], hydra_node: bool) -> DictConfig:
    overrides = normalize_overrides(list(overrides))
    if GlobalHydra.instance().is_initialized():  # inside the parent's own Hydra app
        return compose(CONFIG_NAME, overrides=overrides, return_hydra_config=hydra_node)
    with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
        return compose(CONFIG_NAME, overrides=overrides, return_hydra_config=hydra_node)


def compose_model(overrides: Sequence[str]) -> DictConfig:
    """Only the `model` node of a composed config (no run directory, nothing written)."""
    return _compose(overrides, hydra_node=False).model


@contextlib.contextmanager
def hydra_state() -> Iterator[None]:
    """Restore Hydra's global config after sub-runs, which each set their own."""
    outer = HydraConfig.instance().cfg
    try:
        yield
    finally:
        HydraConfig.instance().set_config(outer)


def compose_run(overrides: Sequence[str]) -> DictConfig:
    """A run config as `python -m experiments.run` would compose it, its run directory set and recorded."""
    overrides = normalize_overrides(list(overrides))
    cfg = _compose(overrides, hydra_node=True)
    run_dir = str(Path(OmegaConf.select(cfg, "hydra.run.dir")).resolve())
    with read_write(cfg.hydra), open_dict(cfg.hydra):
        cfg.hydra.runtime.output_dir = run_dir
        cfg.hydra.job.num = 0
        cfg.hydra.overrides.task = list(overrides)
    HydraConfig.instance().set_config(cfg)
    # What a normal launch leaves in <run>/.hydra, so a sub-run can be resumed or repeated on its own,
    # without the parent's plumbing (paths, run_name): a resume then only has to repeat what matters.
    hydra_dir = Path(run_dir) / ".hydra"
    hydra_dir.mkdir(parents=True, exist_ok=True)
    typed = [o for o in overrides if not _key(o).startswith("paths.") and _key(o) != "run_name"]
    OmegaConf.save(OmegaConf.create(typed), hydra_dir / "overrides.yaml")
    return cfg


def run_subrun(overrides: Sequence[str], extra_callbacks: Mapping[str, Any] | None = None) -> tuple[Path, dict]:
    """Compose and run one sub-run; -> (its run directory, its metrics). Hydra's state is restored after."""
    from experiments.run import run  # the same wrapper as a normal launch

    with hydra_state():
        sub = compose_run(overrides)
        run_dir = Path(sub.paths.output_dir)  # resolve now: it reads the Hydra config compose_run set
        if extra_callbacks:
            with open_dict(sub):
                sub.callbacks = sub.get("callbacks") or {}
                for name, node in extra_callbacks.items():
                    sub.callbacks[name] = node
        log.info("=== sub-run %s", run_dir)
        metrics = run(sub)
    return run_dir, metrics


def subrun_config(cfg: DictConfig, name: str, updates: Mapping[str, Any]) -> DictConfig:
    """A copy of `cfg` writing into `<run dir>/<name>` with dotted-key `updates` (variants of one task, in-process)."""
    sub = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    run_dir = Path(cfg.paths.output_dir)
    with open_dict(sub):
        # Resolve the run dir now: `${hydra:...}` does not resolve outside the Hydra app that made it.
        sub.paths.output_dir = str(run_dir / name)
        sub.run_name = str(cfg.run_name)  # `${now:...}` would give each sub-run another time
        sub.pop("hydra", None)
        for key, value in updates.items():
            OmegaConf.update(sub, key, value, force_add=True)
        if sub.get("logger") and sub.logger.get("wandb") is not None:
            sub.logger.wandb.name = f"{cfg.task_name}/{cfg.run_name}/{name}"
            sub.logger.wandb.id = None
    return sub
