"""Your own scans (issue 13): asset folders -> validated Assets -> built-in renders -> a (sharded) capture store.

Three procedural heads exported as asset folders (OBJ + 16-bit PNG maps + asset.json) render through the asset
path exactly like the procedural path; every validation problem is a one-line error that writes nothing; two
processes rendering disjoint shards of one store concurrently leave every capture complete and readable.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import open_dict

from uhrtex.captures.assets import load_assets
from uhrtex.captures.heads.export import export_asset
from uhrtex.render.mesh import read_obj, write_obj
from uhrtex.captures.render import render_capture, reshade
from uhrtex.captures.store import CaptureStore
from uhrtex.common.io import read_image, write_png

pytestmark = pytest.mark.filterwarnings("ignore:raster. using the pure-torch backend")
REPO = Path(__file__).resolve().parents[1]
TEX, RES, LIGHT = 64, 64, "sky1_r030"  # small maps: every render here is 64²
SEEDS = (0, 1, 2)
# The Blender-vs-builtin tolerances of docs/heads_and_rendering.md (mask identical, uv <= 1.3e-3, normal <= 8.3e-3),
GEOMETRY_TOL = {"uv": 1.3e-3, "normal": 8.3e-3}
# and the rest: here the only differences are 16-bit PNG maps (half a step: 7.6e-6) and OBJ text (6-7 decimals),
# so every map (image included) must agree far tighter than against Blender.
TIGHT_TOL = {"albedo": 1e-4, "micronormal": 1e-4, "specular": 1e-4, "uv": 1e-4, "normal": 1e-4, "image": 1e-3}


@pytest.fixture(scope="module")
def asset_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("assets")
    for s in SEEDS:
        export_asset(s, TEX, root / f"head{s}", face_only=True)  # the face tile: a scan in the unified layout
    return root


def _copy(asset_dir: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "assets"
    shutil.copytree(asset_dir, dst)
    return dst


def _compare(proc, ours, edge_pixels: int = 0) -> dict[str, float]:
    """Max errors over the pixels both cover; the masks may differ in at most `edge_pixels` pixels."""
    a, b = proc.maps["mask"][0] > 0, ours.maps["mask"][0] > 0
    assert int((a ^ b).sum()) <= edge_pixels, (int((a ^ b).sum()), int(a.sum()))
    m = a & b
    err = {k: float((proc.maps[k][:, m] - ours.maps[k][:, m]).abs().max()) for k in TIGHT_TOL}
    err["mask_pixels_differing"] = float((a ^ b).sum())
    for k, tol in {**TIGHT_TOL, **GEOMETRY_TOL}.items():
        assert err[k] <= tol, (k, err[k], tol)
    return err


def test_asset_path_matches_procedural_path(asset_dir, one_torch_thread):
    assets = load_assets(asset_dir)
    assert [a.subject_id for a in assets] == [f"head{s:04d}" for s in SEEDS]
    assert {a.uv_layout for a in assets} == {"ict-facekit-face-v1"} and len({a.uv_fingerprint for a in assets}) == 1
    for seed, asset in zip(SEEDS, assets):
        proc = render_capture(seed, LIGHT, 0, RES, texture_resolution=TEX)
        ours = render_capture(None, LIGHT, 0, RES, asset=asset, camera=proc.camera)  # the procedural head's camera
        assert ours.meta["mesh"]["kind"] == "asset" and ours.meta["subject"] == proc.meta["subject"]
        assert (reshade(ours) - ours.maps["image"]).abs().max() < 1e-5  # the folder in meta suffices to re-shade
        print(f"seed {seed}: max |asset - procedural| " + ", ".join(f"{k} {v:.2e}" for k, v in _compare(proc, ours).items()))


def test_conversions_directx_roughness_scale_and_axes(asset_dir, tmp_path, one_torch_thread):
    """The same head stored the other way round (DirectX normals, roughness, metres, z up, face -y) renders the same."""
    src = asset_dir / "head1"
    dst = tmp_path / "assets" / "head1"
    dst.mkdir(parents=True)
    mn = read_image(src / "micronormal.png")
    write_png(dst / "micronormal.png", torch.cat([mn[:1], 1 - mn[1:2], mn[2:]]), bits=16)
    write_png(dst / "specular.png", 1 - read_image(src / "specular.png", channels=1), bits=16)
    shutil.copy(src / "albedo.png", dst / "albedo.png")
    m = read_obj(src / "head0001.obj")
    rot = torch.tensor([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])  # uhrtex (y up, +z face) -> z up, face towards -y
    m.verts, m.normals = (m.verts @ rot.T) / 10, m.normals @ rot.T
    write_obj(m, dst / "head.obj")
    (dst / "asset.json").write_text(json.dumps({"subject": "scan01", "scale": 10, "up": "+z", "forward": "-y",
                                                "normal_convention": "directx", "specular_kind": "roughness"}))
    (asset,) = load_assets(dst.parent)
    proc = render_capture(1, LIGHT, 0, RES, texture_resolution=TEX)
    ours = render_capture(None, LIGHT, 0, RES, asset=asset, camera=proc.camera)
    assert ours.meta["subject"] == "scan01"
    # The OBJ holds positions in metres to 6 decimals (1e-5 uhrtex units): a silhouette pixel may flip.
    print("converted asset: " + ", ".join(f"{k} {v:.2e}" for k, v in _compare(proc, ours, edge_pixels=4).items()))


def test_auto_framing_ignores_units_and_position(asset_dir, tmp_path, one_torch_thread):
    """Assets are framed on their own head: the same head x10 and moved far away renders the same (image and mask)."""
    src = asset_dir / "head0"
    dst = tmp_path / "assets" / "head0"
    shutil.copytree(src, dst)
    m = read_obj(src / "head0000.obj")
    m.verts = m.verts * 10 + torch.tensor([30.0, -70.0, 50.0])
    write_obj(m, dst / "head0000.obj")
    (big,) = load_assets(dst.parent)
    (orig,) = [a for a in load_assets(asset_dir) if a.name == "head0"]
    for cam in (0, 1, 2):
        a, b = (render_capture(None, LIGHT, cam, RES, asset=x) for x in (orig, big))
        assert b.meta["camera_params"]["frame"]["half_height"] == pytest.approx(10 * a.meta["camera_params"]["frame"]["half_height"])
        err = _compare(a, b, edge_pixels=1)
        assert (reshade(b) - b.maps["image"]).abs().max() < 1e-5
        print(f"camera {cam}: max |x10 moved - original| " + ", ".join(f"{k} {v:.2e}" for k, v in err.items()))


def _write_glb(obj: Path, glb: Path, uvs: bool = True, transform=None) -> None:
    import trimesh

    m = read_obj(obj)
    visual = trimesh.visual.TextureVisuals(uv=m.uv.numpy()) if uvs else None
    mesh = trimesh.Trimesh(m.verts.numpy(), m.tri.numpy(), vertex_normals=m.normals.numpy(), visual=visual, process=False)
    if transform is not None:  # a scene node that places the mesh
        mesh = trimesh.Scene()
        mesh.add_geometry(trimesh.Trimesh(m.verts.numpy(), m.tri.numpy(), vertex_normals=m.normals.numpy(), visual=visual,
                                          process=False), transform=transform)
    mesh.export(glb, include_normals=True)


def test_glb_mesh_renders_like_the_obj(asset_dir, tmp_path, one_torch_thread):
    """The same head as GLB (trimesh's export) has the OBJ's UV fingerprint and renders the same."""
    dst = tmp_path / "assets" / "head2"
    shutil.copytree(asset_dir / "head2", dst)
    _write_glb(dst / "head0002.obj", dst / "head.glb")
    (dst / "head0002.obj").unlink()
    (glb,) = load_assets(dst.parent)
    (obj,) = [a for a in load_assets(asset_dir) if a.name == "head2"]
    assert glb.obj.name == "head.glb" and glb.uv_fingerprint == obj.uv_fingerprint
    ref = render_capture(None, LIGHT, 1, RES, asset=obj)
    print("GLB vs OBJ: " + ", ".join(f"{k} {v:.2e}" for k, v in _compare(ref, render_capture(None, LIGHT, 1, RES, asset=glb)).items()))
    T = np.diag([10.0, 10.0, 10.0, 1.0])  # a node scaling x10 and moving the head: auto framing follows it
    T[:3, 3] = [30.0, -70.0, 50.0]
    _write_glb(asset_dir / "head2" / "head0002.obj", dst / "head.glb", transform=T)
    (moved,) = load_assets(dst.parent)
    err = _compare(ref, render_capture(None, LIGHT, 1, RES, asset=moved), edge_pixels=1)
    print("GLB node x10 + moved vs OBJ: " + ", ".join(f"{k} {v:.2e}" for k, v in err.items()))


def test_head_frame_ignores_shoulders():
    """The framing measures the skull: a block of shoulders and chest below the neck does not move it."""
    from uhrtex.render.framing import head_frame
    from uhrtex.captures.heads import head_asset

    v = head_asset(0, 16).mesh.verts
    chest = torch.rand(5000, 3, generator=torch.Generator().manual_seed(0)) * torch.tensor([5.0, 1.0, 1.6]) - torch.tensor([2.5, 3.1, 0.8])
    assert head_frame(torch.cat([v, chest])) == head_frame(v)
    assert 1.7 < head_frame(v).head_width < 2.2  # about 19.5 cm across the skull and the ears


# ------------------------------------------------------------------------------------------ validation


def _no_uvs(d: Path) -> None:
    obj = d / "head0000.obj"
    lines = [ln for ln in obj.read_text().splitlines() if not ln.startswith("vt ")]
    lines = [" ".join(["f"] + [f"{t.split('/')[0]}//{t.split('/')[2]}" for t in ln.split()[1:]]) if ln.startswith("f ") else ln
             for ln in lines]
    obj.write_text("\n".join(lines) + "\n")


def _nan_exr(d: Path) -> None:
    import OpenEXR

    (d / "micronormal.png").unlink()
    px = np.zeros((TEX, TEX), np.float32)
    px[3, 5] = np.nan
    chans = {c: (px if c == "G" else np.full((TEX, TEX), 1.0 if c == "B" else 0.0, np.float32)) for c in "RGB"}
    OpenEXR.File({"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}, chans).write(str(d / "micronormal.exr"))


def _layout_name(d: Path) -> None:
    meta = json.loads((d / "asset.json").read_text())
    (d / "asset.json").write_text(json.dumps({**meta, "uv_layout": "someone-elses-layout"}))


def _layout_fingerprint(d: Path) -> None:
    for other in d.parent.iterdir():  # no layout names anywhere: compared by UV fingerprint
        meta = json.loads((other / "asset.json").read_text())
        (other / "asset.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "uv_layout"}))
    obj = d / "head0000.obj"
    obj.write_text("".join(f"vt {float(ln.split()[1]) * 0.5:.7f} {ln.split()[2]}\n" if ln.startswith("vt ") else ln + "\n"
                           for ln in obj.read_text().splitlines()))


def _same_subject(d: Path) -> None:
    meta = json.loads((d / "asset.json").read_text())
    (d / "asset.json").write_text(json.dumps({**meta, "subject": "head0001"}))


BROKEN = {  # fault -> (break head0's folder, words the message must contain)
    "no_uvs": (_no_uvs, ["head0", "no UVs", "re-export"]),
    "missing_map": (lambda d: (d / "specular.png").unlink(), ["head0", "missing specular map", "add specular.png"]),
    "unreadable_map": (lambda d: (d / "albedo.png").write_bytes(b"\x89PNG\r\n not really"), ["head0", "albedo map unreadable"]),
    "non_square": (lambda d: write_png(d / "specular.png", torch.rand(1, TEX, TEX // 2)), ["head0", "not square", "resample"]),
    "sizes_differ": (lambda d: write_png(d / "albedo.png", torch.rand(3, TEX // 2, TEX // 2)), ["head0", "differ in size", "resample"]),
    "nan_exr": (_nan_exr, ["head0", "micronormal", "NaN"]),
    "layout_name": (_layout_name, ["head1", "UV layout", "by layout name", "same unified UV layout"]),
    "layout_fingerprint": (_layout_fingerprint, ["head1", "UV layout", "by UV fingerprint"]),
    "same_subject": (_same_subject, ["head1", "subject id", "asset.json"]),
    "glb_no_uvs": (lambda d: (_write_glb(d / "head0000.obj", d / "head.glb", uvs=False), (d / "head0000.obj").unlink()),
                   ["head0", "head.glb has no UVs", "TEXCOORD_0"]),
    "two_meshes": (lambda d: _write_glb(d / "head0000.obj", d / "head.glb"), ["head0", "2 meshes", "exactly one mesh"]),
    "bad_convention": (lambda d: (d / "asset.json").write_text('{"normal_convention": "DX"}'), ["head0", "normal_convention", "directx"]),
}


@pytest.fixture(scope="module")
def captures_cfg(tmp_path_factory):
    from tests.helpers.hydra_run import CPU_OVERRIDES, compose

    root = tmp_path_factory.mktemp("run")
    cfg = compose(["+exp=make_captures", "preset=cpu", *CPU_OVERRIDES, f"captures.resolution={RES}", "captures.lightings=1",
                   "captures.global_sizes=[16]", "captures.progress=false", f"data.store={root / 'store'}"], root)
    return cfg


@pytest.mark.parametrize("fault", list(BROKEN))
def test_validation_error_is_one_line_and_writes_nothing(fault, asset_dir, tmp_path, captures_cfg, one_torch_thread):
    from experiments.make_captures import make_captures

    assets = _copy(asset_dir, tmp_path)
    breaker, words = BROKEN[fault]
    breaker(assets / "head0")
    store = tmp_path / "store"
    with open_dict(captures_cfg):
        captures_cfg.captures.assets, captures_cfg.captures.store = str(assets), str(store)
    with pytest.raises(ValueError) as e:
        make_captures(captures_cfg)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("asset head"), msg
    assert all(w in msg for w in words), (words, msg)
    assert not store.exists()  # validated before the store is even opened


def test_bad_shard_is_one_line(asset_dir, tmp_path, captures_cfg):
    from experiments.make_captures import make_captures

    for bad in ("2/2", "x", "1/0", "-1/3", "1/2/3"):
        with open_dict(captures_cfg):
            captures_cfg.captures.assets, captures_cfg.captures.store = str(asset_dir), str(tmp_path / "store")
            captures_cfg.captures.shard = bad
        with pytest.raises(ValueError, match=r"^captures.shard=.* is not 'i/n'") as e:
            make_captures(captures_cfg)
        assert "\n" not in str(e.value) and not (tmp_path / "store").exists()
    with open_dict(captures_cfg):
        captures_cfg.captures.shard = None


# ------------------------------------------------------------------------------------------ sharding


def test_two_processes_write_disjoint_shards_of_one_store(asset_dir, tmp_path, captures_cfg):
    """The documented command, twice at once (shards 0/2 and 1/2); then a resumed run renders nothing."""
    store = tmp_path / "store"
    env = {**os.environ, "UHRTEX_ROOT": str(tmp_path), "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    args = [sys.executable, "-m", "experiments.run", "+exp=make_captures", "preset=cpu", f"captures.assets={asset_dir}",
            "captures.renderer=builtin", f"captures.resolution={RES}", "captures.lightings=2", "captures.cameras=2",
            "captures.global_sizes=[16]", "captures.progress=false", f"data.store={store}", "trainer.accelerator=cpu", "logger=csv"]
    procs = [subprocess.Popen([*args, f"captures.shard={i}/2"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for i in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][-2000:] + outs[1][-2000:]
    assert all(": 6 rendered, 0 already there" in out for out in outs), outs  # 3 heads x 2 lightings x 2 cameras / 2
    s = CaptureStore(store)
    want = sorted(f"head{h:04d}__l{k:02d}__c{c:02d}" for h in SEEDS for k in range(2) for c in range(2))
    assert s.keys() == want and s.partials() == []
    for key in want:
        maps = s.read(key)
        assert maps["mask"].sum() > 100 and set(maps) == {"image", "albedo", "micronormal", "specular", "uv", "normal", "mask"}
        assert s.read_global(key, 16)["image"].shape == (3, 16, 16) and s.meta(key)["mesh"]["kind"] == "asset"
    from experiments.make_captures import make_captures

    with open_dict(captures_cfg):
        captures_cfg.captures.update(assets=str(asset_dir), store=str(store), lightings=2, cameras=2, shard="1/2")
    metrics = make_captures(captures_cfg)
    assert metrics["captures/written"] == 0 and metrics["captures/skipped"] == 6 and metrics["captures/total"] == 12


def test_shards_as_one_local_hydra_sweep(asset_dir, tmp_path):
    """docs/captures.md's sweep `'captures.shard=0/2,1/2'` (the SLURM example swaps in hydra/launcher=slurm)."""
    store = tmp_path / "store"
    env = {**os.environ, "UHRTEX_ROOT": str(tmp_path), "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    args = [sys.executable, "-m", "experiments.run", "-m", "+exp=make_captures", "preset=cpu", f"captures.assets={asset_dir}",
            "captures.renderer=builtin", f"captures.resolution={RES}", "captures.lightings=1", "captures.global_sizes=[16]",
            "captures.progress=false", f"data.store={store}", "captures.shard=0/2,1/2", "trainer.accelerator=cpu", "logger=csv"]
    proc = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert ": 2 rendered, 0 already there" in out and ": 1 rendered, 0 already there" in out, out[-3000:]
    assert CaptureStore(store).keys() == [f"head{h:04d}__l00__c00" for h in SEEDS]


def test_obj_fast_reader_equals_the_per_line_reader(asset_dir, tmp_path, monkeypatch):
    """The numpy path (common OBJs) gives exactly the per-line reader's mesh; other files take the per-line path, and
    an index past the end of the file is a one-line MeshError."""
    from uhrtex.render import mesh as M

    obj = asset_dir / "head0" / "head0000.obj"
    assert M._parse_obj_fast(obj.read_text()) is not None  # the exporter's OBJs take the fast path
    fast = read_obj(obj)
    monkeypatch.setattr(M, "_parse_obj_fast", lambda text: None)
    slow = read_obj(obj)
    for k in ("verts", "uv", "tri", "normals", "tangents"):
        assert torch.equal(getattr(fast, k), getattr(slow, k)), k
    monkeypatch.undo()
    quad = "v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nvt 0 0\nvt 1 0\nvt 1 1\nvt 0 1\n"
    (tmp_path / "q.obj").write_text(quad + "f 1/1 2/2 3/3 4/4\n")  # a quad: the per-line path fans it
    assert M._parse_obj_fast((tmp_path / "q.obj").read_text()) is None and read_obj(tmp_path / "q.obj").tri.shape == (2, 3)
    (tmp_path / "bad.obj").write_text(quad + "f 1/1 2/2 9/3\n")
    with pytest.raises(M.MeshError, match="index outside the file"):
        read_obj(tmp_path / "bad.obj")
