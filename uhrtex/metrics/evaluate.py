"""Per-map evaluation of texture predictions: one dict of metrics per sample.

Keys are `<map>/<metric>` with map in `maps.TEXTURE` (albedo, micronormal, specular) and metric in
`ssim psnr <perceptual key> angle seam`:
* `ssim`, `psnr`: masked (see `uhrtex.metrics.image`);
* `lpips` or `stlpips`: the perceptual distance chosen by `perceptual=auto|lpips|stlpips|none`;
* `angle`: mean angular error in degrees (micronormal only);
* `seam`: the seam metric of the *error map* prediction - target (only when `patch` is given; see
  `uhrtex.metrics.seam`): content edges cancel, so 1 means no seam artifacts and more means visible jumps or
  damaged seam bands; `seam_pred`: the same on the prediction itself (what is left without ground truth).
* `band_psnr` (dB, higher is better), `band_corr` (higher is better), `hf_ratio` (best at 1; 0 = blurred,
  > 1 = invented detail): the detail band a x`detail` low-resolution input cannot carry (see
  `uhrtex.metrics.detail`); NaN when the maps are too small for the band filter. `detail=None` skips them.
The same function serves image space and UV space: the caller passes the maps and the region of that space.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import torch

from uhrtex.maps import TEXTURE
from uhrtex.metrics.detail import detail_applicable, detail_metrics
from uhrtex.metrics.image import angular_error, psnr, ssim
from uhrtex.metrics.perceptual import build_perceptual, perceptual_distance
from uhrtex.metrics.seam import seam_metric


class Evaluator:
    """Holds the (lazily built) perceptual network; call it on B x 7 x H x W prediction/target + B x 1 x H x W mask."""

    def __init__(self, perceptual: str | None = "auto", tile: int = 1024, maps: Iterable[str] = TEXTURE.names,
                 device: str | torch.device = "cpu", detail: float | None = 8):
        self.detail = detail  # the low-res factor of the detail band (None: no detail metrics)
        self.kind = None if perceptual in (None, "none", "off") else perceptual
        self.tile = tile
        self.maps = tuple(maps)
        self.device = torch.device(device)
        self._model = None

    @property
    def model(self):
        if self._model is None and self.kind is not None:
            self._model = build_perceptual(self.kind).to(self.device)
        return self._model

    @property
    def perceptual_key(self) -> str | None:
        return None if self.kind is None else self.model.key

    @property
    def perceptual_name(self) -> str | None:
        return None if self.kind is None else self.model.name

    def tiled(self, size: int) -> bool:
        return self.kind is not None and size > self.tile

    @torch.no_grad()
    def __call__(self, pred: torch.Tensor | Mapping[str, torch.Tensor], target: torch.Tensor | Mapping[str, torch.Tensor],
                 mask: torch.Tensor | None = None, patch: int | None = None,
                 names: Iterable[str] | None = None, perceptual: bool = True) -> list[dict[str, float]]:
        """Per-sample rows; `names` restricts the maps (a method without micronormal gets no micronormal keys);
        `perceptual=False` skips the perceptual net (see `perceptual_many` for several predictions of one target)."""
        p = TEXTURE.split(pred) if isinstance(pred, torch.Tensor) else pred
        t = TEXTURE.split(target) if isinstance(target, torch.Tensor) else target
        cols: dict[str, torch.Tensor] = {}
        for name in (self.maps if names is None else tuple(names)):
            a, b = p[name].detach().float().cpu(), t[name].detach().float().cpu()
            cols[f"{name}/ssim"] = ssim(a, b, mask)
            cols[f"{name}/psnr"] = psnr(a, b, mask)
            if self.kind is not None and perceptual:
                cols[f"{name}/{self.perceptual_key}"] = perceptual_distance(self.model, a, b, mask, tile=self.tile)
            if name == "micronormal":
                cols[f"{name}/angle"] = angular_error(a, b, mask)
            if patch:
                # On the error map: jumps the truth does not have (content edges cancel); 1 = no seam artifacts.
                cols[f"{name}/seam"] = seam_metric(a - b, patch, mask)
                cols[f"{name}/seam_pred"] = seam_metric(a, patch, mask)
            if self.detail:
                cols.update(self._detail(name, a, b, mask))
        n = next(iter(cols.values())).shape[0]
        return [{k: float(v[i]) for k, v in cols.items()} for i in range(n)]

    def _detail(self, name: str, a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None) -> dict[str, torch.Tensor]:
        keys = [f"{name}/{k}" for k in ("band_psnr", "band_corr", "hf_ratio")]
        if not detail_applicable(*a.shape[-2:], self.detail):
            return {k: torch.full((a.shape[0],), math.nan) for k in keys}
        return detail_metrics({name: a}, {name: b}, mask, self.detail, names=(name,))


@torch.no_grad()
def perceptual_many(evaluator: Evaluator, preds: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B,) perceptual distances of B predictions (B x C x H x W) to one target (1 x C x H x W) over one mask
    (1 x 1 x H x W); the target is encoded once. NaN when the evaluator has no perceptual metric."""
    if evaluator.kind is None:
        return torch.full((preds.shape[0],), math.nan)
    return perceptual_distance(evaluator.model, preds.float().cpu(), target.float().cpu(), mask, tile=evaluator.tile)


def mean_std(rows: list[Mapping[str, float]]) -> dict[str, tuple[float, float, int]]:
    """Column-wise (mean, sample std, count) over rows, ignoring NaN; +inf (perfect PSNR) propagates."""
    keys = sorted({k for r in rows for k in r})
    out = {}
    for k in keys:
        vals = [float(r[k]) for r in rows if k in r and not math.isnan(float(r[k]))]
        if not vals:
            out[k] = (math.nan, math.nan, 0)
            continue
        mean = sum(vals) / len(vals)
        std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 and math.isfinite(mean) else 0.0
        out[k] = (mean, std, len(vals))
    return out
