"""ST-LPIPS-alex (shift-tolerant LPIPS, Ghildyal & Liu, ECCV 2022) without importing its package.

The `stlpips-pytorch` wheel ships the trained weights (`stlpips_pytorch/weights/vST0.0/alex_shift_tolerant.pth`)
but its import pulls torchvision and IPython for nothing. We locate the weight file with
`importlib.util.find_spec` (which does not execute the package) and load it *strictly* into this module,
which reproduces the wheel's `invariant_networks.alexnet(variant="shift_tolerant")` + `LPIPS` head:

    conv11(s1,p2) -> blur-pool -> ReLU | maxpool3(s1) -> blur-pool -> conv5 -> ReLU |
    maxpool3(s1) -> blur-pool -> conv3 -> ReLU | conv3 -> ReLU | conv3 -> ReLU

Blur-pool = depthwise [1,2,1]x[1,2,1]/16 filter, stride 2, reflection padding 2 on every side ("pad_more").
The five ReLU outputs are unit-normalised over channels, squared differences weighted by the 1x1 linear
heads, spatially averaged and summed (LPIPS v0.1, inputs in [-1, 1] shifted/scaled by ScalingLayer).
Module names follow the checkpoint (net.slice<k>.<index in the wheel's Sequential>) so keys match 1:1.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

PACKAGE = "stlpips-pytorch==0.0.2"
WEIGHTS = "weights/vST0.0/alex_shift_tolerant.pth"
CHANNELS = (64, 192, 384, 256, 256)


def weights_path() -> Path:
    """The installed wheel's weight file; one-line error naming the fix when it is missing."""
    spec = importlib.util.find_spec("stlpips_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"ST-LPIPS weights not found: package stlpips_pytorch is not installed; run `pip install {PACKAGE}`")
    path = Path(next(iter(spec.submodule_search_locations))) / WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(f"ST-LPIPS weights missing at {path}; reinstall with `pip install --force-reinstall {PACKAGE}`")
    return path


class BlurPool(nn.Module):
    """Anti-aliased downsampling (Zhang 2019): reflect-pad 2, depthwise binomial 3x3, stride 2."""

    def __init__(self, channels: int):
        super().__init__()
        a = torch.tensor([1.0, 2.0, 1.0])
        filt = a[:, None] * a[None, :]
        self.register_buffer("filt", (filt / filt.sum())[None, None].repeat(channels, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), self.filt, stride=2, groups=x.shape[1])


class ScalingLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188])[None, :, None, None])
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450])[None, :, None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.shift) / self.scale


def _slice(**layers: nn.Module) -> nn.Sequential:
    seq = nn.Sequential()
    for name, layer in layers.items():
        seq.add_module(name.lstrip("_"), layer)
    return seq


class ShiftTolerantAlex(nn.Module):
    """Feature trunk; keys `slice<k>.<i>` with the wheel's Sequential indices."""

    def __init__(self):
        super().__init__()
        relu = lambda: nn.ReLU(inplace=False)
        self.slice1 = _slice(_0=nn.Conv2d(3, 64, 11, stride=1, padding=2), _1=BlurPool(64), _2=relu())
        self.slice2 = _slice(_3=nn.MaxPool2d(3, stride=1), _4=BlurPool(64), _5=nn.Conv2d(64, 192, 5, padding=2), _6=relu())
        self.slice3 = _slice(_7=nn.MaxPool2d(3, stride=1), _8=BlurPool(192), _9=nn.Conv2d(192, 384, 3, padding=1), _10=relu())
        self.slice4 = _slice(_11=nn.Conv2d(384, 256, 3, padding=1), _12=relu())
        self.slice5 = _slice(_13=nn.Conv2d(256, 256, 3, padding=1), _14=relu())

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for s in (self.slice1, self.slice2, self.slice3, self.slice4, self.slice5):
            x = s(x)
            feats.append(x)
        return feats


class LinearHead(nn.Module):
    """1x1 conv without bias; index 1 because the wheel puts a Dropout at index 0 (identity at eval)."""

    def __init__(self, channels: int):
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def _unit(x: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    return x / (x.pow(2).sum(1, keepdim=True).sqrt() + eps)


class STLPIPS(nn.Module):
    """ST-LPIPS-alex distance. `forward(a, b)` takes B x 3 x H x W in [0, 1] and returns (B,)."""

    name = "ST-LPIPS-alex"
    key = "stlpips"

    def __init__(self, pretrained: bool = True):
        super().__init__()
        self.scaling_layer = ScalingLayer()
        self.net = ShiftTolerantAlex()
        for i, c in enumerate(CHANNELS):
            self.add_module(f"lin{i}", LinearHead(c))
        if pretrained:
            state = torch.load(weights_path(), map_location="cpu", weights_only=True)
            self.load_state_dict(state, strict=True)
        self.eval().requires_grad_(False)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Unit-normalised trunk features of B x 3 x H x W in [0, 1] (compute a shared target's once)."""
        return [_unit(f) for f in self.net(self.scaling_layer(x * 2 - 1))]

    def distance(self, fa: list[torch.Tensor], fb: list[torch.Tensor]) -> torch.Tensor:
        """(B,) from two feature lists (fb may have batch 1 and is broadcast)."""
        return sum(getattr(self, f"lin{i}")((x - y).pow(2)).mean((1, 2, 3)) for i, (x, y) in enumerate(zip(fa, fb)))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.distance(self.features(a), self.features(b))
