"""Procedural head assets: one fixed-topology mesh in the unified UV space + UV textures per seed.

    from uhrtex.captures.heads import head_asset
    a = head_asset(seed=3, texture_resolution=1024)
    a.mesh.verts, a.mesh.uv, a.mesh.tri            # same topology and UVs for every seed
    a.textures["albedo"]                           # 3 x 1024 x 1024 sRGB, row 0 = top (v ~ 1)

Export: `python -m uhrtex.captures.heads.export --seed 3 --res 1024 OUT_DIR` (OBJ + PNG maps).
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from dataclasses import dataclass

import torch

from uhrtex.captures.heads.mesh import DEFAULT_GRID, HeadMesh, MeshError, build_mesh, read_obj, write_obj
from uhrtex.captures.heads.subject import Subject
from uhrtex.captures.heads.textures import make_textures, region_maps, stacked_raster, to_raster

UV_LAYOUT = "uhrtex-head-v1"  # bump when the UV warps or the grid change: old captures' uv means something else


@dataclass
class HeadAsset:
    subject: Subject
    mesh: HeadMesh
    textures: dict[str, torch.Tensor]  # name -> C x R x R, row 0 = top
    texture_resolution: int

    @functools.cached_property
    def raster_texture(self) -> torch.Tensor:
        """[1, R, R, 7] albedo|micronormal|specular with row 0 = v ~ 0, for `uhrtex.raster.texture`."""
        return stacked_raster(self.textures)

    def meta(self) -> dict:
        """What `meta["mesh"]` of a capture holds: enough to rebuild the asset (`asset_from_meta`)."""
        return {"kind": "procedural", "generator": "uhrtex.captures.heads", "seed": self.subject.seed,
                "subject": self.subject.id, "grid": list(mesh_grid(self.mesh)), "uv_layout": UV_LAYOUT,
                "texture_resolution": self.texture_resolution, "units": "1 = 10 cm, y up, face towards +z"}


def mesh_grid(mesh: HeadMesh) -> tuple[int, int]:
    uv = mesh.uv
    nu = int((uv[:, 1] == uv[0, 1]).sum())
    return nu, uv.shape[0] // nu


_CACHE: OrderedDict[tuple, HeadAsset] = OrderedDict()
CACHE_TEXELS = 2 * 4096 * 4096  # keep at most ~2 4K texture sets (~0.9 GB) alive between calls


def head_asset(seed: int, texture_resolution: int = 1024, device="cpu", grid: tuple[int, int] = DEFAULT_GRID) -> HeadAsset:
    """The subject's mesh and textures, cached (a subject's lightings and cameras share one texture set)."""
    key = (int(seed), int(texture_resolution), str(torch.device(device)), tuple(grid))
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    s = Subject.from_seed(int(seed))
    asset = HeadAsset(s, build_mesh(s, grid, device=device), make_textures(s, int(texture_resolution), device=device), int(texture_resolution))
    _CACHE[key] = asset
    while sum(k[1] ** 2 for k in _CACHE) > CACHE_TEXELS and len(_CACHE) > 1:
        _CACHE.popitem(last=False)
    return asset


def asset_from_meta(mesh_meta: dict, device="cpu") -> HeadAsset:
    """Rebuild the procedural asset a capture's `meta["mesh"]` refers to."""
    if not isinstance(mesh_meta, dict) or mesh_meta.get("kind") != "procedural":
        raise MeshError(f"meta mesh {mesh_meta!r:.80} is not a procedural head reference; load that mesh with read_obj")
    if mesh_meta.get("uv_layout") != UV_LAYOUT:
        raise MeshError(f"capture uses UV layout {mesh_meta.get('uv_layout')!r}, this code makes {UV_LAYOUT!r}; re-render it")
    return head_asset(int(mesh_meta["seed"]), int(mesh_meta["texture_resolution"]), device, tuple(mesh_meta["grid"]))


__all__ = ["HeadAsset", "HeadMesh", "MeshError", "Subject", "UV_LAYOUT", "asset_from_meta", "build_mesh", "head_asset",
           "make_textures", "read_obj", "region_maps", "to_raster", "write_obj", "DEFAULT_GRID"]
