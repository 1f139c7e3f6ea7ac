"""Rebuild the demo's shipped assets (tools/demo/) from registry material only.

  .venv-py/bin/python tools/demo/make_assets.py --tool PATH/TO/probelog-tool [--work DIR] [--out tools/demo]

Material: named emoji from npm packages (the iconify JSON sets and the emoji-datasource PNGs
listed in NPM below, exact versions), installed with `npm install` into WORK/npm when missing.
Everything else is trained here, on the CPU, in a few minutes (torch from .venv-py, the same
2.13.0 as the libtorch that probelog-tool links, so the TorchScript files load in the tool).

Writes, under OUT:
- probes.pset: 320 images at 32 px, built by `probelog-tool probes build` from PNGs rendered
  here: every demo concept 5 times in distinct styles (of all ten, the three that no model
  trains on included), the rest other emoji (flags, symbols and multi-codepoint sequences left
  out) in random styles, each warped and composited over a fresh random background;
- models/NAME.pt + models/NAME.txt: the classifiers (MODELS below), TorchScript, input float32
  [N, 3, 32, 32] RGB in [0, 1] normalized with ImageNet's mean/std, output [N, classes] logits;
  labels one per line. Trained on the other seven emoji styles with random warps, backgrounds
  and colour jitter;
- models.toml: the same models as an `append --manifest` file;
- text/clip_image.pt, text/clip_text.pt, text/tokenizer.json: the text stand-in, a CLIP-style
  pair trained here on the demo vocabulary. The image tower is a small CNN ([N, 3, 32, 32] in
  [0, 1], no mean/std -> [N, 64], unit length); the text tower is a word-level embedding table
  (int64 ids [N, T] -> mean of the known words' vectors -> [N, 64], unit length; padding and
  filler words such as "a photo of" carry no weight), trained jointly as CLIP's contrastive
  classifier over the concept names. It knows only the demo's words: it is a stand-in for a
  real CLIP, not one;
- assets.json: what was made, with each model's accuracy on the held-out styles.
"""

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "hub"))
import common  # noqa: E402  (tools/hub/common.py: augmentation and architectures)
from render import iconify_svg, render_svg  # noqa: E402  (tools/hub/render.py)

NPM = {
    "@iconify-json/noto": "1.2.9",
    "@iconify-json/noto-v1": "1.2.5",
    "@iconify-json/twemoji": "1.2.5",
    "@iconify-json/openmoji": "1.2.29",
    "@iconify-json/fluent-emoji-flat": "1.2.6",
    "@iconify-json/emojione": "1.2.3",
    "@iconify-json/emojione-v1": "1.2.3",
    "@iconify-json/fxemoji": "1.2.2",
    "emoji-datasource-apple": "16.0.0",
    "emoji-datasource-google": "16.0.0",
}
TRAIN_ICONIFY = ["noto", "twemoji", "fluent-emoji-flat", "emojione", "fxemoji"]
TRAIN_PNG = ["apple", "google"]
PROBE_STYLES = ["openmoji", "noto-v1", "emojione-v1"]
SRC = 48  # rendered source size
SIZE = 32  # model input and probe size
MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]

