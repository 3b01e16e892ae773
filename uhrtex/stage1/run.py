"""Stage 1 (paper §3.3) in plain torch: downsample -> UV&Normal predictor -> hash(uv) -> GDE -> guide.

`gde_input` and `hfdr_input` are the one place that builds each network's input, shared by training
(LightningModules) and inference (`Stage1`, the Reconstructor), so the two cannot drift apart.

Predicted uv/normal are multiplied by the predicted (soft) mask: the captures' uv/normal are 0 off the
face, so downstream networks see the same kind of input whether it came from a capture or a prediction. A landmark
uv prior (`uv_prior`) then replaces the uv where it covers the face, unscaled.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from uhrtex import maps
from uhrtex.networks.stages import GEOMETRY_INPUT, UV_NORMAL_OUTPUT

# Names of Stage-1 outputs (docs/contracts.md: the Stage-1 reader's keys).
GEOMETRY_KEYS = ("uv_pred", "normal_pred", "mask_pred")
GUIDE_KEY = "guide"
# Where Stage 1's uv comes from inside the face: "none" (the UV&Normal predictor's, as the paper) or "landmarks"
# (the face landmarks' mesh, `uhrtex.face.geometry.landmark_uv_prior`; the predictor's only outside its coverage).
UV_PRIORS = ("none", "landmarks")


def uv_prior_of(gde_config: dict) -> str:
    """The uv prior a GDE checkpoint's model config was trained with (older checkpoints: none)."""
    prior = gde_config.get("uv_prior") or "none"
    if prior not in UV_PRIORS:
        from uhrtex.checkpoint import CheckpointError

        raise CheckpointError(f"the GDE's model config has uv_prior '{prior}', not one of {UV_PRIORS}; "
                              "retrain the GDE or use a newer uhrtex")
    return prior


def downsample(image: torch.Tensor, size: int) -> torch.Tensor:
    """Area downsampling to size×size (what the capture store's global pyramid does)."""
    if image.shape[-2:] == (size, size):
        return image
    return F.interpolate(image, size=(size, size), mode="area")


def uv_normal_parts(out: torch.Tensor) -> dict[str, torch.Tensor]:
    """Raw UV&Normal predictor output -> {"uv", "normal"} (+ "mask" for the 6-channel predictor)."""
    layout = UV_NORMAL_OUTPUT if out.shape[1] == UV_NORMAL_OUTPUT.channels else maps.GEOMETRY
    return layout.split(out)


def apply_uv_prior(uv: torch.Tensor, prior: torch.Tensor | None) -> torch.Tensor:
    """uv where the B×3×h×w prior (u, v, coverage) does not cover, the prior's uv where it does."""
    if prior is None:
        return uv
    prior = downsample(prior.to(uv.dtype), uv.shape[-1])
    return torch.lerp(uv, prior[:, :2], prior[:, 2:3])


