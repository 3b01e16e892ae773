"""GDE guides on any captures, for more held-out faces than a training store's test split (e.g. Table 2's runs).

    python -m experiments.guide_eval --ckpt 'logs/ablation_hash/runs/<run>/{variant}_seed{seed}' \
        --store data/captures/2048 --keys s0004__l00__c00 --store data/captures/2048_heldout --size 512 [--seeds 0 1 2]

Each `--ckpt` is a GDE checkpoint file or a run folder (its newest `checkpoints/best_*.ckpt`, the one Table 2
tests, else `last.ckpt`); `{variant}` expands to hash / nohash and `{seed}` to each of `--seeds`. The guide is
made from the capture's global view with the ground-truth uv / normal / mask (as `+exp=ablation_hash` trains and
tests) and scored against the GT maps at the global size over the GT face mask: PSNR and SSIM per map
(`uhrtex.metrics.image`). Prints one JSON line: per checkpoint, per capture and map, and the mean over captures.
The i-th `--keys` (comma-separated) picks captures of the i-th `--store`; a store without one gives all its captures.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from experiments.ablation import VARIANTS
from uhrtex import maps
from uhrtex.captures.store import CaptureStore
from uhrtex.checkpoint import build_stage, read_stage
from uhrtex.metrics.image import psnr, ssim
from uhrtex.stage1.run import gde_input

def resolve_checkpoint(path: str) -> Path:
    p = Path(path)
    if p.is_file():
        return p
    best = sorted((p / "checkpoints").glob("best_*.ckpt"))
    if best:
        return best[-1]
    if (p / "checkpoints" / "last.ckpt").is_file():
        return p / "checkpoints" / "last.ckpt"
    raise FileNotFoundError(f"--ckpt {path}: no checkpoint file and no checkpoints/best_*.ckpt or last.ckpt in it; "
                            "pass a GDE .ckpt or a GDE run folder")


def expand(patterns: list[str], seeds: list[int]) -> list[str]:
    out = []
    for pattern in patterns:
        for variant in [v for v, _, _ in VARIANTS] if "{variant}" in pattern else [None]:
            for seed in seeds if "{seed}" in pattern else [None]:
                out.append(pattern.replace("{variant}", str(variant)).replace("{seed}", str(seed)))
    return out


def captures(stores: list[tuple[str, list[str] | None]], size: int):
    for path, keys in stores:
        store = CaptureStore(path)
        for key in keys or store.keys():
            yield key, store.read_global(key, size)


@torch.no_grad()
def score(ckpt: Path, caps: list[tuple[str, dict]]) -> dict[str, dict[str, float]]:
    gde = build_stage(read_stage(ckpt, "gde"))
    rows = {}
    for key, cap in caps:
        b = {n: t[None].float() for n, t in cap.items()}
        guide = maps.TEXTURE.split(gde["net"](gde_input(b["image"], b["uv"], b["normal"], gde.get("hash_encoder")),
                                              b["mask"]).float())
        face = b["mask"] > 0.5
        rows[key] = {f"{n}/{m}": float(f(guide[n], b[n], face)[0]) for n in maps.TEXTURE.names
                     for m, f in (("psnr", psnr), ("ssim", ssim))}
    return rows


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", action="append", required=True, help="GDE .ckpt or run folder; {variant} {seed}")
    parser.add_argument("--store", action="append", required=True)
    parser.add_argument("--keys", action="append", default=None, help="comma-separated keys of the i-th --store")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--size", type=int, required=True, help="the GDE's global size (preset global_size)")
    args = parser.parse_args(argv)
    keys = {i: k.split(",") for i, k in enumerate(args.keys or [])}
    if len(keys) > len(args.store):
        parser.error("more --keys than --store: the i-th --keys picks captures of the i-th --store")
    stores = [(s, keys.get(i)) for i, s in enumerate(args.store)]
    caps = list(captures(stores, args.size))
    out = {}
    for path in expand(args.ckpt, args.seeds):
        rows = score(resolve_checkpoint(path), caps)
        mean = {k: statistics.mean(r[k] for r in rows.values()) for k in next(iter(rows.values()))}
        out[path] = {"mean": mean, "per_capture": rows}
    print(json.dumps({"size": args.size, "captures": [k for k, _ in caps], "checkpoints": out}))
    return out


if __name__ == "__main__":
    main()
