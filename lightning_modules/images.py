"""A minimal validation image panel for W&B (the full panels live in callbacks/): one grid per epoch."""

from __future__ import annotations

import torch

from uhrtex.viz.panels import grid


def log_panel(module, key: str, columns: dict[str, torch.Tensor]) -> None:
    """Log one panel if a WandbLogger is attached (rank 0 only); other loggers get scalars only."""
    if not module.trainer.is_global_zero or module.trainer.sanity_checking:
        return
    try:
        from lightning.pytorch.loggers import WandbLogger
    except ImportError:
        return
    for logger in module.loggers:
        if isinstance(logger, WandbLogger):
            logger.log_image(key=key, images=[grid(columns)], caption=[" | ".join(columns)],
                             step=module.global_step)
