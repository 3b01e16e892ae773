import json
import math

import pytest
import torch

from tests.helpers.unwrap_scene import camera, gt_texture, render_maps, save_obj, uv_sphere
from uhrtex.captures.format import Camera, look_at
from uhrtex.unwrap.mesh import MeshError, check_camera, load_camera, load_obj
from uhrtex.unwrap.methods import UnwrapOptions, blend_template, flat_template, push_pull, unwrap

pytestmark = [pytest.mark.filterwarnings("ignore:raster. using the pure-torch backend"), pytest.mark.usefixtures("one_torch_thread")]

# Stated tolerances (GT image-space maps in, on the texels the camera sees): (mean abs, 95th percentile).
TOL = {"direct": (0.006, 0.02), "optimize": (0.01, 0.03), "splat": (0.02, 0.06)}  # textured sphere, 64² texture
TOL_CAPTURE = {"direct": (0.005, 0.012), "optimize": (0.01, 0.03)}  # procedural head capture, 256² texture


@pytest.fixture(scope="module")
def scene():
    mesh, cam, gt = uv_sphere(24, 32), camera(128, yaw=200), gt_texture(64)  # UV seam out of view
    img, mask = render_maps(mesh, cam, gt)
    return mesh, cam, gt, img, mask


def _errors(result, gt):
    cov = result.coverage[0] > 0
    err = (result.textures["maps"] - gt).abs()[:, cov]
    return float(err.mean()), float(err.quantile(0.95)), float(cov.float().mean())


@pytest.mark.parametrize("method", ["direct", "optimize"])
def test_mesh_methods_recover_the_texture(scene, method):
    mesh, cam, gt, img, mask = scene
    opts = UnwrapOptions(resolution=64, top_resolution=128, start_resolution=32, steps=8, fill=False)
    r = unwrap({"maps": img}, mask, method, mesh=mesh, camera=cam, options=opts)
    mae, p95, cov = _errors(r, gt)
    assert 0.12 < cov < 0.3  # a bit less than the visible hemisphere of a sphere's lat/long layout
    assert mae < TOL[method][0] and p95 < TOL[method][1], (mae, p95)
    # The texels seen are the ones facing the camera: longitude u around its yaw (200° -> u ≈ 0.56).
    u = 2 * math.pi * ((r.coverage[0] > 0).nonzero()[:, 1].float() + 0.5) / 64
    yaw = math.degrees(math.atan2(float(u.sin().mean()), float(u.cos().mean())))
    assert -170 < yaw < -150, yaw  # atan2 gives 200° as -160°


@pytest.mark.parametrize("method", ["direct", "optimize"])
def test_capture_ground_truth_textures(method):
    """A built-in capture's GT image-space maps unwrap onto its head mesh to the subject's UV textures."""
    from uhrtex import maps as M
    from uhrtex.captures.heads import head_asset
    from uhrtex.head_model import face_tile
    from uhrtex.captures.render import render_capture
    from uhrtex.unwrap.mesh import Mesh

    # A procedural sky: the bpy HDRIs exist only after `make blender-venv` (a slow test), and the lighting changes
    # only the image, not the GT maps unwrapped here.
    cap = render_capture(3, "sky0_r000", 0, 256, texture_resolution=256)
    asset = head_asset(3, 256)
    opts = UnwrapOptions(resolution=256, top_resolution=256, start_resolution=64, steps=10, fill=False)
    r = unwrap({k: cap.maps[k] for k in M.TEXTURE.names}, cap.maps["mask"], method, mesh=Mesh.from_head(face_tile(asset.mesh)),
               camera=cap.camera, options=opts)
    cov = r.coverage[0] > 0
    assert 0.3 < float(cov.float().mean()) < 0.9  # the face tile, less what the camera does not see
    for name in M.TEXTURE.names:
        err = (r.textures[name] - asset.textures["M_Face"][name].float()).abs()[:, cov]
        assert float(err.mean()) < TOL_CAPTURE[method][0] and float(err.quantile(0.95)) < TOL_CAPTURE[method][1], name


