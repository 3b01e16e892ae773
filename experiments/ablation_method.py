"""Task `experiments.ablation_method:ablation_method` (exp/ablation_method.yaml): the deviations table.

For each variant (one departure of method=uhrtex from the paper turned off, or `method=paper` for all of them):
retrain what the switch touches on the uhrtex stages (`ablation.checkpoints`, else trained here first): a `gde`
switch retrains the GDE and the HFDR on it, an `hfdr` switch the HFDR on the uhrtex GDE, a `reconstruct` switch
nothing; then evaluate it on the test subjects as +exp=compare evaluates `ours`. Writes `<run>/deviations.{md,csv}`:
each metric of the full recipe, and per variant the change when that switch is off (negative = the switch helps).
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from pathlib import Path

from omegaconf import DictConfig

from experiments.subruns import parent_overrides, plain, run_subrun
from uhrtex.checkpoint import stage_checkpoints
from uhrtex.metrics.tables import Column, Table

log = logging.getLogger(__name__)


def _stages(overrides: list[str]) -> tuple[str, ...]:
    """What a variant retrains."""
    if any(o.startswith(("method=", "method.gde.", "method.stage1.")) for o in overrides):
        return ("gde", "hfdr")
    if any(o.startswith("method.hfdr.") for o in overrides):
        return ("hfdr",)
    return ()


def _evaluate(base: list[str], ckpts: dict[str, str], overrides: list[str], run_name: str) -> dict[str, float]:
    """`ours` of +exp=compare on these stages; its own run folder per variant (per-capture rows kept)."""
    spec = "{" + ",".join(f"{s}:{p}" for s, p in ckpts.items()) + "}"
    _, metrics = run_subrun(["exp=compare", *base, *overrides, f"compare.checkpoints={spec}", "compare.methods=[ours]",
                             "compare.spaces=[image]", "compare.previews=0", "trainer.fast_dev_run=false",
                             f"run_name={run_name}"])
    return {k.removeprefix("ours/"): float(v) for k, v in metrics.items() if k.startswith("ours/")}


def ablation_method(cfg: DictConfig) -> dict[str, float]:
    from experiments.train_all import train_all

    run_dir = Path(cfg.paths.output_dir)
    base = parent_overrides(cfg)
    t0 = time.time()
    if cfg.ablation.checkpoints:
        ckpts = stage_checkpoints(plain(cfg.ablation.checkpoints), what="ablation.checkpoints")
    else:
        train_all(cfg)
        ckpts = {s: v["checkpoint"] for s, v in json.loads((run_dir / "summary.json").read_text()).items()}
    rows = {"uhrtex": _evaluate(base, ckpts, [], f"{cfg.run_name}_uhrtex")}
    seconds = {"uhrtex": time.time() - t0}
    for variant in cfg.ablation.variants:
        t1 = time.time()
        over = [str(o) for o in variant.overrides]
        mine = dict(ckpts)
        kept = [o for o in base if o.split("=", 1)[0] not in {v.split("=", 1)[0] for v in over}]  # method=paper wins
        run_name = f"{cfg.run_name}_" + re.sub(r"[^A-Za-z0-9_.-]+", "-", str(variant.name))
        for stage in _stages(over):
            upstream = [f"model.uv_normal_ckpt={mine['uv_normal']}"] + ([f"model.gde_ckpt={mine['gde']}"] if stage == "hfdr" else [])
            run, _ = run_subrun([f"exp={stage}", *kept, *over, *upstream, f"run_name={run_name}"])
            mine[stage] = str(run / "checkpoints" / "last.ckpt")
        rows[variant.name] = _evaluate(kept, mine, over, run_name)
        seconds[variant.name] = time.time() - t1
        log.info("ablation_method: %s done in %.0f s", variant.name, seconds[variant.name])
        _write(run_dir, cfg, rows, seconds)  # the table grows as variants finish: an interruption keeps them
    return {f"{v}/{k}": x for v, r in rows.items() for k, x in r.items()}


def _write(run_dir: Path, cfg: DictConfig, rows: dict[str, dict], seconds: dict[str, float]) -> None:
    keys = [str(k) for k in cfg.ablation.metrics]
    ref = rows["uhrtex"]
    cols = [Column(k, k) for k in keys] + [Column("minutes", "minutes", 0)]
    table = Table("Deviations: each switch off on its own (method=uhrtex row: values; others: Δ)", "variant", cols)
    table.add("method=uhrtex (all on)", {**{k: ref.get(k) for k in keys}, "minutes": seconds["uhrtex"] / 60})
    for name, r in rows.items():
        if name != "uhrtex":
            label = f"{name} (every switch off)" if name.startswith("method=") else f"{name} off"
            table.add(label, {**{k: r.get(k, math.nan) - ref.get(k, math.nan) for k in keys},
                          "minutes": seconds[name] / 60})
    table.notes.append("metrics over the test subjects' captures (image space, GT face mask); band_*: the ×8 detail band "
                       "(uhrtex.metrics.detail); seam: lower is better; for a higher-is-better metric a negative Δ means "
                       "the switch helps; minutes: its retraining and evaluation on 2 cores")
    table.write(run_dir / "deviations")
