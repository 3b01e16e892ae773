"""tools/compare_outputs.py (the check behind "byte-identical outputs" claims of speed work): equal content passes
whatever the encoding, and one changed sample in a PNG, in a .glb texture or a manifest value is found."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import torch

from uhrtex.common.io import encode_png, write_png
from uhrtex.export.glb import glb_bytes
from uhrtex.unwrap.fill import head_template

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("compare_outputs", REPO / "tools/compare_outputs.py")
compare_outputs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(compare_outputs)


def _folder(d: Path, albedo: torch.Tensor, manifest: dict) -> Path:
    d.mkdir()
    write_png(d / "albedo.png", albedo)
    write_png(d / "micronormal.png", albedo.flip(0), bits=16)
    mesh = head_template(16)[0]
    (d / "head.glb").write_bytes(glb_bytes(mesh, {"albedo": albedo, "micronormal": albedo, "specular": albedo[:1]}))
    (d / "manifest.json").write_text(json.dumps(manifest))
    return d


@pytest.fixture()
def pair(tmp_path):
    g = torch.Generator().manual_seed(0)
    albedo = torch.rand(3, 32, 32, generator=g)
    manifest = {"albedo_off_skin_blob": 0.01, "timings_s": {"hfdr": 1.0}, "unwrap": {"timings_s": {"fill": 0.1}},
                "portrait": "/a/p.png", "face": {"warnings": ["/a/p.png: a small face"]}}
    return albedo, manifest, _folder(tmp_path / "old", albedo, manifest)


def test_same_content_is_identical_whatever_the_encoding_and_timings(pair, tmp_path):
    albedo, manifest, old = pair
    new = tmp_path / "new"
    shutil.copytree(old, new)
    (new / "albedo.png").write_bytes(encode_png(albedo, compression=0))  # stored, not deflated: same pixels
    assert (new / "albedo.png").read_bytes() != (old / "albedo.png").read_bytes()
    (new / "manifest.json").write_text(json.dumps({**manifest, "timings_s": {"hfdr": 2.0}, "portrait": "/b/p.png",
                                                   "face": {"warnings": ["/b/p.png: a small face"]},
                                                   "unwrap": {"timings_s": {"fill": 9.0}}}))
    assert compare_outputs.compare(old, new) == {"identical": True, "files": 4, "differ": {}}


def test_one_sample_off_is_found_in_pngs_glb_textures_and_the_manifest(pair, tmp_path):
    albedo, manifest, old = pair
    bumped = albedo.clone()
    bumped[1, 5, 7] = (torch.round(bumped[1, 5, 7] * 255) + 1).clamp(max=255) / 255 if bumped[1, 5, 7] < 0.9 else 0.0
    new = _folder(tmp_path / "new", bumped, {**manifest, "albedo_off_skin_blob": 0.02})
    result = compare_outputs.compare(old, new)
    assert not result["identical"]
    assert result["differ"]["albedo.png"].startswith("1 of 3072 samples differ")
    assert result["differ"]["micronormal.png"].startswith("1 of 3072 samples differ")
    assert "samples differ" in result["differ"]["head.glb"]
    assert "albedo_off_skin_blob" in result["differ"]["manifest.json"]
    (new / "albedo.png").write_bytes((new / "albedo.png").read_bytes()[:100])  # truncated
    assert compare_outputs.compare(old, new)["differ"]["albedo.png"].startswith("cannot be read")
    (new / "extra.txt").write_text("x")
    assert compare_outputs.compare(old, new)["differ"]["extra.txt"] == "only in new"
