"""Comparison (paper Table 1): `python -m experiments.run +exp=compare [compare.checkpoints=DIR] [compare.external_dir=DIR]`.

1. Checkpoints: `compare.checkpoints` (a folder `uhrtex.checkpoint.find_checkpoints` understands, e.g. `logs/`, or
   {uv_normal, gde, hfdr} paths). When null, the three stages are trained first exactly as `+exp=demo` does
   (experiments/train_all.py, stage runs under logs/<stage>/runs/<run_name>), and - for `patch_only: retrain` -
   an HFDR without guide (lightning_modules.hfdr.PatchOnlyHFDR) with the same budget, and - for
   `lowres_realesrgan` / `lowres_sr` - the low-resolution pipeline at input/`compare.lowres_factor`
   (experiments/lowres.py, runs under logs/lowres_<stage>/). Given checkpoints: `compare.lowres_checkpoints`.
2. Every method of `compare.methods` (experiments/baselines.py) and every external method under
   `compare.external_dir` (docs/evaluation.md) runs on each test capture (data split by subject).
3. All are measured on one region per capture (GT face mask ∩ every method's coverage) with the same metrics,
   at full input resolution in image space. Writes `<run>/table1.{md,csv}`, `<run>/per_capture.csv`, previews
   of the albedo per method, zoomed 1:1 crops of every map (paper Fig. 6/8 style), and a W&B table.
"""

from __future__ import annotations

import copy
import csv
import json
import logging
import time
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from experiments.compare_table import detail_table, evaluate_capture, seed_rows, table1
from experiments.baselines import LOWRES
from experiments.eval_common import PERCEPTUAL_NAMES, log_wandb_table, perceptual_key
from experiments.lowres import find_lowres_checkpoints, train_lowres
from experiments.run_record import finish_wandb
from experiments.subruns import (SMOKE_STAGE, compose_model, parent_overrides, plain, run_subrun,
                                 subrun_config)
from uhrtex import maps
from uhrtex.checkpoint import STAGES, build_stage, newest_run_checkpoint, read_stage, stage_checkpoints
from uhrtex.captures.format import Camera
from uhrtex.captures.store import CaptureStore
from uhrtex.common.io import atomic_path
from uhrtex.metrics import Evaluator
from uhrtex.metrics.external import find_methods
from uhrtex.pipeline.reconstructor import Reconstructor, SeamOptions

log = logging.getLogger(__name__)


# The guide-less HFDR (patch_only=retrain) on top of exp=hfdr. A sigmoid head: the guide pass-through head, and the
# detail pass-through that starts it at guide + band, would start (and stay) at 0 without a guide.
PATCH_ONLY_OVERRIDES = ("task_name=hfdr_patch_only", "model._target_=lightning_modules.hfdr.PatchOnlyHFDR",
                        "model.net.guide_passthrough=false", "model.net.detail_passthrough=false")


def train_checkpoints(cfg: DictConfig) -> dict[str, str]:
    """Train uv_normal -> gde -> hfdr (train_all); -> {stage: last.ckpt}."""
    from experiments.train_all import train_all

    train_all(cfg)
    summary = json.loads((Path(cfg.paths.output_dir) / "summary.json").read_text())
    return {s: summary[s]["checkpoint"] for s in STAGES}


def train_patch_only(cfg: DictConfig, ckpts: dict[str, str]) -> str:
    """The guide-less HFDR on these Stage-1 checkpoints (its own run, as exp=hfdr); -> its last.ckpt."""
    extra = SMOKE_STAGE if cfg.trainer.get("fast_dev_run") else []
    po_dir, _ = run_subrun(["exp=hfdr", *parent_overrides(cfg), *PATCH_ONLY_OVERRIDES,
                            f"model.uv_normal_ckpt={ckpts['uv_normal']}", f"model.gde_ckpt={ckpts['gde']}", *extra])
    return str(po_dir / "checkpoints" / "last.ckpt")


def seam_options(cfg: DictConfig) -> SeamOptions:
    """The method's seam smoothing (method.reconstruct): the paper's blur, or uhrtex's keep_detail."""
    return SeamOptions(keep_detail=bool(cfg.method.reconstruct.seams_keep_detail))


