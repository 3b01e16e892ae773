"""Face detection and 468 3-D face landmarks, offline on CPU, behind one small interface (`Landmarker`).

The default backend runs the face-detection (BlazeFace, short range) and face-mesh TFLite models that ship
inside the PyPI wheel `mediapipe==0.10.14` with the LiteRT interpreter (`ai-edge-litert`). It reads the model
files from the installed wheel and never imports `mediapipe` itself: the wheel's Python side pins
protobuf < 5 (which clashes with wandb) and pulls jax and a second OpenCV, so it is installed `--no-deps` and
used only as a model store (docs/reconstruction.md, "Face front end"). Nothing is downloaded at run time.

The pipeline is the one the models were trained for: the detector on a letterboxed 128² view ([-1, 1]), a
square region 1.5× the face box rotated so the eyes are level, the mesh model on that region at 192² ([0, 1]),
and a second pass on the region the first pass's landmarks give. Landmarks are returned in source pixels
(x right, y down) with z in the same units (smaller = nearer the camera).
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

N_LANDMARKS = 468
DETECT_SIZE, MESH_SIZE = 128, 192
ROI_SCALE = 1.5
MIN_SCORE, NMS_IOU, MIN_PRESENCE = 0.5, 0.3, 0.5
WORK_SIDE = 1024  # landmarks run on a copy at most this large (area-downsampled): cheap on 4K+ frames, no aliasing
EYE_OUTER = (33, 263)  # the subject's right and left outer eye corners: the roll of the second pass


class FaceModelsMissing(RuntimeError):
    pass


@dataclass(frozen=True)
class Face:
    box: tuple[float, float, float, float]  # x, y, w, h in source pixels (the landmarks' bounding box)
    landmarks: np.ndarray  # N_LANDMARKS × 3 (x, y, z) in source pixels
    score: float  # detector confidence
    presence: float  # the mesh model's face-presence probability


class Landmarker(Protocol):
    def __call__(self, image: torch.Tensor) -> list[Face]:
        """3×H×W in [0, 1] -> every face found, largest first."""


def _wheel_file(*parts: str) -> Path:
    spec = importlib.util.find_spec("mediapipe")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise FaceModelsMissing("the face models are missing: pip install --no-deps mediapipe==0.10.14 "
                                "(or run `make install`); or pass --no-crop / --mesh")
    path = Path(spec.submodule_search_locations[0], *parts)
    if not path.is_file():
        raise FaceModelsMissing(f"{path} is missing from the installed mediapipe wheel; reinstall "
                                "mediapipe==0.10.14 --no-deps")
    return path


@cache
def _interpreter(model: str):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as e:
        raise FaceModelsMissing("the LiteRT interpreter is missing: pip install ai-edge-litert (or `make install`)") from e
    it = Interpreter(model_path=str(_wheel_file("modules", *model.split("/"))), num_threads=2)
    it.allocate_tensors()
    return it


def _run(model: str, x: np.ndarray) -> list[np.ndarray]:
    it = _interpreter(model)
    it.set_tensor(it.get_input_details()[0]["index"], np.ascontiguousarray(x, dtype=np.float32))
    it.invoke()
    return [it.get_tensor(d["index"]) for d in it.get_output_details()]


@cache
def _anchors() -> np.ndarray:
    """BlazeFace short-range SSD anchors (896 × 2 centres, unit size): 2 per cell at stride 8, 6 at stride 16."""
    out = []
    for stride, per_cell in ((8, 2), (16, 6)):
        n = DETECT_SIZE // stride
        ys, xs = np.meshgrid((np.arange(n) + 0.5) / n, (np.arange(n) + 0.5) / n, indexing="ij")
        out.append(np.repeat(np.stack([xs.ravel(), ys.ravel()], 1), per_cell, axis=0))
    return np.concatenate(out).astype(np.float32)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a: 4 (x0 y0 x1 y1), b: N×4 -> N."""
    iw = np.clip(np.minimum(a[2], b[:, 2]) - np.maximum(a[0], b[:, 0]), 0, None)
    ih = np.clip(np.minimum(a[3], b[:, 3]) - np.maximum(a[1], b[:, 1]), 0, None)
    inter = iw * ih
    area = lambda r: (r[..., 2] - r[..., 0]) * (r[..., 3] - r[..., 1])  # noqa: E731
    return inter / np.maximum(area(a) + area(b) - inter, 1e-9)


