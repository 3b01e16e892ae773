"""The uhrtex cache folder: results that cost seconds to compute and milliseconds to read, kept across runs.

`$UHRTEX_CACHE_DIR`, else `$XDG_CACHE_HOME/uhrtex`, else `~/.cache/uhrtex`; `UHRTEX_CACHE_DIR=off` disables it.
Entries are torch-saved tensors (or dicts of them) named by the caller with a digest of everything they depend
on, so a stale entry is never read: a changed input gets a new name. Writes are atomic; a damaged entry is
recomputed and replaced, and a read-only or full folder only costs the recomputation.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch

__all__ = ["cache_dir", "cached", "source_digest"]

T = TypeVar("T")


def cache_dir() -> Path | None:
    """The uhrtex cache folder (see module doc); None when disabled."""
    d = os.environ.get("UHRTEX_CACHE_DIR")
    if d is not None:
        return None if d.strip().lower() in ("", "0", "off", "none") else Path(d)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "uhrtex"


def source_digest(files, *params) -> str:
    """20 hex digits of `params`, the torch version and the source `files` (names and bytes) an entry depends on:
    a changed parameter or a code change gives a new entry name."""
    h = hashlib.sha256(repr((*params, torch.__version__.split("+")[0])).encode())
    for f in files:
        f = Path(f)
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:20]


def cached(name: str, compute: Callable[[], T], family: str | None = None, keep: int = 8) -> T:
    """The entry `name` of the cache folder, or `compute()` written there (see module doc). With `family` (a name
    prefix), at most `keep` entries of that family stay: the least recently used are deleted on a write, so many
    different meshes cannot fill the disk."""
    d = cache_dir()
    path = d / name if d is not None else None
    if path is not None and path.is_file():
        try:
            value = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # a damaged entry is recomputed and replaced
            pass
        else:
            try:
                os.utime(path)  # recently used (for `keep`)
            except OSError:  # a read-only folder: still a hit
                pass
            return value
    value = compute()
    if path is not None:
        try:
            from uhrtex.common.io import write_bytes_atomic

            buf = io.BytesIO()
            torch.save(value, buf)
            write_bytes_atomic(path, buf.getvalue())
            if family is not None:
                entries = sorted(d.glob(f"{family}*.pt"), key=lambda f: f.stat().st_mtime, reverse=True)
                for old in entries[keep:]:
                    old.unlink(missing_ok=True)
        except OSError:
            pass
    return value
