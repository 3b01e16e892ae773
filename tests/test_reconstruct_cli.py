import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from experiments.reconstruct import main
from uhrtex.common import io as uio

pytestmark = [pytest.mark.filterwarnings("ignore:.*pure-torch"), pytest.mark.usefixtures("one_torch_thread")]
ROOT = Path(__file__).resolve().parents[1]
FAST = ["--uv-size", "128", "--preview-size", "64"]


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A built-in capture at the tiny preset's 256²: portrait, its camera, the subject's OBJ."""
    from uhrtex.captures.heads.export import export_asset
    from uhrtex.captures.render import render_capture

    d = tmp_path_factory.mktemp("scene")
    cap = render_capture(5, "sky1_r000", 1, 256, texture_resolution=64)
    uio.write_png(d / "portrait.png", cap.maps["image"])
    (d / "cam.json").write_text(json.dumps(cap.meta["camera"]))
    paths = export_asset(5, 64, d / "asset", face_only=True)  # the face tile: the mesh of the unified layout
    return {"dir": d, "portrait": d / "portrait.png", "camera": d / "cam.json", "mesh": paths["obj"], "capture": cap}


def _run(args, capsys):
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def _read_png_raw(path):
    import cv2

    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def _no_leftovers(out: Path):
    assert not out.exists(), "no partial output on failure"
    assert not [p for p in out.parent.iterdir() if ".partial-" in p.name], "staging folder left behind"


@pytest.mark.parametrize("method", ["splat", "direct", "optimize"])
def test_end_to_end(scene, recon_ckpts, tmp_path, capsys, method):
    out = tmp_path / "out"
    mesh = [] if method == "splat" else ["--mesh", scene["mesh"], "--camera", scene["camera"]]
    extra = ["--cascade-top", "128"] if method == "optimize" else []
    code, err = _run([scene["portrait"], "--ckpt", recon_ckpts, "--out", out, "--unwrap", method, *mesh, *FAST, *extra],
                     capsys)
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    expected = {"albedo.png", "micronormal.png", "specular.png", "mask.png", "uv_albedo.png", "uv_micronormal.png",
                "uv_specular.png", "uv_coverage.png", "head.glb", "preview.png", "report.png", "manifest.json"}
    assert set(manifest["files"]) == expected and {p.name for p in out.iterdir()} == expected
    assert manifest["unwrap"]["method"] == method and manifest["sizes"]["input_size"] == 256
    assert manifest["unwrap"]["template"] == "head"  # splat and the procedural head mesh share the unified layout
    # Image-space maps at the input size; albedo 8-bit sRGB, micronormal/specular 16-bit.
    alb, mic, spec = (_read_png_raw(out / f) for f in ("albedo.png", "micronormal.png", "specular.png"))
    assert alb.shape == (256, 256, 3) and alb.dtype == np.uint8
    assert mic.shape == (256, 256, 3) and mic.dtype == np.uint16 and spec.shape == (256, 256) and spec.dtype == np.uint16
    uv = uio.read_image(out / "uv_albedo.png")
    assert uv.shape == (3, 128, 128) and 0 <= float(uv.min()) and float(uv.max()) <= 1
    cov = uio.read_image(out / "uv_coverage.png")
    assert 0 < float(cov.mean()) < 1 or method == "splat"
    prev = uio.read_image(out / "preview.png")
    assert prev.shape == (3, 64, 128) and float(prev.std()) > 0.01
    _check_glb(out / "head.glb")


def _check_glb(path):
    import pygltflib
    import trimesh

    g = pygltflib.GLTF2.load(str(path))
    mat = g.materials[0]
    assert mat.pbrMetallicRoughness.baseColorTexture.index == 0 and mat.normalTexture.index == 1
    assert mat.pbrMetallicRoughness.metallicRoughnessTexture.index == 2
    assert mat.extensions["KHR_materials_specular"]["specularColorFactor"] == [2.0, 2.0, 2.0]
    assert len(g.images) == 4 and "KHR_materials_specular" in g.extensionsUsed
    scene = trimesh.load(str(path))
    geom = next(iter(scene.geometry.values()))
    assert len(geom.faces) > 1000 and geom.visual.uv is not None
    m = geom.visual.material
    assert m.baseColorTexture.size == (128, 128) and m.normalTexture is not None
    rough = np.asarray(m.metallicRoughnessTexture)
    assert rough[..., 2].max() == 0 and 0.15 * 255 - 1 <= rough[..., 1].min() and rough[..., 1].max() <= 0.9 * 255 + 1


@pytest.fixture(scope="module")
def astronaut_png(tmp_path_factory):
    skimage_data = pytest.importorskip("skimage.data")
    photo = tmp_path_factory.mktemp("photo") / "astronaut.png"
    uio.write_png(photo, torch.from_numpy(skimage_data.astronaut()).permute(2, 0, 1) / 255.0)
    return photo


def test_real_portrait_lands_on_the_face(astronaut_png, recon_ckpts, tmp_path, capsys):
    """skimage's astronaut: face found and cropped, maps masked to it, the landmark mesh places it in UV space."""
    out = tmp_path / "out"
    code, err = _run([astronaut_png, "--ckpt", recon_ckpts, "--out", out, *FAST], capsys)
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    face = manifest["face"]
    assert face["found"] and face["n_landmarks"] == 468 and face["n_faces"] == 1 and face["upscale"] > 1
    x, y, w, h = face["box"]  # the astronaut's face, in the 512² photo
    assert 170 < x + w / 2 < 270 and 90 < y + h / 2 < 160 and 70 < w < 130
    assert manifest["unwrap"]["geometry"] == "landmarks" and manifest["unwrap"]["face_uv_coverage"] >= 0.5
    mask = uio.read_image(out / "mask.png")[0] > 0.5
    assert 0.1 < float(mask.float().mean()) < 0.5  # the face, not the frame
    albedo = uio.read_image(out / "albedo.png")
    assert float(albedo[:, ~mask].abs().max()) == 0 and float(albedo[:, mask].mean()) > 0.1
    report = uio.read_image(out / "report.png")
    side = report.shape[-2] - 18  # panels under an 18-px title row
    assert report.shape[-1] == 7 * side and float(report.std()) > 0.05  # input, 3 maps, UV albedo, UV photo, preview
    uv_photo = report[:, 18:, 5 * side:6 * side]
    assert 0.15 < float((uv_photo.amax(0) > 0.05).float().mean()) < 0.6  # the photo fills the face region, not all


