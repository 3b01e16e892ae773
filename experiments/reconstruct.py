"""Reconstruct Albedo / Micronormal / Specular from one portrait; optionally unwrap them onto a head mesh.

    python -m experiments.reconstruct PORTRAIT --ckpt DIR|BUNDLE --out DIR
        [--no-crop] [--geometry auto|landmarks|predictor] [--mesh head.obj --camera cam.json]
        [--unwrap optimize|direct|splat|none] [--patch-batch N] [--exr] [--uv-size N]
        [--device auto|cpu|cuda] [--precision auto|bf16|fp32]

By default the face is found (468 landmarks, `uhrtex.face`), the portrait is cropped to a square around it and
resized to the model's input, the maps are masked to the face, and the landmarks' mesh in the unified UV layout
drives the unwrap. Writes into DIR (see docs/reconstruction.md): albedo.png (sRGB 8-bit), micronormal.png,
specular.png (16-bit), mask.png; with --exr the same as EXR (albedo linear); when unwrapping uv_albedo.png,
uv_micronormal.png, uv_specular.png, uv_coverage.png, head.glb (PBR material) and preview.png (the textured head
under two environments); report.png (input with landmarks | maps | UV albedo | UV photo | preview); manifest.json
last. Everything is written to a staging folder beside DIR and moved in only when complete, so a crash leaves no
partial output. Bad input: one line on stderr, exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

from experiments.errors import UsageError
from uhrtex.common import io as uio
from uhrtex.checkpoint import CheckpointError
from uhrtex.face.front import FaceNotFoundError, crop_to_face, face_mask, find_face
from uhrtex.face.geometry import face_region, landmark_mesh
from uhrtex.face.landmarker import FaceModelsMissing
from uhrtex.unwrap.mesh import Camera, MeshError, check_camera, load_camera, load_obj
from uhrtex.pipeline.reconstructor import InputError, Reconstructor
from uhrtex.viz.report import report_image
from uhrtex.unwrap.methods import METHODS, UnwrapOptions, flat_template, head_template, is_unified_layout, unwrap

USER_ERRORS = (InputError, uio.ImageError, MeshError, CheckpointError, FaceNotFoundError, FaceModelsMissing)
TEMPLATE_HEAD_SCALE = 0.1  # the template head: 1 unit = 10 cm -> metres in the .glb
PREVIEW_LIGHTINGS = ("ph-studio-small-03_r000", "ph-venice-sunset_r030")  # an indoor and an outdoor environment


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m experiments.reconstruct", description=__doc__.splitlines()[0])
    p.add_argument("portrait", help="the portrait (PNG/JPEG/TIFF 8/16-bit, or linear EXR)")
    p.add_argument("--ckpt", required=True, help="folder with uv_normal.ckpt gde.ckpt hfdr.ckpt (or the stage runs' "
                   "logs/ folder), or a bundle file from Reconstructor.export_bundle")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--mesh", help="head mesh: OBJ with UVs (its UV space receives the textures)")
    p.add_argument("--camera", help="camera JSON of the portrait for --mesh (OpenCV; see docs/reconstruction.md)")
    p.add_argument("--unwrap", choices=(*METHODS, "none"), default=None,
                   help="default: optimize with a mesh on CUDA, direct with a mesh on CPU, splat without a mesh")
    p.add_argument("--patch-batch", type=int, default=8, help="HFDR patches per forward (memory ~ this)")
    p.add_argument("--exr", action="store_true", help="also write half-float EXR maps")
    p.add_argument("--no-crop", action="store_true", help="use the portrait as it is: no face crop (it must already be "
                   "framed like the training captures) and no face mask")
    p.add_argument("--geometry", choices=("auto", "landmarks", "predictor"), default="auto",
                   help="what places the maps in UV space without --mesh: the face landmarks' mesh (auto when a face "
                   "is found) or the UV&Normal predictor's uv map (splat)")
    p.add_argument("--uv-size", type=int, default=None, help="UV texture side (default: the model's input size)")
    p.add_argument("--cascade-top", type=int, default=None, help="optimize: finest cascade level (paper 8192 for a "
                   "4096 texture; default 2× uv-size on CUDA, uv-size on CPU)")
    p.add_argument("--template", choices=("auto", "head", "flat"), default="auto",
                   help="texture for unseen texels: the neutral procedural head (unified UV layout) or flat skin")
    p.add_argument("--input-size", type=int, default=None, help="preset input size, if the checkpoints lack it")
    p.add_argument("--no-seams", action="store_true", help="skip seam smoothing (ablation)")
    p.add_argument("--seam-feather", type=float, default=0.0, help="0: the paper's hard ±8 px band; 1: fade the "
                   "smoothing out towards the band's edge (see docs/reconstruction.md)")
    p.add_argument("--seam-keep-detail", action=argparse.BooleanOptionalAction, default=True,
                   help="smooth only the low-frequency jump between patches and keep the bands' pores (default); "
                   "--no-seam-keep-detail: the paper's blur of the whole ±8 px band")
    p.add_argument("--preview-size", type=int, default=512)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto", help="auto: bf16 autocast on CUDA "
                   "and on CPUs with AVX512-BF16/AMX, fp32 elsewhere (see docs/reconstruction.md)")
    return p


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: CUDA is not available here; use --device cpu")
    return dev


def read_portrait(path: str) -> torch.Tensor:
    """3×H×W sRGB in [0, 1]. RGBA: alpha dropped (warning); grayscale: copied to R, G and B (warning); 16-bit: scaled;
    EXR: linear -> sRGB, clipped."""
    image = uio.read_image(path, channels=(1, 3), alpha="drop")
    if image.shape[0] == 1:
        warnings.warn(f"{path}: a grayscale portrait; it is read as RGB with R = G = B, so the albedo has no colour "
                      "to recover", stacklevel=2)
        image = image.expand(3, -1, -1).contiguous()
    if Path(path).suffix.lower() == ".exr":
        hi = float(image.max())
        if hi > 1:
            warnings.warn(f"{path}: linear values up to {hi:.3g} are clipped to 1 (expose the EXR down first)", stacklevel=2)
        image = uio.linear_to_srgb(image).clamp_(0, 1)
    return image


def cropped_camera(cam: Camera, src_hw: tuple[int, int], crop: tuple[int, int, int], size: int) -> Camera:
    """The portrait's camera for the square crop (x0, y0, side) resized to size²."""
    cam = cam if (cam.height, cam.width) == src_hw else cam.scaled(src_hw[1], src_hw[0])
    x0, y0, side = crop
    s = size / side
    return Camera(cam.fx * s, cam.fy * s, (cam.cx - x0) * s, (cam.cy - y0) * s, size, size, cam.world_to_camera, cam.id)