def test_splat_by_uv_map(scene):
    mesh, cam, gt, img, mask = scene
    from tests.helpers.unwrap_scene import _uv_image

    uv = _uv_image(mesh, cam)
    r = unwrap({"maps": img}, mask, "splat", uv=uv, options=UnwrapOptions(resolution=64, fill=False))
    mae, p95, cov = _errors(r, gt)
    assert cov > 0.1 and mae < TOL["splat"][0] and p95 < TOL["splat"][1], (mae, p95, cov)
    # A quarter-resolution UV map (as Stage 1 predicts it) is resampled per pixel and still lands.
    small = torch.nn.functional.interpolate(uv[None], scale_factor=0.25, mode="area")[0]
    r2 = unwrap({"maps": img}, mask, "splat", uv=small, options=UnwrapOptions(resolution=64, fill=False))
    mae2, _, cov2 = _errors(r2, gt)
    assert cov2 > 0.05 and mae2 < 0.05


def test_fill_and_template(scene):
    mesh, cam, gt, img, mask = scene
    r = unwrap({"albedo": img[:3], "specular": img[3:4]}, mask, "direct", mesh=mesh, camera=cam,
               options=UnwrapOptions(resolution=64))
    cov = r.coverage[0] > 0
    for _name, tex in r.textures.items():
        assert tex.shape[-2:] == (64, 64) and torch.isfinite(tex).all() and 0 <= float(tex.min()) and float(tex.max()) <= 1
    # Observed texels are kept; far from them the (tone-matched) template takes over.
    assert torch.allclose(r.textures["albedo"][:, cov], torch.from_numpy(
        unwrap({"albedo": img[:3]}, mask, "direct", mesh=mesh, camera=cam,
               options=UnwrapOptions(resolution=64, fill=False)).textures["albedo"].numpy())[:, cov], atol=1e-5)
    assert set(r.stats["template_gain"]) == {"albedo", "specular"}


def test_push_pull_fills_smoothly():
    x = torch.zeros(1, 32, 32)
    w = torch.zeros(1, 32, 32)
    x[0, :, :16], w[0, :, :16] = 0.2, 1
    x[0, :, 20:], w[0, :, 20:] = 0.8, 1
    y = push_pull(x, w)
    assert torch.equal(y[:, w[0] > 0], x[:, w[0] > 0])
    gap = y[0, :, 16:20]
    assert float(gap.min()) >= 0.2 - 1e-6 and float(gap.max()) <= 0.8 + 1e-6
    assert float(gap[:, 0].mean()) < float(gap[:, -1].mean())  # ramps from one side to the other
    assert torch.allclose(push_pull(torch.full((3, 17, 9), 0.4), (torch.rand(1, 17, 9) > 0.7).float()), torch.tensor(0.4))


@pytest.mark.parametrize("shape", [(7, 130, 96), (3, 256, 256), (1, 96, 200), (2, 64, 33), (3, 45, 45)])
def test_push_pull_in_row_blocks_is_the_whole_level_bit_for_bit(shape, monkeypatch):
    """The finest level runs in blocks of rows (cache-sized temporaries); one block is the whole-level computation."""
    import uhrtex.unwrap.fill as fill

    g = torch.Generator().manual_seed(sum(shape))
    c, h, w = shape
    cov = (torch.nn.functional.interpolate(torch.rand(1, 1, 7, 5, generator=g), size=(h, w)) > 0.5).float()[0]
    tex = torch.rand(c, h, w, generator=g)
    for weight in (cov, cov * torch.rand(1, h, w, generator=g)):
        blocked = push_pull(tex, weight)
        monkeypatch.setattr(fill, "_ROWS", 10**9)
        assert torch.equal(blocked, push_pull(tex, weight))
        monkeypatch.undo()


