"""CaptureStore: bit-exact round trip, patch reads touch only their chunks, atomic writes, one-line errors."""

import pickle
import shutil

import numpy as np
import pytest
import torch
import zarr

from tests.helpers.captures import one_line, random_capture
from uhrtex.captures.format import Camera, Capture, CaptureError, look_at, quantize
from uhrtex.captures.store import CaptureStore, StoreError, area_downsample
from uhrtex.maps import CAPTURE
from uhrtex.hfdr.patches import Box


@pytest.fixture
def store(tmp_path):
    return CaptureStore(tmp_path / "store", mode="a", chunk=16)


def test_round_trip_is_bit_exact_and_idempotent(store):
    cap = random_capture(1, 0, size=48, smooth=False)
    store.write(cap.key, cap)
    back = store.read(cap.key)
    q = cap.quantized()
    for name in CAPTURE.names:
        assert back[name].dtype == torch.float32 and back[name].shape == cap.maps[name].shape
        assert torch.equal(back[name], q.maps[name]), name
        assert (back[name] - cap.maps[name]).abs().max() <= 0.5 / 65535 + 1e-7
    again = Capture(back, store.meta(cap.key))  # what we read, written again, reads back bit for bit
    store.write(cap.key, again)
    assert all(torch.equal(store.read(cap.key)[n], back[n]) for n in CAPTURE.names)
    assert store.meta(cap.key) == cap.meta and store.size(cap.key) == (48, 48)


def test_8_and_16_bit_png_values_are_stored_exactly(store):
    cap = random_capture(2, 0, size=16)
    cap.maps["image"] = torch.round(cap.maps["image"] * 255) / 255
    cap.maps["albedo"] = (torch.round(cap.maps["albedo"].double() * 65535) / 65535).float()
    store.write(cap.key, cap)
    back = store.read(cap.key, ["image", "albedo"])
    assert torch.equal(back["image"], cap.maps["image"]) and torch.equal(back["albedo"], cap.maps["albedo"])


def test_box_read_equals_the_crop_and_touches_only_its_chunks(store, monkeypatch):
    cap = random_capture(3, 0, size=64)
    store.write(cap.key, cap)
    full = store.read(cap.key)
    box = Box(5, 20, 16, 16)  # rows 5..20 -> chunk rows 0, 1; cols 20..35 -> chunk cols 1, 2
    touched = []
    original = zarr.storage.LocalStore.get

    async def spy(self, key, *args, **kwargs):
        touched.append(key)
        return await original(self, key, *args, **kwargs)

    monkeypatch.setattr(zarr.storage.LocalStore, "get", spy)
    crop = store.read(cap.key, box=box)
    for name in CAPTURE.names:
        assert torch.equal(crop[name], full[name][:, 5:21, 20:36])
    chunks = {k.split("/c/")[1] for k in touched if f"{cap.key}/image/c/" in k}
    assert chunks == {"0/0/1", "0/0/2", "0/1/1", "0/1/2"}
    assert sum("/c/" in k for k in touched) == 4 * len(CAPTURE.names)


def test_global_levels_eager_lazy_and_read_only_agree(tmp_path):
    cap = random_capture(4, 1, size=64)
    eager = CaptureStore(tmp_path / "eager", mode="a")
    eager.write(cap.key, cap, global_sizes=[16])
    lazy = CaptureStore(tmp_path / "lazy", mode="a")
    lazy.write(cap.key, cap)
    assert eager.global_sizes(cap.key) == [16] and lazy.global_sizes(cap.key) == []
    g_eager = eager.read_global(cap.key, 16)
    g_lazy = lazy.read_global(cap.key, 16)  # built once, cached in the store
    assert lazy.global_sizes(cap.key) == [16]
    with pytest.warns(UserWarning, match="on the fly"):
        g_ro = CaptureStore(tmp_path / "eager").read_global(cap.key, 8)
    want = torch.nn.functional.interpolate(quantize(cap.maps["albedo"])[None], size=(16, 16), mode="area")[0]
    for name in CAPTURE.names:
        assert g_eager[name].shape == (CAPTURE.width(name), 16, 16)
        assert torch.equal(g_eager[name], g_lazy[name])
        assert g_ro[name].shape[-1] == 8
    assert (g_eager["albedo"] - want).abs().max() <= 0.5 / 65535 + 1e-6
    assert torch.equal(eager.read_global(cap.key, 64)["uv"], eager.read(cap.key)["uv"])  # full size: no level


def test_area_downsample_is_a_block_mean():
    codes = np.arange(2 * 4 * 4, dtype=np.uint16).reshape(2, 4, 4) * 1000
    out = area_downsample(codes, 2)
    assert out.dtype == np.uint16 and out[0, 0, 0] == round((0 + 1 + 4 + 5) * 1000 / 4)


def test_interrupted_write_is_invisible_and_redone(store, monkeypatch):
    good, bad = random_capture(5, 0, size=32), random_capture(6, 0, size=32)
    store.write(good.key, good)
    calls = {"n": 0}
    original = CaptureStore._create

    def dying(self, group, name, codes):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed")
        return original(self, group, name, codes)

    monkeypatch.setattr(CaptureStore, "_create", dying)
    with pytest.raises(KeyboardInterrupt):
        store.write(bad.key, bad)
    monkeypatch.undo()
    reopened = CaptureStore(store.url)
    assert reopened.keys() == [good.key]
    assert len(reopened.partials()) == 1
    with pytest.raises(StoreError):
        reopened.read(bad.key)
    store.write(bad.key, bad)
    assert store.keys() == sorted([good.key, bad.key]) and store.partials() == []
    assert torch.equal(store.read(bad.key)["image"], bad.quantized().maps["image"])


