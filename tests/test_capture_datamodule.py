"""CaptureDataModule: subject split (no leak, deterministic), DDP shards, views, stage-1 attach, errors."""

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from datamodules.captures import CaptureDataModule, split_subjects
from tests.helpers.captures import one_line, random_capture
from uhrtex.captures.format import split_key
from uhrtex.captures.store import CaptureStore
from uhrtex.maps import CAPTURE
from uhrtex.hfdr.patches import grid_boxes, sample_global

FULL, GLOBAL, PATCH = 32, 8, 8


@pytest.fixture(scope="module")
def store_url(tmp_path_factory):
    """7 subjects x 2 lightings at 32² (global level 8² cached)."""
    url = str(tmp_path_factory.mktemp("captures") / "store")
    store = CaptureStore(url, mode="a")
    for s in range(7):
        for light in range(2):
            cap = random_capture(s, light, size=FULL)
            store.write(cap.key, cap, global_sizes=[GLOBAL])
    return url


def _dm(url, **kw):
    args = dict(view="global", input_size=FULL, global_size=GLOBAL, patch_size=PATCH, batch_size=4, patches_per_capture=3)
    dm = CaptureDataModule(url, **{**args, **kw})
    dm.prepare_data()
    dm.setup("fit")
    return dm


@pytest.mark.parametrize("n,sizes", [(12, (8, 2, 2)), (7, (5, 1, 1)), (6, (4, 1, 1)), (3, (1, 1, 1)), (40, (28, 6, 6))])
def test_split_is_by_subject_without_leaks_and_deterministic(n, sizes):
    subjects = [f"s{i:04d}" for i in range(n)]
    split = split_subjects(subjects)
    assert tuple(len(split[s]) for s in ("train", "val", "test")) == sizes
    assert sorted(sum(split.values(), [])) == subjects  # every subject exactly once: no leak
    assert split == split_subjects(list(reversed(subjects)) + subjects[:2])  # order/duplicates don't matter
    assert split != split_subjects(subjects, seed=1) or n <= 3


def test_split_fallback_and_bad_ratios():
    with pytest.warns(UserWarning, match="reuse"):
        two = split_subjects(["a", "b"])
    assert len(two["train"]) == 1 and two["val"] == two["test"] and set(two["train"] + two["val"]) == {"a", "b"}
    with pytest.raises(ValueError) as err:
        split_subjects(["a", "b", "c"], ratios=(0, 1, 1))
    one_line(err, "split_ratios")
    assert split_subjects([f"s{i}" for i in range(5)], ratios=(5, 0, 1))["val"] == []


def test_datamodule_splits_keys_by_subject(store_url):
    dm = _dm(store_url)
    subjects = {s: {split_key(k)[0] for k in keys} for s, keys in dm.splits.items()}
    assert not (subjects["train"] & subjects["val"]) and not (subjects["train"] & subjects["test"])
    assert not (subjects["val"] & subjects["test"])
    assert sum(len(k) for k in dm.splits.values()) == 14
    assert all(len(keys) == 2 * len(subjects[s]) for s, keys in dm.splits.items())  # both lightings go together
    assert _dm(store_url).splits == dm.splits


def test_global_view_batches(store_url):
    dm = _dm(store_url)
    batch = next(iter(dm.train_dataloader()))
    for name in CAPTURE.names:
        assert batch[name].shape == (4, CAPTURE.width(name), GLOBAL, GLOBAL) and batch[name].dtype == torch.float32
    store = CaptureStore(store_url)
    key = batch["capture"][0]
    assert torch.equal(batch["albedo"][0], store.read_global(key, GLOBAL)["albedo"])
    assert batch["subject"][0] == split_key(key)[0]


