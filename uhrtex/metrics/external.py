"""Outputs of other methods (DreamFace, NextFace, ...) read from folders and mapped into a capture's frame.

Layout (documented in docs/evaluation.md):

    <root>/<method>/method.yaml            optional: {name: DreamFace, space: image | uv}
    <root>/<method>/<capture key>/albedo.png  micronormal.png  specular.png   (any subset; any image format)
                                   mask.png        image space only, optional: where the method has output
                                   mesh.obj        uv space only: the method's mesh (v, vt, f), aligned to the
                                                   capture's world frame; textures are in its own UV layout

`space: image` maps are read at the capture's resolution (other sizes are resized, area/bilinear, same aspect
ratio required). `space: uv` textures are sampled through the mesh rasterised with the capture's camera
(`uhrtex.raster`, torch backend unless CUDA is there): the result is the method's frontal projection, and its
coverage is where the mesh covers a pixel. UV textures follow the usual top-down file convention (v = 0 is the
bottom row of the file). Micronormals use the captures' encoding ((n + 1) / 2 in tangent space).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from uhrtex.maps import TEXTURE

SPACES = ("image", "uv")
IMAGE_SUFFIXES = (".png", ".exr", ".jpg", ".jpeg", ".tif", ".tiff")


class ExternalMethodError(ValueError):
    """A malformed external-method folder; the message is one line naming the path and the fix."""


def _find(folder: Path, stem: str) -> Path | None:
    for suffix in IMAGE_SUFFIXES:
        p = folder / f"{stem}{suffix}"
        if p.is_file():
            return p
    return None


def _read(path: Path, channels: int) -> torch.Tensor:
    from uhrtex.common.io import read_image

    return read_image(path, channels=channels, gray="expand", alpha="drop")


def _resize(x: torch.Tensor, size: tuple[int, int], path: Path) -> torch.Tensor:
    h, w = x.shape[-2:]
    if (h, w) == tuple(size):
        return x
    if abs(h / w - size[0] / size[1]) > 1e-3:
        raise ExternalMethodError(f"{path}: {h}x{w} does not have the capture's aspect ratio {size[0]}x{size[1]}; crop it to the capture frame")
    mode = "area" if h > size[0] else "bilinear"
    kwargs = {} if mode == "area" else {"align_corners": False}
    return F.interpolate(x[None], size=size, mode=mode, **kwargs)[0].clamp(0, 1)


def read_obj(path: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Minimal OBJ: (pos V x 3, uv T x 2, tri_pos F x 3, tri_uv F x 3); polygons are fan-triangulated."""
    pos, uv, tri_pos, tri_uv = [], [], [], []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "v":
            pos.append([float(v) for v in parts[1:4]])
        elif parts[0] == "vt":
            uv.append([float(v) for v in parts[1:3]])
        elif parts[0] == "f":
            corners = [c.split("/") for c in parts[1:]]
            if any(len(c) < 2 or not c[1] for c in corners):
                raise ExternalMethodError(f"{path}:{n}: face without texture coordinates; export the mesh with UVs (f v/vt)")
            idx = [(int(c[0]), int(c[1])) for c in corners]
            idx = [(p - 1 if p > 0 else len(pos) + p, t - 1 if t > 0 else len(uv) + t) for p, t in idx]
            for k in range(1, len(idx) - 1):
                tri_pos.append([idx[0][0], idx[k][0], idx[k + 1][0]])
                tri_uv.append([idx[0][1], idx[k][1], idx[k + 1][1]])
    if not tri_pos:
        raise ExternalMethodError(f"{path}: no faces found; export a triangle/polygon mesh with UVs as OBJ")
    return (torch.tensor(pos, dtype=torch.float32), torch.tensor(uv, dtype=torch.float32),
            torch.tensor(tri_pos, dtype=torch.int32), torch.tensor(tri_uv, dtype=torch.int32))


