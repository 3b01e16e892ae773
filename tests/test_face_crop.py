import pytest
import torch

from uhrtex.face_crop import FaceNotFoundError, crop_face, detect_face

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def astronaut():
    """A real portrait bundled with scikit-image (offline): 512×512, face near (177, 66, 95, 95)."""
    return torch.from_numpy(skimage_data.astronaut()).permute(2, 0, 1).float() / 255


def test_detects_the_face(astronaut):
    x, y, w, h = detect_face(astronaut)
    assert 150 < x + w / 2 < 280 and 60 < y + h / 2 < 170 and 60 < w < 140


def test_detection_is_scale_invariant_on_large_frames(astronaut):
    big = torch.nn.functional.interpolate(astronaut[None], scale_factor=3, mode="bilinear")[0]  # 1536², detected at 1024
    x, y, w, h = detect_face(big)
    x0, y0, w0, h0 = detect_face(astronaut)
    assert abs((x + w / 2) / 3 - (x0 + w0 / 2)) < 12 and abs(w / 3 - w0) < 20


def test_crop_reports_upscale_and_warns_on_small_faces(astronaut):
    with pytest.warns(UserWarning, match="upscaled"):
        out, info = crop_face(astronaut, 512)
    assert out.shape == (3, 512, 512) and 0 <= float(out.min()) and float(out.max()) <= 1
    assert info.upscale == pytest.approx(512 / info.crop[2]) and info.upscale > 2 and info.warning
    # The face is in the middle of the crop: the skin-coloured centre is brighter/redder than the corners.
    assert float(out[0, 200:300, 200:300].mean()) > 0.4


def test_large_face_no_warning_and_padding(astronaut, recwarn):
    # A face box given directly; the crop runs past the border (replicate padding), no upscale -> no warning.
    img = astronaut[:, :, :]
    out, info = crop_face(img, 64, face=(0, 0, 200, 200))
    assert out.shape == (3, 64, 64) and info.upscale < 1 and info.warning is None
    assert not [w for w in recwarn if "upscaled" in str(w.message)]


def test_no_face_is_a_one_line_error():
    flat = torch.full((3, 256, 256), 0.5)
    with pytest.raises(FaceNotFoundError, match="no frontal face") as e:
        crop_face(flat, 128, name="wall.png")
    assert "\n" not in str(e.value) and "wall.png" in str(e.value)
