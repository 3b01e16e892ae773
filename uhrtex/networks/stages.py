"""The three trained networks of the method, built on `UNet`, and their channel layouts.

Paper-preset defaults (width = 32, checked to fit a 24 GB GPU by `uhrtex.networks.budget`):
* UV&Normal predictor: image(3) -> uv(2) ⊕ normal(3) ⊕ mask(1). The paper predicts 5 channels; we add
  a face-mask channel because unwrapping and the mesh-free splat need to know which pixels are face on
  wild photos (paper §3.2 leaves this implicit). 5 levels, widths w·(1, 2, 4, 8, 8), 2 enc + 2 dec blocks
  (18 hidden layers): the deepest features see ~1/4 of the 1024² frame, enough context to place UVs.
* GDE: image(3) ⊕ uv(2) ⊕ normal(3) ⊕ hash(uv)(8) = 16 -> 7 (albedo, micronormal, specular guide).
  3 levels, widths w·(1, 2, 4), 2 enc + 3 dec blocks = the paper's 12 hidden layers. Without hash
  encoding (ablation) the input is 8 channels and the network is otherwise the same.
* HFDR: image patch(3) ⊕ upsampled uv(2) ⊕ normal(3) = 8 -> 7, with the 7-channel guide crop
  concatenated after hidden layer 17 (the last one, "just before the output head"): 4 levels,
  widths w·(1, 2, 4, 8), 2 enc + 3 dec blocks. Its head starts as a pass-through of the guide
  (see `build_hfdr`), so training refines the guide instead of first relearning it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from uhrtex import maps
from uhrtex.maps import Layout
from uhrtex.networks.unet import DETAIL_CHANNELS, UNet

# Output of the UV&Normal predictor: geometry then the face mask.
UV_NORMAL_OUTPUT = Layout(maps.GEOMETRY.groups + maps.MASK.groups)
# Input of HFDR (and the GDE's input without its hash channels).
GEOMETRY_INPUT = Layout(maps.IMAGE.groups + maps.GEOMETRY.groups)


def gde_input_layout(hash_channels: int) -> Layout:
    """image ⊕ uv ⊕ normal ⊕ hash(uv); no hash group when hash_channels == 0."""
    return Layout(GEOMETRY_INPUT.groups + ((("hash", hash_channels),) if hash_channels else ()))


def build_uv_normal(widths: Sequence[int] = (32, 64, 128, 256, 256), enc_blocks: int = 2, dec_blocks: int = 2,
                    act: str = "silu", predict_mask: bool = True) -> UNet:
    out = UV_NORMAL_OUTPUT.channels if predict_mask else maps.GEOMETRY.channels
    return UNet(maps.IMAGE.channels, out, widths, enc_blocks, dec_blocks, act, out_activation="sigmoid")


# mask_output: the face mask is widened by this many pixels (at the global size) before it cuts the guide, so
# that the rim, where the predicted and the true face edges differ by a pixel or two, keeps the network's values.
GUIDE_MASK_DILATION = 2


# albedo_from_image: the log-gain is clipped to ±this before exp, so a diverging head cannot overflow.
GAIN_LOG_LIMIT = 8.0


class GDENet(UNet):
    """The GDE's UNet. With `mask_output` its guide is 0 off the face mask that the caller passes (> 0.5, widened
    by GUIDE_MASK_DILATION px): the texture targets are 0 off the face, so the network spends none of its few steps
    on the background. Thresholded, not multiplied: the predicted mask is ~0.95 inside the face, and a sigmoid
    output times 0.95 cannot reach the flat micronormal's z = 1. Widened: the 0.1 % of the true face outside the
    predicted mask, cut to 0, cost the micronormal guide 5 dB (docs/results.md, seventh round).

    With `albedo_from_image` the albedo guide is the input image times a per-channel gain, image · exp(head), and
    only micronormal and specular go through the sigmoid. Under one lighting the image is albedo × shading, and
    the shading is smooth and set by the normal: the network learns an inverse shading, and the lips, brows, moles
    and skin tone come from the image itself instead of being relearnt from five training faces (docs/results.md,
    eighth round). The albedo is clipped to [0, 1] in value but not in gradient, so a gain that overshoots is pulled
    back instead of sitting in a flat clamp."""

    def __init__(self, *args, mask_output: bool = False, albedo_from_image: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if albedo_from_image and self._out_act != "identity":
            raise ValueError("albedo_from_image applies its own output functions: build the UNet with "
                             "out_activation='identity' (build_gde does)")
        self.mask_output = bool(mask_output)
        self.albedo_from_image = bool(albedo_from_image)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        out = super().forward(x)
        if self.albedo_from_image:
            out = self._image_relative(out, x[:, :maps.IMAGE.channels])
        if not self.mask_output:
            return out
        if mask is None:
            raise ValueError("this GDE was built with mask_output=true: pass the face mask (B×1×H×W) with its input")
        r = GUIDE_MASK_DILATION
        return out * F.max_pool2d((mask > 0.5).to(out.dtype), 2 * r + 1, stride=1, padding=r)

    @staticmethod
    def _image_relative(raw: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        parts = maps.TEXTURE.split(raw)
        albedo = image.to(raw.dtype) * torch.exp(parts.pop("albedo").clamp(-GAIN_LOG_LIMIT, GAIN_LOG_LIMIT))
        parts = {name: torch.sigmoid(t) for name, t in parts.items()}
        parts["albedo"] = albedo + (albedo.clamp(0.0, 1.0) - albedo).detach()  # clipped value, identity gradient
        return maps.TEXTURE.cat(parts)

    @torch.no_grad()
    def start_from(self, texture_mean: torch.Tensor, image_mean: torch.Tensor) -> None:
        """Set the head's bias so that an untrained network outputs the training faces' mean texture (per channel,
        maps.TEXTURE order); with `albedo_from_image`, the mean image times the gain mean albedo / mean image."""
        bias = torch.logit(texture_mean.clamp(0.02, 0.98))
        if self.albedo_from_image:
            ratio = texture_mean[maps.TEXTURE.slice("albedo")].clamp_min(1e-3) / image_mean.clamp_min(1e-3)
            bias[maps.TEXTURE.slice("albedo")] = torch.log(ratio)
        self.head.bias.copy_(bias.to(self.head.bias))


def build_gde(widths: Sequence[int] = (32, 64, 128), hash_channels: int = 8, enc_blocks: int = 2, dec_blocks: int = 3,
              act: str = "silu", mask_output: bool = False,
              albedo_from_image: bool = False) -> GDENet:
    """Paper: 12 hidden layers (3 levels, 2 enc + 3 dec). `hash_channels` = L·F of the encoder, 0 without one.
    Not in the paper: `mask_output`, the guide is 0 off the (predicted) face mask; `albedo_from_image`, the albedo
    guide is the image times a learnt gain (see `GDENet`)."""
    return GDENet(gde_input_layout(hash_channels).channels, maps.TEXTURE.channels, widths, enc_blocks, dec_blocks,
                  act, out_activation="identity" if albedo_from_image else "sigmoid", mask_output=mask_output,
                  albedo_from_image=albedo_from_image)


def build_hfdr(widths: Sequence[int] = (32, 64, 128, 256), enc_blocks: int = 2, dec_blocks: int = 3,
               act: str = "silu", guide_layer: int | None = None,
               guide_passthrough: bool = False, detail_skip: int = 0, detail_passthrough: bool = False,
               detail_branch: int = 0) -> UNet:
    """Paper: the guide joins after hidden layer 17 = the last one with the defaults (None means last). The defaults
    are the paper's; the switches below are uhrtex's departures (method=uhrtex sets them).

    `guide_passthrough` (needs the guide at the last layer): the 1×1 head starts as the identity on the guide
    channels and zero on the features, with a [0, 1] clamp instead of a sigmoid, so an untrained HFDR outputs
    the guide and learns the high-frequency residual (the paper's intent: the guide takes "the burden of
    predicting the overall texture distribution"). Through a sigmoid, relearning the guide's values would
    take thousands of Adam steps at lr 1e-3.

    `detail_skip` (f > 0): the head also takes the image's detail band above the guide's 1/f resolution (see
    `UNet`), a parameter-free path from the full-resolution pixels to the output. `detail_passthrough` (with
    `guide_passthrough`): the head also starts by adding the image's detail band to the albedo, the physical
    prior that skin detail finer than the guide is mostly albedo (shading is smooth at that scale); training
    scales or removes it. From zero, Adam at lr 1e-3 moves that weight too slowly for CPU-length trainings.
    `detail_branch` (width, with `detail_skip`): a shallow conv stack on the band alone, added to the output (see
    `UNet`).
    """
    if detail_passthrough and not (detail_skip and guide_passthrough):
        raise ValueError("detail_passthrough needs detail_skip > 0 and guide_passthrough=true")
    net = UNet(GEOMETRY_INPUT.channels, maps.TEXTURE.channels, widths, enc_blocks, dec_blocks, act,
               guide_channels=maps.TEXTURE.channels, guide_layer=guide_layer,
               out_activation="clamp" if guide_passthrough else "sigmoid", detail_skip=detail_skip,
               detail_branch=detail_branch)
    if guide_passthrough:
        if net.guide_layer != net.n_hidden:
            raise ValueError(f"guide_passthrough needs the guide at the last hidden layer ({net.n_hidden}), got "
                             f"guide_layer={guide_layer}; set guide_passthrough=false")
        with torch.no_grad():
            w = net.head.weight  # out × (features ⊕ guide) × 1 × 1: the guide is concatenated last
            w.zero_()
            w[:, -maps.TEXTURE.channels:, 0, 0] = torch.eye(maps.TEXTURE.channels)
            if detail_passthrough:  # the band's 3 channels sit just before the guide's
                band = w.shape[1] - maps.TEXTURE.channels - DETAIL_CHANNELS
                albedo = maps.TEXTURE.slice("albedo")
                w[albedo, band:band + DETAIL_CHANNELS, 0, 0] = torch.eye(DETAIL_CHANNELS)
            net.head.bias.zero_()
    return net
