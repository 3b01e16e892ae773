"""Stage 1's landmark uv prior (method.stage1.uv_prior=landmarks): where it applies, how well it places the face, and
that training caches and inference compute it the same way."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from skimage import data as skimage_data

from uhrtex.face.geometry import landmark_uv_prior
from uhrtex.face.landmarker import landmarks
from uhrtex.networks.hash_encoding import HashGridEncoding
from uhrtex.networks.stages import build_gde, build_hfdr, build_uv_normal
from uhrtex.pipeline.reconstructor import Reconstructor
from uhrtex.stage1.cache import CacheSpec, store_compute
from uhrtex.stage1.run import Stage1, uv_prior_of

CPU = {"input_size": 512, "global_size": 128, "patch_size": 64}


@pytest.fixture(scope="module")
def astronaut():
    return torch.from_numpy(skimage_data.astronaut()).permute(2, 0, 1).float() / 255


def small_stage1(uv_prior: str = "none") -> Stage1:
    torch.manual_seed(0)
    return Stage1(build_uv_normal(widths=(4, 8, 8, 8, 8)), build_gde(widths=(4, 8, 8)), HashGridEncoding(backend="torch"),
                  global_size=32, uv_prior=uv_prior)


def test_the_prior_replaces_the_predicted_uv_only_where_it_covers():
    s1, image = small_stage1("landmarks"), torch.rand(1, 3, 128, 128)
    plain = s1(image)
    prior = torch.zeros(1, 3, 128, 128)
    prior[:, 0], prior[:, 1] = 0.3, 0.7
    prior[:, 2, :, :64] = 1.0  # covers the left half
    out = s1(image, uv_prior=prior)
    m = plain["mask_pred"]
    assert float(m.min()) < 0.9  # a soft predicted mask: the prior's uv is not scaled by it
    assert torch.allclose(out["uv_pred"][0, 0, :, :16], torch.tensor(0.3))
    assert torch.allclose(out["uv_pred"][0, 1, :, :16], torch.tensor(0.7))
    assert torch.equal(out["uv_pred"][..., 16:], plain["uv_pred"][..., 16:])
    assert torch.equal(out["normal_pred"], plain["normal_pred"]) and torch.equal(out["mask_pred"], m)
    assert not torch.equal(out["guide"], plain["guide"])  # the GDE (through the hash encoding) sees the new uv
    assert torch.equal(s1(image, uv_prior=None)["uv_pred"], plain["uv_pred"])


def test_uv_prior_setting_is_checked_and_old_configs_mean_none():
    assert uv_prior_of({}) == "none" and uv_prior_of({"uv_prior": "landmarks"}) == "landmarks"
    with pytest.raises(ValueError, match="uv_prior"):
        uv_prior_of({"uv_prior": "mesh"})
    with pytest.raises(ValueError, match="uv_prior"):
        small_stage1("mesh")


def test_landmark_prior_places_held_out_heads_and_follows_the_padded_square():
    """Held-out procedural heads (subjects 3000+): the prior's uv against the rendered ground truth (the UV&Normal
    predictor of the shipped detail model is ~300 texels off here); and the same face inside a padded square gives
    the same prior, shifted."""
    from uhrtex.captures.render import render_capture

    cap = render_capture(3000, 0, 0, 384)
    face = landmarks(cap.maps["image"])[0]
    prior = landmark_uv_prior(face, 0, 0, 384, 384)
    inside = (prior[2] > 0.99) & (cap.maps["mask"][0] > 0.99)
    assert float(inside.sum()) > 0.3 * float((cap.maps["mask"][0] > 0.99).sum())
    assert float(((prior[:2] - cap.maps["uv"]).norm(dim=0)[inside] * 1024).median()) < 16
    padded = landmark_uv_prior(face, 40, 24, 448, 448)
    assert torch.allclose(padded[:, 40:424, 24:408], prior, atol=1e-4)
    assert float(padded[2, :40].abs().max()) == 0.0


def reconstructor(uv_prior: str) -> Reconstructor:
    torch.manual_seed(0)
    enc = HashGridEncoding(backend="torch")
    return Reconstructor(build_uv_normal((4, 8, 8, 8, 8)), build_gde((4, 8, 8), hash_channels=enc.n_output_dims),
                         build_hfdr((4, 8, 8, 8)), enc, **CPU, precision="fp32", uv_prior=uv_prior)


def test_reconstructor_finds_the_landmarks_for_a_prior_model(astronaut):
    """Given a face (the portrait pipeline's), the prior follows it; without one, the Reconstructor finds it on the
    global view, as the training cache does. The astronaut cropped to her face, as the pipeline's crop would."""
    photo = F.interpolate(astronaut[None, :, 20:276, 96:352], size=(512, 512), mode="bicubic")[0].clamp(0, 1)
    rec, gs = reconstructor("landmarks"), CPU["global_size"]
    face = landmarks(photo)[0]
    given = rec(photo, face=face)
    prior = landmark_uv_prior(face, 0, 0, 512, gs)
    cover = prior[2] > 0.99
    assert float(cover.float().mean()) > 0.1
    assert torch.allclose(given["uv_pred"][:, cover], prior[:2][:, cover], atol=1e-6)
    found = rec(photo)
    view = F.interpolate(photo[None], size=(gs, gs), mode="area")[0]
    own = landmark_uv_prior(landmarks(view)[0], 0, 0, gs, gs)
    both = cover & (own[2] > 0.99)
    assert torch.allclose(found["uv_pred"][:, both], own[:2][:, both], atol=1e-6)
    assert float((found["uv_pred"] - given["uv_pred"]).norm(dim=0)[both].median()) * 1024 < 12  # the same face
    plain = reconstructor("none")(photo)  # the same weights without the prior: another uv, other maps
    assert not torch.allclose(plain["uv_pred"][:, cover], given["uv_pred"][:, cover])


def test_without_a_face_a_prior_model_warns_and_keeps_the_predicted_uv():
    image = torch.rand(3, 512, 512, generator=torch.Generator().manual_seed(1))
    with pytest.warns(UserWarning, match="no face found"):
        out = reconstructor("landmarks")(image)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plain = reconstructor("none")(image)
    assert torch.equal(out["uv_pred"], plain["uv_pred"]) and torch.equal(out["albedo"], plain["albedo"])


class OneCaptureStore:
    def __init__(self, image: torch.Tensor):
        self.image = image

    def read_global(self, capture: str, size: int, names) -> dict:
        return {"image": F.interpolate(self.image[None], size=(size, size), mode="area")[0]}


def test_training_cache_computes_the_prior_as_inference_does(astronaut):
    """The Stage-1 cache of a prior model runs the landmarker on each capture's global view: the same uv as the
    Stage 1 given that view's landmark prior. The setting is part of the cache key."""
    s1 = small_stage1("landmarks")
    s1.global_size = 256
    cached = store_compute(OneCaptureStore(astronaut), s1)(["a"])
    view = F.interpolate(astronaut[None], size=(256, 256), mode="area")
    prior = landmark_uv_prior(landmarks(view[0])[0], 0, 0, 256, 256)[None]
    assert torch.equal(cached["uv_pred"], s1(view, uv_prior=prior)["uv_pred"])
    assert not torch.equal(cached["uv_pred"], s1(view)["uv_pred"])
    spec = CacheSpec(upstream={"uv_normal": "x"}, keys=s1.keys, global_size=256)
    with_prior = CacheSpec(upstream={"uv_normal": "x"}, keys=s1.keys, global_size=256, extra={"uv_prior": "landmarks"})
    assert spec.key != with_prior.key
