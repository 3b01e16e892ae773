"""The table writer: markdown cells (mean ± std, missing as '-'), numeric CSV that reads back, W&B records."""

import math

import pytest

from uhrtex.metrics import Column, Table, mean_std, read_csv


def _table():
    t = Table("Table 2 (test)", "Metric", [Column("albedo/ssim", "Albedo"), Column("specular/ssim", "Specular", 2)],
              notes=["small-scale"])
    t.add("SSIM w/ Hash", mean_std([{"albedo/ssim": 0.5, "specular/ssim": 0.2}, {"albedo/ssim": 0.7, "specular/ssim": 0.2}]))
    t.add("SSIM w/o Hash", {"albedo/ssim": 0.4})
    return t


def test_markdown_cells():
    md = _table().markdown()
    lines = md.splitlines()
    assert lines[0] == "**Table 2 (test)**"
    assert lines[2] == "| Metric | Albedo | Specular |"
    assert lines[4] == "| SSIM w/ Hash | 0.600 ± 0.141 | 0.20 ± 0.00 |"
    assert lines[5] == "| SSIM w/o Hash | 0.400 | - |"
    assert lines[-1] == "- small-scale"


def test_csv_round_trip_and_files(tmp_path):
    md, csv = _table().write(tmp_path / "out" / "table2")
    assert md.read_text().startswith("**Table 2") and csv.suffix == ".csv"
    back = read_csv(csv)
    assert back["SSIM w/ Hash"]["Albedo"] == 0.6 and math.isclose(back["SSIM w/ Hash"]["Albedo std"], math.sqrt(0.02))
    assert back["SSIM w/ Hash"]["n"] == 2
    assert back["SSIM w/o Hash"] == {"Albedo": 0.4, "n": 1.0}


def test_wandb_records():
    cols, data = _table().records()
    assert cols == ["Metric", "Albedo", "Specular"]
    assert data[1] == ["SSIM w/o Hash", "0.400", "-"]


def test_std_hidden_when_asked():
    t = _table()
    t.show_std = False
    assert "±" not in t.markdown()


def test_table2_mean_std_over_seeds_or_captures():
    from experiments.ablation import summarize, table2

    def rows(*values):
        return [{"capture": f"c{i}", "albedo/ssim": v, "albedo/psnr": 10 + v, "albedo/stlpips": 1 - v} for i, v in enumerate(values)]

    # Two seeds: each seed's mean over captures, then mean ± std over the seeds.
    stats, how = summarize({"hash": {0: rows(0.4, 0.6), 1: rows(0.6, 0.8)}, "nohash": {0: rows(0.3, 0.3), 1: rows(0.5, 0.5)}})
    assert "2 seeds" in how and stats["hash"]["albedo/ssim"] == pytest.approx((0.6, math.sqrt(0.02), 2))
    md = table2(stats, "stlpips", how, []).markdown()
    assert "| SSIM w/ Hash | 0.600 ± 0.141 | - | - |" in md and "| ST-LPIPS-alex w/o Hash | 0.600 ± 0.141 |" in md
    # One seed: spread over test captures.
    stats, how = summarize({"hash": {0: rows(0.4, 0.6)}, "nohash": {0: rows(0.2, 0.2)}})
    assert "2 test captures (one seed)" in how and stats["nohash"]["albedo/ssim"] == pytest.approx((0.2, 0.0, 2))


def test_compare_tables_give_mean_and_std_over_seeds_and_a_detail_table():
    from experiments.compare_table import detail_table, seed_rows, table1

    def rows(v):  # two captures per seed
        return {"ours": [{"capture": "a", "albedo/psnr": v, "albedo/band_psnr": v + 1, "albedo/hf_ratio": 0.5},
                         {"capture": "b", "albedo/psnr": v + 2, "albedo/band_psnr": v + 3, "albedo/hf_ratio": 0.7}]}

    one = seed_rows([rows(10.0)])
    assert one == rows(10.0)  # one seed: per-capture rows
    many = seed_rows([rows(10.0), rows(20.0)])
    assert [r["albedo/psnr"] for r in many["ours"]] == [11.0, 21.0]  # one row per seed: its mean over captures
    t = table1(many, None, [], show_std=True)
    assert "16.00 ± 7.07" in t.markdown()
    d = detail_table(many, [], show_std=True).markdown()
    assert "band PSNR↑" in d and "17.00 ± 7.07" in d and "0.60" in d


def test_compare_seeds_with_given_checkpoints_need_seed_in_their_paths(tmp_path):
    """seeds=[...] with compare.checkpoints re-evaluates one set of stages per seed: every given spec names its
    seed with `{seed}`, and each seed's sub-run gets its own paths."""
    from hydra.core.global_hydra import GlobalHydra

    from experiments.cli import compose_config
    from experiments.compare import _with_seed, compare

    spec = {"gde": "logs/gde/runs/r_seed{seed}/checkpoints/last.ckpt", "hfdr": "logs/hfdr/runs/r_seed{seed}/last.ckpt"}
    assert _with_seed(spec, 2) == {"gde": "logs/gde/runs/r_seed2/checkpoints/last.ckpt",
                                   "hfdr": "logs/hfdr/runs/r_seed2/last.ckpt"}
    assert _with_seed("logs_{seed}/", 1) == "logs_1/"
    GlobalHydra.instance().clear()
    cfg = compose_config(["exp=compare", "seeds=[0,1]", "compare.checkpoints=logs/", f"paths.output_dir={tmp_path}",
                          "compare.lowres_checkpoints='logs_{seed}/'"])
    GlobalHydra.instance().clear()
    with pytest.raises(ValueError, match=r"put \{seed\} in their paths"):
        compare(cfg)
    # Ours trained per seed, but one baseline for every seed: refused as well.
    cfg = compose_config(["exp=compare", "seeds=[0,1]", f"paths.output_dir={tmp_path}", "compare.lowres_checkpoints=logs/"])
    GlobalHydra.instance().clear()
    with pytest.raises(ValueError, match=r"put \{seed\} in their paths"):
        compare(cfg)


def test_compare_per_capture_rows_name_their_seed(tmp_path):
    """per_capture.csv: one row per (method, seed, capture), written atomically (no temporary file left)."""
    import csv

    from experiments.compare import _seeded, _write_rows

    rows = {"ours": [{"capture": "s0004", "albedo/psnr": 27.0}], "gde_only": [{"capture": "s0004", "albedo/psnr": 26.0}]}
    per_seed = [_seeded(rows, 0), _seeded({m: [{**r, "albedo/psnr": r["albedo/psnr"] + 1} for r in rs]
                                           for m, rs in rows.items()}, 1)]
    _write_rows(tmp_path / "per_capture.csv", {m: [r for s in per_seed for r in s[m]] for m in rows})
    with open(tmp_path / "per_capture.csv") as f:
        read = list(csv.DictReader(f))
    assert list(read[0])[:3] == ["method", "seed", "capture"]
    assert [(r["method"], r["seed"], float(r["albedo/psnr"])) for r in read] == [
        ("ours", "0", 27.0), ("ours", "1", 28.0), ("gde_only", "0", 26.0), ("gde_only", "1", 27.0)]
    assert [p.name for p in tmp_path.iterdir()] == ["per_capture.csv"]
