"""The rasterizer's mesh: one index buffer for positions and UVs (a vertex per position/UV pair), smooth normals
welded across UV seams, UV tangent frames, and an optional material id per triangle. Shared by the capture
renderer, the preview renderer and the .glb export; `read_obj` / `write_obj` are its Wavefront OBJ I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import torch


class MeshError(ValueError):
    """A mesh that cannot be used (one line: the file and the problem)."""


@dataclass
class RenderMesh:
    """Triangle mesh with per-vertex UVs, float32 / int32 tensors on one device."""

    verts: torch.Tensor  # V×3 world units
    uv: torch.Tensor  # V×2, v up
    tri: torch.Tensor  # T×3 int32, counter-clockwise seen from outside
    normals: torch.Tensor  # V×3 unit, smooth
    tangents: torch.Tensor  # V×4: unit dP/du direction + handedness (+1: bitangent = n × t is +v)
    material: torch.Tensor | None = None  # T int64 index into `materials`, or None: one material
    materials: tuple[str, ...] = ()
    source_vertex: torch.Tensor | None = field(default=None, repr=False)  # V int64: the model vertex each came from

    def to(self, device) -> RenderMesh:
        move = lambda x: None if x is None else x.to(device)  # noqa: E731
        return replace(self, verts=self.verts.to(device), uv=self.uv.to(device), tri=self.tri.to(device),
                       normals=self.normals.to(device), tangents=self.tangents.to(device), material=move(self.material),
                       source_vertex=move(self.source_vertex))


def vertex_normals(verts: torch.Tensor, tri: torch.Tensor, weld: torch.Tensor | None = None) -> torch.Tensor:
    """Area-weighted smooth normals V×3. `weld` (V int64): vertices with the same id share one normal (a UV seam or
    a duplicated position does not show in the shading)."""
    t = tri.long()
    p0, p1, p2 = verts[t[:, 0]], verts[t[:, 1]], verts[t[:, 2]]
    fn = torch.linalg.cross(p1 - p0, p2 - p0)
    ids = torch.arange(verts.shape[0], device=verts.device) if weld is None else weld
    acc = torch.zeros(int(ids.max()) + 1, 3, dtype=verts.dtype, device=verts.device)
    for k in range(3):
        acc.index_add_(0, ids[t[:, k]], fn)
    n = acc[ids]
    return n / n.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def position_weld(verts: torch.Tensor, decimals: int = 5) -> torch.Tensor:
    """V int64 ids, equal for vertices at the same position (to `decimals` in the mesh's units)."""
    return torch.unique(torch.round(verts.double() * 10**decimals), dim=0, return_inverse=True)[1]


def uv_tangents(verts, uv, tri, normals) -> torch.Tensor:
    """Per-vertex tangent frames from UV gradients (Lengyel's method) for arbitrary meshes: V×4."""
    t = tri.long()
    p0, p1, p2 = verts[t[:, 0]], verts[t[:, 1]], verts[t[:, 2]]
    w0, w1, w2 = uv[t[:, 0]], uv[t[:, 1]], uv[t[:, 2]]
    e1, e2, d1, d2 = p1 - p0, p2 - p0, w1 - w0, w2 - w0
    det = d1[:, 0] * d2[:, 1] - d2[:, 0] * d1[:, 1]
    r = torch.where(det.abs() > 1e-20, 1 / det, torch.zeros_like(det))[:, None]
    sdir = (e1 * d2[:, 1:2] - e2 * d1[:, 1:2]) * r
    tdir = (e2 * d1[:, 0:1] - e1 * d2[:, 0:1]) * r
    tan, bit = torch.zeros_like(verts), torch.zeros_like(verts)
    for k in range(3):
        tan.index_add_(0, t[:, k], sdir)
        bit.index_add_(0, t[:, k], tdir)
    tan = tan - (tan * normals).sum(-1, keepdim=True) * normals
    tan = tan / tan.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    sign = torch.where((torch.linalg.cross(normals, tan) * bit).sum(-1, keepdim=True) < 0, -1.0, 1.0)
    return torch.cat([tan, sign], -1)


def split_by_uv(faces: torch.Tensor, faces_uv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(position index, uv index) pairs of the corners -> (pair per render vertex: V×2, triangles T×3 into them)."""
    pos, uv = faces.reshape(-1).long(), faces_uv.reshape(-1).long()
    # One int64 key per pair, ordered as the pairs are (position first): a 1-D unique is ~30x faster than
    # `torch.unique(dim=0)` on the N×2 pairs and gives the same vertices in the same order.
    n_uv = int(uv.max()) + 1 if uv.numel() else 1
    keys, inverse = torch.unique(pos * n_uv + uv, return_inverse=True)
    return keys // n_uv, keys % n_uv, inverse.view(-1, 3)


def build(verts: torch.Tensor, faces: torch.Tensor, uv: torch.Tensor, faces_uv: torch.Tensor,
          material: torch.Tensor | None = None, materials: tuple[str, ...] = (), weld: torch.Tensor | None = None
          ) -> RenderMesh:
    """A RenderMesh from separately indexed positions (P×3) and UVs (U×2). Normals are smooth over `weld` (P int64
    ids of the positions that are one surface point; default: the faces' own position indices)."""
    pos_idx, uv_idx, tri = split_by_uv(faces.long(), faces_uv.long())
    n = vertex_normals(verts.double(), faces, weld).float()[pos_idx]
    v, w = verts[pos_idx].float(), uv[uv_idx].float()
    return RenderMesh(v, w, tri.int(), n, uv_tangents(v, w, tri, n), material, materials, pos_idx)


# ------------------------------------------------------------------------------------------ OBJ I/O


def write_obj(mesh: RenderMesh, path: str | Path, mtl_name: str | None = None, materials: tuple[str, ...] | None = None
              ) -> Path:
    """Wavefront OBJ with v / vt / vn and faces `a/a/a` (positions, UVs, normals share indices); written atomically.
    `materials` (the mesh's material names): one `usemtl` group per material, from `mtl_name`.mtl."""
    import numpy as np

    path = Path(path)
    head = f"# uhrtex head: {mesh.verts.shape[0]} vertices, {mesh.tri.shape[0]} triangles\n"
    if mtl_name:
        head += f"mtllib {mtl_name}.mtl\n" + ("" if materials else f"usemtl {mtl_name}\n")
    v = np.asarray(mesh.verts.detach().cpu().double())
    vt = np.asarray(mesh.uv.detach().cpu().double())
    vn = np.asarray(mesh.normals.detach().cpu().double())
    f = np.asarray(mesh.tri.detach().cpu().long()) + 1
    face_lines = "".join(f"f {a}/{a}/{a} {b}/{b}/{b} {c}/{c}/{c}\n" for a, b, c in f)
    if materials:
        mat = np.asarray(mesh.material.cpu())
        face_lines = "".join(f"usemtl {name}\n" + "".join(f"f {a}/{a}/{a} {b}/{b}/{b} {c}/{c}/{c}\n" for a, b, c in f[mat == k])
                             for k, name in enumerate(materials))
    parts = [head,
             "".join(f"v {a:.6f} {b:.6f} {c:.6f}\n" for a, b, c in v),
             "".join(f"vt {a:.7f} {b:.7f}\n" for a, b in vt),
             "".join(f"vn {a:.5f} {b:.5f} {c:.5f}\n" for a, b, c in vn),
             "s 1\n", face_lines]  # fmt: skip
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("".join(parts))
    tmp.replace(path)
    return path


def _parse_obj_lines(path: Path, text: str) -> tuple[list, list, list, list]:
    """Per line, the general reader: positions, UVs, normals and fan-triangulated (v, vt, vn) corner triples."""
    vs, vts, vns, corners = [], [], [], []
    for ln, line in enumerate(text.splitlines(), 1):
        tag, _, rest = line.strip().partition(" ")
        if tag == "v":
            vs.append([float(x) for x in rest.split()[:3]])
        elif tag == "vt":
            vts.append([float(x) for x in rest.split()[:2]])
        elif tag == "vn":
            vns.append([float(x) for x in rest.split()[:3]])
        elif tag == "f":
            poly = []
            for tok in rest.split():
                parts = (tok.split("/") + ["", ""])[:3]
                if not parts[1]:
                    raise MeshError(f"{path}: face on line {ln} has no texture coordinate (vt) index; "
                                    "the mesh needs a UV layout (unwrap it, e.g. in Blender, and re-export with UVs)")
                poly.append(tuple(int(p) if p else 0 for p in parts))
            corners += [(poly[0], poly[k], poly[k + 1]) for k in range(1, len(poly) - 1)]  # fan-triangulate
    return vs, vts, vns, corners


def _parse_obj_fast(text: str):
    """The common OBJ (`v x y z`, `vt u v`, `vn x y z`, triangles `f v/vt/vn` or `f v/vt`, one form throughout) with
    numpy's parser: ~3x faster than the per-line reader, the same numbers; None for anything else (the per-line
    reader then handles it, with its line-numbered errors)."""
    import numpy as np

    groups: dict[str, list[str]] = {"v": [], "vt": [], "vn": [], "f": []}
    for line in text.splitlines():
        tag, _, rest = line.strip().partition(" ")
        if tag in groups:
            groups[tag].append(rest)

    def floats(rows: list[str], n: int):
        flat = " ".join(rows).split()
        return np.array(flat, dtype=np.float64).reshape(-1, n) if len(flat) == n * len(rows) else None

    vs, vts = floats(groups["v"], 3), floats(groups["vt"], 2)
    vns = floats(groups["vn"], 3) if groups["vn"] else np.zeros((0, 3))
    if vs is None or vts is None or vns is None or not groups["f"]:
        return None
    toks = " ".join(groups["f"]).split()
    if len(toks) != 3 * len(groups["f"]):
        return None  # polygons, or ragged lines
    per = toks[0].count("/") + 1
    if per not in (2, 3) or any(t.count("/") != per - 1 for t in toks):
        return None
    fields = "/".join(toks).split("/")
    if "" in fields:
        return None  # a missing index (e.g. `v//vn`): the per-line reader names the line
    idx = np.array(fields, dtype=np.int64).reshape(-1, per)
    if per == 2:
        idx = np.concatenate([idx, np.zeros((len(idx), 1), np.int64)], 1)
    return vs, vts, vns, idx


def read_obj(path: str | Path) -> RenderMesh:
    """Read a triangulated-or-polygonal OBJ with UVs (one vertex per v/vt pair). Raises MeshError (one line) when
    the file is missing, has no faces, or has no texture coordinates."""
    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise MeshError(f"{path}: mesh file does not exist; check the path")
    text = path.read_text(errors="replace")
    fast = _parse_obj_fast(text)
    if fast is not None:
        vs, vts, vns, idx = fast
        return _obj_mesh(torch.from_numpy(vs), torch.from_numpy(vts), torch.from_numpy(vns), idx, path)
    vs, vts, vns, corners = _parse_obj_lines(path, text)
    idx = np.array([c for tri in corners for c in tri], dtype=np.int64).reshape(-1, 3)
    as_rows = lambda rows, n: torch.tensor(rows, dtype=torch.float64).reshape(-1, n)  # noqa: E731
    return _obj_mesh(as_rows(vs, 3), as_rows(vts, 2), as_rows(vns, 3), idx, path)


def _obj_mesh(vs: torch.Tensor, vts: torch.Tensor, vns: torch.Tensor, idx, path: Path) -> RenderMesh:
    """Corner triples (K×3 int64 numpy: 1-based or negative OBJ indices, vn 0 = none) -> one vertex per distinct
    (v, vt, vn) triple, numbered in order of first use; the file's normals when every corner names one."""
    import numpy as np

    if len(idx) == 0:
        raise MeshError(f"{path}: no faces found; export the mesh as a triangle/polygon OBJ")
    if len(vts) == 0:
        raise MeshError(f"{path}: mesh has no UVs (no 'vt' lines); unwrap it and re-export with texture coordinates")
    n_v, n_t, n_n = len(vs), len(vts), len(vns)
    fixed = np.stack([np.where(idx[:, 0] > 0, idx[:, 0] - 1, n_v + idx[:, 0]),  # 1-based; negative counts from the end
                      np.where(idx[:, 1] > 0, idx[:, 1] - 1, n_t + idx[:, 1]),
                      np.where(idx[:, 2] > 0, idx[:, 2] - 1, np.where(idx[:, 2] < 0, n_n + idx[:, 2], -1))], 1)
    if (fixed[:, :2] < 0).any() or (fixed[:, 0] >= n_v).any() or (fixed[:, 1] >= n_t).any() or (fixed[:, 2] >= n_n).any():
        raise MeshError(f"{path}: a face refers to a vertex, UV or normal index outside the file; fix or re-export it")
    key = (fixed[:, 0] * (n_t + 1) + fixed[:, 1]) * (n_n + 2) + fixed[:, 2] + 1
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # distinct triples in order of first use
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    uniq = torch.from_numpy(fixed[first[order]])
    verts, uv = vs.float()[uniq[:, 0]], vts.float()[uniq[:, 1]]
    tri = torch.from_numpy(rank[inverse.reshape(-1)].astype(np.int32)).view(-1, 3)
    if n_n and bool((uniq[:, 2] >= 0).all()):  # the file's own normals
        normals = vns.float()[uniq[:, 2]]
        normals = normals / normals.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    else:  # smooth normals, welded by position (UV seams split vertices, not the surface)
        normals = vertex_normals(verts.double(), tri, position_weld(verts)).float()
    return RenderMesh(verts, uv, tri, normals, uv_tangents(verts, uv, tri, normals))
