"""Your own environment maps (`captures.environments=DIR`): extra lightings beside the built-in HDRIs / skies.

    DIR/<name>.exr | DIR/<name>.hdr     equirectangular (latitude-longitude, width = 2 x height) linear radiance,
                                        in Blender's world orientation (as Blender's Environment Texture shows it)

Each file becomes lighting `env-<slug>` (slug: the file stem lower-cased, every run of other characters than
a-z 0-9 -> '-'), used at the same rotations as the built-in HDRIs: ids `env-<slug>_r<deg>`. Lighting index i
(`captures.lightings`) walks the built-in names then these (sorted by file name), then again at further
rotations (`environments.default_lightings`). The file is recorded as `meta["environment"]["source"]`.
`load_environments(DIR)` reads and checks every file before anything renders (one-line ValueErrors).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from uhrtex.common.io import LDR_SUFFIXES, read_exr_channels

ENV_SUFFIXES = (".exr", ".hdr")
PREFIX = "env-"


def _fail(path, problem: str, fix: str) -> ValueError:
    return ValueError(" ".join(f"environment {path}: {problem}; {fix}".split()))


def env_name(path: str | Path) -> str:
    """'Studio Small_02.exr' -> 'env-studio-small-02' (a valid lighting name and store-key part)."""
    slug = re.sub(r"[^a-z0-9]+", "-", Path(path).stem.lower()).strip("-")
    if not slug:
        raise _fail(path, "its file name gives no lighting id", "rename it with letters or digits, e.g. studio2.exr")
    return PREFIX + slug


def environment_files(folder: str | Path) -> dict[str, Path]:
    """{lighting name: file} of the folder's maps, sorted by file name (listing checks only, nothing is read)."""
    root = Path(folder).absolute()
    if not root.is_dir():
        raise ValueError(f"environments folder {root} does not exist; point captures.environments at a folder of .exr/.hdr maps")
    files = sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith("."))
    for p in files:
        if p.suffix.lower() in LDR_SUFFIXES:
            raise _fail(p, f"{p.suffix} is not a high-dynamic-range format", "convert it to linear .exr or .hdr, or remove it")
    out: dict[str, Path] = {}
    for p in (p for p in files if p.suffix.lower() in ENV_SUFFIXES):
        name = env_name(p)
        if name in out:
            raise _fail(p, f"it and {out[name].name} both become lighting {name}", "rename one of them")
        out[name] = p
    if not out:
        raise ValueError(f"environments folder {root} holds no .exr/.hdr maps; add equirectangular HDR maps or drop captures.environments")
    return out


def _decode(path: Path) -> np.ndarray:
    """-> H x W x C float32 as stored (no checks)."""
    if path.suffix.lower() == ".hdr":
        import cv2

        arr = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
        if arr is None:
            raise RuntimeError("OpenCV cannot decode it")
        arr = arr[..., None] if arr.ndim == 2 else arr[..., 2::-1]  # BGR -> RGB
        return arr.astype(np.float32)
    chans = read_exr_channels(path, check_finite=False)  # NaN/Inf are counted below, with the fix
    leaf = {}
    for k in chans:  # first channel of each leaf name (plain R/G/B/Y, or a layer's "Combined.R")
        leaf.setdefault(k.rsplit(".", 1)[-1].upper(), k)
    names = [leaf[c] for c in "RGB"] if all(c in leaf for c in "RGB") else [leaf["Y"]] if "Y" in leaf else None
    if names is None:
        raise RuntimeError(f"no R, G, B or Y channels (has {sorted(chans)[:6]})")
    return np.stack([chans[n] for n in names], -1)


def read_environment(path: str | Path, clamp_negative: bool = False) -> torch.Tensor:
    """One checked map: 3 x H x W float32 linear radiance (row 0 = top); one-line ValueError naming the file.
    `clamp_negative`: clamp negative values to 0 instead (bpy's own HDRIs hold a few of order -1e-6)."""
    path = Path(path)
    try:
        arr = _decode(path)
    except Exception as e:  # noqa: BLE001 - OpenEXR / OpenCV raise bare exceptions
        raise _fail(path, f"unreadable ({' '.join(str(e).split())[:120]})", "re-export it as a float EXR or Radiance .hdr") from None
    H, W = arr.shape[:2]
    if W != 2 * H:
        raise _fail(path, f"is {W}x{H} (WxH), not a 2:1 equirectangular map",
                    "export an equirectangular (latitude-longitude) panorama with width = 2 x height")
    bad = int((~np.isfinite(arr)).sum())
    if bad:
        raise _fail(path, f"has {bad} NaN/Inf values", "fix or clamp them in the source and re-export")
    if clamp_negative:
        arr = np.maximum(arr, 0)
    if arr.min() < 0:
        raise _fail(path, f"has {int((arr < 0).sum())} negative values (min {arr.min():.3g})", "clamp them to 0 and re-export")
    if not arr.max() > 0:
        raise _fail(path, "is black (no light)", "use a map with light in it, or remove it")
    t = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
    return (t.expand(3, -1, -1) if t.shape[0] == 1 else t).contiguous()


def load_environments(folder: str | Path) -> dict[str, Path]:
    """`environment_files` + every file read and checked: call before rendering anything."""
    files = environment_files(folder)
    for p in files.values():
        read_environment(p)
    return files