def _publish(staging: Path, out: Path, files: list[str]) -> None:
    """Move the finished outputs into `out` (the whole folder at once when `out` does not exist yet)."""
    if not out.exists():
        os.replace(staging, out)
        return
    for name in files:  # manifest.json is last in `files`: it marks a complete set
        os.replace(staging / name, out / name)
    shutil.rmtree(staging, ignore_errors=True)


class _Writer:
    """PNGs are encoded in background threads (uhrtex.export.glb.PngWriter) while the reconstruction goes on;
    `close()` joins them (re-raising a failure) before the manifest is written."""

    def __init__(self, root: Path):
        from uhrtex.export.glb import PngWriter

        self.root, self.files, self.pngs = root, [], PngWriter()

    def png(self, name: str, x: torch.Tensor, bits: int) -> None:
        self.pngs.submit(self.root / name, x.detach(), bits, clamp=True)  # quantised in row blocks: no copy
        self.files.append(name)

    def close(self, ok: bool = True) -> None:
        if ok:
            self.pngs.wait()
        self.pngs.close()

    def exr(self, name: str, x: torch.Tensor) -> None:
        uio.write_exr(self.root / name, x.float(), half=True)
        self.files.append(name)

    def bytes(self, name: str, data: bytes) -> None:
        uio.write_bytes_atomic(self.root / name, data)
        self.files.append(name)


def _maps_out(w: _Writer, prefix: str, maps: dict[str, torch.Tensor], exr: bool) -> None:
    w.png(f"{prefix}albedo.png", maps["albedo"], 8)
    w.png(f"{prefix}micronormal.png", maps["micronormal"], 16)
    w.png(f"{prefix}specular.png", maps["specular"], 16)
    if exr:
        w.exr(f"{prefix}albedo.exr", uio.srgb_to_linear(maps["albedo"]))  # EXR colour is linear
        w.exr(f"{prefix}micronormal.exr", maps["micronormal"])
        w.exr(f"{prefix}specular.exr", maps["specular"])