def test_template_is_tone_matched_by_mean_face_colour():
    tex = {"albedo": torch.full((3, 16, 16), 0.3)}
    cov = torch.zeros(1, 16, 16)
    cov[:, :, :4] = 1
    out, stats = blend_template(tex, cov, flat_template(16, {"albedo": 3}), sigma=1 / 64)
    far = out["albedo"][:, :, -1]
    assert torch.allclose(far, torch.tensor(0.3), atol=1e-3)  # template gained to the face's mean colour
    assert torch.equal(out["albedo"][:, :, :4], tex["albedo"][:, :, :4])


def test_flat_template_views_blend_like_a_materialised_template_and_stay_unchanged():
    """`flat_template` returns broadcast views (no per-texel memory); blending through them gives the numbers a
    contiguous copy gives, and never writes into them (the gain is applied to a copy)."""
    g = torch.Generator().manual_seed(0)
    tex = {"albedo": torch.rand(3, 32, 32, generator=g), "specular": torch.rand(1, 32, 32, generator=g)}
    cov = (torch.rand(1, 32, 32, generator=g) > 0.6).float()
    flat = flat_template(32, {"albedo": 3, "specular": 1})
    dense = {k: v.clone() for k, v in flat.items()}
    a, _ = blend_template({k: v.clone() for k, v in tex.items()}, cov, flat, sigma=1 / 16)
    b, _ = blend_template({k: v.clone() for k, v in tex.items()}, cov, dense, sigma=1 / 16)
    assert all(torch.equal(a[k], b[k]) for k in tex)
    assert torch.equal(flat["specular"], torch.full((1, 32, 32), 0.25))  # untouched by the gain


def test_obj_roundtrip_quads_and_negative_indices(tmp_path, scene):
    mesh = scene[0]
    save_obj(tmp_path / "s.obj", mesh)
    m2 = load_obj(tmp_path / "s.obj")
    # One vertex per v/vt pair: the same corners (positions and UVs) triangle by triangle.
    for a, b in zip(m2.corners(), mesh.corners()):
        assert torch.allclose(a, b, atol=1e-6)
    assert torch.equal(m2.faces, m2.faces_uv) and m2.normals is not None and m2.tangents.shape[1] == 4
    (tmp_path / "q.obj").write_text("v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nvt 0 0\nvt 1 0\nvt 1 1\nvt 0 1\n"
                                    "f -4/-4 -3/-3 -2/-2 -1/-1\n")
    q = load_obj(tmp_path / "q.obj")
    assert q.faces.tolist() == [[0, 1, 2], [0, 2, 3]]


@pytest.mark.parametrize("text, match", [
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n", "no texture coordinate"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nf 1/1 2/1 3/9\n", "index outside the file"),
    ("v 0 0 zero\nvt 0 0\nf 1/1 1/1 1/1\n", "not a valid OBJ"),
    ("hello\n", "no faces"),
])
def test_bad_obj_is_one_line(tmp_path, text, match):
    p = tmp_path / "m.obj"
    p.write_text(text)
    with pytest.raises(MeshError, match=match) as e:
        load_obj(p)
    assert "\n" not in str(e.value)
    with pytest.raises(MeshError, match="does not exist"):
        load_obj(tmp_path / "missing.obj")
    (tmp_path / "b.ply").write_bytes(b"ply\n")
    with pytest.raises(MeshError, match="unsupported mesh format"):
        load_obj(tmp_path / "b.ply")


def test_camera_checks(tmp_path, scene):
    mesh, cam = scene[0], scene[1]
    p = tmp_path / "cam.json"
    p.write_text(json.dumps(cam.to_dict()))
    assert load_camera(p).to_dict() == cam.to_dict()
    p.write_text(json.dumps({"meta": 1, "camera": cam.to_dict()}))
    assert load_camera(p).fx == cam.fx  # a capture's meta.json works
    for bad, match in (("{", "not valid JSON"), (json.dumps({"fx": 1}), "camera needs")):
        p.write_text(bad)
        with pytest.raises(MeshError, match=match):
            load_camera(p)
    behind = Camera.from_fov(45, 128, 128, look_at((0, 0, 3), (0, 0, 6)))
    with pytest.raises(MeshError, match="behind the camera"):
        check_camera(mesh, behind)
    aside = Camera.from_fov(10, 128, 128, look_at((0, 0, 3), (3, 0, 0)))
    with pytest.raises(MeshError, match="inside the 128x128 frame"):
        check_camera(mesh, aside)
    img, mask = scene[3], scene[4]
    wide = Camera.from_fov(45, 256, 128, cam.world_to_camera)
    with pytest.raises(MeshError, match="does not match the image"):
        unwrap({"maps": img}, mask, "direct", mesh=mesh, camera=wide, options=UnwrapOptions(resolution=32))


