"""Config composition: presets, every group option, and one-line errors for user mistakes."""

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from experiments.cli import UsageError, group_options, prepare_argv
from tests.helpers.hydra_run import REPO, cli, compose

GROUPS = ["preset", "method", "data", "model", "trainer", "logger", "callbacks", "debug"]


@pytest.mark.parametrize("preset,sizes", [("paper", (4096, 1024, 512)), ("detail", (2048, 512, 256)), ("cpu", (512, 128, 64)),
                                          ("tiny", (256, 64, 32))])
def test_preset_is_the_one_scale_knob(workdir, preset, sizes):
    cfg = compose([f"preset={preset}"], workdir)
    assert (cfg.input_size, cfg.global_size, cfg.patch_size) == sizes
    assert cfg.input_size == cfg.patch_size * cfg.grid


PRESETS = ["tiny", "cpu", "detail", "paper"]
# Every model key a method sets, per stage exp (docs/results.md "Deviations").
METHOD_KEYS = {
    "gde": ["start_from_mean", "masked_loss", "net.mask_output", "net.albedo_from_image", "scheduler._target_"],
    "hfdr": ["masked_loss", "band_weight", "band_energy_weight", "net.guide_passthrough", "net.detail_skip",
             "net.detail_passthrough", "net.detail_branch"],
}


def _method_switches(workdir, method: str, preset: str) -> dict:
    out = {}
    for exp, keys in METHOD_KEYS.items():
        extra = ["model.gde_ckpt=x"] if exp == "hfdr" else []
        model = compose([f"+exp={exp}", f"preset={preset}", f"method={method}", *extra], workdir).model
        out.update({f"{exp}.{k}": OmegaConf.select(model, k) for k in keys})
    return out


@pytest.mark.parametrize("method", ["paper", "uhrtex"])
def test_the_method_switches_do_not_depend_on_the_preset(workdir, method):
    switches = {preset: _method_switches(workdir, method, preset) for preset in PRESETS}
    assert all(switches[p] == switches["tiny"] for p in PRESETS), switches


def test_method_paper_is_the_paper_and_uhrtex_departs_on_every_switch(workdir):
    paper, ours = _method_switches(workdir, "paper", "paper"), _method_switches(workdir, "uhrtex", "paper")
    assert paper["hfdr.band_weight"] == paper["hfdr.band_energy_weight"] == paper["hfdr.net.detail_skip"] == 0
    assert not any(paper[k] for k in ("gde.start_from_mean", "gde.masked_loss", "gde.net.mask_output",
                                      "gde.net.albedo_from_image", "hfdr.masked_loss", "hfdr.net.guide_passthrough"))
    assert paper["gde.scheduler._target_"].endswith("ReduceLROnPlateau")
    assert ours["gde.scheduler._target_"].endswith("CosineAnnealingLR")
    assert [k for k in paper if paper[k] == ours[k]] == []


def test_no_preset_sets_a_method_key():
    for path in (REPO / "experiments/configs/preset").glob("*.yaml"):
        keys = set(OmegaConf.load(path))
        assert not keys & {"method", "recipe", "model"}, f"{path.name} sets {keys & {'method', 'recipe', 'model'}}"


@pytest.mark.parametrize("method", ["paper", "uhrtex"])
def test_a_method_builds_its_modules_and_one_switch_can_be_overridden(workdir, method):
    """Built as experiments.train builds them (instantiate on the composed config): a scheduler, not a plain dict."""
    gde = compose(["+exp=gde", f"method={method}", "model.hash_encoding.backend=torch"], workdir).model
    module = instantiate(gde)
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])
    cosine = method == "uhrtex"
    built = module.scheduler_factory(optimizer=optimizer, **({"T_max": 10} if cosine else {}))
    assert type(built) is (torch.optim.lr_scheduler.CosineAnnealingLR if cosine else torch.optim.lr_scheduler.ReduceLROnPlateau)
    hfdr = instantiate(compose(["+exp=hfdr", f"method={method}", "model.gde_ckpt=x"], workdir).model)
    assert hfdr.band_weights == ((10.0, 10.0) if cosine else (0.0, 0.0))
    one_off = compose(["+exp=gde", f"method={method}", "method.gde.face_only=false"], workdir).model
    assert not one_off.masked_loss and not one_off.net.mask_output and one_off.start_from_mean == cosine


