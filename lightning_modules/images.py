"""A minimal validation image panel for W&B (the full panels live in callbacks/): one grid per epoch."""

from __future__ import annotations

import torch


def to_rgb(x: torch.Tensor) -> torch.Tensor:
    """B×C×H×W in [0, 1] with C in {1, 2, 3} -> B×3×H×W (1 ch repeated; 2 ch (uv) gets a zero blue)."""
    x = x.detach().float().clamp(0, 1)
    if x.shape[1] == 1:
        return x.expand(-1, 3, -1, -1)
    if x.shape[1] == 2:
        return torch.cat([x, torch.zeros_like(x[:, :1])], 1)
    return x[:, :3]


def panel(columns: dict[str, torch.Tensor], max_rows: int = 4) -> torch.Tensor:
    """Rows = samples, columns = named maps (resized to the first column's size): uint8 3×(rH)×(cW).

    uint8, because wandb.Image casts float tensors to bytes without scaling (a [0, 1] panel comes out black).
    """
    size = next(iter(columns.values())).shape[-2:]
    cols = []
    for x in columns.values():
        x = to_rgb(x[:max_rows])
        if x.shape[-2:] != size:
            x = torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False)
        cols.append(x)
    grid = torch.cat(cols, dim=3)  # B×3×H×(cW)
    return (torch.cat(list(grid), dim=1) * 255).round().to(torch.uint8).cpu()  # 3×(BH)×(cW)


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
            logger.log_image(key=key, images=[panel(columns)], caption=[" | ".join(columns)],
                             step=module.global_step)
