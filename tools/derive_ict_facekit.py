"""Derive uhrtex's compact ICT-FaceKit model data from a checkout of ICT-FaceKit (MIT licence, USC ICT).

    git clone https://github.com/ICT-VGL/ICT-FaceKit && git -C ICT-FaceKit checkout da5f95a
    python tools/derive_ict_facekit.py --ict-dir ICT-FaceKit --out uhrtex/head_model/data

Reads `FaceXModel/generic_neutral_mesh.obj`, the 100 `identityNNN.obj` and the 53 expression OBJs named in
`FaceXModel/vertex_indices.json`, and writes `ict_facekit.npz` (see `uhrtex.head_model.model` for its fields):
the neutral mesh in cm, every shape as a delta from it quantised to int16 steps of 10 µm, the triangulated faces with their UV indices, each face's material and geometry part, and the landmark
vertex lists of the README and vertex_indices.json. The MIT notice is copied beside it (LICENSE-ICT-FaceKit.txt).
The output is byte-identical for the same input.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

# Vertex ranges of the README's "Face Model Topology" table (inclusive), in the file's vertex order.
PARTS = ("face", "head_neck", "mouth_socket", "eye_socket_left", "eye_socket_right", "gums_tongue", "teeth",
         "eyeball_left", "eyeball_right", "lacrimal_left", "lacrimal_right", "eye_blend_left", "eye_blend_right",
         "eye_occlusion_left", "eye_occlusion_right", "eyelashes_left", "eyelashes_right")
PART_FIRST_VERTEX = (0, 9409, 11248, 13294, 13678, 14062, 17039, 21451, 23021, 24591, 24795, 24999, 25023, 25047,
                     25199, 25351, 26035)
N_VERTS = 26719
# Iris vertex ranges (README "Eyeball Details"): the rest of each eyeball is sclera.
IRIS = ((22221, 23020), (23791, 24590))
# Landmarks (README "Facial Landmarks"): the jawline vertices that replace Multi-PIE's 0-7 and 9-16.
JAW_RIGHT = (1278, 1272, 12, 1834, 243, 781, 2199, 1447)
JAW_LEFT = (3661, 4390, 3022, 2484, 4036, 2253, 3490, 3496)
HEADER_LINES = 24  # the MIT notice at the top of every OBJ


def fail(msg: str) -> None:
    sys.exit(f"error: {msg}")


def read_obj(path: Path, with_faces: bool):
    if not path.is_file():
        fail(f"{path} is missing; pass --ict-dir pointing at an ICT-FaceKit checkout (it has FaceXModel/)")
    verts, vts, faces, face_vt, mats, mat = [], [], [], [], [], None
    for line in path.read_text().splitlines():
        if line.startswith("v "):
            verts.append(line.split()[1:4])
        elif not with_faces:
            continue
        elif line.startswith("vt "):
            vts.append(line.split()[1:3])
        elif line.startswith("usemtl "):
            mat = line.split()[1]
        elif line.startswith("f "):
            corners = [c.split("/") for c in line.split()[1:]]
            for k in range(1, len(corners) - 1):  # fan triangulation of the quads
                tri = (corners[0], corners[k], corners[k + 1])
                faces.append([int(c[0]) - 1 for c in tri])
                face_vt.append([int(c[1]) - 1 for c in tri])
                mats.append(mat)
    v = np.asarray(verts, dtype=np.float64)
    if v.shape != (N_VERTS, 3):
        fail(f"{path} has {v.shape[0]} vertices, expected {N_VERTS} (a different ICT-FaceKit version?)")
    if not with_faces:
        return v
    return v, np.asarray(vts, dtype=np.float64), np.asarray(faces, np.int32), np.asarray(face_vt, np.int32), mats


STEP_CM = 1e-3  # 10 µm: far below a pore; the deltas (up to ~4 cm) fit int16, and the file is 2.5x smaller than at 1 µm


def quantise(deltas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[K, V, 3] float (cm) -> int16 values and [K] float32 scales (value * scale ~ delta, error <= STEP_CM / 2)."""
    if np.abs(deltas).max() / STEP_CM > 32767:
        fail(f"a shape moves a vertex by {np.abs(deltas).max():.1f} cm, more than int16 steps of {STEP_CM} cm hold")
    q = np.round(deltas / STEP_CM).astype(np.int16)
    return q, np.full(len(deltas), STEP_CM, np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ict-dir", required=True, type=Path, help="ICT-FaceKit checkout (holds FaceXModel/)")
    ap.add_argument("--out", required=True, type=Path, help="output folder (uhrtex/head_model/data)")
    ap.add_argument("--commit", default=None, help="the checkout's commit, if it is not a git clone")
    a = ap.parse_args()
    fx = a.ict_dir / "FaceXModel"
    commit = a.commit or subprocess.run(["git", "-C", str(a.ict_dir), "rev-parse", "HEAD"], capture_output=True,
                                        text=True).stdout.strip() or "unknown"
    config = json.loads((fx / "vertex_indices.json").read_text())
    neutral, vt, faces, face_vt, mats = read_obj(fx / "generic_neutral_mesh.obj", True)
    identity_files = sorted(fx.glob("identity[0-9][0-9][0-9].obj"))
    if len(identity_files) != 100:
        fail(f"{fx} holds {len(identity_files)} identityNNN.obj files, expected 100")
    print(f"reading {len(identity_files)} identities and {len(config['expressions'])} expressions ...", file=sys.stderr)
    identity = np.stack([read_obj(p, False) - neutral for p in identity_files])
    expressions = np.stack([read_obj(fx / f"{n}.obj", False) - neutral for n in config["expressions"]])
    id_q, id_s = quantise(identity)
    ex_q, ex_s = quantise(expressions)
    err = max(np.abs(id_q * id_s[:, None, None] - identity).max(), np.abs(ex_q * ex_s[:, None, None] - expressions).max())
    print(f"quantisation error {err * 1e4:.3f} µm", file=sys.stderr)
    material_names = sorted(set(mats))
    part = np.searchsorted(np.asarray(PART_FIRST_VERTEX), faces[:, 0], side="right") - 1
    arrays = {
        "neutral": neutral.astype(np.float32),
        "identity_q": id_q, "identity_scale": id_s,
        "expression_q": ex_q, "expression_scale": ex_s,
        "expression_names": np.asarray(config["expressions"]),
        "faces": faces, "faces_uv": face_vt, "uv": vt.astype(np.float32),
        "face_material": np.asarray([material_names.index(m) for m in mats], np.uint8),
        "material_names": np.asarray(material_names),
        "face_part": part.astype(np.uint8), "part_names": np.asarray(PARTS),
        "part_first_vertex": np.asarray(PART_FIRST_VERTEX, np.int32),
        "iris_vertices": np.asarray(IRIS, np.int32),
        "landmarks_multipie68": np.asarray(config["idx_to_landmark_verts"], np.int32),
        "jaw_right": np.asarray(JAW_RIGHT, np.int32), "jaw_left": np.asarray(JAW_LEFT, np.int32),
        "source": np.asarray(f"github:ICT-VGL/ICT-FaceKit@{commit} FaceXModel/"),
    }
    a.out.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:  # fixed dates: byte-identical
        for name in sorted(arrays):
            arr = io.BytesIO()
            np.lib.format.write_array(arr, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, arr.getvalue())
    out = a.out / "ict_facekit.npz"
    out.write_bytes(buf.getvalue())
    header = "\n".join(line.strip("# ").rstrip() for line in
                       (fx / "generic_neutral_mesh.obj").read_text().splitlines()[:HEADER_LINES] if line.strip("#").strip())
    (a.out / "LICENSE-ICT-FaceKit.txt").write_text(
        "uhrtex/head_model/data/ict_facekit.npz is derived from ICT-FaceKit (ICT Face Model Light),\n"
        f"github:ICT-VGL/ICT-FaceKit@{commit}, folder FaceXModel/, by tools/derive_ict_facekit.py.\n"
        "Credits: USC Institute for Creative Technologies, Vision and Graphics Lab (see ICT-FaceKit's CREDITS.md).\n\n"
        + header + "\n")
    print(f"{out}: {out.stat().st_size / 1e6:.2f} MB, sha256 {hashlib.sha256(buf.getvalue()).hexdigest()[:16]}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
