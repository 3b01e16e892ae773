"""The relit preview of a reconstruction: its UV textures on a head, shaded by the shared renderer
(`uhrtex.render.shading`) under a few environments, side by side.

In the unified UV layout the head is the ICT mean head: the reconstructed face tile (face, ears, front neck), and
the template's scalp, eyes and mouth (`uhrtex.head_model.template`). A user's own mesh is drawn with its textures
alone, seen through the portrait's camera.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

from uhrtex.head_model import FACE_MATERIAL, mean_head
from uhrtex.head_model.template import template_textures
from uhrtex.maps import TEXTURE, encode_normal
from uhrtex.raster import Renderer
from uhrtex.render.camera import Camera
from uhrtex.render.environments import load_environment
from uhrtex.render.framing import frontal_camera
from uhrtex.render.mesh import RenderMesh, build
from uhrtex.render.shading import geometry_buffers, gl_view_rotation, sample_materials, shade

TILE_OFFSETS = {"M_Face": 0.0, "M_BackHead": 1.0, "M_GumsTongue": 2.0, "M_Teeth": 3.0}


def _raster(maps: Mapping[str, torch.Tensor], side: int) -> torch.Tensor:
    """{albedo, micronormal, specular} C×r×r top-down -> [1, side, side, 7], row 0 = v ≈ 0 (area-downsampled: a
    size² picture needs no more than 2·size texels across)."""
    small = [F.interpolate(maps[k].float()[None], size=(side, side), mode="area")[0] if maps[k].shape[-1] > side
             else maps[k].float() for k in TEXTURE.names]
    return torch.cat(small).flip(-2).permute(1, 2, 0)[None].contiguous()


def render_preview(textures: Mapping[str, torch.Tensor], lightings: Sequence[str], size: int = 512,
                   mesh=None, camera: Camera | None = None, device="cpu") -> torch.Tensor:
    """3×size×(n·size): the textured head under each lighting. `mesh` (an unwrap `Mesh` with its own UV layout) and
    `camera`: a user's mesh; None: the mean head in the unified layout, seen from the front."""
    side = min(next(iter(textures.values())).shape[-1], 2 * size)
    if mesh is None:
        head: RenderMesh = mean_head()
        tex = {head.materials.index(m): _raster(textures if m == FACE_MATERIAL else template_textures(m), side)
               for m in head.materials}
        offsets = {head.materials.index(m): TILE_OFFSETS.get(m, 0.0) for m in head.materials}
        cam = frontal_camera(head.verts, size)
    else:
        head = build(mesh.verts, mesh.faces, mesh.uvs, mesh.faces_uv)
        tex, offsets = {0: _raster(textures, side)}, {}
        cam = camera.scaled(size, round(size * camera.height / camera.width))
    head = head.to(device)
    renderer = Renderer("auto", device)
    buf = geometry_buffers(head, cam, renderer)
    sampled = sample_materials(buf, tex, renderer, offsets)
    mask = buf["mask"].permute(2, 0, 1)
    n = buf["normal"] / buf["normal"].norm(dim=-1, keepdim=True).clamp_min(1e-12)
    maps = {k: v[0] * mask for k, v in TEXTURE.split(sampled[None]).items()}
    maps["normal"] = (encode_normal(n @ gl_view_rotation(cam).T).permute(2, 0, 1) * mask).clamp(0, 1)
    maps["mask"] = mask
    return torch.cat([shade(maps, buf["tangent"], cam, load_environment(name, device)) for name in lightings], dim=-1)
