"""Head meshes and cameras for unwrapping: OBJ (with UVs) and camera-JSON input, checks with one-line errors.

Mesh: `Mesh(verts V×3, faces F×3, uvs T×2, faces_uv F×3)` — positions and UVs keep separate index
buffers, as in OBJ (`f v/vt[/vn]`), so UV seams need no duplicated vertices. UV (0, 0) is the bottom-left
of the texture image (OBJ and nvdiffrast convention).

Camera JSON: the capture camera (`uhrtex.captures.format.Camera.to_dict()`), OpenCV convention::

    {"fx": 4800.0, "fy": 4800.0, "cx": 2048.0, "cy": 2048.0, "width": 4096, "height": 4096,
     "world_to_camera": [[1,0,0,0],[0,-1,0,0],[0,0,-1,0.6],[0,0,0,1]]}

(pixels; x right, y down, z forward; the image spans [0, W] × [0, H]). Synthetic captures carry it in
`meta["camera"]`. A camera for another image size is rescaled to the image it is used with.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from uhrtex.captures.format import Camera, CaptureError

__all__ = ["Mesh", "MeshError", "load_obj", "load_camera", "check_camera", "Camera"]


class MeshError(ValueError):
    """A mesh or camera that cannot be used; the message is one line: file, problem, fix."""


@dataclass
class Mesh:
    verts: torch.Tensor  # V×3 float32
    faces: torch.Tensor  # F×3 int64 into verts
    uvs: torch.Tensor  # T×2 float32
    faces_uv: torch.Tensor  # F×3 int64 into uvs
    name: str = "mesh"

    def corners(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-corner positions and UVs (3F×3, 3F×2): the unindexed mesh, triangle f = corners 3f..3f+2."""
        return self.verts[self.faces.flatten()], self.uvs[self.faces_uv.flatten()]


def _parse_index(tok: str, n: int, path, lineno: int) -> int:
    i = int(tok)
    i = i - 1 if i > 0 else n + i  # OBJ is 1-based; negative indices count back from the last one read
    if not 0 <= i < n:
        raise MeshError(f"{path}:{lineno}: index {tok} is out of range ({n} defined so far); fix or re-export the OBJ")
    return i


def load_obj(path: str | Path) -> Mesh:
    """Read an OBJ with texture coordinates (polygons are fan-triangulated)."""
    path = Path(path)
    if not path.is_file():
        raise MeshError(f"{path}: mesh file does not exist; pass an OBJ with UVs (--mesh)")
    if path.suffix.lower() != ".obj":
        raise MeshError(f"{path}: unsupported mesh format '{path.suffix}'; export the head as .obj with UVs")
    verts, uvs, faces, faces_uv = [], [], [], []
    try:
        text = path.read_text(errors="strict")
    except UnicodeDecodeError:
        raise MeshError(f"{path}: not a text OBJ file (binary or corrupt); re-export it as OBJ") from None
    no_uv_face = 0
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            if parts[0] == "v":
                verts.append([float(p) for p in parts[1:4]])
            elif parts[0] == "vt":
                uvs.append([float(p) for p in parts[1:3]])
            elif parts[0] == "f":
                ids = [p.split("/") for p in parts[1:]]
                if len(ids) < 3:
                    raise MeshError(f"{path}:{lineno}: a face needs at least 3 vertices; fix or re-export the OBJ")
                if any(len(t) < 2 or not t[1] for t in ids):
                    no_uv_face += 1
                    continue
                v = [_parse_index(t[0], len(verts), path, lineno) for t in ids]
                t = [_parse_index(t[1], len(uvs), path, lineno) for t in ids]
                for k in range(1, len(ids) - 1):
                    faces.append([v[0], v[k], v[k + 1]])
                    faces_uv.append([t[0], t[k], t[k + 1]])
        except ValueError as e:
            if isinstance(e, MeshError):
                raise
            raise MeshError(f"{path}:{lineno}: cannot parse {parts[0]!r} line ({e}); fix or re-export the OBJ") from None
    if not verts or (not faces and not no_uv_face):
        raise MeshError(f"{path}: no vertices/faces found; is this an OBJ mesh?")
    if not uvs or no_uv_face:
        raise MeshError(f"{path}: mesh has no UV coordinates ({no_uv_face} faces without vt); unwrap the head in a "
                        "DCC tool (or use the HRN/BFM mesh, which carries UVs) and export the OBJ with UVs")
    v = torch.tensor(verts, dtype=torch.float32)
    uv = torch.tensor(uvs, dtype=torch.float32)
    if v.shape[1] != 3 or uv.shape[1] != 2 or not torch.isfinite(v).all() or not torch.isfinite(uv).all():
        raise MeshError(f"{path}: vertices must be 3 finite numbers and UVs 2; fix or re-export the OBJ")
    return Mesh(v, torch.tensor(faces, dtype=torch.int64), uv, torch.tensor(faces_uv, dtype=torch.int64), path.stem)


