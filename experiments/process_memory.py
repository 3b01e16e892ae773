"""How this process gets memory for its big tensors: set once, before torch allocates anything.

Every fresh buffer costs a page fault per page on its first touch, and at 4096² the networks and the unwrap write
gigabytes of short-lived tensors: a new 134 MB activation costs about as much as the SiLU that fills it. Two knobs
keep that memory in the process instead of handing it back to the kernel after every op:

* glibc's malloc (`mallopt`): blocks up to 32 MB come from the heap instead of their own mmap, and up to 1 GB of
  freed heap stays mapped for the next tensor instead of being trimmed. One HFDR patch's activations are below
  32 MB, so from the second patch on they reuse the first one's pages.
* `THP_MEM_ALLOC_ENABLE` (read by torch at its first allocation): large tensors on 2 MB transparent huge pages.

`UHRTEX_PROCESS_MEMORY=default` leaves both alone (to measure them: benchmarks/reconstruct.py); a `MALLOC_*_` or
`THP_MEM_ALLOC_ENABLE` already in the environment wins over what is set here.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from pathlib import Path

MMAP_THRESHOLD = 32 << 20  # glibc's largest allowed value on 64-bit
TRIM_THRESHOLD = 1 << 30
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # from glibc's malloc.h


THP_SETTING = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def _huge_pages_available() -> bool:
    """Whether the kernel has transparent huge pages and lets a process ask for them (not "[never]"): elsewhere torch
    would warn that its madvise failed."""
    try:
        return "[never]" not in THP_SETTING.read_text()
    except OSError:
        return False


applied: dict[str, bool] | None = None  # what `configure` set, once it has run


def configure() -> dict[str, bool]:
    """Apply the policy once per process; returns which knobs it set (also kept in `applied`)."""
    global applied
    if applied is not None:
        return applied
    done = applied = {"malloc": False, "huge_pages": False}
    if os.environ.get("UHRTEX_PROCESS_MEMORY", "tuned") == "default":
        return done
    if "THP_MEM_ALLOC_ENABLE" not in os.environ and "torch" not in sys.modules and _huge_pages_available():
        os.environ["THP_MEM_ALLOC_ENABLE"] = "1"
        done["huge_pages"] = True
    if sys.platform.startswith("linux") and not any(k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_",
                                                                              "MALLOC_TRIM_THRESHOLD_")):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            done["malloc"] = bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
                libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
        except (OSError, AttributeError):  # not glibc (musl, macOS): its own defaults stay
            pass
    return done
