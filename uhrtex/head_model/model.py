"""ICT-FaceKit's ICT Face Model Light, from the compact file `data/ict_facekit.npz` (derived by
`tools/derive_ict_facekit.py`; MIT notice in `data/LICENSE-ICT-FaceKit.txt`).

26,719 vertices (face, head and neck, mouth socket, eye sockets, gums and tongue, teeth, eyeballs, and the eyes'
lacrimal/blend/occlusion/eyelash meshes), 100 identity shapes (PCA modes: weights ~ N(0, 1), as the model's own
sampler draws them) and 53 ARKit-style expression shapes. Positions in cm, y up, the face towards +z.

UV layout (`UV_LAYOUT`): ICT's own. Each material has its own UV tile: `M_Face` (face, ears and front neck) fills
u, v ∈ [0, 1]; `M_BackHead` (scalp, nape, mouth and eye sockets) is u ∈ [1, 2]; gums and tongue [2, 3]; teeth
[3, 4]; the eyes' sclera and iris meshes have [0, 1] tiles of their own. The face tile is the unified layout of
the captures' `uv` map and of the reconstructed textures (docs/contracts.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path

import numpy as np
import torch

DATA = Path(__file__).with_name("data") / "ict_facekit.npz"
UV_LAYOUT = "ict-facekit-face-v1"  # bump when the face tile's meaning changes: old captures' uv means something else
CM_PER_UNIT = 10.0  # world units of the renderers: 1 = 10 cm
FACE_MATERIAL = "M_Face"
# What the renderers draw: the skin tiles, the mouth interior and the eyeballs' outer shells. The sclera mesh is
# the eyeball's outer surface, cornea bulge included; the iris mesh lies inside it, seen through a transparent cornea
# in ICT's (Unreal-style) design, so with opaque shading the iris and pupil are painted on the shell's front instead.
# The lacrimal fluid, eye blend, occlusion and eyelash strips are transparency cards: the lashes are painted on the
# lid margin instead.
RENDER_MATERIALS = ("M_Face", "M_BackHead", "M_GumsTongue", "M_Teeth", "M_ScleraLeft", "M_ScleraRight")


class HeadModelMissing(FileNotFoundError):
    """The packaged model file is missing or damaged (one line, with the fix)."""


@dataclass(eq=False)
class ICTModel:
    neutral: torch.Tensor  # V×3 float32, cm
    expression_names: tuple[str, ...]
    faces: torch.Tensor  # T×3 int64 vertex indices (ICT's quads split in two)
    faces_uv: torch.Tensor  # T×3 int64 indices into uv
    uv: torch.Tensor  # U×2 float32, v up; tiles as in the module doc
    face_material: torch.Tensor  # T int64 indices into material_names
    material_names: tuple[str, ...]
    face_part: torch.Tensor  # T int64 indices into part_names (the README's geometry table)
    part_names: tuple[str, ...]
    part_first_vertex: tuple[int, ...]
    iris_vertices: tuple[tuple[int, int], ...]  # inclusive vertex ranges of the left and right iris
    landmarks68: torch.Tensor  # 68 vertex indices, Multi-PIE order (README)
    _arrays: dict = field(repr=False, default_factory=dict)  # the file's quantised shapes, read on first use

    def _shapes(self, name: str) -> torch.Tensor:
        q, scale = self._arrays[f"{name}_q"], self._arrays[f"{name}_scale"]
        return torch.from_numpy(q.astype(np.float32) * scale[:, None, None])

    @cached_property
    def identity(self) -> torch.Tensor:
        """100×V×3 float32 identity deltas (cm); read on first use, so inference (the mean head) never pays for it."""
        return self._shapes("identity")

    @cached_property
    def expression(self) -> torch.Tensor:
        """53×V×3 float32 expression deltas (cm)."""
        return self._shapes("expression")

    def shape(self, identity: torch.Tensor | None = None, expression: dict[str, float] | torch.Tensor | None = None
              ) -> torch.Tensor:
        """Vertex positions V×3 (cm): neutral + Σ identity_i · shape_i + Σ expression_j · shape_j."""
        v = self.neutral.clone()
        if identity is not None:
            w = torch.as_tensor(identity, dtype=torch.float32)
            v += torch.einsum("k,kvc->vc", w, self.identity[: w.numel()])
        if expression is not None:
            if isinstance(expression, dict):
                unknown = sorted(set(expression) - set(self.expression_names))
                if unknown:
                    raise KeyError(f"unknown ICT expression(s) {unknown}; valid: {', '.join(self.expression_names)}")
                w = torch.zeros(len(self.expression_names))
                for name, value in expression.items():
                    w[self.expression_names.index(name)] = float(value)
            else:
                w = torch.as_tensor(expression, dtype=torch.float32)
            v += torch.einsum("k,kvc->vc", w, self.expression)
        return v

    def material_faces(self, names=RENDER_MATERIALS) -> torch.Tensor:
        """Indices of the triangles whose material is in `names`."""
        ids = torch.tensor([self.material_names.index(n) for n in names])
        return torch.nonzero(torch.isin(self.face_material, ids)).flatten()

    def part_vertices(self, name: str) -> slice:
        k = self.part_names.index(name)
        end = self.part_first_vertex[k + 1] if k + 1 < len(self.part_first_vertex) else self.neutral.shape[0]
        return slice(self.part_first_vertex[k], end)


@cache
def ict_model() -> ICTModel:
    """The model, read once per process (~0.3 s; 60 MB as float32)."""
    try:
        d = np.load(DATA, allow_pickle=False)
        f = {k: d[k] for k in d.files if not k.startswith(("identity", "expression_q", "expression_scale"))}
        shapes = {k: (lambda k=k: d[k]) for k in d.files if k.startswith(("identity", "expression_q", "expression_scale"))}
    except (OSError, ValueError, KeyError) as e:
        raise HeadModelMissing(f"{DATA}: cannot read the ICT-FaceKit head model ({e}); reinstall uhrtex, or rebuild "
                               "it with tools/derive_ict_facekit.py (docs/heads_and_rendering.md)") from None
    t = lambda k, dt=torch.float32: torch.from_numpy(np.ascontiguousarray(f[k])).to(dt)  # noqa: E731
    return ICTModel(
        neutral=t("neutral"), expression_names=tuple(str(s) for s in f["expression_names"]), faces=t("faces", torch.int64),
        faces_uv=t("faces_uv", torch.int64), uv=t("uv"), face_material=t("face_material", torch.int64),
        material_names=tuple(str(s) for s in f["material_names"]), face_part=t("face_part", torch.int64),
        part_names=tuple(str(s) for s in f["part_names"]), part_first_vertex=tuple(int(x) for x in f["part_first_vertex"]),
        iris_vertices=tuple(tuple(int(x) for x in r) for r in f["iris_vertices"]),
        landmarks68=t("landmarks_multipie68", torch.int64), _arrays=_LazyArrays(shapes))


class _LazyArrays(dict):
    """{name: loader}: reads an array from the open .npz on first access."""

    def __getitem__(self, key):
        value = super().__getitem__(key)
        if callable(value):
            value = value()
            self[key] = value
        return value
