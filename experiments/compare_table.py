"""Table 1 of the comparison: evaluate every method on the same captures, the same region, the same metrics.

`evaluate_capture` takes the GT maps, the GT mask and each method's image-space maps + coverage, and measures
every method on one region: GT face mask ∩ the coverage of every method (the paper's "overlapping area of the
frontal projections"). A method may lack maps (e.g. NextFace has no micronormal): those cells stay empty.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from experiments.eval_common import MAP_HEADERS, PERCEPTUAL_NAMES
from uhrtex import maps
from uhrtex.metrics import Column, Evaluator, Table, mean_std
from uhrtex.metrics.evaluate import perceptual_many

MethodOutput = tuple[Mapping[str, torch.Tensor], torch.Tensor]  # ({map: C x H x W}, coverage 1 x H x W)


def shared_region(mask: torch.Tensor, outputs: Mapping[str, MethodOutput]) -> torch.Tensor:
    region = mask > 0.5
    for _, cover in outputs.values():
        region = region & (cover > 0.5)
    return region.float()


def evaluate_capture(evaluator: Evaluator, key: str, target: torch.Tensor, mask: torch.Tensor,
                     outputs: Mapping[str, MethodOutput], patch: int | None) -> dict[str, dict]:
    """{method: row} for one capture; target is 7 x H x W (maps.TEXTURE), mask 1 x H x W."""
    region = shared_region(mask, outputs)[None]
    gt = maps.TEXTURE.split(target[None])
    rows = {}
    for method, (pred, _) in outputs.items():
        names = tuple(n for n in maps.TEXTURE.names if n in pred)
        row = evaluator({n: pred[n][None] for n in names}, gt, region, patch=patch, names=names, perceptual=False)[0]
        rows[method] = {"capture": key, "region_px": float(region.sum()), **row}
    if evaluator.kind is not None:  # all methods of a map in one pass: the GT is encoded once
        for name in maps.TEXTURE.names:
            having = [m for m, (pred, _) in outputs.items() if name in pred]
            if having:
                d = perceptual_many(evaluator, torch.stack([outputs[m][0][name] for m in having]), gt[name], region)
                for m, v in zip(having, d.tolist()):
                    rows[m][f"{name}/{evaluator.perceptual_key}"] = v
    return rows


def seed_rows(per_seed: list[Mapping[str, list[dict]]]) -> dict[str, list[dict]]:
    """{method: rows} to tabulate: per-capture rows for one seed; with several seeds, one row per seed (the seed's
    mean over captures), so that the tables' mean ± std is over seeds."""
    if len(per_seed) == 1:
        return dict(per_seed[0])
    out: dict[str, list[dict]] = {}
    for seed, rows in enumerate(per_seed):
        for method, method_rows in rows.items():
            stats = mean_std([{k: v for k, v in r.items() if k != "capture"} for r in method_rows])
            out.setdefault(method, []).append({"capture": f"seed{seed}", **{k: m for k, (m, _, n) in stats.items() if n}})
    return out


DETAIL = (("band_psnr", "band PSNR↑", 2), ("band_corr", "band corr↑", 3), ("hf_ratio", "HF ratio (→1)", 2))


def detail_table(rows: Mapping[str, list[dict]], notes: list[str], show_std: bool,
                 title: str = "Table 1b: the detail band a ×8 low-resolution input cannot carry") -> Table:
    """Rows = methods; per map band PSNR↑, band correlation↑ and HF energy ratio (best at 1; 0 = blurred)."""
    columns = [Column(f"{m}/{k}", f"{MAP_HEADERS[m]} {h}", d) for m in MAP_HEADERS for k, h, d in DETAIL]
    t = Table(title, "Method", columns, notes=notes, show_std=show_std)
    for method, method_rows in rows.items():
        t.add(method, mean_std([{k: v for k, v in r.items() if k != "capture"} for r in method_rows]))
    return t


def table1(rows: Mapping[str, list[dict]], perceptual: str | None, notes: list[str],
           title: str = "Table 1: comparison on the test captures", show_std: bool = False) -> Table:
    """Rows = methods; per map SSIM↑, perceptual↓, PSNR↑; micronormal angle; seam metric of the error, mean over maps."""
    metrics = [("ssim", "SSIM↑", 3)] + ([(perceptual, f"{PERCEPTUAL_NAMES[perceptual]}↓", 3)] if perceptual else []) \
        + [("psnr", "PSNR↑", 2)]
    columns = [Column(f"{m}/{k}", f"{MAP_HEADERS[m]} {h}", d) for m in MAP_HEADERS for k, h, d in metrics]
    columns += [Column("micronormal/angle", "MicroNormal angle° ↓", 2), Column("seam", "Seam↓ (1 = none)", 3)]
    t = Table(title, "Method", columns, notes=notes, show_std=show_std)
    for method, method_rows in rows.items():
        stats = mean_std([{k: v for k, v in r.items() if k != "capture"} for r in method_rows])
        seams = [stats[f"{m}/seam"][0] for m in MAP_HEADERS if f"{m}/seam" in stats and stats[f"{m}/seam"][2]]
        cells = dict(stats)
        if seams:
            cells["seam"] = sum(seams) / len(seams)
        t.add(method, cells)
    return t
