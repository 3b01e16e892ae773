"""Task `experiments.release:release` (exp/release.yaml): train, evaluate and package the model that ships.

1. Train uv_normal -> gde -> hfdr on the store's training subjects (`experiments.train_all`, the demo's pipeline at
   `preset=detail method=uhrtex` by default), rendering missing captures first.
2. Evaluate on the held-out test subjects with the comparison's metrics (`+exp=compare` with the trained
   checkpoints, methods ours and gde_only): Tables 1 / 1b rows, image and UV space.
3. Export one weights bundle (`uhrtex.bundle`): float16 when that moves the held-out albedo / micronormal /
   specular PSNR by < `release.max_fp16_db` (measured here on the test captures), else float32.
4. Write `<run>/release/`: the bundle, `card.json` (command, commit, data, wall time, metrics, bundle sha256 and
   size); with `release.install=true` also copy both into `uhrtex/weights/`, the package data that
   `Reconstructor.load()` and `python -m experiments.reconstruct` use when no checkpoint is given.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from experiments.subruns import parent_overrides, run_subrun
from experiments.train_all import loss_metrics, train_all

log = logging.getLogger(__name__)
PSNR_MAPS = ("albedo", "micronormal", "specular")


def _test_images(cfg: DictConfig, limit: int) -> list[dict]:
    from experiments.compare import test_keys
    from uhrtex.captures.store import CaptureStore
    from uhrtex.maps import TEXTURE

    store = CaptureStore(cfg.data.store)
    return [store.read(k, names=("image", "mask", *TEXTURE.names)) for k in test_keys(cfg)[:limit]]


def fp16_cost(ckpt_dir: Path, bundle_dir: Path, captures: list[dict]) -> dict[str, float]:
    """Held-out PSNR (dB, inside the GT mask) of the float32 and float16 bundles, per map, and their difference."""
    from uhrtex.metrics.image import psnr
    from uhrtex.pipeline import Reconstructor

    out: dict[str, float] = {}
    results = {}
    for half in (False, True):
        path = bundle_dir / f"{'fp16' if half else 'fp32'}.bundle"
        Reconstructor.from_checkpoints(ckpt_dir).export_bundle(path, half=half)
        rec = Reconstructor.from_bundle(path, precision="fp32")
        scores = {m: [] for m in PSNR_MAPS}
        for cap in captures:
            pred = rec(cap["image"])
            for m in PSNR_MAPS:
                scores[m].append(float(psnr(pred[m][None].float(), cap[m][None], cap["mask"][None])[0]))
        results[half] = {m: sum(v) / len(v) for m, v in scores.items()}
    for m in PSNR_MAPS:
        out[f"{m}/psnr_fp32"], out[f"{m}/psnr_fp16"] = results[False][m], results[True][m]
        out[f"{m}/fp16_delta_db"] = results[True][m] - results[False][m]
    return out


def _git_commit() -> str:
    import subprocess

    r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    return r.stdout.strip() or "unknown"


def release(cfg: DictConfig) -> dict[str, float]:
    t0 = time.time()
    commit = _git_commit()  # the code that trains (the run folder's git.txt has its dirty files too)
    run_dir = Path(cfg.paths.output_dir)
    r = cfg.release
    if r.get("trained_run"):  # the stages of an earlier release run whose evaluation or export did not finish
        summary_file = Path(r.trained_run) / "summary.json"
        if not summary_file.is_file():
            raise FileNotFoundError(f"release.trained_run={r.trained_run} has no summary.json; pass a release run "
                                    "folder whose training finished (logs/release/runs/<run>), or drop the option")
        summary = json.loads(summary_file.read_text())
        missing = [s for s in ("uv_normal", "gde", "hfdr") if s not in summary]
        if missing:
            raise ValueError(f"release.trained_run={r.trained_run} trained no {', '.join(missing)}; rerun the release")
        metrics = loss_metrics(summary)
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    else:
        metrics = train_all(cfg)
        summary = json.loads((run_dir / "summary.json").read_text())
    t_train = time.time() - t0
    ck = run_dir / "checkpoints"
    ck.mkdir(parents=True, exist_ok=True)
    for stage in ("uv_normal", "gde", "hfdr"):
        shutil.copyfile(summary[stage]["checkpoint"], ck / f"{stage}.ckpt")
    t1 = time.time()
    compare_dir, held_out = run_subrun(["exp=compare", *parent_overrides(cfg), f"compare.checkpoints={ck}",
                                        f"compare.methods={list(r.methods)}", "trainer.fast_dev_run=false"])
    t_eval = time.time() - t1
    out = run_dir / "release"
    out.mkdir(parents=True, exist_ok=True)
    cost = fp16_cost(ck, out, _test_images(cfg, int(r.fp16_captures)))
    half = r.half == "fp16" or (r.half == "auto" and all(abs(cost[f"{m}/fp16_delta_db"]) < float(r.max_fp16_db)
                                                          for m in PSNR_MAPS))
    bundle = out / f"{r.name}.bundle"
    from uhrtex.checkpoint import file_sha256
    from uhrtex.pipeline import Reconstructor

    c = cfg.pipeline.captures
    card = {
        "name": r.name, "method": OmegaConf.to_container(cfg.method, resolve=True),
        "sizes": {"input_size": int(cfg.input_size), "global_size": int(cfg.global_size), "patch_size": int(cfg.patch_size)},
        "width": int(cfg.width), "seed": int(cfg.seed), "command": " ".join(["python -m experiments.run", *sys.argv[1:]]),
        "commit": commit, "data": {"store": str(cfg.data.store), "head_model": "ict-facekit (ICT Face Model Light)",
                                          "subjects": int(c.subjects), "lightings": int(c.lightings), "cameras": int(c.cameras),
                                          "split_ratios": list(cfg.data.split_ratios)},
        "wall_time_s": {"train": round(t_train, 1), "held_out_eval": round(t_eval, 1)}, "torch_threads": torch.get_num_threads(),
        "held_out": {k: round(float(v), 4) for k, v in held_out.items()}, "compare_run": str(compare_dir),
        "fp16": {k: round(v, 4) for k, v in cost.items()}, "dtype": "float16" if half else "float32",
        "training_val_loss": {k: round(float(v), 5) for k, v in metrics.items()},
    }
    if r.get("trained_run"):  # the stages were trained by that run (its git.txt has the training code's commit)
        card["trained_run"] = str(r.trained_run)
    Reconstructor.from_checkpoints(ck).export_bundle(bundle, half=half, meta={"name": r.name, "card": card})
    for stale in ("fp16.bundle", "fp32.bundle"):
        (out / stale).unlink(missing_ok=True)
    card["bundle"] = {"file": bundle.name, "sha256": file_sha256(bundle), "bytes": bundle.stat().st_size}
    card["wall_time_s"]["total"] = round(time.time() - t0, 1)
    (out / "card.json").write_text(json.dumps(card, indent=1))
    log.info("release: %s (%s, %.1f MB); card %s", bundle, card["dtype"], bundle.stat().st_size / 1e6, out / "card.json")
    if r.install:
        from uhrtex.bundle import WEIGHTS_DIR

        WEIGHTS_DIR.mkdir(exist_ok=True)
        shutil.copyfile(bundle, WEIGHTS_DIR / bundle.name)
        shutil.copyfile(out / "card.json", WEIGHTS_DIR / f"{r.name}.card.json")
        log.info("release: installed into %s", WEIGHTS_DIR)
    return {**{f"held_out/{k}": float(v) for k, v in held_out.items()}, **{f"fp16/{k}": v for k, v in cost.items()}}
