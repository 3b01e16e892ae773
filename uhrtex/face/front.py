"""The face front end of a reconstruction (paper §5): find the face, crop a square around it, mask it.

`find_face` runs a `Landmarker` (default: `uhrtex.face.landmarker.landmarks`) and picks the largest face, with a
warning when there are several, when the face is cut off by the frame, or when it is turned far to the side.
`crop_to_face` cuts a square of `CROP_SCALE` × the landmarks' box (the framing of the training renders: the
landmark box spans about this fraction of a capture), resized to the model's input, and carries the landmarks
into the crop. `face_mask` is the landmarks' convex hull: maps and unwraps cover the face, not the background.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F

from uhrtex.face.landmarker import Face, Landmarker, landmarks

CROP_SCALE = 2.05  # crop side / landmark-box side: the training renders' framing (box ≈ 0.46-0.50 of the frame)
MAX_YAW_DEG = 35.0  # beyond: one side of the face is mostly hidden (training renders: |yaw| ≤ 30°)
CUT_OFF_TOLERANCE = 0.02  # of the face box: landmarks further outside the frame mean the face is cut off
PAPER_MIN_FACE_PX = 3000  # paper: the facial area spans ≥ 3000 px of a 4096² input for real detail
CHEEKS = (234, 454)  # the face's right and left edge at cheek height


class FaceNotFoundError(ValueError):
    pass


@dataclass
class FaceInfo:
    face: Face  # in the current image's pixels (after `crop_to_face`: the crop's)
    n_faces: int
    yaw_deg: float
    warnings: list[str] = field(default_factory=list)
    crop: tuple[int, int, int] | None = None  # x0, y0, side in the source (may extend past the border)
    source_box: tuple[float, float, float, float] | None = None
    upscale: float = 1.0

    def to_dict(self) -> dict:
        return {"found": True, "box": [round(v, 1) for v in (self.source_box or self.face.box)],
                "n_landmarks": int(len(self.face.landmarks)), "n_faces": self.n_faces, "score": round(self.face.score, 4),
                "yaw_deg": round(self.yaw_deg, 1), "crop": list(self.crop) if self.crop else None,
                "upscale": round(self.upscale, 4), "warnings": list(self.warnings)}


def yaw_deg(face: Face) -> float:
    """Head yaw from the 3-D landmarks: the angle of the cheek-to-cheek line out of the image plane."""
    a, b = face.landmarks[CHEEKS[0]], face.landmarks[CHEEKS[1]]
    return math.degrees(math.atan2(b[2] - a[2], b[0] - a[0]))


def find_face(image: torch.Tensor, name: str = "image", landmarker: Landmarker = landmarks) -> FaceInfo:
    """The largest face in a 3×H×W image in [0, 1], with warnings (issued and recorded). One-line error if none."""
    faces = landmarker(image)
    if not faces:
        raise FaceNotFoundError(f"{name}: no face found; pass --no-crop to use the whole image as it is, or --mesh "
                                "and --camera to give the geometry yourself")
    face, notes = faces[0], []
    if len(faces) > 1:
        notes.append(f"{name}: {len(faces)} faces found; using the largest")
    h, w = image.shape[-2:]
    x, y = face.landmarks[:, 0], face.landmarks[:, 1]
    tol = CUT_OFF_TOLERANCE * max(face.box[2], face.box[3])
    if x.min() < -tol or y.min() < -tol or x.max() > w + tol or y.max() > h + tol:
        notes.append(f"{name}: the face is cut off by the frame; the missing part is filled from the template head")
    yaw = yaw_deg(face)
    if abs(yaw) > MAX_YAW_DEG:
        notes.append(f"{name}: the face is turned {abs(yaw):.0f}° to the side (more than {MAX_YAW_DEG:.0f}°); "
                     "its far side is mostly hidden and comes from the template head")
    for n in notes:
        warnings.warn(n, stacklevel=2)
    return FaceInfo(face, len(faces), yaw, notes)


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Square C×n×n -> C×size×size: area when shrinking, bicubic when enlarging (OpenCV: ~10× torch's bicubic on CPU)."""
    import cv2

    hwc = np.ascontiguousarray(x.permute(1, 2, 0).numpy(), dtype=np.float32)
    out = cv2.resize(hwc, (size, size), interpolation=cv2.INTER_AREA if x.shape[-1] > size else cv2.INTER_CUBIC)
    # Left in its H×W×C memory (a C×H×W view with channels-last strides): the pipeline's patches are channels-last
    # anyway, and a contiguous copy would cost more than the resize (~90 ms at 4096²).
    return torch.from_numpy(out.reshape(size, size, -1)).clamp_(0, 1).permute(2, 0, 1)