def test_interface_errors(scene):
    mesh, cam, gt, img, mask = scene
    with pytest.raises(ValueError, match="unknown unwrap method"):
        unwrap({"maps": img}, mask, "magic")
    with pytest.raises(MeshError, match="needs a mesh"):
        unwrap({"maps": img}, mask, "direct")
    with pytest.raises(ValueError, match="needs the predicted UV"):
        unwrap({"maps": img}, mask, "splat")
    assert math.isfinite(float(img.sum()))


# ------------------------------------------------------------------ fast paths against slow references


def test_uv_layout_raster_matches_the_general_rasterizer(scene):
    from uhrtex.raster import torch_backend as tb
    from uhrtex.raster.uv_layout import barycentric_forms, rasterize_uv_layout, texel_centres

    _, uv = scene[0].corners()
    tri = torch.arange(uv.shape[0]).view(-1, 3)
    for res in (37, 96):
        lay = rasterize_uv_layout(uv, tri, res)
        clip = torch.cat([uv * 2 - 1, torch.zeros_like(uv[:, :1]), torch.ones_like(uv[:, :1])], 1)[None]
        rast = tb.rasterize(clip, tri.int(), (res, res), grad_db=False)[0].reshape(-1, 4)
        ref = (rast[:, 3] > 0).nonzero().flatten()
        assert torch.equal(lay.texels, ref) and torch.equal(lay.tri, rast[ref, 3].long() - 1)
        X, Y = texel_centres(lay.texels, res, torch.float64)
        f = barycentric_forms(uv, tri)[lay.tri]
        bary = f[..., 0] + f[..., 1] * X[:, None] + f[..., 2] * Y[:, None]
        assert torch.allclose(bary.clamp(0, 1), rast[ref, :2].double(), atol=1e-5)
    # Overlapping triangles (mirrored UVs): the lower index wins, whatever the winding.
    sq = torch.tensor([[0.1, 0.1], [0.9, 0.1], [0.1, 0.9]])
    for order in ([0, 1, 2], [0, 2, 1]):
        lay = rasterize_uv_layout(torch.cat([sq, sq]), torch.tensor([order, [3, 5, 4]]), 16)
        assert lay.texels.numel() > 50 and bool((lay.tri == 0).all())


