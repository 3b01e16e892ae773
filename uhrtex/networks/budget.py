"""Training-memory estimate of a network without running it: shapes are traced on the `meta` device.

Autograd keeps, per hidden layer, the conv input (for the weight gradient), the conv output (for the
norm) and the norm output (for the activation); these dominate a UNet's training memory. Adam adds
three copies of the parameters (grad, exp_avg, exp_avg_sq). The estimate ignores allocator slack and
cuDNN workspaces, so keep ~25 % headroom below the GPU's memory.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def _numel_bytes(t) -> int:
    return t.numel() * t.element_size() if isinstance(t, torch.Tensor) else 0


def training_bytes(net: nn.Module, *inputs: torch.Tensor, bytes_per_value: int = 4) -> dict[str, int]:
    """{"activations", "params", "total"} bytes for one forward+backward+Adam step on these input shapes.

    `inputs` may be meta tensors (only shapes matter). `bytes_per_value` = 2 estimates bf16 activations.
    """
    meta = copy.deepcopy(net).to("meta")
    saved = 0

    def hook(module, args, output):
        nonlocal saved
        if isinstance(module, nn.Conv2d):
            saved += sum(_numel_bytes(a) for a in args) // 4 * bytes_per_value
        saved += _numel_bytes(output) // 4 * bytes_per_value

    handles = [m.register_forward_hook(hook) for m in meta.modules() if isinstance(m, (nn.Conv2d, nn.GroupNorm,
                                                                                         nn.BatchNorm2d, nn.InstanceNorm2d))]
    try:
        with torch.no_grad():
            meta(*[x.to("meta") for x in inputs])
    finally:
        for h in handles:
            h.remove()
    params = sum(p.numel() for p in net.parameters()) * 4 * 4  # weights + grad + 2 Adam moments, fp32
    return {"activations": saved, "params": params, "total": saved + params}