def project_textures(mesh: tuple[torch.Tensor, ...], textures: dict[str, torch.Tensor], camera,
                     device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Rasterise `mesh` with `camera` (uhrtex.captures.format.Camera) and look up top-down `textures` (C x h x w).

    Returns image-space maps C x H x W (row 0 at the top, 0 outside coverage) and the coverage mask 1 x H x W.
    """
    from uhrtex.raster import Renderer

    pos, uv, tri_pos, tri_uv = (t.to(device) for t in mesh)
    r = Renderer("torch" if torch.device(device).type == "cpu" else "auto", device=device)
    clip = camera.clip_from_world().to(device)
    pos_clip = (torch.cat([pos, torch.ones_like(pos[:, :1])], 1) @ clip.T)[None].contiguous()
    rast, _ = r.rasterize(pos_clip, tri_pos, (camera.height, camera.width), grad_db=False)
    texc, _ = r.interpolate(uv[None].contiguous(), rast, tri_uv)
    cover = (rast[..., 3:] > 0).float()
    out = {}
    for name, tex in textures.items():
        # Raster textures have row 0 at v = 0 (bottom of the file): flip the top-down file.
        t = tex.to(device).flip(1).permute(1, 2, 0)[None].contiguous()
        look = r.texture(t, texc.contiguous(), filter_mode="linear", boundary_mode="clamp")
        out[name] = (look * cover).flip(1)[0].permute(2, 0, 1).cpu()  # raster row 0 is the bottom: flip to top-down
    return out, cover.flip(1)[0].permute(2, 0, 1).cpu()


@dataclass
class ExternalMethod:
    """One folder of another method's outputs; `load(key, camera)` gives image-space maps + coverage."""

    folder: Path
    name: str
    space: str = "image"

    @classmethod
    def open(cls, folder: str | Path) -> ExternalMethod:
        folder = Path(folder)
        if not folder.is_dir():
            raise ExternalMethodError(f"external method folder {folder} does not exist; see docs/evaluation.md for the layout")
        info = {}
        if (folder / "method.yaml").is_file():
            import yaml

            info = yaml.safe_load((folder / "method.yaml").read_text()) or {}
        space = info.get("space", "image")
        if space not in SPACES:
            raise ExternalMethodError(f"{folder / 'method.yaml'}: space {space!r} is not one of {SPACES}")
        return cls(folder, str(info.get("name", folder.name)), space)

    def keys(self) -> list[str]:
        return sorted(p.name for p in self.folder.iterdir() if p.is_dir())

    def check_keys(self, keys: list[str]) -> None:
        missing = sorted(set(keys) - set(self.keys()))
        if missing:
            raise ExternalMethodError(f"external method '{self.name}' ({self.folder}) has no outputs for {len(missing)} test "
                                      f"capture(s), e.g. {missing[0]}; add a folder per capture key (docs/evaluation.md)")

    def load(self, key: str, camera, device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """({map: C x H x W} for the maps this method provides, coverage 1 x H x W) in the capture's frame."""
        folder = self.folder / key
        if not folder.is_dir():
            raise ExternalMethodError(f"{folder} is missing; external method '{self.name}' needs one folder per test capture")
        size = (camera.height, camera.width)
        found = {n: p for n in TEXTURE.names if (p := _find(folder, n)) is not None}
        if not found:
            raise ExternalMethodError(f"{folder}: none of {', '.join(TEXTURE.names)} found; save at least one map "
                                      f"({'/'.join(IMAGE_SUFFIXES)})")
        maps = {n: _read(p, TEXTURE.width(n)) for n, p in found.items()}
        if self.space == "uv":
            mesh_path = folder / "mesh.obj"
            if not mesh_path.is_file():
                raise ExternalMethodError(f"{mesh_path} is missing; a space: uv method needs its mesh (OBJ with UVs) per capture")
            return project_textures(read_obj(mesh_path), maps, camera, device)
        maps = {n: _resize(m, size, found[n]) for n, m in maps.items()}
        mask_path = _find(folder, "mask")
        cover = (_resize(_read(mask_path, 1), size, mask_path) > 0.5).float() if mask_path else torch.ones(1, *size)
        return {n: m * cover for n, m in maps.items()}, cover


def find_methods(root: str | Path | None, names: list[str] | None = None) -> list[ExternalMethod]:
    """Every method folder under `root` (or just `names`), sorted by folder name."""
    if not root:
        return []
    root = Path(root)
    if not root.is_dir():
        raise ExternalMethodError(f"external methods root {root} does not exist; set compare.external_dir to a folder "
                                  "laid out as in docs/evaluation.md, or null")
    folders = [root / n for n in names] if names else sorted(p for p in root.iterdir() if p.is_dir())
    return [ExternalMethod.open(f) for f in folders]
