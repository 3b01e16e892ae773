"""Folders of rendered files -> CaptureStore.  `python -m uhrtex.captures.ingest SRC_DIR STORE`

One folder per capture (any name; the key comes from meta.json), as the Blender path writes it:

    meta.json                 subject, lighting, camera {id fx fy cx cy width height world_to_camera}, mesh,
                              renderer, resolution (see uhrtex/captures/format.py)
    image.png | image.exr     PNG: sRGB (8/16-bit RGB).  EXR: linear radiance -> sRGB, clipped to [0, 1]
    albedo.png | albedo.exr   as image
    micronormal.png | .exr    PNG: encoded (n+1)/2.  EXR: raw unit vectors in [-1, 1] (encoded on ingest)
    specular.png | .exr       1 channel (grayscale PNG; EXR channel Y or R)
    uv.exr | uv.png           (u, v) in [0, 1]; extra channels are ignored (Blender's UV pass has 3)
    normal.exr | normal.png   as micronormal (view axes, see format.py)
    mask.png | mask.exr       1 channel, or the alpha channel of an RGBA/LA PNG

Pixels where mask == 0 are set to 0 in every map but `image` (the capture format's rule). Re-running
skips captures already in the store; an interrupted run leaves no half capture visible (store writes
are atomic) and the next run redoes that capture.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Sequence

import torch

from uhrtex.common import imaging
from uhrtex.common import io as uio
from uhrtex.captures.format import Capture, CaptureError, split_key
from uhrtex.captures.store import CaptureStore
from uhrtex.maps import CAPTURE, NORMAL_MAPS, SRGB_MAPS, encode_normal

META_FILE = "meta.json"
SUFFIXES = {"uv": (".exr", ".png"), "normal": (".exr", ".png")}  # others: (".png", ".exr")
# Half-float EXR and renderer noise put encoded values a hair outside [0, 1]; beyond this it is an error.
RANGE_TOLERANCE = 1e-2


class IngestError(ValueError):
    """A bad capture folder or file; one line naming the file, the problem and the fix."""


def capture_folders(src: str | Path) -> list[Path]:
    src = Path(src)
    if not src.is_dir():
        raise IngestError(f"{src}: source folder does not exist; pass the folder holding one sub-folder per capture")
    folders = sorted(p for p in src.iterdir() if p.is_dir() and (p / META_FILE).is_file())
    if not folders:
        raise IngestError(f"{src}: no capture folders (sub-folders with {META_FILE}); see `python -m uhrtex.captures.ingest -h`")
    return folders


def read_meta(folder: Path) -> dict:
    path = folder / META_FILE
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise IngestError(f"{path}: file does not exist; every capture folder needs {META_FILE}") from None
    except json.JSONDecodeError as e:
        raise IngestError(f"{path}: invalid JSON ({e.msg} at line {e.lineno}); fix or re-export it") from e
    if not isinstance(meta, dict):
        raise IngestError(f"{path}: must hold a JSON object; see uhrtex/captures/format.py for the keys")
    try:
        Capture({}, meta).validate_meta(str(path))
    except CaptureError as e:
        raise IngestError(str(e)) from e
    return meta


def map_file(folder: Path, name: str) -> Path:
    suffixes = SUFFIXES.get(name, (".png", ".exr"))
    found = [folder / f"{name}{s}" for s in suffixes if (folder / f"{name}{s}").exists()]
    if not found:
        raise IngestError(f"{folder / (name + suffixes[0])}: file does not exist; a capture folder needs "
                          f"{name}{' or '.join(suffixes)}")
    if len(found) > 1:
        raise IngestError(f"{folder}: both {found[0].name} and {found[1].name} exist; keep one of them")
    return found[0]


def _in_range(path: Path, x: torch.Tensor, lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
    if float(x.min()) < lo - RANGE_TOLERANCE or float(x.max()) > hi + RANGE_TOLERANCE:
        raise IngestError(f"{path}: values in [{float(x.min()):.4g}, {float(x.max()):.4g}] are outside [{lo:g}, {hi:g}]; "
                          "check the pass/encoding this file was exported with")
    return x.clamp(lo, hi)


def read_map(path: Path, name: str, size: tuple[int, int] | None) -> torch.Tensor:
    """One map file -> C x H x W float32 in [0, 1] with the capture format's encoding."""
    exr = path.suffix.lower() == ".exr"
    width = CAPTURE.width(name)
    try:
        if name == "mask":
            x = uio.read_image(path, size=size, alpha="keep")
            if x.shape[0] in (2, 4):  # LA / RGBA: the alpha channel is the mask
                x = x[-1:]
            elif x.shape[0] != 1:
                raise IngestError(f"{path}: has {x.shape[0]} channels, expected 1 (or an alpha channel); save it as grayscale")
        elif name == "uv":
            x = uio.read_image(path, size=size, alpha="keep", channels=(2, 3, 4))[:2]
        else:
            x = uio.read_image(path, size=size, channels=width, alpha="drop" if width == 3 else "error")
    except uio.ImageError as e:
        raise IngestError(str(e)) from e
    if exr and name in SRGB_MAPS:
        return imaging.linear_to_srgb(x).clamp(0, 1)  # display-referred like a photo: highlights clip
    if exr and name in NORMAL_MAPS:
        return encode_normal(_in_range(path, x, -1.0, 1.0))
    return _in_range(path, x)