def test_an_8_bit_decoded_portrait_is_read_as_its_float_twin(astronaut_png, recon_ckpts, tmp_path):
    """`run(args, image=...)` with uint8 samples (the Reconstructor takes them too): the face front end sees the
    same picture as with the float decode (it found no face on raw 0-255 values before)."""
    from experiments.reconstruct import build_parser, run

    codes = torch.from_numpy(pytest.importorskip("skimage.data").astronaut()).permute(2, 0, 1).contiguous()
    faces = []
    for name, image in (("u8", codes), ("float", uio.read_image(astronaut_png))):
        args = build_parser().parse_args([str(astronaut_png), "--ckpt", str(recon_ckpts), "--out",
                                          str(tmp_path / name), "--unwrap", "none"])
        faces.append(run(args, image=image)["face"])
    assert faces[0]["found"] and faces[0]["box"] == faces[1]["box"]


def test_exr_no_crop_and_rewrite(astronaut_png, recon_ckpts, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "albedo.png").write_bytes(b"old")  # an existing output folder gets its files replaced
    code, err = _run([astronaut_png, "--ckpt", recon_ckpts, "--out", out, "--no-crop", "--exr", "--unwrap", "none"], capsys)
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["face"] == {"found": False} and manifest["input"]["source_hw"] == [512, 512]
    assert manifest["input"]["height"] == 512 and manifest["unwrap"] is None
    albedo = uio.read_image(out / "albedo.exr")
    assert albedo.shape == (3, 512, 512) and torch.isfinite(albedo).all()
    assert uio.read_image(out / "albedo.png").shape == (3, 512, 512)


