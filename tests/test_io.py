"""uhrtex.common.io: round trips per format, normalisation, and one-line errors naming the file."""

import os
import warnings

import numpy as np
import pytest
import torch

from tests.helpers.captures import one_line
from uhrtex.common import imaging
from uhrtex.common import io as uio


@pytest.fixture
def rgb():
    return torch.rand(3, 12, 16, generator=torch.Generator().manual_seed(0))


def test_png8_round_trip(tmp_path, rgb):
    uio.write_png(tmp_path / "a.png", rgb, bits=8)
    back = uio.read_image(tmp_path / "a.png", channels=3, size=(12, 16))
    assert back.dtype == torch.float32 and back.shape == (3, 12, 16)
    assert torch.equal(back, torch.round(rgb.double() * 255).float() / 255)


def test_png16_round_trip_is_exact_on_the_16bit_grid(tmp_path, rgb):
    codes = torch.round(rgb.double() * 65535)
    x = (codes / 65535).float()
    uio.write_png(tmp_path / "a.png", x, bits=16)
    back = uio.read_image(tmp_path / "a.png")
    assert torch.equal(torch.round(back.double() * 65535), codes)
    assert (back - rgb).abs().max() <= 0.5 / 65535 + 1e-7


@pytest.mark.parametrize("bits", [8, 16])
def test_every_integer_code_reads_as_numpys_float32_quotient(tmp_path, bits):
    """read_image converts 8/16-bit samples in torch: each code must give numpy's astype(float32) / top, RGB order."""
    top, dtype = (255, np.uint8) if bits == 8 else (65535, np.uint16)
    codes = np.arange(top + 1, dtype=np.int64)
    hwc = np.stack([codes, codes[::-1], (codes * 7) % (top + 1)], -1).astype(dtype).reshape(-1, 256, 3)
    uio.write_png(tmp_path / "a.png", torch.from_numpy(hwc.transpose(2, 0, 1).astype(np.float64) / top), bits=bits)
    back = uio.read_image(tmp_path / "a.png")
    assert back.dtype == torch.float32 and back.is_contiguous()
    assert torch.equal(back, torch.from_numpy(hwc.transpose(2, 0, 1).astype(np.float32) / top))


def test_png16_grayscale_and_expand(tmp_path, rgb):
    uio.write_png(tmp_path / "g.png", rgb[:1], bits=16)
    assert uio.read_image(tmp_path / "g.png").shape == (1, 12, 16)
    with pytest.raises(uio.ImageError) as err:
        uio.read_image(tmp_path / "g.png", channels=3)
    one_line(err, tmp_path / "g.png", "grayscale")
    expanded = uio.read_image(tmp_path / "g.png", channels=3, gray="expand")
    assert expanded.shape == (3, 12, 16) and torch.equal(expanded[0], expanded[2])


def test_rgba_alpha_is_dropped_with_a_warning_or_kept(tmp_path, rgb):
    uio.write_png(tmp_path / "a.png", torch.cat([rgb, rgb[:1]]), bits=8)
    with pytest.warns(UserWarning, match="alpha"):
        assert uio.read_image(tmp_path / "a.png").shape[0] == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kept = uio.read_image(tmp_path / "a.png", alpha="keep")
    assert kept.shape[0] == 4 and torch.allclose(kept[3], rgb[0], atol=1 / 255)
    with pytest.raises(uio.ImageError):
        uio.read_image(tmp_path / "a.png", alpha="error")


