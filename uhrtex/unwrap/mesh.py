"""Head meshes and cameras for unwrapping: OBJ (with UVs) and camera-JSON input, checks with one-line errors.

Mesh: `Mesh(verts V×3, faces F×3, uvs T×2, faces_uv F×3)` — positions and UVs may keep separate index
buffers (as nvdiffrast's tri_pos / tri_uv); meshes read from OBJ share one (a vertex per v/vt pair). UV
(0, 0) is the bottom-left of the texture image (OBJ and nvdiffrast convention).

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

from uhrtex.render.camera import Camera, CameraError
from uhrtex.render.mesh import MeshError, read_obj  # one error type for meshes, shared with the captures

__all__ = ["Mesh", "MeshError", "load_obj", "load_camera", "check_camera", "Camera"]


@dataclass
class Mesh:
    verts: torch.Tensor  # V×3 float32
    faces: torch.Tensor  # F×3 int64 into verts
    uvs: torch.Tensor  # T×2 float32
    faces_uv: torch.Tensor  # F×3 int64 into uvs
    name: str = "mesh"
    normals: torch.Tensor | None = None  # V×3 smooth vertex normals (when faces == faces_uv)
    tangents: torch.Tensor | None = None  # V×4 (xyz, handedness), for normal-mapped export

    def corners(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-corner positions and UVs (3F×3, 3F×2): the unindexed mesh, triangle f = corners 3f..3f+2."""
        return self.verts[self.faces.flatten()], self.uvs[self.faces_uv.flatten()]

    @classmethod
    def from_head(cls, head, name: str = "head") -> Mesh:
        """A `uhrtex.render.mesh.RenderMesh` (one index buffer for positions and UVs)."""
        tri = head.tri.long()
        return cls(head.verts.float(), tri, head.uv.float(), tri, name, head.normals.float(), head.tangents.float())


def load_obj(path: str | Path) -> Mesh:
    """Read an OBJ with texture coordinates (the captures' reader: polygons fan-triangulated, one vertex per
    v/vt/vn triple, smooth normals + UV tangents computed). One-line MeshError for anything unusable."""
    path = Path(path)
    if path.is_file() and path.suffix.lower() != ".obj":
        raise MeshError(f"{path}: unsupported mesh format '{path.suffix}'; export the head as .obj with UVs")
    try:
        head = read_obj(path)
    except MeshError:
        raise
    except (ValueError, IndexError, RuntimeError) as e:
        msg = " ".join(str(e).split())[:120]
        raise MeshError(f"{path}: not a valid OBJ mesh ({type(e).__name__}: {msg}); fix or re-export it") from None
    if not torch.isfinite(head.verts).all() or not torch.isfinite(head.uv).all():
        raise MeshError(f"{path}: vertices or UVs contain NaN/Inf; fix or re-export the OBJ")
    return Mesh.from_head(head, path.stem)


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
    except CameraError:
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
