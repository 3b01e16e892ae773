"""Training heads (ICT-FaceKit shapes + procedural skin): determinism, the shape model's weights, ears and eyes,
maps in range, region-dependent skin, the export CLI."""

from __future__ import annotations

import json

import pytest
import torch

from uhrtex.captures.heads import Subject, make_textures
from uhrtex.captures.heads.export import main as export_main
from uhrtex.captures.heads.layout import face_regions
from uhrtex.captures.heads.shape import posed_mesh, posed_vertices
from uhrtex.captures.heads.skin import face_textures
from uhrtex.captures.heads.subject import ISSA_TONES
from uhrtex.common.imaging import srgb_to_linear
from uhrtex.head_model import ict_model, mean_head
from uhrtex.render.mesh import read_obj


def test_same_seed_same_head_and_other_seeds_differ():
    a, b, c = posed_vertices(Subject.from_seed(3)), posed_vertices(Subject.from_seed(3)), posed_vertices(Subject.from_seed(4))
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 0.3  # cm
    ta, tb = face_textures(Subject.from_seed(3), 64), face_textures(Subject.from_seed(3), 64)
    assert all(torch.equal(ta[k], tb[k]) for k in ta)


def test_identity_and_expression_weights_change_the_mesh():
    m = ict_model()
    neutral = m.shape()
    ident = m.shape(identity=torch.eye(100)[0] * 2.0)
    smile = m.shape(expression={"mouthSmile_L": 1.0})
    assert (ident - neutral).abs().max() > 0.5 and (smile - neutral).abs().max() > 0.5
    corners = m.landmarks68[[48, 54]]  # one mouth corner moves with a one-sided smile, the back of the head does not
    assert (smile - neutral)[corners].norm(dim=1).max() > 0.3
    back = int(m.neutral[:, 2].argmin())
    assert (smile - neutral)[back].norm() < 1e-3
    with pytest.raises(KeyError, match="unknown ICT expression"):
        m.shape(expression={"grin": 1.0})


def test_ears_and_eyeballs_exist_and_gaze_turns_the_eyes():
    head = mean_head()
    assert {"M_ScleraLeft", "M_ScleraRight", "M_Teeth", "M_Face"} <= set(head.materials)
    face = head.verts[head.tri[head.material == head.materials.index("M_Face")].long().flatten()]
    assert (face[:, 0] > 0.75).any() and (face[:, 0] < -0.75).any()  # ears stick out beyond 7.5 cm from the midline
    m = ict_model()
    s = Subject.from_seed(5)
    looking = posed_vertices(s)
    ahead = posed_vertices(Subject(**{**s.__dict__, "gaze_deg": (0.0, 0.0)}))
    eye = m.part_vertices("eyeball_left")
    assert (looking[eye] - ahead[eye]).abs().max() > 0.05
    lids = m.part_vertices("face")
    assert torch.equal(looking[lids], ahead[lids])
    mesh = posed_mesh(s)
    assert torch.isfinite(mesh.normals).all() and torch.allclose(mesh.normals.norm(dim=1), torch.ones(len(mesh.normals)), atol=1e-4)


def test_maps_are_in_range_and_tiles_agree():
    a = make_textures(7, 96)
    assert set(a) == {"M_Face", "M_BackHead", "M_GumsTongue", "M_Teeth", "M_ScleraLeft", "M_ScleraRight"}
    for maps in a.values():
        for k, x in maps.items():
            assert torch.isfinite(x).all() and x.min() >= 0 and x.max() <= 1, k
    b = face_textures(Subject.from_seed(7), 96, tile_texels=96 * 5)  # 5-row tiles, each computed on its own
    for k, x in b.items():
        assert torch.allclose(a["M_Face"][k], x, atol=1e-6), k


def _mean(tex: torch.Tensor, region: str, res: int) -> torch.Tensor:
    m = face_regions(res)[region][0] > 0.8
    assert m.sum() > 3
    return tex[:, m].mean(1)


@pytest.mark.parametrize("seed", range(6))
def test_skin_follows_the_measured_tones_and_the_regions(seed):
    s = Subject.from_seed(seed)
    res = 128
    alb = srgb_to_linear(face_textures(s, res)["albedo"])
    cheek, lips = _mean(alb, "cheeks", res), _mean(alb, "lips", res)
    lo, hi = ISSA_TONES[-1], ISSA_TONES[0]
    assert 0.6 * (lo[0] - 0.03) < cheek[0] < hi[0], (seed, cheek)  # within the measured facial range (ISSA)
    assert cheek[0] > cheek[1] > cheek[2]  # skin: red > green > blue
    assert lips[1] / lips[0] < cheek[1] / cheek[0]  # lips are redder than the cheeks


def test_export_cli_writes_a_readable_multi_material_head(tmp_path, capsys):
    assert export_main([str(tmp_path / "all"), "--seed", "2", "--res", "64"]) == 0
    meta = json.loads((tmp_path / "all" / "asset.json").read_text())
    assert meta["head_model"] == "ict-facekit" and len(meta["weights"]["identity"]) == 100
    obj = (tmp_path / "all" / meta["files"]["obj"]).read_text()
    assert obj.count("usemtl ") == 6
    assert export_main([str(tmp_path / "face"), "--seed", "2", "--res", "64", "--face-only"]) == 0
    face = read_obj(next((tmp_path / "face").glob("*.obj")))
    assert face.uv.min() >= 0 and face.uv.max() <= 1 and face.tri.shape[0] > 15000
