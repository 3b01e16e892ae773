"""Every exp/*.yaml runs with fast_dev_run at the CPU preset (new exps are covered automatically)."""

import pytest

from experiments.cli import group_options
from tests.helpers.hydra_run import CPU_OVERRIDES, run_in_process

# Extra overrides an exp needs for a smoke run (e.g. upstream checkpoints); keep this small.
SMOKE_OVERRIDES: dict[str, list[str]] = {}


@pytest.mark.parametrize("exp", group_options("exp"))
def test_every_exp_runs_fast_dev_run_at_cpu_preset(workdir, exp):
    overrides = [f"+exp={exp}", "preset=cpu", "trainer.fast_dev_run=true", *CPU_OVERRIDES, *SMOKE_OVERRIDES.get(exp, [])]
    metrics = run_in_process(overrides, workdir)
    assert isinstance(metrics, dict)
