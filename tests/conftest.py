import os
import tempfile

import pytest
from tests.helpers.threads import one_thread

# Session fixtures (stage checkpoints, a capture store) shared by several test files.
pytest_plugins = ["tests.helpers.recon", "tests.helpers.stage_ckpts"]

# Tests never talk to W&B servers, and keep torch to the two cores CI has.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
# The template-texture cache (uhrtex.unwrap.fill) goes to a throw-away folder, never the user's ~/.cache.
os.environ.setdefault("UHRTEX_CACHE_DIR", tempfile.mkdtemp(prefix="uhrtex-test-cache-"))


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A throw-away project root: logs/, data/ and run/ live here."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("UHRTEX_ROOT", str(tmp_path))
    return tmp_path


@pytest.fixture
def one_torch_thread():
    """Tiny tensors: one intra-op thread is faster than two fighting over a shared machine."""
    with one_thread():
        yield