def untrained_methods(cfg: DictConfig, input_size: int | None = None):
    """fast_dev_run without checkpoints: freshly initialised stages at this preset, or at `input_size` (the
    low-res pipeline), sizes derived from it (exercises the evaluation only)."""
    from lightning_modules.gde import make_hash_encoder

    size = int(input_size or cfg.input_size)
    m = {s: compose_model([f"exp={s}", f"input_size={size}", f"width={cfg.width}"]) for s in STAGES}
    hash_encoder = make_hash_encoder(OmegaConf.to_container(m["gde"].hash_encoding, resolve=True))
    gde = instantiate(m["gde"].net)(hash_channels=hash_encoder.n_output_dims if hash_encoder is not None else 0)
    return Reconstructor(instantiate(m["uv_normal"].net), gde, instantiate(m["hfdr"].net), hash_encoder,
                         input_size=size, patch_batch=cfg.compare.patch_batch, seams=seam_options(cfg))


def given_checkpoints(spec) -> dict[str, str]:
    found = stage_checkpoints(spec if isinstance(spec, (str, Path)) else plain(spec), what="compare.checkpoints")
    if isinstance(spec, (str, Path)):  # a logs/ folder may also hold the guide-less HFDR of an earlier compare run
        patch_only = newest_run_checkpoint(Path(spec) / "hfdr_patch_only" / "runs")
        if patch_only is not None:
            found["patch_only"] = str(patch_only)
    return found


def lowres_size(cfg: DictConfig) -> int:
    size, factor = int(cfg.input_size), int(cfg.compare.lowres_factor)
    if size % factor:
        raise ValueError(f"compare.lowres_factor={factor} does not divide input_size={size}")
    return size // factor


def build_lowres(cfg: DictConfig, ckpts: dict[str, str] | None, lowres_ckpts: dict[str, str] | None):
    """The low-res pipeline: untrained at input/factor (smoke), or from its own checkpoints (trained at that size)."""
    if ckpts is None:
        return untrained_methods(cfg, lowres_size(cfg))
    if lowres_ckpts is None:
        raise ValueError("lowres_realesrgan / lowres_sr need the low-res pipeline: set compare.lowres_checkpoints=<logs/ "
                         "with lowres_* runs> (a run without fast_dev_run trains it), or drop them from compare.methods")
    low = Reconstructor.from_records({s: read_stage(lowres_ckpts[s], s) for s in STAGES},
                                     patch_batch=cfg.compare.patch_batch, seams=seam_options(cfg))
    if low.input_size != lowres_size(cfg):
        raise ValueError(f"compare.lowres_checkpoints were trained at {low.input_size}², not input_size / "
                         f"compare.lowres_factor = {lowres_size(cfg)}²")
    return low


def build_methods(cfg: DictConfig, ckpts: dict[str, str] | None, lowres_ckpts: dict[str, str] | None = None):
    from experiments.baselines import Baselines, ZeroGuide, variant

    c = cfg.compare
    if ckpts is None:
        rec = untrained_methods(cfg)
    else:
        rec = Reconstructor.from_records({s: read_stage(ckpts[s], s) for s in STAGES}, patch_batch=c.patch_batch,
                                         seams=seam_options(cfg))
    methods = list(c.methods)
    patch_only = None
    if "patch_only" in methods:
        if c.patch_only == "retrain" and ckpts is None:
            patch_only = variant(rec, hfdr=copy.deepcopy(rec.hfdr), wrap=ZeroGuide)
        elif c.patch_only == "retrain":
            if "patch_only" not in ckpts:
                raise ValueError("compare.patch_only=retrain needs compare.patch_only_checkpoint=<hfdr_patch_only run>/"
                                 "checkpoints/last.ckpt (a run without fast_dev_run trains it), or use "
                                 "compare.patch_only=zero_guide")
            net = build_stage(read_stage(ckpts["patch_only"], "hfdr"))["net"]
            patch_only = variant(rec, hfdr=net, wrap=ZeroGuide)
        elif c.patch_only == "zero_guide":
            patch_only = variant(rec, wrap=ZeroGuide)
        else:
            raise ValueError(f"compare.patch_only={c.patch_only!r}; use retrain or zero_guide")
    lowres = build_lowres(cfg, ckpts, lowres_ckpts) if set(LOWRES) & set(methods) else None
    return rec, Baselines(rec, methods, patch_only, lowres, c.lowres_factor)


def test_store(cfg: DictConfig) -> str:
    """The store the methods are evaluated on: `compare.test_store` if given, else the training store."""
    return str(cfg.compare.get("test_store") or cfg.data.store)