def _photo_uv(image, mask, method, mesh, camera, uv, size: int = 512) -> torch.Tensor:
    """The portrait itself unwrapped with the reconstruction's geometry at size² (observed texels only), for the
    report: where the face lands in UV space, whatever the networks predict. From a ≤ 2·size copy: cheap at 4K."""
    import torch.nn.functional as F

    s = min(1.0, 2 * size / max(image.shape[-2:]))
    small = F.interpolate(image[None].float(), scale_factor=s, mode="area")[0] if s < 1 else image.float()
    m = F.interpolate(mask[None].float(), size=small.shape[-2:], mode="area")[0] if s < 1 else mask
    opts = UnwrapOptions(resolution=size, fill=False, depth_resolution=2 * size)
    res = unwrap({"photo": small}, m, method, mesh=mesh, camera=camera, uv=uv, options=opts)
    return res.textures["photo"] * res.coverage


def run(args: argparse.Namespace, image: torch.Tensor | None = None) -> dict:
    """`image`: the portrait already decoded (what read_portrait returns); None reads args.portrait."""
    t_start = time.perf_counter()
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder")
    if bool(args.mesh) != bool(args.camera):
        raise UsageError("--mesh and --camera go together (the camera says where the mesh is in the portrait)")
    if args.patch_batch < 1:
        raise UsageError("--patch-batch must be ≥ 1")
    device = _device(args.device)
    # Everything that can be wrong with the inputs is checked before any compute and any output.
    rec = Reconstructor.load(args.ckpt, patch_batch=args.patch_batch, device=device, input_size=args.input_size,
                             precision=getattr(args, "precision", "auto"))
    if args.no_seams:
        rec.seams.enabled = False
    if not 0 <= args.seam_feather <= 1:
        raise UsageError("--seam-feather must be in [0, 1]")
    rec.seams.feather = args.seam_feather
    rec.seams.keep_detail = args.seam_keep_detail
    image = read_portrait(args.portrait) if image is None else image
    src_hw = tuple(image.shape[-2:])
    face = None
    image = rec.check_image(image, args.portrait, check_size=False)
    if not args.no_crop or args.geometry == "landmarks":
        face = find_face(image, args.portrait)
        if not args.no_crop:
            image, face = crop_to_face(image, face, rec.input_size, name=args.portrait)
    image = rec.check_image(image, args.portrait)
    mesh = camera = None
    if args.mesh:
        mesh, camera = load_obj(args.mesh), load_camera(args.camera)
        if face is not None and face.crop is not None:
            camera = cropped_camera(camera, src_hw, face.crop, rec.input_size)
        h, w = image.shape[-2:]
        if abs(camera.width / camera.height - w / h) > 0.01 * w / h:
            raise MeshError(f"{args.camera}: camera is {camera.width}x{camera.height} but the portrait is {w}x{h}; "
                            "the camera does not match the portrait")
        camera = camera.scaled(w, h) if (camera.width, camera.height) != (w, h) else camera
        check_camera(mesh, camera, args.camera)
    landmark_geometry = mesh is None and face is not None and args.geometry != "predictor" and args.unwrap != "splat"
    if landmark_geometry:
        mesh, camera = landmark_mesh(face.face, *image.shape[-2:])
    if args.unwrap in ("optimize", "direct") and mesh is None:
        raise UsageError(f"--unwrap {args.unwrap} needs a mesh: --mesh and --camera, or a face for the landmark "
                         "geometry (drop --geometry predictor); use --unwrap splat otherwise")
    method = args.unwrap or (("optimize" if device.type == "cuda" else "direct") if mesh is not None else "splat")

    timings = {}
    result = rec(image, progress=True, name=args.portrait)
    timings.update(rec.timings)
    tex_maps = {k: result[k] for k in ("albedo", "micronormal", "specular")}
    mask = rec.full_res(result, "mask_pred")
    if face is not None:  # the landmarks' hull: the maps cover the face, not the background
        mask = face_mask(face.face, *mask.shape[-2:])
        for v in tex_maps.values():
            v.mul_(mask.to(v.dtype))  # in place: the result's own maps (no second full-size copy)

    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent if out.parent.exists() else None))
    w = None
    try:
        w = _Writer(staging)
        _maps_out(w, "", tex_maps, args.exr)
        w.png("mask.png", mask, 8)
        unwrap_info, uv_albedo, preview = None, None, None
        geometry_name = "landmarks" if landmark_geometry else ("mesh" if mesh is not None else "predictor")
        if method != "none":
            t0 = time.perf_counter()
            uv_size = int(args.uv_size or rec.input_size)
            top = args.cascade_top or (2 * uv_size if device.type == "cuda" else uv_size)
            opts = UnwrapOptions(resolution=uv_size, top_resolution=top)
            template_head = None
            use_head = args.template == "head" or (args.template == "auto" and (
                mesh is None or landmark_geometry or is_unified_layout(mesh)))
            if use_head:
                template_head, template = head_template(uv_size)
            else:
                template = flat_template(uv_size)
            steps = None
            if method == "optimize":
                from tqdm.auto import tqdm

                n_levels = max(1, (top // min(opts.start_resolution, top)).bit_length())
                steps = tqdm(total=n_levels * opts.steps, desc="unwrap (optimize)", unit="step", leave=False)
            try:
                res = unwrap(tex_maps, mask, method, mesh=mesh, camera=camera, uv=result["uv_pred"], options=opts,
                             template=template, progress=steps.update if steps else None)
            finally:
                if steps is not None:
                    steps.close()
            template = None  # its full-size textures are blended in: free them before the export (≈ 0.5 GB at 4K)
            timings["unwrap"] = time.perf_counter() - t0
            _maps_out(w, "uv_", res.textures, args.exr)
            uv_albedo = res.textures["albedo"]
            w.png("uv_coverage.png", res.coverage, 8)
            # The mesh the UV textures belong to: the user's, or (unified UV space) the template head.
            if mesh is not None and not landmark_geometry:
                glb_mesh, scale = mesh, 1.0
            else:
                glb_mesh, scale = template_head or head_template(16)[0], TEMPLATE_HEAD_SCALE
            from uhrtex.export.glb import glb_bytes
            from uhrtex.export.preview import render_preview

            t0 = time.perf_counter()
            w.bytes("head.glb", glb_bytes(glb_mesh, res.textures, scale))
            lightings = list(PREVIEW_LIGHTINGS)
            user_mesh = glb_mesh is mesh
            preview = render_preview(res.textures, lightings, args.preview_size, mesh if user_mesh else None,
                                     camera if user_mesh else None)
            w.png("preview.png", preview, 8)
            timings["export"] = time.perf_counter() - t0
            unwrap_info = {"method": method, "geometry": geometry_name, "uv_size": uv_size,
                           "template": "head" if use_head else "flat", "preview_lightings": lightings, **res.stats}
            if use_head:  # how much of the layout's face region the photo filled
                region = face_region(uv_size) > 0.5
                unwrap_info["face_uv_coverage"] = round(float((res.coverage > 0.5)[region].float().mean()), 4)
        t0 = time.perf_counter()
        uv_photo = None
        if method != "none":
            uv_photo = _photo_uv(image, mask, "direct" if method == "optimize" else method, mesh, camera,
                                 result["uv_pred"])
        w.png("report.png", report_image(image, tex_maps, uv_albedo, preview,
                                         face.face.landmarks if face else None, face.face.box if face else None,
                                         uv_photo=uv_photo), 8)
        timings["report"] = time.perf_counter() - t0
        g = result["geometry"]
        manifest = {
            "portrait": str(Path(args.portrait).resolve()), "checkpoints": str(Path(args.ckpt).resolve()),
            "sizes": rec.sizes, "input": {"height": g.height, "width": g.width, "source_hw": list(src_hw)},
            "padding": {"side": g.side, "top": g.top, "left": g.left, "patches": g.grid ** 2},
            "face": face.to_dict() if face is not None else {"found": False},
            "seam_smoothing": {"enabled": not args.no_seams, "feather": args.seam_feather,
                               "keep_detail": args.seam_keep_detail},
            "unwrap": unwrap_info, "device": str(device), "precision": rec.precision, "timings_s": {k: round(v, 3) for k, v in timings.items()},
            "total_s": round(time.perf_counter() - t_start, 3), "files": sorted([*w.files, "manifest.json"]),
        }
        w.close()  # every PNG is complete before the manifest marks the set complete
        w.bytes("manifest.json", json.dumps(manifest, indent=1).encode())
        _publish(staging, out, w.files)
    except BaseException:
        if w is not None:
            w.close(ok=False)  # no encoder thread may still write into the staging folder
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        manifest = run(args)
    except (UsageError, *USER_ERRORS) as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    face = manifest["face"]
    note = f" (face crop upscaled {face['upscale']:.2f}x)" if face.get("crop") else ""
    cov = (manifest["unwrap"] or {}).get("face_uv_coverage")
    note += f"; face UV coverage {cov:.0%}" if cov is not None else ""
    print(f"wrote {len(manifest['files'])} files to {args.out} in {manifest['total_s']:.1f} s{note}")
    print(f"look at {Path(args.out) / 'report.png'}")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
