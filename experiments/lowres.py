"""The low-resolution pipeline of the `lowres_sr` / `lowres_realesrgan` baselines of `+exp=compare`.

The DreamFace recipe: a system *trained at its own, lower resolution*, whose maps are then super-resolved.
Here: the same three stages, trained at `input_size / compare.lowres_factor` on the same captures, with the
same data, budget (epochs, batches, preset width) and seed, as separate runs `logs/lowres_<stage>/runs/<run>`.
Sizes follow the one-knob rule (global = input/4, patch = input/8): at the CPU preset 64² input, 16² global,
8² patches; the UNets accept these (uv_normal's 4 poolings reach 1², HFDR's 3 reach 1²).

Training data: a capture store `<data.store>_low<size>` made by *area-downsampling every capture of the
full-resolution store* (maps, mask and the global level; camera intrinsics scaled), not by rendering again at
the low size. Why: (1) the evaluation feeds the low-res pipeline the area-downsampled input
(experiments/baselines.py), so training on the same operator leaves no train/test gap - the built-in renderer
does not antialias, so a 64² render would be aliased where the evaluation input is a 64-sample box average;
(2) the captures are then exactly the same frames (subjects, lightings, cameras, seeds), only smaller, and the
GT maps are their band-limited versions, which is what a low-resolution system can learn; (3) the datamodule
stays unchanged (it requires captures of exactly `input_size`). Caveat: uv / normal are averaged too, so the
silhouette pixels (soft mask) mix with the zero background, as any antialiased render does.
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf, open_dict

from experiments.subruns import plain
from uhrtex.captures.format import Capture
from uhrtex.captures.store import CaptureStore
from uhrtex.checkpoint import STAGES, stage_checkpoints

log = logging.getLogger(__name__)
PREFIX = "lowres_"


def lowres_store_url(store: str, size: int) -> str:
    return f"{str(store).rstrip('/')}_low{size}"


def downsample_capture(cap: Capture, size: int) -> Capture:
    """Every map area-averaged to size² (zero outside the mask stays zero); intrinsics scaled alike."""
    h, w = cap.size
    maps = {n: F.interpolate(v[None].float(), size=(size, size), mode="area")[0].clamp(0, 1) for n, v in cap.maps.items()}
    meta = copy.deepcopy(cap.meta)
    cam = meta.get("camera")
    if cam:
        sy, sx = size / h, size / w
        cam.update(fx=cam["fx"] * sx, fy=cam["fy"] * sy, cx=cam["cx"] * sx, cy=cam["cy"] * sy, width=size, height=size)
    return Capture(maps, meta).quantized()


def downsampled_store(src_url: str, size: int) -> str:
    """Write the missing captures of `src_url` into `<src>_low<size>` at size² (with their size/4 level)."""
    src = CaptureStore(src_url)
    url = lowres_store_url(src_url, size)
    dst = CaptureStore(url, mode="a")
    have = set(dst.keys(refresh=True))
    todo = [k for k in src.keys() if k not in have]
    for key in todo:
        cap = Capture(src.read(key), src.meta(key))
        dst.write(key, downsample_capture(cap, size), global_sizes=[size // 4])
    log.info("low-res store %s: %d captures written, %d already there", url, len(todo), len(have))
    return url


def train_lowres(cfg: DictConfig, size: int) -> dict[str, str]:
    """Train uv_normal -> gde -> hfdr at `size` through train_all (same overrides, epochs, seed); -> {stage: ckpt}.

    Runs after the full-resolution training (whose train_all rendered the captures into `data.store`)."""
    from experiments.train_all import train_all

    store = downsampled_store(str(cfg.data.store), size)
    low = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    with open_dict(low):
        low.data.store = store  # train_all's check for missing captures then finds them all
        low.paths.output_dir = str(Path(cfg.paths.output_dir) / "lowres")
        low.run_name = str(cfg.run_name)
        low.pop("hydra", None)
        over = low.pipeline.overrides
        over["all"] = [*(over.get("all") or []), f"input_size={size}", f"data.store={store}"]
        for stage in STAGES:
            over[stage] = [*(over.get(stage) or []), f"task_name={PREFIX}{stage}"]
    train_all(low)
    summary = json.loads((Path(low.paths.output_dir) / "summary.json").read_text())
    return {s: summary[s]["checkpoint"] for s in STAGES}


def find_lowres_checkpoints(spec) -> dict[str, str]:
    """{stage: file} from a folder with `lowres_<stage>.ckpt`, `lowres_<stage>/checkpoints/last.ckpt` or
    `lowres_<stage>/runs/<newest>/checkpoints/last.ckpt` (a logs/ folder), or a {uv_normal, gde, hfdr} mapping."""
    found = stage_checkpoints(spec if isinstance(spec, (str, Path)) else plain(spec), PREFIX, "compare.lowres_checkpoints")
    return {s: found[s] for s in STAGES}


def check_scale(rec, image: torch.Tensor) -> None:
    """The low-res pipeline must run at the input size it was built for, never off its scale."""
    if tuple(image.shape[-2:]) != (rec.input_size, rec.input_size):
        raise ValueError(f"low-res pipeline built for {rec.input_size}² got a {tuple(image.shape[-2:])} input; "
                         "its input_size must be the evaluated input_size / compare.lowres_factor")