@pytest.mark.parametrize("case", ["sphere", "capture"])
def test_visible_texels_match_the_per_texel_reference(scene, case):
    """The affine-form visibility pass keeps the same texels at the same image positions as the per-texel one."""
    from uhrtex.raster import Renderer
    from uhrtex.unwrap.visibility import reference_visible_texels, visible_texels

    if case == "sphere":
        mesh, cam, _, _, mask = scene
        res = 80
    else:
        from uhrtex.captures.heads import head_asset
        from uhrtex.head_model import face_tile
        from uhrtex.captures.render import render_capture
        from uhrtex.unwrap.mesh import Mesh

        cap = render_capture(3, "sky0_r000", 0, 128, texture_resolution=64)
        mesh, cam, mask, res = Mesh.from_head(face_tile(head_asset(3, 16).mesh)), cap.camera, cap.maps["mask"], 192
    opts = UnwrapOptions(resolution=res)
    if case != "sphere":  # the back of the head and what lies off the mask are culled per triangle first
        from uhrtex.unwrap.visibility import _inside_mask, depth_buffer, occluded_triangles, off_mask_triangles

        zbuf, _ = depth_buffer(mesh, cam, opts.depth_resolution, Renderer("torch"))
        hidden = occluded_triangles(mesh, cam, zbuf, opts.depth_tolerance)
        off = off_mask_triangles(mesh, cam, _inside_mask(mask))
        assert hidden.float().mean() > 0.05 and bool((off & ~hidden).any())
    i1, g1 = visible_texels(mesh, cam, mask, res, opts, Renderer("torch"))
    i0, g0 = reference_visible_texels(mesh, cam, mask, res, opts, Renderer("torch"))
    assert i0.numel() > 500
    same = torch.isin(i0, i1)
    assert int((~same).sum()) + int((~torch.isin(i1, i0)).sum()) <= max(2, i0.numel() // 10000)  # threshold ties only
    g1 = g1[torch.searchsorted(i1, i0[same])]
    assert float((g1 - g0[same]).abs().max()) * max(mask.shape[-2:]) < 0.01  # < 1/200 pixel


def _push_pull_reference(tex, weight):  # the formula, level by level, no shortcuts
    v, wt = (tex * weight)[None], weight[None].float()
    stack = []
    while v.shape[-1] > 1 or v.shape[-2] > 1:
        stack.append((v, wt))
        ph, pw = v.shape[-2] % 2, v.shape[-1] % 2
        v, wt = torch.nn.functional.pad(v, (0, pw, 0, ph)), torch.nn.functional.pad(wt, (0, pw, 0, ph))
        v, wt = torch.nn.functional.avg_pool2d(v, 2) * 4, torch.nn.functional.avg_pool2d(wt, 2) * 4
    filled = v / wt.clamp_min(1e-8)
    for v, wt in reversed(stack):
        up = torch.nn.functional.interpolate(filled, size=v.shape[-2:], mode="bilinear", align_corners=False)
        a = wt.clamp(0, 1)
        filled = v / wt.clamp_min(1e-8) * a + up * (1 - a)
    return filled[0]


def _blend_reference(textures, coverage, template, sigma):  # every texel, gains over the whole texture
    from uhrtex.common.imaging import linear_to_srgb, srgb_to_linear
    from uhrtex.unwrap.fill import _gaussian_blur

    cov = coverage[None].float()
    w = torch.maximum(cov, _gaussian_blur(cov, sigma * coverage.shape[-1]).clamp(0, 1))[0]
    out = {}
    for name, tex in textures.items():
        t = template[name]
        if name != "micronormal":
            lin = name == "albedo"
            a, b = (srgb_to_linear(tex), srgb_to_linear(t)) if lin else (tex, t)
            gain = ((a * cov[0]).sum((1, 2)) / (b * cov[0]).sum((1, 2)).clamp_min(1e-6)).clamp(0.1, 10)
            t = linear_to_srgb(b * gain.view(-1, 1, 1)) if lin else b * gain.view(-1, 1, 1)
        out[name] = (w * tex + (1 - w) * t).clamp(0, 1)
    return out


def test_fill_and_blend_match_their_references():
    g = torch.Generator().manual_seed(0)
    cov = (torch.nn.functional.interpolate(torch.rand(1, 1, 6, 6, generator=g), size=(45, 45)) > 0.5).float()[0]
    tex = {k: torch.rand(c, 45, 45, generator=g) for k, c in (("albedo", 3), ("micronormal", 3), ("specular", 1))}
    for weight in (cov, cov * torch.rand(1, 45, 45, generator=g)):  # binary (shortcut) and fractional weights
        for t in tex.values():
            assert torch.allclose(push_pull(t, weight), _push_pull_reference(t, weight), atol=1e-6)
    tpl = {k: torch.rand_like(v) * 0.5 + 0.2 for k, v in tex.items()}
    out, stats = blend_template(tex, cov, tpl, 1 / 16)
    ref = _blend_reference(tex, cov, tpl, 1 / 16)
    for k in tex:
        assert torch.allclose(out[k], ref[k], atol=1e-5), k
    assert set(stats["template_gain"]) == {"albedo", "specular"}


def test_head_template_is_the_mean_head_with_the_shipped_textures():
    """The template: the ICT mean head's face tile in the unified layout, and PNGs that the generator still makes
    (tools/make_template_textures.py; regenerate them when the skin generator changes)."""
    import importlib.util

    from uhrtex.head_model.template import TEMPLATE_DIR
    from uhrtex.unwrap import fill as T

    mesh, tex = T.head_template(64)
    assert T.is_unified_layout(mesh) and {k: v.shape for k, v in tex.items()} == {
        "albedo": (3, 64, 64), "micronormal": (3, 64, 64), "specular": (1, 64, 64)}
    spec = importlib.util.spec_from_file_location("make_template", TEMPLATE_DIR.parents[3] / "tools/make_template_textures.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    from uhrtex.captures.heads import make_textures
    from uhrtex.head_model.template import template_textures

    fresh = make_textures(tool.template_subject(), 128)["M_Face"]
    shipped = template_textures()
    for k, x in fresh.items():
        small = torch.nn.functional.interpolate(shipped[k][None], size=(128, 128), mode="area")[0]
        assert (small - x).abs().mean() < 0.02, k  # 8-bit 512² PNGs area-averaged vs a fresh 128² set


def test_uv_layout_disk_cache(scene, tmp_path, monkeypatch):
    from uhrtex.unwrap import visibility as D
    from uhrtex.raster.uv_layout import rasterize_uv_layout

    mesh = scene[0]
    monkeypatch.setenv("UHRTEX_CACHE_DIR", str(tmp_path))
    D._LAYOUTS.clear()
    lay, forms = D.uv_layout(mesh, 96)
    ref = rasterize_uv_layout(mesh.uvs.float(), mesh.faces_uv, 96)
    assert torch.equal(lay.texels, ref.texels) and torch.equal(lay.tri, ref.tri)
    assert len(list(tmp_path.glob("uv_layout_*_96_*.pt"))) == 1
    D._LAYOUTS.clear()
    monkeypatch.setattr(D, "rasterize_uv_layout", lambda *a: pytest.fail("the layout was not read from the cache"))
    again, forms_again = D.uv_layout(mesh, 96)
    assert torch.equal(again.texels, ref.texels) and torch.equal(again.tri, ref.tri)
    assert again.tri.dtype == ref.tri.dtype == torch.int64 and torch.equal(forms, forms_again)
    monkeypatch.undo()  # the real rasterizer again
    monkeypatch.setenv("UHRTEX_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(D, "LAYOUT_DISK_ENTRIES", 2)  # many meshes cannot fill the disk: least recently used go
    for res in (32, 48, 64):
        D._LAYOUTS.clear()
        D.uv_layout(mesh, res)
    assert sorted(int(f.name.split("_")[3]) for f in tmp_path.glob("uv_layout_*.pt")) == [48, 64]
    D._LAYOUTS.clear()


def test_depth_buffer_from_the_depth_pass_matches_interpolated_depth():
    from uhrtex.captures.heads import head_asset
    from uhrtex.head_model import face_tile
    from uhrtex.captures.render import render_capture
    from uhrtex.unwrap.mesh import Mesh
    from uhrtex.raster import Renderer
    from uhrtex.unwrap.visibility import _interpolated_depth_buffer, depth_buffer

    cap = render_capture(3, "sky0_r000", 0, 96, texture_resolution=32)
    mesh = Mesh.from_head(face_tile(head_asset(3, 16).mesh))
    fast, _ = depth_buffer(mesh, cap.camera, 96, Renderer("torch"))
    slow = _interpolated_depth_buffer(mesh, cap.camera, 96, Renderer("torch"))
    hit = slow.isfinite()
    assert torch.equal(fast.isfinite(), hit) and hit.float().mean() > 0.2
    assert float(((fast - slow)[hit] / slow[hit]).abs().max()) < 1e-5  # vs the depth test's 1e-2 tolerance