def test_rgba_16_bit_and_grayscale_portraits(scene, recon_ckpts, tmp_path, capsys):
    img = scene["capture"].maps["image"]
    uio.write_png(tmp_path / "rgba.png", torch.cat([img, torch.ones_like(img[:1])]))
    uio.write_png(tmp_path / "deep.png", img, bits=16)
    gray = img.mean(0, keepdim=True)
    uio.write_png(tmp_path / "gray.png", gray)
    uio.write_png(tmp_path / "gray3.png", gray.expand(3, -1, -1))
    fast = ["--ckpt", recon_ckpts, "--unwrap", "none", "--precision", "fp32", "--no-crop"]
    with pytest.warns(UserWarning, match="alpha"):
        code, err = _run([tmp_path / "rgba.png", *fast, "--out", tmp_path / "a"], capsys)
    assert code == 0, err
    code, err = _run([tmp_path / "deep.png", *fast, "--out", tmp_path / "b"], capsys)
    assert code == 0, err
    a, b = (uio.read_image(tmp_path / d / "albedo.png") for d in "ab")
    # 16-bit is scaled to [0, 1], not read as 0..65535 (which would saturate every pixel). The landmarks of the uv
    # prior are found on each decoded image: the 16-bit one moves them by ~0.02 px, which flips the odd pixel on the
    # prior's edge, so the bound is on the bulk of the pixels, not the maximum.
    diff = (a - b).abs().amax(0).flatten()
    assert float(diff.mean()) < 1 / 255 and float(diff.quantile(0.99)) < 3 / 255
    # grayscale: converted to RGB with a warning, and reconstructed as the same photo saved as RGB would be
    with pytest.warns(UserWarning, match="grayscale"):
        code, err = _run([tmp_path / "gray.png", *fast, "--out", tmp_path / "g"], capsys)
    assert code == 0, err
    code, err = _run([tmp_path / "gray3.png", *fast, "--out", tmp_path / "g3"], capsys)
    assert code == 0, err
    g, g3 = (uio.read_image(tmp_path / d / "albedo.png") for d in ("g", "g3"))
    assert torch.equal(g, g3)