# name, architecture spec (tools/hub/common.py build_model), task, classes. Concepts overlap
# between models so that a search by example finds the same concept elsewhere.
MODELS = [
    ("pets-cnn", {"arch": "cnn", "width": 16, "depth": 3, "double": False, "bn": True, "act": "relu"},
     "pets", ["dog", "cat", "mouse", "fish", "frog", "rabbit"]),
    ("farm-resnet", {"arch": "resnet", "width": 16, "depth": 3, "blocks": 1},
     "farm", ["cow", "pig", "horse", "chicken", "dog", "cat"]),
    ("zoo-dwnet", {"arch": "dwnet", "width": 24, "depth": 3},
     "zoo", ["elephant", "tiger", "monkey", "bear", "penguin", "whale", "octopus", "frog"]),
    ("fruit-cnn", {"arch": "cnn", "width": 16, "depth": 3, "double": True, "bn": True, "act": "gelu"},
     "fruit", ["banana", "grapes", "strawberry", "cherries", "lemon", "watermelon"]),
    ("food-cnn", {"arch": "cnn", "width": 16, "depth": 3, "double": True, "bn": True, "act": "relu"},
     "food", ["hamburger", "pizza", "bread", "mushroom", "banana", "strawberry"]),
    ("travel-resnet", {"arch": "resnet", "width": 12, "depth": 3, "blocks": 1},
     "travel", ["bicycle", "airplane", "rocket", "bus", "train", "ship"]),
    ("mixed-cnn", {"arch": "cnn", "width": 24, "depth": 3, "double": False, "bn": True, "act": "silu"},
     "mixed", ["dog", "banana", "airplane", "guitar", "sunflower", "star", "elephant", "bus"]),
]
FILLER = ["a", "an", "the", "photo", "picture", "image", "of", "drawing", "emoji", "icon"]


def sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def npm_install(work):
    nm = os.path.join(work, "npm", "node_modules")
    if os.path.isdir(nm) and all(os.path.isdir(os.path.join(nm, p)) for p in NPM):
        return nm
    os.makedirs(os.path.join(work, "npm"), exist_ok=True)
    json.dump({"name": "probelog-demo-material", "private": True, "dependencies": NPM},
              open(os.path.join(work, "npm", "package.json"), "w"), indent=1)
    subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--ignore-scripts"],
                   cwd=os.path.join(work, "npm"), check=True)
    return nm


def load_png(path):
    im = Image.open(path).convert("RGBA").resize((SRC, SRC), Image.LANCZOS)
    return np.asarray(im, dtype=np.uint8)


class Emoji:
    """Renders named emoji of the iconify sets (by name) and the emoji-datasource PNGs."""

    def __init__(self, nm):
        self.nm = nm
        self.sets = {}
        noto = json.load(open(f"{nm}/@iconify-json/noto/chars.json"))
        self.codepoint = {v: k.lower().replace("-fe0f", "") for k, v in noto.items()}
        ds = json.load(open(f"{nm}/emoji-datasource-apple/emoji.json"))
        self.datasource = {e["unified"].lower().replace("-fe0f", ""): e for e in ds}

    def iconify(self, style, name):
        if style not in self.sets:
            self.sets[style] = json.load(open(f"{self.nm}/@iconify-json/{style}/icons.json"))
        svg = iconify_svg(self.sets[style], name, SRC)
        return render_svg((svg, SRC)) if svg else None

    def png(self, style, name):
        e = self.datasource.get(self.codepoint.get(name, ""))
        if e is None or not e.get(f"has_img_{style}"):
            return None
        path = f"{self.nm}/emoji-datasource-{style}/img/{style}/64/{e['image']}"
        return load_png(path) if os.path.exists(path) else None

    def render(self, name, styles):
        out = []
        for s in styles:
            a = self.png(s, name) if s in TRAIN_PNG else self.iconify(s, name)
            if a is not None:
                out.append(a)
        return out

    def other_names(self, exclude):
        """Single-codepoint emoji outside the flags, components and symbols (probe fillers)."""
        keep = []
        for name, cp in sorted(self.codepoint.items()):
            e = self.datasource.get(cp)
            if (e is None or name in exclude or "-" in cp
                    or e["category"] in ("Flags", "Component", "Symbols")):
                continue
            keep.append(name)
        return keep


def as_u8(x):
    return (x.clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)