def test_keys(cfg: DictConfig) -> list[str]:
    """The test split of data.store, or every capture of `compare.test_store` (subjects never trained on)."""
    if not (cfg.get("compare") or {}).get("test_store"):
        dm = instantiate(cfg.data)
        dm.prepare_data()
        dm.setup("test")
        return list(dm.splits["test"])
    path = test_store(cfg)
    held_out = CaptureStore(path)
    keys = held_out.keys()
    if not keys:
        raise ValueError(f"compare.test_store={path} holds no captures; render some with +exp=make_captures "
                         f"data.store={path} captures.first_subject=N")
    trained = CaptureStore(cfg.data.store)
    trained_keys = trained.keys()
    shared = sorted({held_out.subject(k) for k in keys} & {trained.subject(k) for k in trained_keys})
    if shared:
        raise ValueError(f"compare.test_store={path} shares subjects {shared} with data.store={cfg.data.store}, whose "
                         "subjects train the networks; render held-out subjects with captures.first_subject past them")
    # the environments (each subject draws its own rotations of them)
    lightings = [{str((s.meta(k).get("environment") or {}).get("id")).split("_r")[0] for k in ks}
                 for s, ks in ((held_out, keys), (trained, trained_keys))]
    if not lightings[0] <= lightings[1]:
        raise ValueError(f"compare.test_store={path} has environments {sorted(lightings[0] - lightings[1])} that "
                         f"data.store={cfg.data.store} was not rendered under; render it with the same renderer "
                         "and captures.environments")
    return keys


def _write_rows(path: Path, rows: dict[str, list[dict]]) -> None:
    flat = [{"method": m, **r} for m, rs in rows.items() for r in rs]
    first = [k for k in ("method", "seed", "capture") if any(k in r for r in flat)]
    columns = first + sorted({k for r in flat for k in r} - set(first))
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, columns)
        w.writeheader()
        w.writerows(flat)


def _seeded(rows: dict[str, list[dict]], seed: int) -> dict[str, list[dict]]:
    return {m: [{"seed": seed, **r} for r in rs] for m, rs in rows.items()}


def _preview(path: Path, outputs: dict, target: torch.Tensor, zoom: int) -> None:
    """Albedo per method: full frame (top) and a native-resolution zoom crop (bottom); GT first."""
    from uhrtex.viz.panels import crop_box, face_centre, save_png, show

    cols = {"GT": maps.TEXTURE.split(target[None])["albedo"][0], **{m: o[0]["albedo"] for m, o in outputs.items() if "albedo" in o[0]}}
    mask = (target.sum(0, keepdim=True) > 0).float()
    y, x, s = crop_box(face_centre(mask), zoom, tuple(target.shape[-2:]))
    top = torch.cat([show(v, 256) for v in cols.values()], 2)
    bottom = torch.cat([show(v[:, y:y + s, x:x + s], 256) for v in cols.values()], 2)
    save_png(path, torch.cat([top, bottom], 1))


ZOOM_COLUMNS = ("ours", "lowres_realesrgan", "lowres_sr", "gde_only")


def _zoom_figure(path: Path, image: torch.Tensor, outputs: dict, target: torch.Tensor, size: int) -> None:
    """Paper Fig. 6/8 style: rows albedo / micronormal / specular; columns input crop | GT | ours |
    lowres_realesrgan | lowres_sr | gde_only (those evaluated), one size² crop at the face centre, 1:1 pixels."""
    from uhrtex.viz.panels import crop_box, face_centre, save_png, show

    gt = maps.TEXTURE.split(target[None])
    y, x, s = crop_box(face_centre((target.sum(0, keepdim=True) > 0).float()), size, tuple(target.shape[-2:]))
    cols = [m for m in ZOOM_COLUMNS if m in outputs]
    rows = []
    for name in maps.TEXTURE.names:
        tiles = [image, gt[name][0], *(outputs[m][0].get(name, torch.zeros_like(gt[name][0])) for m in cols)]
        rows.append(torch.cat([show(t[:, y:y + s, x:x + s], s) for t in tiles], 2))
    save_png(path, torch.cat(rows, 1))


