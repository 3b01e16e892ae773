"""The capture format: seven image-space maps of one rendered frame plus its metadata.

A capture is one subject x lighting x camera. Its maps follow `uhrtex.maps.CAPTURE`
(`image albedo micronormal specular uv normal mask`), each C x H x W float32 in [0, 1] with row 0 at
the top of the picture. Outside the mask every map is 0 except `image` (background radiance).

Map semantics:
* `image`, `albedo`: sRGB-encoded colour. `specular`: linear specular intensity/albedo in [0, 1].
* `micronormal`: tangent-space normal (x along +u, y along +v, z out of the surface), encoded (n+1)/2,
  so a flat surface is (0.5, 0.5, 1).
* `normal`: geometry normal in *view* axes x right, y up, z towards the viewer (the usual normal-map
  look: a surface facing the camera is (0.5, 0.5, 1)), encoded (n+1)/2. These are the OpenCV camera
  axes below with y and z negated (`CV_FROM_GL`).
* `uv`: (u, v) in the unified UV space, u along texture columns, v = 0 at the bottom row of the texture.
* `mask`: face coverage in [0, 1] (soft at the silhouette when antialiased).

Camera (stored in `meta["camera"]`, see `Camera`): OpenCV convention.
* Intrinsics fx, fy, cx, cy in pixels. The image spans [0, W] x [0, H] with (0, 0) at the top-left
  *corner* of the top-left pixel, so pixel (row i, col j) has its centre at (j + 0.5, i + 0.5) and a
  centred principal point is (W / 2, H / 2).
* `world_to_camera` (4 x 4): camera axes x right, y down, z forward (into the scene), so a visible
  point has z > 0 and projects to u = fx x / z + cx, v = fy y / z + cy.
* `Camera.clip_from_world(near, far)` gives the matrix into `uhrtex.raster` (nvdiffrast / OpenGL) clip
  space. nvdiffrast puts NDC y = -1 on its output row 0, i.e. raster output row 0 is the *bottom* of
  the picture: flip the raster output along rows (`.flip(1)` on B x H x W x C) to get capture maps.
  Blender cameras are OpenGL-style (x right, y up, looking down -z): `CV_FROM_GL @ gl_world_to_camera`.

Store quantisation (see `quantize`): the store keeps every map on a 16-bit grid k / 65535. 8- and
16-bit PNG values are on that grid already (k / 255 = 257 k / 65535); float renderer output moves by at
most half a step (7.6e-6). A capture that went through `quantize` round-trips through the store bit-exactly.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from uhrtex.maps import CAPTURE
from uhrtex.render.camera import CV_FROM_GL, Camera, CameraError, look_at  # noqa: F401 - re-exported: captures store cameras

REQUIRED_META = ("subject", "lighting", "camera", "mesh", "renderer", "resolution")
RENDERERS = ("builtin", "blender", "placeholder")
KEY_SEPARATOR = "__"
# Id parts of a store key: start alphanumeric (store-internal names start with "_"), no separator inside.
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.\-]*(_[A-Za-z0-9.\-]+)*$")
QUANT_LEVELS = 65535

# OpenGL camera axes (x right, y up, z backwards) -> OpenCV camera axes (x right, y down, z forward).


class CaptureError(CameraError):
    """A capture that breaks the format; the message is one line naming the capture and the problem."""


def check_id(kind: str, value: str) -> str:
    if not isinstance(value, str) or not _ID.match(value) or KEY_SEPARATOR in value:
        raise CaptureError(f"{kind} id {value!r} is not usable in a store key; use letters, digits, '.', '-', "
                           f"single '_' (not '{KEY_SEPARATOR}'), starting with a letter or digit")
    return value


def capture_key(subject: str, lighting: str, camera: str) -> str:
    """The store key `<subject>__<lighting>__<camera>`."""
    return KEY_SEPARATOR.join(check_id(k, v) for k, v in (("subject", subject), ("lighting", lighting), ("camera", camera)))


def split_key(key: str) -> tuple[str, str, str]:
    parts = key.split(KEY_SEPARATOR)
    if len(parts) != 3:
        raise CaptureError(f"capture key {key!r} is not '<subject>{KEY_SEPARATOR}<lighting>{KEY_SEPARATOR}<camera>'")
    return parts[0], parts[1], parts[2]


# ----------------------------------------------------------------------------------------------- camera


def quantize(x: torch.Tensor) -> torch.Tensor:
    """float in [0, 1] -> the store's 16-bit grid, as float32 (what the store reads back, bit for bit)."""
    return dequantize(to_uint16(x))


