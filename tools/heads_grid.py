"""docs/figures/heads_grid.png: 12 random training subjects (held-out seeds) under 4 environments, and a row of the
retired egg heads beside them (rendered at commit 2053a30 into a tensor file by the command in docs).

    python tools/heads_grid.py [--egg egg_row.pt] [--size 256] [--out docs/figures/heads_grid.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

from uhrtex.captures.render import render_capture
from uhrtex.common import io as uio
from uhrtex.viz.panels import titled

ENVIRONMENTS = ("ph-studio-small-03_r000", "ph-venice-sunset_r060", "ph-st-fagans-interior_r180", "ph-kiara-1-dawn_r270")
SUBJECTS = range(7000, 7012)  # never used for training or the landmark table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--egg", default=None, help="a (12, 3, S, S) tensor of egg-head renders")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--out", default="docs/figures/heads_grid.png")
    a = ap.parse_args()
    rows = []
    for env in ENVIRONMENTS:
        tiles = [render_capture(s, env, 0, a.size, texture_resolution=512).maps["image"] for s in SUBJECTS]
        rows.append(titled(torch.cat(tiles, -1), f"ICT-FaceKit heads, {env}"))
    if a.egg:
        egg = torch.load(a.egg, weights_only=True)
        egg = F.interpolate(egg, size=(a.size, a.size), mode="area") if egg.shape[-1] != a.size else egg
        rows.append(titled(torch.cat(list(egg), -1), "retired egg heads (commit 2053a30)"))
    uio.write_png(Path(a.out), torch.cat(rows, -2).clamp(0, 1))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
