"""Validated image read/write: PNG (8/16-bit), JPEG, TIFF, EXR (half/float).

Reads return float32 C x H x W. LDR files are normalised to [0, 1] (8-bit / 255, 16-bit / 65535);
EXR (and float TIFF) values are returned raw (linear radiance, raw vectors), checked finite.
Every failure is an `ImageError` whose message is one line: the file, the problem, the fix.
Writes are atomic: a temporary file in the target's folder is renamed over the target, so a reader
never sees half a file and an interrupted write leaves the old file (or none).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import tempfile
import warnings
from pathlib import Path
from collections.abc import Iterator, Sequence

import numpy as np
import torch

LDR_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
SUFFIXES = LDR_SUFFIXES + (".exr",)
# EXR channel order: the last dot-separated part of a name ranks by this string (Blender layers: "View.UV.U"),
_EXR_ORDER = "RGBXYZUVWA"  # alpha last
_UMASK = os.umask(0)
os.umask(_UMASK)


class ImageError(ValueError):
    """A bad image file or array; the message is one line naming the file, the problem and the fix."""


def _fail(path, problem: str, fix: str) -> ImageError:
    return ImageError(f"{path}: {problem}; {fix}".replace("\n", " "))


# ------------------------------------------------------------------------------------------ colour


# ------------------------------------------------------------------------------------------ reading


def _check_file(path: Path) -> None:
    if not path.exists():
        raise _fail(path, "file does not exist", "check the path (and that rendering/export finished)")
    if path.is_dir():
        raise _fail(path, "is a directory, not an image file", "pass the image file inside it")
    if path.stat().st_size == 0:
        raise _fail(path, "file is empty (0 bytes)", "re-write or re-render it")
    if path.suffix.lower() not in SUFFIXES:
        raise _fail(path, f"unsupported image format '{path.suffix}'", f"use one of {', '.join(SUFFIXES)}")


def _decode_ldr(path: Path) -> np.ndarray:
    """-> H x W x C array (uint8/uint16/float32), channels in RGB(A) order."""
    data = np.fromfile(path, dtype=np.uint8)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        # PIL raises on truncated JPEGs (OpenCV silently returns a partly grey image).
        from PIL import Image

        try:
            with Image.open(io.BytesIO(data.tobytes())) as im:
                im.load()
                arr = np.asarray(im.convert("RGB") if im.mode not in ("L", "RGB") else im)
        except OSError as e:
            raise _fail(path, f"corrupt or truncated JPEG ({e})", "re-write the file") from e
        return arr[..., None] if arr.ndim == 2 else arr
    import cv2

    arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise _fail(path, "corrupt or truncated image (decoder failed)", "re-write or re-render the file")
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.shape[2] >= 3:  # OpenCV decodes BGR(A)
        arr = arr[..., [2, 1, 0, *range(3, arr.shape[2])]]
    return arr


def read_exr_channels(path: str | os.PathLike, all_parts: bool = False, check_finite: bool = True
                      ) -> dict[str, np.ndarray]:
    """The channels of an EXR as float32 H x W arrays, keyed by channel name: the first part's, or with `all_parts`
    every part's (Blender's multilayer files: one part per pass). The one EXR reader of uhrtex."""
    path = Path(path)
    _check_file(path)
    import OpenEXR

    try:
        f = OpenEXR.File(str(path), separate_channels=True)
        parts = f.parts if all_parts else f.parts[:1]
        channels = {name: np.asarray(ch.pixels, dtype=np.float32) for part in parts for name, ch in part.channels.items()}
    except Exception as e:  # noqa: BLE001 - OpenEXR raises bare RuntimeErrors with multi-line text
        msg = " ".join(str(e).split())[:200]
        raise _fail(path, f"corrupt or truncated EXR ({msg})", "re-write or re-render the file") from e
    if not channels:
        raise _fail(path, "corrupt or truncated EXR (no readable part)", "re-write or re-render the file")
    for name, px in channels.items() if check_finite else ():
        bad = int((~np.isfinite(px)).sum())
        if bad:
            raise _fail(path, f"channel '{name}' has {bad} NaN/Inf values",
                        "fix the render (e.g. clamp, check normalisation of zero-length vectors) and re-export")
    return channels


def _exr_rank(name: str) -> tuple[int, str]:
    leaf = name.rsplit(".", 1)[-1].upper()
    return (_EXR_ORDER.index(leaf) if len(leaf) == 1 and leaf in _EXR_ORDER else len(_EXR_ORDER), name)


def _decode_exr(path: Path, exr_channels: Sequence[str] | None) -> tuple[np.ndarray, bool]:
    """-> (H x W x C float32, has_alpha)."""
    channels = read_exr_channels(path)
    names = list(exr_channels) if exr_channels else sorted(channels, key=_exr_rank)
    missing = [n for n in names if n not in channels]
    if missing:
        raise _fail(path, f"EXR lacks channels {missing} (has {sorted(channels)})", "re-export with those channels")
    has_alpha = len(names) in (2, 4) and names[-1].rsplit(".", 1)[-1].upper() == "A"
    return np.stack([channels[n] for n in names], axis=-1), has_alpha


def _check_samples(path: Path, arr: np.ndarray) -> np.ndarray:
    """8/16-bit integers as they are; floats as float32, finite."""
    if arr.dtype in (np.uint8, np.uint16):
        return arr
    if arr.dtype.kind == "f":
        arr = arr.astype(np.float32)
        if not np.isfinite(arr).all():
            raise _fail(path, "contains NaN/Inf values", "fix the values and re-write the file")
        return arr
    raise _fail(path, f"unsupported sample type {arr.dtype}", "write 8/16-bit integers or float")


def _chw_float32(arr: np.ndarray) -> torch.Tensor:
    """H×W×C samples (`_check_samples`) -> float32 C×H×W, 8-bit / 255 and 16-bit / 65535.

    Integers are converted by torch in one pass into one new tensor, the same float32 quotients as numpy's
    `astype(float32) / 255`, which made two full-size float copies (a cold 4096² portrait: ~1 s against 0.3 s)."""
    if arr.dtype.kind == "f":
        return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
    with warnings.catch_warnings():  # a decoder's read-only array (PIL's JPEGs) is only read here
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        src = torch.from_numpy(arr).permute(2, 0, 1)
    return torch.empty(src.shape, dtype=torch.float32).copy_(src).div_(255 if arr.dtype == np.uint8 else 65535)


def read_image(path: str | os.PathLike, *, channels: int | Sequence[int] | None = None,
               size: int | tuple[int, int] | None = None, gray: str = "error", alpha: str = "drop",
               exr_channels: Sequence[str] | None = None) -> torch.Tensor:
    """Read and validate one image -> float32 C x H x W.

    channels: allowed channel count(s) of the result (after `gray`/`alpha`); None accepts any.
    size: expected (H, W) (or one int for square); a mismatch is an error.
    gray: "error" | "expand" | "keep" - what a 1-channel file becomes when 3 channels are wanted.
    alpha: "drop" (warn) | "keep" | "error" - what to do with an alpha channel (RGBA, LA, EXR 'A').
    exr_channels: EXR channel names in the order wanted (default R G B A / X Y Z / U V ... order).
    """
    path = Path(path)
    _check_file(path)
    if path.suffix.lower() == ".exr":
        arr, has_alpha = _decode_exr(path, exr_channels)
    else:
        arr = _decode_ldr(path)
        has_alpha = arr.shape[2] in (2, 4)
    arr = _check_samples(path, arr)
    if has_alpha:
        if alpha == "error":
            raise _fail(path, "has an alpha channel", "save it without alpha")
        if alpha == "drop":
            warnings.warn(f"{path}: dropping its alpha channel", stacklevel=2)
            arr = arr[..., :-1]
    allowed = (channels,) if isinstance(channels, int) else tuple(channels or ())
    if arr.shape[2] == 1 and allowed and 1 not in allowed:
        if gray != "expand":
            raise _fail(path, f"is grayscale (1 channel), expected {' or '.join(map(str, allowed))}",
                        "save it as RGB (or let the caller expand grayscale)")
        arr = np.repeat(arr, max(allowed), axis=2)
    if allowed and arr.shape[2] not in allowed:
        raise _fail(path, f"has {arr.shape[2]} channels, expected {' or '.join(map(str, allowed))}",
                    "re-export it with the right channels")
    if size is not None:
        want = (size, size) if isinstance(size, int) else tuple(size)
        if tuple(arr.shape[:2]) != want:
            raise _fail(path, f"is {arr.shape[0]}x{arr.shape[1]} (HxW), expected {want[0]}x{want[1]}",
                        "render/resize every map of a capture to the same size")
    return _chw_float32(arr)


# ------------------------------------------------------------------------------------------ writing


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` atomically, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the result the usual permissions
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode())


def _checked_chw(path, x: torch.Tensor | np.ndarray, check_range: bool, clamp: bool = False) -> torch.Tensor:
    """C×H×W (or H×W) as a float32 tensor (no copy when it is one already), validated: C in 1..4, finite values and,
    with `check_range` and not `clamp`, values in [0, 1]. Other dtypes are converted to float32 first."""
    t = (x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))).detach().cpu()
    if t.dim() == 2:
        t = t[None]
    if t.dim() != 3 or t.shape[0] not in (1, 2, 3, 4):
        raise _fail(path, f"cannot write an array of shape {list(t.shape)}", "pass C x H x W with C in 1..4")
    if t.dtype != torch.float32:
        t = t.float()
    lo, hi = (float(v) for v in torch.aminmax(t))  # one pass, no temporaries; NaN propagates, ±Inf shows
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise _fail(path, "refusing to write NaN/Inf values", "fix the values first")
    if check_range and not clamp:
        if lo < 0 or hi > 1:
            raise _fail(path, f"values in [{lo:.4g}, {hi:.4g}] are outside [0, 1]",
                        "encode (sRGB, (n+1)/2) and clamp before writing an LDR file, or write EXR")
    return t


def _to_hwc(path, x: torch.Tensor | np.ndarray, check_range: bool) -> np.ndarray:
    t = _checked_chw(path, x, check_range)
    return np.ascontiguousarray(t.numpy().transpose(1, 2, 0))


def _encode_cv2(path: Path, hwc: np.ndarray, suffix: str, params: list[int], to_bgr: bool = True) -> bytes:
    """`to_bgr=False`: the channels are in OpenCV's BGR(A) order already."""
    import cv2

    if to_bgr and hwc.shape[2] >= 3:
        hwc = hwc[..., [2, 1, 0, *range(3, hwc.shape[2])]]
    ok, buf = cv2.imencode(suffix, np.ascontiguousarray(hwc), params)
    if not ok:
        raise _fail(path, f"encoder failed for {hwc.dtype} x{hwc.shape[2]}", "check channels and bit depth")
    return buf.tobytes()


