"""compare.test_store: evaluate on every capture of a store of subjects never trained on, or refuse it."""

import pytest
from omegaconf import OmegaConf

from experiments.compare import test_keys as compare_test_keys
from tests.helpers.stage_ckpts import make_store
from uhrtex.captures.store import CaptureStore


def _cfg(store: str, held_out: str | None):
    return OmegaConf.create({"data": {"store": store}, "compare": {"test_store": held_out}})


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("test_store")
    return {"trained": make_store(root / "trained", 32, subjects=3),
            "held_out": make_store(root / "held_out", 32, subjects=2, first_subject=3),
            "overlap": make_store(root / "overlap", 32, subjects=2, first_subject=2)}


def test_every_capture_of_the_held_out_store(stores):
    assert compare_test_keys(_cfg(stores["trained"], stores["held_out"])) == ["s0003__l00__c00", "s0004__l00__c00"]


def test_a_store_sharing_trained_subjects_is_refused(stores):
    with pytest.raises(ValueError, match=r"shares subjects \['s0002'\]"):
        compare_test_keys(_cfg(stores["trained"], stores["overlap"]))


def test_a_store_under_other_environments_is_refused(stores, monkeypatch):
    """Subjects draw their own rotations of the environments; an environment never trained under is refused."""
    meta = CaptureStore.meta

    def other_sky(self, key):
        m = dict(meta(self, key))
        if key.startswith("s0003"):
            m["environment"] = {"id": "city_r000"}
        return m

    monkeypatch.setattr(CaptureStore, "meta", other_sky)
    with pytest.raises(ValueError, match=r"environments \['city'\]"):
        compare_test_keys(_cfg(stores["trained"], stores["held_out"]))


def test_a_missing_or_empty_store_says_so(stores, tmp_path):
    from uhrtex.captures.store import StoreError

    with pytest.raises(StoreError, match="does not exist"):
        compare_test_keys(_cfg(stores["trained"], str(tmp_path / "nowhere")))
    _ = CaptureStore(str(tmp_path / "empty"), mode="a").root  # created, with no capture
    with pytest.raises(ValueError, match="holds no captures"):
        compare_test_keys(_cfg(stores["trained"], str(tmp_path / "empty")))
