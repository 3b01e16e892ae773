"""How the process gets memory for its big tensors (glibc malloc, transparent huge pages), in one place. Imports no
torch: `configure_process` must run before torch allocates anything.

Every fresh buffer costs a page fault per page on its first touch, zero-filled, and at 4096² a run writes gigabytes
of short-lived tensors: a UNet at 512² allocates a few hundred MB per layer (a `cat` into a new buffer took 143 ms
where the same `cat` into an existing one took 30 ms), and the unwrap writes full-size masks and index tensors.

* `configure_process()` (the entry points call it: `experiments/__init__.py`): blocks up to 32 MB come from the heap
  instead of their own mmap, up to 1 GB of freed heap stays mapped for the next tensor, and torch puts large
  tensors on 2 MB huge pages (`THP_MEM_ALLOC_ENABLE`, read at torch's first allocation).
  `UHRTEX_PROCESS_MEMORY=default` leaves the process alone; a `MALLOC_*_` or `THP_MEM_ALLOC_ENABLE` already in the
  environment wins.
* `keep_freed_memory()`: within the block no large block is mmapped and nothing is trimmed, so every layer reuses
  the last one's pages (the networks, a training step); on leaving, the process's settings come back and the free
  memory is returned to the kernel, so the rest of the run (unwrap, export) does not inherit a fragmented heap.
Both are no-ops off glibc.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import sys
from pathlib import Path

# <malloc.h>
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4
_DEFAULT_TRIM, _DEFAULT_MMAP_MAX = 128 * 1024, 65536
MMAP_THRESHOLD = 32 << 20  # glibc's largest allowed value on 64-bit
TRIM_THRESHOLD = 1 << 30
THP_SETTING = Path("/sys/kernel/mm/transparent_hugepage/enabled")

_process_trim = _DEFAULT_TRIM  # what keep_freed_memory restores
applied: dict[str, bool] | None = None  # what `configure_process` set, once it has run


@functools.lru_cache(maxsize=1)
def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def _huge_pages_available() -> bool:
    """Whether the kernel has transparent huge pages and lets a process ask for them (not "[never]"): elsewhere torch
    would warn that its madvise failed."""
    try:
        return "[never]" not in THP_SETTING.read_text()
    except OSError:
        return False


def configure_process() -> dict[str, bool]:
    """Apply the process policy (module doc) once; returns which knobs it set (also kept in `applied`)."""
    global applied, _process_trim
    if applied is not None:
        return applied
    applied = {"malloc": False, "huge_pages": False}
    if os.environ.get("UHRTEX_PROCESS_MEMORY", "tuned") == "default":
        return applied
    if "THP_MEM_ALLOC_ENABLE" not in os.environ and "torch" not in sys.modules and _huge_pages_available():
        os.environ["THP_MEM_ALLOC_ENABLE"] = "1"
        applied["huge_pages"] = True
    libc = _libc()
    if libc is not None and not any(k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")):
        applied["malloc"] = bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
            libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
        if applied["malloc"]:
            _process_trim = TRIM_THRESHOLD
    return applied


@contextlib.contextmanager
def keep_freed_memory():
    """Within the block, glibc keeps large freed blocks for reuse (module doc); on leaving, the process's settings
    come back and the free memory goes back to the kernel (malloc_trim)."""
    libc = _libc()
    if libc is None:
        yield
        return
    libc.mallopt(_M_MMAP_MAX, 0)
    libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
    try:
        yield
    finally:
        libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
        libc.mallopt(_M_TRIM_THRESHOLD, _process_trim)
        libc.malloc_trim(0)
