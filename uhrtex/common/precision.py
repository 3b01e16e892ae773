"""Reconstruction precision (`auto | bf16 | fp32`) and the CPU facts it depends on, in one place.

* `auto`: bf16 autocast where the hardware runs it fast: CUDA, or a CPU with AVX512-BF16 or AMX (oneDNN then
  runs bf16 convolutions ~2× faster than fp32); fp32 elsewhere (AVX2-only CPUs emulate bf16, slower than fp32).
* `bf16`: bf16 autocast for the networks' convolutions; hash-grid encoding, resampling, the HFDR head's guide
  term and all outputs stay float32 (see `uhrtex.stage1.run`, `uhrtex.networks.unet`).
* `fp32`: no autocast.

Training uses Lightning's own switch (`trainer.precision=bf16-mixed`), not this module.

`keep_freed_memory()`: glibc returns every freed block above 32 MB to the kernel and the next allocation
page-faults it back in, zero-filled; a UNet at 512² allocates a few hundred MB per layer, so on CPU the page
faults cost as much as the layers' own memory traffic (a fresh 256 MB buffer filled at ~2 GB/s instead of
~10 GB/s). The Reconstructor therefore asks glibc to keep freed memory for reuse (no mmap for large blocks,
no trimming) while it runs the networks, and gives it back afterwards.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import sys

import torch

PRECISIONS = ("auto", "bf16", "fp32")
_DTYPES = {"bf16": torch.bfloat16, "fp32": None}


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo); empty where unknown."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_fast_bf16() -> bool:
    """AVX512-BF16 or AMX (bf16 dot products in hardware); falls back to torch's capability string (AMX only)."""
    flags = cpu_flags()
    if flags:
        return bool(flags & {"avx512_bf16", "amx_bf16"})
    return "AMX" in torch.backends.cpu.get_cpu_capability().upper()


def bf16_is_fast(device: str | torch.device) -> bool:
    device = torch.device(device)
    if device.type == "cuda":
        return True
    return device.type == "cpu" and cpu_has_fast_bf16()


def resolve(precision: str, device: str | torch.device) -> str:
    """`auto` -> `bf16` or `fp32` for this device; validates the name."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got '{precision}'")
    if precision == "auto":
        return "bf16" if bf16_is_fast(device) else "fp32"
    return precision


def autocast(precision: str, device: str | torch.device):
    """The autocast context of a resolved precision (`bf16` or `fp32`) on `device`."""
    dtype = _DTYPES[precision]
    device = torch.device(device)
    if dtype is None:
        return torch.autocast(device.type, enabled=False) if device.type in ("cpu", "cuda") else contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


@functools.lru_cache(maxsize=1)
def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # <malloc.h>
_DEFAULT_TRIM, _DEFAULT_MMAP_MAX = 128 * 1024, 65536


@contextlib.contextmanager
def keep_freed_memory():
    """Within the block, glibc keeps large freed blocks for reuse (see the module doc); on leaving, the defaults
    come back and the free memory is returned to the kernel (malloc_trim), so the rest of a process (unwrap,
    export) is not left with a fragmented heap. A no-op off glibc."""
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
        libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM)
        libc.malloc_trim(0)