def make_probes(emoji, concepts, args, gen, rng):
    """PNG probes: each demo concept PER_CONCEPT times in distinct styles (of all ten: the
    classifiers' own styles with fresh backgrounds and warps, and the three held out), and other
    emoji in random styles for the rest."""
    out = os.path.join(args.work, "probes")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    styles = TRAIN_ICONIFY + TRAIN_PNG + PROBE_STYLES
    items = []  # (source RGBA, name)
    for c in concepts:
        got = 0
        for s in rng.permutation(styles):
            if got == args.per_concept:
                break
            a = emoji.render(c, [s])
            if a:
                items.append((a[0], f"{c}-{s}"))
                got += 1
    others = emoji.other_names(set(concepts))
    rng.shuffle(others)
    for name in others:
        if len(items) >= args.probes:
            break
        got = emoji.render(name, [styles[int(rng.integers(len(styles)))]])
        if got:
            items.append((got[0], f"{name.replace('-', '_')}"))
    items = items[: args.probes]
    src = common.to_tensor_rgba(np.stack([a for a, _ in items]))
    x = as_u8(common.compose(src, SIZE, gen, scale=(0.55, 1.0)))
    order = rng.permutation(len(items))
    for i, j in enumerate(order):
        Image.fromarray(x[j]).save(f"{out}/{i:03d}-{items[j][1]}.png")
    print(f"probes: {len(items)} images ({len(concepts) * args.per_concept} of demo concepts)",
          file=sys.stderr)
    return out


def sources(emoji, concepts, styles):
    """Premultiplied RGBA sources of `concepts` in `styles`, and their class indices."""
    srcs, ys = [], []
    for j, c in enumerate(concepts):
        got = emoji.render(c, styles)
        assert got, f"no image of {c} in {styles}"
        srcs += got
        ys += [j] * len(got)
    return common.to_tensor_rgba(np.stack(srcs)), torch.tensor(ys)


def render_views(emoji, concepts, styles, per_source, seed):
    """Augmented 32 px views (uint8 [M, 32, 32, 3]) of every concept in `styles`, rendered once
    and shared by every model (as a vision dataset is shared), with their concept names."""
    src, y = sources(emoji, concepts, styles)
    gen = torch.Generator().manual_seed(seed)
    src, y = src.repeat(per_source, 1, 1, 1), y.repeat(per_source)
    x = torch.cat([common.compose(src[b : b + 512], SIZE, gen) for b in range(0, len(src), 512)])
    return as_u8(x), [concepts[i] for i in y.tolist()]


def select(views, classes):
    """The views of `classes` as float [M, 3, 32, 32] in [0, 1], with class indices."""
    x, names = views
    keep = [i for i, n in enumerate(names) if n in classes]
    xs = torch.from_numpy(x[keep]).permute(0, 3, 1, 2).float() / 255.0
    return xs, torch.tensor([classes.index(names[i]) for i in keep])


@torch.no_grad()
def accuracy(model, x, y):
    model.eval()
    return (model(x).argmax(1) == y).float().mean().item()


