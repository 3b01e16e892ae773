"""Every exp/*.yaml runs with fast_dev_run at the CPU preset (new exps are covered automatically), and each
leaves something checkable: finite losses, the stage checkpoints, rendered captures or the table files."""

import json
import math
from pathlib import Path

import pytest

from experiments.cli import group_options
from tests.helpers.hydra_run import CPU_OVERRIDES, run_in_process
from tests.helpers.stage_ckpts import fill_tokens

# Extra overrides an exp needs for a smoke run (e.g. upstream checkpoints); keep this small.
SMOKE_OVERRIDES: dict[str, list[str]] = {
    # Stage exps: a 512² store and untrained upstream checkpoints, made once per session (helpers/stage_ckpts.py).
    "uv_normal": ["data.store=@captures_512@"],
    "gde": ["data.store=@captures_512@", "model.uv_normal_ckpt=@uv_normal_ckpt@"],
    "gde_nohash": ["data.store=@captures_512@", "model.uv_normal_ckpt=@uv_normal_ckpt@"],
    "hfdr": ["data.store=@captures_512@", "model.uv_normal_ckpt=@uv_normal_ckpt@", "model.gde_ckpt=@gde_ckpt@"],
    "demo": ["data.store=@captures_512@", "pipeline.captures.subjects=3", "pipeline.captures.lightings=1"],
    # Evaluation tasks read captures: render three placeholder subjects into the test's data dir.
    # The perceptual net has its own tests; here it would only add time.
    "ablation_hash": ["data.generate_if_missing={subjects: 3, lightings: 1, renderer: placeholder}", "metrics.perceptual=none"],
    # fast_dev_run compare: untrained stages (low-res ones at 64²), one test capture, four methods (the full list is slow on CPU).
    "compare": ["data.store=@captures_512@", "metrics.perceptual=none", "compare.methods=[ours,patch_only,lowres_sr,lowres_realesrgan]"],
    # Pipelines that render their own captures: 7 subjects (the smallest 5:1:1 split) instead of 36 x 2.
    "release": ["pipeline.captures.subjects=7", "pipeline.captures.lightings=1", "metrics.perceptual=none"],
    # ...and one switch of each kind (a GDE switch retrains GDE + HFDR, an HFDR switch the HFDR, the seams nothing).
    "ablation_method": ["pipeline.captures.subjects=7", "pipeline.captures.lightings=1", "metrics.perceptual=none",
                        ("ablation.variants=[{name: gde.lr_schedule, overrides: ['method.gde.lr_schedule=plateau']},"
                        " {name: hfdr.band_weight, overrides: ['method.hfdr.band_weight=0']},"
                        " {name: reconstruct.seams_keep_detail, overrides: ['method.reconstruct.seams_keep_detail=false']}]")],
}


@pytest.mark.parametrize("exp", group_options("exp"))
def test_every_exp_runs_fast_dev_run_at_cpu_preset(workdir, exp, request):
    extra = fill_tokens(SMOKE_OVERRIDES.get(exp, []), request)
    overrides = [f"+exp={exp}", "preset=cpu", "trainer.fast_dev_run=true", *CPU_OVERRIDES, *extra]
    metrics = run_in_process(overrides, workdir)
    CHECKS.get(exp, finite_losses)(metrics, workdir / "run")


def finite_losses(metrics: dict, run_dir: Path) -> None:
    losses = {k: v for k, v in metrics.items() if k.endswith("/loss")}
    assert losses and all(math.isfinite(v) for v in losses.values()), f"no finite losses in {metrics}"


def stage_checkpoints(metrics: dict, run_dir: Path) -> None:
    summary = json.loads((run_dir / "summary.json").read_text())
    assert list(summary) == ["uv_normal", "gde", "hfdr"]
    assert all(Path(s["checkpoint"]).is_file() and s["val_loss"] and math.isfinite(s["val_loss"][-1])
               for s in summary.values())
    # ...and the fresh checkpoints reconstructed the real portrait, with the face placed in UV space
    manifest = json.loads((run_dir / "portrait" / "manifest.json").read_text())
    assert manifest["face"]["found"] and (run_dir / "portrait" / "report.png").is_file()
    assert metrics["portrait/face_uv_coverage"] >= 0.5


def captures_rendered(metrics: dict, run_dir: Path) -> None:
    assert metrics["captures/total"] >= 1 and metrics["captures/written"] == metrics["captures/total"]


def table(name: str):
    def check(metrics: dict, run_dir: Path) -> None:
        text = (run_dir / f"{name}.md").read_text()
        assert text.count("|") > 10 and (run_dir / f"{name}.csv").is_file()
        assert any(math.isfinite(v) for v in metrics.values()), f"no finite metric in {metrics}"
    return check


def deviations(metrics: dict, run_dir: Path) -> None:
    table("deviations")(metrics, run_dir)
    lines = (run_dir / "deviations.md").read_text().splitlines()
    rows = [line for line in lines if line.startswith("| ") and "---" not in line]
    assert [r.split("|")[1].strip() for r in rows[1:]] == ["method=uhrtex (all on)", "gde.lr_schedule off", "hfdr.band_weight off",
                                                           "reconstruct.seams_keep_detail off"], rows
    notes = [line for line in lines if line.startswith("- ")]
    assert len(notes) == len(set(notes)), notes
    evaluations = list((run_dir.parent / "logs" / "compare" / "runs").glob("*/per_capture.csv"))
    assert len(evaluations) == len(rows) - 1, evaluations  # one evaluation run per row, none overwritten


def released(metrics: dict, run_dir: Path) -> None:
    bundle = next(run_dir.rglob("*.bundle"))
    assert json.loads((bundle.parent / "card.json").read_text())["bundle"]["sha256"]
    assert all(math.isfinite(metrics[f"held_out/{m}/albedo/psnr"]) for m in ("ours", "gde_only")), metrics


CHECKS = {"demo": stage_checkpoints, "make_captures": captures_rendered, "compare": table("table1"),
          "ablation_hash": table("table2"), "ablation_method": deviations,
          "release": released}
