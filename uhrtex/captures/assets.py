"""A folder of head assets (your own scans) for bulk rendering: format, conversions, validation.

    from uhrtex.captures.assets import load_assets
    assets = load_assets("scans/")          # validates everything first; one-line ValueError per problem
    assets[0].head()                        # mesh + maps in the renderer's conventions (a `HeadAsset`-like object)

One sub-folder per head (see docs/captures.md, "Your own scans"):

    scans/<name>/<anything>.obj             mesh with texture coordinates (vt); exactly one mesh: .obj, .glb or .gltf
    scans/<name>/albedo.{png,jpg,jpeg,tif,tiff,exr}        sRGB colour (EXR: linear, converted to sRGB)
    scans/<name>/micronormal.{...}          tangent-space normal, encoded (n+1)/2 (EXR: raw vectors in [-1, 1])
    scans/<name>/specular.{...}             specular intensity, linear, one channel (or roughness / gloss)
    scans/<name>/asset.json                 optional, all keys optional (DEFAULTS below)

asset.json: `uv_layout` (name of the UV layout; assets of one store must share it), `subject` (id, the
store-key subject part; default the folder name), `scale` (multiplies positions into uhrtex world units,
1 = 10 cm; a scan in metres needs 10), `up` and `forward` (the mesh axes that point up and out of the face,
e.g. "+z" and "-y"; uhrtex uses "+y" / "+z"), `normal_convention` ("opengl", or "directx": green flipped,
g -> 1 - g), `specular_kind` ("specular"; "roughness": specular = 1 - roughness; "gloss": specular = gloss).
The renderer has one fixed roughness, so a roughness/gloss map becomes a specular-intensity map: rough
texels reflect less, glossy ones more (a heuristic, not a physical identity).
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from uhrtex.captures.format import CaptureError, check_id
from uhrtex.captures.gltf_mesh import SUFFIXES as GLTF_SUFFIXES
from uhrtex.captures.gltf_mesh import read_gltf
from uhrtex.captures.heads import to_raster
from uhrtex.captures.heads.skin import MAP_CHANNELS
from uhrtex.render.mesh import RenderMesh, read_obj
from uhrtex.common.imaging import linear_to_srgb
from uhrtex.common.io import SUFFIXES, read_image

DEFAULTS = {"uv_layout": None, "subject": None, "scale": 1.0, "up": "+y", "forward": "+z",
            "normal_convention": "opengl", "specular_kind": "specular"}
AXES = {"+x": (1, 0, 0), "-x": (-1, 0, 0), "+y": (0, 1, 0), "-y": (0, -1, 0), "+z": (0, 0, 1), "-z": (0, 0, -1)}
CHOICES = {"normal_convention": ("opengl", "directx"), "specular_kind": ("specular", "roughness", "gloss")}
UV_DECIMALS = 4  # the UV fingerprint rounds coordinates to 1e-4
MESH_SUFFIXES = (".obj", *GLTF_SUFFIXES)


def read_mesh(path: Path) -> RenderMesh:
    """An OBJ (`read_obj`) or glTF/GLB (`gltf_mesh.read_gltf`) with UVs."""
    return read_gltf(path) if path.suffix.lower() in GLTF_SUFFIXES else read_obj(path)


def _fail(name: str, problem: str, fix: str) -> ValueError:
    return ValueError(" ".join(f"asset {name}: {problem}; {fix}".split()))


def uv_fingerprint(uv: torch.Tensor, tri: torch.Tensor) -> str:
    """Hash of the UV triangles (coordinates rounded to 1e-4, as a sorted set: vertex order does not matter). The
    rounding boundary sits at .4963 of a step, not .5: UVs stored with 5-6 decimals (ICT's) put many values exactly
    on a half step, where float32 noise of a round trip (glTF's v flip) would pick either side."""
    q = np.floor(uv.double().numpy() * 10**UV_DECIMALS + 0.5037).astype(np.int64)
    corners = q[tri.long().numpy()].reshape(len(tri), 6)
    corners = corners[np.lexsort(corners.T[::-1])]
    return hashlib.sha256(corners.tobytes()).hexdigest()[:16]


def axes_rotation(up: str, forward: str) -> torch.Tensor:
    """3 x 3 rotation taking the asset's `up` axis to +y and its `forward` axis to +z."""
    u, f = torch.tensor(AXES[up], dtype=torch.float32), torch.tensor(AXES[forward], dtype=torch.float32)
    return torch.stack([torch.linalg.cross(u, f), u, f])


@dataclass
class Asset:
    """One validated head asset. Maps and mesh are read again by `head()` (validation keeps only sizes)."""

    name: str
    folder: Path
    obj: Path
    maps: dict[str, Path]
    settings: dict
    texture_resolution: int
    uv_layout: str  # the layout name, or "uv-<fingerprint>"
    uv_fingerprint: str

    @property
    def stamp(self) -> tuple:
        """Names, sizes and mtimes of the mesh and maps: cached heads and raster passes of an edited asset expire."""
        return tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in (self.obj, *self.maps.values()))

    @property
    def subject_id(self) -> str:
        return self.settings["subject"] or self.name

    def meta(self) -> dict:
        """What `meta["mesh"]` of a capture rendered from this asset holds."""
        return {"kind": "asset", "subject": self.subject_id, "folder": str(self.folder), "obj": self.obj.name,
                "maps": {k: p.name for k, p in self.maps.items()}, "uv_layout": self.uv_layout,
                "uv_fingerprint": self.uv_fingerprint, "texture_resolution": self.texture_resolution,
                **{k: self.settings[k] for k in ("scale", "up", "forward", "normal_convention", "specular_kind")},
                "units": "1 = 10 cm, y up, face towards +z (after scale and axes)"}

    def mesh(self) -> RenderMesh:
        """The mesh in uhrtex world units and axes (scale, then the up/forward rotation)."""
        m = read_mesh(self.obj)
        rot, s = axes_rotation(self.settings["up"], self.settings["forward"]), float(self.settings["scale"])
        tangents = torch.cat([m.tangents[:, :3] @ rot.T, m.tangents[:, 3:]], 1)
        return RenderMesh((m.verts * s) @ rot.T, m.uv, m.tri, m.normals @ rot.T, tangents)

    def textures(self) -> dict[str, torch.Tensor]:
        """{albedo, micronormal, specular}: C x R x R in the capture conventions (sRGB, OpenGL (n+1)/2, specular)."""
        return {k: convert_map(k, read_map(self.name, k, p), self.settings, p.suffix.lower() == ".exr")
                for k, p in self.maps.items()}

    def head(self, device="cpu") -> AssetHead:
        """The renderable head (mesh + raster texture). Only the last one read stays cached (8K maps are big)."""
        key = (str(self.folder.resolve()), self.uv_fingerprint, self.stamp, str(torch.device(device)))
        if _LAST_HEAD.get("key") != key:
            _LAST_HEAD.clear()  # free the previous head before reading the next
            _LAST_HEAD.update(key=key, head=AssetHead(self, self.mesh().to(device),
                                                       {k: v.to(device) for k, v in self.textures().items()}))
        return _LAST_HEAD["head"]


_LAST_HEAD: dict = {}


@dataclass
class AssetHead:
    """What `uhrtex.captures.render` needs from a head: mesh, material_textures, tile_offsets, gt_materials,
    texture_resolution, meta(). A scan is one material whose UV layout is its own; all of it is ground truth."""

    asset: Asset
    mesh: RenderMesh
    textures: dict[str, torch.Tensor]

    @property
    def device(self) -> str:
        return str(self.mesh.verts.device)

    @property
    def texture_resolution(self) -> int:
        return self.asset.texture_resolution

    @functools.cached_property
    def material_textures(self) -> dict[int, torch.Tensor]:
        return {0: to_raster(torch.cat([self.textures[k].float() for k in MAP_CHANNELS]))}

    tile_offsets: dict = field(default_factory=dict)
    gt_materials: tuple[int, ...] = (0,)

    def meta(self) -> dict:
        return self.asset.meta()


def read_map(name: str, kind: str, path: Path) -> torch.Tensor:
    """Read one map file (C x H x W float32), every failure a one-line error naming the asset."""
    try:
        x = read_image(path, channels=(1, 3) if kind == "specular" else 3, alpha="drop")
    except ValueError as e:
        raise _fail(name, f"{kind} map unreadable ({e})", "re-export that map as PNG (8/16-bit), EXR or JPEG") from None
    return x[:1] if kind == "specular" else x


def convert_map(kind: str, x: torch.Tensor, settings: dict, exr: bool) -> torch.Tensor:
    """File values -> capture conventions (see the module doc)."""
    if kind == "albedo" and exr:
        x = linear_to_srgb(x.clamp(0, 1))
    if kind == "micronormal":
        if exr:
            x = (x + 1) / 2
        if settings["normal_convention"] == "directx":
            x = torch.cat([x[0:1], 1 - x[1:2], x[2:3]])
    if kind == "specular" and settings["specular_kind"] == "roughness":
        x = 1 - x
    return x.clamp(0, 1).contiguous()


def _settings(name: str, folder: Path) -> dict:
    path = folder / "asset.json"
    if not path.is_file():
        return dict(DEFAULTS)
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _fail(name, f"asset.json is not valid JSON ({' '.join(str(e).split())[:120]})", "fix or remove asset.json") from None
    if not isinstance(raw, dict):
        raise _fail(name, "asset.json is not a JSON object", 'write e.g. {"uv_layout": "my-layout", "subject": "id01"}')
    out = dict(DEFAULTS)
    out.update({k: raw[k] for k in DEFAULTS if raw.get(k) is not None})
    out["uv_layout"] = str(out["uv_layout"]) if out["uv_layout"] is not None else None
    for k in ("up", "forward"):
        if out[k] not in AXES:
            raise _fail(name, f"asset.json {k}={out[k]!r} is not an axis", f"use one of {', '.join(AXES)}")
    if abs(sum(a * b for a, b in zip(AXES[out["up"]], AXES[out["forward"]]))) > 0:
        raise _fail(name, f"asset.json up={out['up']} and forward={out['forward']} are not perpendicular", "fix one of them")
    for k, allowed in CHOICES.items():
        if out[k] not in allowed:
            raise _fail(name, f"asset.json {k}={out[k]!r} is not supported", f"use one of {', '.join(allowed)}")
    if not isinstance(out["scale"], (int, float)) or isinstance(out["scale"], bool) or not out["scale"] > 0:
        raise _fail(name, f"asset.json scale={out['scale']!r} is not a positive number", "e.g. 10 for a mesh in metres")
    try:
        check_id("subject", str(out["subject"] or name))
    except CaptureError as e:
        raise _fail(name, f"subject id {out['subject'] or name!r} is unusable in a store key",
                    "set asset.json subject to letters, digits, '.', '-', single '_'") from e
    return out


def _find_maps(name: str, folder: Path) -> dict[str, Path]:
    maps = {}
    for kind in MAP_CHANNELS:
        found = sorted(p for p in folder.iterdir() if p.stem.lower() == kind and p.suffix.lower() in SUFFIXES)
        if not found:
            raise _fail(name, f"missing {kind} map", f"add {kind}.png (or .exr/.jpg/.tif) to {folder}")
        if len(found) > 1:
            raise _fail(name, f"two {kind} maps ({', '.join(p.name for p in found)})", "keep one")
        maps[kind] = found[0]
    return maps


def load_asset(folder: str | Path) -> Asset:
    """Validate one asset folder (see the module doc): mesh with UVs, readable square maps of one size, settings."""
    folder = Path(folder)
    name = folder.name
    settings = _settings(name, folder)
    objs = sorted(p for p in folder.iterdir() if p.suffix.lower() in MESH_SUFFIXES)
    if len(objs) != 1:
        raise _fail(name, "no mesh (.obj/.glb/.gltf)" if not objs else f"{len(objs)} meshes ({', '.join(p.name for p in objs)})",
                    "put exactly one mesh (OBJ, GLB or glTF) with texture coordinates in the folder")
    maps = _find_maps(name, folder)
    sizes = {}
    for kind, path in maps.items():
        x = read_map(name, kind, path)
        h, w = x.shape[-2:]
        if h != w:
            raise _fail(name, f"{kind} map {path.name} is {h}x{w}, not square", "resample it to a square (e.g. 4096x4096)")
        sizes[kind] = h
    if len(set(sizes.values())) > 1:
        raise _fail(name, "maps differ in size (" + ", ".join(f"{k} {s}²" for k, s in sizes.items()) + ")",
                    "resample all maps to one size")
    try:
        mesh = read_mesh(objs[0])
    except ValueError as e:
        no_uvs = "texture coordinate" in str(e) or "no UVs" in str(e)
        raise _fail(name, f"mesh {objs[0].name} has no UVs" if no_uvs else f"mesh unusable ({str(e)[:160]})",
                    "unwrap it (e.g. in Blender) and re-export it with texture coordinates (OBJ vt, glTF TEXCOORD_0)") from None
    fp = uv_fingerprint(mesh.uv, mesh.tri)
    return Asset(name, folder, objs[0], maps, settings, int(sizes["albedo"]), settings["uv_layout"] or f"uv-{fp}", fp)


def load_assets(folder: str | Path) -> list[Asset]:
    """Validate every sub-folder of `folder` before anything renders; all must share one UV layout."""
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"assets folder {root} does not exist; point captures.assets at a folder of asset folders")
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))
    if not subdirs:
        raise ValueError(f"assets folder {root} has no asset sub-folders; put one folder per head in it")
    assets = [load_asset(d) for d in subdirs]
    first = assets[0]
    for a in assets[1:]:
        if a.uv_layout != first.uv_layout:
            by = "layout name" if a.settings["uv_layout"] or first.settings["uv_layout"] else "UV fingerprint"
            raise _fail(a.name, f"UV layout {a.uv_layout} differs from {first.name}'s {first.uv_layout} (by {by})",
                        "all assets of one store need the same unified UV layout; re-map it or render it into another store")
    seen: dict[str, str] = {}
    for a in assets:
        if a.subject_id in seen:
            raise _fail(a.name, f"subject id {a.subject_id!r} is also {seen[a.subject_id]}'s",
                        "give each asset its own subject id in asset.json (captures of one head share a subject)")
        seen[a.subject_id] = a.name
    return assets
