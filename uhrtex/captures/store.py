"""CaptureStore: captures in a chunked zarr v3 store (local folder or any fsspec URL).

Layout (one group per capture, key `<subject>__<lighting>__<camera>`):

    <root>/zarr.json                       attrs {"uhrtex_captures": 1}
    <root>/<key>/zarr.json                 attrs {"meta": {...}, "size": [H, W], "complete": true, ...}
    <root>/<key>/<map>                     uint16 C x H x W, chunks C x 256² (default_chunk), blosc-lz4 + shuffle
    <root>/<key>/global_<g>/<map>          uint16 C x g x g: the area-downsampled level read by read_global
    <root>/_partial.<key>.<id>             a write in progress (never listed; removed when that key is written)

Every map is stored as 16-bit codes k / 65535 (see `format.quantize`): 8/16-bit PNG input is stored
exactly, float renderer output within half a step (7.6e-6), and whatever `read` returns, `write`
stores again bit for bit. A 512² patch at a random offset touches at most 3 x 3 chunks per map (2.25x read
amplification on average, no full-frame decode).

Atomic writes: a capture is written under a `_partial.` name and renamed to its key when complete
(local: one `os.rename`; object stores: copy, then the `complete` attribute is set last). `keys()`
lists only groups marked complete, so an interrupted write is invisible and is redone on the next run.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
import warnings
from pathlib import Path
from collections.abc import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from uhrtex.captures.format import Capture, CaptureError, dequantize, split_key, to_uint16
from uhrtex.maps import CAPTURE
from uhrtex.hfdr.patches import Box

FORMAT_VERSION = 1
PARTIAL = "_partial."
TRASH = "_trash."
GLOBAL = "global_"


class StoreError(ValueError):
    """A store problem; the message is one line naming the store (and capture/map) and the fix."""


def _compressor(name: str):
    from zarr.codecs import BloscCodec, ZstdCodec

    if name == "lz4":
        return BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")
    if name == "zstd":
        return ZstdCodec(level=3)
    if name == "none":
        return None
    raise StoreError(f"unknown compressor '{name}'; use lz4, zstd or none")


def default_chunk(size: int) -> int:
    """Chunk side for a size² frame: size/8 (the patch side) clamped to [64, 256]: 4096 -> 256, 512 -> 64.

    A random patch then touches at most 3 x 3 chunks (2.25x reads on average at 4096², 64²-patches at 512²
    likewise), and chunks stay big enough that per-chunk overhead does not dominate.
    """
    return int(min(256, max(64, size // 8)))


def area_downsample(codes: np.ndarray, size: int) -> np.ndarray:
    """uint16 C x H x W codes -> uint16 C x size x size (area average of the dequantised values).

    Both the eager (at write) and the lazy (from the store) path call this on the same codes, so a
    global level is the same whichever path built it.
    """
    c, h, w = codes.shape
    x = dequantize(codes)
    if h % size == 0 and w % size == 0:  # integer factor: a plain block mean (numpy, no thread pool)
        fy, fx = h // size, w // size
        return to_uint16(torch.from_numpy(x.numpy().reshape(c, size, fy, size, fx).mean(axis=(2, 4)))).numpy()
    return to_uint16(F.interpolate(x[None], size=(size, size), mode="area")[0]).numpy()


class CaptureStore:
    """See the module doc. `mode`: "r" (read only; the store must exist) or "a" (read/write; created if missing).

    Picklable (DataLoader workers): zarr handles are opened lazily in each process.
    """

    def __init__(self, url: str | os.PathLike, mode: str = "r", chunk: int | None = None, compressor: str = "lz4",
                 storage_options: dict | None = None):
        if mode not in ("r", "a"):
            raise StoreError(f"capture store mode '{mode}' is not 'r' or 'a'")
        self.url = str(url)
        self.mode, self.chunk, self.compressor = mode, chunk, compressor
        self.storage_options = dict(storage_options or {})
        self._root = None
        self._keys: list[str] | None = None
        self._handles: dict[str, dict] = {}
        self._warned_lazy = False

    # ------------------------------------------------------------------------------------- plumbing

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.update(_root=None, _handles={}, _keys=None)
        return state

    def __repr__(self) -> str:
        return f"CaptureStore({self.url!r}, mode={self.mode!r})"

    @property
    def is_local(self) -> bool:
        return "://" not in self.url or self.url.startswith("file://")

    @property
    def _local_root(self) -> Path:
        return Path(self.url[len("file://"):] if self.url.startswith("file://") else self.url)

    def _fail(self, problem: str, fix: str) -> StoreError:
        return StoreError(f"capture store {self.url}: {problem}; {fix}")

    def _open_store(self):
        import zarr.storage

        read_only = self.mode == "r"
        if self.is_local:
            path = self._local_root
            if read_only and not (path / "zarr.json").is_file():
                problem = "does not exist" if not path.exists() else "is not a zarr store (no zarr.json)"
                raise StoreError(f"capture store {self.url} {problem}; create it with `python -m experiments.run "
                                 "+exp=make_captures` or `python -m uhrtex.captures.ingest`, or fix the path")
            if not read_only:
                path.mkdir(parents=True, exist_ok=True)
            return zarr.storage.LocalStore(path, read_only=read_only)
        try:
            return zarr.storage.FsspecStore.from_url(self.url, storage_options=self.storage_options or None, read_only=read_only)
        except Exception as e:  # noqa: BLE001 - fsspec raises many types (ImportError, auth, protocol)
            raise self._fail(f"cannot be opened ({type(e).__name__}: {' '.join(str(e).split())[:160]})",
                             "check the URL, credentials (storage_options) and that its fsspec backend is installed") from e

    @property
    def root(self):
        if self._root is None:
            import zarr

            store = self._open_store()
            try:
                root = zarr.open_group(store, mode="r" if self.mode == "r" else "a")
            except zarr.errors.ContainsGroupError:  # a concurrent writer created the new store meanwhile: open that
                root = zarr.open_group(store, mode="a")
            except Exception as e:  # noqa: BLE001
                raise self._fail(f"is not readable as a zarr group ({type(e).__name__}: {' '.join(str(e).split())[:160]})",
                                 "point data.store at a capture store") from e
            if root.attrs.get("uhrtex_captures") is None:
                if self.mode == "r":
                    raise self._fail("is a zarr store but not a capture store (no 'uhrtex_captures' attribute)",
                                     "point it at a store made by make_captures or ingest")
                if list(root.keys()):
                    raise self._fail("is a non-empty zarr store that is not a capture store", "use an empty folder")
                root.attrs["uhrtex_captures"] = FORMAT_VERSION
            self._root = root
        return self._root

    def _writable(self) -> None:
        if self.mode != "a":
            raise self._fail("is opened read-only", "open it with CaptureStore(url, mode='a') to write")

    def _fs(self):
        """(sync fsspec filesystem, root path) for renames and deletes on URL stores."""
        import fsspec

        fs, path = fsspec.core.url_to_fs(self.url, **self.storage_options)
        return fs, path.rstrip("/")

    def _move(self, src: str, dst: str) -> None:
        if self.is_local:
            os.rename(self._local_root / src, self._local_root / dst)
        else:
            fs, base = self._fs()
            fs.mv(f"{base}/{src}", f"{base}/{dst}", recursive=True)

    def _remove(self, name: str) -> None:
        if self.is_local:
            shutil.rmtree(self._local_root / name, ignore_errors=True)
        else:
            fs, base = self._fs()
            if fs.exists(f"{base}/{name}"):
                fs.rm(f"{base}/{name}", recursive=True)

    def _publish(self, parent, tmp: str, final: str, replace: bool = True) -> None:
        """Make group `parent/tmp` visible as `parent/final` with complete=True (see the module doc)."""
        prefix = f"{parent.path}/" if parent.path else ""
        if not replace and final in parent:  # e.g. a global level another process built meanwhile
            self._remove(prefix + tmp)
            return
        if self.is_local:  # rename is atomic: mark first, so the final name is never incomplete
            parent[tmp].attrs["complete"] = True
        if final in parent:
            trash = f"{TRASH}{final}.{uuid.uuid4().hex[:8]}"
            self._move(prefix + final, prefix + trash)
            self._remove(prefix + trash)
        self._move(prefix + tmp, prefix + final)
        if not self.is_local:
            import zarr

            zarr.open_group(parent.store, path=prefix + final, mode="r+").attrs["complete"] = True

    # ------------------------------------------------------------------------------------- listing

    def keys(self, refresh: bool = False) -> list[str]:
        """Sorted keys of the finished captures."""
        if self._keys is None or refresh:
            keys = []
            for name, group in self.root.groups():
                if not name.startswith(("_", ".")) and group.attrs.get("complete") is True:
                    keys.append(name)
            self._keys = sorted(keys)
        return list(self._keys)

    def __contains__(self, key: str) -> bool:
        return key in self.keys()

    def __len__(self) -> int:
        return len(self.keys())

    def partials(self) -> list[str]:
        """Names of unfinished writes (interrupted runs, or writes in progress)."""
        return sorted(n for n, _ in self.root.groups() if n.startswith((PARTIAL, TRASH)))

    def cleanup(self, min_age_s: float = 3600.0) -> list[str]:
        """Remove unfinished writes older than `min_age_s` (younger ones may belong to a live writer)."""
        self._writable()
        removed = []
        for name in self.partials():
            if self.is_local:
                age = time.time() - (self._local_root / name).stat().st_mtime
                if age < min_age_s:
                    continue
            removed.append(name)
            self._remove(name)
        return removed

    def _group(self, key: str):
        if key not in self._handles:
            if key not in self.keys():
                if key not in self.keys(refresh=True):
                    have = self.keys()
                    shown = ", ".join(have[:5]) + (", ..." if len(have) > 5 else "")
                    raise self._fail(f"no finished capture '{key}' ({len(have)} captures: {shown or 'none'})",
                                     "check the key, or re-run make_captures/ingest")
            group = self.root[key]
            self._handles[key] = {"group": group, "attrs": dict(group.attrs), "arrays": {}}
        return self._handles[key]

    def meta(self, key: str) -> dict:
        return dict(self._group(key)["attrs"]["meta"])

    def size(self, key: str) -> tuple[int, int]:
        h, w = self._group(key)["attrs"]["size"]
        return int(h), int(w)

    def subject(self, key: str) -> str:
        return split_key(key)[0]

    # ------------------------------------------------------------------------------------- reading

    def _names(self, names: Iterable[str] | None) -> tuple[str, ...]:
        names = tuple(names) if names is not None else CAPTURE.names
        unknown = [n for n in names if n not in CAPTURE.names]
        if unknown:
            raise self._fail(f"unknown maps {unknown}", f"use names from {list(CAPTURE.names)}")
        return names

    def _array(self, key: str, name: str, level: str = ""):
        entry = self._group(key)
        path = f"{level}/{name}" if level else name
        if path not in entry["arrays"]:
            try:
                arr = entry["group"][path]
            except KeyError:
                raise self._fail(f"capture '{key}' lacks map '{path}'", "re-ingest or re-render that capture") from None
            h, w = self.size(key) if not level else (int(level[len(GLOBAL):]),) * 2
            want = (CAPTURE.width(name), h, w)
            if tuple(arr.shape) != want:
                raise self._fail(f"map '{path}' of capture '{key}' has shape {list(arr.shape)}, expected {list(want)}",
                                 "re-ingest or re-render that capture")
            entry["arrays"][path] = arr
        return entry["arrays"][path]

    def read_codes(self, key: str, name: str, box: Box | Sequence[int] | None = None, level: str = "") -> np.ndarray:
        """The stored uint16 codes of one map (C x h x w)."""
        arr = self._array(key, name, level)
        if box is None:
            return arr[...]
        y, x, h, w = (int(v) for v in box)
        _, full_h, full_w = arr.shape
        if h <= 0 or w <= 0 or y < 0 or x < 0 or y + h > full_h or x + w > full_w:
            raise self._fail(f"box (y={y}, x={x}, h={h}, w={w}) is outside capture '{key}' ({full_h}x{full_w})",
                             "clip the box to the image")
        return arr[:, y:y + h, x:x + w]

    def read(self, key: str, names: Iterable[str] | None = None, box: Box | Sequence[int] | None = None) -> dict[str, torch.Tensor]:
        """{name: float32 C x h x w} of the full frame or of `box` (y, x, h, w) in full-res pixels."""
        return {n: dequantize(self.read_codes(key, n, box)) for n in self._names(names)}

    def global_sizes(self, key: str) -> list[int]:
        entry = self._group(key)
        if "levels" not in entry:  # listed once per handle: read_global runs once per sample
            entry["levels"] = sorted(int(n[len(GLOBAL):]) for n, g in entry["group"].groups()
                                     if n.startswith(GLOBAL) and g.attrs.get("complete"))
        return list(entry["levels"])

    def _refreshed_levels(self, key: str) -> list[int]:
        self._group(key).pop("levels", None)  # another process may have built it since
        return self.global_sizes(key)

    def read_global(self, key: str, size: int, names: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
        """{name: float32 C x size x size}, area-downsampled; built and cached in the store on first use."""
        names = self._names(names)
        level = f"{GLOBAL}{int(size)}"
        if tuple(self.size(key)) == (size, size):
            return self.read(key, names)
        if int(size) not in self.global_sizes(key) and int(size) not in self._refreshed_levels(key):
            if self.mode == "a":
                self.ensure_global(key, size)
            else:  # read-only: compute on the fly (correct, but decodes full frames every time)
                if not self._warned_lazy:
                    warnings.warn(f"{self}: no stored {size}² level for '{key}'; computing it on the fly each time "
                                  "(open the store with mode='a' once, or run make_captures, to cache it)", stacklevel=2)
                    self._warned_lazy = True
                return {n: dequantize(area_downsample(self.read_codes(key, n), size)) for n in names}
        return {n: dequantize(self.read_codes(key, n, level=level)) for n in names}

    # ------------------------------------------------------------------------------------- writing

    def _create(self, group, name: str, codes: np.ndarray) -> None:
        c, h, w = codes.shape
        side = self.chunk or default_chunk(max(h, w))
        chunks = (c, min(side, h), min(side, w))
        arr = group.create_array(name, shape=codes.shape, dtype="uint16", chunks=chunks,
                                 compressors=_compressor(self.compressor), fill_value=0)
        arr[...] = codes

    def _write_level(self, capture_group, size: int, codes: dict[str, np.ndarray]) -> None:
        tmp = f"{PARTIAL}{GLOBAL}{size}.{uuid.uuid4().hex[:8]}"
        level = capture_group.create_group(tmp, attributes={"complete": False, "size": [size, size]})
        for name, c in codes.items():
            self._create(level, name, area_downsample(c, size))
        self._publish(capture_group, tmp, f"{GLOBAL}{size}", replace=False)

    def write(self, key: str, capture: Capture, global_sizes: Sequence[int] = ()) -> None:
        """Store `capture` under `key` (replacing an older one); visible only once complete."""
        self._writable()
        capture.validate(key)
        if capture.key != key:
            raise CaptureError(f"capture key {key!r} does not match its meta ({capture.key!r}); "
                               "write it under capture.key or fix meta subject/lighting/camera.id")
        h, w = capture.size
        tmp = f"{PARTIAL}{key}.{uuid.uuid4().hex[:8]}"
        attrs = {"meta": capture.meta, "size": [h, w], "encoding": "uint16 codes k/65535",
                 "maps": {n: CAPTURE.width(n) for n in CAPTURE.names}, "complete": False}
        group = self.root.create_group(tmp, attributes=attrs)
        codes = {n: to_uint16(capture.maps[n]).numpy() for n in CAPTURE.names}
        for name, c in codes.items():
            self._create(group, name, c)
        for size in sorted({int(s) for s in global_sizes}):
            if (size, size) != (h, w):
                self._write_level(group, size, codes)
        self._publish(self.root, tmp, key)
        for stale in self.partials():  # earlier interrupted writes of this key
            if stale.startswith(f"{PARTIAL}{key}."):
                self._remove(stale)
        self._handles.pop(key, None)
        self._keys = None

    def ensure_global(self, key: str, size: int) -> None:
        """Build and store the `size`² level of `key` if missing (safe against concurrent builders)."""
        self._writable()
        if int(size) in self.global_sizes(key) or tuple(self.size(key)) == (size, size):
            return
        group = self._group(key)["group"]
        codes = {n: self.read_codes(key, n) for n in CAPTURE.names}
        try:
            self._write_level(group, int(size), codes)
        except OSError:  # another process published the same level first; ours is identical
            for name, _ in group.groups():
                if name.startswith(f"{PARTIAL}{GLOBAL}{size}."):
                    self._remove(f"{key}/{name}")
            if int(size) not in self.global_sizes(key):
                raise
        self._handles.pop(key, None)

    def delete(self, key: str) -> None:
        self._writable()
        self._remove(key)
        self._handles.pop(key, None)
        self._keys = None
