"""A UNet built from small explicit blocks, with guidance injection at hidden layer k.

How hidden layers are counted
-----------------------------
A *hidden layer* is one `ConvBlock` (3x3 conv -> norm -> activation). They are numbered 1..N in
forward order: the encoder's blocks level by level (downsampling is a parameter-free average pool
and is not counted), then the decoder's blocks level by level (the upsample+skip-concat is not
counted). The 1x1 output head is not a hidden layer. So

    N = len(widths) * enc_blocks + (len(widths) - 1) * dec_blocks

GDE (paper: "12-layer UNet-like backbone"):   3 levels, 2 enc + 3 dec blocks -> 3*2 + 2*3 = 12.
HFDR (guide concatenated after layer 17, "just before the output head"):
                                              4 levels, 2 enc + 3 dec blocks -> 4*2 + 3*3 = 17.

Guidance injection: if `guide_channels > 0`, the guide tensor is resized (bilinear) to the
resolution of hidden layer `guide_layer`'s output and concatenated to it; the next layer (or the
head, when k = N) takes the extra channels.

Detail skip (`detail_skip = f > 0`): the head also sees the detail band of the first 3 input channels (the
image), x - up(avgpool_f(x)): what a 1/f-resolution view cannot carry. Parameter-free; the head's input is
features ⊕ band ⊕ guide. Without it the only path from the full-resolution pixels to the output runs through
every hidden layer, and short trainings never find it (docs/results.md, detail preset).

Detail branch (`detail_branch = w > 0`, needs the detail skip): a shallow full-resolution conv stack on that band
alone (3 layers, 5×5, width w; its last layer starts at zero) whose output is added to the head's. It sees no
uv, normal or guide, so it cannot memorise where the training subjects' pores lie in the UV layout; it learns
what a pore, a furrow or a mole looks like in the image and what it means for each map.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

_ACTIVATIONS = {"silu": nn.SiLU, "relu": nn.ReLU, "gelu": nn.GELU, "leaky_relu": lambda: nn.LeakyReLU(0.2)}
DETAIL_CHANNELS = 3  # detail_skip: the image, the first channels of every input layout
_OUTPUTS = {"sigmoid": torch.sigmoid, "identity": lambda x: x, "clamp": lambda x: x.clamp(0.0, 1.0)}


def detail_band(x: torch.Tensor, factor: int) -> torch.Tensor:
    """x − bilinear_up(avgpool_factor(x)): what a 1/factor-resolution view cannot carry (B×C×H×W, H and W divisible
    by factor; factor ≤ 1 returns x). The HFDR's detail skip and the band loss (`uhrtex.losses.band_loss`)."""
    if factor <= 1:
        return x
    low = F.interpolate(F.avg_pool2d(x, factor), scale_factor=float(factor), mode="bilinear", align_corners=False)
    return x - low