def test_patch_view_random_train_and_grid_val(store_url):
    dm = _dm(store_url, view="patch")
    store = CaptureStore(store_url)
    train = dm.datasets["train"]
    assert len(train) == len(dm.splits["train"]) * 3
    batch = next(iter(dm.train_dataloader()))
    assert batch["box"].shape == (4, 4) and batch["box"].dtype == torch.long
    for i in range(4):
        y, x, h, w = batch["box"][i].tolist()
        assert (h, w) == (PATCH, PATCH) and 0 <= y <= FULL - PATCH and 0 <= x <= FULL - PATCH
        full = store.read(batch["capture"][i])
        for name in CAPTURE.names:
            assert batch[name][i].shape == (CAPTURE.width(name), PATCH, PATCH)
            assert torch.equal(batch[name][i], full[name][:, y:y + h, x:x + w])
    val = dm.datasets["val"]
    boxes = grid_boxes(FULL, FULL, PATCH)
    assert len(val) == len(dm.splits["val"]) * len(boxes)
    assert [tuple(val[i]["box"].tolist()) for i in range(len(boxes))] == [tuple(b) for b in boxes]
    offsets = {tuple(train[0]["box"].tolist()) for _ in range(10)}
    assert len(offsets) > 1  # random offsets, drawn anew per access


def test_ddp_ranks_see_disjoint_captures(store_url):
    seen = []
    for rank in range(2):
        dm = _dm(store_url, batch_size=2, shuffle=True)
        dm.trainer = SimpleNamespace(world_size=2, global_rank=rank)
        dm.setup("fit")
        loader = dm.train_dataloader()
        assert loader.batch_size == 1  # the global batch of 2 split across 2 processes
        loader.sampler.set_epoch(3)
        seen.append(list(loader.sampler))
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == list(range(len(dm.datasets["train"])))


class FakeStage1:
    """Picklable stand-in for a Stage-1 cache: deterministic maps per capture at the global size."""

    keys = ("uv_pred", "guide")

    def read(self, capture: str) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(sum(map(ord, capture)))
        return {"uv_pred": torch.rand(2, GLOBAL, GLOBAL, generator=g), "guide": torch.rand(7, GLOBAL, GLOBAL, generator=g)}


def test_stage1_attach_resamples_like_sample_global(store_url):
    dm = _dm(store_url, view="patch", num_workers=1)
    dm.attach_stage1(FakeStage1())
    batch = next(iter(dm.val_dataloader()))  # through a worker process: reader and store pickle
    for i in range(batch["box"].shape[0]):
        box = tuple(batch["box"][i].tolist())
        maps = FakeStage1().read(batch["capture"][i])
        for name in FakeStage1.keys:
            want = sample_global(maps[name][None], box, (FULL, FULL))[0]
            assert torch.allclose(batch[name][i], want, atol=1e-6)
            up = F.interpolate(maps[name][None], size=(FULL, FULL), mode="bilinear", align_corners=False)[0]
            y, x, h, w = box
            assert torch.allclose(batch[name][i], up[:, y:y + h, x:x + w], atol=1e-5)
    gdm = _dm(store_url)
    gdm.attach_stage1(FakeStage1())
    gbatch = next(iter(gdm.val_dataloader()))
    assert gbatch["guide"].shape[1:] == (7, GLOBAL, GLOBAL)
    assert torch.equal(gbatch["uv_pred"][0], FakeStage1().read(gbatch["capture"][0])["uv_pred"])


def test_datamodule_errors_are_one_line(tmp_path, store_url):
    with pytest.raises(ValueError) as err:
        _dm(str(tmp_path / "none"))
    one_line(err, str(tmp_path / "none"), "does not exist")
    with pytest.raises(ValueError) as err:
        _dm(store_url, input_size=64)
    one_line(err, "32x32", "input_size=64")
    CaptureStore(tmp_path / "empty", mode="a").keys()
    with pytest.raises(ValueError) as err:
        _dm(str(tmp_path / "empty"))
    one_line(err, "no finished captures", "make_captures")
    with pytest.raises(ValueError) as err:
        _dm(store_url).attach_stage1(SimpleNamespace(keys=("albedo",)))
    one_line(err, "albedo")


def test_generate_if_missing_renders_on_first_use(tmp_path):
    dm = _dm(str(tmp_path / "gen"), generate_if_missing={"subjects": 3, "lightings": 1, "renderer": "placeholder"})
    assert sorted(len(v) for v in dm.splits.values()) == [1, 1, 1]
    assert CaptureStore(tmp_path / "gen").global_sizes(dm.splits["train"][0]) == [GLOBAL]