def to_uint16(x: torch.Tensor) -> torch.Tensor:
    """float in [0, 1] -> uint16 codes 0..65535 (float64 product, round half to even; clamps)."""
    # numpy: no intra-op thread pool, which costs more than the work on small maps on a busy CPU.
    a = np.clip(x.detach().cpu().numpy().astype(np.float64), 0, 1) * QUANT_LEVELS
    return torch.from_numpy(np.rint(a).astype(np.uint16))


def dequantize(codes: torch.Tensor) -> torch.Tensor:
    """16-bit codes (torch or numpy, any int dtype) -> float32 k / 65535. The one place that defines it."""
    a = codes.numpy() if isinstance(codes, torch.Tensor) else np.asarray(codes)
    return torch.from_numpy(a.astype(np.float32) / np.float32(QUANT_LEVELS))


@dataclass
class Capture:
    """Seven maps (`maps.CAPTURE`, C x H x W float32 in [0, 1]) and metadata (see module doc)."""

    maps: dict[str, torch.Tensor]
    meta: dict[str, Any]

    @property
    def size(self) -> tuple[int, int]:
        h, w = self.maps["image"].shape[-2:]
        return int(h), int(w)

    @property
    def key(self) -> str:
        cam = self.meta.get("camera") or {}
        return capture_key(str(self.meta.get("subject")), str(self.meta.get("lighting")), str(cam.get("id", "c00")))

    @property
    def camera(self) -> Camera:
        return Camera.from_dict(self.meta["camera"])

    def quantized(self) -> Capture:
        """A copy on the store's 16-bit grid (what `CaptureStore.read` returns after `write`)."""
        return Capture({k: quantize(v) for k, v in self.maps.items()}, copy.deepcopy(self.meta))

    def validate(self, name: str | None = None) -> Capture:
        """Raise a one-line CaptureError for a missing/extra map, wrong shape/dtype, NaN/Inf, out-of-range value or bad meta."""
        where = f"capture {name or self.meta.get('subject', '?')}"
        missing = [n for n in CAPTURE.names if n not in self.maps]
        if missing:
            raise CaptureError(f"{where}: missing maps {missing}; a capture has {list(CAPTURE.names)}")
        extra = sorted(set(self.maps) - set(CAPTURE.names))
        if extra:
            raise CaptureError(f"{where}: unknown maps {extra}; a capture has {list(CAPTURE.names)}")
        size = None
        for n in CAPTURE.names:
            m = self.maps[n]
            if not isinstance(m, torch.Tensor) or m.dtype != torch.float32 or m.dim() != 3:
                raise CaptureError(f"{where}: map '{n}' must be a float32 C x H x W tensor, got "
                                   f"{getattr(m, 'dtype', type(m).__name__)} {list(getattr(m, 'shape', []))}")
            if m.shape[0] != CAPTURE.width(n):
                raise CaptureError(f"{where}: map '{n}' has {m.shape[0]} channels, expected {CAPTURE.width(n)}")
            size = size or tuple(m.shape[1:])
            if tuple(m.shape[1:]) != size:
                raise CaptureError(f"{where}: map '{n}' is {m.shape[1]}x{m.shape[2]}, the image is {size[0]}x{size[1]}; "
                                   "all maps must have the same size")
            a = m.detach().cpu().numpy()  # numpy: torch's thread pool costs more than these reductions
            if not np.isfinite(a).all():
                raise CaptureError(f"{where}: map '{n}' contains NaN or Inf")
            lo, hi = float(a.min()), float(a.max())
            if lo < 0 or hi > 1:
                raise CaptureError(f"{where}: map '{n}' has values in [{lo:.4g}, {hi:.4g}], outside [0, 1]; "
                                   "encode normals as (n+1)/2 and clamp/tonemap colour")
        self.validate_meta(where)
        return self

    def validate_meta(self, where: str = "capture") -> None:
        missing = [k for k in REQUIRED_META if k not in self.meta]
        if missing:
            raise CaptureError(f"{where}: meta lacks {missing}; required: {list(REQUIRED_META)}")
        if self.meta["renderer"] not in RENDERERS:
            raise CaptureError(f"{where}: meta renderer {self.meta['renderer']!r} is not one of {list(RENDERERS)}")
        Camera.from_dict(self.meta["camera"])
        try:
            json.dumps(self.meta)
        except TypeError as e:
            raise CaptureError(f"{where}: meta is not JSON-serialisable ({e}); use plain lists/numbers/strings") from e
        self.key  # noqa: B018 - validates the id parts
