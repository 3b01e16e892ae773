import os

import pytest

# Tests never talk to W&B servers, and keep torch to the two cores CI has.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A throw-away project root: logs/, data/ and run/ live here."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("UHRTEX_ROOT", str(tmp_path))
    return tmp_path
