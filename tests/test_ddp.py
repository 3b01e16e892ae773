"""trainer=ddp with 2 CPU processes (gloo) trains and matches the 1-process run on the same data."""

import csv
from pathlib import Path

from tests.helpers.hydra_run import cli

# SGD, not Adam: Adam divides by sqrt(v), which turns the ~1e-9 all-reduce rounding noise on
# near-zero gradients into full-size steps, so two exact-in-math runs drift apart by ~1e-3.
ARGS = ["+exp=toy", "preset=tiny", "data.shuffle=false", "data.batch_size=4", "trainer.max_epochs=2",
        "model.optimizer._target_=torch.optim.SGD", "model.optimizer.lr=0.05", "+model.optimizer.momentum=0.9",
        "trainer.accelerator=cpu", "logger=csv", "callbacks.progress_bar=null", "callbacks.model_summary=null"]


def _val_losses(root: Path) -> list[float]:
    (run_dir,) = (root / "logs" / "toy" / "runs").iterdir()
    with open(run_dir / "csv" / "metrics.csv") as f:
        return [float(r["val/loss"]) for r in csv.DictReader(f) if r.get("val/loss")]


def test_ddp_two_processes_match_one_process(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    single = cli(ARGS, one)
    assert single.returncode == 0, single.stderr[-3000:]
    ddp = cli(ARGS + ["trainer=ddp", "trainer.devices=2"], two)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert "world_size=2" in ddp.stderr + ddp.stdout or "distributed_backend=gloo" in ddp.stderr + ddp.stdout

    v1, v2 = _val_losses(one), _val_losses(two)
    assert len(v1) == len(v2) == 2
    assert v2[-1] < v2[0], "DDP run did not train"
    for a, b in zip(v1, v2):
        assert abs(a - b) <= 1e-5 * max(1.0, abs(a)), (v1, v2)
