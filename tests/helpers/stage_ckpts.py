"""Untrained stage checkpoints in the format experiments.run writes (state_dict + uhrtex tag), in seconds."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import OmegaConf

from experiments.cli import compose_config
from tests.helpers.threads import one_thread
from uhrtex.checkpoint import CHECKPOINT_KEY


def model_config(stage: str, overrides: list[str] = (), preset: str = "tiny") -> dict:
    GlobalHydra.instance().clear()
    cfg = compose_config([f"model={stage}", f"preset={preset}", *overrides])
    GlobalHydra.instance().clear()
    return OmegaConf.to_container(cfg.model, resolve=True)


def build_module(stage: str, overrides: list[str] = (), preset: str = "tiny"):
    config = model_config(stage, overrides, preset)
    module = instantiate(config)
    module.model_config = config
    return module


def save_stage_checkpoint(stage: str, path: Path, overrides: list[str] = (), preset: str = "tiny",
                          seed: int = 0) -> str:
    torch.manual_seed(seed)
    module = build_module(stage, overrides, preset)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": module.state_dict(),
                CHECKPOINT_KEY: {"stage": module.stage, "model_config": module.model_config}}, path)
    return str(path)


def make_store(path: Path, resolution: int, subjects: int = 3, lightings: int = 1, renderer: str = "placeholder",
               first_subject: int = 0) -> str:
    """A capture store of planned captures (the keys exp/demo plans), global level included."""
    from uhrtex.captures.generate import make_captures, plan
    from uhrtex.captures.store import CaptureStore

    with one_thread():  # small renders: 4x faster than 2 spin-waiting threads on a shared 2-core box
        make_captures(CaptureStore(str(path), mode="a"), plan(subjects, lightings, 1, first_subject), resolution, renderer,
                      global_sizes=[resolution // 4], progress=False)
    return str(path)


@pytest.fixture(scope="session")
def stage_ckpts(tmp_path_factory) -> dict[str, str]:
    """Untrained cpu-preset checkpoints + a 512² placeholder store, for exp smoke tests (`@name@` tokens)."""
    root = tmp_path_factory.mktemp("stage_ckpts")
    uv_normal = save_stage_checkpoint("uv_normal", root / "uv_normal.ckpt", preset="cpu")
    gde = save_stage_checkpoint("gde", root / "gde.ckpt", preset="cpu")
    return {"uv_normal_ckpt": uv_normal, "gde_ckpt": gde, "captures_512": make_store(root / "captures" / "512", 512)}


def fill_tokens(overrides: list[str], request) -> list[str]:
    """Replace `@name@` tokens with `stage_ckpts` values (the fixture is built only when a token is used)."""
    if not any("@" in o for o in overrides):
        return list(overrides)
    values = request.getfixturevalue("stage_ckpts")
    out = []
    for o in overrides:
        for name, value in values.items():
            o = o.replace(f"@{name}@", value)
        out.append(o)
    return out
