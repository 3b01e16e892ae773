"""The external-method folder reader on fabricated methods: image-space maps and UV textures + mesh."""

import pytest
import torch

from uhrtex.captures.format import Camera
from uhrtex.common.io import write_png
from uhrtex.metrics.external import (
    ExternalMethod,
    ExternalMethodError,
    find_methods,
    read_obj,
)

H = W = 16
KEY = "s000__studio__c00"


def _camera():
    # Identity extrinsics; at depth 1 the frame spans x, y in [-1, 1] (y down).
    return Camera(fx=W / 2, fy=H / 2, cx=W / 2, cy=H / 2, width=W, height=H)


def _quad_obj(path, x1=1.0):
    # Top-left, top-right, bottom-right, bottom-left at depth 1; UV v = 1 at the top of the picture.
    path.write_text(f"v -1 -1 1\nv {x1} -1 1\nv {x1} 1 1\nv -1 1 1\n"
                    "vt 0 1\nvt 1 1\nvt 1 0\nvt 0 0\nf 1/1 2/2 3/3 4/4\n")


def test_image_space_method_with_mask_and_resize(tmp_path):
    g = torch.Generator().manual_seed(0)
    folder = tmp_path / "methods" / "fake_df" / KEY
    folder.mkdir(parents=True)
    (tmp_path / "methods" / "fake_df" / "method.yaml").write_text("name: FakeDreamFace\nspace: image\n")
    albedo = torch.rand(3, 2 * H, 2 * W, generator=g)  # twice the capture size: area-downsampled on read
    write_png(folder / "albedo.png", albedo, bits=16)
    mask = torch.zeros(1, H, W)
    mask[:, :, : W // 2] = 1
    write_png(folder / "mask.png", mask, bits=8)
    [method] = find_methods(tmp_path / "methods")
    assert method.name == "FakeDreamFace" and method.space == "image" and method.keys() == [KEY]
    maps, cover = method.load(KEY, _camera())
    assert set(maps) == {"albedo"}  # a method without micronormal/specular just lacks them
    assert torch.equal(cover, mask)
    expected = torch.nn.functional.avg_pool2d(albedo[None], 2)[0] * mask
    assert torch.allclose(maps["albedo"], expected, atol=1e-4)
    with pytest.raises(ExternalMethodError, match="no outputs for 1 test capture"):
        method.check_keys([KEY, "s001__studio__c00"])


def test_uv_space_method_projects_through_its_mesh(tmp_path):
    g = torch.Generator().manual_seed(1)
    root = tmp_path / "fake_nf"
    folder = root / KEY
    folder.mkdir(parents=True)
    (root / "method.yaml").write_text("space: uv\n")
    spec = torch.rand(1, H, W, generator=g)
    write_png(folder / "specular.png", spec, bits=16)
    _quad_obj(folder / "mesh.obj")
    method = ExternalMethod.open(root)
    assert method.name == "fake_nf" and method.space == "uv"
    maps, cover = method.load(KEY, _camera())
    # The quad fills the frame with UVs matching pixel centres, so the projection reproduces the file.
    assert cover.all()
    assert torch.allclose(maps["specular"], spec, atol=1e-4)

    _quad_obj(folder / "mesh.obj", x1=0.0)  # now the mesh covers only the left half of the frame
    maps, cover = method.load(KEY, _camera())
    assert cover[..., : W // 2].all() and not cover[..., W // 2:].any()
    assert (maps["specular"][..., W // 2:] == 0).all()


def test_read_obj_fan_triangulates_and_errors(tmp_path):
    path = tmp_path / "m.obj"
    _quad_obj(path)
    pos, uv, tri, tri_uv = read_obj(path)
    assert pos.shape == (4, 3) and uv.shape == (4, 2) and tri.tolist() == tri_uv.tolist() == [[0, 1, 2], [0, 2, 3]]
    path.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    with pytest.raises(ExternalMethodError, match="without texture coordinates"):
        read_obj(path)


def test_layout_errors_are_one_line(tmp_path):
    (tmp_path / "m" / KEY).mkdir(parents=True)
    method = ExternalMethod.open(tmp_path / "m")
    with pytest.raises(ExternalMethodError) as err:
        method.load(KEY, _camera())
    assert "none of albedo, micronormal, specular" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ExternalMethodError, match="does not exist"):
        find_methods(tmp_path / "nowhere")


def test_fabricated_method_evaluated_on_the_shared_region(tmp_path):
    from experiments.compare_table import evaluate_capture, table1
    from uhrtex.maps import TEXTURE
    from uhrtex.metrics import Evaluator

    g = torch.Generator().manual_seed(2)
    target = torch.rand(TEXTURE.channels, H, W, generator=g)
    mask = torch.ones(1, H, W)
    folder = tmp_path / "NextFaceLike" / KEY
    folder.mkdir(parents=True)
    albedo = TEXTURE.split(target[None])["albedo"][0]
    write_png(folder / "albedo.png", albedo, bits=16)  # perfect albedo, but only on the left half
    cover = torch.zeros(1, H, W)
    cover[..., : W // 2] = 1
    write_png(folder / "mask.png", cover)
    ext = ExternalMethod.open(tmp_path / "NextFaceLike")
    ours = {n: v[0] for n, v in TEXTURE.split(target[None]).items()}
    ours["albedo"] = torch.where(cover.bool(), ours["albedo"], 1 - ours["albedo"])  # wrong only where the other has no output
    outputs = {"ours": (ours, torch.ones(1, H, W)), ext.name: ext.load(KEY, _camera())}
    rows = evaluate_capture(Evaluator(perceptual=None), KEY, target, mask, outputs, patch=4)
    # Both are measured on the left half only, where both are exact.
    assert rows["ours"]["region_px"] == rows["NextFaceLike"]["region_px"] == H * W // 2
    assert rows["ours"]["albedo/ssim"] == pytest.approx(1.0, abs=1e-4)
    assert rows["NextFaceLike"]["albedo/ssim"] == pytest.approx(1.0, abs=1e-3)
    assert "micronormal/ssim" not in rows["NextFaceLike"]
    md = table1({m: [r] for m, r in rows.items()}, None, ["fabricated"]).markdown()
    line = next(ln for ln in md.splitlines() if ln.startswith("| NextFaceLike"))
    assert "| - |" in line  # missing micronormal/specular cells