def test_cleanup_removes_only_stale_partials(store, monkeypatch):
    cap = random_capture(7, 0, size=16)
    monkeypatch.setattr(CaptureStore, "_publish", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        store.write(cap.key, cap)
    monkeypatch.undo()
    assert store.cleanup(min_age_s=3600) == [] and len(store.partials()) == 1
    assert len(store.cleanup(min_age_s=0)) == 1 and store.partials() == []


def test_store_is_picklable_and_reopens_lazily(store):
    cap = random_capture(8, 0, size=16)
    store.write(cap.key, cap)
    clone = pickle.loads(pickle.dumps(CaptureStore(store.url)))
    assert clone._root is None
    assert torch.equal(clone.read(cap.key)["mask"], cap.quantized().maps["mask"])


def test_fsspec_url_store_round_trip():
    url = "memory://uhrtex-test-store/captures"
    cap = random_capture(9, 0, size=16)
    store = CaptureStore(url, mode="a")
    store.write(cap.key, cap, global_sizes=[4])
    store.write(cap.key, cap)  # replace in place
    again = CaptureStore(url)
    assert again.keys() == [cap.key] and again.partials() == []
    assert torch.equal(again.read(cap.key)["uv"], cap.quantized().maps["uv"])


def test_read_only_store_refuses_writes(store):
    cap = random_capture(10, 0, size=16)
    store.write(cap.key, cap)
    with pytest.raises(StoreError) as err:
        CaptureStore(store.url).write(cap.key, cap)
    one_line(err, store.url, "read-only")


def test_write_validates_the_capture(store):
    cap = random_capture(11, 0, size=16)
    cap.maps["normal"] = cap.maps["normal"][:, :8]
    with pytest.raises(CaptureError) as err:
        store.write(cap.key, cap)
    one_line(err, "normal", "same size")
    cap = random_capture(11, 0, size=16)
    cap.maps["specular"][0, 0, 0] = float("nan")
    with pytest.raises(CaptureError) as err:
        store.write(cap.key, cap)
    one_line(err, "specular", "NaN")
    cap = random_capture(11, 0, size=16)
    with pytest.raises(CaptureError) as err:
        store.write("other__l00__c00", cap)
    one_line(err, "other__l00__c00")
    assert store.keys() == [] and store.partials() == []


def test_unreadable_store_paths_are_one_line_errors(tmp_path):
    with pytest.raises(StoreError) as err:
        CaptureStore(tmp_path / "nope").keys()
    one_line(err, tmp_path / "nope", "does not exist")
    (tmp_path / "plain").mkdir()
    with pytest.raises(StoreError) as err:
        CaptureStore(tmp_path / "plain").keys()
    one_line(err, tmp_path / "plain", "not a zarr store")
    zarr.open_group(tmp_path / "other", mode="w").create_array("x", shape=(2,), dtype="uint8")
    with pytest.raises(StoreError) as err:
        CaptureStore(tmp_path / "other").keys()
    one_line(err, tmp_path / "other", "not a capture store")
    with pytest.raises(StoreError) as err:
        CaptureStore("nosuchprotocol://bucket/store").keys()
    one_line(err, "nosuchprotocol://bucket/store")


def test_missing_key_map_and_wrong_size_map_are_one_line_errors(store, tmp_path):
    cap = random_capture(12, 0, size=32)
    store.write(cap.key, cap)
    with pytest.raises(StoreError) as err:
        store.read("s9999__l00__c00")
    one_line(err, store.url, "s9999__l00__c00", cap.key)
    root = tmp_path / "store" / cap.key
    shutil.rmtree(root / "albedo")
    with pytest.raises(StoreError) as err:
        CaptureStore(store.url).read(cap.key)
    one_line(err, store.url, cap.key, "albedo")
    zarr.open_group(root, mode="a").create_array("albedo", shape=(3, 16, 16), dtype="uint16")
    with pytest.raises(StoreError) as err:
        CaptureStore(store.url).read(cap.key, ["albedo"])
    one_line(err, cap.key, "albedo", "[3, 16, 16]", "[3, 32, 32]")
    with pytest.raises(StoreError) as err:
        store.read(cap.key, ["image"], box=Box(20, 20, 16, 16))
    one_line(err, cap.key, "outside")
    with pytest.raises(StoreError) as err:
        store.read(cap.key, ["albedo_typo"])
    one_line(err, "albedo_typo")


def test_camera_projection_matches_the_raster_clip_space():
    cam = Camera.from_fov(30.0, 64, 48, look_at((0.3, 0.2, 3.0), (0, 0, 0)))
    pts = torch.tensor([[0.0, 0.0, 0.0], [0.2, 0.1, -0.1], [-0.3, 0.25, 0.2]], dtype=torch.float64)
    uvz = cam.project(pts)
    clip = torch.cat([pts, torch.ones(3, 1, dtype=torch.float64)], 1) @ cam.clip_from_world(0.1, 10, torch.float64).T
    ndc = clip[:, :3] / clip[:, 3:]
    # nvdiffrast: column c centre at ndc x = 2(c + 0.5)/W - 1, raster row r at ndc y = 2(r + 0.5)/H - 1, image row = H-1-r.
    u = (ndc[:, 0] + 1) / 2 * 64
    v = 48 - (ndc[:, 1] + 1) / 2 * 48
    assert torch.allclose(u, uvz[:, 0]) and torch.allclose(v, uvz[:, 1])
    assert (ndc[:, 2].abs() < 1).all() and (uvz[:, 2] > 0).all()
    world_up = cam.project(torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]))
    assert world_up[0, 1] < world_up[1, 1]  # world up is image up (row 0 at the top)
    assert Camera.from_dict(cam.to_dict()) == cam
