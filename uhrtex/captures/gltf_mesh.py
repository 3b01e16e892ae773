"""glTF / GLB head meshes for asset folders (read with trimesh), as a `RenderMesh` like `read_obj` gives.

Every mesh node of the scene is placed by its node transform and joined into one mesh. UVs: TEXCOORD_0 (trimesh
turns glTF's v-down into OBJ's v-up, so one layout has one fingerprint in both formats). Normals: the file's NORMAL
when present, else smooth normals welded by position (as for an OBJ). Embedded textures are ignored: the maps are
the folder's albedo / micronormal / specular files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from uhrtex.render.mesh import MeshError, RenderMesh, uv_tangents, vertex_normals

SUFFIXES = (".glb", ".gltf")


def read_gltf(path: str | Path) -> RenderMesh:
    """One-line MeshError when unreadable, without triangles, or without UVs."""
    import trimesh

    path = Path(path)
    try:
        scene = trimesh.load(str(path), force="scene", process=False)
    except Exception as e:  # noqa: BLE001 - trimesh raises many kinds
        raise MeshError(f"{path}: cannot read glTF ({' '.join(str(e).split())[:120]}); re-export it as .glb or .obj") from None
    vs, uvs, tris, ns, n0 = [], [], [], [], 0
    for node in scene.graph.nodes_geometry:
        T, name = scene.graph[node]
        g = scene.geometry[name]
        if not isinstance(g, trimesh.Trimesh) or len(g.faces) == 0:
            continue
        uv = getattr(g.visual, "uv", None)
        if uv is None or len(uv) != len(g.vertices):
            raise MeshError(f"{path}: mesh {name!r} has no UVs (no TEXCOORD_0 with a material)")
        R = np.asarray(T, dtype=np.float64)[:3]
        vs.append(np.asarray(g.vertices, np.float64) @ R[:, :3].T + R[:, 3])
        file_n = g._cache.cache.get("vertex_normals")  # the file's NORMAL (trimesh keeps it there)
        ns.append(None if file_n is None else np.asarray(file_n, np.float64) @ np.linalg.inv(R[:, :3]))
        uvs.append(np.asarray(uv, np.float64))
        tris.append(np.asarray(g.faces, np.int64) + n0)
        n0 += len(g.vertices)
    if not vs:
        raise MeshError(f"{path}: no triangles found; export the head as a triangle mesh")
    verts = torch.from_numpy(np.concatenate(vs)).float()
    uv, tri = torch.from_numpy(np.concatenate(uvs)).float(), torch.from_numpy(np.concatenate(tris)).int()
    if all(n is not None for n in ns):
        normals = torch.from_numpy(np.concatenate(ns)).float()
        normals = normals / normals.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    else:  # smooth normals, welded by position (UV seams split vertices, not the surface)
        weld = torch.unique(verts, dim=0, return_inverse=True)[1]
        normals = vertex_normals(verts.double(), tri.long(), weld).float()
    return RenderMesh(verts, uv, tri, normals, uv_tangents(verts, uv, tri, normals))