def _detail_branch(cin: int, width: int, cout: int, layers: int = 3, kernel: int = 5) -> nn.Sequential:
    mods: list[nn.Module] = []
    for i in range(layers):
        last = i == layers - 1
        mods.append(nn.Conv2d(cin if i == 0 else width, cout if last else width, kernel, padding=kernel // 2))
        if not last:
            mods.append(nn.SiLU())
    nn.init.zeros_(mods[-1].weight)  # an untrained branch adds nothing
    nn.init.zeros_(mods[-1].bias)
    return nn.Sequential(*mods)


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm keeps DDP results independent of the per-process batch size (BatchNorm would not). As many groups
    as possible (up to 32) while keeping >= 4 channels per group."""
    groups = next((g for g in (32, 16, 8, 4, 2) if channels % g == 0 and channels // g >= 4), 1)
    return nn.GroupNorm(groups, channels)


def make_act(kind: str) -> nn.Module:
    if kind not in _ACTIVATIONS:
        raise ValueError(f"unknown activation '{kind}'; valid: {', '.join(_ACTIVATIONS)}")
    return _ACTIVATIONS[kind]()


class ConvBlock(nn.Module):
    """One hidden layer: 3x3 conv -> GroupNorm -> activation."""

    def __init__(self, cin: int, cout: int, act: str):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.norm = group_norm(cout)
        self.act = make_act(act)
        nn.init.kaiming_normal_(self.conv.weight, nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class UNet(nn.Module):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        widths: Sequence[int] = (32, 64, 128),
        enc_blocks: int = 2,
        dec_blocks: int = 3,
        act: str = "silu",
        guide_channels: int = 0,
        guide_layer: int | None = None,
        out_activation: str = "sigmoid",
        detail_skip: int = 0,
        detail_branch: int = 0,
    ):
        super().__init__()
        widths = list(widths)
        if not widths or enc_blocks < 1 or dec_blocks < 1:
            raise ValueError("UNet needs at least one level and one block per level")
        if out_activation not in _OUTPUTS:
            raise ValueError(f"unknown out_activation '{out_activation}'; valid: {', '.join(_OUTPUTS)}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.levels = len(widths)
        self.n_hidden = self.levels * enc_blocks + (self.levels - 1) * dec_blocks
        self.guide_channels = guide_channels
        self.guide_layer = (guide_layer or self.n_hidden) if guide_channels else None
        if self.guide_layer is not None and not 1 <= self.guide_layer <= self.n_hidden:
            raise ValueError(f"guide_layer must be in 1..{self.n_hidden} (this UNet's hidden layers), got {guide_layer}")
        self._out_act = out_activation
        if detail_skip < 0 or (detail_skip and in_channels < DETAIL_CHANNELS):
            raise ValueError(f"detail_skip must be 0 (off) or a downsampling factor ≥ 1 of a ≥3-channel input, got {detail_skip}")
        self.detail_skip = int(detail_skip)
        if detail_branch and not self.detail_skip:
            raise ValueError("detail_branch needs detail_skip > 0 (it runs on the detail band)")
        self.detail_branch = _detail_branch(DETAIL_CHANNELS, int(detail_branch), out_channels) if detail_branch else None

        layers: list[nn.Module] = []
        # (kind, level, first, last) per hidden layer: forward() pools before the first encoder block
        # of a level, stores the skip after its last, and upsamples + concatenates before the first
        # decoder block of a level.
        self._plan: list[tuple[str, int, bool, bool]] = []
        cin = in_channels
        for level, w in enumerate(widths):
            for b in range(enc_blocks):
                cin = self._add(layers, cin, w, act)
                self._plan.append(("enc", level, b == 0, b == enc_blocks - 1))
        for level in range(self.levels - 2, -1, -1):
            w = widths[level]
            for b in range(dec_blocks):
                if b == 0:
                    cin = cin + widths[level]  # skip concat
                cin = self._add(layers, cin, w, act)
                self._plan.append(("dec", level, b == 0, b == dec_blocks - 1))
        self.layers = nn.ModuleList(layers)
        band = DETAIL_CHANNELS if self.detail_skip else 0
        self.head = nn.Conv2d(cin + band + (guide_channels if self.guide_layer == self.n_hidden else 0), out_channels, 1)
        nn.init.zeros_(self.head.bias)

    def _add(self, layers: list[nn.Module], cin: int, cout: int, act: str) -> int:
        # The layer after the guide injection point takes the guide's extra channels.
        extra = self.guide_channels if self.guide_layer is not None and len(layers) == self.guide_layer else 0
        layers.append(ConvBlock(cin + extra, cout, act))
        return cout

    @property
    def multiple(self) -> int:
        """Input H and W must be divisible by this."""
        return math.lcm(2 ** (self.levels - 1), max(self.detail_skip, 1))

    def detail_band(self, x: torch.Tensor) -> torch.Tensor:
        """The image channels' detail above the 1/detail_skip resolution (`detail_band`)."""
        return detail_band(x[:, :DETAIL_CHANNELS], self.detail_skip)

    def forward(self, x: torch.Tensor, guide: torch.Tensor | None = None) -> torch.Tensor:
        if x.shape[1] != self.in_channels:
            raise ValueError(f"UNet expects {self.in_channels} input channels, got {x.shape[1]}")
        if x.shape[-1] % self.multiple or x.shape[-2] % self.multiple:
            raise ValueError(f"UNet input size {tuple(x.shape[-2:])} must be divisible by {self.multiple}")
        if (guide is None) != (self.guide_layer is None):
            raise ValueError("pass a guide exactly when the UNet was built with guide_channels > 0")
        skips: list[torch.Tensor] = []
        band = self.detail_band(x) if self.detail_skip else None
        h = x
        for i, (layer, (kind, level, first, last)) in enumerate(zip(self.layers, self._plan), start=1):
            if kind == "enc" and first and level > 0:
                h = F.avg_pool2d(h, 2)
            if kind == "dec" and first:
                h = torch.cat([F.interpolate(h, scale_factor=2.0, mode="nearest"), skips[level]], dim=1)
                skips[level] = None  # type: ignore[call-overload]  # its memory can go once it is copied
            h = layer(h)
            if kind == "enc" and last:
                skips.append(h)
            if i == self.guide_layer:
                g = guide if guide.shape[-2:] == h.shape[-2:] else F.interpolate(
                    guide, size=h.shape[-2:], mode="bilinear", align_corners=False)
                if i == self.n_hidden:
                    return self._output(self._head(h, band, g), band)
                h = torch.cat([h, g.to(h.dtype)], dim=1)
        return self._output(self._head(h, band), band)

    def _output(self, y: torch.Tensor, band: torch.Tensor | None) -> torch.Tensor:
        if self.detail_branch is not None:
            y = y + self.detail_branch(band.to(self.detail_branch[0].weight.dtype))
        return _OUTPUTS[self._out_act](y)

    def _head(self, h: torch.Tensor, band: torch.Tensor | None = None, g: torch.Tensor | None = None) -> torch.Tensor:
        """The 1×1 output head on h ⊕ band ⊕ guide, as W_h·h + W_b·band + W_g·g + b: the same sum without the
        concatenated copy. The band and the guide are exact inputs (a pass-through HFDR head passes the guide
        exactly): they go through in the weights' dtype even under autocast, as batched matrix products on
        channels-first planes (a float32 1×1 conv with this few channels is 3–5× slower, channels-last or on 2
        threads). The features term runs in h's dtype: under bf16 autocast its products are exact and the sum is
        rounded once, as the detail branch's output already is, instead of a float32 copy of every feature (the
        old head was ~6 % of the 4096² HFDR; docs/reconstruction.md)."""
        w, b = self.head.weight, self.head.bias
        c = h.shape[1]
        amp = h.device.type in ("cpu", "cuda") and torch.is_autocast_enabled(h.device.type)
        with torch.autocast(h.device.type, enabled=False) if amp else contextlib.nullcontext():
            if h.dtype == w.dtype:  # float32 throughout: the concatenated head's own arithmetic, bit for bit
                x = h if band is None else torch.cat([h, band.to(h.dtype)], dim=1)
                y = F.conv2d(x, w[:, :x.shape[1]].contiguous(), b)
                return y if g is None else y.add_(F.conv2d(g.to(w.dtype), w[:, x.shape[1]:].contiguous()))
            y = F.conv2d(h, w[:, :c].to(h.dtype))
            exact = [t for t in (band, g) if t is not None]
            if not exact:
                return y.to(w.dtype).add_(b[:, None, None])
            n, _, height, width = h.shape
            acc = b.view(1, -1, 1).expand(n, -1, height * width)
            for t in exact:
                wt = w[:, c:c + t.shape[1], 0, 0]
                acc = torch.baddbmm(acc, wt.expand(n, -1, -1), t.to(w.dtype).reshape(n, t.shape[1], -1))
                c += t.shape[1]
            return acc.view(n, -1, height, width).add_(y)
