"""The head mesh: one fixed topology (a grid in the unified UV space) deformed per subject.

Vertex (row j, column i) sits at uv = (i / (nu-1), j / (nv-1)); its position comes from the UV
warps of `subject.py` plus the subject's shape, so triangles are densest over the face. Column
nu-1 duplicates column 0 (the seam at the back of the head) and rows 0 / nv-1 collapse to the neck /
crown poles; normals and tangents are computed on the welded surface so the seam is invisible.
`tri` serves both positions and UVs (nvdiffrast's `tri_pos` = `tri_uv`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from uhrtex.captures.heads.noise import smoothstep
from uhrtex.captures.heads.regions import displacement
from uhrtex.captures.heads.subject import Subject, phi_of_u, theta_of_v

DEFAULT_GRID = (193, 161)  # (nu, nv): ~61k triangles, ~1 vertex per degree over the face


class MeshError(ValueError):
    """A mesh that cannot be used (one line: the file and the problem)."""


@dataclass
class HeadMesh:
    """Triangle mesh with per-vertex UVs. Tensors float32 / int32, on one device."""

    verts: torch.Tensor  # [V, 3] world units
    uv: torch.Tensor  # [V, 2] in [0, 1], v up
    tri: torch.Tensor  # [T, 3] int32, counter-clockwise seen from outside
    normals: torch.Tensor  # [V, 3] unit, smooth
    tangents: torch.Tensor  # [V, 4] unit dP/du direction + handedness (+1: bitangent = n x t is +v)

    def to(self, device) -> HeadMesh:
        return HeadMesh(*(getattr(self, k).to(device) for k in ("verts", "uv", "tri", "normals", "tangents")))


def _grid_faces(nu: int, nv: int) -> torch.Tensor:
    idx = torch.arange(nu * nv).view(nv, nu)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]  # a=(j,i) b=(j,i+1) c=(j+1,i) d=(j+1,i+1)
    lower = torch.stack([a, b, d], -1)  # counter-clockwise in (u, v), outward for our parametrisation
    upper = torch.stack([a, d, c], -1)
    # skip the sliver triangles collapsed at the poles (row 0 and row nv-1 are single points)
    return torch.cat([lower[1:].reshape(-1, 3), upper[:-1].reshape(-1, 3)]).int()


def _weld_index(nu: int, nv: int) -> torch.Tensor:
    """[V] id of the geometric point each vertex is (seam column and pole rows merged)."""
    j, i = torch.meshgrid(torch.arange(nv), torch.arange(nu), indexing="ij")
    i = torch.where(i == nu - 1, torch.zeros_like(i), i)
    i = torch.where((j == 0) | (j == nv - 1), torch.zeros_like(i), i)
    return (j * nu + i).reshape(-1)


def _neck_radius(dx, dy, dz, z0: float = -0.18, radius: float = 0.5, bottom: float = 2.1) -> torch.Tensor:
    """Distance along direction d from the origin to a vertical neck cylinder, capped by a floor plane."""
    a = (dx * dx + dz * dz).clamp_min(1e-6)
    bq = dz * z0
    r = (bq + torch.sqrt((bq * bq - a * (z0 * z0 - radius * radius)).clamp_min(0))) / a
    return torch.minimum(r, bottom / (-dy).clamp_min(1e-3))


def _smooth_max(a, b, k: float) -> torch.Tensor:
    h = (0.5 + 0.5 * (a - b) / k).clamp(0, 1)
    return b + (a - b) * h + k * h * (1 - h)


def surface(s: Subject, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Positions [..., 3] of the head surface at UV coordinates (any shape)."""
    phi, theta = phi_of_u(u), theta_of_v(v)
    pr, tr = torch.deg2rad(phi), torch.deg2rad(theta)
    dx, dy, dz = torch.sin(pr) * torch.cos(tr), torch.sin(tr), torch.cos(pr) * torch.cos(tr)
    # base: a superellipsoid (flatter face and sides than an ellipsoid), narrower jaw below the cheeks
    jaw = 1 + (s.jaw_width - 1) * smoothstep(-5.0, -50.0, theta)
    p = s.squareness
    horiz = ((dx.abs() / (s.half_width * jaw)) ** p + (dz.abs() / s.half_depth) ** p) ** (1 / p)
    r = 1 / torch.sqrt(horiz**2 + (dy / s.half_height) ** 2)
    # the neck takes over under the jaw and at the nape
    neck = _neck_radius(dx, dy, dz) * smoothstep(-25.0, -55.0, theta)
    r = _smooth_max(r, neck, 0.08)
    # face features only on the front, faded out well before the sides
    r = r + displacement(s, phi, theta) * (1 - smoothstep(65.0, 85.0, phi.abs()))
    return torch.stack([r * dx, r * dy, r * dz], -1)


