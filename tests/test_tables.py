"""The table writer: markdown cells (mean ± std, missing as '-'), numeric CSV that reads back, W&B records."""

import math

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