def train_classifier(train, held, name, spec, classes, args, out):
    torch.manual_seed(args.seed + len(name))
    gen = torch.Generator().manual_seed(args.seed + len(name))
    x, y = select(train, classes)
    xh, yh = select(held, classes)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    model = common.build_model(spec, len(classes), SIZE)
    lr = 3e-3
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=args.steps, pct_start=0.15)
    t0 = time.time()
    model.train()
    for _ in range(args.steps):
        idx = torch.randint(0, len(x), (args.batch,), generator=gen)
        xb = common.flip_shift(x[idx], gen)
        loss = F.cross_entropy(model((xb - mean) / std), y[idx], label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    acc = accuracy(model, (xh - mean) / std, yh)
    with torch.no_grad():
        traced = torch.jit.trace(model, torch.rand(2, 3, SIZE, SIZE))
    path = os.path.join(out, "models", f"{name}.pt")
    traced.save(path)
    check = torch.jit.load(path)
    probe = torch.rand(5, 3, SIZE, SIZE)
    with torch.no_grad():
        assert torch.allclose(check(probe), model(probe), atol=1e-5)
    with open(os.path.join(out, "models", f"{name}.txt"), "w") as f:
        f.write("\n".join(classes) + "\n")
    params = sum(p.numel() for p in model.parameters())
    print(f"{name:14s} {spec['arch']:6s} classes={len(classes)} held-out-style acc={acc:.3f} "
          f"params={params} {time.time() - t0:.0f}s", file=sys.stderr, flush=True)
    return {"name": name, "arch": spec["arch"], "labels": classes, "params": params,
            "heldout_style_accuracy": round(acc, 4), "train_s": round(time.time() - t0, 1)}


class ImageTower(nn.Module):
    def __init__(self, dim, width=24):
        super().__init__()
        w = width

        def block(i, o):
            return nn.Sequential(nn.Conv2d(i, o, 3, 2, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU(),
                                 nn.Conv2d(o, o, 3, 1, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU())

        self.features = nn.Sequential(block(3, w), block(w, 2 * w), block(2 * w, 4 * w))
        self.proj = nn.Linear(4 * w, dim)

    def forward(self, x):
        return F.normalize(self.proj(self.features(x).mean((2, 3))), dim=-1)


class TextTower(nn.Module):
    """Word-level: the mean of the vectors of the known words, at unit length. Ids whose weight
    is 0 (padding, filler words) are skipped; an unknown word ([UNK]) counts with its own vector."""

    def __init__(self, vocab_size, dim, weight):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim)
        self.register_buffer("weight", weight)

    def forward(self, ids):
        w = self.weight[ids].unsqueeze(-1)
        v = (self.embed(ids) * w).sum(1) / w.sum(1).clamp(min=1.0)
        return F.normalize(v, dim=-1)


def tokenizer_json(vocab):
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": 0, "content": "[PAD]", "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True},
            {"id": 1, "content": "[UNK]", "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True},
        ],
        "normalizer": {"type": "Lowercase"},
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": None,
        "decoder": None,
        "model": {"type": "WordLevel", "vocab": {w: i for i, w in enumerate(vocab)},
                  "unk_token": "[UNK]"},
    }


