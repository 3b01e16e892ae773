import pytest
import torch
import torch.nn.functional as F

from uhrtex.hfdr.patches import Box, assemble, grid_boxes, pad_to_multiple, sample_global, split


def test_split_assemble_round_trip_and_order():
    image = torch.arange(2 * 3 * 8 * 12, dtype=torch.float32).reshape(2, 3, 8, 12)
    tiles = split(image, 4)
    assert tiles.shape == (2 * 2 * 3, 3, 4, 4)
    boxes = grid_boxes(8, 12, 4)
    for i, (y, x, h, w) in enumerate(boxes):  # row-major, image 0 first
        torch.testing.assert_close(tiles[i], image[0, :, y:y + h, x:x + w])
    torch.testing.assert_close(assemble(tiles, 2, 3), image)


def test_grid_rejects_non_multiples():
    with pytest.raises(ValueError, match="pad it first"):
        grid_boxes(10, 8, 4)


def test_pad_to_multiple():
    padded, size = pad_to_multiple(torch.rand(1, 3, 10, 7), 4)
    assert padded.shape[-2:] == (12, 8) and size == (10, 7)


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_sample_global_equals_upsample_then_crop(mode):
    g = torch.rand(2, 7, 16, 16, dtype=torch.float64)
    full = F.interpolate(g, size=(64, 64), mode=mode, **({"align_corners": False} if mode == "bilinear" else {}))
    for box in [Box(0, 0, 16, 16), Box(16, 48, 16, 16), Box(4, 8, 12, 20)]:
        got = sample_global(g, box, (64, 64), mode=mode)
        y, x, h, w = box
        torch.testing.assert_close(got, full[..., y:y + h, x:x + w])