def test_jpeg_and_tiff(tmp_path, rgb):
    smooth = torch.linspace(0, 1, 16).expand(3, 12, 16).contiguous()  # JPEG is lossy on noise (chroma subsampling)
    uio.write_jpeg(tmp_path / "a.jpg", smooth, quality=100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PIL's decoded arrays are read-only: reading one says nothing
        assert (uio.read_image(tmp_path / "a.jpg", channels=3) - smooth).abs().mean() < 0.02
    uio.write_tiff(tmp_path / "a.tif", rgb, bits=16)
    assert (uio.read_image(tmp_path / "a.tif") - rgb).abs().max() <= 0.5 / 65535 + 1e-7
    uio.write_tiff(tmp_path / "f.tiff", rgb * 3 - 1, bits=32)  # float TIFF: raw values
    assert torch.equal(uio.read_image(tmp_path / "f.tiff"), rgb * 3 - 1)


@pytest.mark.parametrize("half", [True, False])
def test_exr_round_trip_half_and_float(tmp_path, rgb, half):
    x = rgb * 4 - 2  # raw values, not clamped
    uio.write_exr(tmp_path / "a.exr", x, half=half)
    back = uio.read_image(tmp_path / "a.exr")
    want = x.half().float() if half else x
    assert torch.equal(back, want)


def test_exr_channel_order_and_selection(tmp_path, rgb):
    uio.write_exr(tmp_path / "uv.exr", rgb, half=False, channel_names=["U", "V", "A"])
    assert torch.equal(uio.read_image(tmp_path / "uv.exr", alpha="keep"), rgb)  # U V A, alpha last
    assert torch.equal(uio.read_image(tmp_path / "uv.exr", exr_channels=["V"]), rgb[1:2])
    with pytest.raises(uio.ImageError) as err:
        uio.read_image(tmp_path / "uv.exr", exr_channels=["R"])
    one_line(err, "uv.exr", "lacks channels")


def test_nan_in_exr_names_file_and_channel(tmp_path, rgb):
    x = rgb.clone()
    x[1, 3, 4] = float("nan")
    # write_exr refuses NaN itself; write the file with OpenEXR directly.
    import OpenEXR

    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    OpenEXR.File(header, {c: x[i].numpy().copy() for i, c in enumerate("RGB")}).write(str(tmp_path / "bad.exr"))
    with pytest.raises(uio.ImageError) as err:
        uio.read_image(tmp_path / "bad.exr")
    one_line(err, tmp_path / "bad.exr", "channel 'G'", "NaN")
    with pytest.raises(uio.ImageError) as err:
        uio.write_exr(tmp_path / "never.exr", x)
    one_line(err, "never.exr", "NaN")
    assert not (tmp_path / "never.exr").exists()


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("name", ["a.png", "a.jpg", "a.exr", "a.tif"])
def test_truncated_or_corrupt_files_are_one_line_errors(tmp_path, name):
    x = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(1))
    path = tmp_path / name
    uio.write_image(path, x)
    _truncate(path)
    with pytest.raises(uio.ImageError) as err:
        uio.read_image(path)
    one_line(err, path)
    path.write_bytes(b"not an image at all" * 10)
    with pytest.raises(uio.ImageError) as err:
        uio.read_image(path)
    one_line(err, path, "corrupt")


def test_missing_empty_unsupported_wrong_size_wrong_channels(tmp_path, rgb):
    cases = []
    with pytest.raises(uio.ImageError) as err:
        uio.read_image(tmp_path / "missing.png")
    cases.append(one_line(err, "missing.png", "does not exist"))
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(uio.ImageError) as err:
        uio.read_image(tmp_path / "empty.png")
    cases.append(one_line(err, "empty.png", "empty"))
    (tmp_path / "a.bmp").write_bytes(b"BM")
    with pytest.raises(uio.ImageError) as err:
        uio.read_image(tmp_path / "a.bmp")
    one_line(err, "a.bmp", "unsupported")
    uio.write_png(tmp_path / "a.png", rgb)
    with pytest.raises(uio.ImageError) as err:
        uio.read_image(tmp_path / "a.png", size=16)
    one_line(err, "a.png", "12x16", "16x16")
    with pytest.raises(uio.ImageError) as err:
        uio.read_image(tmp_path / "a.png", channels=(1, 2))
    one_line(err, "a.png", "3 channels")


def test_ldr_writers_refuse_out_of_range(tmp_path, rgb):
    with pytest.raises(uio.ImageError) as err:
        uio.write_png(tmp_path / "a.png", rgb * 2)
    one_line(err, "a.png", "outside [0, 1]")


