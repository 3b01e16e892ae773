"""ICT shapes as RenderMeshes (the rasterizer's mesh, `uhrtex.render.mesh`)."""

from __future__ import annotations

from functools import cache

import torch

from uhrtex.head_model.model import CM_PER_UNIT, FACE_MATERIAL, RENDER_MATERIALS, ICTModel, ict_model
from uhrtex.render.mesh import RenderMesh, build, position_weld, uv_tangents, vertex_normals

__all__ = ["RenderMesh", "face_tile", "mean_head", "render_mesh", "uv_tangents", "vertex_normals"]


@cache
def _topology(model_id: int, materials: tuple[str, ...]):
    model = ict_model()
    assert id(model) == model_id
    keep = model.material_faces(materials)
    names = model.material_names
    material = torch.tensor([materials.index(names[int(m)]) for m in model.face_material[keep]])
    # ICT's parts are separate pieces of surface that meet edge to edge (face and head/neck): weld them by position
    weld = position_weld(model.neutral, decimals=4)
    return model.faces[keep], model.faces_uv[keep], material, weld


def render_mesh(model: ICTModel, verts: torch.Tensor, materials: tuple[str, ...] = RENDER_MATERIALS) -> RenderMesh:
    """The model's triangles of `materials` at vertex positions `verts` (V×3, the model's vertex order, any units)."""
    faces, faces_uv, material, weld = _topology(id(model), tuple(materials))
    return build(verts, faces, model.uv, faces_uv, material, tuple(materials), weld)


def face_tile(mesh: RenderMesh) -> RenderMesh:
    """The face tile's triangles of an ICT RenderMesh (the unified UV layout), with only the vertices they use."""
    tri = mesh.tri[mesh.material == mesh.materials.index(FACE_MATERIAL)].long()
    used, tri = torch.unique(tri, return_inverse=True)
    src = None if mesh.source_vertex is None else mesh.source_vertex[used]
    return RenderMesh(mesh.verts[used], mesh.uv[used], tri.int(), mesh.normals[used], mesh.tangents[used], None, (), src)


@cache
def mean_head() -> RenderMesh:
    """The neutral ICT head (identity and expression weights 0) in world units: the template head of the unwrap, the
    .glb and the preview."""
    m = ict_model()
    return render_mesh(m, m.neutral / CM_PER_UNIT)
