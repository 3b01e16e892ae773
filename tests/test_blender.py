"""Blender/Cycles path: a tiny capture through bpy agrees with the built-in renderer on the same asset,
camera and lighting (geometry maps tightly, radiance loosely), and a head asset folder (your scans) renders
through Blender like the procedural head it was exported from. Creates .venv-blender (bpy 5.0.1, ~30-90 s)
when it is missing; skips only when bpy cannot be installed here."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import torch
from omegaconf import open_dict

from uhrtex.render.mesh import MeshError
from uhrtex.common.imaging import srgb_to_linear

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


def agree_geometry(ours, theirs) -> dict[str, float]:
    """Blender vs built-in tolerances of the geometry maps; returns the measured differences.

    Compared where both cover the pixel fully: a Cycles pixel whose few samples straddle the silhouette (mask < 1)
    holds coverage-weighted maps; such pixels count with the pixels covered by one only (a few edge pixels)."""
    m_ours, m_theirs = ours.maps["mask"][0], theirs.maps["mask"][0]
    err = {"mask_xor": int(((m_ours > 0) ^ (m_theirs > 0)).sum()), "mask_partial": int(((m_ours > 0) & (m_ours < 1) | (m_theirs > 0) & (m_theirs < 1)).sum())}
    assert err["mask_xor"] + err["mask_partial"] <= 0.01 * (m_ours > 0).sum()  # silhouettes agree to a few edge pixels
    both = (m_ours == 1) & (m_theirs == 1)
    # Inside the face tile a few pixels straddle a self-occlusion edge (the chin over the neck, an ear's rim): Cycles
    # averages its samples across the edge, the rasterizer takes the nearer surface. They may exceed the tolerance,
    # up to 0.2 % of the pixels (measured: 2 of 2,596 at 96², both at the chin).
    for name, tol in (("uv", 5e-3), ("normal", 2e-2), ("micronormal", 5e-3), ("specular", 5e-3), ("albedo", 1e-2)):
        diff = (ours.maps[name][:, both] - theirs.maps[name][:, both]).abs().amax(0)
        err[name] = float(diff.max())
        err[f"{name}_over_tol"] = int((diff > tol).sum())
        assert err[f"{name}_over_tol"] <= max(2, 0.002 * diff.numel()), (name, err[name], err[f"{name}_over_tol"])
    return err


def agree_radiance(ours, theirs, background: bool = True) -> dict[str, float]:
    """Blender vs built-in tolerances of the image; returns the measured differences. `background=False`: one side
    draws more of the head than the face tile (a face-only asset beside the whole ICT head), so only the face counts."""
    m = (ours.maps["mask"][0] > 0) & (theirs.maps["mask"][0] > 0)
    bg = (ours.maps["mask"][0] == 0) & (theirs.maps["mask"][0] == 0)
    a, b = ours.maps["image"], theirs.maps["image"]
    la, lb = srgb_to_linear(a[:, m]).mean(1), srgb_to_linear(b[:, m]).mean(1)
    err = {"background_mean": float((a[:, bg] - b[:, bg]).abs().mean()), "face_mean": float((a[:, m] - b[:, m]).abs().mean()),
           "face_luminance_ratio": float((la / lb - 1).abs().max())}
    # the same environment map, orientation and exposure (Cycles filters the map differently: 3.9e-3 measured at
    # the 35-135 mm cameras, whose long lenses magnify the background)
    assert err["background_mean"] < 5e-3 or not background
    assert err["face_luminance_ratio"] < 0.25, (la, lb)  # no shadows / interreflection in the built-in one
    assert err["face_mean"] < 0.08
    return err


def test_geometry_maps_agree_tightly(pair):
    agree_geometry(*pair)


def test_radiance_agrees_loosely(pair):
    agree_radiance(*pair)


def _report(what: str, err: dict) -> None:
    print(f"{what}: " + ", ".join(f"{k} {v:.2e}" if isinstance(v, float) else f"{k} {v}" for k, v in err.items()))


def test_asset_folder_renders_like_the_procedural_head(blender, tmp_path):
    """`make_captures captures.assets=DIR captures.renderer=blender` on head 3's face tile exported as an asset folder
    gives the procedural Blender capture of head 3 seen through the asset's camera (same lighting): the same GT maps
    and face radiance."""
    from experiments.make_captures import make_captures
    from tests.helpers.hydra_run import CPU_OVERRIDES, compose
    from uhrtex.captures.blender import render_capture as blender_render
    from uhrtex.captures.format import Capture
    from uhrtex.captures.heads.export import export_asset
    from uhrtex.captures.store import CaptureStore

    export_asset(3, RES, tmp_path / "assets" / "head3", face_only=True)
    cfg = compose(["+exp=make_captures", "preset=cpu", *CPU_OVERRIDES, f"captures.assets={tmp_path / 'assets'}",
                   "captures.renderer=blender", f"captures.resolution={RES}", "captures.lightings=1", "captures.global_sizes=[24]",
                   "captures.progress=false", f"data.store={tmp_path / 'store'}"], tmp_path)
    with open_dict(cfg):
        cfg.captures.render = {"samples": SPP, "workdir": str(tmp_path / "work")}
    t0 = time.perf_counter()
    assert make_captures(cfg)["captures/written"] == 1
    seconds = time.perf_counter() - t0
    store = CaptureStore(tmp_path / "store")
    assert store.keys() == ["head0003__l00__c00"]
    asset = Capture(store.read("head0003__l00__c00"), store.meta("head0003__l00__c00"))
    proc = blender_render(3, asset.meta["environment"]["id"], 0, RES, samples=SPP, workdir=tmp_path / "work", camera=asset.camera)
    meta = asset.meta
    assert meta["renderer"] == "blender" and meta["mesh"]["kind"] == "asset" and meta["subject"] == "head0003"
    assert meta["camera"]["world_to_camera"] == proc.meta["camera"]["world_to_camera"]
    assert meta["environment"] == proc.meta["environment"] and meta["blender"]["samples"] == SPP
    print(f"asset capture through make_captures: {seconds:.1f} s (Cycles {meta['blender']['seconds']} s)")
    _report("asset vs procedural (both Blender), geometry", agree_geometry(proc, asset))
    _report("asset vs procedural (both Blender), radiance", agree_radiance(proc, asset, background=False))


def test_converted_glb_asset_renders_like_the_obj_asset(blender, tmp_path):
    """Head 3 as a GLB in metres, z up and facing -y, with DirectX normals and a roughness map, framed on its own head:
    Blender places and converts it (scale, axes, maps) and renders what it renders for the plain OBJ asset; both get
    the built-in renderer's auto-framed camera, and its silhouette and (loosely) its radiance."""
    import trimesh

    from uhrtex.captures.assets import load_assets
    from uhrtex.captures.blender import render_capture as blender_render
    from uhrtex.captures.heads.export import export_asset
    from uhrtex.render.mesh import read_obj
    from uhrtex.captures.render import render_capture
    from uhrtex.common.io import read_image, write_png

    files = export_asset(3, RES, tmp_path / "obj" / "head3", face_only=True)
    dst = tmp_path / "glb" / "head3"
    dst.mkdir(parents=True)
    shutil.copy(files["albedo"], dst / "albedo.png")
    mn = read_image(files["micronormal"])
    write_png(dst / "micronormal.png", torch.cat([mn[:1], 1 - mn[1:2], mn[2:]]), bits=16)
    write_png(dst / "specular.png", 1 - read_image(files["specular"], channels=1), bits=16)
    m = read_obj(files["obj"])
    rot = torch.tensor([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])  # uhrtex (y up, +z face) -> z up, face towards -y
    trimesh.Trimesh((m.verts @ rot.T / 10).numpy(), m.tri.numpy(), vertex_normals=(m.normals @ rot.T).numpy(), process=False,
                    visual=trimesh.visual.TextureVisuals(uv=m.uv.numpy())).export(dst / "scan.glb", include_normals=True)
    # the same subject id: the same Cycles noise seed, so any difference is the asset path's
    (dst / "asset.json").write_text(json.dumps({"subject": "head0003", "scale": 10, "up": "+z", "forward": "-y",
                                                "normal_convention": "directx", "specular_kind": "roughness"}))
    (obj,), (glb,) = load_assets(tmp_path / "obj"), load_assets(tmp_path / "glb")
    t0 = time.perf_counter()
    a, b = (blender_render(None, LIGHT, 1, RES, samples=SPP, asset=x, workdir=tmp_path / "work") for x in (obj, glb))
    print(f"two Blender asset captures: {time.perf_counter() - t0:.1f} s")
    builtin = render_capture(None, LIGHT, 1, RES, asset=obj)
    assert b.meta["mesh"]["obj"] == "scan.glb" and b.meta["mesh"]["specular_kind"] == "roughness"
    for x in (a, b):
        assert x.meta["camera_params"]["frame"]["half_height"] == pytest.approx(builtin.meta["camera_params"]["frame"]["half_height"])
        assert torch.allclose(x.camera.extrinsics(), builtin.camera.extrinsics(), atol=1e-5)
    _report("GLB asset vs OBJ asset (both Blender), geometry", agree_geometry(a, b))
    _report("GLB asset vs OBJ asset (both Blender), radiance", agree_radiance(a, b))
    silhouette = int(((b.maps["mask"][0] > 0) ^ (builtin.maps["mask"][0] > 0)).sum())
    assert silhouette <= 0.01 * (builtin.maps["mask"][0] > 0).sum(), silhouette
    _report(f"GLB asset (Blender) vs OBJ asset (built-in): mask_xor {silhouette}, radiance", agree_radiance(builtin, b))


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