QUANTIZE_ROWS = 64  # rows per block: the float temporaries stay in cache (a few MB even for 8K maps)


def quantized_blocks(channels: torch.Tensor | list, bits: int = 8, half_up: bool = False, clamp: bool = False,
                     ) -> Iterator[torch.Tensor]:
    """C×H×W in [0, 1] (or a list of 1×H×W / c×H×W tensors and constants, stacked) -> row blocks (r×W×C
    uint8/uint16), so no full-size float copy is ever made. Rounding: float64 to nearest even (the store's codes,
    `uhrtex.captures.format.to_uint16`), or `half_up` (float32 x·top + 0.5, truncated); `clamp` clips to [0, 1]
    first."""
    parts = list(channels) if isinstance(channels, (list, tuple)) else [channels]
    tensors = [p for p in parts if isinstance(p, torch.Tensor)]
    h, w = tensors[0].shape[-2:]
    c = sum(p.shape[0] if isinstance(p, torch.Tensor) and p.dim() == 3 else 1 for p in parts)
    top = 255 if bits == 8 else 65535
    dtype = torch.float32 if half_up else torch.float64  # half_up: float32, as the .glb textures always were
    for r0 in range(0, h, QUANTIZE_ROWS):
        r1 = min(h, r0 + QUANTIZE_ROWS)
        blk = torch.cat([p[..., r0:r1, :].reshape(-1, r1 - r0, w).to(dtype) if isinstance(p, torch.Tensor)
                         else torch.full((1, r1 - r0, w), float(p), dtype=dtype) for p in parts]) if len(parts) > 1 \
            else parts[0][..., r0:r1, :].reshape(-1, r1 - r0, w).to(dtype, copy=True)  # the caller's tensor stays
        if clamp:
            blk.clamp_(0, 1)
        blk = blk.mul_(top).add_(0.5).trunc_() if half_up else blk.mul_(top).round_()
        out = torch.empty(r1 - r0, w, c, dtype=torch.uint8 if bits == 8 else torch.uint16)
        for k in range(c):  # one strided copy per channel: cheaper than a permuted copy of the block
            out[..., k] = blk[k]
        yield out


