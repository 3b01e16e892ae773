"""The whole job on one portrait: read it, find and crop the face, reconstruct the maps (`Reconstructor`), unwrap
them into UV space, export the .glb and the relit preview, draw report.png, and write it all atomically.
`python -m experiments.reconstruct` is the command-line wrapper of `reconstruct_portrait`.

    manifest = reconstruct_portrait("portrait.png", PortraitOptions(out="out/"))   # the shipped weights

Writes into `out` (see docs/reconstruction.md): albedo.png (sRGB 8-bit), micronormal.png, specular.png (16-bit),
mask.png; with `exr` the same as EXR (albedo linear); when unwrapping uv_albedo.png, uv_micronormal.png,
uv_specular.png, uv_coverage.png, head.glb (PBR material) and preview.png (the textured head under two
environments); report.png; manifest.json last. Everything is written to a staging folder beside `out` and moved in
only when complete, so a crash leaves no partial output.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from uhrtex.checkpoint import STAGES, CheckpointError, file_sha256
from uhrtex.common import imaging
from uhrtex.common import io as uio
from uhrtex.face.front import FaceNotFoundError, crop_to_face, face_mask, find_face
from uhrtex.face.geometry import face_region, landmark_mesh
from uhrtex.face.landmarker import FaceModelsMissing
from uhrtex.metrics.skin import off_skin_blob
from uhrtex.pipeline.reconstructor import InputError, Reconstructor, sample_scale
from uhrtex.unwrap.mesh import Camera, MeshError, check_camera, load_camera, load_obj
from uhrtex.unwrap.methods import UnwrapOptions, flat_template, head_template, is_unified_layout, unwrap
from uhrtex.viz.report import report_image

TEMPLATE_HEAD_SCALE = 0.1  # the template head: 1 unit = 10 cm -> metres in the .glb
PREVIEW_LIGHTINGS = ("ph-studio-small-03_r000", "ph-venice-sunset_r030")  # an indoor and an outdoor environment


class OptionsError(ValueError):
    """Options that contradict each other or are out of range (one line, with the fix)."""


# What a user can get wrong about the inputs: each is one line that names the problem and the fix.
USER_ERRORS = (OptionsError, InputError, uio.ImageError, MeshError, CheckpointError, FaceNotFoundError, FaceModelsMissing)


@dataclass
class PortraitOptions:
    """The knobs of `reconstruct_portrait` (the CLI's flags; docs/reconstruction.md)."""

    out: str = "out"
    ckpt: str | None = None  # checkpoint folder or bundle; None: the shipped model
    mesh: str | None = None
    camera: str | None = None
    unwrap: str | None = None  # optimize | direct | splat | none; None: by device and mesh
    patch_batch: int = 8
    exr: bool = False
    no_crop: bool = False
    geometry: str = "auto"  # auto | landmarks | predictor
    uv_size: int | None = None
    cascade_top: int | None = None
    template: str = "auto"  # auto | head | flat
    input_size: int | None = None
    no_seams: bool = False
    seam_feather: float = 0.0
    seam_keep_detail: bool = True
    preview_size: int = 512
    device: str = "auto"
    precision: str = "auto"
    portrait: str = ""


def weights_record(rec: Reconstructor, ckpt: str | None) -> dict:
    """Which weights made the maps: the bundle's (name, sha256) or the stage checkpoints'."""
    from uhrtex.bundle import bundle_meta, shipped_bundle

    path = Path(shipped_bundle() if ckpt is None else ckpt)
    if path.is_file():
        return {"kind": "bundle", "name": bundle_meta(path).get("name", path.stem), "path": str(path.resolve()),
                "sha256": file_sha256(path), "shipped": ckpt is None}
    return {"kind": "checkpoints", "path": str(path.resolve()),
            "stages": {s: {"path": rec.records[s].source, "sha256": rec.records[s].sha256} for s in STAGES}}


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise OptionsError(f"--device {name}: CUDA is not available here; use --device cpu")
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
        image = imaging.linear_to_srgb(image).clamp_(0, 1)
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
        w.exr(f"{prefix}albedo.exr", imaging.srgb_to_linear(maps["albedo"]))  # EXR colour is linear
        w.exr(f"{prefix}micronormal.exr", maps["micronormal"])
        w.exr(f"{prefix}specular.exr", maps["specular"])



REPORT_UV_SIZE = 512  # the report's "UV photo" panel: texels per side


def _photo_uv(image, mask, method, mesh, camera, uv, size: int = REPORT_UV_SIZE) -> torch.Tensor:
    """The portrait itself unwrapped with the reconstruction's geometry at size² (observed texels only), for the
    report: where the face lands in UV space, whatever the networks predict. From a ≤ 2·size copy: cheap at 4K."""
    import torch.nn.functional as F

    s = min(1.0, 2 * size / max(image.shape[-2:]))
    small = F.interpolate(image[None].float(), scale_factor=s, mode="area")[0] if s < 1 else image.float()
    m = F.interpolate(mask[None].float(), size=small.shape[-2:], mode="area")[0] if s < 1 else mask
    opts = UnwrapOptions(resolution=size, fill=False, depth_resolution=2 * size)
    res = unwrap({"photo": small}, m, method, mesh=mesh, camera=camera, uv=uv, options=opts)
    return res.textures["photo"] * res.coverage



def reconstruct_portrait(portrait: str | os.PathLike, options: PortraitOptions | None = None,
                         image: torch.Tensor | None = None) -> dict:
    """The portrait -> maps -> files flow; returns the manifest (also written as manifest.json, last). `image`: the
    portrait already decoded (what `read_portrait` returns); None reads `portrait`."""
    args = options or PortraitOptions()
    args.portrait = str(portrait)
    t_start = time.perf_counter()
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise OptionsError(f"--out {out} exists and is not a folder")
    if bool(args.mesh) != bool(args.camera):
        raise OptionsError("--mesh and --camera go together (the camera says where the mesh is in the portrait)")
    if args.patch_batch < 1:
        raise OptionsError("--patch-batch must be ≥ 1")
    device = _device(args.device)
    # Everything that can be wrong with the inputs is checked before any compute and any output.
    rec = Reconstructor.load(args.ckpt, patch_batch=args.patch_batch, device=device, input_size=args.input_size,
                             precision=args.precision)
    if args.no_seams:
        rec.seams.enabled = False
    if not 0 <= args.seam_feather <= 1:
        raise OptionsError("--seam-feather must be in [0, 1]")
    rec.seams.feather = args.seam_feather
    rec.seams.keep_detail = args.seam_keep_detail
    image = read_portrait(args.portrait) if image is None else image
    src_hw = tuple(image.shape[-2:])
    face = None
    # The size only matters without the crop: the crop is resized to the model's input (and clamped to [0, 1]), so
    # its values need no second pass over 4K pixels.
    image = rec.check_image(image, args.portrait, check_size=args.no_crop)
    if not image.is_floating_point():  # uint8/uint16 samples: the face front end reads float sRGB in [0, 1]
        image = image.float().div_(sample_scale(image.dtype))
    if not args.no_crop or args.geometry == "landmarks":
        face = find_face(image, args.portrait)
        if not args.no_crop:
            image, face = crop_to_face(image, face, rec.input_size, name=args.portrait)
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
        raise OptionsError(f"--unwrap {args.unwrap} needs a mesh: --mesh and --camera, or a face for the landmark "
                         "geometry (drop --geometry predictor); use --unwrap splat otherwise")
    method = args.unwrap or (("optimize" if device.type == "cuda" else "direct") if mesh is not None else "splat")

    # Checkpoints, input checks, the face front end and a user mesh: everything before the networks.
    timings = {"prepare": time.perf_counter() - t_start}
    # A found face's landmark hull is Stage 1's face mask too: on photos it is more reliable than the predicted one
    landmark_mask = face_mask(face.face, *image.shape[-2:]) if face is not None else None
    result = rec(image, progress=True, name=args.portrait, face_mask=landmark_mask,
                 face=face.face if face is not None else None)
    timings.update(rec.timings)
    tex_maps = {k: result[k] for k in ("albedo", "micronormal", "specular")}
    mask = rec.full_res(result, "mask_pred")
    if landmark_mask is not None:  # the landmarks' hull: the maps cover the face, not the background
        mask = landmark_mask
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
        t0 = time.perf_counter()
        # the largest non-skin-hue region of the albedo inside the mask (metrics/skin.py): a blotch check
        blob = off_skin_blob(tex_maps["albedo"], mask[0])
        w.close()  # every PNG is complete before the manifest marks the set complete
        timings["finish"] = time.perf_counter() - t0  # the blotch check and the last PNG encodes
        g = result["geometry"]
        manifest = {
            "portrait": str(Path(args.portrait).resolve()), "weights": weights_record(rec, args.ckpt),
            "sizes": rec.sizes, "input": {"height": g.height, "width": g.width, "source_hw": list(src_hw)},
            "padding": {"side": g.side, "top": g.top, "left": g.left, "patches": g.grid ** 2},
            "face": face.to_dict() if face is not None else {"found": False},
            "albedo_off_skin_blob": round(blob, 5),
            "seam_smoothing": {"enabled": not args.no_seams, "feather": args.seam_feather,
                               "keep_detail": args.seam_keep_detail},
            "unwrap": unwrap_info, "device": str(device), "precision": rec.precision, "timings_s": {k: round(v, 3) for k, v in timings.items()},
            "total_s": round(time.perf_counter() - t_start, 3), "files": sorted([*w.files, "manifest.json"]),
        }
        w.bytes("manifest.json", json.dumps(manifest, indent=1).encode())
        _publish(staging, out, w.files)
    except BaseException:
        if w is not None:
            w.close(ok=False)  # no encoder thread may still write into the staging folder
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


