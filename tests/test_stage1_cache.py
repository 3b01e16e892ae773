"""Stage-1 cache: keyed by checkpoint contents, rebuilt when stale, atomic, picklable reader."""

import pickle

import pytest
import torch

from tests.helpers.stage_ckpts import save_stage_checkpoint
from uhrtex.checkpoint import file_sha256 as file_digest
from uhrtex.stage1.cache import CacheSpec, Stage1Reader, ensure_cache, store_compute


class FakeStore:
    """The capture-store methods the cache uses, on random global-size maps."""

    def __init__(self, n=3, size=16):
        g = torch.Generator().manual_seed(0)
        self.size_ = size
        self.data = {f"s{i}__l0__c0": {"image": torch.rand(3, size, size, generator=g),
                                       "uv": torch.rand(2, size, size, generator=g),
                                       "normal": torch.rand(3, size, size, generator=g),
                                       "mask": torch.ones(1, size, size)} for i in range(n)}
        self.metas = {k: {"subject": k.split("__")[0]} for k in self.data}

    def keys(self):
        return sorted(self.data)

    def meta(self, key):
        return self.metas[key]

    def size(self, key):
        return (self.size_ * 4, self.size_ * 4)

    def read_global(self, key, size, names=None):
        assert size == self.size_
        return {n: self.data[key][n] for n in names}


class Counter:
    def __init__(self, value=0.5):
        self.calls, self.value = [], value

    def __call__(self, captures):
        self.calls.append(list(captures))
        b = len(captures)
        return {"uv_pred": torch.full((b, 2, 16, 16), 1 / 3), "guide": torch.full((b, 7, 16, 16), self.value)}


SPEC = CacheSpec(upstream={"gde": "abc"}, keys=("uv_pred", "guide"), global_size=16)


def test_builds_once_then_reuses(tmp_path):
    store, compute = FakeStore(), Counter()
    reader = ensure_cache(store, store.keys(), compute, SPEC, tmp_path, batch_size=2, progress=False)
    assert [len(c) for c in compute.calls] == [2, 1]
    out = reader.read(store.keys()[0])
    assert out["uv_pred"].dtype == torch.float32 and out["uv_pred"][0, 0, 0].item() == pytest.approx(1 / 3, abs=1e-7)
    assert out["guide"].shape == (7, 16, 16)  # float16 on disk, float32 out
    ensure_cache(store, store.keys(), compute, SPEC, tmp_path, progress=False)
    assert len(compute.calls) == 2  # nothing recomputed


def test_a_changed_checkpoint_gives_a_new_key_and_a_rebuild(tmp_path):
    a = save_stage_checkpoint("uv_normal", tmp_path / "a.ckpt", seed=0)
    spec_a = CacheSpec({"uv_normal": file_digest(a)}, ("uv_pred",), 16)
    b = save_stage_checkpoint("uv_normal", tmp_path / "a.ckpt", seed=1)  # same path, new weights
    spec_b = CacheSpec({"uv_normal": file_digest(b)}, ("uv_pred",), 16)
    assert spec_a.key != spec_b.key
    store, compute = FakeStore(), Counter()
    ensure_cache(store, store.keys(), compute, spec_a, tmp_path / "c", progress=False)
    ensure_cache(store, store.keys(), compute, spec_b, tmp_path / "c", progress=False)
    assert sum(len(c) for c in compute.calls) == 6  # all three captures computed twice
    assert CacheSpec({"uv_normal": file_digest(b)}, ("uv_pred",), 32).key != spec_b.key


def test_stale_or_missing_entries_are_recomputed_never_reused(tmp_path):
    store, compute = FakeStore(), Counter(0.25)
    reader = ensure_cache(store, store.keys(), compute, SPEC, tmp_path, progress=False)
    k0, k1, k2 = store.keys()
    (tmp_path / SPEC.key / f"{k0}.pt").unlink()                # missing file
    store.metas[k1] = {"subject": "s1", "rerendered": True}   # the capture changed in the store
    (tmp_path / SPEC.key / f"{k2}.pt").write_bytes(b"garbage")  # corrupt (caught with verify=True)
    compute.calls.clear()
    compute.value = 0.75
    ensure_cache(store, store.keys(), compute, SPEC, tmp_path, verify=True, progress=False)
    assert sorted(sum(compute.calls, [])) == [k0, k1, k2]
    assert reader.read(k1)["guide"].mean().item() == pytest.approx(0.75)


def test_a_crash_mid_build_leaves_no_partial_files_and_resumes(tmp_path):
    store = FakeStore()

    calls = []

    def crash_on_second(captures):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return Counter()(captures)

    with pytest.raises(KeyboardInterrupt):
        ensure_cache(store, store.keys(), crash_on_second, SPEC, tmp_path, batch_size=1, progress=False)
    files = {p.name for p in (tmp_path / SPEC.key).iterdir()}
    assert files == {f"{store.keys()[0]}.pt", "manifest.json"}  # no tmp files, only finished entries
    compute = Counter()
    ensure_cache(store, store.keys(), compute, SPEC, tmp_path, batch_size=1, progress=False)
    assert sum(compute.calls, []) == store.keys()[1:]


def test_reader_is_picklable_and_names_a_missing_capture(tmp_path):
    store = FakeStore()
    reader = ensure_cache(store, store.keys(), Counter(), SPEC, tmp_path, progress=False)
    reader.read(store.keys()[0])  # fills the in-memory LRU, which must not travel to workers
    assert len(pickle.dumps(reader)) < 1000
    clone = pickle.loads(pickle.dumps(reader))
    assert clone.keys == ("uv_pred", "guide")
    assert torch.equal(clone.read(store.keys()[1])["guide"], reader.read(store.keys()[1])["guide"])
    with pytest.raises(FileNotFoundError, match="no entry for capture 'nope'"):
        clone.read("nope")
    assert isinstance(clone, Stage1Reader)


def test_store_compute_runs_stage1_on_predicted_or_gt_geometry(tmp_path):
    from uhrtex.networks.hash_encoding import HashGridEncoding
    from uhrtex.networks.stages import build_gde, build_uv_normal
    from uhrtex.stage1.run import Stage1

    store = FakeStore()
    full = Stage1(build_uv_normal(widths=(4, 4, 4, 4, 4)), build_gde(widths=(4, 4, 4)),
                  HashGridEncoding(backend="torch"), global_size=16)
    out = store_compute(store, full)(store.keys()[:2])
    assert set(out) == {"uv_pred", "normal_pred", "mask_pred", "guide"} and out["guide"].shape == (2, 7, 16, 16)
    gt = Stage1(None, build_gde(widths=(4, 4, 4), hash_channels=0), None, global_size=16)
    assert gt.keys == ("guide",)
    assert set(store_compute(store, gt)(store.keys()[:1])) == {"guide"}


def test_a_write_that_dies_halfway_leaves_nothing_behind(tmp_path, monkeypatch):
    store = FakeStore(n=1)

    def half_save(obj, path):
        open(path, "wb").write(b"half a tensor")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", half_save)
    with pytest.raises(OSError, match="disk full"):
        ensure_cache(store, store.keys(), Counter(), SPEC, tmp_path, progress=False)
    assert list((tmp_path / SPEC.key).iterdir()) == []  # neither the entry nor its tmp file
