"""Time a full reconstruction (Stage 1 + HFDR over all patches + seam smoothing) with random weights; one JSON line.

    python benchmarks/reconstruct.py --preset paper --size 4096 [--patch-batch 8] [--threads N] [--precision P]
    python benchmarks/reconstruct.py --preset paper --size 4096 --end-to-end [--unwrap direct] [--precision P]

The networks are the configured ones (`experiments/configs/model/*.yaml` at the preset's width); the cost
does not depend on the weights. The input is a uint8 image (what a decoded 8-bit portrait is).

* `wall_s`: per stage and `total` (the `Reconstructor` call).
* `model_gflop`: counted with torch.utils.flop_counter on Stage 1 once + HFDR on one patch batch, scaled to
  all patches (convolutions and matmuls; norms/activations/resampling are not FLOPs by that counter). That
  counting pass also warms up oneDNN for the run's shapes.
* `gemm_peak_gflops_per_s`: best of several 4096² fp32 `torch.mm`, timed in this process before and after
  the run (the machine may be shared: the higher one is the achievable peak).
* `fraction_of_peak` = model_gflop / total wall / gemm peak. `peak_rss_gb`: the process's high-water mark.

`--end-to-end` runs `experiments.reconstruct.run` (the CLI's code path) from the decoded portrait to all files
written, on random-weight checkpoints of the preset, with the procedural head's OBJ and a frontal camera for
`--unwrap direct|optimize` (`splat` needs neither). Its JSON line adds `end_to_end_s` (decode not included:
`decode_s` beside it), `wall_s` per stage (the manifest's: prepare = checkpoints + input checks, stage1, hfdr, seams,
unwrap, export, report, finish = the blotch check + waiting for the last PNG encodes; `other` = the rest),
`gemm_fp32_s` (one 4096² fp32 torch.mm, best of several, before and after the run),
`end_to_end_gemms` = end_to_end_s / gemm_fp32_s, and `fraction_of_peak` = model_gflop / (stage1 + hfdr wall)
/ the GEMM peak of the precision used (a 4096² mm in that dtype, timed the same way), and `unwrap_steps_s`
(the unwrap's own steps). The cache folder (`uhrtex.common.disk_cache`: the template's textures, the mesh's UV layout)
is warm as on any repeat run with the same mesh (filled by a child process before the timed run);
`--cold-cache` times a first run instead (an empty cache folder). `cache` in the line says which. `--keep-out DIR`
copies the written files to DIR (after the timing), e.g. to compare two versions' outputs with
`tools/compare_outputs.py`.

`process_memory`: what `uhrtex.common.memory.configure_process` set in this process (glibc malloc kept, huge pages asked);
`UHRTEX_PROCESS_MEMORY=default` in the environment measures without it (the `--cli` child inherits the setting).

`--cli` times the user's command as a whole process (`python -m experiments.reconstruct`, cold caches, face crop on,
skimage's astronaut resized to --size): `cli_s`, `cli_gemms` = cli_s / one 4096² fp32 GEMM, and
`outside_manifest_s` (start-up, imports, loading, decoding: what the manifest's timings do not see).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import experiments  # noqa: E402,F401  # the CLI's memory policy (uhrtex.common.memory), before torch
import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from uhrtex.common import memory as process_memory  # noqa: E402


def gemm_seconds(n: int = 4096, repeats: int = 5, dtype: torch.dtype = torch.float32) -> float:
    """Best of `repeats` n² `torch.mm` in `dtype`."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    c = torch.empty(n, n, dtype=dtype)
    torch.mm(a, b, out=c)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b, out=c)
        best = min(best, time.perf_counter() - t)
    return best


def gemm_peak(n: int = 4096, repeats: int = 5, dtype: torch.dtype = torch.float32) -> float:
    return 2 * n**3 / gemm_seconds(n, repeats, dtype) / 1e9


def build_networks(preset: str):
    """Random-weight networks exactly as configured (`model=<stage> preset=<preset>`), and the preset sizes."""
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from experiments.cli import compose_config
    try:
        from uhrtex.checkpoint import STAGES, _call_target
    except ImportError:  # before the checkpoint/bundle split
        from uhrtex.bundle import STAGES, _call_target
    from uhrtex.networks.hash_encoding import HashGridEncoding

    nets, sizes, hash_encoder = {}, None, None
    for stage in STAGES:
        GlobalHydra.instance().clear()
        cfg = compose_config([f"model={stage}", f"preset={preset}"])
        GlobalHydra.instance().clear()
        mc = OmegaConf.to_container(cfg.model, resolve=True)
        sizes = {k: int(cfg[k]) for k in ("input_size", "global_size", "patch_size")}
        extra = {}
        if stage == "gde":
            hcfg = mc.get("hash_encoding") or {}
            if hcfg.get("enabled"):
                hash_encoder = HashGridEncoding(hcfg.get("config"), backend="torch")
            extra["hash_channels"] = hash_encoder.n_output_dims if hash_encoder is not None else 0
        nets[stage] = _call_target(mc["net"], stage, **extra)
    return nets, hash_encoder, sizes


