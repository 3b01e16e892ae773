"""ST-LPIPS-alex: strict key match with the wheel's weights, equality with the wheel's own code, known orderings."""

import sys
import types

import pytest
import torch
import torch.nn.functional as F

from uhrtex.metrics.stlpips import STLPIPS, weights_path

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def metric():
    return STLPIPS()


def test_every_checkpoint_key_matches(metric):
    state = torch.load(weights_path(), map_location="cpu", weights_only=True)
    ours = metric.state_dict()
    assert set(state) == set(ours)
    assert all(state[k].shape == ours[k].shape for k in state)
    assert all(torch.equal(state[k], ours[k]) for k in state)


def test_matches_the_wheels_own_implementation(metric, monkeypatch):
    # The wheel imports torchvision/IPython/torchsummary without using them for this variant: stub them.
    for name in ("torchvision", "torchvision.models", "IPython", "torchsummary"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    sys.modules["torchvision"].models = sys.modules["torchvision.models"]
    sys.modules["IPython"].embed = lambda *a, **k: None
    sys.modules["torchsummary"].summary = lambda *a, **k: None
    for name in [m for m in sys.modules if m.startswith("stlpips_pytorch")]:
        monkeypatch.delitem(sys.modules, name)
    from stlpips_pytorch import stlpips as reference

    ref = reference.LPIPS(net="alex", variant="shift_tolerant", verbose=False)
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(2, 3, 72, 80, generator=g), torch.rand(2, 3, 72, 80, generator=g)
    with torch.no_grad():
        assert torch.allclose(ref(a, b, normalize=True).flatten(), metric(a, b), rtol=1e-4, atol=1e-6)


def _blur(x, sigma):
    r = int(3 * sigma) + 1
    k = torch.exp(-torch.arange(-r, r + 1.0) ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def test_identity_shift_blur_noise_ordering(metric):
    data = pytest.importorskip("skimage.data")
    img = F.avg_pool2d(torch.from_numpy(data.astronaut()).permute(2, 0, 1).float()[None] / 255, 2)
    ref = img[:, :, 20:148, 60:188]  # the face, 128 x 128
    shifted = img[:, :, 20:148, 62:190]  # the same scene 2 px to the left (a crop, not a wrap-around roll)
    blurred = _blur(ref, 1.0)
    noisy = (ref + 0.2 * torch.randn(ref.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    with torch.no_grad():
        d = metric(ref.expand(4, -1, -1, -1), torch.cat([ref, shifted, blurred, noisy]))
    same, shift, blur, noise = d.tolist()
    assert same == 0.0
    assert shift * 5 < blur and blur * 2 < noise, d.tolist()


def test_shared_target_encoded_once_gives_the_pairwise_values(metric):
    from uhrtex.metrics.perceptual import perceptual_distance

    g = torch.Generator().manual_seed(3)
    preds, target = torch.rand(3, 1, 48, 48, generator=g), torch.rand(1, 1, 48, 48, generator=g)
    mask = torch.zeros(1, 1, 48, 48)
    mask[..., 8:40, 4:44] = 1
    shared = perceptual_distance(metric, preds, target, mask, batch=2)
    pairs = torch.cat([perceptual_distance(metric, p[None], target, mask) for p in preds])
    assert torch.allclose(shared, pairs, rtol=1e-4, atol=1e-6)
    tiled = perceptual_distance(metric, preds, target, mask, tile=24)  # four 24-px tiles, all partly inside the mask
    assert tiled.shape == (3,) and torch.isfinite(tiled).all()
