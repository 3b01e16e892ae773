"""Time real training steps (forward + loss + backward + Adam) of one stage on CPU; prints one JSON line.

    python benchmarks/train_step.py --stage hfdr --preset paper [--batch-size 2] [--steps 3] [--threads N]
        [--precision fp32,bf16-mixed] [--loss-steps 50]

Each precision in `--precision` gets its own copy of the module (same initial weights); their timed steps are
interleaved so a shared machine's load hits both alike. bf16-mixed is what Lightning's `trainer.precision=
bf16-mixed` does: float32 weights and optimizer, the forward under `torch.autocast(bfloat16)`. With two precisions
the line has `speedup` (samples/s ratio, the second over the first). `--loss-steps N`: both train N steps from the
same weights on the same batch stream; `loss_rel_diff` gives the largest and mean |loss_b - loss_a| / loss_a.

The module is built from the real model config (`model=<stage> preset=<preset>`), fed a synthetic batch
of the stage's shapes (patches for hfdr, global frames for uv_normal/gde), and stepped with the config's
optimizer. patches_per_s counts samples (patches for hfdr); the first step is a warm-up and not timed.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
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


def batch_for(stage: str, b: int, size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    batch = {name: torch.rand(b, n, size, size, generator=g) for name, n in maps.CAPTURE.groups}
    batch.update(uv_pred=batch["uv"], normal_pred=batch["normal"], mask_pred=batch["mask"])  # Stage-1 cache entries
    if stage == "hfdr":
        batch["guide"] = torch.rand(b, maps.TEXTURE.channels, size, size, generator=g)
    return batch


def make_stepper(module, batch_fn, precision: str):
    optimizer = module.optimizer_factory(params=[p for p in module.parameters() if p.requires_grad])
    ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if precision == "bf16-mixed" else contextlib.nullcontext

    def step(i: int = 0) -> float:
        batch = batch_fn(i)
        optimizer.zero_grad(set_to_none=True)
        with ctx():
            loss = module.loss_terms(module.predict_batch(batch), batch)["loss"]
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", choices=("uv_normal", "gde", "hfdr"), default="hfdr")
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up step")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--precision", default="fp32,bf16-mixed", help="comma-separated: fp32, bf16-mixed")
    parser.add_argument("--loss-steps", type=int, default=0, help="also compare the loss over this many steps")
    parser.add_argument("--malloc", choices=("reuse", "default"), default="reuse",
                        help="reuse: glibc keeps freed memory, as experiments.train does on CPU (uhrtex.common.memory)")
    args = parser.parse_args()
    from uhrtex.common.memory import keep_freed_memory

    with keep_freed_memory() if args.malloc == "reuse" else contextlib.nullcontext():
        run(args)


def run(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    precisions = [p.strip() for p in args.precision.split(",")]
    torch.manual_seed(0)
    module, size = build(args.stage, args.preset)
    module.train()
    fixed = batch_for(args.stage, args.batch_size, size)
    modules = {p: copy.deepcopy(module) for p in precisions}
    steps = {p: make_stepper(modules[p], lambda i: fixed, p) for p in precisions}
    for p in precisions:
        steps[p]()  # warm-up
    times: dict[str, list[float]] = {p: [] for p in precisions}
    for _ in range(args.steps):
        for p in precisions:
            t0 = time.perf_counter()
            steps[p]()
            times[p].append(time.perf_counter() - t0)
    sec = {p: statistics.median(t) for p, t in times.items()}
    result = {
        "patches_per_s": {p: round(args.batch_size / s, 4) for p, s in sec.items()},
        "step_s": {p: round(s, 2) for p, s in sec.items()},
    }
    if len(precisions) == 2:
        result["speedup"] = round(sec[precisions[0]] / sec[precisions[1]], 3)
    if args.loss_steps:
        def stream(i: int) -> dict[str, torch.Tensor]:
            return batch_for(args.stage, args.batch_size, size, seed=i)

        losses = {}
        for p in precisions:
            m = copy.deepcopy(module)
            step = make_stepper(m, stream, p)
            losses[p] = [step(i) for i in range(args.loss_steps)]
        a, b = (losses[p] for p in precisions[:2])
        rel = [abs(y - x) / abs(x) for x, y in zip(a, b)]
        result["loss_rel_diff"] = {"max": round(max(rel), 4), "mean": round(statistics.mean(rel), 4),
                                   "first_last": {p: [round(v[0], 4), round(v[-1], 4)] for p, v in losses.items()}}
    result.update({
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "stage": args.stage, "preset": args.preset, "batch_size": args.batch_size, "size": size,
        "threads": torch.get_num_threads(), "steps": args.steps, "malloc": args.malloc, "params": sum(p.numel() for p in module.parameters()),
        "hidden_widths": [b.conv.out_channels for b in module.net.layers],
    })
    print(json.dumps(result))


if __name__ == "__main__":
    main()
