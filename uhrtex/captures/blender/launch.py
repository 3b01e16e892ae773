"""Main-process side of the Blender path: write a job, run scene.py under Blender's Python, split its
multilayer EXR into the ingest folder layout (uhrtex/captures/ingest.py), read it back as a Capture.

    # a procedural head (same asset, camera and lighting ids as the built-in renderer)
    python -m uhrtex.captures.blender.launch --seed 3 --lighting studio_r090 --resolution 512 --samples 64 OUT
    # a user's scanned head (a folder of them: make_captures captures.assets=DIR captures.renderer=blender)
    python -m uhrtex.captures.blender.launch --obj head.obj --albedo a.png --normal n.png --specular s.png \\
        --lighting city_r000 --resolution 4096 --samples 1024 OUT [--store data/captures/4096]

Blender is found as `$UHRTEX_BLENDER` (a `blender` binary or a Python with bpy), else
`<repo>/.venv-blender/bin/python` (`make blender-venv`), else `blender` on PATH.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

from uhrtex.common import io as uio
from uhrtex.render.environments import load_environment
from uhrtex.captures.format import Camera
from uhrtex.captures.heads import head_asset
from uhrtex.head_model import UV_LAYOUT

SCENE = Path(__file__).with_name("scene.py")
REPO = Path(__file__).resolve().parents[3]
RENDER_FILE = "render.exr"
# multilayer EXR layer -> (ingest file, channels)
PASSES = {"Combined": ("image", "RGB"), "albedo": ("albedo", "RGB"), "micronormal": ("micronormal", "RGB"),
          "specular": ("specular", "X"), "uv": ("uv", "RG"), "normal": ("normal", "RGB"), "mask": ("mask", "X")}


class BlenderError(RuntimeError):
    """Blender missing, or a render that failed (one line: what and the fix)."""


def find_blender() -> list[str] | None:
    """The command prefix that runs a script with bpy, or None."""
    cands = [os.environ.get("UHRTEX_BLENDER"), str(REPO / ".venv-blender/bin/python"), shutil.which("blender")]
    for c in cands:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            if Path(c).name.startswith("blender"):
                return [c, "-b", "--factory-startup", "--python-exit-code", "3", "--python"]
            return [c]
    return None


def run_scene(job: dict, job_path: Path, timeout: float | None = None) -> Path:
    cmd = find_blender()
    if cmd is None:
        raise BlenderError("no Blender found: run `make blender-venv` (bpy 5.0.1 in .venv-blender) or set UHRTEX_BLENDER")
    job_path.write_text(json.dumps(job, indent=1))
    argv = cmd + [str(SCENE)] + (["--"] if len(cmd) > 1 else []) + ["--job", str(job_path)]
    env = {**os.environ, "PYTHONNOUSERSITE": "1"}
    env.pop("PYTHONPATH", None)  # our torch / numpy 2 must not leak into Blender's numpy<2 world
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    out = Path(job["output"])
    if proc.returncode != 0 or not out.is_file():
        err = [ln for ln in (proc.stderr + proc.stdout).splitlines() if "uhrtex-blender-error" in ln]
        tail = err[-1].split(": ", 1)[-1] if err else " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise BlenderError(f"Blender render failed (exit {proc.returncode}): {tail}")
    return out


def read_multilayer(exr: Path) -> dict:
    """Every channel of every part (Blender 5 writes one part per pass) -> {"<Layer>.<C>": H x W float32}."""
    try:
        chans = uio.read_exr_channels(exr, all_parts=True, check_finite=False)
    except uio.ImageError as e:
        raise BlenderError(f"Blender's EXR: {e}; re-render") from e
    return {".".join(k.split(".")[-2:]): v for k, v in chans.items()}


def split_passes(exr: Path, folder: Path) -> None:
    """render.exr (multilayer) -> image/albedo/micronormal/specular/uv/normal/mask .exr in `folder`."""
    import numpy as np

    ch = read_multilayer(exr)
    for layer, (name, comps) in PASSES.items():
        missing = [f"{layer}.{c}" for c in comps if f"{layer}.{c}" not in ch]
        if missing:
            raise BlenderError(f"{exr}: no channels {missing} (has {sorted(ch)[:12]}); was scene.py's AOV setup changed?")
        arr = np.stack([ch[f"{layer}.{c}"] for c in comps])
        uio.write_exr(folder / f"{name}.exr", torch.from_numpy(np.nan_to_num(arr)), half=False)


def render_folder(folder: str | Path, *, obj, albedo=None, normal=None, specular=None, lighting: str, camera: Camera,
                  samples: int = 64, materials: dict | None = None,
                  seed: int = 0, threads: int | None = None, meta: dict | None = None, denoise: bool = False,
                  max_bounces: int = 6, timeout: float | None = None, keep_exr: bool = False, env_source: str | None = None,
                  mesh_to_world=None, clip: tuple[float, float] | None = None) -> Path:
    """Render one capture folder in the ingest layout (+ meta.json). Any OBJ/glTF/GLB with UVs and three maps works;
    `materials` ({name: {albedo, normal, specular, gt, subsurface}}): one set per material group instead (the ICT heads).

    `env_source`: the file of a user lighting `env-<name>_r<deg>` (`uhrtex.render.envdir`); Cycles reads it as is.
    `mesh_to_world`: 3 x 3 from the file's axes and units to uhrtex world (an asset's scale and axes); `clip`: near, far."""
    from uhrtex.render.environments import ROUGHNESS

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    read_obj_check(obj)
    env = load_environment(lighting, source=env_source)
    if env.source == "procedural":  # Cycles reads the very map the built-in renderer uses
        env_path = folder / f"_env_{env.id}.exr"
        uio.write_exr(env_path, env.radiance, half=False)
    else:
        env_path = Path(env.source)
    resolve = lambda p: str(Path(p).resolve())  # noqa: E731
    job = {"obj": resolve(obj), "camera": camera.to_dict(), "samples": int(samples), "seed": int(seed),
           "threads": threads, "roughness": ROUGHNESS, "ior": 1.5, "max_bounces": int(max_bounces), "denoise": bool(denoise),
           "environment": {"image": str(env_path.resolve()), "rotation_deg": env.rotation_deg, "strength": env.exposure},
           "output": str((folder / RENDER_FILE).resolve())}
    if materials:
        job["materials"] = {m: {**{k: resolve(d[k]) for k in ("albedo", "normal", "specular")}, "gt": bool(d["gt"]),
                                "subsurface": float(d.get("subsurface", 0.0)),
                                "uv_offset": [float(x) for x in d.get("uv_offset", (0.0, 0.0))]} for m, d in materials.items()}
    else:
        job.update(albedo=resolve(albedo), normal=resolve(normal), specular=resolve(specular))
    if mesh_to_world is not None:
        job["mesh_to_world"] = [[float(x) for x in row] for row in mesh_to_world]
    if clip is not None:
        job["clip"] = [float(x) for x in clip]
    t0 = time.perf_counter()
    exr = run_scene(job, folder / "_job.json", timeout)
    seconds = time.perf_counter() - t0
    split_passes(exr, folder)
    full_meta = {"subject": re.sub(r"[^A-Za-z0-9.\-]+", "-", Path(obj).stem).strip("-.") or "head", "lighting": env.id, "camera": camera.to_dict(),
                 "mesh": {"obj": str(obj), **({"materials": job["materials"]} if materials else
                                              {"albedo": str(albedo), "normal": str(normal), "specular": str(specular)})},
                 **(meta or {}), "renderer": "blender", "resolution": int(camera.height), "environment": env.meta(),
                 "blender": {"samples": int(samples), "seed": int(seed), "seconds": round(seconds, 2), "denoise": bool(denoise),
                             "roughness": ROUGHNESS, "ior": 1.5, "max_bounces": int(max_bounces)}}
    uio.write_bytes_atomic(folder / "meta.json", json.dumps(full_meta, indent=1).encode())
    for p in [folder / "_job.json", env_path if env.source == "procedural" else None] + ([] if keep_exr else [exr]):
        if p is not None and p.exists():
            p.unlink()
    return folder


def read_obj_check(obj) -> None:
    """Fail fast, in one line, on a mesh Blender would render without UVs."""
    from uhrtex.captures.assets import read_mesh

    read_mesh(Path(obj))  # raises MeshError: missing file / no faces / no UVs


def export_cached(seed: int, texture_resolution: int, root: Path) -> dict[str, Path]:
    """Export the procedural head once per (seed, resolution) under root; reuse it afterwards."""
    from uhrtex.captures.heads.export import export_asset

    d = root / f"head{seed:04d}_{texture_resolution}"
    meta = d / "asset.json"
    if meta.is_file():
        info = json.loads(meta.read_text())
        if info.get("uv_layout") == UV_LAYOUT:
            return {k: d / v for k, v in info["files"].items()} | {"meta": meta}
    return export_asset(seed, texture_resolution, d)


SKIN_SUBSURFACE = 0.2  # Principled subsurface weight of the skin materials (the eyes, teeth and mouth have none)


def head_materials(files: dict[str, Path]) -> dict[str, dict]:
    """An exported ICT head's per-material maps as `render_folder(materials=...)` wants them."""
    from uhrtex.captures.heads.layout import TILE_OFFSETS
    from uhrtex.head_model import FACE_MATERIAL, RENDER_MATERIALS

    return {m: {"albedo": files[f"{m}_albedo"], "normal": files[f"{m}_micronormal"], "specular": files[f"{m}_specular"],
                "gt": m == FACE_MATERIAL, "subsurface": SKIN_SUBSURFACE if m in ("M_Face", "M_BackHead") else 0.0,
                "uv_offset": (TILE_OFFSETS[m], 0.0)} for m in RENDER_MATERIALS}


