"""Every W&B sweep YAML's parameter combinations compose as Hydra overrides; local multirun works."""

import itertools

import pytest
import yaml

from experiments.cli import prepare_argv
from tests.helpers.hydra_run import REPO, cli

SWEEPS = sorted((REPO / "experiments/configs/sweep").glob("*.yaml"))


def _values(spec: dict) -> list:
    if "values" in spec:
        return list(spec["values"])
    if "value" in spec:
        return [spec["value"]]
    if "min" in spec and "max" in spec:
        return [spec["min"], spec["max"]]
    raise AssertionError(f"unsupported parameter spec {spec}")


def _fixed_args(command: list[str]) -> list[str]:
    args = command[command.index("experiments.run") + 1:]
    return [a for a in args if not a.startswith("${")]


def test_there_are_sweeps():
    assert SWEEPS, "experiments/configs/sweep/ holds no W&B sweep YAML"


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.stem)
def test_sweep_yaml_combinations_compose(workdir, path):
    sweep = yaml.safe_load(path.read_text())
    command = sweep["command"]
    assert command[:4] == ["${env}", "${interpreter}", "-m", "experiments.run"] and "${args_no_hyphens}" in command
    assert sweep["metric"]["name"] and sweep["method"] in ("grid", "random", "bayes")
    names = list(sweep["parameters"])
    grid = list(itertools.product(*(_values(sweep["parameters"][n]) for n in names)))
    for combo in grid[:64]:
        prepare_argv(_fixed_args(command) + [f"{n}={v}" for n, v in zip(names, combo)])


def test_hydra_multirun_local_sweep(workdir):
    out = cli(["-m", "+exp=toy", "preset=tiny", "trainer.fast_dev_run=true", "trainer.accelerator=cpu",
               "logger=csv", "callbacks.progress_bar=null", "seed=1,2"], workdir)
    assert out.returncode == 0, out.stderr[-3000:]
    jobs = sorted(p.name for p in (workdir / "logs" / "toy" / "multiruns").glob("*/*") if p.is_dir())
    assert jobs == ["0", "1"]
