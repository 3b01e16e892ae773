"""Skip markers that say exactly why a test did not run."""

from __future__ import annotations

import importlib.util

import pytest
import torch


def requires_cuda():
    return pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available() is False)")


def requires_module(name: str, extra: str | None = None):
    hint = f"; install with `pip install -e .[{extra}]`" if extra else ""
    return pytest.mark.skipif(importlib.util.find_spec(name) is None, reason=f"needs the optional package '{name}'{hint}")