def quantize_hwc(channels: torch.Tensor | list, bits: int = 8, half_up: bool = False, clamp: bool = False,
                 order: list[int] | None = None) -> np.ndarray:
    """`quantized_blocks` as one H×W×C uint8/uint16 array; `order` permutes the channels (e.g. RGB -> BGR)."""
    out = torch.cat(list(quantized_blocks(channels, bits, half_up, clamp)))
    return (out if order is None else out[..., order]).numpy()


def png_level(compression: int) -> int:
    """zlib's 0-9 `compression` -> the deflate level used (ISA-L's 0-3 when `isal` is installed)."""
    try:
        import isal.isal_zlib  # noqa: F401
    except ImportError:
        return int(compression)
    return min(3, (int(compression) + 1) // 2) if compression > 1 else int(compression)


def encode_png(channels: torch.Tensor | list, bits: int = 8, compression: int = 3, half_up: bool = False,
               clamp: bool = False) -> bytes:
    """C×H×W in [0, 1] (`quantized_blocks`' input; 1, 2, 3 or 4 channels: grey, grey+alpha, RGB, RGBA) -> PNG bytes.

    Written here rather than by OpenCV: every row gets the "up" filter and the deflate stream is made block by block
    with ISA-L (`isal`), so a 4K map costs neither a full-size integer copy nor zlib's slower pass. The seven 4096²
    maps of benchmarks/reconstruct.py --end-to-end, one core: 5.71 s and 147 MB through OpenCV (level 1, "up"),
    1.48 s and 143 MB here. zlib when `isal` is missing (the same pixels, slower)."""
    import struct
    import zlib

    try:
        from isal import isal_zlib as deflate
    except ImportError:
        deflate = zlib
    parts = list(channels) if isinstance(channels, (list, tuple)) else [channels]
    h, w = next(p for p in parts if isinstance(p, torch.Tensor)).shape[-2:]
    comp, prev, idat = deflate.compressobj(png_level(compression)), None, []
    for blk in quantized_blocks(channels, bits, half_up, clamp):
        c = blk.shape[-1]
        a = blk.numpy()
        rows = (a.astype(">u2") if bits == 16 else a).reshape(a.shape[0], -1).view(np.uint8)  # PNG is big-endian
        f = np.empty((rows.shape[0], rows.shape[1] + 1), np.uint8)
        f[:, 0] = 2  # filter type 2 ("up"): each byte minus the byte above, modulo 256; above row 0 is zero
        f[0, 1:] = rows[0] if prev is None else rows[0] - prev
        np.subtract(rows[1:], rows[:-1], out=f[1:, 1:])
        prev = rows[-1].copy()
        idat.append(comp.compress(f))
    idat.append(comp.flush())

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(tag)))

    colour = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    header = struct.pack(">IIBBBBB", w, h, bits, colour, 0, 0, 0)
    return b"".join([b"\x89PNG\r\n\x1a\n", chunk(b"IHDR", header), chunk(b"IDAT", b"".join(idat)), chunk(b"IEND", b"")])


