#!/usr/bin/env python
"""Rebuild ``uhrtex/captures/hdri/`` from the pmndrs redistributions of Poly Haven HDRIs.

Inputs (all CC0 redistributions of Poly Haven HDRIs by pmndrs):

* ``--npm-dir``: the unpacked npm package ``@pmndrs/assets`` (the folder holding
  ``package.json`` and ``hdri/*.exr.js``; each ``.exr.js`` is an ES module whose
  default export is a ``data:application/exr;base64,...`` URL: 512x256, lossy DWAB).
* ``--drei-dir``: a clone of GitHub ``pmndrs/drei-assets`` (``hdri/<name>_1k.hdr``,
  Radiance RGBE 1024x512, named after the Poly Haven asset).
* ``--assets-dir`` (optional, recommended): a clone of GitHub ``pmndrs/assets``, the
  source repository of the npm package. Its ``src/hdri/<stem>.hdr`` are the lossless
  1024x512 files the npm EXRs were made from. When given, they replace the npm EXRs
  (after checking that each one matches its npm counterpart). Without it the npm
  EXRs are used: their DWAB ringing is clamped to >= 0, and ``sunrise`` is skipped
  because DWAB turned its sun into a pure-blue block.

Where drei-assets holds the same Poly Haven map (ten of the eighteen npm maps; the
pmndrs/assets sources of those are byte-identical to the drei-assets files) the
drei-assets file is used.

Output (``--out``): one ``<slug>.exr`` per environment (linear RGB float16,
equirectangular 512x256, row 0 = zenith, same orientation as the source),
``sources.json`` and ``LICENSE.md``. 1024x512 maps are 2x2 box-averaged in linear
float64. Radiance above the float16 maximum (65504) is spread along its row
(energy-preserving) instead of clipped. Each file is encoded with ZIP and with PIZ
and the smaller is kept. The output depends only on the inputs and the OpenEXR
library version, so two runs give bit-identical files.

Example::

    python tools/derive_hdris.py --npm-dir /tmp/hdri/package \\
        --drei-dir /tmp/hdri/drei-assets --assets-dir /tmp/hdri/assets \\
        --out uhrtex/captures/hdri
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

try:
    import OpenEXR
except ImportError:  # pragma: no cover - import guard
    sys.exit("error: the OpenEXR python package (>= 3.2) is required: pip install 'OpenEXR>=3.2'")

OUT_W, OUT_H = 512, 256  # set from --width in main()
NPM_W, NPM_H = 512, 256
HALF_MAX = 65504.0

# @pmndrs/assets hdri/<stem>.exr.js -> Poly Haven asset name, or None where pmndrs
# did not record it. The ten named ones are byte-identical (same git blob) to the
# named drei-assets files, and their npm EXRs match those files pixel for pixel up
# to DWAB loss; drei-assets is used for them.
NPM_MAPS: dict[str, str | None] = {
    "apartment": "lebombo",
    "bridge": "adams_place_bridge",
    "city": "potsdamer_platz",
    "dawn": "kiara_1_dawn",
    "forest": "forest_slope",
    "lobby": "st_fagans_interior",
    "night": "dikhololo_night",
    "park": "rooitou_park",
    "studio": "studio_small_03",
    "warehouse": "empty_warehouse_01",
    # only in @pmndrs/assets; pmndrs named them by theme, not by Poly Haven name
    "esplanade": None,
    "hall": None,
    "lab": None,
    "sky": None,
    "sunrise": None,
    "sunset": None,
    "venice": None,
    "workshop": None,
}
# npm EXRs whose DWAB encoding ruined the key light (used only without --assets-dir)
NPM_BROKEN = {"sunrise": "DWAB turned the sun into a pure-blue 8x8 block (R=G=0, B=15008)"}
DREI_SUFFIX = "_1k.hdr"


def fail(msg: str) -> None:
    sys.exit(f"error: {msg}")


def slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    if not slug:
        fail(f"cannot derive a slug from {name!r}")
    return slug


def git_head(d: Path, given: str | None, flag: str) -> str:
    if given:
        if not re.fullmatch(r"[0-9a-f]{40}", given):
            fail(f"{flag} {given!r}: expected a 40-hex-digit commit id")
        return given
    if (d / ".git").exists():
        r = subprocess.run(["git", "-C", str(d), "rev-parse", "HEAD"], capture_output=True, text=True)
        if r.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}", r.stdout.strip()):
            return r.stdout.strip()
    fail(f"{d} is not a git clone: pass {flag} <commit> so the source can be recorded")
    raise AssertionError


# ----------------------------------------------------------------------------- readers


def read_rgbe(data: bytes, where: str) -> np.ndarray:
    """Decode a Radiance RGBE (.hdr) file into float64 (H, W, 3), row 0 = top."""
    pos = data.find(b"\n\n")
    if not data.startswith(b"#?") or pos < 0:
        fail(f"{where}: not a Radiance .hdr file")
    header = data[:pos].decode("latin-1").splitlines()
    fmt = [ln.strip() for ln in header if ln.startswith("FORMAT=")]
    if fmt and fmt[0] != "FORMAT=32-bit_rle_rgbe":
        fail(f"{where}: unsupported {fmt[0]}")
    if any(ln.startswith("EXPOSURE=") for ln in header):
        fail(f"{where}: EXPOSURE header not supported")
    end = data.index(b"\n", pos + 2)
    res = data[pos + 2 : end].decode("latin-1").split()
    if len(res) != 4 or res[0] != "-Y" or res[2] != "+X":
        fail(f"{where}: unsupported orientation {' '.join(res)!r} (need '-Y h +X w')")
    h, w = int(res[1]), int(res[3])
    buf = np.frombuffer(data, dtype=np.uint8, offset=end + 1)
    out = np.empty((h, w, 4), dtype=np.uint8)
    i = 0
    try:
        for y in range(h):
            if w < 8 or w > 0x7FFF or buf[i] != 2 or buf[i + 1] != 2 or buf[i + 2] & 0x80:
                out[y] = buf[i : i + 4 * w].reshape(w, 4)  # flat scanline
                i += 4 * w
                continue
            if (int(buf[i + 2]) << 8 | int(buf[i + 3])) != w:
                fail(f"{where}: bad scanline width at row {y}")
            i += 4
            for c in range(4):
                x, row = 0, out[y, :, c]
                while x < w:
                    n = int(buf[i])
                    if n > 128:
                        n -= 128
                        row[x : x + n] = buf[i + 1]
                        i += 2
                    else:
                        if n == 0:
                            fail(f"{where}: zero run length at row {y}")
                        row[x : x + n] = buf[i + 1 : i + 1 + n]
                        i += 1 + n
                    x += n
    except (IndexError, ValueError):
        fail(f"{where}: truncated or corrupt RLE data")
    e = out[..., 3].astype(np.int32)
    # Radiance/Blender convention: (m + 0.5) * 2^(e - 136); e == 0 is black
    scale = np.where(e > 0, np.ldexp(1.0, e - 136), 0.0)
    return (out[..., :3].astype(np.float64) + 0.5) * scale[..., None]


def read_npm_exr(js_path: Path) -> np.ndarray:
    text = js_path.read_text(encoding="ascii")
    m = re.search(r"data:application/exr;base64,([A-Za-z0-9+/=]+)", text)
    if not m:
        fail(f"{js_path}: no base64 EXR data URL found")
    ch = OpenEXR.File(io.BytesIO(base64.b64decode(m.group(1)))).channels()
    if "RGB" in ch:
        px = ch["RGB"].pixels
    elif all(k in ch for k in "RGB"):
        px = np.stack([ch[k].pixels for k in "RGB"], axis=-1)
    else:
        fail(f"{js_path}: EXR has no R, G, B channels ({sorted(ch)})")
    if px.dtype != np.float16 or px.shape != (NPM_H, NPM_W, 3):
        fail(f"{js_path}: expected float16 {NPM_W}x{NPM_H} RGB, got {px.dtype} {px.shape}")
    return px.astype(np.float64)


# ----------------------------------------------------------------------------- processing


def downsample(img: np.ndarray, where: str, size: tuple[int, int] | None = None) -> np.ndarray:
    """Box-average (area average in linear space) to size=(w, h), default the output size."""
    ow, oh = size or (OUT_W, OUT_H)
    h, w, _ = img.shape
    f = h // oh
    if f < 1 or f * oh != h or f * ow != w:
        fail(f"{where}: {w}x{h} is not an integer multiple of {ow}x{oh}")
    return img.reshape(oh, f, ow, f, 3).mean(axis=(1, 3)) if f > 1 else img


def spill_overflow(img: np.ndarray) -> tuple[np.ndarray, int]:
    """Move radiance above HALF_MAX to horizontal neighbours (same row, same solid
    angle), so the float16 map keeps the energy of e.g. a sun pixel."""
    img = img.copy()
    n = int((img > HALF_MAX).sum())
    for _ in range(1000):
        over = np.maximum(img - HALF_MAX, 0.0)
        if not over.any():
            return img, n
        img -= over
        img += 0.5 * (np.roll(over, 1, axis=1) + np.roll(over, -1, axis=1))
    fail("radiance too high to fit float16 even after spreading")
    raise AssertionError


def finish(img: np.ndarray, where: str) -> tuple[np.ndarray, list[str]]:
    notes = []
    if not np.all(np.isfinite(img)):
        fail(f"{where}: non-finite radiance")
    neg = int((img < 0).sum())
    if neg:
        img = np.maximum(img, 0.0)
        notes.append(f"{neg} negative DWAB ringing values clamped to 0")
    img, n = spill_overflow(img)
    if n:
        notes.append(f"{n} channel values above 65504 spread to row neighbours")
    return img.astype(np.float16), notes


def encode_exr(px: np.ndarray) -> tuple[bytes, str]:
    best: tuple[bytes, str] | None = None
    with tempfile.TemporaryDirectory() as tmp:
        for comp, label in ((OpenEXR.ZIP_COMPRESSION, "ZIP"), (OpenEXR.PIZ_COMPRESSION, "PIZ")):
            path = os.path.join(tmp, f"{label}.exr")
            header = {"compression": comp, "type": OpenEXR.scanlineimage}
            with OpenEXR.File(header, {"RGB": np.ascontiguousarray(px)}) as f:
                f.write(path)
            data = Path(path).read_bytes()
            if best is None or len(data) < len(best[0]):
                best = (data, label)
    assert best is not None
    return best


def stats(px: np.ndarray) -> tuple[list[float], list[float]]:
    """Solid-angle-weighted mean radiance and max radiance per channel (R, G, B)."""
    a = px.astype(np.float64)
    wgt = np.sin((np.arange(OUT_H) + 0.5) / OUT_H * np.pi)[:, None, None]
    mean = (a * wgt).sum(axis=(0, 1)) / (wgt.sum() * OUT_W)
    return [float(f"{v:.6g}") for v in mean], [float(f"{v:.6g}") for v in a.max(axis=(0, 1))]


def log_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(np.log1p(np.maximum(a, 0)) - np.log1p(np.maximum(b, 0))).mean())


# ----------------------------------------------------------------------------- main


def check_inputs(args) -> str:
    npm = args.npm_dir
    if not npm.is_dir():
        fail(f"--npm-dir {npm}: no such directory")
    pkg = npm / "package.json"
    if not pkg.is_file() or not (npm / "hdri").is_dir():
        fail(f"--npm-dir {npm}: not an unpacked @pmndrs/assets package (needs package.json and hdri/)")
    meta = json.loads(pkg.read_text())
    if meta.get("name") != "@pmndrs/assets":
        fail(f"--npm-dir {npm}: package.json names {meta.get('name')!r}, not '@pmndrs/assets'")
    for stem in NPM_MAPS:
        if not (npm / "hdri" / f"{stem}.exr.js").is_file():
            fail(f"--npm-dir {npm}: missing hdri/{stem}.exr.js")
    if not args.drei_dir.is_dir():
        fail(f"--drei-dir {args.drei_dir}: no such directory")
    if not list((args.drei_dir / "hdri").glob(f"*{DREI_SUFFIX}")):
        fail(f"--drei-dir {args.drei_dir}: no hdri/*{DREI_SUFFIX} (needs a pmndrs/drei-assets clone)")
    if args.assets_dir is not None:
        if not args.assets_dir.is_dir():
            fail(f"--assets-dir {args.assets_dir}: no such directory")
        for stem, name in NPM_MAPS.items():
            if name is None and not (args.assets_dir / "src" / "hdri" / f"{stem}.hdr").is_file():
                fail(f"--assets-dir {args.assets_dir}: missing src/hdri/{stem}.hdr (needs a pmndrs/assets clone)")
    return f"@pmndrs/assets@{meta.get('version')}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--npm-dir", type=Path, required=True, help="unpacked @pmndrs/assets npm package")
    ap.add_argument("--drei-dir", type=Path, required=True, help="clone of github pmndrs/drei-assets")
    ap.add_argument("--assets-dir", type=Path, help="clone of github pmndrs/assets (lossless sources of the npm maps)")
    ap.add_argument("--drei-commit", help="drei-assets commit to record when --drei-dir is not a git clone")
    ap.add_argument("--assets-commit", help="pmndrs/assets commit to record when --assets-dir is not a git clone")
    ap.add_argument("--out", type=Path, required=True, help="output folder, e.g. uhrtex/captures/hdri")
    ap.add_argument(
        "--width", type=int, default=512, choices=(512, 256, 128), help="output width (height = width/2); default 512"
    )
    args = ap.parse_args(argv)
    global OUT_W, OUT_H
    OUT_W, OUT_H = args.width, args.width // 2

    npm_id = check_inputs(args)
    drei_id = f"github:pmndrs/drei-assets@{git_head(args.drei_dir, args.drei_commit, '--drei-commit')}"
    assets_id = None
    if args.assets_dir is not None:
        assets_id = f"github:pmndrs/assets@{git_head(args.assets_dir, args.assets_commit, '--assets-commit')}"

    entries: dict[str, dict] = {}
    drei_files = sorted((args.drei_dir / "hdri").glob(f"*{DREI_SUFFIX}"))
    for p in drei_files:
        name = p.name[: -len(DREI_SUFFIX)]
        img = read_rgbe(p.read_bytes(), str(p))
        px, notes = finish(downsample(img, str(p)), str(p))
        entries[slugify(name)] = dict(
            polyhaven_name=name,
            pmndrs_name=None,
            px=px,
            notes=notes,
            source=f"{drei_id} hdri/{p.name}",
            res=f"{img.shape[1]}x{img.shape[0]}",
        )
    drei_names = {e["polyhaven_name"] for e in entries.values()}
    for e in entries.values():
        for stem, name in NPM_MAPS.items():
            if name == e["polyhaven_name"]:
                e["pmndrs_name"] = stem

    log = []
    for stem, name in NPM_MAPS.items():
        rel = f"hdri/{stem}.exr.js"
        if name is not None:
            if name not in drei_names:
                fail(f"--drei-dir {args.drei_dir}: missing hdri/{name}{DREI_SUFFIX} (same map as npm {rel})")
            log.append(f"dedup: npm {rel} = drei-assets {name}{DREI_SUFFIX} (kept 1024x512)")
            continue
        npm_px = read_npm_exr(args.npm_dir / rel)
        if assets_id is not None:
            src = f"src/hdri/{stem}.hdr"
            img = read_rgbe((args.assets_dir / src).read_bytes(), src)
            d = log_diff(downsample(img, src, (NPM_W, NPM_H)), npm_px)
            if d > 0.05:
                fail(f"--assets-dir {src} does not match npm {rel} (mean log difference {d:.3f})")
            px, notes = finish(downsample(img, src), src)
            source, res = f"{assets_id} {src}", f"{img.shape[1]}x{img.shape[0]}"
            notes.append(f"lossless source of npm:{npm_id} {rel} (mean log diff to it {d:.4f})")
        else:
            if stem in NPM_BROKEN:
                log.append(f"skipped: npm {rel}: {NPM_BROKEN[stem]}; pass --assets-dir for the lossless source")
                continue
            px, notes = finish(downsample(npm_px, rel), rel)
            source, res = f"npm:{npm_id} {rel}", f"{NPM_W}x{NPM_H}"
        entries[slugify(stem)] = dict(polyhaven_name=None, pmndrs_name=stem, px=px, notes=notes, source=source, res=res)

    args.out.mkdir(parents=True, exist_ok=True)
    records = []
    for slug in sorted(entries):
        e = entries[slug]
        data, comp = encode_exr(e["px"])
        (args.out / f"{slug}.exr").write_bytes(data)
        mean, mx = stats(e["px"])
        records.append(
            dict(
                slug=slug,
                polyhaven_name=e["polyhaven_name"],
                pmndrs_name=e["pmndrs_name"],
                source=e["source"],
                original_resolution=e["res"],
                compression=comp,
                sha256=hashlib.sha256(data).hexdigest(),
                mean_radiance=mean,
                max_radiance=mx,
                notes=e["notes"],
            )
        )
        print(f"{slug:22s} {e['res']:>9s} {comp} {len(data):7d} B  {e['source']}")
    (args.out / "sources.json").write_text(json.dumps(records, indent=2) + "\n")
    (args.out / "LICENSE.md").write_text(license_text(records, npm_id, drei_id, assets_id))
    stale = sorted(p.name for p in args.out.glob("*.exr") if p.stem not in entries)
    if stale:
        log.append(f"warning: {args.out} holds .exr files this run did not make: {', '.join(stale)}")
    for line in log:
        print(line)
    total = sum((args.out / f"{r['slug']}.exr").stat().st_size for r in records)
    print(f"{len(records)} maps, {total} bytes of EXR in {args.out}")
    return 0


def license_text(records: list[dict], npm_id: str, drei_id: str, assets_id: str | None) -> str:
    lines = [
        "# HDR environment maps: CC0 1.0 (public domain)",
        "",
        "Every `.exr` in this folder is derived from an HDRI published by",
        "[Poly Haven](https://polyhaven.com/hdris) (formerly HDRI Haven) under",
        "[CC0 1.0 Universal](https://creativecommons.org/publicdomain/zero/1.0/):",
        "no rights reserved, no attribution required (given here as a courtesy).",
        "The derived files here are likewise dedicated to the public domain under CC0 1.0.",
        "",
        "They were obtained from CC0 redistributions by pmndrs (Poly Haven as origin):",
        "",
        f"- `{drei_id}`: `hdri/<polyhaven_name>_1k.hdr`, Radiance RGBE 1024x512",
        (
            f"- npm `{npm_id}` (licence CC0-1.0): `hdri/<name>.exr.js`, base64 EXR 512x256 DWAB;"
            ' its README describes them as "a selection of Polyhaven HDRIs"'
        ),
    ]
    if assets_id:
        lines.append(
            f"- `{assets_id}` (licence CC0-1.0): `src/hdri/<name>.hdr`, the lossless"
            " 1024x512 files the npm package was built from"
        )
    lines += [
        "",
        "Maps that pmndrs published under a theme name (`hall`, `sky`, ...) without the",
        "Poly Haven asset name are listed with that name; their Poly Haven name is not recorded.",
        "",
        "Derivation (`tools/derive_hdris.py`): decode, box-average to",
        f"{OUT_W}x{OUT_H} in linear space, store as float16 RGB with lossless ZIP or PIZ compression.",
        "Orientation unchanged (equirectangular, row 0 = zenith, as in the source).",
        "",
        "| slug | Poly Haven name | pmndrs name | source |",
        "|---|---|---|---|",
    ]
    for r in records:
        ph = r["polyhaven_name"] or "(not recorded)"
        lines.append(f"| `{r['slug']}` | {ph} | {r['pmndrs_name'] or '-'} | {r['source']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