def _checkpoints(cfg: DictConfig) -> tuple[dict | None, dict | None]:
    """(ours + patch_only, low-res pipeline) checkpoints: given, trained here (for cfg.seed), or None (smoke)."""
    c = cfg.compare
    fast = bool(cfg.trainer.get("fast_dev_run"))
    retrain_patch_only = "patch_only" in c.methods and c.patch_only == "retrain"
    if c.checkpoints:
        ckpts = given_checkpoints(c.checkpoints)
    elif fast:  # smoke run: untrained stages, so only the evaluation path runs (the demo smoke covers training)
        ckpts = None
    else:
        ckpts = train_checkpoints(cfg)
    if ckpts is not None and c.get("patch_only_checkpoint"):
        ckpts["patch_only"] = str(c.patch_only_checkpoint)
    # No guide-less HFDR / low-res pipeline for these stages: train what is missing (not in a smoke run).
    if ckpts is not None and retrain_patch_only and "patch_only" not in ckpts and not fast:
        ckpts["patch_only"] = train_patch_only(cfg, ckpts)
    lowres_ckpts = None
    if set(LOWRES) & set(c.methods):
        if c.get("lowres_checkpoints"):
            lowres_ckpts = find_lowres_checkpoints(c.lowres_checkpoints)
        elif not fast:
            lowres_ckpts = train_lowres(cfg, lowres_size(cfg))
    finish_wandb()
    return ckpts, lowres_ckpts


