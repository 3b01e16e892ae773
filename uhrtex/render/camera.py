"""Cameras: OpenCV intrinsics/extrinsics, the clip matrix of the rasterizer, and `look_at`.

* Intrinsics fx, fy, cx, cy in pixels. The image spans [0, W] x [0, H] with (0, 0) at the top-left *corner* of the
  top-left pixel, so pixel (row i, col j) has its centre at (j + 0.5, i + 0.5).
* `world_to_camera` (4 x 4): camera axes x right, y down, z forward, so a visible point has z > 0 and projects to
  u = fx x / z + cx, v = fy y / z + cy.
* `Camera.clip_from_world(near, far)` gives the matrix into `uhrtex.raster` (nvdiffrast / OpenGL) clip space, whose
  output row 0 is the *bottom* of the picture. Blender cameras are OpenGL-style: `CV_FROM_GL @ gl_world_to_camera`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch


class CameraError(ValueError):
    """A camera description that cannot be used (one line)."""


CV_FROM_GL = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=torch.float64))


@dataclass
class Camera:
    """Pinhole camera, OpenCV convention (see module doc). Sizes and intrinsics in pixels."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    world_to_camera: list[list[float]] = field(default_factory=lambda: [[float(i == j) for j in range(4)] for i in range(4)])
    id: str = "c00"

    @classmethod
    def from_fov(cls, fov_y_deg: float, width: int, height: int, world_to_camera=None, id: str = "c00") -> Camera:
        """Centred principal point, square pixels, vertical field of view in degrees."""
        f = 0.5 * height / math.tan(math.radians(fov_y_deg) / 2)
        w2c = torch.eye(4, dtype=torch.float64) if world_to_camera is None else torch.as_tensor(world_to_camera, dtype=torch.float64)
        return cls(f, f, width / 2, height / 2, int(width), int(height), w2c.tolist(), id)

    @classmethod
    def from_dict(cls, d: dict) -> Camera:
        try:
            return cls(float(d["fx"]), float(d["fy"]), float(d["cx"]), float(d["cy"]), int(d["width"]), int(d["height"]),
                       [[float(v) for v in row] for row in d["world_to_camera"]], str(d.get("id", "c00")))
        except (KeyError, TypeError, ValueError) as e:
            raise CameraError(f"camera {d!r:.80} is not fx, fy, cx, cy, width, height, world_to_camera (4x4), id: {e}") from e

    def to_dict(self) -> dict:
        return {"id": self.id, "convention": "opencv", "fx": self.fx, "fy": self.fy, "cx": self.cx, "cy": self.cy,
                "width": self.width, "height": self.height, "world_to_camera": [list(map(float, r)) for r in self.world_to_camera]}

    def scaled(self, width: int, height: int) -> Camera:
        """The same camera for an image resized to width x height (e.g. the global view)."""
        sx, sy = width / self.width, height / self.height
        return Camera(self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy, width, height, self.world_to_camera, self.id)

    def intrinsics(self, dtype=torch.float64) -> torch.Tensor:
        """3 x 3 K."""
        return torch.tensor([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1]], dtype=dtype)

    def extrinsics(self, dtype=torch.float64) -> torch.Tensor:
        """4 x 4 world -> camera (OpenCV axes)."""
        return torch.tensor(self.world_to_camera, dtype=dtype)

    def projection(self, near: float = 0.01, far: float = 100.0, dtype=torch.float64) -> torch.Tensor:
        """4 x 4 OpenCV camera space -> OpenGL clip space (NDC y up; depth -1 at near, +1 at far)."""
        w, h = self.width, self.height
        return torch.tensor([
            [2 * self.fx / w, 0, 2 * self.cx / w - 1, 0],
            [0, -2 * self.fy / h, 1 - 2 * self.cy / h, 0],
            [0, 0, (far + near) / (far - near), -2 * far * near / (far - near)],
            [0, 0, 1, 0],
        ], dtype=dtype)  # fmt: skip

    def clip_from_world(self, near: float = 0.01, far: float = 100.0, dtype=torch.float32) -> torch.Tensor:
        """4 x 4 for `uhrtex.raster`: pos_clip = (M @ [x, y, z, 1]^T)^T. Flip the raster output's rows."""
        return (self.projection(near, far) @ self.extrinsics()).to(dtype)

    def project(self, points: torch.Tensor) -> torch.Tensor:
        """N x 3 world points -> N x 3 (u, v, z): pixel coordinates (corner convention) and camera depth."""
        p = points.to(torch.float64) @ self.extrinsics()[:3, :3].T + self.extrinsics()[:3, 3]
        z = p[:, 2]
        return torch.stack([self.fx * p[:, 0] / z + self.cx, self.fy * p[:, 1] / z + self.cy, z], dim=1)


def look_at(eye: Sequence[float], target: Sequence[float], up: Sequence[float] = (0.0, 1.0, 0.0)) -> torch.Tensor:
    """4 x 4 world -> camera (OpenCV axes) for a camera at `eye` looking at `target`; `up` is world up."""
    eye_t, target_t, up_t = (torch.as_tensor(v, dtype=torch.float64) for v in (eye, target, up))
    z = target_t - eye_t
    z = z / z.norm()
    x = torch.linalg.cross(-up_t, z)  # OpenCV: x = y x z with y pointing down
    if x.norm() < 1e-12:
        raise ValueError(f"look_at: up {tuple(up)} is parallel to the viewing direction; pick another up vector")
    x = x / x.norm()
    y = torch.linalg.cross(z, x)
    rot = torch.stack([x, y, z])  # rows: camera axes in world coordinates
    m = torch.eye(4, dtype=torch.float64)
    m[:3, :3] = rot
    m[:3, 3] = -rot @ eye_t
    return m


# ---------------------------------------------------------------------------------------------- capture
