"""Rebuild the template head's textures (`uhrtex/head_model/data/template/`) from the training-head generator.

    python tools/make_template_textures.py [--res 512]

The template is what a reconstruction falls back on where the photo shows nothing (the unwrap's fill) and the rest
of the preview head (scalp, eyes, mouth): the ICT mean head with a mid skin tone (ISSA "intermediate" class), no
beard, freckles or moles, dark brown hair, brown eyes. Its PNGs ship with the package, so inference never imports
the generator (`uhrtex.captures.heads`). Face tile at --res², the other materials at --res/4.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch

from uhrtex.captures.heads import make_textures
from uhrtex.captures.heads.subject import HAIR, IRIS, ISSA_TONES, SPECULAR_INCLUDED, Subject
from uhrtex.common import io as uio

OUT = Path(__file__).resolve().parents[1] / "uhrtex/head_model/data/template"


def template_subject() -> Subject:
    tone = tuple(c - SPECULAR_INCLUDED for c in ISSA_TONES[2])
    return dataclasses.replace(Subject.from_seed(0), identity=(0.0,) * 100, expression=(), gaze_deg=(0.0, 0.0),
                               tone_class=2, tone=tone, male=False, age=35.0, beard=0.0, hairline_cm=5.0, hair_amount=1.0,
                               hair=HAIR[1], brow_density=0.8, iris=IRIS[1], freckles=0.0, moles=(), redness=0.5,
                               under_eye=0.5, lip_tint=1.0, oiliness=0.5, f0=0.035, pore_scale=1.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--res", type=int, default=512)
    args = ap.parse_args()
    tex = make_textures(template_subject(), args.res)
    OUT.mkdir(parents=True, exist_ok=True)
    for material, maps in tex.items():
        for name, x in maps.items():
            side = args.res if material == "M_Face" else max(64, args.res // 4)
            if x.shape[-1] != side:
                x = torch.nn.functional.interpolate(x[None].float(), size=(side, side), mode="area")[0]
            uio.write_png(OUT / f"{material}_{name}.png", x.float().clamp(0, 1), bits=8, compression=9)
    print(f"wrote {len(list(OUT.glob('*.png')))} PNGs to {OUT}")


if __name__ == "__main__":
    main()
