"""Every exp/*.yaml runs with fast_dev_run at the CPU preset (new exps are covered automatically)."""

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
    # fast_dev_run compare: untrained stages, one test capture, three methods (the full list is slow on CPU).
    "compare": ["data.store=@captures_512@", "metrics.perceptual=none", "compare.methods=[ours,patch_only,lowres_sr]"],
}


@pytest.mark.parametrize("exp", group_options("exp"))
def test_every_exp_runs_fast_dev_run_at_cpu_preset(workdir, exp, request):
    extra = fill_tokens(SMOKE_OVERRIDES.get(exp, []), request)
    overrides = [f"+exp={exp}", "preset=cpu", "trainer.fast_dev_run=true", *CPU_OVERRIDES, *extra]
    metrics = run_in_process(overrides, workdir)
    assert isinstance(metrics, dict)