def noise_seed(subject: str, camera_seed: int) -> int:
    """Cycles' seed of a capture: from the subject id and camera, so a head renders alike as a procedural head and as
    its exported asset folder (same id), and every subject and camera gets its own noise."""
    return int(hashlib.sha256(f"{subject}__c{int(camera_seed):02d}".encode()).hexdigest()[:8], 16) % 2**31


def asset_maps(asset, root: Path) -> dict[str, Path]:
    """An asset's {albedo, micronormal, specular} files for Blender: its own where they hold the capture conventions
    (PNG/JPEG/TIFF, OpenGL normals, specular or gloss), else converted once by `assets.convert_map` into a 16-bit PNG
    under `root` (EXR maps, DirectX normals, roughness), in a folder named by the asset's stamp (an edit re-converts)."""
    from uhrtex.captures.assets import convert_map, read_map

    s = asset.settings
    tag = hashlib.sha256(repr((str(asset.folder.resolve()), asset.stamp, sorted(s.items()))).encode()).hexdigest()[:12]
    out = {}
    for kind, path in asset.maps.items():
        exr = path.suffix.lower() == ".exr"
        if not (exr or (kind, s["normal_convention"]) == ("micronormal", "directx") or (kind, s["specular_kind"]) == ("specular", "roughness")):
            out[kind] = path
            continue
        out[kind] = root / f"{asset.subject_id}-{tag}" / f"{kind}.png"
        if not out[kind].is_file():
            uio.write_png(out[kind], convert_map(kind, read_map(asset.name, kind, path), s, exr), bits=16)
    return out


