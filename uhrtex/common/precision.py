"""Reconstruction precision (`auto | bf16 | fp32`) and the CPU facts it depends on, in one place.

* `auto`: bf16 autocast where the hardware runs it fast: CUDA, or a CPU with AVX512-BF16 or AMX (oneDNN then
  runs bf16 convolutions ~2× faster than fp32); fp32 elsewhere (AVX2-only CPUs emulate bf16, slower than fp32).
* `bf16`: bf16 autocast for the HFDR's and the UV&Normal predictor's convolutions; the GDE, hash-grid encoding,
  resampling, the HFDR head's guide and band terms and all outputs stay float32 (see `uhrtex.stage1.run`,
  `uhrtex.networks.unet`).
* `fp32`: no autocast.

Training uses Lightning's own switch (`trainer.precision=bf16-mixed`), not this module.

How the networks get their memory on CPU (glibc keeps freed blocks while they run) is `uhrtex.common.memory`.
"""

from __future__ import annotations

import contextlib
import functools

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