def train_text(train, held, concepts, args, out):
    """The CLIP-style pair: image tower and word embeddings, trained jointly as a contrastive
    classifier over the concept names (softmax of scaled cosine similarities)."""
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed + 1)
    vocab = ["[PAD]", "[UNK]"] + FILLER + list(concepts)
    weight = torch.tensor([0.0, 1.0] + [0.0] * len(FILLER) + [1.0] * len(concepts))
    first = 2 + len(FILLER)
    x, y = select(train, concepts)
    dim = args.dim
    image = ImageTower(dim)
    text = TextTower(len(vocab), dim, weight)
    scale = nn.Parameter(torch.tensor(np.log(10.0), dtype=torch.float32))
    params = list(image.parameters()) + list(text.parameters()) + [scale]
    opt = torch.optim.AdamW(params, lr=3e-3, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=args.text_steps, pct_start=0.1)
    t0 = time.time()
    image.train()
    for _ in range(args.text_steps):
        idx = torch.randint(0, len(x), (args.batch,), generator=gen)
        xb = common.flip_shift(x[idx], gen)
        words = F.normalize(text.embed.weight[first:], dim=-1)
        logits = scale.exp().clamp(max=100) * image(xb) @ words.T
        loss = F.cross_entropy(logits, y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    image.eval()
    text.eval()
    xh, yh = select(held, concepts)
    with torch.no_grad():
        words = F.normalize(text.embed.weight[first:], dim=-1)
        acc = (image(xh) @ words.T).argmax(1).eq(yh).float().mean().item()
    d = os.path.join(out, "text")
    os.makedirs(d, exist_ok=True)
    with torch.no_grad():
        ti = torch.jit.trace(image, torch.rand(2, 3, SIZE, SIZE))
        ids = torch.zeros(2, 77, dtype=torch.long)
        ids[0, :3] = torch.tensor([2, first, first + 1])
        tt = torch.jit.trace(text, ids)
    ti.save(f"{d}/clip_image.pt")
    tt.save(f"{d}/clip_text.pt")
    with torch.no_grad():
        probe = torch.rand(3, 3, SIZE, SIZE)
        assert torch.allclose(torch.jit.load(f"{d}/clip_image.pt")(probe), image(probe), atol=1e-5)
        ids = torch.zeros(1, 77, dtype=torch.long)
        ids[0, :2] = torch.tensor([first + 3, 1])
        assert torch.allclose(torch.jit.load(f"{d}/clip_text.pt")(ids), text(ids), atol=1e-5)
    with open(f"{d}/tokenizer.json", "w") as f:
        json.dump(tokenizer_json(vocab), f, indent=1)
        f.write("\n")
    print(f"text stand-in: {len(concepts)} words, d={dim}, zero-shot held-out-style acc={acc:.3f} "
          f"{time.time() - t0:.0f}s", file=sys.stderr, flush=True)
    return {"words": len(concepts), "vocabulary": len(vocab), "dim": dim,
            "zero_shot_heldout_style_accuracy": round(acc, 4), "train_s": round(time.time() - t0, 1)}


def manifest(out):
    lines = ["# The demo's classifiers (tools/demo/make_assets.py), for `append --manifest`.",
             "# Paths are relative to this file.", ""]
    for name, spec, task, _ in MODELS:
        lines += ["[[model]]", f'model = "models/{name}.pt"', f'name = "{name}"',
                  f'labels = "models/{name}.txt"', f'source = "probelog-demo/{name}"',
                  f"mean = {MEAN}", f"std = {STD}",
                  f'meta = {{ arch = "{spec["arch"]}", task = "{task}" }}', ""]
    with open(os.path.join(out, "models.toml"), "w") as f:
        f.write("\n".join(lines))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tool", required=True, help="probelog-tool (for `probes build`)")
    ap.add_argument("--out", default=HERE)
    ap.add_argument("--work", default="/tmp/probelog-demo-work")
    ap.add_argument("--probes", type=int, default=320)
    ap.add_argument("--per-concept", type=int, default=5, help="probes of each demo concept")
    ap.add_argument("--views", type=int, default=24, help="augmented views per training image")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--text-steps", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--only", choices=["probes", "models", "text"], help="rebuild one part only")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(args.work, exist_ok=True)
    out = os.path.abspath(args.out)
    os.makedirs(os.path.join(out, "models"), exist_ok=True)
    emoji = Emoji(npm_install(args.work))
    concepts = sorted({c for *_, classes in MODELS for c in classes})
    report_path = os.path.join(out, "assets.json")
    report = json.load(open(report_path)) if os.path.exists(report_path) else {}
    report.update({"npm": NPM, "train_styles": TRAIN_ICONIFY + TRAIN_PNG, "probe_styles": PROBE_STYLES,
                   "concepts": concepts, "input_size": SIZE, "mean": MEAN, "std": STD})

    if args.only in (None, "probes"):
        gen = torch.Generator().manual_seed(args.seed + 100)
        rng = np.random.default_rng(args.seed)
        pngs = make_probes(emoji, concepts, args, gen, rng)
        pset = os.path.join(out, "probes.pset")
        subprocess.run([args.tool, "probes", "build", "--images", pngs, "--out", pset,
                        "--size", str(SIZE)], check=True)
        report["probes"] = {"count": len(os.listdir(pngs)), "size": SIZE, "per_concept": args.per_concept}
    if args.only in (None, "models", "text"):
        t0 = time.time()
        train = render_views(emoji, concepts, TRAIN_ICONIFY + TRAIN_PNG, args.views, args.seed + 200)
        held = render_views(emoji, concepts, PROBE_STYLES, 4, args.seed + 300)
        print(f"views: {len(train[1])} training, {len(held[1])} held-out-style "
              f"{time.time() - t0:.0f}s", file=sys.stderr, flush=True)
    if args.only in (None, "models"):
        report["models"] = [train_classifier(train, held, name, spec, classes, args, out)
                            for name, spec, _task, classes in MODELS]
        manifest(out)
    if args.only in (None, "text"):
        report["text"] = train_text(train, held, concepts, args, out)
    report["sha256"] = {
        os.path.relpath(os.path.join(r, f), out): sha256(os.path.join(r, f))
        for r, _, fs in os.walk(out) for f in sorted(fs)
        if f.endswith((".pt", ".pset", ".json", ".txt", ".toml")) and f != "assets.json"
    }
    with open(report_path, "w") as f:
        json.dump(report, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
