"""Checks run before Hydra starts: one-line errors for bad overrides, and resume resolution.

Hydra's own messages for a misspelt key or group option span several lines and do not list the
valid keys. We compose the config once up front, and on failure print one line that names the
problem and the valid choices, then exit with status 2. A `ckpt_path=...` override is turned into
`hydra.run.dir=<that run>` so a resumed run writes into its original run directory.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from hydra import compose, initialize_config_module
from hydra.core.hydra_config import HydraConfig
from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigKeyError

import experiments  # noqa: F401  (registers resolvers)
from experiments.errors import UsageError
from uhrtex.checkpoint import newest_run_checkpoint

CONFIG_MODULE = "experiments.configs"
CONFIG_NAME = "config"
CONFIGS_DIR = Path(__file__).parent / "configs"
# Overrides that may differ between the original launch and its resume.
RESUME_MAY_CHANGE = ("ckpt_path", "run_name", "trainer.max_epochs", "trainer.max_steps", "trainer.devices",
                     "trainer.num_nodes", "trainer.accelerator", "data.num_workers", "logger", "debug")


_VALUE_FLAGS = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn",
                "--config-dir", "-cd", "--info", "-i", "--experimental-rerun"}


def normalize_overrides(overrides: list[str]) -> list[str]:
    """`+exp=NAME` -> `exp=NAME`: `exp` is in the defaults list (before `debug`, so debug modes win), and
    Hydra refuses to append a group that the list already holds."""
    return [o[1:] if o.startswith("+exp=") else o for o in overrides]


def compose_config(overrides: list[str]) -> DictConfig:
    """Compose the real config (with the `hydra` node) outside a Hydra app, e.g. for tests."""
    with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
        cfg = compose(CONFIG_NAME, overrides=normalize_overrides(overrides), return_hydra_config=True)
    # `${hydra:...}` interpolations (paths.root_dir, paths.output_dir) need the Hydra config set.
    HydraConfig.instance().set_config(cfg)
    return cfg


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS_DIR / group).glob("*.yaml"))


def _keys_at(cfg: DictConfig, path: str) -> list[str]:
    node = OmegaConf.select(cfg, path) if path else cfg
    if not isinstance(node, DictConfig):
        return []
    return sorted(k for k in node.keys() if k != "hydra")


def _explain(error: Exception, overrides: list[str]) -> str:
    if isinstance(error, MissingConfigException):
        match = re.search(r"Could not find '([^']+)'", str(error))
        missing = match.group(1) if match else "?"
        group, _, name = missing.rpartition("/")
        options = getattr(error, "options", None) or group_options(group)
        if not group:
            return f"config '{missing}' not found"
        what = "exp" if group == "exp" else f"option '{name}' for config group"
        return f"unknown {what} '{name if group == 'exp' else group}'; valid choices: {', '.join(options)}"
    if isinstance(error, ConfigCompositionException):
        cause = error.__cause__
        key = getattr(cause, "full_key", None)
        if key is not None and isinstance(cause, (ConfigKeyError, AttributeError)) or "Could not override" in str(error):
            key = key or re.search(r"Could not override '([^']+)'", str(error)).group(1)
            parent, _, leaf = key.rpartition(".")
            rest = [o for o in overrides if not o.lstrip("+~").startswith(f"{key}=")]
            try:
                valid = _keys_at(compose_config(rest), parent)
            except Exception:  # noqa: BLE001 - the hint is best-effort
                valid = []
            where = f"under '{parent}'" if parent else "at the top level"
            hint = f"; valid keys {where}: {', '.join(valid)}" if valid else ""
            return f"unknown config key '{key}'{hint} (to add a new key on purpose, use +{key}=...)"
        return str(error).splitlines()[0]
    if isinstance(error, OverrideParseException):
        return str(error).splitlines()[0] + " (see `python -m experiments.run --help`)"
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"


def _missing_keys(node, prefix: str = "") -> list[str]:
    """Literal `???` values, found without resolving interpolations (OmegaConf.missing_keys resolves)."""
    if isinstance(node, DictConfig):
        keys = [k for k in node.keys() if not (prefix == "" and k == "hydra")]
        children = [(f"{prefix}{k}", node._get_node(k)) for k in keys]
    elif isinstance(node, ListConfig):
        children = [(f"{prefix}[{i}]".lstrip("."), node._get_node(i)) for i in range(len(node))]
    else:
        return []
    found = []
    for path, child in children:
        if isinstance(child, (DictConfig, ListConfig)):
            if not child._is_missing() and not child._is_interpolation():
                found += _missing_keys(child, path + ".")
            elif child._is_missing():
                found.append(path)
        elif child._is_missing():
            found.append(path)
    return found


def check_missing(cfg: DictConfig) -> None:
    missing = sorted(_missing_keys(cfg))
    if missing:
        examples = " ".join(f"{k}=..." for k in missing)
        raise UsageError(f"missing required value(s): {', '.join(missing)}; set them on the command line, e.g. {examples}")


def _relevant(overrides: list[str]) -> set[str]:
    keep = set()
    for o in overrides:
        key = o.lstrip("+~").split("=", 1)[0]
        if key.startswith("hydra") or any(key == k or key.startswith(k + ".") or key.startswith(k + "/")
                                          for k in RESUME_MAY_CHANGE):
            continue
        keep.add(o.lstrip("+"))  # `+exp=toy` (older runs) and `exp=toy` compare equal
    return keep


def resolve_resume(cfg: DictConfig, overrides: list[str]) -> list[str]:
    """Turn ckpt_path=last|RUN_DIR|FILE into an absolute checkpoint and the matching hydra.run.dir."""
    request = cfg.get("ckpt_path")
    if not request:
        return overrides
    run_root = Path(cfg.paths.log_dir) / cfg.task_name / "runs"
    if request == "last":
        ckpt = newest_run_checkpoint(run_root)
        if ckpt is None:
            raise UsageError(f"ckpt_path=last but no run of task '{cfg.task_name}' has checkpoints/last.ckpt under "
                             f"{run_root}; start a fresh run without ckpt_path")
    else:
        ckpt = Path(request).expanduser().resolve()
        if ckpt.is_dir():
            ckpt = ckpt / "checkpoints" / "last.ckpt"
        if not ckpt.is_file():
            raise UsageError(f"ckpt_path={request}: no checkpoint at {ckpt}; pass a .ckpt file, a run directory, or 'last'")
    run_dir = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else None
    new = [o for o in overrides if not o.lstrip("+").startswith("ckpt_path=")] + [f"ckpt_path={ckpt}"]
    if run_dir is None:
        return new  # a foreign checkpoint: training state resumes, in a new run directory
    previous = run_dir / ".hydra" / "overrides.yaml"
    if previous.is_file():
        before = _relevant(list(OmegaConf.load(previous)))
        now = _relevant(overrides)
        if before != now and cfg.get("resume_check") is not False:
            diff = sorted(before ^ now)
            raise UsageError(f"resuming {run_dir} with different overrides ({', '.join(diff)}); repeat the original "
                             f"overrides, or add +resume_check=false to accept the change")
    return new + [f"hydra.run.dir={run_dir}"]


def prepare_argv(argv: list[str]) -> list[str]:
    """Validate the command line; return it with resume overrides added. Raises UsageError."""
    argv = normalize_overrides(argv)
    flags, overrides = [], []
    args = iter(argv)
    for a in args:
        if a.startswith("-"):
            flags.append(a)
            if a in _VALUE_FLAGS:
                flags.append(next(args, ""))
        else:
            overrides.append(a)
    if any(f in ("-m", "--multirun") for f in flags):
        if any(re.match(r"^\+?trainer=ddp", o) or o.startswith("trainer.strategy=ddp") for o in overrides):
            raise UsageError("Hydra multirun (-m) cannot be combined with trainer=ddp; run each DDP job separately "
                             "or sweep with a launcher (hydra/launcher=slurm) using single-process jobs")
        return argv  # sweep values are validated per job by Hydra
    if any(f not in ("-m", "--multirun") for f in flags if f.startswith("-")):
        return argv  # --cfg/--help/--info/...: Hydra's own inspection commands
    if os.environ.get("LOCAL_RANK", "0") != "0":
        return argv  # a DDP child: rank 0 already validated and resolved this command line
    try:
        cfg = compose_config(overrides)
    except Exception as e:  # noqa: BLE001 - every composition failure becomes a one-line message
        raise UsageError(_explain(e, overrides)) from e
    check_missing(cfg)
    if str(cfg.trainer.get("strategy", "")).startswith("ddp") and cfg.hydra.mode and str(cfg.hydra.mode).endswith("MULTIRUN"):
        raise UsageError("hydra.mode=MULTIRUN cannot be combined with DDP; run each DDP job separately")
    new = resolve_resume(cfg, overrides)
    return flags + new


def main_guard() -> None:
    try:
        sys.argv[1:] = prepare_argv(sys.argv[1:])
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
