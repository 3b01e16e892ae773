"""Camera framing from a head mesh (paper §5: "the facial area occupies as large a portion of the image as possible").

The procedural heads are framed by constants (`render.TARGET`, `render.FRAME_HALF_HEIGHT`). A scan in any units
and position (y up, face towards +z after asset.json's scale and axes) is framed from its own vertices:

* head width W: the fixed point of W = x-extent of the vertices within `SLAB` x W of the top, iterated from a thin
  top slice. The slice grows while the skull widens and stops at the skull's width: a neck (narrower) or shoulders
  (more than `SLAB` x W below the top) do not count.
* target = (x centre of that slab, top - A W, front of that slab - B W), half height seen = K W.

A, B, K are the means over 24 procedural heads of what reproduces their fixed framing (K: 0.97 +- 0.03), so a scan
renders as the procedural heads do. Everything scales and moves with the mesh: a head scaled by s and moved by t
gets target s T + t and half height s H, and the same image.
"""

from __future__ import annotations

from dataclasses import dataclass

import math

import torch

from uhrtex.render.camera import Camera, look_at

SLAB = 1.3
A, B, K = 0.866, 0.549, 0.970


@dataclass(frozen=True)
class Frame:
    """Where the camera aims (world units) and the half height it sees there at the nominal distance."""

    target: tuple[float, float, float]
    half_height: float
    head_width: float | None = None

    def meta(self) -> dict:
        return {"mode": "auto", "target": list(self.target), "half_height": self.half_height, "head_width": self.head_width}


def head_width(verts: torch.Tensor, iters: int = 100) -> float:
    """The skull's x-extent (see the module doc), from N x 3 vertices (y up)."""
    v = verts.double()
    y, top = v[:, 1], float(v[:, 1].max())
    w = max((top - float(y.min())) * 0.02, 1e-12)
    for _ in range(iters):
        x = v[y >= top - SLAB * w, 0]
        new = float(x.max() - x.min())
        if abs(new - w) <= 1e-9 * new:
            break
        w = new
    return w


def head_frame(verts: torch.Tensor) -> Frame:
    """The `Frame` of a head mesh in uhrtex axes (y up, face towards +z), any units and position."""
    v = verts.double()
    w = head_width(v)
    top = float(v[:, 1].max())
    slab = v[v[:, 1] >= top - SLAB * w]
    cx = float(slab[:, 0].max() + slab[:, 0].min()) / 2
    return Frame((cx, top - A * w, float(slab[:, 2].max()) - B * w), K * w, w)


def fitted_near_far(verts: torch.Tensor, world_to_camera: torch.Tensor) -> tuple[float, float]:
    """Clip planes around the mesh's camera-space depths (scale-invariant, unlike fixed world-unit margins)."""
    z = verts.double() @ world_to_camera[2, :3].double().to(verts.device) + float(world_to_camera[2, 3])
    lo, hi = float(z.min()), float(z.max())
    return max(0.9 * lo, 1e-3 * hi), 1.1 * hi


def frontal_camera(verts: torch.Tensor, size: int, fov_y_deg: float = 20.0) -> Camera:
    """A frontal portrait camera framed on a head mesh (world vertices, y up, face towards +z), size² pixels."""
    f = head_frame(verts)
    dist = f.half_height / math.tan(math.radians(fov_y_deg) / 2)
    eye = (f.target[0], f.target[1], f.target[2] + dist)
    return Camera.from_fov(fov_y_deg, size, size, look_at(eye, f.target), id="preview")