def write_png(path: str | os.PathLike, x: torch.Tensor | np.ndarray, bits: int = 8, compression: int = 3,
              clamp: bool = False) -> None:
    """C x H x W in [0, 1] -> 8- or 16-bit PNG (rounded to nearest; `clamp`: clip to [0, 1] instead of refusing)."""
    path = Path(path)
    if bits not in (8, 16):
        raise _fail(path, f"PNG bit depth {bits} is not supported", "use bits=8 or bits=16")
    t = _checked_chw(path, x, check_range=True, clamp=clamp)
    write_bytes_atomic(path, encode_png(t, bits, compression, clamp=clamp))


def write_jpeg(path: str | os.PathLike, x: torch.Tensor | np.ndarray, quality: int = 95) -> None:
    path = Path(path)
    hwc = _to_hwc(path, x, check_range=True)
    import cv2

    data = _encode_cv2(path, np.round(hwc * 255).astype(np.uint8), ".jpg", [cv2.IMWRITE_JPEG_QUALITY, quality])
    write_bytes_atomic(path, data)


def write_tiff(path: str | os.PathLike, x: torch.Tensor | np.ndarray, bits: int = 16) -> None:
    """bits 8 / 16 (in [0, 1], rounded) or 32 (float, raw)."""
    path = Path(path)
    hwc = _to_hwc(path, x, check_range=bits != 32)
    arr = {8: lambda a: np.round(a * 255).astype(np.uint8), 16: lambda a: np.round(a.astype(np.float64) * 65535).astype(np.uint16),
           32: lambda a: a}[bits](hwc)
    write_bytes_atomic(path, _encode_cv2(path, arr, ".tiff", []))