def _bad_inputs(scene, tmp_path, recon_ckpts):
    """name -> (argv, expected message part)."""
    good = scene["portrait"].read_bytes()
    (tmp_path / "corrupt.png").write_bytes(os.urandom(2000))
    (tmp_path / "truncated.png").write_bytes(good[: len(good) // 2])
    uio.write_png(tmp_path / "small.png", scene["capture"].maps["image"][:, ::4, ::4])
    uio.write_png(tmp_path / "wall.png", torch.full((3, 256, 256), 0.6))
    nan = torch.rand(3, 256, 256)
    nan[1, 10, 10] = float("nan")
    import OpenEXR

    OpenEXR.File({"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage},
                 {c: nan[i].numpy().astype(np.float32) for i, c in enumerate("RGB")}).write(str(tmp_path / "nan.exr"))
    (tmp_path / "nouv.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    cam = json.loads(scene["camera"].read_text())
    cam["world_to_camera"] = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, -50], [0, 0, 0, 1]]  # mesh 50 units behind
    (tmp_path / "away.json").write_text(json.dumps(cam))
    partial = tmp_path / "partial_ckpts"
    partial.mkdir()
    for stage in ("uv_normal", "gde"):
        (partial / f"{stage}.ckpt").write_bytes((recon_ckpts / f"{stage}.ckpt").read_bytes())
    p, m, c = scene["portrait"], scene["mesh"], scene["camera"]
    return {
        "missing": ([tmp_path / "nope.png"], "does not exist"),
        "corrupt": ([tmp_path / "corrupt.png"], "corrupt or truncated"),
        "truncated": ([tmp_path / "truncated.png"], "corrupt or truncated"),
        "too_small": ([tmp_path / "small.png", "--no-crop"], "too small"),
        "nan_exr": ([tmp_path / "nan.exr"], "NaN"),
        "mesh_without_uvs": ([p, "--mesh", tmp_path / "nouv.obj", "--camera", c], "texture coordinate"),
        "camera_mismatch": ([p, "--mesh", m, "--camera", tmp_path / "away.json"], "does not match the mesh"),
        "missing_stage": ([p, "--ckpt", partial], "missing stage(s) hfdr"),
        "mesh_method_without_mesh": ([p, "--unwrap", "direct", "--geometry", "predictor"], "needs a mesh"),
        "no_face": ([tmp_path / "wall.png"], "no face found; pass --no-crop"),
    }


BAD = ["missing", "corrupt", "truncated", "too_small", "nan_exr", "mesh_without_uvs", "camera_mismatch",
       "missing_stage", "mesh_method_without_mesh", "no_face"]


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line_and_leaves_nothing(scene, recon_ckpts, tmp_path, capsys, case):
    argv, match = _bad_inputs(scene, tmp_path, recon_ckpts)[case]
    out = tmp_path / "out"
    if "--ckpt" not in argv:
        argv = [*argv, "--ckpt", recon_ckpts]
    code, err = _run([*argv, "--out", out, *FAST], capsys)
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and match in lines[0], err
    _no_leftovers(out)


def test_crash_mid_write_leaves_no_partial_output(scene, recon_ckpts, tmp_path, monkeypatch, capsys):
    import uhrtex.export.preview

    def boom(*a, **k):
        raise RuntimeError("simulated crash while rendering the preview")

    monkeypatch.setattr(uhrtex.export.preview, "render_preview", boom)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="simulated crash"):
        main([str(scene["portrait"]), "--ckpt", str(recon_ckpts), "--out", str(out), *FAST])
    _no_leftovers(out)


@pytest.mark.slow
def test_glb_imports_in_blender(scene, recon_ckpts, tmp_path, capsys):
    """Blender's own glTF importer reads the material (needs `make blender-venv`)."""
    py = ROOT / ".venv-blender" / "bin" / "python"
    if not py.exists():
        pytest.skip("no .venv-blender (make blender-venv)")
    out = tmp_path / "out"
    code, err = _run([scene["portrait"], "--ckpt", recon_ckpts, "--out", out, *FAST], capsys)
    assert code == 0, err
    script = (
        "import bpy, sys\n"
        "bpy.ops.wm.read_factory_settings(use_empty=True)\n"
        f"bpy.ops.import_scene.gltf(filepath={str(out / 'head.glb')!r})\n"
        "mats = [m for m in bpy.data.materials if m.use_nodes]\n"
        "nodes = {n.bl_idname for n in mats[0].node_tree.nodes}\n"
        "print('MESHES', len([o for o in bpy.data.objects if o.type == 'MESH']), 'IMAGES', len(bpy.data.images),"
        " 'NORMALMAP', 'ShaderNodeNormalMap' in nodes, 'BSDF', 'ShaderNodeBsdfPrincipled' in nodes)\n"
    )
    res = subprocess.run([str(py), "-c", script], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("MESHES"))
    assert line.split()[1] == "1" and int(line.split()[3]) >= 3 and "NORMALMAP True" in line and "BSDF True" in line


def test_cropped_camera_follows_the_crop(scene):
    from uhrtex.pipeline.portrait import cropped_camera
    from uhrtex.unwrap.mesh import load_camera, load_obj

    cam, mesh = load_camera(scene["camera"]), load_obj(scene["mesh"])
    crop = (40, 30, 160)  # x0, y0, side in the 256² portrait, resized to 320²
    c2 = cropped_camera(cam, (256, 256), crop, 320)
    p, q = cam.project(mesh.verts), c2.project(mesh.verts)
    s = 320 / 160
    assert torch.allclose(q[:, 0], (p[:, 0] - 40) * s, atol=1e-6) and torch.allclose(q[:, 1], (p[:, 1] - 30) * s, atol=1e-6)
    assert (c2.width, c2.height) == (320, 320)
