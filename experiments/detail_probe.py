"""Does the HFDR use the full-resolution input? A probe for the detail claim (paper §2.2, §5.1).

    python -m experiments.detail_probe --ckpt logs/ --store data/captures/2048 [--factor 8] [--max-captures 2]

On held-out captures (the test split by subject, as training and +exp=compare use), it runs the trained
pipeline on the portrait (`ours`) and on the portrait with its detail band removed (area-downsampled ×factor
and bicubic-upsampled back: `lowres_input`), and prints one JSON line with, per map:
* the detail metrics of both against the GT (`uhrtex.metrics.detail`: band_psnr, band_corr, hf_ratio);
* `input_use`: band energy of (ours − lowres_input) over the GT's band energy. 0 means the output does not
  change when the input loses its detail, i.e. the network ignores the full-resolution pixels;
* the same for the guide alone (`gde_only`, bilinear-upsampled), the "no HFDR" reference.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

import torch
import torch.nn.functional as F

from datamodules.captures import split_subjects
from uhrtex import maps
from uhrtex.captures.format import split_key
from uhrtex.captures.store import CaptureStore
from uhrtex.metrics.detail import band_energy, detail_metrics
from uhrtex.pipeline.reconstructor import Reconstructor
from uhrtex.stage1.run import GUIDE_KEY


def lowpass(image: torch.Tensor, factor: int) -> torch.Tensor:
    small = F.interpolate(image[None], scale_factor=1 / factor, mode="area")
    return F.interpolate(small, size=image.shape[-2:], mode="bicubic", align_corners=False)[0].clamp(0, 1)


def texture(out: dict) -> torch.Tensor:
    return maps.TEXTURE.cat({n: out[n][None].float() for n in maps.TEXTURE.names})


def probe(rec: Reconstructor, store: CaptureStore, keys: list[str], factor: int) -> dict[str, float]:
    sums: dict[str, list[float]] = {}
    for key in keys:
        cap = store.read(key, names=("image", "mask", *maps.TEXTURE.names))
        gt = maps.TEXTURE.cat({n: cap[n][None] for n in maps.TEXTURE.names})
        mask = cap["mask"][None]
        full = rec(cap["image"])
        low = rec(lowpass(cap["image"], factor))
        guide = F.interpolate(full[GUIDE_KEY][None].float(), size=gt.shape[-2:], mode="bilinear", align_corners=False)
        methods = {"ours": texture(full), "lowres_input": texture(low), "gde_only": guide.clamp(0, 1)}
        gt_energy = maps.TEXTURE.split(gt)
        for method, pred in methods.items():
            for k, v in detail_metrics(pred, gt, mask, factor).items():
                sums.setdefault(f"{method}/{k}", []).append(float(v[0]))
        diff = maps.TEXTURE.split(methods["ours"] - methods["lowres_input"])
        for name in maps.TEXTURE.names:
            ref = float(band_energy(gt_energy[name], mask, factor)[0])
            sums.setdefault(f"input_use/{name}", []).append(float(band_energy(diff[name], mask, factor)[0]) / ref)
    return {k: sum(v) / len(v) for k, v in sums.items() if v and not any(math.isnan(x) for x in v)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", required=True, help="checkpoint folder (logs/ or uv_normal/gde/hfdr .ckpt) or bundle")
    ap.add_argument("--store", required=True, help="capture store at the checkpoints' input size")
    ap.add_argument("--factor", type=int, default=8)
    ap.add_argument("--max-captures", type=int, default=2)
    ap.add_argument("--split-seed", type=int, default=0)
    ap.add_argument("--precision", default="fp32", choices=("auto", "bf16", "fp32"),
                    help="fp32 by default: bf16 rounding noise would count as detail")
    ap.add_argument("--seam-keep-detail", action=argparse.BooleanOptionalAction, default=True,
                    help="--no-seam-keep-detail: the paper's seam blur (as experiments.reconstruct)")
    args = ap.parse_args(argv)
    rec = Reconstructor.load(args.ckpt, precision=args.precision)
    rec.seams.keep_detail = args.seam_keep_detail
    store = CaptureStore(args.store)
    keys = store.keys()
    test = set(split_subjects([split_key(k)[0] for k in keys], seed=args.split_seed)["test"])
    keys = [k for k in keys if split_key(k)[0] in test][: args.max_captures]
    result = {"captures": keys, "factor": args.factor, **probe(rec, store, keys, args.factor)}
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in result.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