def build_mesh(subject: Subject, grid: tuple[int, int] = DEFAULT_GRID, device="cpu") -> HeadMesh:
    nu, nv = grid
    u = torch.linspace(0, 1, nu, device=device, dtype=torch.float64)
    v = torch.linspace(0, 1, nv, device=device, dtype=torch.float64)
    vv, uu = torch.meshgrid(v, u, indexing="ij")
    verts = surface(subject, uu, vv).reshape(-1, 3)
    tri = _grid_faces(nu, nv).to(device)
    weld = _weld_index(nu, nv).to(device)
    # snap duplicates exactly onto their weld target (float noise must not open the seam)
    verts = verts[weld]
    normals = _vertex_normals(verts, tri.long(), weld)
    tangents = _grid_tangents(verts.view(nv, nu, 3), normals.view(nv, nu, 3)).reshape(-1, 4)
    uv = torch.stack([uu, vv], -1).reshape(-1, 2)
    return HeadMesh(verts.float(), uv.float(), tri, normals.float(), tangents.float())


def _vertex_normals(verts: torch.Tensor, tri: torch.Tensor, weld: torch.Tensor) -> torch.Tensor:
    """Area-weighted face normals summed onto welded points, read back by every duplicate."""
    p0, p1, p2 = verts[tri[:, 0]], verts[tri[:, 1]], verts[tri[:, 2]]
    fn = torch.linalg.cross(p1 - p0, p2 - p0)
    acc = torch.zeros_like(verts)
    for k in range(3):
        acc.index_add_(0, weld[tri[:, k]], fn)
    n = acc[weld]
    return n / n.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _grid_tangents(p: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """dP/du by central differences around the seam, orthogonalised against n. [nv, nu, 4]."""
    core = p[:, :-1]  # columns 0..nu-2 are distinct; column nu-1 == column 0
    dpdu = core.roll(-1, 1) - core.roll(1, 1)
    dpdu = torch.cat([dpdu, dpdu[:, :1]], 1)
    t = dpdu - (dpdu * n).sum(-1, keepdim=True) * n
    bad = t.norm(dim=-1, keepdim=True) < 1e-9  # the poles: any tangent will do
    t = torch.where(bad, torch.linalg.cross(torch.tensor([0.0, 1.0, 0.0], dtype=n.dtype, device=n.device).expand_as(n), n), t)
    t = t / t.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    dpdv = torch.cat([p[1:2] - p[0:1], p[2:] - p[:-2], p[-1:] - p[-2:-1]], 0)
    sign = torch.where((torch.linalg.cross(n, t) * dpdv).sum(-1, keepdim=True) < 0, -1.0, 1.0).to(t.dtype)
    return torch.cat([t, sign], -1)


# ------------------------------------------------------------------------------------------ OBJ I/O


def write_obj(mesh: HeadMesh, path: str | Path, mtl_name: str | None = None) -> Path:
    """Wavefront OBJ with v / vt / vn and faces `a/a/a` (positions, UVs, normals share indices)."""
    import numpy as np

    path = Path(path)
    lines = [f"# uhrtex procedural head: {mesh.verts.shape[0]} vertices, {mesh.tri.shape[0]} triangles\n"]
    if mtl_name:
        lines += [f"mtllib {mtl_name}.mtl\n", f"usemtl {mtl_name}\n"]
    text = "".join(lines)
    v = np.asarray(mesh.verts.detach().cpu().double())
    vt = np.asarray(mesh.uv.detach().cpu().double())
    vn = np.asarray(mesh.normals.detach().cpu().double())
    f = np.asarray(mesh.tri.detach().cpu().long()) + 1
    parts = [text,
             "".join(f"v {a:.6f} {b:.6f} {c:.6f}\n" for a, b, c in v),
             "".join(f"vt {a:.7f} {b:.7f}\n" for a, b in vt),
             "".join(f"vn {a:.5f} {b:.5f} {c:.5f}\n" for a, b, c in vn),
             "s 1\n",
             "".join(f"f {a}/{a}/{a} {b}/{b}/{b} {c}/{c}/{c}\n" for a, b, c in f)]  # fmt: skip
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("".join(parts))
    tmp.replace(path)
    return path


def read_obj(path: str | Path) -> HeadMesh:
    """Read a triangulated-or-polygonal OBJ with UVs into a HeadMesh (one vertex per v/vt pair).

    Raises MeshError (one line) when the file is missing, has no faces, or has no texture coordinates.
    """
    path = Path(path)
    if not path.is_file():
        raise MeshError(f"{path}: mesh file does not exist; check the path")
    vs, vts, vns, corners = [], [], [], []
    for ln, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
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
    if not corners:
        raise MeshError(f"{path}: no faces found; export the mesh as a triangle/polygon OBJ")
    if not vts:
        raise MeshError(f"{path}: mesh has no UVs (no 'vt' lines); unwrap it and re-export with texture coordinates")
    flat = [c for tri in corners for c in tri]

    def fix(i, n):  # OBJ indices are 1-based; negative counts from the end
        return i - 1 if i > 0 else n + i

    keys = {}
    index = [keys.setdefault((fix(p, len(vs)), fix(t, len(vts)), fix(nn, len(vns)) if nn else -1), len(keys)) for p, t, nn in flat]
    uniq = torch.tensor(list(keys), dtype=torch.long)
    verts = torch.tensor(vs, dtype=torch.float32)[uniq[:, 0]]
    uv = torch.tensor(vts, dtype=torch.float32)[uniq[:, 1]]
    tri = torch.tensor(index, dtype=torch.int32).view(-1, 3)
    if vns and bool((uniq[:, 2] >= 0).all()):  # the file's own normals
        normals = torch.tensor(vns, dtype=torch.float32)[uniq[:, 2]]
        normals = normals / normals.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    else:  # smooth normals, welded by position (UV seams split vertices, not the surface)
        weld = torch.unique(verts, dim=0, return_inverse=True)[1]
        normals = _vertex_normals(verts.double(), tri.long(), weld).float()
    tangents = uv_tangents(verts, uv, tri, normals)
    return HeadMesh(verts, uv, tri, normals, tangents)


def uv_tangents(verts, uv, tri, normals) -> torch.Tensor:
    """Per-vertex tangent frames from UV gradients (Lengyel's method) for arbitrary meshes: [V, 4]."""
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


def head_uv_area_fraction(mesh: HeadMesh) -> float:
    """Sum of UV-space triangle areas (1.0 = the UV square is fully used, no overlaps)."""
    t = mesh.tri.long()
    a, b, c = mesh.uv[t[:, 0]], mesh.uv[t[:, 1]], mesh.uv[t[:, 2]]
    area = 0.5 * ((b - a)[:, 0] * (c - a)[:, 1] - (c - a)[:, 0] * (b - a)[:, 1])
    return float(area.sum())


