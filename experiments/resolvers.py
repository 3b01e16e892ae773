"""OmegaConf resolvers used by the config tree (sizes derive from one knob)."""

import os

from omegaconf import OmegaConf


def _div(a, b) -> int:
    a, b = int(a), int(b)
    if a % b:
        raise ValueError(f"size {a} is not divisible by {b}; pick input_size as a multiple of {b * 8}")
    return a // b


OmegaConf.register_new_resolver("div", _div, replace=True)
OmegaConf.register_new_resolver("mul", lambda a, b: int(a) * int(b), replace=True)
# The launch directory, absolute. Unlike ${hydra:runtime.cwd} it also resolves while Hydra's
# sweeper computes hydra.sweep.dir, before the Hydra config is set.
OmegaConf.register_new_resolver("cwd", lambda: os.getcwd(), replace=True)