def write_exr(path: str | os.PathLike, x: torch.Tensor | np.ndarray, half: bool = True,
              channel_names: Sequence[str] | None = None, compression: str = "zip") -> None:
    """C x H x W raw float values -> EXR (half or float). Default names: Y / RG / RGB / RGBA."""
    import OpenEXR

    path = Path(path)
    hwc = _to_hwc(path, x, check_range=False)
    names = list(channel_names or {1: ["Y"], 2: ["R", "G"], 3: ["R", "G", "B"], 4: ["R", "G", "B", "A"]}[hwc.shape[2]])
    if len(names) != hwc.shape[2]:
        raise _fail(path, f"{len(names)} channel names for {hwc.shape[2]} channels", "pass one name per channel")
    if half and np.abs(hwc).max(initial=0) > 65504:
        raise _fail(path, "values exceed the half-float range (65504)", "write with half=False")
    dtype = np.float16 if half else np.float32
    modes = {"zip": OpenEXR.ZIP_COMPRESSION, "piz": OpenEXR.PIZ_COMPRESSION, "none": OpenEXR.NO_COMPRESSION}
    header = {"compression": modes[compression], "type": OpenEXR.scanlineimage}
    pixels = {n: np.ascontiguousarray(hwc[..., i].astype(dtype)) for i, n in enumerate(names)}
    with atomic_path(path) as tmp:
        OpenEXR.File(header, pixels).write(str(tmp))


def write_image(path: str | os.PathLike, x: torch.Tensor | np.ndarray, **kwargs) -> None:
    """Dispatch on the suffix: .png (bits=8|16), .jpg/.jpeg, .tif/.tiff (bits), .exr (half, channel_names)."""
    suffix = Path(path).suffix.lower()
    writer = {".png": write_png, ".jpg": write_jpeg, ".jpeg": write_jpeg, ".tif": write_tiff, ".tiff": write_tiff,
              ".exr": write_exr}.get(suffix)
    if writer is None:
        raise _fail(path, f"unsupported image format '{suffix}'", f"use one of {', '.join(SUFFIXES)}")
    writer(path, x, **kwargs)