def read_capture_folder(folder: str | Path) -> Capture:
    """Read and validate one capture folder (see the module doc)."""
    folder = Path(folder)
    meta = read_meta(folder)
    image_path = map_file(folder, "image")
    image = read_map(image_path, "image", None)
    size = tuple(image.shape[1:])
    maps = {"image": image}
    for name in CAPTURE.names:
        if name != "image":
            maps[name] = read_map(map_file(folder, name), name, size)
    covered = (maps["mask"] > 0).float()
    for name in CAPTURE.names:
        if name not in ("image", "mask"):
            maps[name] = maps[name] * covered
    capture = Capture(maps, meta)
    try:
        capture.validate(str(folder))
    except CaptureError as e:
        raise IngestError(str(e)) from e
    return capture


def write_capture_folder(folder: str | Path, capture: Capture, bits: int = 16) -> None:
    """Export a capture in the ingest layout: PNG (8/16-bit) colour, normals, specular, mask; EXR (float) uv."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name in CAPTURE.names:
        if name == "uv":
            uio.write_exr(folder / "uv.exr", capture.maps[name], half=False)
        else:
            uio.write_png(folder / f"{name}.png", capture.maps[name], bits=bits)
    uio.write_bytes_atomic(folder / META_FILE, json.dumps(capture.meta, indent=1).encode())


@dataclass
class IngestReport:
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # one-line errors (with on_error="skip")

    def __str__(self) -> str:
        return f"ingest: {len(self.written)} written, {len(self.skipped)} already in the store, {len(self.failed)} failed"


def ingest(src: str | Path, store: CaptureStore | str, global_sizes: Sequence[int] = (), on_error: str = "raise",
           progress: bool = True) -> IngestReport:
    """Convert every capture folder under `src` into `store`; finished captures are skipped."""
    store = store if isinstance(store, CaptureStore) else CaptureStore(store, mode="a")
    folders = capture_folders(src)
    store.cleanup()  # stale unfinished writes of earlier runs (older than an hour)
    done = set(store.keys(refresh=True))
    report = IngestReport()
    from tqdm.auto import tqdm

    for folder in tqdm(folders, desc="ingest", unit="capture", disable=not progress):
        try:
            meta = read_meta(folder)
            key = Capture({}, meta).key
            split_key(key)
            if key in done:
                report.skipped.append(key)
                continue
            capture = read_capture_folder(folder)
            store.write(key, capture, global_sizes=global_sizes)
            done.add(key)
            report.written.append(key)
        except (IngestError, CaptureError) as e:
            if on_error != "skip":
                raise
            report.failed.append(str(e))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m uhrtex.captures.ingest", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", help="folder with one sub-folder per capture")
    parser.add_argument("store", help="capture store: a local folder or an fsspec URL (created if missing)")
    parser.add_argument("--global-size", type=int, action="append", default=[],
                        help="also store this downsampled level (repeatable; e.g. 1024 for the paper's global view)")
    parser.add_argument("--skip-bad", action="store_true", help="report bad captures and go on instead of stopping")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        report = ingest(args.src, CaptureStore(args.store, mode="a"), args.global_size,
                        on_error="skip" if args.skip_bad else "raise", progress=not args.no_progress)
    except ValueError as e:  # IngestError, CaptureError, StoreError, ImageError: all one line
        print(f"error: {e}", file=sys.stderr)
        return 2
    for line in report.failed:
        print(f"skipped bad capture: {line}", file=sys.stderr)
    print(report)
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
