"""Time real training steps (forward + loss + backward + Adam) of one stage on CPU; prints one JSON line.

    python benchmarks/train_step.py --stage hfdr --preset paper [--batch-size 2] [--steps 3] [--threads N]

The module is built from the real model config (`model=<stage> preset=<preset>`), fed a synthetic batch
of the stage's shapes (patches for hfdr, global frames for uv_normal/gde), and stepped with the config's
optimizer. patches_per_s counts samples (patches for hfdr); the first step is a warm-up and not timed.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hydra.core.global_hydra import GlobalHydra  # noqa: E402
from hydra.utils import instantiate  # noqa: E402

from experiments.cli import compose_config  # noqa: E402
from uhrtex import maps  # noqa: E402


def build(stage: str, preset: str):
    GlobalHydra.instance().clear()
    overrides = [f"model={stage}", f"preset={preset}"]
    if stage == "hfdr":
        overrides.append("model.gde_ckpt=unused")
    cfg = compose_config(overrides)
    return instantiate(cfg.model), int(cfg.patch_size if stage == "hfdr" else cfg.global_size)


def batch_for(stage: str, b: int, size: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    batch = {name: torch.rand(b, n, size, size, generator=g) for name, n in maps.CAPTURE.groups}
    batch.update(uv_pred=batch["uv"], normal_pred=batch["normal"], mask_pred=batch["mask"])  # Stage-1 cache entries
    if stage == "hfdr":
        batch["guide"] = torch.rand(b, maps.TEXTURE.channels, size, size, generator=g)
    return batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", choices=("uv_normal", "gde", "hfdr"), default="hfdr")
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up step")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    module, size = build(args.stage, args.preset)
    module.train()
    optimizer = module.optimizer_factory(params=[p for p in module.parameters() if p.requires_grad])
    batch = batch_for(args.stage, args.batch_size, size)

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        loss = module.loss_terms(module.predict_batch(batch), batch)["loss"]
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    step()
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    sec = statistics.median(times)
    print(json.dumps({
        "patches_per_s": round(args.batch_size / sec, 4), "peak_rss_gb": round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "step_s": round(sec, 2), "stage": args.stage, "preset": args.preset, "batch_size": args.batch_size,
        "size": size, "threads": torch.get_num_threads(), "steps": args.steps,
        "params": sum(p.numel() for p in module.parameters()),
        "hidden_widths": [b.conv.out_channels for b in module.net.layers],
    }))


if __name__ == "__main__":
    main()
