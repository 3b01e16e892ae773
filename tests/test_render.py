"""Built-in renderer and environments: exact GT maps, re-shading, cameras, lighting conventions."""

from __future__ import annotations

import math
import resource

import pytest
import torch

from uhrtex.render import environments as E
from uhrtex.captures import render as R
from uhrtex.captures.format import Capture
from uhrtex.captures.heads import head_asset
from uhrtex.maps import decode_normal
from uhrtex.raster import torch_backend as tb

pytestmark = pytest.mark.filterwarnings("ignore:raster. using the pure-torch backend")
RES = 96


@pytest.fixture(scope="module")
def capture() -> Capture:
    return R.render_capture(subject_seed=5, lighting="sky2_r090", camera_seed=1, resolution=RES)


def _sample_textures(cap: Capture) -> torch.Tensor:
    """The face tile's textures (the unified layout) sampled at the capture's uv map."""
    asset = head_asset(cap.meta["mesh"]["seed"], cap.meta["mesh"]["texture_resolution"])
    uv = cap.maps["uv"].permute(1, 2, 0)[None].contiguous()
    tex = asset.material_textures[asset.gt_materials[0]]
    return tb.texture(tex, uv, filter_mode="linear", boundary_mode="clamp")[0].permute(2, 0, 1)


def test_capture_is_valid_and_frames_a_face(capture):
    capture.validate()
    assert capture.meta["renderer"] == "builtin" and capture.meta["lighting"] == "sky2_r090"
    assert capture.meta["mesh"]["kind"] == "procedural" and capture.size == (RES, RES)
    mask = capture.maps["mask"][0] > 0
    assert 0.2 < mask.float().mean() < 0.8
    for k in ("albedo", "micronormal", "specular", "uv", "normal"):
        assert capture.maps[k][:, ~mask].abs().max() == 0, k  # the format's rule outside the mask
    n = decode_normal(capture.maps["normal"], dim=0)
    assert (n[2, mask] > 0).float().mean() > 0.99  # view axes: visible surfaces face the viewer (+z)
    # image rows go top-down: the forehead (high v) is above the chin (low v)
    rows = torch.arange(RES, dtype=torch.float32)[:, None].expand(RES, RES)
    v = capture.maps["uv"][1]
    top, bottom = rows[mask & (v > 0.7)].mean(), rows[mask & (v < 0.3) & (v > 0.15)].mean()
    assert top < bottom


def test_render_is_deterministic(capture):
    R._GEOMETRY_CACHE.clear()
    again = R.render_capture(5, "sky2_r090", 1, RES)
    for k in capture.maps:
        assert torch.equal(capture.maps[k], again.maps[k]), k
    other = R.render_capture(6, "sky2_r090", 1, RES)
    assert (other.maps["albedo"] - capture.maps["albedo"]).abs().mean() > 1e-3


@pytest.mark.parametrize("quantized", [False, True], ids=["float", "store-16bit"])
def test_gt_maps_are_the_textures_sampled_at_uv(capture, quantized):
    """Sampling the subject's UV textures at the capture's `uv` map reproduces albedo/micronormal/specular."""
    cap = capture.quantized() if quantized else capture
    sampled = _sample_textures(cap)
    mask = cap.maps["mask"][0] > 0
    tol = 2e-3 if quantized else 1e-5  # 16-bit uv moves the sample point by <= 7.6e-6 of the texture; the renderer
    # samples with grid_sample, the reference with the raster texture op (the same bilinear filter, float32 order)
    for name, sl in (("albedo", slice(0, 3)), ("micronormal", slice(3, 6)), ("specular", slice(6, 7))):
        err = (sampled[sl][:, mask] - cap.maps[name][:, mask]).abs().max()
        assert err <= tol, (name, float(err))


@pytest.mark.parametrize("quantized", [False, True], ids=["float", "store-16bit"])
def test_reshading_the_gt_maps_reproduces_the_image(capture, quantized):
    cap = capture.quantized() if quantized else capture
    img = R.reshade(cap)
    err = (img - cap.maps["image"]).abs()
    assert err.max() <= (2e-3 if quantized else 1e-6), float(err.max())
    # and the image really depends on the maps: a different albedo gives a different image
    changed = Capture({**cap.maps, "albedo": cap.maps["albedo"] * 0.5}, cap.meta)
    assert (R.reshade(changed) - cap.maps["image"]).abs().max() > 0.05


