"""Compare two reconstruction output folders file by file, by content; one JSON line.

    python tools/compare_outputs.py OLD_DIR NEW_DIR

For a speed change that should not move any value: PNGs are compared by their decoded pixels (an encoder change
moves the bytes, not the pixels), `.glb` files by their JSON (buffer offsets aside), each embedded image's pixels
and every other buffer view's bytes, `manifest.json` without its timings, memory and the portrait's path, EXR and
any other file by bytes. A file that does not read as its type is reported as a difference. Prints {"identical": bool, "files": n, "differ": {file: what}}; exit status 1 when anything differs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

_VOLATILE = {"timings_s", "total_s", "portrait", "weights", "process_memory", "timings", "peak_rss_gb"}


def _pixels(data: bytes) -> np.ndarray:
    import cv2

    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError("not a decodable image")
    return img


def _pixel_diff(a: bytes, b: bytes) -> str | None:
    pa, pb = _pixels(a), _pixels(b)
    if pa.shape != pb.shape or pa.dtype != pb.dtype:
        return f"shape/type {pa.shape} {pa.dtype} vs {pb.shape} {pb.dtype}"
    d = np.abs(pa.astype(np.int64) - pb.astype(np.int64))
    n = int((d > 0).sum())
    return f"{n} of {d.size} samples differ (max {int(d.max())})" if n else None


def _glb(data: bytes) -> tuple[dict, bytes]:
    """(glTF JSON, binary chunk) of a .glb, read by pygltflib (the library `uhrtex.export.glb` writes it with)."""
    import pygltflib

    gltf = pygltflib.GLTF2.load_from_bytes(data)
    return json.loads(gltf.gltf_to_json()), gltf.binary_blob() or b""


def _views(doc: dict, binary: bytes) -> list[bytes]:
    return [binary[v.get("byteOffset", 0):v.get("byteOffset", 0) + v["byteLength"]] for v in doc["bufferViews"]]


def _glb_diff(a: bytes, b: bytes) -> str | None:
    (da, ba), (db, bb) = _glb(a), _glb(b)
    images = {im["bufferView"] for im in da.get("images", []) if "bufferView" in im}
    strip = lambda d: {k: v for k, v in d.items() if k not in ("bufferViews", "buffers")}  # noqa: E731
    if strip(da) != strip(db) or len(da["bufferViews"]) != len(db["bufferViews"]):
        return "glTF JSON differs"
    out = []
    for i, (va, vb) in enumerate(zip(_views(da, ba), _views(db, bb))):
        d = _pixel_diff(va, vb) if i in images else (None if va == vb else "bytes differ")
        if d:
            out.append(f"view {i}: {d}")
    return "; ".join(out) or None


def _manifest_diff(a: bytes, b: bytes) -> str | None:
    def clean(x, portrait: str):  # the portrait's path also appears inside messages (face warnings)
        if isinstance(x, dict):
            return {k: clean(v, portrait) for k, v in x.items() if k not in _VOLATILE}
        if isinstance(x, list):
            return [clean(v, portrait) for v in x]
        return x.replace(portrait, "<portrait>") if isinstance(x, str) and portrait else x

    ma, mb = json.loads(a), json.loads(b)
    ja, jb = clean(ma, ma.get("portrait", "")), clean(mb, mb.get("portrait", ""))
    if ja == jb:
        return None
    keys = sorted(k for k in set(ja) | set(jb) if ja.get(k) != jb.get(k))
    return f"keys differ: {keys}"


def compare(old: Path, new: Path) -> dict:
    names = sorted({p.relative_to(old).as_posix() for p in old.rglob("*") if p.is_file()}
                   | {p.relative_to(new).as_posix() for p in new.rglob("*") if p.is_file()})
    differ = {}
    for name in names:
        pa, pb = old / name, new / name
        if not (pa.is_file() and pb.is_file()):
            differ[name] = "only in " + ("new" if pb.is_file() else "old")
            continue
        a, b = pa.read_bytes(), pb.read_bytes()
        if a == b:
            continue
        fn = _manifest_diff if name == "manifest.json" else {".png": _pixel_diff, ".glb": _glb_diff}.get(pa.suffix.lower())
        try:
            d = fn(a, b) if fn else "bytes differ"
        except (ValueError, KeyError, OSError) as e:  # a truncated or foreign file: a difference, said so
            d = f"cannot be read as its type ({e})"
        if d:
            differ[name] = d
    return {"identical": not differ, "files": len(names), "differ": differ}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old", type=Path)
    ap.add_argument("new", type=Path)
    args = ap.parse_args(argv)
    for d in (args.old, args.new):
        if not d.is_dir():
            ap.error(f"{d} is not a folder: pass two reconstruction output folders (e.g. benchmarks/reconstruct.py "
                     "--keep-out DIR)")
    result = compare(args.old, args.new)
    print(json.dumps(result))
    return 0 if result["identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
