"""Procedural heads: determinism, one topology / UV layout for all subjects, region-dependent textures, I/O."""

from __future__ import annotations

import json

import pytest
import torch

from uhrtex.captures.heads import MeshError, Subject, UV_LAYOUT, build_mesh, make_textures, read_obj, region_maps, write_obj
from uhrtex.captures.heads.export import main as export_main
from uhrtex.captures.heads.mesh import head_uv_area_fraction
from uhrtex.common.io import srgb_to_linear

GRID = (65, 57)  # a small grid: same code path, fast


def test_mesh_is_deterministic_and_topology_is_shared():
    meshes = [build_mesh(Subject.from_seed(s), GRID) for s in (0, 1, 2, 0)]
    assert torch.equal(meshes[0].verts, meshes[3].verts)  # same seed, same head
    for m in meshes[1:]:
        assert torch.equal(m.tri, meshes[0].tri) and torch.equal(m.uv, meshes[0].uv)  # one topology, one UV layout
    assert (meshes[0].verts - meshes[1].verts).abs().max() > 0.02  # different seeds, different shapes


def test_uv_layout_covers_the_square_without_flips():
    m = build_mesh(Subject.from_seed(4), GRID)
    assert m.uv.min() >= 0 and m.uv.max() <= 1
    t = m.tri.long()
    a, b, c = m.uv[t[:, 0]], m.uv[t[:, 1]], m.uv[t[:, 2]]
    area = (b - a)[:, 0] * (c - a)[:, 1] - (c - a)[:, 0] * (b - a)[:, 1]
    assert (area > 0).all()  # every triangle keeps its orientation in UV: no overlaps or flips
    assert head_uv_area_fraction(m) > 0.95
    # the face: a UV point near the centre lies in front (+z), the nose tip is the most forward vertex
    front = m.verts[(m.uv - torch.tensor([0.5, 0.4])).norm(dim=1).argmin()]
    assert front[2] > 0.9 and m.verts[:, 2].argmax() in torch.nonzero((m.uv[:, 0] - 0.5).abs() < 0.02)
    assert torch.isfinite(m.normals).all() and torch.allclose(m.normals.norm(dim=1), torch.ones(len(m.normals)), atol=1e-4)
    # outward normals: they point away from the head centre
    assert ((m.normals * m.verts).sum(1) > 0).float().mean() > 0.97


def test_textures_are_deterministic_and_tiles_agree():
    a = make_textures(7, 96)
    b = make_textures(7, 96, tile_texels=96 * 5)  # 5-row tiles: every tile computed on its own
    for k in a:
        assert a[k].shape[-2:] == (96, 96) and a[k].dtype == torch.float32
        assert torch.allclose(a[k], b[k], atol=1e-6), k
        assert a[k].min() >= 0 and a[k].max() <= 1
    c = make_textures(8, 96)
    assert (a["albedo"] - c["albedo"]).abs().mean() > 0.01


def _region_mean(tex: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    sel = mask[0] > 0.8
    assert sel.sum() > 3, "region not found in the texture"
    return tex[:, sel].mean(1)


@pytest.mark.parametrize("seed", range(8))
def test_regions_differ_for_every_subject(seed):
    res = 128
    tex = make_textures(seed, res)
    reg = region_maps(seed, res)
    alb = srgb_to_linear(tex["albedo"])
    lips, cheeks = _region_mean(alb, reg["lips"]), _region_mean(alb, reg["cheeks"] * (1 - reg["hair"]) * (1 - reg["beard"]))
    redness = lambda c: float(c[0] / c[1])  # noqa: E731 - R/G: haemoglobin absorbs green
    assert redness(lips) > redness(cheeks) * 1.15, (lips, cheeks)
    spec = tex["specular"]
    assert float(_region_mean(spec, reg["t_zone"])) > float(_region_mean(spec, reg["cheeks"])) + 0.1
    assert float(_region_mean(spec, reg["eyes"])) > 0.8
    eye = _region_mean(alb, reg["eyes"])
    assert float((eye - cheeks).abs().max()) > 0.05  # the eyes are not skin


def test_skin_tones_span_a_wide_range():
    lum = []
    for seed in range(16):
        t = make_textures(seed, 64)
        cheek = _region_mean(srgb_to_linear(t["albedo"]), region_maps(seed, 64)["cheeks"])
        lum.append(float(cheek @ torch.tensor([0.2126, 0.7152, 0.0722])))
    assert max(lum) / min(lum) > 3, lum


def test_micronormal_is_unit_and_has_detail():
    t = make_textures(2, 256)
    n = t["micronormal"] * 2 - 1
    assert torch.allclose(n.norm(dim=0), torch.ones(256, 256), atol=2e-3)
    assert (n[2] > 0.5).all()  # tangent-space: mostly out of the surface
    face = region_maps(2, 256)["face"][0] > 0.9
    assert n[:2, face].std() > 0.01  # bumps, wrinkles, moles are there at 256^2 already
    flat = make_textures(2, 64)["micronormal"]  # sub-texel detail fades out instead of aliasing
    assert (flat * 2 - 1)[:2].abs().mean() < n[:2].abs().mean()


def test_obj_round_trip_and_missing_uvs(tmp_path):
    m = build_mesh(Subject.from_seed(1), GRID)
    path = write_obj(m, tmp_path / "head.obj")
    r = read_obj(path)
    assert r.tri.shape == m.tri.shape  # the same triangles, corner by corner (unused vertices are dropped)
    assert torch.allclose(r.verts[r.tri.long()], m.verts[m.tri.long()], atol=1e-5)
    assert torch.allclose(r.uv[r.tri.long()], m.uv[m.tri.long()], atol=1e-6)
    assert torch.allclose(r.normals[r.tri.long()], m.normals[m.tri.long()], atol=2e-3)
    # without 'vn' lines the normals are recomputed, smooth across the UV seam
    text = path.read_text().splitlines()
    bare = [ln for ln in text if not ln.startswith("vn ")]
    bare = [" ".join(["f"] + [c.rsplit("/", 1)[0] for c in ln.split()[1:]]) if ln.startswith("f ") else ln for ln in bare]
    (tmp_path / "bare.obj").write_text("\n".join(bare))
    r2 = read_obj(tmp_path / "bare.obj")
    cos = (r2.normals[r2.tri.long()] * m.normals[m.tri.long()]).sum(-1)
    assert cos.min() > 0.97
    no_uv = tmp_path / "no_uv.obj"
    no_uv.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    with pytest.raises(MeshError) as e:
        read_obj(no_uv)
    assert "no_uv.obj" in str(e.value) and "texture coordinate" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(MeshError, match="does not exist"):
        read_obj(tmp_path / "missing.obj")


def test_export_cli(tmp_path, capsys):
    assert export_main(["--seed", "3", "--res", "64", str(tmp_path)]) == 0
    for name in ("albedo", "micronormal", "specular"):
        head = (tmp_path / f"{name}.png").read_bytes()[:32]
        assert head[1:4] == b"PNG" and int.from_bytes(head[16:20], "big") == 64 and head[24] == 16, name  # 16-bit
    info = json.loads((tmp_path / "asset.json").read_text())
    assert info["uv_layout"] == UV_LAYOUT and info["seed"] == 3
    mesh = read_obj(tmp_path / "head0003.obj")
    assert mesh.verts.shape[0] > 1000
    assert "head0003.mtl" in (tmp_path / "head0003.obj").read_text()[:200]