def test_lightings_share_one_raster_pass():
    caps = R.render_captures(2, ["sky0_r000", "sky1_r180"], camera_seed=0, resolution=64)
    for k in ("albedo", "uv", "normal", "mask"):
        assert torch.equal(caps[0].maps[k], caps[1].maps[k])
    assert (caps[0].maps["image"] - caps[1].maps["image"]).abs().mean() > 0.01
    # int ids work (make_captures): a subject's lighting index picks its own environment
    assert R.render_capture(2, 0, 0, 64).meta["lighting"] == R.lighting_name(0, subject_seed=2)


def test_cameras_span_the_portrait_ranges_and_are_seeded():
    from uhrtex.render.framing import head_frame

    frame = head_frame(head_asset(0, 16).mesh.verts)
    params = [R.make_camera(s, 64, frame)[1] for s in range(200)]
    assert all(abs(p["yaw_deg"]) <= 35 and abs(p["pitch_deg"]) <= 15 and abs(p["roll_deg"]) <= 5 for p in params)
    assert max(abs(p["yaw_deg"]) for p in params) > 30 and sum(abs(p["yaw_deg"]) < 15 for p in params) > 100
    focal = [p["focal_mm"] for p in params]
    assert 35 <= min(focal) < 45 and 115 < max(focal) <= 135
    assert R.make_camera(3, 64, frame)[0].to_dict() == R.make_camera(3, 64, frame)[0].to_dict()
    # framed as before at any focal length: the head's half height fills the same part of the picture
    for p in params[:20]:
        assert p["distance"] * math.tan(math.radians(p["fov_y_deg"]) / 2) == pytest.approx(frame.half_height * p["distance_scale"])
    cam, _ = R.make_camera(0, 64, frame, jitter=False)
    nose = head_asset(0, 16).mesh.verts[head_asset(0, 16).mesh.verts[:, 2].argmax()][None].double()
    uvz = cam.project(nose)  # the nose tip: near the middle of the picture
    assert abs(float(uvz[0, 0]) - 32) < 3 and 20 < float(uvz[0, 1]) < 44
    # subjects get their own cameras: camera index 0 of two subjects differs
    a, b = (R.render_capture(s, 0, 0, 32).meta["camera_params"]["yaw_deg"] for s in (1, 2))
    assert a != b


def test_mipmapped_texture_path():
    cap = R.render_capture(1, "sky0_r000", 0, 48, texture_resolution=128)
    assert cap.meta["shading"]["texture_filter"] == "linear-mipmap-linear"
    cap.validate()


# ------------------------------------------------------------------------------------ environments


def test_sh_irradiance_is_exact_for_constant_and_linear_radiance():
    H, W = 64, 128
    d = E._equirect_dirs(H, W)  # Blender axes
    for L, expect in (
        (torch.ones(3, H, W), lambda n: torch.full_like(n[..., :1], math.pi).expand(-1, 3)),
        # L = 1 + 0.5 * z_blender = 1 + 0.5 * y_world: E(n) = pi + (pi / 3) * n_y
        ((1 + 0.5 * d[2])[None].expand(3, -1, -1).contiguous(), lambda n: (math.pi + math.pi / 3 * n[..., 1:2]).expand(-1, 3)),
    ):
        sh = E._project_sh(L, rotation_deg=0)
        n = torch.nn.functional.normalize(torch.randn(50, 3), dim=-1)
        got = (E._sh_basis(n) * E._SH_BAND) @ sh
        assert torch.allclose(got, expect(n), rtol=2e-3, atol=2e-3)


def test_rotation_turns_the_environment_about_the_vertical_axis():
    env0, env90 = E.load_environment("sky1_r000"), E.load_environment("sky1_r090")
    d = torch.nn.functional.normalize(torch.randn(64, 3), dim=-1)
    # rotating the map by +90 deg about Blender z = rotating the lookup direction; world y stays put
    a = math.radians(90)
    db = E.to_blender(d)
    db_rot = torch.stack([db[:, 0] * math.cos(a) - db[:, 1] * math.sin(a), db[:, 0] * math.sin(a) + db[:, 1] * math.cos(a), db[:, 2]], -1)
    d_rot = torch.stack([db_rot[:, 0], db_rot[:, 2], -db_rot[:, 1]], -1)  # back to world axes
    assert torch.allclose(env90.background(d) / env90.exposure, env0.background(d_rot) / env0.exposure, rtol=1e-4, atol=1e-5)
    e0 = env0.irradiance(d_rot) / env0.exposure
    e90 = env90.irradiance(d) / env90.exposure
    assert torch.allclose(e0, e90, rtol=2e-3, atol=2e-3)


