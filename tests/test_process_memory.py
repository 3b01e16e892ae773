"""The process memory policy (`uhrtex.common.memory.configure_process`, run by the entry points): what it sets, and
when it keeps its hands off."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROBE = ("import json, os, sys; {first}import experiments; from uhrtex.common import memory as pm; "
         "print(json.dumps([pm.applied, os.environ.get('THP_MEM_ALLOC_ENABLE')]))")


def _probe(first: str = "", **env: str) -> tuple[dict, str | None]:
    e = {k: v for k, v in os.environ.items() if k not in ("THP_MEM_ALLOC_ENABLE", "UHRTEX_PROCESS_MEMORY")
         and not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", PROBE.format(first=first)], cwd=ROOT, env={**e, **env},
                         capture_output=True, text=True, check=True).stdout
    applied, thp = json.loads(out.strip().splitlines()[-1])
    return applied, thp


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's (Linux)")
def test_entry_points_tune_malloc_and_ask_for_huge_pages():
    from uhrtex.common.memory import _huge_pages_available

    applied, thp = _probe()
    huge = _huge_pages_available()  # a kernel without them (or set to "never") is left alone
    assert applied == {"malloc": True, "huge_pages": huge} and thp == ("1" if huge else None)


def test_default_leaves_the_process_alone():
    applied, thp = _probe(UHRTEX_PROCESS_MEMORY="default")
    assert applied == {"malloc": False, "huge_pages": False} and thp is None


def test_the_users_environment_wins():
    applied, thp = _probe(THP_MEM_ALLOC_ENABLE="0", MALLOC_TRIM_THRESHOLD_="131072")
    assert applied == {"malloc": False, "huge_pages": False} and thp == "0"


def test_too_late_once_torch_is_imported():
    """torch reads THP_MEM_ALLOC_ENABLE at its first allocation: set after that, it would claim what did not happen."""
    applied, thp = _probe(first="import torch; torch.ones(1); ")
    assert applied["huge_pages"] is False and thp is None