def render_capture(subject_seed: int | None, lighting, camera_seed: int, resolution: int, texture_resolution: int | None = None,
                   samples: int = 64, workdir: str | Path | None = None, keep_folder: bool = False, threads: int | None = None,
                   timeout: float | None = None, environments=None, asset=None, camera_jitter: bool = True,
                   camera: Camera | None = None, **_):
    """The Blender twin of `uhrtex.captures.render.render_capture`: same asset, camera and lighting -> Capture.

    `environments`: a folder of your own equirect HDR maps, extra lightings as in the built-in renderer.
    `asset`: a loaded head asset (`uhrtex.captures.assets.Asset`) instead of the procedural head of `subject_seed`:
    Cycles reads its mesh and maps, placed by its scale and axes. `camera`: render through it instead of drawing one."""
    import tempfile

    from uhrtex.captures.assets import axes_rotation
    from uhrtex.render.environments import resolve_lighting
    from uhrtex.render.framing import fitted_near_far
    from uhrtex.captures.ingest import read_capture_folder
    from uhrtex.captures.render import framed_camera

    root = Path(workdir) if workdir else Path(tempfile.gettempdir()) / "uhrtex_blender"
    if asset is None:
        tex_res = int(texture_resolution or resolution)
        head = head_asset(int(subject_seed), tex_res)
        files = export_cached(int(subject_seed), tex_res, root / "assets")
        verts, mesh_meta, to_world = head.mesh.verts, head.meta() | {"files": {k: str(v) for k, v in files.items()}}, None
    else:
        s = asset.settings
        files = {"obj": asset.obj, **asset_maps(asset, root / "assets")}
        verts, mesh_meta = asset.mesh().verts, asset.meta()
        to_world = (float(s["scale"]) * axes_rotation(s["up"], s["forward"])).tolist()
    if camera is None:
        cam, cam_params = framed_camera(verts, camera_seed, resolution, camera_jitter, subject_seed if asset is None else None)
    else:
        cam, cam_params = camera.scaled(resolution, resolution), {"given": True}
    name, env_source = resolve_lighting(lighting, environments, int(subject_seed) if asset is None else 0)
    folder = root / "captures" / f"{mesh_meta['subject']}__{name}__c{camera_seed:02d}_{resolution}_{samples}"
    maps = ({"materials": head_materials(files)} if asset is None else
            {"albedo": files["albedo"], "normal": files["micronormal"], "specular": files["specular"]})
    render_folder(folder, obj=files["obj"], **maps, lighting=name, camera=cam, samples=samples, seed=noise_seed(mesh_meta["subject"], camera_seed), threads=threads,
                  meta={"subject": mesh_meta["subject"], "mesh": mesh_meta, "camera_params": cam_params}, timeout=timeout,
                  env_source=env_source, mesh_to_world=to_world, clip=fitted_near_far(verts, cam.extrinsics()))
    capture = read_capture_folder(folder)
    if not keep_folder:
        shutil.rmtree(folder, ignore_errors=True)
    return capture


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m uhrtex.captures.blender.launch", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", help="capture folder to write (ingest layout)")
    p.add_argument("--seed", type=int, help="procedural head seed (instead of --obj ...)")
    p.add_argument("--obj")
    p.add_argument("--albedo")
    p.add_argument("--normal", help="tangent-space (OpenGL, +v up) normal map")
    p.add_argument("--specular")
    p.add_argument("--lighting", default="sky0_r000", help="a lighting id, e.g. studio_r090, sky0_r000, env-<file>_r000")
    p.add_argument("--environments", help="folder of your own equirect .exr/.hdr maps (lightings env-<file>_r<deg>)")
    p.add_argument("--camera-seed", type=int, default=0)
    p.add_argument("--resolution", type=int, default=512)
    p.add_argument("--texture-resolution", type=int)
    p.add_argument("--samples", type=int, default=64)
    p.add_argument("--threads", type=int)
    p.add_argument("--store", help="also ingest the folder into this capture store")
    a = p.parse_args(argv)
    from uhrtex.captures.render import framed_camera

    try:
        if a.seed is not None:
            cam, params = framed_camera(head_asset(a.seed, 16).mesh.verts, a.camera_seed, a.resolution, subject_seed=a.seed)
            files = export_cached(a.seed, a.texture_resolution or a.resolution, Path(a.out) / "_asset")
            obj, maps = files["obj"], {"materials": head_materials(files)}
            meta = {"subject": f"head{a.seed:04d}", "mesh": head_asset(a.seed, a.texture_resolution or a.resolution).meta()}
        elif a.obj and a.albedo and a.normal and a.specular:
            from uhrtex.captures.assets import read_mesh

            cam, params = framed_camera(read_mesh(Path(a.obj)).verts, a.camera_seed, a.resolution)
            obj, maps, meta = a.obj, {"albedo": a.albedo, "normal": a.normal, "specular": a.specular}, None
        else:
            p.error("give --seed, or all of --obj --albedo --normal --specular")
        from uhrtex.render.environments import resolve_lighting

        lighting, env_source = resolve_lighting(a.lighting, a.environments)
        render_folder(a.out, obj=obj, **maps, lighting=lighting, camera=cam,
                      samples=a.samples, threads=a.threads, meta={**(meta or {}), "camera_params": params}, env_source=env_source)
        if a.store:
            from uhrtex.captures.ingest import read_capture_folder
            from uhrtex.captures.store import CaptureStore

            capture = read_capture_folder(a.out)
            CaptureStore(a.store, mode="a").write(capture.key, capture)
            print(f"ingested {capture.key} into {a.store}")
    except (ValueError, RuntimeError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
