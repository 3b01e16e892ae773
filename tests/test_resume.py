"""A run SIGKILLed after a checkpoint resumes with ckpt_path=last exactly where it stopped."""

import signal
from pathlib import Path

import torch

from tests.helpers.hydra_run import cli

ARGS = ["+exp=toy", "preset=tiny", "data.shuffle=false", "trainer.max_epochs=3", "trainer.accelerator=cpu",
        "logger=wandb", "callbacks.progress_bar=null", "callbacks.model_summary=null"]


def _last(root: Path) -> tuple[Path, dict]:
    (run_dir,) = (root / "logs" / "toy" / "runs").iterdir()
    return run_dir, torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)


def test_sigkill_then_resume_continues_the_same_run(tmp_path):
    full_root, cut_root = tmp_path / "full", tmp_path / "cut"
    full_root.mkdir(), cut_root.mkdir()
    assert cli(ARGS + ["run_name=full"], full_root).returncode == 0

    killed = cli(ARGS + ["run_name=cut", "debug=preempt"], cut_root)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    run_dir, at_kill = _last(cut_root)
    assert at_kill["epoch"] == 0  # epoch 0 finished and was checkpointed; epoch 1 never ran
    wandb_id = (run_dir / "wandb_id.txt").read_text().strip()

    resumed = cli(ARGS + ["run_name=other", "ckpt_path=last"], cut_root)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    # Same run directory (no second one), same W&B id, both launches recorded.
    run_dir_after, final = _last(cut_root)
    assert run_dir_after == run_dir
    assert (run_dir / "wandb_id.txt").read_text().strip() == wandb_id
    offline_runs = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 2 and all(p.name.endswith(wandb_id) for p in offline_runs)
    assert len((run_dir / "cmd.txt").read_text().splitlines()) == 2

    # Global step, optimizer and scheduler state, and the weights equal an uninterrupted run's.
    _, reference = _last(full_root)
    assert final["global_step"] == reference["global_step"] > at_kill["global_step"]
    assert final["epoch"] == reference["epoch"]
    opt, ref_opt = final["optimizer_states"][0], reference["optimizer_states"][0]
    assert float(opt["state"][0]["step"]) == float(ref_opt["state"][0]["step"]) == final["global_step"]
    sched, ref_sched = final["lr_schedulers"][0], reference["lr_schedulers"][0]
    assert sched["last_epoch"] == ref_sched["last_epoch"] and sched["num_bad_epochs"] == ref_sched["num_bad_epochs"]
    for key, value in reference["state_dict"].items():
        torch.testing.assert_close(final["state_dict"][key], value, rtol=1e-5, atol=1e-6, msg=key)


def test_resume_with_changed_overrides_is_refused(tmp_path):
    assert cli(ARGS + ["run_name=a", "trainer.max_epochs=1"], tmp_path).returncode == 0
    out = cli(ARGS + ["ckpt_path=last", "seed=7"], tmp_path, timeout=120)
    assert out.returncode == 2 and "different overrides (seed=7)" in out.stderr


def test_hfdr_stage_resumes_from_last(tmp_path, stage_ckpts):
    """A method stage (captures store, Stage-1 cache, upstream checkpoints) resumes, not only the toy."""
    args = ["+exp=hfdr", "preset=cpu", f"data.store={stage_ckpts['captures_512']}",
            f"model.uv_normal_ckpt={stage_ckpts['uv_normal_ckpt']}", f"model.gde_ckpt={stage_ckpts['gde_ckpt']}",
            "trainer.accelerator=cpu", "logger=csv", "callbacks.progress_bar=null", "callbacks.model_summary=null",
            "callbacks.texture_metrics=null", "callbacks.texture_panels=null", "data.num_workers=0",
            "trainer.limit_train_batches=2", "trainer.limit_val_batches=1"]
    first = cli([*args, "trainer.max_epochs=1"], tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    (run_dir,) = (tmp_path / "logs" / "hfdr" / "runs").iterdir()
    before = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    resumed = cli([*args, "trainer.max_epochs=2", "ckpt_path=last"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [p.name for p in (tmp_path / "logs" / "hfdr" / "runs").iterdir()] == [run_dir.name]
    after = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert (before["epoch"], after["epoch"]) == (0, 1)
    assert after["global_step"] == 2 * before["global_step"] == 4
    assert after["uhrtex"]["stage"] == "hfdr"


def test_cosine_schedule_spans_the_whole_run(tmp_path):
    """A scheduler partial without T_max (cosine decay) gets the run's length in steps and steps per batch."""
    cosine = ["model.scheduler._target_=torch.optim.lr_scheduler.CosineAnnealingLR", "~model.scheduler.mode",
              "~model.scheduler.patience"]
    out = cli(ARGS + ["run_name=cos", *cosine], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    _, final = _last(tmp_path)
    sched = final["lr_schedulers"][0]
    assert final["global_step"] > 3  # more steps than epochs: the schedule stepped per batch, not per epoch
    assert sched["T_max"] == sched["last_epoch"] == final["global_step"]
    assert sched["_last_lr"][0] < 1e-9 and sched["base_lrs"][0] > 1e-4  # decayed from the config's lr to 0
