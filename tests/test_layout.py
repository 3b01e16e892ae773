"""The code's structure: no import cycles between modules, a small top level, and an inference path that never
touches the capture generator (its heads and renderer are for training data only)."""

import ast
from pathlib import Path

import pytest

from tests.helpers.hydra_run import REPO

PACKAGES = ("uhrtex", "lightning_modules", "datamodules", "callbacks", "experiments")
# What a portrait travels through at inference (`python -m experiments.reconstruct`), by module prefix.
INFERENCE = ("uhrtex.pipeline", "uhrtex.unwrap", "uhrtex.export", "uhrtex.viz", "uhrtex.face", "uhrtex.stage1",
             "uhrtex.hfdr", "uhrtex.render", "uhrtex.head_model", "experiments.reconstruct")


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> project modules it imports anywhere in its file (lazy imports inside functions included)."""
    files = {_module_name(p): p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        deps = set()
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                # `from pkg import sub` needs the module pkg.sub; `from pkg import name` needs pkg itself
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            else:
                continue
            for t in targets:
                while t and t not in files:  # `from pkg import name`: the module, or the package that holds the name
                    t = t.rpartition(".")[0]
                if t and t != name:
                    deps.add(t)
        graph[name] = deps
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    assert _cycles(import_graph()) == []


def test_the_inference_path_never_imports_the_capture_generator():
    graph = import_graph()
    for start in (m for m in graph if m.startswith(INFERENCE)):
        seen, todo = set(), [start]
        while todo:
            m = todo.pop()
            if m in seen:
                continue
            seen.add(m)
            todo.extend(graph.get(m, ()))
        bad = sorted(m for m in seen if m.startswith("uhrtex.captures"))
        assert not bad, f"{start} imports {bad[:3]} (the capture generator/renderer is for training data only)"


@pytest.mark.parametrize("package", ["uhrtex"])
def test_the_top_level_keeps_at_most_six_modules(package):
    modules = sorted(p.name for p in (REPO / package).glob("*.py"))
    assert len(modules) <= 6, modules


def test_uhrtex_is_plain_torch():
    graph = import_graph()
    for name, path in ((n, n.replace(".", "/")) for n in graph if n.startswith("uhrtex")):
        pyfile = REPO / (path + ".py") if (REPO / (path + ".py")).exists() else REPO / path / "__init__.py"
        tree = ast.parse(pyfile.read_text())
        roots = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        roots |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not roots & {"lightning", "hydra", "wandb", "omegaconf"}, f"{name} imports {roots & {'lightning', 'hydra', 'wandb'}}"


def test_the_reconstruction_cli_does_not_load_the_evaluation_stack():
    # torchmetrics + scipy.signal cost about 1 s of every user command; the CLI needs only uhrtex.metrics.skin.
    import subprocess
    import sys

    code = "import sys, experiments.reconstruct; print(sorted(m for m in ('torchmetrics', 'lightning') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out