def portrait(size: int) -> torch.Tensor:
    """A smooth random portrait-like uint8 image, 3×size×size (content does not change the cost)."""
    low = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    return torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear")[0].mul_(255).round_().to(torch.uint8)


def count_flops(rec, image: torch.Tensor, patch_batch: int) -> tuple[float, float]:
    """FLOPs of Stage 1 once and of HFDR over all patches (one batch counted, scaled); warms oneDNN up."""
    g = rec.geometry(*image.shape[-2:])
    with FlopCounterMode(display=False) as fc:
        s1 = rec.run_stage1(image, g)
    s1_flop = fc.get_total_flops()
    out = torch.empty(7, *image.shape[-2:])
    g1 = type(g)(g.height, g.width, g.side, g.top, g.left, g.patch)
    first = g.boxes()[:patch_batch]
    g1.boxes = lambda: first  # type: ignore[method-assign]
    with FlopCounterMode(display=False) as fc:
        rec.run_hfdr(image, g1, s1, out)
    return s1_flop, fc.get_total_flops() / len(first) * g.grid ** 2


def write_checkpoints(preset: str, root: Path) -> dict[str, int]:
    """Random-weight stage checkpoints as experiments.run writes them (state_dict, uhrtex tag, datamodule sizes)."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from experiments.cli import compose_config

    root.mkdir(parents=True, exist_ok=True)
    for stage in ("uv_normal", "gde", "hfdr"):
        GlobalHydra.instance().clear()
        cfg = compose_config([f"model={stage}", f"preset={preset}"] + (["model.gde_ckpt=unused"] if stage == "hfdr" else []))
        GlobalHydra.instance().clear()
        sizes = {k: int(cfg[k]) for k in ("input_size", "global_size", "patch_size")}
        module = instantiate(cfg.model)
        torch.save({"state_dict": module.state_dict(), "datamodule_hyper_parameters": {"view": "global", **sizes},
                    "uhrtex": {"stage": stage, "model_config": OmegaConf.to_container(cfg.model, resolve=True)}},
                   root / f"{stage}.ckpt")
        del module
    return sizes


def warm_caches(ns: argparse.Namespace, uv_size: int) -> None:
    """Fill the cache folder as a previous run with this mesh would have, in a child process (so the timed
    process's peak RSS is its own)."""
    import subprocess

    code = ("import sys; from uhrtex.unwrap import fill, visibility; from uhrtex.unwrap.mesh import load_obj; "
            "from uhrtex.pipeline.portrait import PREVIEW_LIGHTINGS, REPORT_UV_SIZE; "
            "from uhrtex.render.environments import load_environment; mesh = load_obj(sys.argv[1]); "
            "fill.head_template(int(sys.argv[2])); visibility.uv_layout(mesh, int(sys.argv[2])); "
            "visibility.uv_layout(mesh, REPORT_UV_SIZE); [load_environment(e) for e in PREVIEW_LIGHTINGS]")
    # the layouts of the maps and of the report's UV photo, the preview's prefiltered environments
    subprocess.run([sys.executable, "-c", code, str(ns.mesh), str(uv_size)], check=True,
                   cwd=Path(__file__).resolve().parents[1], env=os.environ.copy())


def end_to_end(args: argparse.Namespace) -> dict:
    """experiments.reconstruct.run on a decoded portrait, timed from the decoded image to all files written."""
    import inspect
    import shutil
    import tempfile

    from experiments import reconstruct as cli
    from uhrtex.common import io as uio
    from uhrtex.pipeline.portrait import read_portrait
    from uhrtex.pipeline.reconstructor import Reconstructor

    tmp = Path(tempfile.mkdtemp(prefix="uhrtex-bench-"))
    try:
        sizes = write_checkpoints(args.preset, tmp / "ckpts")
        size = args.size or sizes["input_size"]
        uio.write_png(tmp / "portrait.png", portrait(size).float().div_(255), bits=8)
        argv = [str(tmp / "portrait.png"), "--ckpt", str(tmp / "ckpts"), "--out", str(tmp / "out"), "--unwrap",
                args.unwrap, "--patch-batch", str(args.patch_batch), "--device", "cpu"]
        if "--precision" in cli.build_parser().format_help():
            argv += ["--precision", args.precision]
        if "--no-crop" in cli.build_parser().format_help():  # the face front end is timed by face_front_end.py
            argv += ["--no-crop"]
        if args.unwrap in ("direct", "optimize"):
            from uhrtex.captures.heads.export import export_asset
            from uhrtex.captures.render import framed_camera
            from uhrtex.unwrap.mesh import load_obj

            obj = export_asset(5, 256, tmp / "asset")["obj"]
            argv += ["--mesh", str(obj), "--camera", str(tmp / "cam.json")]
            camera = framed_camera(load_obj(obj).verts, 0, size, jitter=False)[0]
            (tmp / "cam.json").write_text(json.dumps(camera.to_dict()))
        ns = cli.build_parser().parse_args(argv)
        os.environ["UHRTEX_CACHE_DIR"] = str(tmp / "cache")
        if not args.cold_cache and args.unwrap in ("direct", "optimize"):
            warm_caches(ns, sizes["input_size"])  # the CLI's default --uv-size
        t = time.perf_counter()
        image = read_portrait(ns.portrait)
        decode_s = time.perf_counter() - t
        kw = {"precision": args.precision} if "precision" in inspect.signature(Reconstructor.__init__).parameters else {}
        rec = Reconstructor.load(ns.ckpt, patch_batch=args.patch_batch, **kw)
        precision = getattr(rec, "precision", "fp32")
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        gemm0, peak0 = gemm_seconds(), gemm_peak(dtype=dtype)
        s1_flop, hfdr_flop = count_flops(rec, image, args.patch_batch)  # also warms oneDNN up for the run's shapes
        del rec
        t = time.perf_counter()
        if "image" in inspect.signature(cli.run).parameters:
            manifest = cli.run(ns, image=image)
            total = time.perf_counter() - t
        else:  # a run() that reads the portrait itself: take the decode out again
            del image
            manifest = cli.run(ns)
            total = time.perf_counter() - t - decode_s
        gemm1, peak1 = gemm_seconds(), gemm_peak(dtype=dtype)
        if args.keep_out:  # the written files, to compare two versions' outputs (tools/compare_outputs.py)
            shutil.copytree(tmp / "out", args.keep_out, dirs_exist_ok=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    gemm_s, peak = min(gemm0, gemm1), max(peak0, peak1)
    wall = {k: round(v, 2) for k, v in manifest["timings_s"].items()}
    wall["other"] = round(total - sum(manifest["timings_s"].values()), 2)
    gflop = (s1_flop + hfdr_flop) / 1e9
    net_s = manifest["timings_s"]["stage1"] + manifest["timings_s"]["hfdr"]
    return {
        "preset": args.preset, "size": size, "unwrap": args.unwrap, "precision": precision,
        "patch_batch": args.patch_batch, "threads": torch.get_num_threads(),
        "process_memory": process_memory.applied,
        "end_to_end_s": round(total, 2), "decode_s": round(decode_s, 2), "wall_s": wall,
        "unwrap_steps_s": (manifest.get("unwrap") or {}).get("timings_s"), "cache": "cold" if args.cold_cache else "warm",
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
        "model_gflop": round(gflop, 1), "gemm_fp32_s": round(gemm_s, 4), "end_to_end_gemms": round(total / gemm_s, 1),
        "gemm_peak_gflops_per_s": round(peak, 1), "gemm_dtype": str(dtype).removeprefix("torch."),
        "achieved_gflops_per_s": round(gflop / net_s, 1), "fraction_of_peak": round(gflop / net_s / peak, 3),
        "fraction_of_peak_end_to_end": round(gflop / total / peak, 3),
        "gemm_before_after_s": [round(gemm0, 3), round(gemm1, 3)], "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def cli(args: argparse.Namespace) -> dict:
    """The user's command as a whole process: `python -m experiments.reconstruct PORTRAIT --ckpt DIR --out DIR`, cold
    caches (an empty cache folder), face crop on, a real photo (skimage's astronaut, resized to --size)."""
    import shutil
    import subprocess
    import tempfile

    import torch.nn.functional as F
    from skimage.data import astronaut

    from uhrtex.common import io as uio

    tmp = Path(tempfile.mkdtemp(prefix="uhrtex-bench-cli-"))
    try:
        size = args.size or write_checkpoints(args.preset, tmp / "ckpts")["input_size"]
        if args.size:
            write_checkpoints(args.preset, tmp / "ckpts")
        photo = torch.from_numpy(astronaut()).permute(2, 0, 1)[None].float() / 255
        uio.write_png(tmp / "portrait.png", F.interpolate(photo, size=(size, size), mode="bicubic").clamp(0, 1)[0])
        gemm0 = gemm_seconds()
        env = {**os.environ, "UHRTEX_CACHE_DIR": str(tmp / "cache")}
        cmd = [sys.executable, "-m", "experiments.reconstruct", str(tmp / "portrait.png"), "--ckpt", str(tmp / "ckpts"),
               "--out", str(tmp / "out"), "--unwrap", args.unwrap, "--precision", args.precision]
        t = time.perf_counter()
        subprocess.run(cmd, check=True, env=env, cwd=Path(__file__).resolve().parents[1], capture_output=True)
        cli_s = time.perf_counter() - t
        gemm_s = min(gemm0, gemm_seconds())
        manifest = json.loads((tmp / "out" / "manifest.json").read_text())
        if args.keep_out:
            shutil.copytree(tmp / "out", args.keep_out, dirs_exist_ok=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"preset": args.preset, "size": size, "unwrap": args.unwrap, "precision": manifest["precision"],
            "cli_s": round(cli_s, 2), "cli_gemms": round(cli_s / gemm_s, 1), "gemm_fp32_s": round(gemm_s, 4),
            "manifest_total_s": manifest["total_s"], "outside_manifest_s": round(cli_s - manifest["total_s"], 2),
            "face_found": manifest["face"]["found"], "process_memory": process_memory.applied,
            "load_avg_1m": round(os.getloadavg()[0], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--size", type=int, default=None, help="input side (default: the preset's input size)")
    parser.add_argument("--patch-batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-channels-last", action="store_true")
    parser.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto")
    parser.add_argument("--end-to-end", action="store_true", help="experiments.reconstruct.run: decoded portrait -> "
                        "all files written")
    parser.add_argument("--unwrap", choices=("direct", "optimize", "splat", "none"), default="direct")
    parser.add_argument("--cold-cache", action="store_true", help="an empty cache folder: a first run's time")
    parser.add_argument("--keep-out", type=Path, default=None, help="--end-to-end, --cli: copy the written files here")
    parser.add_argument("--cli", action="store_true", help="the user's command as a whole process (cold caches, face "
                        "crop on): cli_s and cli_gemms")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.end_to_end:
        print(json.dumps(end_to_end(args)))
        return
    if args.cli:
        print(json.dumps(cli(args)))
        return
    from uhrtex.pipeline.reconstructor import Reconstructor

    peak0 = gemm_peak()
    nets, hash_encoder, sizes = build_networks(args.preset)
    rec = Reconstructor(nets["uv_normal"], nets["gde"], nets["hfdr"], hash_encoder, **sizes,
                        patch_batch=args.patch_batch, channels_last=not args.no_channels_last,
                        precision=args.precision)
    size = args.size or sizes["input_size"]
    image = portrait(size)

    # Count FLOPs (and warm oneDNN up) on the run's shapes: Stage 1 once, HFDR on one patch batch.
    s1_flop, hfdr_flop = count_flops(rec, image, args.patch_batch)
    n_patches = rec.geometry(size, size).grid ** 2

    t = time.perf_counter()
    result = rec(image)
    total = time.perf_counter() - t
    del result
    peak1 = gemm_peak()
    peak = max(peak0, peak1)
    gflop = (s1_flop + hfdr_flop) / 1e9
    achieved = gflop / total
    print(json.dumps({
        "preset": args.preset, "size": size, "patches": n_patches, "patch_batch": args.patch_batch,
        "process_memory": process_memory.applied,
        "threads": torch.get_num_threads(), "channels_last": not args.no_channels_last,
        "precision": rec.precision,
        "wall_s": {**{k: round(v, 2) for k, v in rec.timings.items()}, "total": round(total, 2)},
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
        "model_gflop": round(gflop, 1), "stage1_gflop": round(s1_flop / 1e9, 1), "hfdr_gflop": round(hfdr_flop / 1e9, 1),
        "achieved_gflops_per_s": round(achieved, 2),
        "gemm_peak_gflops_per_s": round(peak, 2), "gemm_before_after": [round(peak0, 1), round(peak1, 1)],
        "fraction_of_peak": round(achieved / peak, 3),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }))


if __name__ == "__main__":
    main()