def test_lighting_ids():
    with pytest.raises(E.LightingError) as e:
        E.parse_lighting("moon_r000")
    assert "\n" not in str(e.value) and "sky<k>_r<deg>" in str(e.value) and "ph-<slug>" in str(e.value)
    assert len(E.VENDORED) >= 20
    ids = E.default_lightings(20, seed=3)
    assert len({i.split("_r")[0] for i in ids}) == 20  # a subject's first 20 lightings are 20 environments
    assert all(i.startswith("ph-") for i in ids) and ids == E.default_lightings(20, seed=3)
    assert E.default_lightings(5, seed=3) == ids[:5] and E.default_lightings(5, seed=4) != ids[:5]
    for i in ids:
        E.parse_lighting(i)
    envs = [E.load_environment(f"{n}_r000") for n in ("ph-studio-small-03", "ph-dikhololo-night")]
    front = torch.tensor([[0.0, 0.0, 1.0]])
    lum = [float(e.irradiance(front).mean()) for e in envs]
    assert 0.3 < lum[0] / lum[1] < 3  # exposure normalises very different maps
    if E.hdri_dir() is not None:  # bpy's CC0 HDRIs, by name
        E.load_environment("studio_r000")


def test_hdris_dir_can_be_turned_off(monkeypatch, tmp_path):
    """UHRTEX_HDRI_DIR=off: bpy's HDRIs are not used even where installed; a folder holding them is."""
    monkeypatch.setenv("UHRTEX_HDRI_DIR", "off")
    assert E.hdri_dir() is None
    (tmp_path / "studio.exr").touch()
    monkeypatch.setenv("UHRTEX_HDRI_DIR", str(tmp_path))
    assert E.hdri_dir() == tmp_path


@pytest.mark.slow
def test_twelve_subjects_two_lightings_at_512(tmp_path):
    """The issue's workload writes every capture (its time: benchmarks/make_captures.py)."""
    from uhrtex.captures.generate import make_captures, plan
    from uhrtex.captures.store import CaptureStore

    report = make_captures(CaptureStore(str(tmp_path / "s"), mode="a"), plan(12, 2, 1, 100), 512, "builtin", progress=False)
    assert len(report["written"]) == 24


@pytest.mark.slow
def test_one_4096_capture_renders():
    cap = R.render_capture(11, "sky3_r045", 2, 4096)
    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    assert cap.size == (4096, 4096) and rss_gb < 16
    sampled = _sample_textures(cap)
    mask = cap.maps["mask"][0] > 0
    assert (sampled[0:3][:, mask] - cap.maps["albedo"][:, mask]).abs().max() < 1e-6


def test_a_store_keeps_one_environment_per_lighting_index(tmp_path, monkeypatch):
    """A subject's lighting index names one environment; a store extended where it resolves to another (other code,
    another captures.environments folder) must refuse before writing anything."""
    from uhrtex.captures import generate
    from uhrtex.captures.store import CaptureStore

    store = CaptureStore(str(tmp_path / "s"), mode="a")
    generate.make_captures(store, generate.plan(1, 1), 64, "builtin", progress=False)
    have = store.meta("s0000__l00__c00")["environment"]["id"]
    other = "sky6_r000"
    with monkeypatch.context() as m:
        m.setattr(generate, "resolve_lighting", lambda lighting, folder=None, subject=0: (other, None))
        with pytest.raises(ValueError, match=f"s0000__l00__c00 was lit by {have}, but its lighting index resolves to {other}"):
            generate.make_captures(store, generate.plan(2, 2), 64, "builtin", progress=False)
    assert store.keys(refresh=True) == ["s0000__l00__c00"]  # nothing written before the refusal
    report = generate.make_captures(store, generate.plan(2, 1), 64, "builtin", progress=False)
    assert report["written"] == ["s0001__l00__c00"]  # the same code goes on filling it


def test_split_by_uv_is_the_sorted_unique_corner_pairs():
    """One render vertex per distinct (position, uv) corner pair, in lexicographic order (the 1-D key path)."""
    from uhrtex.render.mesh import split_by_uv

    g = torch.Generator().manual_seed(0)
    faces, faces_uv = torch.randint(0, 40, (300, 3), generator=g), torch.randint(0, 70, (300, 3), generator=g)
    pos, uv, tri = split_by_uv(faces, faces_uv)
    pairs = torch.stack([faces.reshape(-1), faces_uv.reshape(-1)], 1)
    ref, inverse = torch.unique(pairs, dim=0, return_inverse=True)
    assert torch.equal(torch.stack([pos, uv], 1), ref) and torch.equal(tri, inverse.view(-1, 3))
    assert torch.equal(pos[tri], faces) and torch.equal(uv[tri], faces_uv)
