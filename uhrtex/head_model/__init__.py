"""The head model every part of uhrtex shares: ICT-FaceKit's morphable full head (MIT licence, USC ICT), its UV
layout (the unified layout of the captures, the UV&Normal predictor and the unwrap) and the mesh helpers that
turn a shape into something the rasterizer draws. Inference reads only the mean head; the capture generator
(`uhrtex.captures.heads`) draws identities and expressions from it.

    from uhrtex.head_model import ict_model, mean_head
    model = ict_model()                           # shapes, faces, UVs, materials, landmarks (cached)
    verts = model.shape(identity=w_id, expression={"mouthSmile_L": 0.5})   # V×3, cm, y up, face towards +z
    head = mean_head()                            # RenderMesh of the neutral head, world units (1 = 10 cm)
"""

from uhrtex.head_model.mesh import RenderMesh, face_tile, mean_head, render_mesh, uv_tangents, vertex_normals
from uhrtex.head_model.model import CM_PER_UNIT, FACE_MATERIAL, RENDER_MATERIALS, UV_LAYOUT, ICTModel, ict_model

__all__ = ["CM_PER_UNIT", "FACE_MATERIAL", "ICTModel", "RENDER_MATERIALS", "RenderMesh", "UV_LAYOUT", "face_tile", "ict_model",
           "mean_head", "render_mesh", "uv_tangents", "vertex_normals"]