def split_uv_normal(out: torch.Tensor, mask: torch.Tensor | None = None,
                    uv_prior: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """UV&Normal predictor output -> {"uv_pred", "normal_pred", "mask_pred"}, geometry masked by the mask: `mask`
    (B×1 at the output's size) if given, else the predicted one. A 5-channel predictor (the paper's) has no mask:
    everything counts as face. `uv_prior` (`apply_uv_prior`) then replaces the uv where it covers, unscaled: the
    prior's uv is the face's own, not to be dimmed by a soft predicted mask (mean ~0.7 inside the face).
    """
    parts = uv_normal_parts(out)
    if mask is None:
        mask = parts.get("mask")
    if mask is None:
        mask = torch.ones_like(out[:, :1])
    uv = apply_uv_prior(parts["uv"] * mask, uv_prior)
    return {"uv_pred": uv, "normal_pred": parts["normal"] * mask, "mask_pred": mask}


def gde_input(image: torch.Tensor, uv: torch.Tensor, normal: torch.Tensor,
              hash_encoder: nn.Module | None) -> torch.Tensor:
    """image ⊕ uv ⊕ normal ⊕ hash(uv) (no hash channels when hash_encoder is None)."""
    groups = {"image": image, "uv": uv, "normal": normal}
    x = GEOMETRY_INPUT.cat(groups)
    if hash_encoder is None:
        return x
    # The hash grid stays float32 under bf16 autocast: a bf16 uv would move fine-level lookups by whole cells.
    with torch.autocast(uv.device.type, enabled=False):
        enc = hash_encoder(uv.float())
    return torch.cat([x, enc.to(x.dtype)], dim=1)


def hfdr_input(image: torch.Tensor, uv: torch.Tensor, normal: torch.Tensor) -> torch.Tensor:
    """Full-res patch ⊕ upsampled uv/normal crops."""
    return GEOMETRY_INPUT.cat({"image": image, "uv": uv, "normal": normal})


class Stage1(nn.Module):
    """Frozen-inference Stage 1. `forward(image)` takes any-size B×3×H×W (H = W) and returns global-size maps:
    {"uv_pred", "normal_pred", "mask_pred"} and, with a GDE, "guide" (7 ch, maps.TEXTURE order).

    With `uv_normal=None` the caller passes ground-truth geometry (`geometry={"uv", "normal", "mask"}`),
    which is how a GDE trained on GT geometry (`use_gt_geometry`) gets its guides.
    """

    def __init__(self, uv_normal: nn.Module | None, gde: nn.Module | None = None,
                 hash_encoder: nn.Module | None = None, global_size: int = 1024, uv_prior: str = "none"):
        super().__init__()
        if uv_normal is None and gde is None:
            raise ValueError("Stage1 needs a UV&Normal predictor, a GDE, or both")
        if uv_prior not in UV_PRIORS:
            raise ValueError(f"uv_prior '{uv_prior}' is not one of {UV_PRIORS}")
        self.uv_normal, self.gde, self.hash_encoder = uv_normal, gde, hash_encoder
        self.global_size = global_size
        self.uv_prior = uv_prior  # what the GDE (and the HFDR after it) were trained with
        self.requires_grad_(False)
        self.eval()

    @property
    def keys(self) -> tuple[str, ...]:
        return (GEOMETRY_KEYS if self.uv_normal is not None else ()) + ((GUIDE_KEY,) if self.gde is not None else ())

    def train(self, mode: bool = True) -> Stage1:
        return super().train(False)  # frozen: GroupNorm has no running stats, but keep eval semantics anyway

    @torch.no_grad()
    def forward(self, image: torch.Tensor, geometry: dict[str, torch.Tensor] | None = None,
                mask: torch.Tensor | None = None, uv_prior: torch.Tensor | None = None,
                predictor_precision: Callable[[], contextlib.AbstractContextManager] | None = None) -> dict[str, torch.Tensor]:
        """`mask` (B×1×h×w, any size): the face mask to use instead of the predictor's, for the uv/normal it keeps and
        the guide's cut. On real photos the face landmarks' hull is the more reliable one: the predictor, trained on
        renders of heads without hair, can take hair for face or leave a cheek out.
        `uv_prior` (B×3×h×w: u, v, coverage; `uhrtex.face.geometry.landmark_uv_prior`): the uv inside its coverage,
        for a Stage 1 trained with `uv_prior="landmarks"`.
        `predictor_precision`: the context (an autocast) the UV&Normal predictor runs in; the GDE always runs in
        the caller's, because the guide carries every map's overall values (docs/reconstruction.md, Precision)."""
        x = downsample(image, self.global_size)
        if self.uv_normal is not None:
            with predictor_precision() if predictor_precision is not None else contextlib.nullcontext():
                raw = self.uv_normal(x).float()
            m = None if mask is None else downsample(mask.to(raw.dtype), self.global_size)
            out = split_uv_normal(raw, m, uv_prior)
        elif geometry is not None:
            out = {}
            geom = {"uv_pred": geometry["uv"], "normal_pred": geometry["normal"], "mask_pred": geometry["mask"]}
            geom = {k: downsample(v, self.global_size) for k, v in geom.items()}
        else:
            raise ValueError("Stage1 without a UV&Normal predictor needs ground-truth geometry (uv, normal, mask)")
        if self.gde is not None:
            src = out if self.uv_normal is not None else geom
            out[GUIDE_KEY] = self.gde(gde_input(x, src["uv_pred"], src["normal_pred"], self.hash_encoder), src["mask_pred"])
        return out
