"""Renderer-ready outputs of a reconstruction: a glTF binary (.glb) with a PBR material, and a relit preview.

glTF material (what `write_glb` writes; Blender's glTF importer reads all of it):

* baseColorTexture = albedo (sRGB 8-bit PNG, as glTF expects for base colour).
* normalTexture = micronormal (tangent space, +X = +u, +Y = +v (image up), (n+1)/2 — glTF's convention).
  No TANGENT attribute: importers derive MikkTSpace tangents from the UVs, as glTF recommends.
* metallicRoughnessTexture (glTF: G = roughness, B = metallic): skin is a dielectric, so B = 0 (metallic 0).
  Roughness comes from the specular map s: r = clamp(R + 0.5·(mean(s) − s), 0.15, 0.9) with R = 0.45, the
  roughness the training data were rendered with — on average the surface has that roughness, and regions
  with more specular (oily T-zone, lips) are glossier.
* KHR_materials_specular: specularTexture (alpha channel) = s, specularColorFactor = 2, so the dielectric
  F0 = 0.04 · 2 · s = 0.08 · s, exactly the captures' shading (`render.F0_SCALE`).

UVs: glTF's texture origin is the top-left, so TEXCOORD_0 = (u, 1 − v) over top-down PNGs. Positions are in
the mesh's units times `scale` (the procedural heads use 1 unit = 10 cm; pass scale=0.1 for metres).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from uhrtex.render.environments import ROUGHNESS  # the skin roughness the captures are rendered with
from uhrtex.render.mesh import split_by_uv, vertex_normals
from uhrtex.render.shading import F0_SCALE
from uhrtex.unwrap.mesh import Mesh

SPECULAR_COLOR_FACTOR = F0_SCALE / 0.04  # glTF's dielectric F0 is 0.04 · factor · s; the captures' is 0.08 · s


def roughness_from_specular(spec: torch.Tensor) -> torch.Tensor:
    """1×H×W specular in [0, 1] -> roughness (see module doc)."""
    return (ROUGHNESS + 0.5 * (spec.mean() - spec)).clamp(0.15, 0.9)


PNG_COMPRESSION = 1  # deflate level (zlib scale, `uhrtex.common.io.png_level`) of every PNG written here: the fastest
_WORKERS = max(1, min(4, os.cpu_count() or 1))


def _png(channels: list) -> bytes:
    """Channels (c×H×W tensors in [0, 1] or constants; 1, 3 or 4 in all) -> 8-bit PNG bytes; clamped, round half up
    ((x·255 + 0.5) truncated), quantised and compressed in row blocks (`uhrtex.common.io.encode_png`)."""
    from uhrtex.common.io import encode_png

    return encode_png([p.detach().cpu() if isinstance(p, torch.Tensor) else p for p in channels], 8, PNG_COMPRESSION,
                      half_up=True, clamp=True)


class PngWriter:
    """PNG files written in background threads (`uhrtex.common.io.write_png`: validated, atomic; numpy and the deflate
    release the GIL, so encodes overlap each other and the caller's compute). `wait()` joins them and
    re-raises the first failure; `close()` (also on leaving a `with` block) waits for all, ignoring errors."""

    def __init__(self, workers: int | None = None, compression: int = PNG_COMPRESSION):
        from concurrent.futures import ThreadPoolExecutor

        self.compression = compression
        self._pool = ThreadPoolExecutor(max_workers=workers or min(2, _WORKERS), thread_name_prefix="png")
        self._pending = []

    def submit(self, path: str | os.PathLike, x: torch.Tensor, bits: int = 8, clamp: bool = False) -> None:
        """`x` must not change until `wait()`: the encoder reads it in place (no copy is made)."""
        from uhrtex.common.io import write_png

        self._pending.append(self._pool.submit(write_png, path, x, bits=bits, compression=self.compression,
                                               clamp=clamp))

    def wait(self) -> None:
        pending, self._pending = self._pending, []
        errors = [f.exception() for f in pending]
        for e in errors:
            if e is not None:
                raise e

    def close(self) -> None:
        try:
            self.wait()
        except Exception:
            pass
        finally:
            self._pool.shutdown(wait=True)

    def __enter__(self) -> PngWriter:
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            try:
                self.wait()
            finally:
                self._pool.shutdown(wait=True)
        else:
            self.close()


def write_pngs(jobs: Sequence[tuple[str | os.PathLike, torch.Tensor, int]], workers: int | None = None) -> None:
    """Write (path, C×H×W in [0, 1], bits) PNGs in parallel (see `PngWriter`)."""
    with PngWriter(workers) as w:
        for path, x, bits in jobs:
            w.submit(path, x, bits)


def gltf_arrays(mesh: Mesh) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One index buffer for positions, normals and UVs (a glTF vertex per distinct position/UV pair)."""
    normals = mesh.normals if (mesh.normals is not None and torch.equal(mesh.faces, mesh.faces_uv)) else None
    normals = normals if normals is not None else vertex_normals(mesh.verts.double(), mesh.faces).float()
    pos_idx, uv_idx, index = split_by_uv(mesh.faces, mesh.faces_uv)
    uniq = torch.stack([pos_idx, uv_idx], 1)
    pos = mesh.verts[uniq[:, 0]].numpy().astype(np.float32)
    nrm = normals[uniq[:, 0]].numpy().astype(np.float32)
    uv = mesh.uvs[uniq[:, 1]].numpy().astype(np.float32).copy()
    uv[:, 1] = 1.0 - uv[:, 1]
    return pos, nrm, uv, index.view(-1).numpy().astype(np.uint32)


def glb_bytes(mesh: Mesh, textures: Mapping[str, torch.Tensor], scale: float = 1.0, name: str = "uhrtex_head") -> bytes:
    import pygltflib as g

    pos, nrm, uv, idx = gltf_arrays(mesh)
    spec = textures["specular"].float()
    rough = roughness_from_specular(spec)
    from concurrent.futures import ThreadPoolExecutor

    planes = [
        [textures["albedo"]],
        [textures["micronormal"]],
        [1.0, rough, 0.0],  # R unused, G roughness, B metalness
        [1.0, 1.0, 1.0, spec],  # KHR_materials_specular reads A
    ]
    with ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="glb-png") as pool:  # deflate drops the GIL
        images = list(pool.map(_png, planes))
    blobs, views = [], []

    def add(data: bytes, target: int | None = None) -> int:
        offset = sum(len(b) for b in blobs)
        blobs.append(data + b"\0" * (-len(data) % 4))  # 4-byte alignment for the next view
        views.append(g.BufferView(buffer=0, byteOffset=offset, byteLength=len(data), target=target))
        return len(views) - 1

    v_pos = add(pos.tobytes(), g.ARRAY_BUFFER)
    v_nrm = add(nrm.tobytes(), g.ARRAY_BUFFER)
    v_uv = add(uv.tobytes(), g.ARRAY_BUFFER)
    v_idx = add(idx.tobytes(), g.ELEMENT_ARRAY_BUFFER)
    v_img = [add(b) for b in images]
    accessors = [
        g.Accessor(bufferView=v_pos, componentType=g.FLOAT, count=len(pos), type=g.VEC3,
                   min=pos.min(0).tolist(), max=pos.max(0).tolist()),
        g.Accessor(bufferView=v_nrm, componentType=g.FLOAT, count=len(nrm), type=g.VEC3),
        g.Accessor(bufferView=v_uv, componentType=g.FLOAT, count=len(uv), type=g.VEC2),
        g.Accessor(bufferView=v_idx, componentType=g.UNSIGNED_INT, count=len(idx), type=g.SCALAR),
    ]
    material = g.Material(
        name=f"{name}_skin",
        pbrMetallicRoughness=g.PbrMetallicRoughness(baseColorTexture=g.TextureInfo(index=0), metallicFactor=1.0,
                                                    roughnessFactor=1.0, metallicRoughnessTexture=g.TextureInfo(index=2)),
        normalTexture=g.NormalMaterialTexture(index=1),
        extensions={"KHR_materials_specular": {"specularFactor": 1.0, "specularTexture": {"index": 3},
                                               "specularColorFactor": [SPECULAR_COLOR_FACTOR] * 3}},
    )
    gltf = g.GLTF2(
        asset=g.Asset(version="2.0", generator="uhrtex"),
        scene=0, scenes=[g.Scene(nodes=[0])],
        nodes=[g.Node(name=name, mesh=0, scale=[float(scale)] * 3)],
        meshes=[g.Mesh(name=name, primitives=[g.Primitive(attributes=g.Attributes(POSITION=0, NORMAL=1, TEXCOORD_0=2),
                                                          indices=3, material=0)])],
        accessors=accessors, bufferViews=views, buffers=[g.Buffer(byteLength=sum(len(b) for b in blobs))],
        images=[g.Image(bufferView=v, mimeType="image/png") for v in v_img],
        samplers=[g.Sampler(magFilter=g.LINEAR, minFilter=g.LINEAR_MIPMAP_LINEAR, wrapS=g.CLAMP_TO_EDGE,
                            wrapT=g.CLAMP_TO_EDGE)],
        textures=[g.Texture(sampler=0, source=i) for i in range(len(images))],
        materials=[material], extensionsUsed=["KHR_materials_specular"],
    )  # fmt: skip
    gltf.set_binary_blob(b"".join(blobs))
    out = gltf.save_to_bytes()
    return b"".join(out) if isinstance(out, (list, tuple)) else bytes(out)


def write_glb(path: str | os.PathLike, mesh: Mesh, textures: Mapping[str, torch.Tensor], scale: float = 1.0) -> None:
    from uhrtex.common.io import write_bytes_atomic

    write_bytes_atomic(path, glb_bytes(mesh, textures, scale))
