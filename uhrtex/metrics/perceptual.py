"""Perceptual distance selection: `auto | lpips | stlpips`, and tiling for large maps.

* `lpips`: LPIPS-alex from the `lpips` package (the paper's metric). Needs torchvision and torchvision's
  AlexNet weights already in the torch hub cache; nothing is downloaded at run time.
* `stlpips`: ST-LPIPS-alex (`uhrtex.metrics.stlpips`), weights from the `stlpips-pytorch` wheel; works offline.
* `auto`: lpips when usable, else stlpips. The chosen metric's `name` goes into every table header, so the
  two are never mixed under one name.

Maps are compared as 3-channel images in [0, 1]: 1-channel maps (specular) are repeated; encoded normals are
used as-is. Outside the evaluation mask both images are set to 0, and only the mask's bounding box (at least
64 px a side) is compared, so the score does not depend on how much empty background the frame has. Maps larger than `tile` per side are cut
into tile x tile crops (LPIPS nets were trained on small crops, and a 4K AlexNet pass is memory-hungry);
the value is the mean over tiles that hold any mask, weighted by their mask fraction.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import torch
from torch import nn

from uhrtex.hfdr.patches import pad_to_multiple

KINDS = ("auto", "lpips", "stlpips")
ALEXNET_FILE = "alexnet-owt-7be5be79.pth"  # what torchvision.models.alexnet(weights="DEFAULT") caches
LPIPS_FIX = ("pip install -e '.[lpips]' and fetch AlexNet once with "
             "`python -c \"import torchvision; torchvision.models.alexnet(weights='DEFAULT')\"`, "
             "or use metrics.perceptual=stlpips")


def lpips_problem() -> str | None:
    """Why the `lpips` metric cannot run here (None when it can)."""
    for module in ("lpips", "torchvision"):
        if importlib.util.find_spec(module) is None:
            return f"package '{module}' is not installed"
    cached = Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_FILE
    if not cached.is_file():
        return f"AlexNet weights are not in the torch hub cache ({cached})"
    return None


class LPIPSAlex(nn.Module):
    """Thin wrapper around `lpips.LPIPS(net='alex')` with the same interface as STLPIPS."""

    name = "LPIPS-alex"
    key = "lpips"

    def __init__(self):
        super().__init__()
        problem = lpips_problem()
        if problem:
            raise RuntimeError(f"metrics.perceptual=lpips unavailable: {problem}; {LPIPS_FIX}")
        import lpips

        self.model = lpips.LPIPS(net="alex", verbose=False).eval().requires_grad_(False)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.model(a, b, normalize=True).flatten()


def build_perceptual(kind: str = "auto") -> nn.Module:
    """The perceptual distance module for `kind`; it has `.name` (table header) and `.key` (metric key)."""
    if kind not in KINDS:
        raise ValueError(f"metrics.perceptual={kind!r} is not valid; use one of {', '.join(KINDS)}")
    if kind == "lpips" or (kind == "auto" and lpips_problem() is None):
        return LPIPSAlex()
    from uhrtex.metrics.stlpips import STLPIPS

    return STLPIPS()


def _rgb(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 3:
        return x
    if x.shape[1] == 1:
        return x.expand(-1, 3, -1, -1)
    raise ValueError(f"perceptual metrics take 1- or 3-channel maps, got {x.shape[1]} channels")


MIN_SIDE = 64  # smallest crop the AlexNet trunks take comfortably


def _bbox(m: torch.Tensor, min_side: int) -> tuple[int, int, int, int]:
    """Rows/cols [y0, y1) x [x0, x1) holding any mask pixel (over the batch), grown to >= min_side where possible."""
    h, w = m.shape[-2:]
    any_ = m.flatten(0, 1).amax(0) > 0
    rows, cols = torch.nonzero(any_.any(1)).flatten(), torch.nonzero(any_.any(0)).flatten()
    if rows.numel() == 0:
        return 0, h, 0, w
    out = []
    for lo, hi, n in ((int(rows[0]), int(rows[-1]) + 1, h), (int(cols[0]), int(cols[-1]) + 1, w)):
        side = min(max(hi - lo, min_side), n)
        lo = min(max((lo + hi) // 2 - side // 2, 0), n - side)
        out += [lo, lo + side]
    return out[0], out[1], out[2], out[3]


def _pairs(model: nn.Module, a: torch.Tensor, b: torch.Tensor, device, batch: int) -> torch.Tensor:
    """model(a, b) in chunks; a target shared by the whole batch (b of batch 1) is encoded once when the model
    exposes `features`/`distance` (ST-LPIPS), e.g. several methods against one ground truth."""
    if b.shape[0] == 1 and a.shape[0] > 1 and hasattr(model, "features"):
        fb = model.features(b.to(device))
        return torch.cat([model.distance(model.features(a[i:i + batch].to(device)), fb).cpu()
                          for i in range(0, a.shape[0], batch)])
    b = b.expand(a.shape[0], -1, -1, -1)
    return torch.cat([model(a[i:i + batch].to(device), b[i:i + batch].to(device)).cpu() for i in range(0, a.shape[0], batch)])


@torch.no_grad()
def perceptual_distance(model: nn.Module, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
                        tile: int = 1024, batch: int = 4, min_side: int = MIN_SIDE) -> torch.Tensor:
    """Per-sample (B,) distance; tiled when a side exceeds `tile` (see module doc). A target (and mask) of batch 1
    is shared by every prediction (compared once per prediction, encoded once)."""
    device = next(model.buffers()).device
    m = torch.ones_like(target[:, :1]) if mask is None else (mask > 0.5).to(pred.dtype)
    a, b = _rgb(pred.float()) * m, _rgb(target.float()) * m
    if mask is not None:  # only the region's bounding box: the rest is zero in both (and would only dilute)
        y0, y1, x0, x1 = _bbox(m, min_side)
        a, b, m = a[..., y0:y1, x0:x1], b[..., y0:y1, x0:x1], m[..., y0:y1, x0:x1]
    h, w = a.shape[-2:]
    if max(h, w) <= tile:
        return _pairs(model, a, b, device, batch)
    a, _ = pad_to_multiple(a, tile, mode="constant")
    b, _ = pad_to_multiple(b, tile, mode="constant")
    m, _ = pad_to_multiple(m, tile, mode="constant")
    out = []
    if b.shape[0] != a.shape[0]:
        b, m = b.expand(a.shape[0], -1, -1, -1), m.expand(a.shape[0], -1, -1, -1)
    for ai, bi, mi in zip(a, b, m):
        ta, tb, tm = (x.unfold(1, tile, tile).unfold(2, tile, tile).permute(1, 2, 0, 3, 4).reshape(-1, x.shape[0], tile, tile)
                      for x in (ai, bi, mi))
        weight = tm.flatten(1).mean(1)
        keep = weight > 0
        if not keep.any():
            out.append(torch.tensor(math.nan))
            continue
        ta, tb, weight = ta[keep], tb[keep], weight[keep]
        d = _pairs(model, ta, tb, device, batch)
        out.append((d * weight).sum() / weight.sum())
    return torch.stack(out)
