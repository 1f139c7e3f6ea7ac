"""Write the probe images (PNG) for `probelog-tool probes build`.

  make_probes.py --data D --out DIR --kind near|far|leaves [--count 2000] [--seed 7]

Neither kind is drawn from the classifiers' training distribution:
- near: emoji in the styles the classifiers never saw (openmoji, noto-v1, emojione-v1), every
  concept of the set (most are not hub classes), warped and composited over random backgrounds;
  the analogue of the paper's in-distribution (ImageNet) probes.
- far: monochrome and flat icons (mdi, game-icons, flat-color-icons), one to three per image,
  tinted in random colours over random backgrounds; no emoji at all (the analogue of COCO).
- leaves: the dead-leaves model (the paper's coarsest probe distribution): discs of random
  colours with power-law radii, stacked until they cover the image. No data at all.
"""

import argparse
import json
import os

import numpy as np
import torch
from PIL import Image

import common

SIZE = 32


def save(x, names, out):
    os.makedirs(out, exist_ok=True)
    arr = (x.clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    for a, name in zip(arr, names):
        Image.fromarray(a).save(f"{out}/{name}.png")


def near(args, gen, rng):
    images, concept, style, meta = common.load_emoji(args.data)
    sidx = [meta["styles"].index(s) for s in common.HELDOUT_STYLES]
    pool = np.flatnonzero(np.isin(style, sidx))
    pick = np.sort(rng.choice(pool, args.count, replace=False))
    x = common.compose(common.to_tensor_rgba(images[pick]), SIZE, gen, scale=(0.45, 1.0))
    names = [
        f"{i:05d}-{meta['styles'][style[j]]}-{meta['concepts'][concept[j]]['iconify']}"
        for i, j in enumerate(pick)
    ]
    return x, names


def far(args, gen, rng):
    z = np.load(f"{args.data}/icons.npz")
    names_all = json.load(open(f"{args.data}/icons.json"))["names"]
    src = common.to_tensor_rgba(z["images"])
    mono = torch.from_numpy(z["set"] != 2)  # flat-color-icons keep their colours
    n = args.count
    canvas = common.backgrounds(n, SIZE, gen)
    names = []
    layers = torch.randint(1, 4, (n,), generator=gen)
    for layer in range(3):
        pick = torch.from_numpy(rng.choice(len(src), n))
        s = src[pick].clone()
        tint = torch.rand(n, 3, 1, 1, generator=gen)
        s[:, :3] = torch.where(mono[pick].view(n, 1, 1, 1), tint * s[:, 3:4], s[:, :3])
        scale = (0.5, 0.9) if layer == 0 else (0.25, 0.6)
        fg = common.warp(s, SIZE, gen, scale=scale, rot=180.0)
        on = (layers > layer).view(n, 1, 1, 1).float()
        canvas = canvas * (1 - on * fg[:, 3:4]) + on * fg[:, :3]
        if layer == 0:
            names = [f"{i:05d}-{names_all[j]}" for i, j in enumerate(pick.tolist())]
    return common.jitter(canvas, gen), names


def leaves(args, gen, rng):
    n, layers = args.count, 60
    yy, xx = torch.meshgrid(torch.arange(SIZE) + 0.5, torch.arange(SIZE) + 0.5, indexing="ij")
    canvas = torch.rand(n, 3, 1, 1, generator=gen).expand(n, 3, SIZE, SIZE).clone()
    for _ in range(layers):
        cx = torch.rand(n, 1, 1, generator=gen) * SIZE
        cy = torch.rand(n, 1, 1, generator=gen) * SIZE
        # Radii with density ~ 1/r^3 between 1.5 and 16 px.
        u = torch.rand(n, 1, 1, generator=gen)
        rmin, rmax = 1.5, 16.0
        r = 1 / torch.sqrt(u / rmax**2 + (1 - u) / rmin**2)
        disc = (((xx - cx) ** 2 + (yy - cy) ** 2) <= r**2).unsqueeze(1)
        colour = torch.rand(n, 3, 1, 1, generator=gen)
        # Each disc hides what lies under it: the occlusion of the dead-leaves model.
        canvas = torch.where(disc, colour.expand(n, 3, SIZE, SIZE), canvas)
    return common.jitter(canvas, gen, strength=0.5), [f"{i:05d}-leaves" for i in range(n)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--kind", choices=["near", "far", "leaves"], required=True)
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    x, names = {"near": near, "far": far, "leaves": leaves}[args.kind](args, gen, rng)
    save(x, names, args.out)


if __name__ == "__main__":
    main()
