"""bf16 against fp32 reconstruction maps at a preset's full size (the speed issue's quality numbers); one JSON line.

    python benchmarks/precision_quality.py [--preset paper] [--size 4096]

Random-weight checkpoints built from the preset's configs (as `benchmarks/reconstruct.py` writes them), made a
little less arbitrary in the way `tests/test_precision.py` does at the cpu preset: the HFDR head gets feature
weights, the texture heads put micronormals around +z, and the hash grid carries values of a trained grid's size.
One textured portrait runs through the Reconstructor in fp32 and in bf16; prints albedo and specular PSNR and the
mean micronormal angle between the two (the test's bar: ≥ 45 dB, ≥ 45 dB, ≤ 0.5°).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.reconstruct import write_checkpoints  # noqa: E402
from tests.test_precision import less_arbitrary, mean_angle_deg, portrait, psnr  # noqa: E402
from uhrtex.pipeline.reconstructor import Reconstructor  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="paper")
    p.add_argument("--size", type=int, default=None, help="portrait side (default: the preset's input size)")
    a = p.parse_args()
    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)  # the random weights themselves: the same numbers on every run
        sizes = write_checkpoints(a.preset, Path(tmp))
        out = {}
        for prec in ("fp32", "bf16"):
            torch.manual_seed(0)
            rec = Reconstructor.load(tmp, precision=prec)
            less_arbitrary(rec.stage1.gde, rec.hfdr, rec.stage1.hash_encoder)
            image = portrait(a.size or sizes["input_size"])
            out[prec] = {k: v.float() for k, v in rec(image).items() if k in ("albedo", "micronormal", "specular")}
    f, b = out["fp32"], out["bf16"]
    print(json.dumps({"preset": a.preset, "size": a.size or sizes["input_size"],
                      "albedo_psnr_db": round(psnr(f["albedo"], b["albedo"]), 2),
                      "specular_psnr_db": round(psnr(f["specular"], b["specular"]), 2),
                      "micronormal_mean_angle_deg": round(mean_angle_deg(f["micronormal"], b["micronormal"]), 3)}))


if __name__ == "__main__":
    main()
