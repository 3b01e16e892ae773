"""Random full-resolution patches: CaptureStore chunks vs decoding the capture's image files; one JSON line.

    python benchmarks/patch_io.py [--size 4096] [--patch 512] [--captures 2] [--store-patches 40]
                                  [--decode-patches 2] [--renderer auto|builtin|placeholder] [--workdir DIR]

Both paths read the same captures in the same run and return all seven maps (14 channels) of a
random patch as float32: the store reads only the chunks the patch touches; the baseline decodes
the full-size files of the ingest layout (16-bit PNG + float EXR uv) and crops. The captures are
rendered once into --workdir and reused. Fine noise is added to every map so that compression sees
pore-like detail instead of smooth fields (the placeholder renderer's maps are smooth).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import time
from pathlib import Path

import torch

from uhrtex.common import io as uio
from uhrtex.captures.format import Capture
from uhrtex.captures.generate import plan, renderer
from uhrtex.captures.ingest import map_file, write_capture_folder
from uhrtex.captures.store import CaptureStore, default_chunk
from uhrtex.maps import CAPTURE


def _renderer_name(choice: str) -> str:
    if choice != "auto":
        return choice
    try:
        import uhrtex.captures.render  # noqa: F401

        return "builtin"
    except ModuleNotFoundError:
        return "placeholder"


def _with_detail(capture: Capture, seed: int) -> Capture:
    g = torch.Generator().manual_seed(seed)
    inside = capture.maps["mask"] > 0
    maps = {}
    for name, m in capture.maps.items():
        if name == "mask":
            maps[name] = m
            continue
        noisy = (m + 0.01 * (torch.rand(m.shape, generator=g) - 0.5)).clamp(0, 1)
        maps[name] = noisy if name == "image" else noisy * inside
    return Capture(maps, capture.meta)


def prepare(workdir: Path, size: int, n: int, renderer_name: str) -> tuple[CaptureStore, dict[str, Path], dict]:
    tag = f"{renderer_name}_{size}_{n}"
    root = workdir / tag
    store_url, files_root = root / "store", root / "files"
    store = CaptureStore(store_url, mode="a")
    items = plan(n, 1)
    render_s = []
    if len(store.keys()) < n or not all((files_root / it.key / "meta.json").exists() for it in items):
        shutil.rmtree(root, ignore_errors=True)
        store = CaptureStore(store_url, mode="a")
        render = renderer(renderer_name)
        for it in items:
            t0 = time.perf_counter()
            cap = render(subject_seed=it.subject_seed, lighting=it.lighting, camera_seed=it.camera_seed, resolution=size)
            render_s.append(time.perf_counter() - t0)
            cap = _with_detail(cap, it.subject_seed).quantized()
            store.write(cap.key, cap)
            write_capture_folder(files_root / cap.key, cap, bits=16)
            del cap
    keys = store.keys()
    folders = {k: files_root / k for k in keys}
    sizes = {"store_mb_per_capture": round(_du(store_url) / n / 2**20, 1),
             "files_mb_per_capture": round(_du(files_root) / n / 2**20, 1)}
    if render_s:
        sizes["render_s_per_capture"] = round(statistics.mean(render_s), 1)
    return CaptureStore(store_url), folders, sizes


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def read_decoded_patch(folder: Path, box) -> dict[str, torch.Tensor]:
    y, x, h, w = box
    out = {}
    for name in CAPTURE.names:
        full = uio.read_image(map_file(folder, name), alpha="keep")
        out[name] = full[: CAPTURE.width(name), y:y + h, x:x + w].clone()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--patch", type=int, default=512)
    parser.add_argument("--captures", type=int, default=2)
    parser.add_argument("--store-patches", type=int, default=40)
    parser.add_argument("--decode-patches", type=int, default=2)
    parser.add_argument("--renderer", default="auto", choices=["auto", "builtin", "placeholder"])
    parser.add_argument("--workdir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "uhrtex_patch_io")
    args = parser.parse_args()

    name = _renderer_name(args.renderer)
    store, folders, sizes = prepare(args.workdir, args.size, args.captures, name)
    keys = list(folders)
    rng = random.Random(0)

    def random_box():
        return (rng.randrange(args.size - args.patch + 1), rng.randrange(args.size - args.patch + 1), args.patch, args.patch)

    store.read(keys[0], box=random_box())  # open handles once (a training worker keeps them)
    t0 = time.perf_counter()
    for i in range(args.store_patches):
        patch = store.read(keys[i % len(keys)], box=random_box())
    store_s = time.perf_counter() - t0
    assert sum(v.shape[0] for v in patch.values()) == CAPTURE.channels

    t0 = time.perf_counter()
    for i in range(args.decode_patches):
        box = random_box()
        decoded = read_decoded_patch(folders[keys[i % len(keys)]], box)
    decode_s = time.perf_counter() - t0
    same = all(torch.equal(decoded[n], store.read(keys[(args.decode_patches - 1) % len(keys)], [n], box)[n]) for n in CAPTURE.names)

    store_rate = args.store_patches / store_s
    decode_rate = args.decode_patches / decode_s
    print(json.dumps({
        "store_patches_per_s": round(store_rate, 2),
        "decode_crop_patches_per_s": round(decode_rate, 3),
        "ratio": round(store_rate / decode_rate, 1),
        "size": args.size, "patch": args.patch, "channels": CAPTURE.channels, "captures": len(keys),
        "renderer": name, "store_patches": args.store_patches, "decode_patches": args.decode_patches,
        "identical_values": same, "store_layout": f"uint16, chunks {default_chunk(args.size)}², blosc-{store.compressor}", **sizes,
        "threads": torch.get_num_threads(), "load_avg_1min": round(os.getloadavg()[0], 2),
    }))


if __name__ == "__main__":
    main()
