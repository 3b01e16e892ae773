"""off_skin_blob: a skin albedo of any tone scores 0; a green or blue blotch scores its area; 8-connectivity."""

import torch

from uhrtex.metrics.skin import off_skin_blob, off_skin_pixels


def _skin(rgb=(0.8, 0.55, 0.45), size=100) -> torch.Tensor:
    return torch.tensor(rgb).view(3, 1, 1).expand(3, size, size).clone()


def test_skin_tones_are_not_blotches():
    mask = torch.ones(100, 100)
    for rgb in ((0.85, 0.62, 0.52), (0.55, 0.35, 0.25), (0.25, 0.14, 0.1), (0.6, 0.3, 0.3), (0.9, 0.9, 0.9)):
        assert off_skin_blob(_skin(rgb), mask) == 0.0, rgb


def test_a_blotch_scores_its_area_inside_the_mask():
    a, mask = _skin(), torch.ones(100, 100)
    a[:, 10:30, 10:30] = torch.tensor([0.3, 0.7, 0.3]).view(3, 1, 1)  # green: 4 % of the frame
    a[:, 60:65, 60:65] = torch.tensor([0.2, 0.3, 0.8]).view(3, 1, 1)  # blue, smaller
    assert off_skin_blob(a, mask) == 0.04
    mask[:, 50:] = 0  # the blotch is now 400 of 5,000 mask pixels; the blue one is outside
    assert off_skin_blob(a, mask) == 400 / 5000
    assert off_skin_blob(a, torch.zeros(100, 100)) == 0.0


def test_diagonal_neighbours_connect():
    a, mask = _skin(), torch.ones(20, 20)
    a = a[:, :20, :20].clone()
    for i in range(10):
        a[:, i, i] = torch.tensor([0.2, 0.8, 0.2])
    assert off_skin_pixels(a, mask).sum() == 10
    assert off_skin_blob(a, mask) == 10 / 400  # one diagonal chain: one region


def test_noisy_albedo_scores_scipys_largest_8_connected_region_over_the_mask():
    """Random colours give many off-skin regions of every shape; the score is scipy.ndimage.label's largest."""
    import numpy as np
    from scipy import ndimage

    g = torch.Generator().manual_seed(0)
    a, mask = torch.rand(3, 300, 300, generator=g), (torch.rand(300, 300, generator=g) > 0.2).float()
    labels, n = ndimage.label(off_skin_pixels(a, mask).numpy(), structure=np.ones((3, 3), bool))
    assert n > 100
    assert off_skin_blob(a, mask) == np.bincount(labels.ravel())[1:].max() / float(mask.sum())


def test_chunked_colour_conversion_is_the_whole_arrays(monkeypatch):
    """off_skin_pixels converts the masked pixels in chunks (cache-sized); chunks of any size give the same pixels."""
    import uhrtex.metrics.skin as skin

    g = torch.Generator().manual_seed(1)
    a, mask = torch.rand(3, 120, 130, generator=g), (torch.rand(120, 130, generator=g) > 0.3).float()
    monkeypatch.setattr(skin, "_CHUNK", 10**9)
    whole = off_skin_pixels(a, mask)
    for chunk in (97, 777, 4096):
        monkeypatch.setattr(skin, "_CHUNK", chunk)
        assert torch.equal(off_skin_pixels(a, mask), whole), chunk
    assert 0 < int(whole.sum()) < int((mask > 0.5).sum())