def save_obj(path: str | Path, mesh: Mesh, mtl: str | None = None) -> None:
    """Write `mesh` as OBJ (v, vt, f v/vt), optionally referencing a material library."""
    from uhrtex.io import write_bytes_atomic

    lines = [f"mtllib {mtl}", "usemtl material0"] if mtl else []
    lines += [f"v {x:.7g} {y:.7g} {z:.7g}" for x, y, z in mesh.verts.tolist()]
    lines += [f"vt {u:.7g} {v:.7g}" for u, v in mesh.uvs.tolist()]
    f = (np.stack([mesh.faces.numpy(), mesh.faces_uv.numpy()], -1) + 1).reshape(-1, 6)
    lines += [f"f {a}/{b} {c}/{d} {e}/{g}" for a, b, c, d, e, g in f.tolist()]
    write_bytes_atomic(path, ("\n".join(lines) + "\n").encode())


def load_camera(path: str | Path) -> Camera:
    """Read a camera JSON (see module doc)."""
    path = Path(path)
    if not path.is_file():
        raise MeshError(f"{path}: camera file does not exist; pass the camera JSON (--camera)")
    try:
        d = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise MeshError(f"{path}: not valid JSON ({e.__class__.__name__}); write fx, fy, cx, cy, width, height, "
                        "world_to_camera") from None
    if isinstance(d, dict) and "camera" in d and isinstance(d["camera"], dict):
        d = d["camera"]  # a capture's meta.json works too
    try:
        cam = Camera.from_dict(d if isinstance(d, dict) else {})
    except CaptureError:
        raise MeshError(f"{path}: camera needs fx, fy, cx, cy, width, height, world_to_camera (4x4, OpenCV axes); "
                        f"see docs/reconstruction.md") from None
    vals = [cam.fx, cam.fy, cam.cx, cam.cy, *sum(cam.world_to_camera, [])]
    if len(cam.world_to_camera) != 4 or any(len(r) != 4 for r in cam.world_to_camera) or not np.isfinite(vals).all() \
            or cam.fx <= 0 or cam.fy <= 0 or cam.width <= 0 or cam.height <= 0:
        raise MeshError(f"{path}: camera has a non-4x4 world_to_camera or non-positive/NaN intrinsics; fix the JSON")
    return cam


def check_camera(mesh: Mesh, camera: Camera, name: str = "camera", min_inside: float = 0.5) -> None:
    """One-line error when `camera` does not look at `mesh`: vertices behind it, or mostly outside the frame."""
    p = camera.project(mesh.verts)
    behind = float((p[:, 2] <= 0).float().mean())
    if behind > 0:
        raise MeshError(f"{name}: {behind:.0%} of the mesh {mesh.name!r} is behind the camera; the camera does not match "
                        "the mesh (check world_to_camera and the OpenCV axes: z forward, y down)")
    inside = (p[:, 0] >= 0) & (p[:, 0] <= camera.width) & (p[:, 1] >= 0) & (p[:, 1] <= camera.height)
    frac = float(inside.float().mean())
    if frac < min_inside:
        raise MeshError(f"{name}: only {frac:.0%} of the mesh {mesh.name!r} projects inside the {camera.width}x"
                        f"{camera.height} frame; the camera does not match the mesh (or the image was cropped)")