def test_derived_sizes_follow_an_overridden_input_size(workdir):
    cfg = compose(["input_size=1024"], workdir)
    assert (cfg.global_size, cfg.patch_size) == (256, 128)


@pytest.mark.parametrize("group", GROUPS)
def test_every_group_option_composes_and_resolves(workdir, group):
    for option in group_options(group):
        cfg = compose([f"{group}={option}"], workdir)
        OmegaConf.to_container(cfg, resolve=True)  # no dangling interpolation


def test_exp_comes_before_debug_in_the_defaults_list():
    defaults = OmegaConf.to_container(OmegaConf.load(REPO / "experiments/configs/config.yaml").defaults)
    groups = [next(iter(d)) if isinstance(d, dict) else d for d in defaults]
    assert groups.index("exp") < groups.index("debug")


@pytest.mark.parametrize("exp_arg", ["+exp=gde", "exp=gde"])
def test_a_debug_mode_wins_over_the_exp(workdir, exp_arg):
    cfg = compose([exp_arg, "debug=overfit"], workdir)
    assert cfg.task_name == "gde"  # the exp applied ...
    assert cfg.trainer.max_epochs == 50 and cfg.trainer.overfit_batches == 2  # ... and the debug mode won
    assert compose(["+exp=gde"], workdir).trainer.max_epochs == cfg.stage_epochs.gde != 50


@pytest.mark.parametrize("exp", group_options("exp"))
def test_exp_files_are_global_deltas(exp):
    first = open(REPO / f"experiments/configs/exp/{exp}.yaml").read().lstrip().splitlines()
    assert "# @package _global_" in first[:3], f"exp/{exp}.yaml must start with '# @package _global_'"


@pytest.mark.parametrize("argv,expected", [
    (["+exp=toy", "model.nonsense=1"], "unknown config key 'model.nonsense'; valid keys under 'model': "),
    (["+exp=toy", "nonsense=1"], "unknown config key 'nonsense'; valid keys at the top level: "),
    (["+exp=does_not_exist"], "unknown exp 'does_not_exist'; valid choices: "),
    (["model=does_not_exist"], "unknown option 'does_not_exist' for config group 'model'; valid choices: "),
    (["+exp=toy", "width=???"], "missing required value(s): width"),
])
def test_user_mistakes_get_one_line_errors_with_choices(workdir, argv, expected):
    with pytest.raises(UsageError) as err:
        prepare_argv(argv)
    message = str(err.value)
    assert message.startswith(expected) and "\n" not in message
    if "valid" in expected:
        listed = message.split(": ", 1)[1]
        assert "toy" in listed or "optimizer" in listed or "seed" in listed


def test_valid_key_listing_is_the_real_one(workdir):
    with pytest.raises(UsageError) as err:
        prepare_argv(["+exp=toy", "model.nonsense=1"])
    for key in ("net", "optimizer", "scheduler", "monitor"):
        assert key in str(err.value)


def test_cli_exits_2_with_a_single_stderr_line(workdir):
    out = cli(["+exp=toy", "trainer.nonsense=3"], workdir, timeout=120)
    assert out.returncode == 2
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: unknown config key 'trainer.nonsense'"), out.stderr


def test_multirun_with_ddp_is_refused():
    with pytest.raises(UsageError, match="multirun"):
        prepare_argv(["-m", "+exp=toy", "trainer=ddp", "seed=1,2"])


def test_resume_without_any_previous_run_says_what_to_do(workdir):
    with pytest.raises(UsageError, match="no run of task 'toy' has checkpoints/last.ckpt"):
        prepare_argv(["+exp=toy", "ckpt_path=last"])


@pytest.mark.parametrize("preset", ["detail", "cpu", "paper", "tiny"])
def test_the_compare_patch_only_retrain_builds_at_every_preset(workdir, preset):
    """+exp=compare with patch_only=retrain trains exp=hfdr with PATCH_ONLY_OVERRIDES: a guide-less HFDR with a
    sigmoid head. The detail pass-through default needs the guide pass-through, and once made the plain compare
    fail at this step; the module is built here as experiments.train builds it."""
    from experiments.compare import PATCH_ONLY_OVERRIDES
    from lightning_modules.hfdr import PatchOnlyHFDR

    cfg = compose(["+exp=hfdr", f"preset={preset}", *PATCH_ONLY_OVERRIDES, "model.gde_ckpt=unused"], workdir)
    module = instantiate(cfg.model)
    assert isinstance(module, PatchOnlyHFDR) and module.net._out_act == "sigmoid"