def evaluate_seed(cfg: DictConfig, run_dir: Path) -> dict:
    """Train (or load) every method for cfg.seed and evaluate it on the test captures; previews into run_dir."""
    c = cfg.compare
    t0 = time.time()
    ckpts, lowres_ckpts = _checkpoints(cfg)
    t_train = time.time() - t0
    rec, baselines = build_methods(cfg, ckpts, lowres_ckpts)
    externals = find_methods(c.external_dir, list(c.external) if c.get("external") else None)
    keys = test_keys(cfg)
    if c.get("max_captures"):
        keys = keys[: int(c.max_captures)]
    if cfg.trainer.get("fast_dev_run"):
        keys = keys[:1]
    for ext in externals:
        ext.check_keys(keys)
    store = CaptureStore(test_store(cfg))
    evaluator = Evaluator(cfg.metrics.perceptual, tile=cfg.metrics.tile, detail=cfg.metrics.get("detail", 8))
    rows: dict[str, list[dict]] = {}
    uv_rows: dict[str, list[dict]] = {}
    t1 = time.time()
    for i, key in enumerate(keys):
        cap = store.read(key, names=("image", "mask", *maps.TEXTURE.names))
        camera = Camera.from_dict(store.meta(key)["camera"])
        ones = torch.ones_like(cap["mask"])
        outputs = {m: (out, ones) for m, out in baselines(cap["image"]).items()}
        for ext in externals:
            outputs[ext.name] = ext.load(key, camera)
        target = maps.TEXTURE.cat({n: cap[n][None] for n in maps.TEXTURE.names})[0]
        for method, row in evaluate_capture(evaluator, key, target, cap["mask"], outputs, rec.patch_size).items():
            rows.setdefault(method, []).append(row)
        if "uv" in c.spaces:
            uv_target, uv_outputs, uv_mask = to_uv_space(target, outputs, cap["mask"], store.read(key, names=("uv",))["uv"])
            for method, row in evaluate_capture(evaluator, key, uv_target, uv_mask, uv_outputs, None).items():
                uv_rows.setdefault(method, []).append(row)
        if i < c.previews:
            _preview(run_dir / "previews" / f"{key}_albedo.png", outputs, target, rec.input_size // 8)
            _zoom_figure(run_dir / "previews" / f"{key}_zoom.png", cap["image"], outputs, target, rec.input_size // 8)
            _spectrum(run_dir / "previews" / f"{key}_spectrum.png", outputs, target, cap["mask"], int(c.lowres_factor))
        log.info("compare: %d/%d %s", i + 1, len(keys), key)
    return {"rows": rows, "uv_rows": uv_rows, "keys": keys, "rec": rec, "ckpts": ckpts, "lowres_ckpts": lowres_ckpts,
            "t_train": t_train, "t_eval": time.time() - t1}


SPECTRUM_METHODS = ("ours", "lowres_realesrgan", "lowres_sr", "lowres_input", "gde_only")


def _spectrum(path: Path, outputs: dict, target: torch.Tensor, mask: torch.Tensor, factor: int) -> None:
    """Radially averaged power spectra of GT, each method's maps and their errors (uhrtex.metrics.detail)."""
    from uhrtex.metrics.detail import detail_applicable, spectrum_figure

    curves = {m: maps.TEXTURE.cat({n: outputs[m][0][n][None] for n in maps.TEXTURE.names})[0]
              for m in SPECTRUM_METHODS if m in outputs and all(n in outputs[m][0] for n in maps.TEXTURE.names)}
    if curves and detail_applicable(*target.shape[-2:], factor):
        spectrum_figure(curves, target, path, mask=mask, factor=factor)


SEEDED_CHECKPOINTS = ("checkpoints", "lowres_checkpoints", "patch_only_checkpoint")


def _with_seed(spec, seed: int):
    """A checkpoint spec (path or {stage: path}) with `{seed}` replaced: re-evaluating a seeds=[...] run's stages."""
    if isinstance(spec, dict):
        return {k: str(v).replace("{seed}", str(seed)) for k, v in spec.items()}
    return str(spec).replace("{seed}", str(seed))


def compare(cfg: DictConfig) -> dict[str, float]:
    c = cfg.compare
    run_dir = Path(cfg.paths.output_dir)
    if cfg.pipeline.get("torch_threads"):
        torch.set_num_threads(int(cfg.pipeline.torch_threads))
    seeds = [int(s) for s in (cfg.get("seeds") or [cfg.seed])]
    given = {k: plain(c.get(k)) for k in SEEDED_CHECKPOINTS if c.get(k)}
    # Every given spec, not only compare.checkpoints: a lowres spec without {seed} would pair each seed's own
    # stages with one seed's baseline.
    if len(seeds) > 1 and given and not all("{seed}" in json.dumps(v) for v in given.values()):
        raise ValueError("seeds=[...] trains one set of stages per seed; with compare.checkpoints (and "
                         "compare.lowres_checkpoints) put {seed} in their paths, e.g. "
                         "logs/hfdr/runs/<run>_seed{seed}/checkpoints/last.ckpt, or evaluate one seed")
    results = []
    for seed in seeds:
        per_seed = {f"compare.{k}": _with_seed(v, seed) for k, v in given.items()}
        sub = cfg if len(seeds) == 1 else subrun_config(cfg, f"seed{seed}", {"seed": seed, **per_seed,
                                                                             "run_name": f"{cfg.run_name}_seed{seed}"})
        log.info("compare: seed %d (%d of %d)", seed, len(results) + 1, len(seeds))
        results.append(evaluate_seed(sub, Path(sub.paths.output_dir)))
        if len(seeds) > 1:  # on disk as soon as the seed is done: a later seed's failure keeps these numbers
            _write_rows(Path(sub.paths.output_dir) / "per_capture.csv", _seeded(results[-1]["rows"], seed))
    first = results[0]
    rows = seed_rows([r["rows"] for r in results])
    uv_rows = seed_rows([r["uv_rows"] for r in results]) if first["uv_rows"] else {}
    perceptual = perceptual_key([r for rs in rows.values() for r in rs])
    notes = _notes(cfg, first, perceptual, seeds, sum(r["t_train"] for r in results), sum(r["t_eval"] for r in results))
    many = len(seeds) > 1
    tables = {"table1": table1(rows, perceptual, notes, show_std=many),
              "table1_detail": detail_table(rows, [notes[0], DETAIL_NOTE.format(f=c.lowres_factor)], many)}
    if uv_rows:
        uv_notes = [UV_NOTE.format(res=first["rec"].input_size), *notes[1:3], notes[4]]
        tables["table1_uv"] = table1(uv_rows, perceptual, uv_notes, title="Table 1 (UV space)", show_std=many)
        tables["table1_uv_detail"] = detail_table(uv_rows, uv_notes[:1], many, title="Table 1b (UV space): detail band")
    for name, t in tables.items():
        md, _ = t.write(run_dir / name)
        log.info("compare: wrote %s\n%s", md, t.markdown())
        log_wandb_table(cfg, name, t, job_type="compare")
    for name, key in (("per_capture.csv", "rows"), ("per_capture_uv.csv", "uv_rows")):
        if first[key]:
            seeded = [_seeded(res[key], s) for s, res in zip(seeds, results)]
            _write_rows(run_dir / name, {m: [r for rows_of_seed in seeded for r in rows_of_seed[m]] for m in first[key]})
    return {f"{m}/{k}": v for m, rs in rows.items() for k, v in _means(rs).items()}


DETAIL_NOTE = ("detail band: Gaussian high-pass at the ×{f} low-resolution Nyquist (uhrtex.metrics.detail), over the "
               "region eroded by the filter's support; band PSNR (dB) and band correlation: higher is better; HF ratio "
               "= predicted / GT band power: 0 = blurred, 1 = matched, > 1 = invented detail")


def _notes(cfg: DictConfig, first: dict, perceptual: str | None, seeds: list[int], t_train: float,
           t_eval: float) -> list[str]:
    c, rec = cfg.compare, first["rec"]
    size, keys, ckpts, lowres_ckpts = rec.input_size, first["keys"], first["ckpts"], first["lowres_ckpts"]
    low = size // int(c.lowres_factor)
    tiles = f", in {cfg.metrics.tile}² tiles" if size > cfg.metrics.tile else ""
    patch_only = ("HFDR retrained with the guide zeroed (same budget)" if c.patch_only == "retrain"
                  else "our HFDR with its guide zeroed at inference (not retrained)")
    spread = (f"mean ± std over {len(seeds)} seeds {seeds} (each the mean over the test captures)" if len(seeds) > 1
              else f"one seed ({seeds[0]}): mean over the test captures")
    return [
        (f"small-scale run: input {size}² (patches {rec.patch_size}², global {rec.global_size}²), {len(keys)} test "
         f"captures (held-out subjects{', ' + test_store(cfg) if c.get('test_store') else ''}), metrics in image space at {size}² over GT face mask ∩ every method's "
         f"coverage; {spread}"),
        f"{PERCEPTUAL_NAMES[perceptual]} on the region's bounding box{tiles}" if perceptual
        else "no perceptual metric (metrics.perceptual=none)",
        (f"patch_only: {patch_only}; lowres_realesrgan / lowres_sr: a pipeline trained at its own {low}² input "
         f"(global {low // 4}², patches {low // 8}²; same captures area-downsampled, same budget and seed) on the "
         f"area-downsampled input, maps ×{c.lowres_factor} by Real-ESRGAN x4plus (×4, then bicubic ×2; specular as "
         f"grey RGB) / by bicubic; lowres_input: input down ×{c.lowres_factor} and bicubic up, then our pipeline; "
         "gde_only: guide bilinear-upsampled"),
        ("Seam: seam metric of the error map (prediction - GT), mean over the three maps: gradient energy on the "
         f"{rec.patch_size}-px patch-boundary lines / on phase-matched interior lines; content edges cancel, so 1 = no "
         "seam artifacts, more = jumps or damaged seam bands (per-capture CSV: also seam_pred, on the prediction)"),
        f"wall time: training {t_train:.0f}s, evaluation {t_eval:.0f}s",
        "checkpoints" + (f" (seed {seeds[0]})" if len(seeds) > 1 else "") + ": "
        + (", ".join(f"{k}={v}" for k, v in ckpts.items()) if ckpts else "none (untrained, fast_dev_run)"),
        *([f"low-res checkpoints: {', '.join(f'{k}={v}' for k, v in lowres_ckpts.items())}"] if lowres_ckpts else []),
    ]


UV_NOTE = ("UV space: every method's image-space maps and the GT splatted into the unified UV layout ({res}² "
           "texels) by the capture's GT uv map over the shared region (uhrtex.unwrap.methods splat, no hole filling); "
           "metrics over the texels observed; no seam metric (patches are an image-space notion)")


def to_uv_space(target: torch.Tensor, outputs: dict, mask: torch.Tensor, uv: torch.Tensor):
    """GT and every method's maps -> UV textures through the GT uv map (same texels for all); -> (7xRxR, outputs, mask)."""
    from experiments.compare_table import shared_region
    from uhrtex.unwrap.methods import UnwrapOptions, unwrap

    region = shared_region(mask, outputs)
    res = target.shape[-1]
    opts = UnwrapOptions(resolution=res, fill=False)
    # One splat pass for everything: the GT and every method's maps as channels of one stack.
    stack = {f"GT/{n}": v[0] for n, v in maps.TEXTURE.split(target[None]).items()}
    stack.update({f"{m}/{n}": v for m, (pred, _) in outputs.items() for n, v in pred.items()})
    r = unwrap(stack, region, "splat", uv=uv, options=opts)
    cover = (r.coverage > 0.5).float()
    uv_outputs = {m: ({n: r.textures[f"{m}/{n}"] for n in pred}, cover) for m, (pred, _) in outputs.items()}
    gt = maps.TEXTURE.cat({n: r.textures[f"GT/{n}"][None] for n in maps.TEXTURE.names})[0]
    return gt, uv_outputs, cover


def _means(rows: list[dict]) -> dict[str, float]:
    keys = {k for r in rows for k in r if k != "capture"}
    return {k: sum(r[k] for r in rows if k in r) / max(1, sum(1 for r in rows if k in r)) for k in keys}
