"""Blender/Cycles path: a tiny capture through bpy agrees with the built-in renderer on the same asset,
camera and lighting (geometry maps tightly, radiance loosely). Creates .venv-blender (bpy 5.0.1, ~30-90 s)
when it is missing; skips only when bpy cannot be installed here."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
import torch

from uhrtex.captures.heads import MeshError
from uhrtex.io import srgb_to_linear

# slow: the fixture may build .venv-blender (a ~400 MB bpy download) and each Cycles render takes tens of seconds.
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:raster. using the pure-torch backend")]
REPO = Path(__file__).resolve().parents[1]
RES, SPP, LIGHT = 96, 16, "sky1_r030"


@pytest.fixture(scope="module")
def blender():
    from uhrtex.captures.blender import find_blender

    if find_blender() is None:
        if shutil.which("make") is None or shutil.which("python3.11") is None:
            pytest.skip("bpy cannot be installed: needs `make` and python3.11 (bpy 5.0.1 has Python 3.11 wheels only)")
        t0 = time.perf_counter()
        proc = subprocess.run(["make", "-C", str(REPO), "blender-venv"], capture_output=True, text=True, timeout=900)
        if proc.returncode != 0 or find_blender() is None:
            pytest.skip(f"bpy cannot be installed (`make blender-venv` failed): {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
        print(f"created .venv-blender in {time.perf_counter() - t0:.0f} s")
    return find_blender()


@pytest.fixture(scope="module")
def pair(blender, tmp_path_factory):
    from uhrtex.captures.blender import render_capture as blender_render
    from uhrtex.captures.render import render_capture

    t0 = time.perf_counter()
    b = blender_render(3, LIGHT, 0, RES, samples=SPP, workdir=tmp_path_factory.mktemp("blender"))
    print(f"Blender {RES}^2 / {SPP} spp capture: {time.perf_counter() - t0:.1f} s (Cycles {b.meta['blender']['seconds']} s)")
    return render_capture(3, LIGHT, 0, RES), b


def test_blender_capture_is_valid(pair):
    _, b = pair
    b.validate()
    assert b.meta["renderer"] == "blender" and b.meta["lighting"] == LIGHT and b.meta["mesh"]["seed"] == 3


def test_geometry_maps_agree_tightly(pair):
    ours, theirs = pair
    m_ours, m_theirs = ours.maps["mask"][0] > 0, theirs.maps["mask"][0] > 0
    assert (m_ours ^ m_theirs).sum() <= 0.01 * m_ours.sum()  # silhouettes agree to a few edge pixels
    both = m_ours & m_theirs
    for name, tol in (("uv", 5e-3), ("normal", 2e-2), ("micronormal", 5e-3), ("specular", 5e-3), ("albedo", 1e-2)):
        err = (ours.maps[name][:, both] - theirs.maps[name][:, both]).abs()
        assert err.max() <= tol, (name, float(err.max()))


def test_radiance_agrees_loosely(pair):
    ours, theirs = pair
    m = (ours.maps["mask"][0] > 0) & (theirs.maps["mask"][0] > 0)
    bg = (ours.maps["mask"][0] == 0) & (theirs.maps["mask"][0] == 0)
    a, b = ours.maps["image"], theirs.maps["image"]
    assert (a[:, bg] - b[:, bg]).abs().mean() < 2e-3  # the same environment map, orientation and exposure
    la, lb = srgb_to_linear(a[:, m]).mean(1), srgb_to_linear(b[:, m]).mean(1)
    assert torch.all((la / lb - 1).abs() < 0.25), (la, lb)  # no shadows / interreflection in the built-in one
    assert (a[:, m] - b[:, m]).abs().mean() < 0.08


def test_mesh_without_uvs_is_one_line_error(blender, tmp_path):
    from uhrtex.captures.blender import BlenderError
    from uhrtex.captures.blender.launch import run_scene

    obj = tmp_path / "scan.obj"
    obj.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nvn 0 0 1\nf 1//1 2//1 3//1\n")
    from uhrtex.captures.blender import render_folder
    from uhrtex.captures.format import Camera

    with pytest.raises(MeshError) as e:  # caught before Blender starts
        render_folder(tmp_path / "out", obj=obj, albedo=obj, normal=obj, specular=obj, lighting=LIGHT,
                      camera=Camera.from_fov(20, 32, 32))
    assert "scan.obj" in str(e.value) and "\n" not in str(e.value)
    # and scene.py itself refuses it (when run directly with a Blender of one's own)
    job = {"obj": str(obj), "camera": Camera.from_fov(20, 32, 32).to_dict(), "output": str(tmp_path / "r.exr")}
    with pytest.raises(BlenderError) as e:
        run_scene(job, tmp_path / "job.json", timeout=300)
    assert "no UVs" in str(e.value) and "\n" not in str(e.value)
