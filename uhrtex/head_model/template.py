"""The template head: the ICT mean head with mid-tone textures shipped as package data (`data/template/`, rebuilt by
`tools/make_template_textures.py`). The unwrap fills unseen texels from its face tile; the preview and the .glb
dress the mean head's scalp, eyes and mouth with it."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import torch

from uhrtex.head_model.model import FACE_MATERIAL, RENDER_MATERIALS

TEMPLATE_DIR = Path(__file__).with_name("data") / "template"
MAP_NAMES = ("albedo", "micronormal", "specular")


@cache
def template_textures(material: str = FACE_MATERIAL) -> dict[str, torch.Tensor]:
    """{albedo, micronormal, specular}: C×r×r top-down float32 of one material of the template head."""
    from uhrtex.common.io import read_image

    if material not in RENDER_MATERIALS:
        raise KeyError(f"no template for material {material!r}; valid: {', '.join(RENDER_MATERIALS)}")
    return {k: read_image(TEMPLATE_DIR / f"{material}_{k}.png", channels=1 if k == "specular" else 3) for k in MAP_NAMES}
