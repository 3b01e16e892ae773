"""Built-in baselines of the comparison (Table 1), each isolating one claim of the paper.

* `ours`: the Reconstructor (Stage 1 -> HFDR on every patch -> assemble -> seam smoothing).
* `no_seam_smoothing`: the same HFDR output, assembled without smoothing (paper Fig. 5).
* `patch_only`: HFDR without the GDE guide (paper Fig. 3). `retrain`: an HFDR trained from scratch with the
  guide input zeroed (`lightning_modules.hfdr.PatchOnlyHFDR`, same budget as ours, sigmoid head instead of the guide pass-through
  head), so it learns to work without one; `zero_guide`: our HFDR with its guide zeroed at inference (no
  training; with the pass-through head its output collapses towards 0: a degenerate lower bound only).
  Both are smoothed like `ours`, so the seam metric compares guide vs no guide.
* `gde_only`: the Stage-1 guide (global size) bilinearly upsampled to the input size, as HFDR receives it.
* `lowres_realesrgan`: the DreamFace recipe: a low-resolution pipeline *trained at its own resolution*
  (input/`factor`, the same stages, data, budget and seed; experiments/lowres.py) runs on the area-downsampled
  input, and its maps go ×`factor` through the real Real-ESRGAN x4plus (`uhrtex.sr.upscale`: ×4 network, then
  bicubic ×2). Albedo and micronormal (3 ch each) go in as RGB images, as a system that super-resolves its
  texture maps would feed them; the specular (1 ch) goes in as a grey image replicated to 3 channels, and the
  3 output channels are averaged back to one.
* `lowres_sr`: the same low-resolution pipeline and input, its maps bicubic ×`factor` (`uhrtex.sr.bicubic_upscale`):
  the same low-res maps without a learned upsampler, so the two differ only in the super-resolution step.
  Neither runs a network off its training scale (`Baselines` refuses a low-res Reconstructor whose input
  size is not input/`factor`).
* `lowres_input`: the input downsampled by `factor` and bicubic-upsampled back, then our pipeline at its
  trained scale: what is lost with the high-frequency input alone, without the scale change of `lowres_sr`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from experiments.lowres import check_scale
from uhrtex import maps
from uhrtex.pipeline.reconstructor import Reconstructor
from uhrtex.sr import bicubic_upscale
from uhrtex.stage1.run import GUIDE_KEY

BUILTIN = ("ours", "no_seam_smoothing", "patch_only", "gde_only", "lowres_realesrgan", "lowres_sr", "lowres_input")
LOWRES = ("lowres_realesrgan", "lowres_sr")  # the methods that need the low-res pipeline


class ZeroGuide(nn.Module):
    """Wrap an HFDR network so that the Reconstructor's guide never reaches it."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        return self.net(x, torch.zeros_like(guide))


def _resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    kwargs = {"align_corners": False} if mode in ("bilinear", "bicubic") else {}
    return F.interpolate(x[None], size=size, mode=mode, **kwargs)[0].clamp(0, 1)


def _fit(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """×factor output -> exactly the input size (differs only when the input is not a multiple of factor)."""
    return x if tuple(x.shape[-2:]) == size else _resize(x, size, "bicubic")


def _texture(out: dict) -> dict[str, torch.Tensor]:
    return {n: out[n].float() for n in maps.TEXTURE.names}


def realesrgan_maps(tex: dict[str, torch.Tensor], factor: int) -> dict[str, torch.Tensor]:
    """Each map ×factor by Real-ESRGAN x4plus, in one batch: 3-channel maps as RGB, 1-channel maps as grey
    replicated to RGB and averaged back."""
    from uhrtex.sr import upscale

    names = list(tex)
    batch = torch.stack([tex[n].expand(3, -1, -1) if tex[n].shape[0] == 1 else tex[n] for n in names])
    up = upscale(batch, scale=factor)
    return {n: (up[i].mean(0, keepdim=True) if tex[n].shape[0] == 1 else up[i]) for i, n in enumerate(names)}


class Baselines:
    """Runs the selected built-in methods on one image; returns {method: {map: C x H x W}}."""

    def __init__(self, rec: Reconstructor, methods: list[str], patch_only: Reconstructor | None = None,
                 lowres: Reconstructor | None = None, factor: int = 8):
        unknown = sorted(set(methods) - set(BUILTIN))
        if unknown:
            raise ValueError(f"compare.methods: unknown {unknown}; built-in methods are {', '.join(BUILTIN)}")
        self.rec, self.methods, self.patch_only, self.lowres, self.factor = rec, methods, patch_only, lowres, factor

    @staticmethod
    def _run(rec: Reconstructor, image: torch.Tensor, smooth: bool) -> dict:
        seams = copy.copy(rec.seams)
        rec.seams.enabled = smooth
        try:
            return rec(image)
        finally:
            rec.seams = seams

    def __call__(self, image: torch.Tensor) -> dict[str, dict[str, torch.Tensor]]:
        size = tuple(image.shape[-2:])
        out: dict[str, dict[str, torch.Tensor]] = {}
        m = self.methods
        if {"ours", "gde_only"} & set(m):
            full = self._run(self.rec, image, True)
            if "ours" in m:
                out["ours"] = _texture(full)
            if "gde_only" in m:
                guide = maps.TEXTURE.split(full[GUIDE_KEY][None])
                out["gde_only"] = {n: _resize(g[0].float(), size, "bilinear") for n, g in guide.items()}
        if "no_seam_smoothing" in m:
            out["no_seam_smoothing"] = _texture(self._run(self.rec, image, False))
        if "patch_only" in m:
            out["patch_only"] = _texture(self._run(self.patch_only, image, True))
        if {*LOWRES, "lowres_input"} & set(m):
            small = F.interpolate(image[None].float(), scale_factor=1 / self.factor, mode="area")[0].clamp(0, 1)
            if set(LOWRES) & set(m):
                if self.lowres is None:
                    raise ValueError(f"{sorted(set(LOWRES) & set(m))} need a low-resolution Reconstructor")
                check_scale(self.lowres, small)
                low = _texture(self._run(self.lowres, small, True))
                if "lowres_sr" in m:
                    out["lowres_sr"] = {n: _fit(bicubic_upscale(v, self.factor), size) for n, v in low.items()}
                if "lowres_realesrgan" in m:
                    out["lowres_realesrgan"] = {n: _fit(v, size) for n, v in realesrgan_maps(low, self.factor).items()}
            if "lowres_input" in m:
                up = _resize(small, size, "bicubic")
                out["lowres_input"] = _texture(self._run(self.rec, up, True))
        return {k: out[k] for k in m}


def variant(rec: Reconstructor, hfdr: nn.Module | None = None, input_size: int | None = None,
            wrap: Callable[[nn.Module], nn.Module] | None = None) -> Reconstructor:
    """A Reconstructor sharing `rec`'s Stage 1 with another HFDR and/or another input size."""
    net = hfdr if hfdr is not None else rec.hfdr
    net = wrap(net) if wrap else net
    s1 = rec.stage1
    size = input_size or rec.input_size
    same = size == rec.input_size
    return Reconstructor(s1.uv_normal, s1.gde, net, s1.hash_encoder, input_size=size,
                         global_size=rec.global_size if same else None, patch_size=rec.patch_size if same else None,
                         patch_batch=rec.patch_batch, device=rec.device, seams=copy.copy(rec.seams),
                         channels_last=rec.channels_last)