def _shrink(image: torch.Tensor, side: int) -> tuple[torch.Tensor, float]:
    """Area-downsampled copy with long side ≤ `side` (an integer-stride pre-pass first on huge frames), and the
    scale from source pixels to the copy's."""
    h, w = image.shape[-2:]
    k = max(1, max(h, w) // (2 * side))  # strided copy first: area pooling a whole 4K frame costs ~50 ms
    x = image[:, ::k, ::k].float().contiguous() if k > 1 else image.float()
    s = min(1.0, side / max(h, w))
    if s < 1:
        x = F.interpolate(x[None], size=(max(1, round(h * s)), max(1, round(w * s))), mode="area")[0]
    return x, x.shape[-1] / w


def detect(image: torch.Tensor) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Faces as (box x0 y0 x1 y1, 6 keypoints × 2, score) in source pixels, after weighted NMS, best first."""
    small, s = _shrink(image, DETECT_SIZE)
    pad_y, pad_x = (DETECT_SIZE - small.shape[1]) // 2, (DETECT_SIZE - small.shape[2]) // 2
    canvas = torch.zeros(3, DETECT_SIZE, DETECT_SIZE)
    canvas[:, pad_y:pad_y + small.shape[1], pad_x:pad_x + small.shape[2]] = small
    raw, logits = _run("face_detection/face_detection_short_range.tflite",
                       (canvas * 2 - 1).permute(1, 2, 0)[None].numpy())
    raw, scores = raw[0] / DETECT_SIZE, 1 / (1 + np.exp(-np.clip(logits[0, :, 0].astype(np.float64), -100, 100)))
    a = _anchors()
    centre = raw[:, :2] + a
    boxes = np.concatenate([centre - raw[:, 2:4] / 2, centre + raw[:, 2:4] / 2], 1)
    kps = raw[:, 4:16].reshape(-1, 6, 2) + a[:, None]
    keep = scores >= MIN_SCORE
    boxes, kps, scores = boxes[keep], kps[keep], scores[keep]
    faces = []
    order = np.argsort(-scores)
    while order.size:  # weighted NMS: overlapping candidates are averaged by score
        near = order[_iou(boxes[order[0]], boxes[order]) > NMS_IOU]
        wts = scores[near][:, None]
        box = (boxes[near] * wts).sum(0) / wts.sum()
        kp = (kps[near] * wts[:, :, None]).sum(0) / wts.sum()
        faces.append((box, kp, float(scores[order[0]])))
        order = order[~np.isin(order, near)]  # stays sorted by score
    to_src = lambda p: (p * DETECT_SIZE - np.array([pad_x, pad_y], np.float32)) / s  # noqa: E731
    return [(to_src(b.reshape(2, 2)).ravel(), to_src(k), sc) for b, k, sc in faces]


def _roi(centre: np.ndarray, size: float, angle: float) -> tuple[np.ndarray, float, float]:
    return centre.astype(np.float64), float(size) * ROI_SCALE, float(angle)


def _mesh(image: torch.Tensor, centre: np.ndarray, side: float, angle: float) -> tuple[np.ndarray, float]:
    """The mesh model on the square region (centre, side, roll angle) -> (landmarks in source px, presence)."""
    h, w = image.shape[-2:]
    c, s = math.cos(angle), math.sin(angle)
    t = (torch.arange(MESH_SIZE, dtype=torch.float64) + 0.5) / MESH_SIZE - 0.5
    oy, ox = torch.meshgrid(t * side, t * side, indexing="ij")
    sx = centre[0] + c * ox - s * oy
    sy = centre[1] + s * ox + c * oy
    grid = torch.stack([(sx + 0.5) / w * 2 - 1, (sy + 0.5) / h * 2 - 1], -1)[None].float()
    patch = F.grid_sample(image[None].float(), grid, mode="bilinear", padding_mode="border", align_corners=False)[0]
    coords, flag = _run("face_landmark/face_landmark.tflite", patch.permute(1, 2, 0)[None].numpy())
    lm = coords.reshape(N_LANDMARKS, 3).astype(np.float64) / MESH_SIZE
    x, y = lm[:, 0] - 0.5, lm[:, 1] - 0.5
    out = np.stack([centre[0] + (c * x - s * y) * side, centre[1] + (s * x + c * y) * side, lm[:, 2] * side], 1)
    return out, float(1 / (1 + math.exp(-float(flag.ravel()[0]))))


def _roll(p0: np.ndarray, p1: np.ndarray) -> float:
    """The roll that makes the p0 -> p1 direction horizontal (image y points down)."""
    return -math.atan2(-(p1[1] - p0[1]), p1[0] - p0[0])


def landmarks(image: torch.Tensor) -> list[Face]:
    """The default `Landmarker`: every face the detector finds, with its mesh landmarks, largest first."""
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"landmarks() takes a 3×H×W RGB image, got {tuple(image.shape)}")
    work, ws = _shrink(image, WORK_SIDE)
    faces = []
    for box, kp, score in detect(work):
        centre = (box[:2] + box[2:]) / 2
        size = float(max(box[2] - box[0], box[3] - box[1]))
        lm, presence = _mesh(work, *_roi(centre, size, _roll(kp[0], kp[1])))
        lo, hi = lm[:, :2].min(0), lm[:, :2].max(0)  # second pass: the region the landmarks give
        lm2, presence2 = _mesh(work, *_roi((lo + hi) / 2, float((hi - lo).max()), _roll(lm[EYE_OUTER[0]], lm[EYE_OUTER[1]])))
        if presence2 >= MIN_PRESENCE:
            lm, presence = lm2, presence2
        if presence < MIN_PRESENCE:
            continue
        lm = lm / ws  # back to source pixels (z scales like x and y)
        lo, hi = lm[:, :2].min(0), lm[:, :2].max(0)
        faces.append(Face((float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])), lm, score, presence))
    return sorted(faces, key=lambda f: -f.box[2] * f.box[3])