def test_atomic_write_keeps_the_old_file_and_leaves_no_temp(tmp_path, rgb, monkeypatch):
    target = tmp_path / "a.png"
    uio.write_png(target, rgb)
    before = target.read_bytes()

    def broken_replace(src, dst):
        raise KeyboardInterrupt  # interrupted between writing the temp file and renaming it

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(KeyboardInterrupt):
        uio.write_png(target, 1 - rgb)
    monkeypatch.undo()
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]
    assert oct(target.stat().st_mode & 0o777) != oct(0o600)


def test_srgb_helpers():
    x = torch.linspace(0, 1, 101)
    assert torch.allclose(imaging.linear_to_srgb(imaging.srgb_to_linear(x)), x, atol=1e-6)
    assert abs(float(imaging.srgb_to_linear(torch.tensor(0.5))) - 0.21404) < 1e-4
    assert float(imaging.linear_to_srgb(torch.tensor(0.0))) == 0.0
    assert np.isclose(float(imaging.linear_to_srgb(torch.tensor(1.0))), 1.0, atol=1e-6)


def test_blocked_quantiser_matches_whole_array_rounding():
    """`quantize_hwc` works in row blocks (memory); it must give the bytes one whole-array pass gives."""
    from uhrtex.common.io import QUANTIZE_ROWS, quantize_hwc

    x = torch.rand(3, QUANTIZE_ROWS + 37, 70, generator=torch.Generator().manual_seed(0))
    x[0, 0, :4] = torch.tensor([0.5 / 255, 1.5 / 255, 0.0, 1.0])  # exact halves
    ref16 = torch.from_numpy(np.ascontiguousarray(x.numpy().transpose(1, 2, 0))).double().mul_(65535).round_()
    assert np.array_equal(quantize_hwc(x, 16), ref16.to(torch.uint16).numpy())
    ref8 = (x[[2, 1, 0]].clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
    assert np.array_equal(quantize_hwc([x], 8, half_up=True, clamp=True, order=[2, 1, 0]), ref8)
    r = x[:1]
    planes = torch.cat([torch.ones_like(r), r, torch.zeros_like(r)])
    ref = (planes.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
    assert np.array_equal(quantize_hwc([1.0, r, 0.0], 8, half_up=True, clamp=True), ref)  # constants as channels


@pytest.mark.parametrize("deflate", ["isal", "zlib"])
def test_png_encoder_round_trips_through_libpng(tmp_path, monkeypatch, deflate):
    """`encode_png` (our filter + deflate, block by block) gives files libpng (OpenCV) decodes to the quantised pixels:
    1-4 channels, 8 and 16 bits, heights across the block boundary, flat and noisy rows."""
    import sys

    import cv2

    from uhrtex.common.io import QUANTIZE_ROWS, encode_png, quantize_hwc

    if deflate == "zlib":
        monkeypatch.setitem(sys.modules, "isal", None)  # `from isal import ...` raises ImportError
    g = torch.Generator().manual_seed(3)
    for c in (1, 2, 3, 4):
        for bits in (8, 16):
            for h, w in ((1, 1), (QUANTIZE_ROWS + 3, 19)):
                x = torch.rand(c, h, w, generator=g)
                x[:, : h // 2] = 0.25  # runs of equal rows: the "up" filter's zero rows
                before = x.clone()
                got = cv2.imdecode(np.frombuffer(encode_png(x, bits, 1), np.uint8), cv2.IMREAD_UNCHANGED)
                encode_png(x, 8, 1, half_up=True, clamp=True)  # float32 rounding: must work on a copy too
                assert torch.equal(x, before)  # the encoder reads the caller's maps in place, never writes them
                got = got.reshape(h, w, -1)
                got = got[..., {1: [0], 2: [0, 3], 3: [2, 1, 0], 4: [2, 1, 0, 3]}[c]]  # OpenCV reads BGR(A)
                assert got.dtype == (np.uint8 if bits == 8 else np.uint16)
                assert np.array_equal(got, quantize_hwc(x, bits)), (c, bits, h, w)