def crop_to_face(image: torch.Tensor, info: FaceInfo, size: int, scale: float = CROP_SCALE,
                 name: str = "image") -> tuple[torch.Tensor, FaceInfo]:
    """3×H×W -> (3×size×size square around the face, FaceInfo with the landmarks in the crop's pixels).

    The square slides to stay inside the photo where it fits; what still falls outside is edge-replicated."""
    h, w = image.shape[-2:]
    bx, by, bw, bh = info.face.box
    side = max(int(round(scale * max(bw, bh))), 1)
    x0, y0 = int(round(bx + bw / 2 - side / 2)), int(round(by + bh / 2 - side / 2))
    x0 = min(max(x0, 0), w - side) if side <= w else x0
    y0 = min(max(y0, 0), h - side) if side <= h else y0
    pads = (max(-x0, 0), max(x0 + side - w, 0), max(-y0, 0), max(y0 + side - h, 0))
    crop = image[:, max(y0, 0):min(y0 + side, h), max(x0, 0):min(x0 + side, w)].float()
    if any(pads):
        crop = F.pad(crop[None], pads, mode="replicate")[0]
    s = size / side
    lm = info.face.landmarks.copy()
    lm[:, :2] = (lm[:, :2] - np.array([x0, y0])) * s
    lm[:, 2] *= s
    box = (float((bx - x0) * s), float((by - y0) * s), float(bw * s), float(bh * s))
    notes = list(info.warnings)
    min_px = int(round(PAPER_MIN_FACE_PX * size / 4096))
    if side < min_px:
        msg = (f"{name}: the face crop is {side} px, below the {min_px} px the method needs for real detail at {size} px "
               f"(paper: 3000 px at 4096); it was upscaled {s:.2f}x, so fine detail is interpolated, not seen")
        warnings.warn(msg, stacklevel=2)
        notes.append(msg)
    out = replace(info, face=replace(info.face, landmarks=lm, box=box), warnings=notes, crop=(x0, y0, side),
                  source_box=info.face.box, upscale=s)
    return _resize(crop, size), out


def face_mask(face: Face, height: int, width: int) -> torch.Tensor:
    """1×H×W float mask: the convex hull of the landmarks (1 inside)."""
    from PIL import Image, ImageDraw
    from scipy.spatial import ConvexHull

    xy = face.landmarks[:, :2] - 0.5  # PIL's coordinates are pixel centres
    hull = xy[ConvexHull(xy).vertices]
    mask = torch.zeros(1, height, width)
    # Drawn only over the hull's bounding box: converting a whole 4K PIL image costs ~25 ms, the box a few.
    x0, y0 = (max(0, int(np.floor(v)) - 1) for v in hull.min(0))
    x1, y1 = min(width, int(np.ceil(hull[:, 0].max())) + 2), min(height, int(np.ceil(hull[:, 1].max())) + 2)
    if x1 <= x0 or y1 <= y0:
        return mask
    img = Image.new("L", (x1 - x0, y1 - y0), 0)
    ImageDraw.Draw(img).polygon([(float(x) - x0, float(y) - y0) for x, y in hull], fill=255)
    mask[0, y0:y1, x0:x1] = torch.from_numpy(np.array(img)).to(torch.float32).div_(255.0)
    return mask
