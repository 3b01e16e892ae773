"""Ingest of rendered capture folders: exact conversion, resume, interruption recovery, bad-input errors."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.helpers.captures import one_line, random_capture
from tests.helpers.hydra_run import REPO
from uhrtex.common import imaging
from uhrtex.common import io as uio
from uhrtex.captures.format import quantize
from uhrtex.captures.ingest import IngestError, ingest, main, read_capture_folder, write_capture_folder
from uhrtex.captures.store import CaptureStore
from uhrtex.maps import CAPTURE, decode_normal


def _folders(root, n=3, size=32):
    caps = [random_capture(i, i % 2, size=size) for i in range(n)]
    for c in caps:
        write_capture_folder(root / c.key, c)
    return caps


def test_ingest_is_exact_for_16bit_png_and_float_exr(tmp_path):
    caps = _folders(tmp_path / "src")
    report = ingest(tmp_path / "src", tmp_path / "store", global_sizes=[8], progress=False)
    assert sorted(report.written) == sorted(c.key for c in caps) and not report.skipped
    store = CaptureStore(tmp_path / "store")
    for c in caps:
        back = store.read(c.key)
        assert all(torch.equal(back[n], c.quantized().maps[n]) for n in CAPTURE.names)
        assert store.meta(c.key) == c.meta and store.global_sizes(c.key) == [8]


def test_blender_style_exr_folder(tmp_path):
    """Linear EXR radiance, raw [-1, 1] normals, a 3-channel UV pass, the mask as PNG alpha."""
    cap = random_capture(20, 0, size=32)
    folder = tmp_path / "src" / "frame_0001"
    folder.mkdir(parents=True)
    uio.write_exr(folder / "image.exr", imaging.srgb_to_linear(cap.maps["image"]), half=False)
    uio.write_exr(folder / "albedo.exr", imaging.srgb_to_linear(cap.maps["albedo"]), half=False)
    for name in ("micronormal", "normal"):
        uio.write_exr(folder / f"{name}.exr", decode_normal(cap.maps[name][None])[0] * (cap.maps["mask"] > 0), half=True)
    uio.write_png(folder / "specular.png", cap.maps["specular"], bits=16)
    uio.write_exr(folder / "uv.exr", torch.cat([cap.maps["uv"], cap.maps["mask"]]), channel_names=["U", "V", "A"], half=False)
    uio.write_png(folder / "mask.png", torch.cat([torch.zeros(3, 32, 32), cap.maps["mask"]]), bits=8)
    (folder / "meta.json").write_text(json.dumps(cap.meta))
    got = read_capture_folder(folder)
    inside = cap.maps["mask"] > 0
    assert torch.allclose(got.maps["image"], cap.maps["image"], atol=1e-5)
    assert torch.equal(got.maps["uv"], cap.maps["uv"]) and torch.equal(got.maps["mask"], cap.maps["mask"])
    n_got, n_want = decode_normal(got.maps["normal"][None])[0], decode_normal(cap.maps["normal"][None])[0]
    assert ((n_got * n_want).sum(0)[inside[0]] > 0.999).all()
    assert (got.maps["normal"][:, ~inside[0]] == 0).all()  # background is 0 (format rule), not encoded (0.5)


def test_rerun_skips_finished_captures(tmp_path):
    _folders(tmp_path / "src", n=2)
    ingest(tmp_path / "src", tmp_path / "store", progress=False)
    report = ingest(tmp_path / "src", tmp_path / "store", progress=False)
    assert len(report.skipped) == 2 and not report.written


def test_interrupted_ingest_leaves_no_half_capture_and_recovers(tmp_path, monkeypatch):
    caps = _folders(tmp_path / "src", n=3)
    original = CaptureStore._create
    calls = {"n": 0}

    def dying(self, group, name, codes):
        calls["n"] += 1
        if calls["n"] == len(CAPTURE.names) + 4:  # inside the second capture
            raise KeyboardInterrupt
        return original(self, group, name, codes)

    monkeypatch.setattr(CaptureStore, "_create", dying)
    with pytest.raises(KeyboardInterrupt):
        ingest(tmp_path / "src", tmp_path / "store", progress=False)
    monkeypatch.undo()
    store = CaptureStore(tmp_path / "store")
    assert len(store.keys()) == 1 and len(store.partials()) == 1
    report = ingest(tmp_path / "src", tmp_path / "store", progress=False)
    assert len(report.skipped) == 1 and len(report.written) == 2
    store = CaptureStore(tmp_path / "store")
    assert store.keys() == sorted(c.key for c in caps) and store.partials() == []
    for c in caps:
        assert torch.equal(store.read(c.key)["albedo"], quantize(c.maps["albedo"]))


@pytest.mark.slow  # two interpreter start-ups; the in-process interruption test above runs by default
def test_killed_ingest_process_recovers(tmp_path):
    """SIGKILL the CLI while it writes, then re-run it: every capture complete, nothing half-written."""
    caps = _folders(tmp_path / "src", n=4, size=96)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "uhrtex.captures.ingest", str(tmp_path / "src"), str(tmp_path / "store"), "--no-progress"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    store_dir = tmp_path / "store"
    while time.time() < deadline and proc.poll() is None:
        if store_dir.exists() and any(p.name.startswith("_partial.") for p in store_dir.iterdir()):
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    visible = CaptureStore(store_dir).keys()
    assert len(visible) < len(caps)  # killed before the end
    for key in visible:  # what is visible is complete
        assert CaptureStore(store_dir).read(key)["mask"].shape == (1, 96, 96)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    store = CaptureStore(store_dir)
    assert store.keys() == sorted(c.key for c in caps) and store.partials() == []
    for c in caps:
        assert torch.equal(store.read(c.key)["image"], quantize(c.maps["image"]))


def _bad_folder(tmp_path, break_it):
    cap = random_capture(30, 0, size=32)
    folder = tmp_path / "src" / "cap"
    write_capture_folder(folder, cap)
    path = break_it(folder)
    return folder, path


def _nan_exr(folder):
    x = torch.rand(2, 32, 32)
    x[1, 4, 4] = float("nan")
    import OpenEXR

    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    OpenEXR.File(header, {"R": x[0].numpy().copy(), "G": x[1].numpy().copy()}).write(str(folder / "uv.exr"))
    return folder / "uv.exr"


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    return path


def _write(path, data: bytes | str):
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


BAD_INPUTS = {
    "missing file": (lambda f: (f / "albedo.png").unlink() or f / "albedo.png", "does not exist"),
    "corrupt file": (lambda f: _write(f / "specular.png", b"garbage" * 20), "corrupt"),
    "truncated png": (lambda f: _truncate(f / "micronormal.png"), "corrupt or truncated"),
    "truncated exr": (lambda f: _truncate(f / "uv.exr"), "corrupt or truncated"),
    "wrong-size map": (lambda f: uio.write_png(f / "normal.png", torch.rand(3, 16, 32), bits=16) or f / "normal.png", "16x32"),
    "nan in exr": (_nan_exr, "NaN"),
    "wrong channels": (lambda f: uio.write_png(f / "specular.png", torch.rand(3, 32, 32)) or f / "specular.png", "channels"),
    "bad meta": (lambda f: _write(f / "meta.json", '{"subject": '), "invalid JSON"),
    "meta lacks keys": (lambda f: _write(f / "meta.json", '{"subject": "s1"}'), "lacks"),
    "two image files": (lambda f: uio.write_exr(f / "image.exr", torch.rand(3, 32, 32)) or f / "image.exr", "keep one"),
    "uv out of range": (lambda f: uio.write_exr(f / "uv.exr", torch.rand(2, 32, 32) * 3) or f / "uv.exr", "outside [0, 1]"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_a_one_line_error_naming_the_file(tmp_path, case):
    break_it, problem = BAD_INPUTS[case]
    folder, path = _bad_folder(tmp_path, break_it)
    with pytest.raises(IngestError) as err:
        ingest(tmp_path / "src", tmp_path / "store", progress=False)
    one_line(err, path.name, problem)
    assert str(folder) in str(err.value)
    assert CaptureStore(tmp_path / "store").keys() == []


def test_cli_reports_one_line_and_exit_status(tmp_path, capsys):
    _, path = _bad_folder(tmp_path, BAD_INPUTS["nan in exr"][0])
    good = random_capture(31, 0, size=32)
    write_capture_folder(tmp_path / "src" / "good", good)
    assert main([str(tmp_path / "src"), str(tmp_path / "store"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "uv.exr" in err
    assert main([str(tmp_path / "src"), str(tmp_path / "store"), "--no-progress", "--skip-bad"]) == 1
    out = capsys.readouterr()
    assert "1 written" in out.out and out.err.count("\n") == 1
    assert CaptureStore(tmp_path / "store").keys() == [good.key]
    assert main([str(tmp_path / "missing"), str(tmp_path / "store")]) == 2
    one_line(capsys.readouterr().err.strip(), "missing", "does not exist")
