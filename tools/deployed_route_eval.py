"""Held-out test captures through the route a user's portrait takes: the face found by the landmark model, its hull
as Stage 1's face mask and the uv prior from its landmarks (`uhrtex.pipeline.portrait`), instead of `+exp=compare`'s
Stage-1-predicted mask. Prints per-capture lines and one JSON line: per model, the mean PSNR of each map and the mean
micronormal angle inside GT mask ∩ hull, and with two models the paired differences (second − first).

    python tools/deployed_route_eval.py --compare-run logs/compare/runs/<run> NAME=MODEL [NAME=MODEL]

MODEL: a bundle, or a folder of stage checkpoints (`Reconstructor.load`). The test captures are those of the compare
run's config (its capture store and split)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MAPS = ("albedo", "micronormal", "specular")


def scores(rec, cap: dict) -> dict[str, float]:
    """One capture as `uhrtex.pipeline.portrait` runs a photo: `find_face`, its hull as the face mask, the face for
    the uv prior; maps cut to the hull; the project's masked metrics inside GT mask ∩ hull."""
    from uhrtex.face.front import face_mask, find_face
    from uhrtex.metrics.image import angular_error, psnr

    image = cap["image"]
    face = find_face(image.float(), name=cap["key"]).face
    hull = face_mask(face, *image.shape[-2:])
    out = rec(image, face_mask=hull, face=face)
    inside = ((cap["mask"] > 0.5) & (hull > 0.5)).float()[None]
    row = {m: float(psnr((out[m] * hull)[None], cap[m][None], inside)[0]) for m in MAPS}
    row["angle"] = float(angular_error(out["micronormal"][None], cap["micronormal"][None], inside)[0])
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--compare-run", required=True, help="a +exp=compare run folder (its config names the test set)")
    ap.add_argument("models", nargs="+", help="NAME=bundle-or-checkpoint-folder, one or two")
    args = ap.parse_args()
    import experiments  # noqa: F401  (the process memory policy)
    from omegaconf import OmegaConf

    from experiments.compare import test_keys
    from uhrtex.captures.store import CaptureStore
    from uhrtex.pipeline import Reconstructor

    cfg_file = Path(args.compare_run) / "config_resolved.yaml"
    if not cfg_file.is_file():
        raise SystemExit(f"{args.compare_run}: no config_resolved.yaml; pass a +exp=compare run folder")
    if any("=" not in m for m in args.models) or not 1 <= len(args.models) <= 2:
        raise SystemExit("pass one or two models as NAME=PATH (a bundle or a folder of stage checkpoints)")
    cfg = OmegaConf.load(cfg_file)
    store = CaptureStore(cfg.data.store)
    keys = test_keys(cfg)
    rows: dict[str, list[dict]] = {}
    for name, path in (m.split("=", 1) for m in args.models):
        rec = Reconstructor.load(path)
        rows[name] = []
        for k in keys:
            cap = {"key": k, **store.read(k, names=("image", "mask", *MAPS))}
            rows[name].append(scores(rec, cap))
            print(name, k, {m: round(v, 2) for m, v in rows[name][-1].items()}, file=sys.stderr, flush=True)
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    line: dict = {"captures": len(keys), "compare_run": str(args.compare_run),
                  "mean": {n: {m: round(mean([r[m] for r in rs]), 3) for m in (*MAPS, "angle")} for n, rs in rows.items()}}
    if len(rows) == 2:
        (na, a), (nb, b) = rows.items()
        line["paired"] = {m: {"delta": round(mean([y[m] - x[m] for x, y in zip(a, b)]), 3),
                              "higher_in": sum(y[m] > x[m] for x, y in zip(a, b))} for m in (*MAPS, "angle")}
        line["paired_order"] = f"{nb} - {na}"
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
