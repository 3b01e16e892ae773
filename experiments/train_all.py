"""Task `experiments.train_all:train_all` (exp/demo.yaml): the whole method from one command.

1. Render the planned captures into `data.store` if any is missing (`+exp=make_captures`, resumable).
2. Train uv_normal -> gde -> hfdr, each a normal run of its own exp in `logs/<stage>/runs/<run_name>`
   (own config record, checkpoints, W&B run; resumable alone), handing each `last.ckpt` downstream
   through `model.uv_normal_ckpt` / `model.gde_ckpt`.
3. Print and save (`<demo run>/summary.json`) the runs, checkpoints and first/last validation losses.
4. With all three stages: copy the checkpoints to `<demo run>/checkpoints/` and reconstruct `pipeline.portrait`
   (default: scikit-image's `astronaut()`, a real photo) into `<demo run>/portrait/`; print where report.png is.

Command-line overrides of the demo (preset, trainer.*, data.*, logger, ...) are passed to every stage;
`pipeline.overrides.<stage>` adds per-stage ones. With `trainer.fast_dev_run=true` each stage runs one
train and one val batch but still writes its checkpoint, so the hand-off is exercised too.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from omegaconf import DictConfig

from experiments.subruns import SMOKE_STAGE, parent_overrides, run_subrun

log = logging.getLogger(__name__)
_UPSTREAM = {"gde": ("uv_normal",), "gde_nohash": ("uv_normal",), "hfdr": ("uv_normal", "gde")}


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


def loss_metrics(summary: dict[str, dict]) -> dict[str, float]:
    """`<stage>/val_loss_first` and `_last` of each stage in a `summary.json` that recorded validation losses."""
    return {f"{stage}/val_loss_{k}": s["val_loss"][i] for stage, s in summary.items() if s.get("val_loss")
            for k, i in (("first", 0), ("last", -1))}


def train_all(cfg: DictConfig) -> dict[str, float]:
    demo_dir = Path(cfg.paths.output_dir)
    p = cfg.pipeline
    base = parent_overrides(cfg)
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
            run_subrun(["exp=make_captures", *base, "trainer.fast_dev_run=false", f"captures.subjects={c.subjects}",
                        f"captures.lightings={c.lightings}", f"captures.cameras={c.cameras}",
                        f"captures.store={cfg.data.store}"])
        ckpts: dict[str, str] = {}
        for stage in p.stages:
            upstream = [f"model.{u}_ckpt={ckpts[u]}" for u in _UPSTREAM.get(stage, ()) if u in ckpts]
            extra = list(p.overrides.get("all") or []) + list(p.overrides.get(stage) or [])
            if fast:
                extra += SMOKE_STAGE
            history = {"_target_": "callbacks.loss_history.LossHistory", "path": "${paths.output_dir}/val_loss.json",
                       "monitor": "${model.monitor}"}
            run_dir, _ = run_subrun([f"exp={stage}", *base, *upstream, *extra], {"loss_history": history})
            ckpt = run_dir / "checkpoints" / "last.ckpt"
            if not ckpt.is_file():
                raise RuntimeError(f"stage {stage} wrote no {ckpt}; keep callbacks.model_checkpoint enabled for the demo")
            ckpts[stage] = str(ckpt)
            losses = _history(run_dir)
            summary[stage] = {"run_dir": str(run_dir), "checkpoint": str(ckpt), "val_loss": losses}
        metrics.update(loss_metrics(summary))
    finally:
        torch.set_num_threads(threads)
    demo_dir.mkdir(parents=True, exist_ok=True)
    (demo_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    print(format_summary(summary), flush=True)
    if p.get("portrait") and all(s in summary for s in ("uv_normal", "gde", "hfdr")):
        manifest = reconstruct_portrait(str(p.portrait), {s: summary[s]["checkpoint"] for s in summary}, demo_dir)
        metrics["portrait/face_uv_coverage"] = (manifest["unwrap"] or {}).get("face_uv_coverage", 0.0)
    return metrics


def reconstruct_portrait(portrait: str, ckpts: dict[str, str], demo_dir: Path) -> dict:
    """The main job on a real photo: the checkpoints into one folder, then `experiments.reconstruct`."""
    import shutil

    from experiments import reconstruct
    from uhrtex.common import io as uio

    ck = demo_dir / "checkpoints"
    ck.mkdir(parents=True, exist_ok=True)
    for stage in ("uv_normal", "gde", "hfdr"):
        shutil.copyfile(ckpts[stage], ck / f"{stage}.ckpt")
    if portrait == "astronaut":
        from skimage.data import astronaut

        portrait = str(demo_dir / "astronaut.png")
        uio.write_png(portrait, torch.from_numpy(astronaut()).permute(2, 0, 1) / 255.0)
    out = demo_dir / "portrait"
    args = reconstruct.build_parser().parse_args([portrait, "--ckpt", str(ck), "--out", str(out)])
    manifest = reconstruct.run(args)
    cov = (manifest["unwrap"] or {}).get("face_uv_coverage")
    print(f"\nreconstructed {portrait}: face UV coverage {cov}; look at {out / 'report.png'}", flush=True)
    return manifest


def format_summary(summary: dict[str, dict]) -> str:
    lines = ["", "stage      val/loss first -> last (epochs)   run / checkpoint"]
    for stage, s in summary.items():
        v = s["val_loss"]
        loss = f"{v[0]:.4f} -> {v[-1]:.4f} ({len(v)})" if v else "n/a"
        lines.append(f"{stage:<10} {loss:<30}  {s['run_dir']}")
        lines.append(f"{'':<10} {'':<30}  {s['checkpoint']}")
    return "\n".join(lines)
