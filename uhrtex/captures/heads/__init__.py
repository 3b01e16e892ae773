"""Training heads: ICT-FaceKit shapes (identity, mild expression, gaze) with procedural skin, eyes and mouth.

    from uhrtex.captures.heads import head_asset
    a = head_asset(seed=3, texture_resolution=1024)
    a.mesh                       # RenderMesh in world units (1 = 10 cm), material per triangle (RENDER_MATERIALS)
    a.textures["M_Face"]         # {"albedo", "micronormal", "specular"}: C×R×R, row 0 = top (v ≈ 1)

The face tile (`M_Face`, u, v ∈ [0, 1]) is the unified UV layout: its texels are the captures' ground truth. The
other materials (scalp and neck, mouth, teeth, eyes) get textures at a fraction of R and are rendered, not
reconstructed. Export: `python -m uhrtex.captures.heads.export --seed 3 --res 1024 OUT_DIR` (OBJ + PNG maps).
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from dataclasses import dataclass

import torch

from uhrtex.captures.heads.eyes import material_textures
from uhrtex.captures.heads.layout import TILE_OFFSETS
from uhrtex.captures.heads.shape import posed_mesh
from uhrtex.captures.heads.skin import MAP_CHANNELS, face_textures
from uhrtex.captures.heads.subject import Subject
from uhrtex.head_model import FACE_MATERIAL, UV_LAYOUT
from uhrtex.render.mesh import MeshError, RenderMesh

HEAD_MODEL = "ict-facekit"


@dataclass
class HeadAsset:
    subject: Subject
    mesh: RenderMesh
    textures: dict[str, dict[str, torch.Tensor]]  # material -> map name -> C×R×R (row 0 = top)
    texture_resolution: int

    @functools.cached_property
    def material_textures(self) -> dict[int, torch.Tensor]:
        """mesh material id -> [1, R, R, 7] albedo|micronormal|specular, row 0 = v ≈ 0 (`uhrtex.render.shading`)."""
        return {self.mesh.materials.index(m): to_raster(torch.cat([t[k].float() for k in MAP_CHANNELS]))
                for m, t in self.textures.items()}

    @property
    def tile_offsets(self) -> dict[int, float]:
        return {self.mesh.materials.index(m): TILE_OFFSETS[m] for m in self.textures}

    @property
    def gt_materials(self) -> tuple[int, ...]:
        """The materials whose pixels are ground truth: the face tile (the unified UV layout)."""
        return (self.mesh.materials.index(FACE_MATERIAL),)

    def meta(self) -> dict:
        """What `meta["mesh"]` of a capture holds: enough to rebuild the asset (`asset_from_meta`)."""
        return {"kind": "procedural", "generator": "uhrtex.captures.heads", "head_model": HEAD_MODEL,
                "seed": self.subject.seed, "subject": self.subject.id, "uv_layout": UV_LAYOUT,
                "texture_resolution": self.texture_resolution, "weights": self.subject.weights(),
                "units": "1 = 10 cm, y up, face towards +z"}


def to_raster(tex: torch.Tensor) -> torch.Tensor:
    """C×H×W (row 0 = top) -> [1, H, W, C] with row 0 = v ≈ 0, as `uhrtex.raster.texture` wants."""
    return tex.flip(-2).permute(1, 2, 0)[None].contiguous()


_CACHE: OrderedDict[tuple, HeadAsset] = OrderedDict()
CACHE_TEXELS = 2 * 4096 * 4096  # keep at most ~2 4K texture sets alive between calls


def make_textures(subject: Subject | int, res: int = 1024, device="cpu", dtype=torch.float32) -> dict:
    """Every rendered material's maps: the face tile at res², the others smaller (`eyes.material_textures`)."""
    s = subject if isinstance(subject, Subject) else Subject.from_seed(int(subject))
    return {"M_Face": face_textures(s, res, device, dtype), **material_textures(s, res, device, dtype)}


def head_asset(seed: int, texture_resolution: int = 1024, device="cpu") -> HeadAsset:
    """The subject's posed mesh and textures, cached (a subject's lightings and cameras share one texture set)."""
    key = (int(seed), int(texture_resolution), str(torch.device(device)))
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    s = Subject.from_seed(int(seed))
    asset = HeadAsset(s, posed_mesh(s).to(device), make_textures(s, int(texture_resolution), device),
                      int(texture_resolution))
    _CACHE[key] = asset
    while sum(k[1] ** 2 for k in _CACHE) > CACHE_TEXELS and len(_CACHE) > 1:
        _CACHE.popitem(last=False)
    return asset


def asset_from_meta(mesh_meta: dict, device="cpu") -> HeadAsset:
    """Rebuild the procedural asset a capture's `meta["mesh"]` refers to."""
    if not isinstance(mesh_meta, dict) or mesh_meta.get("kind") != "procedural":
        raise MeshError(f"meta mesh {mesh_meta!r:.80} is not a procedural head reference; load that mesh with read_obj")
    if mesh_meta.get("uv_layout") != UV_LAYOUT or mesh_meta.get("head_model") != HEAD_MODEL:
        raise MeshError(f"capture uses UV layout {mesh_meta.get('uv_layout')!r} of head model "
                        f"{mesh_meta.get('head_model', 'egg')!r}; this code makes {UV_LAYOUT!r} ({HEAD_MODEL}): re-render it")
    return head_asset(int(mesh_meta["seed"]), int(mesh_meta["texture_resolution"]), device)


__all__ = ["HEAD_MODEL", "HeadAsset", "MeshError", "RenderMesh", "Subject", "asset_from_meta", "head_asset",
           "make_textures", "to_raster"]
