"""Hash-encoding ablation (paper Table 2): `python -m experiments.run +exp=ablation_hash [seeds=[0,1,2]]`.

For every seed, trains the GDE twice on the same data with the same budget (`trainer.*`), once with the
facial hash encoding and once without (`model.hash_encoding.enabled=false`), tests both on the test split
(best checkpoint by val/loss) and evaluates the guides with the texture metrics (callbacks/metrics.py).
Writes `<run>/table2.md` + `table2.csv` (+ a W&B table): SSIM, PSNR and the perceptual metric per map.
Cells are mean ± std over seeds when there are several seeds, else over test captures (the notes say which).
Each training lives in `<run>/<variant>_seed<S>/` with its own checkpoints, previews and per-capture CSV.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from omegaconf import DictConfig

from experiments.eval_common import PERCEPTUAL_NAMES, latest_test_rows, log_wandb_table, perceptual_key
from experiments.run_record import finish_wandb
from experiments.subruns import subrun_config
from experiments.train import train
from uhrtex.metrics import Column, Table, mean_std

log = logging.getLogger(__name__)
VARIANTS = (("hash", True, "w/ Hash"), ("nohash", False, "w/o Hash"))
MAPS = (("albedo", "Albedo"), ("micronormal", "MicroN"), ("specular", "Specular"))


def _numeric(rows: list[dict]) -> list[dict[str, float]]:
    return [{k: v for k, v in r.items() if k != "capture"} for r in rows]


def summarize(per_seed: dict[str, dict[int, list[dict]]]) -> tuple[dict[str, dict], str]:
    """variant -> {key: (mean, std, n)}: over seed means with >1 seed, else over test captures."""
    out, how = {}, ""
    for variant, seeds in per_seed.items():
        if len(seeds) > 1:
            seed_means = [{k: m for k, (m, _, n) in mean_std(_numeric(rows)).items() if n} for rows in seeds.values()]
            out[variant], how = mean_std(seed_means), f"mean ± std over {len(seeds)} seeds (each the mean over test captures)"
        else:
            rows = next(iter(seeds.values()))
            out[variant], how = mean_std(_numeric(rows)), f"mean ± std over {len(rows)} test captures (one seed)"
    return out, how


def table2(stats: dict[str, dict], perceptual: str | None, how: str, notes: list[str]) -> Table:
    t = Table("Table 2: GDE with vs without hash encoding (test split)", "Metrics",
              [Column(m, h) for m, h in MAPS], notes=[how, *notes, "SSIM, PSNR (dB): higher is better; LPIPS: lower is better"])
    metrics = [("ssim", "SSIM"), ("psnr", "PSNR")] + ([(perceptual, PERCEPTUAL_NAMES[perceptual])] if perceptual else [])
    for key, name in metrics:
        for variant, _, label in VARIANTS:
            t.add(f"{name} {label}", {m: stats[variant].get(f"{m}/{key}") for m, _ in MAPS})
    return t


def ablation_hash(cfg: DictConfig) -> dict[str, float]:
    run_dir = Path(cfg.paths.output_dir)
    if cfg.get("torch_threads"):
        torch.set_num_threads(int(cfg.torch_threads))
    seeds = list(cfg.get("seeds") or [cfg.seed])
    per_seed: dict[str, dict[int, list[dict]]] = {v: {} for v, _, _ in VARIANTS}
    timings = {}
    for seed in seeds:
        for variant, enabled, _ in VARIANTS:
            name = f"{variant}_seed{seed}"
            sub = subrun_config(cfg, name, {"seed": int(seed), "model.hash_encoding.enabled": enabled, "test": True,
                                            "train": True, "entry": "experiments.train:train"})
            (run_dir / name).mkdir(parents=True, exist_ok=True)
            log.info("ablation_hash: training %s", name)
            start = time.time()
            try:
                train(sub)
            finally:
                finish_wandb()
            timings[name] = time.time() - start
            per_seed[variant][int(seed)] = latest_test_rows(run_dir / name)
    rows = [r for v in per_seed.values() for rs in v.values() for r in rs]
    perceptual = perceptual_key(rows)
    stats, how = summarize(per_seed)
    n_test = len(next(iter(per_seed["hash"].values())))
    geometry = "ground-truth uv/normal" if cfg.model.get("use_gt_geometry") else "predicted uv/normal"
    notes = [(f"small-scale run: input {cfg.input_size}² (global {cfg.global_size}²), {n_test} test captures, "
              f"seeds {seeds}, trainer.max_epochs={cfg.trainer.max_epochs}, geometry: {geometry}"),
             "metrics in image space over the GT face mask at the GDE's (global) resolution; "
             + (f"{PERCEPTUAL_NAMES[perceptual]} on the region's bounding box" if perceptual else "no perceptual metric"),
             "wall time per training: " + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items())]
    if perceptual and cfg.global_size > cfg.metrics.tile:
        notes[1] = notes[1].replace("bounding box", f"bounding box, in {cfg.metrics.tile}² tiles")
    t = table2(stats, perceptual, how, notes)
    md, csv_path = t.write(run_dir / "table2")
    log.info("ablation_hash: wrote %s and %s\n%s", md, csv_path, t.markdown())
    log_wandb_table(cfg, "table2", t, job_type="ablation")
    flat = {}
    for variant, s in stats.items():
        for k, (m, _, n) in s.items():
            if n:
                flat[f"{variant}/{k}"] = m
    return flat
