"""On-disk cache of Stage-1 outputs per capture, computed once by the frozen upstream networks.

Layout: `<root>/<key>/` with one `<capture>.pt` per capture (dict name -> C×g×g tensor; uv in float32
because the hash grid's finest level resolves ~1e-3 in UV, the rest float16 to halve the disk) and
`manifest.json` (the spec and, per finished capture, a fingerprint of its store entry).

The key hashes the upstream checkpoints' *contents* (not paths or mtimes), the global size, the geometry
source and the format version. A changed checkpoint therefore maps to another directory, which is
missing, so it is computed; a capture whose store entry changed (fingerprint) or whose file is missing
or unreadable is recomputed. Nothing stale is ever reused. Every file is written atomically
(tmp + os.replace), the manifest after the files it lists.

The store is duck-typed: `meta(key) -> dict`, `size(key) -> (H, W)`, `read_global(key, size, names)`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from uhrtex.common.io import atomic_path

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
FULL_PRECISION = ("uv_pred",)
GEOMETRY_SOURCES = ("predicted", "gt")



@dataclass(frozen=True)
class CacheSpec:
    """What identifies a cache: upstream checkpoint digests ({"uv_normal": sha, "gde": sha}), outputs, size."""

    upstream: dict[str, str]
    keys: tuple[str, ...]
    global_size: int
    geometry: str = "predicted"  # "gt": the GDE ran on ground-truth geometry (no UV&Normal predictor)
    version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.geometry not in GEOMETRY_SOURCES:
            raise ValueError(f"Stage-1 cache geometry '{self.geometry}' is not one of {GEOMETRY_SOURCES}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["keys"] = list(self.keys)
        return d

    @property
    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


def _atomic_bytes(path: Path, write: Callable[[Path], None]) -> None:
    with atomic_path(path) as tmp:
        write(tmp)


def _atomic_json(path: Path, data: dict) -> None:
    _atomic_bytes(path, lambda p: p.write_text(json.dumps(data, indent=1, sort_keys=True)))


def capture_fingerprint(store, capture: str) -> str:
    """Changes when the capture's store entry is rewritten with other metadata or size."""
    meta = store.meta(capture)
    blob = json.dumps({"meta": meta, "size": list(store.size(capture))}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _capture_file(directory: Path, capture: str) -> Path:
    return directory / f"{capture}.pt"


class Stage1Reader:
    """The `attach_stage1` reader of docs/contracts.md: `keys` and `read(capture) -> {name: C×g×g float32}`.

    Pickles as a path and names (DataLoader workers); each process keeps the last `max_cached` captures in
    memory, because shuffled patches revisit captures in random order.
    """

    def __init__(self, directory: str | os.PathLike, keys: Sequence[str], max_cached: int = 8):
        self.directory = str(directory)
        self.keys = tuple(keys)
        self.max_cached = max_cached
        self._cache: OrderedDict[str, dict[str, torch.Tensor]] = OrderedDict()

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_cache": OrderedDict()}

    def read(self, capture: str) -> dict[str, torch.Tensor]:
        if capture in self._cache:
            self._cache.move_to_end(capture)
            return self._cache[capture]
        path = _capture_file(Path(self.directory), capture)
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise FileNotFoundError(f"Stage-1 cache {self.directory} has no entry for capture '{capture}'; "
                                    f"it was built for other captures: rebuild it (rerun training setup)") from None
        out = {k: data[k].float() for k in self.keys}
        if self.max_cached > 0:
            self._cache[capture] = out
            while len(self._cache) > self.max_cached:
                self._cache.popitem(last=False)
        return out

    def __repr__(self) -> str:
        return f"Stage1Reader({self.directory!r}, keys={self.keys})"


def _load_manifest(path: Path, spec: CacheSpec) -> dict[str, str]:
    try:
        manifest = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    if manifest.get("spec") != spec.to_dict():  # a hash collision or a hand-edited folder: trust nothing
        return {}
    return dict(manifest.get("captures", {}))


def _readable(path: Path, keys: Iterable[str]) -> bool:
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - any unreadable file is recomputed
        return False
    return all(k in data for k in keys)


def ensure_cache(store, captures: Sequence[str], compute: Callable[[list[str]], dict[str, torch.Tensor]],
                 spec: CacheSpec, root: str | os.PathLike, batch_size: int = 4, verify: bool = False,
                 progress: bool = True) -> Stage1Reader:
    """Make `<root>/<spec.key>/` hold every capture's outputs, computing what is missing or stale.

    `compute(captures) -> {name: B×C×g×g}` runs the frozen Stage 1 on a batch of captures (the caller
    reads the store and picks the device). `verify=True` also opens every cached file (slow on big caches).
    """
    directory = Path(root) / spec.key
    directory.mkdir(parents=True, exist_ok=True)
    manifest_path = directory / "manifest.json"
    done = _load_manifest(manifest_path, spec)
    prints = {c: capture_fingerprint(store, c) for c in captures}
    todo = [c for c in captures if done.get(c) != prints[c] or not _capture_file(directory, c).is_file()
            or (verify and not _readable(_capture_file(directory, c), spec.keys))]
    if not todo:
        log.info("Stage-1 cache %s: up to date for %d captures", directory, len(captures))
        return Stage1Reader(directory, spec.keys)
    reason = "new cache" if not done else f"{len(todo)} missing or stale"
    log.warning("Stage-1 cache %s: computing %d of %d captures (%s)", directory, len(todo), len(captures), reason)
    for c in todo:
        done.pop(c, None)
    bar = tqdm(total=len(todo), desc="Stage-1 cache", unit="capture", disable=not progress)
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        out = compute(chunk)
        missing = set(spec.keys) - set(out)
        if missing:
            raise RuntimeError(f"Stage-1 compute returned {sorted(out)}, the cache spec needs {list(spec.keys)}")
        for i, capture in enumerate(chunk):
            sample = {k: out[k][i].detach().to("cpu", torch.float32 if k in FULL_PRECISION else torch.float16)
                      .contiguous() for k in spec.keys}
            _atomic_bytes(_capture_file(directory, capture), lambda p, s=sample: torch.save(s, p))
            done[capture] = prints[capture]
        _atomic_json(manifest_path, {"spec": spec.to_dict(), "captures": done})
        bar.update(len(chunk))
    bar.close()
    return Stage1Reader(directory, spec.keys)


def cache_root_for(store_url: str | os.PathLike) -> Path:
    """`<store>/../stage1_cache`: beside the store, under the data dir."""
    return Path(store_url).expanduser().resolve().parent / "stage1_cache"


def store_compute(store, stage1: torch.nn.Module, device: str | torch.device = "cpu") -> Callable[[list[str]], dict]:
    """A `compute` for `ensure_cache` that runs `stage1` (a `uhrtex.stage1.run.Stage1`) on the store's global view."""
    gt = getattr(stage1, "uv_normal", None) is None
    names = ["image", "uv", "normal", "mask"] if gt else ["image"]
    with_prior = not gt and getattr(stage1, "uv_prior", "none") == "landmarks"

    def compute(captures: list[str]) -> dict[str, torch.Tensor]:
        reads = [store.read_global(c, stage1.global_size, names) for c in captures]
        batch = {n: torch.stack([r[n] for r in reads]).to(device) for n in names}
        if with_prior:
            prior = torch.stack([landmark_prior(r["image"], c) for r, c in zip(reads, captures)]).to(device)
            return stage1(batch["image"], None, uv_prior=prior)
        return stage1(batch["image"], batch if gt else None)

    return compute


def landmark_prior(image: torch.Tensor, capture: str) -> torch.Tensor:
    """3×g×g landmark uv prior of a square global view (coverage 0 where the landmarker finds no face, as at
    inference, where Stage 1 then keeps the predictor's uv)."""
    from uhrtex.face.geometry import find_landmark_uv_prior

    prior = find_landmark_uv_prior(image)
    if prior is None:
        log.warning("Stage-1 cache: no face found in capture %s; its uv is the predictor's", capture)
        return torch.zeros(3, *image.shape[-2:])
    return prior
