"""How much of the detail band is predictable from the image's own detail band? A reference for the HFDR.

    python -m experiments.detail_ceiling --store data/captures/2048 [--steps 1000] [--width 16] [--loss l2|l1]

Trains a small CNN (3 layers of 5×5 convolutions, SiLU) from the image's detail band (x − up(avgpool₄ x)) to
the texture maps' detail band, on random 128² crops (4 per step, inside the face) of the training subjects
(split by subject, as training uses), then reports `uhrtex.metrics.detail` on the test captures: the CNN's
output as the prediction's band (its low frequencies are zero, so only the band metrics mean anything). It sees
no uv, normal or guide, so whatever it gets right is recoverable from the full-resolution pixels alone.
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from datamodules.captures import split_subjects
from uhrtex import maps
from uhrtex.captures.format import split_key
from uhrtex.captures.store import CaptureStore
from uhrtex.losses import laplacian
from uhrtex.metrics.detail import detail_metrics
from uhrtex.networks.unet import detail_band


def small_cnn(width: int, layers: int = 3, kernel: int = 5) -> torch.nn.Sequential:
    mods, c = [], 3
    for _ in range(layers - 1):
        mods += [torch.nn.Conv2d(c, width, kernel, padding=kernel // 2), torch.nn.SiLU()]
        c = width
    return torch.nn.Sequential(*mods, torch.nn.Conv2d(c, maps.TEXTURE.channels, kernel, padding=kernel // 2))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--kernel", type=int, default=5)
    ap.add_argument("--loss", choices=("l2", "l1"), default="l2", help="on the band and its Laplacian (×2)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    store = CaptureStore(args.store)
    keys = store.keys()
    split = split_subjects([split_key(k)[0] for k in keys])
    subset = lambda part: [k for k in keys if split_key(k)[0] in set(split[part])]  # noqa: E731

    def load(key):
        cap = store.read(key, names=("image", "mask", *maps.TEXTURE.names))
        gt = maps.TEXTURE.cat({n: cap[n][None] for n in maps.TEXTURE.names})
        return detail_band(cap["image"][None], 4), detail_band(gt, 4), cap["mask"][None], gt

    train = [load(k) for k in subset("train")]
    net = small_cnn(args.width, args.layers, args.kernel)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    err = torch.square if args.loss == "l2" else torch.abs
    scale = 1e4 if args.loss == "l2" else 1e2  # Adam is scale-free; this only keeps the logged numbers readable
    gen = torch.Generator().manual_seed(args.seed)
    for _ in range(args.steps):
        xs, ys = [], []
        for _ in range(4):
            x, y, m, _ = train[int(torch.randint(len(train), (1,), generator=gen))]
            inside = torch.nonzero(m[0, 0, 64:-64, 64:-64] > 0.5)
            i, j = inside[int(torch.randint(len(inside), (1,), generator=gen))].tolist()
            xs.append(x[..., i:i + 128, j:j + 128])
            ys.append(y[..., i:i + 128, j:j + 128])
        p, y = net(torch.cat(xs)), torch.cat(ys)
        loss = (err(p - y).mean() + 2 * err(laplacian(p) - laplacian(y)).mean()) * scale
        opt.zero_grad()
        loss.backward()
        opt.step()
    result: dict[str, float] = {}
    with torch.no_grad():
        for key in subset("test"):
            x, _, m, gt = load(key)
            out = torch.cat([net(x[..., r:r + 512, :]) for r in range(0, x.shape[-2], 512)], -2)
            for k, v in detail_metrics(out + 0.5, gt, m, 8).items():
                result[k] = result.get(k, 0.0) + float(v[0]) / len(subset("test"))
    print(json.dumps({"test": subset("test"), "steps": args.steps, "width": args.width, "layers": args.layers,
                      "kernel": args.kernel, "loss": args.loss,
                      **{k: round(v, 4) for k, v in result.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
