"""GPU timings, side by side in one run: the torch reference backends against tinycudann / nvdiffrast, a paper-preset
reconstruction and an HFDR training step. Prints one JSON line; needs CUDA (run it where a GPU is: see docs/usage.md).

    python benchmarks/gpu.py [--repeats 5] [--skip tcnn nvdiffrast]

* `hash_*_ms`: the GDE's hash grid (L=4, F=2, levels 16..1024, log2T 19) on a 1×2×1024² uv map, forward and
  forward+backward, torch backend and tcnn; `hash_speedup` = torch / tcnn (forward+backward).
* `raster_*_ms`: rasterize + interpolate + texture (1024² 7-channel, linear) of the ICT mean head at 2048², torch
  backend and nvdiffrast; `raster_speedup`.
* `reconstruct_paper_s`: a 4096² portrait through the paper preset's networks (width 32, random weights, bf16) with
  `Reconstructor`, per stage; `gpu_name`, `torch`.
* `hfdr_train_step_ms`: one Adam step of the HFDR at the detail preset (batch 8 × 256², width 8, bf16 autocast).
Every figure is the median of `repeats` after one warm-up, CUDA-synchronised.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _time(fn, repeats: int) -> float:
    fn()
    torch.cuda.synchronize()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        out.append(time.perf_counter() - t)
    return statistics.median(out) * 1000


def hash_grid(repeats: int, native: bool) -> dict:
    from uhrtex.networks.hash_encoding import HashGridEncoding

    uv = torch.rand(1, 2, 1024, 1024, device="cuda")
    out = {}
    for backend in ("torch", "tcnn") if native else ("torch",):
        enc = HashGridEncoding(backend=backend, device="cuda")
        with torch.no_grad():
            out[f"hash_forward_{backend}_ms"] = round(_time(lambda: enc(uv), repeats), 3)

        def step():
            enc.zero_grad(set_to_none=True)
            enc(uv).square().mean().backward()

        out[f"hash_fwd_bwd_{backend}_ms"] = round(_time(step, repeats), 3)
    if native:
        out["hash_speedup"] = round(out["hash_fwd_bwd_torch_ms"] / out["hash_fwd_bwd_tcnn_ms"], 2)
    return out


def raster(repeats: int, native: bool) -> dict:
    from uhrtex.head_model import mean_head
    from uhrtex.raster import Renderer
    from uhrtex.render.framing import frontal_camera

    head = mean_head().to("cuda")
    cam = frontal_camera(head.verts.cpu(), 2048)
    clip = cam.clip_from_world(near=1.0, far=100.0).cuda()
    pos = (torch.cat([head.verts, torch.ones_like(head.verts[:, :1])], 1) @ clip.T)[None].contiguous()
    tri, attr = head.tri.contiguous(), head.uv[None].contiguous()
    tex = torch.rand(1, 1024, 1024, 7, device="cuda")
    out = {}
    for backend in ("torch", "nvdiffrast") if native else ("torch",):
        r = Renderer(backend, "cuda")

        def draw():
            rast, _ = r.rasterize(pos, tri, (2048, 2048), grad_db=False)
            uv, _ = r.interpolate(attr, rast, tri)
            return r.texture(tex, uv, filter_mode="linear", boundary_mode="clamp")

        out[f"raster_{backend}_ms"] = round(_time(draw, repeats), 3)
    if native:
        out["raster_speedup"] = round(out["raster_torch_ms"] / out["raster_nvdiffrast_ms"], 2)
    return out


def reconstruct_paper(repeats: int) -> dict:
    from uhrtex.networks.hash_encoding import HashGridEncoding
    from uhrtex.networks.stages import build_gde, build_hfdr, build_uv_normal
    from uhrtex.pipeline import Reconstructor

    w = 32
    enc = HashGridEncoding(backend="auto", device="cuda")
    rec = Reconstructor(build_uv_normal([w, 2 * w, 4 * w, 8 * w, 8 * w]), build_gde([w, 2 * w, 4 * w], hash_channels=8),
                        build_hfdr([w, 2 * w, 4 * w, 8 * w], guide_passthrough=True, detail_skip=4,
                                   detail_passthrough=True, detail_branch=16),
                        enc, input_size=4096, device="cuda", precision="bf16", patch_batch=16)
    image = (torch.rand(3, 4096, 4096) * 255).to(torch.uint8)
    times = []
    for _ in range(max(2, repeats // 2)):
        t = time.perf_counter()
        rec(image)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return {"reconstruct_paper_s": round(min(times[1:]), 3), "reconstruct_stages_s": {k: round(v, 3) for k, v in rec.timings.items()},
            "reconstruct_peak_gpu_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2)}


def hfdr_step(repeats: int) -> dict:
    from uhrtex.networks.stages import build_hfdr

    net = build_hfdr([8, 16, 32, 64], guide_passthrough=True, detail_skip=4, detail_passthrough=True,
                     detail_branch=16).cuda().to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = torch.rand(8, 8, 256, 256, device="cuda").to(memory_format=torch.channels_last)
    g = torch.rand(8, 7, 256, 256, device="cuda")
    target = torch.rand(8, 7, 256, 256, device="cuda")

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = (net(x, g).float() - target).abs().mean()
        loss.backward()
        opt.step()

    return {"hfdr_train_step_ms": round(_time(step, repeats), 3)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--skip", nargs="*", default=[], choices=["tcnn", "nvdiffrast"],
                    help="time only the torch backend where this accelerator is missing or broken")
    a = ap.parse_args()
    if not torch.cuda.is_available():  # `make bench` runs every script: a CPU machine reports the skip and goes on
        print(json.dumps({"skipped": "benchmarks/gpu.py needs CUDA; run it on a GPU machine"}))
        return 0
    out = {"gpu_name": torch.cuda.get_device_name(), "torch": torch.__version__}
    for part in (lambda: hash_grid(a.repeats, "tcnn" not in a.skip), lambda: raster(a.repeats, "nvdiffrast" not in a.skip),
                 lambda: reconstruct_paper(a.repeats), lambda: hfdr_step(a.repeats)):
        try:
            out.update(part())
        except Exception as e:  # noqa: BLE001 - one failing part must not hide the others' numbers
            out.setdefault("errors", []).append(f"{type(e).__name__}: {' '.join(str(e).split())[:200]}")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
