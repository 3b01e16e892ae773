"""Task `experiments.train_all:train_all` (exp/demo.yaml): the whole method from one command.

1. Render the planned captures into `data.store` if any is missing (`+exp=make_captures`, resumable).
2. Train uv_normal -> gde -> hfdr, each a normal run of its own exp in `logs/<stage>/runs/<run_name>`
   (own config record, checkpoints, W&B run; resumable alone), handing each `last.ckpt` downstream
   through `model.uv_normal_ckpt` / `model.gde_ckpt`.
3. Print and save (`<demo run>/summary.json`) the runs, checkpoints and first/last validation losses.

Command-line overrides of the demo (preset, trainer.*, data.*, logger, ...) are passed to every stage;
`pipeline.overrides.<stage>` adds per-stage ones. With `trainer.fast_dev_run=true` each stage runs one
train and one val batch but still writes its checkpoint, so the hand-off is exercised too.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from experiments.cli import CONFIG_MODULE, CONFIG_NAME

log = logging.getLogger(__name__)
# Overrides of the demo command that must not reach the stage runs (they name the demo itself).
_NOT_PASSED = ("exp", "pipeline", "hydra", "entry", "task_name", "ckpt_path", "run_name", "train", "test",
               "trainer.fast_dev_run", "tags")
_UPSTREAM = {"gde": ("uv_normal",), "gde_nohash": ("uv_normal",), "hfdr": ("uv_normal", "gde")}


def _key(override: str) -> str:
    return override.lstrip("+~").split("=", 1)[0]


def passthrough_overrides() -> list[str]:
    try:
        task = list(HydraConfig.get().overrides.task)
    except ValueError:  # no Hydra config set (direct call)
        return []
    return [o for o in task if not any(_key(o) == k or _key(o).startswith(k + ".") or _key(o).startswith(k + "/")
                                       for k in _NOT_PASSED)]


def compose_run(overrides: list[str]) -> DictConfig:
    """Compose a run config the way `python -m experiments.run` would, with its run directory set."""
    if GlobalHydra.instance().is_initialized():  # inside the demo's own Hydra app
        cfg = compose(CONFIG_NAME, overrides=overrides, return_hydra_config=True)
    else:
        with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
            cfg = compose(CONFIG_NAME, overrides=overrides, return_hydra_config=True)
    run_dir = str(Path(OmegaConf.select(cfg, "hydra.run.dir")).resolve())
    with read_write(cfg.hydra), open_dict(cfg.hydra):
        cfg.hydra.runtime.output_dir = run_dir
        cfg.hydra.job.num = 0
        cfg.hydra.overrides.task = list(overrides)
    HydraConfig.instance().set_config(cfg)
    # What a normal launch leaves in <run>/.hydra, so a stage run can be resumed or repeated on its own.
    hydra_dir = Path(run_dir) / ".hydra"
    hydra_dir.mkdir(parents=True, exist_ok=True)
    # Without the demo's own plumbing (paths, run_name): a resume then only has to repeat what matters.
    typed = [o for o in overrides if not _key(o).startswith("paths.") and _key(o) != "run_name"]
    OmegaConf.save(OmegaConf.create(typed), hydra_dir / "overrides.yaml")
    return cfg


def _missing_captures(cfg: DictConfig) -> int:
    from uhrtex.captures.generate import plan
    from uhrtex.captures.store import CaptureStore

    c = cfg.pipeline.captures
    planned = {item.key for item in plan(c.subjects, c.lightings, c.cameras)}
    try:
        have = set(CaptureStore(cfg.data.store).keys())
    except ValueError:  # no store yet
        have = set()
    return len(planned - have)


def _history(run_dir: Path) -> list[float]:
    path = run_dir / "val_loss.json"
    return json.loads(path.read_text())["values"] if path.is_file() else []


def train_all(cfg: DictConfig) -> dict[str, float]:
    from experiments.run import run  # the same wrapper as a normal launch: run record, W&B closed per stage

    outer = HydraConfig.instance().cfg
    demo_dir = Path(cfg.paths.output_dir)
    p = cfg.pipeline
    base = [*passthrough_overrides(), f"run_name={cfg.run_name}", f"paths.root_dir={cfg.paths.root_dir}",
            f"paths.log_dir={cfg.paths.log_dir}", f"paths.data_dir={cfg.paths.data_dir}"]
    fast = bool(cfg.trainer.get("fast_dev_run"))
    threads = torch.get_num_threads()
    if p.get("torch_threads"):
        torch.set_num_threads(int(p.torch_threads))
    summary: dict[str, dict] = {}
    metrics: dict[str, float] = {}
    try:
        missing = _missing_captures(cfg)
        if missing:
            c = p.captures
            log.info("rendering %d missing captures into %s", missing, cfg.data.store)
            run(compose_run(["+exp=make_captures", *base, "trainer.fast_dev_run=false", f"captures.subjects={c.subjects}",
                             f"captures.lightings={c.lightings}", f"captures.cameras={c.cameras}",
                             f"captures.store={cfg.data.store}"]))
        ckpts: dict[str, str] = {}
        for stage in p.stages:
            upstream = [f"model.{u}_ckpt={ckpts[u]}" for u in _UPSTREAM.get(stage, ()) if u in ckpts]
            extra = list(p.overrides.get("all") or []) + list(p.overrides.get(stage) or [])
            if fast:  # one batch each, but with checkpoints (fast_dev_run writes none) so the hand-off runs
                extra += ["trainer.max_epochs=1", "trainer.limit_train_batches=1", "trainer.limit_val_batches=1",
                          "trainer.num_sanity_val_steps=0"]
            sub = compose_run([f"+exp={stage}", *base, *upstream, *extra])
            run_dir = Path(sub.paths.output_dir)
            with open_dict(sub):
                sub.callbacks = sub.get("callbacks") or {}
                sub.callbacks.loss_history = {"_target_": "callbacks.loss_history.LossHistory",
                                              "path": str(run_dir / "val_loss.json"), "monitor": sub.model.monitor}
            log.info("=== %s: %s", stage, run_dir)
            run(sub)
            ckpt = run_dir / "checkpoints" / "last.ckpt"
            if not ckpt.is_file():
                raise RuntimeError(f"stage {stage} wrote no {ckpt}; keep callbacks.model_checkpoint enabled for the demo")
            ckpts[stage] = str(ckpt)
            losses = _history(run_dir)
            summary[stage] = {"run_dir": str(run_dir), "checkpoint": str(ckpt), "val_loss": losses}
            if losses:
                metrics[f"{stage}/val_loss_first"], metrics[f"{stage}/val_loss_last"] = losses[0], losses[-1]
    finally:
        HydraConfig.instance().set_config(outer)
        torch.set_num_threads(threads)
    demo_dir.mkdir(parents=True, exist_ok=True)
    (demo_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    print(format_summary(summary), flush=True)
    return metrics


def format_summary(summary: dict[str, dict]) -> str:
    lines = ["", "stage      val/loss first -> last (epochs)   run / checkpoint"]
    for stage, s in summary.items():
        v = s["val_loss"]
        loss = f"{v[0]:.4f} -> {v[-1]:.4f} ({len(v)})" if v else "n/a"
        lines.append(f"{stage:<10} {loss:<30}  {s['run_dir']}")
        lines.append(f"{'':<10} {'':<30}  {s['checkpoint']}")
    return "\n".join(lines)
