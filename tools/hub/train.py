"""Plan, train and export the hub's classifiers.

  train.py plan     --data D --out H [--models 180] [--queries 45] [--concepts 300] [--seed 0]
  train.py views    --data D --out H [--views 24] [--threads 1]
  train.py train    --out H [--first i] [--last j] [--threads 1]
  train.py manifest --out H

`plan` fixes every model's classes (a random subset of 5-20 hub concepts), architecture, width,
depth, seed, optimizer settings, input normalization and split (query or gallery) in
H/plan.json, together with the hub's concepts and the half of them that text queries evaluate.
`views` renders the shared training set once, as a vision dataset is shared by the models trained
on it: every hub concept in every training style, `--views` augmented 32 px views each
(H/views.npz), plus validation views of the training styles and views of the held-out styles.
`train` trains models first..last of the plan on those views (with random flips and shifts), measures
accuracy on the validation and held-out-style views, and exports each to TorchScript
(H/models/NAME.pt, input float32 [N, 3, 32, 32] normalized by the manifest's mean/std) with its
labels (NAME.txt), checking that the file loads and returns [N, classes]. A model already
exported is skipped, so an interrupted run resumes. `manifest` writes H/models.toml (every model),
H/gallery.toml and H/queries.toml for `probelog-tool append --manifest`, and H/hub.json
(per-model metrics).
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

import common

SIZE = 32
NORMS = {
    "imagenet": ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    "half": ([0.5, 0.5, 0.5], [0.5, 0.5, 0.5]),
    "none": ([0.0, 0.0, 0.0], [1.0, 1.0, 1.0]),
}


def plan(args):
    images, concept, style, meta = common.load_emoji(args.data)
    hub, text_eval = common.choose_concepts(meta, concept, style, args.concepts, args.seed)
    rng = np.random.default_rng(args.seed + 1)
    models = []
    query_ids = set(rng.choice(args.models, args.queries, replace=False).tolist())
    for i in range(args.models):
        n = int(rng.integers(5, 21))
        classes = sorted(rng.choice(hub, n, replace=False).tolist())
        spec = common.sample_arch(rng)
        models.append(
            {
                "name": f"m{i:03d}",
                "classes": classes,
                "labels": [meta["concepts"][c]["name"] for c in classes],
                "spec": spec,
                "seed": int(rng.integers(1 << 30)),
                "lr": float(rng.choice([2e-3, 3e-3, 5e-3])),
                # Transformers and depthwise nets learn more slowly from few views.
                "steps": int((150 + 12 * n) * (1.5 if spec["arch"] in ("vit", "dwnet") else 1)),
                "batch": 48,
                "label_smoothing": float(rng.choice([0.0, 0.1])),
                "norm": str(rng.choice(list(NORMS))),
                "split": "query" if i in query_ids else "gallery",
            }
        )
    os.makedirs(args.out, exist_ok=True)
    out = {
        "size": SIZE,
        "seed": args.seed,
        "train_styles": common.TRAIN_STYLES,
        "heldout_styles": common.HELDOUT_STYLES,
        "hub_concepts": [meta["concepts"][c]["name"] for c in hub],
        "text_eval_concepts": [meta["concepts"][c]["name"] for c in text_eval],
        "models": models,
    }
    json.dump(out, open(f"{args.out}/plan.json", "w"), indent=1)
    print(f"plan: {args.models} models ({args.queries} query), {len(hub)} concepts", file=sys.stderr)


def views(args):
    """The shared, pre-augmented training set (uint8 [concepts, views, 32, 32, 3])."""
    torch.set_num_threads(args.threads)
    p = json.load(open(f"{args.out}/plan.json"))
    images, concept, style, meta = common.load_emoji(args.data)
    names = [c["name"] for c in meta["concepts"]]
    hub = [names.index(n) for n in p["hub_concepts"]]
    gen = torch.Generator().manual_seed(p["seed"] + 2)

    def render(styles, per_image):
        sidx = [meta["styles"].index(s) for s in styles]
        out = []
        for c in hub:
            keep = np.flatnonzero((concept == c) & np.isin(style, sidx))
            src = common.to_tensor_rgba(images[np.repeat(keep, per_image)])
            x = common.compose(src, SIZE, gen)
            out.append((x.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8))
        return out

    train = render(common.TRAIN_STYLES, args.views)
    val = render(common.TRAIN_STYLES, 2)
    held = render(common.HELDOUT_STYLES, 4)
    held_len = np.array([len(h) for h in held])
    pad = held_len.max()
    held = np.stack([np.concatenate([h, np.zeros((pad - len(h),) + h.shape[1:], np.uint8)]) for h in held])
    np.savez(f"{args.out}/views.npz", train=np.stack(train), val=np.stack(val), heldout=held,
             heldout_len=held_len)
    print(f"views: {np.stack(train).shape} training views", file=sys.stderr)


def as_float(u8):
    return torch.from_numpy(np.ascontiguousarray(u8)).permute(0, 3, 1, 2).float() / 255.0


def model_views(v, key, concepts, lengths=None):
    xs, ys = [], []
    for j, c in enumerate(concepts):
        arr = v[key][c] if lengths is None else v[key][c][: lengths[c]]
        xs.append(arr)
        ys.append(np.full(len(arr), j))
    return as_float(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys))


@torch.no_grad()
def accuracy(model, x, y, mean, std):
    model.eval()
    hits = 0
    for b in range(0, len(x), 512):
        out = model((x[b : b + 512] - mean) / std)
        hits += (out.argmax(1) == y[b : b + 512]).sum().item()
    return hits / max(len(x), 1)


def train_one(m, v, hub_index, out_dir):
    torch.manual_seed(m["seed"])
    gen = torch.Generator().manual_seed(m["seed"])
    concepts = [hub_index[c] for c in m["labels"]]
    x, y = model_views(v, "train", concepts)
    xv, yv = model_views(v, "val", concepts)
    xh, yh = model_views(v, "heldout", concepts, v["heldout_len"])
    model = common.build_model(m["spec"], len(concepts), SIZE)
    mean_l, std_l = NORMS[m["norm"]]
    mean = torch.tensor(mean_l).view(1, 3, 1, 1)
    std = torch.tensor(std_l).view(1, 3, 1, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=m["lr"], weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, m["lr"], total_steps=m["steps"], pct_start=0.15)
    t0 = time.time()
    model.train()
    for step in range(m["steps"]):
        idx = torch.randint(0, len(x), (m["batch"],), generator=gen)
        xb = common.flip_shift(x[idx], gen)
        loss = F.cross_entropy(model((xb - mean) / std), y[idx], label_smoothing=m["label_smoothing"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    train_s = time.time() - t0
    model.eval()
    acc = accuracy(model, xv, yv, mean, std)
    acc_heldout = accuracy(model, xh, yh, mean, std)
    example = torch.rand(2, 3, SIZE, SIZE)
    with torch.no_grad():
        traced = torch.jit.trace(model, example)
    path = f"{out_dir}/{m['name']}.pt"
    traced.save(path + ".tmp")
    check = torch.jit.load(path + ".tmp")
    got = check(torch.rand(5, 3, SIZE, SIZE))
    assert tuple(got.shape) == (5, len(concepts)), got.shape
    with open(f"{out_dir}/{m['name']}.txt", "w") as f:
        f.write("\n".join(m["labels"]) + "\n")
    metrics = {
        "name": m["name"],
        "train_styles_acc": acc,
        "heldout_styles_acc": acc_heldout,
        "params": sum(p.numel() for p in model.parameters()),
        "train_s": train_s,
        "final_loss": loss.item(),
    }
    json.dump(metrics, open(f"{out_dir}/{m['name']}.json", "w"))
    os.replace(path + ".tmp", path)  # last: the .pt marks the model done
    return metrics


def train(args):
    torch.set_num_threads(args.threads)
    p = json.load(open(f"{args.out}/plan.json"))
    v = dict(np.load(f"{args.out}/views.npz"))
    hub_index = {n: i for i, n in enumerate(p["hub_concepts"])}
    out_dir = f"{args.out}/models"
    os.makedirs(out_dir, exist_ok=True)
    last = len(p["models"]) - 1 if args.last is None else args.last
    for m in p["models"][args.first : last + 1]:
        if os.path.exists(f"{out_dir}/{m['name']}.pt"):
            continue
        r = train_one(m, v, hub_index, out_dir)
        print(
            f"{m['name']} {m['spec']['arch']:6s} classes={len(m['labels']):2d} "
            f"val={r['train_styles_acc']:.3f} heldout-styles={r['heldout_styles_acc']:.3f} "
            f"params={r['params']} {r['train_s']:.0f}s",
            flush=True,
        )


def manifest(args):
    p = json.load(open(f"{args.out}/plan.json"))
    out_dir = f"{args.out}/models"
    tables = {"all": [], "gallery": [], "query": []}
    hub = []
    for m in p["models"]:
        metrics = json.load(open(f"{out_dir}/{m['name']}.json"))
        m = {**m, "classes": len(m["classes"])}
        mean, std = NORMS[m["norm"]]
        spec = m["spec"]
        meta = {"arch": spec["arch"], "width": str(spec["width"]), "depth": str(spec["depth"]),
                "split": m["split"], "classes": str(m["classes"]), "norm": m["norm"],
                "seed": str(m["seed"])}
        meta_toml = ", ".join(f'{k} = "{v}"' for k, v in meta.items())
        table = (
            f'[[model]]\nmodel = "models/{m["name"]}.pt"\nname = "{m["name"]}"\n'
            f'labels = "models/{m["name"]}.txt"\nsource = "probelog-hub/{m["name"]}"\n'
            f"mean = {mean}\nstd = {std}\nmeta = {{ {meta_toml} }}\n"
        )
        tables["all"].append(table)
        tables[m["split"]].append(table)
        hub.append({**m, **metrics})
    for key, name in [("all", "models"), ("gallery", "gallery"), ("query", "queries")]:
        with open(f"{args.out}/{name}.toml", "w") as f:
            f.write("# Written by tools/hub/train.py manifest.\n\n" + "\n".join(tables[key]))
    summary = {k: v for k, v in p.items() if k != "models"}
    summary["models"] = hub
    json.dump(summary, open(f"{args.out}/hub.json", "w"), indent=1)
    accs = np.array([h["train_styles_acc"] for h in hub])
    held = np.array([h["heldout_styles_acc"] for h in hub])
    lines = [
        f"{len(hub)} models ({sum(h['split'] == 'query' for h in hub)} query, "
        f"{sum(h['split'] == 'gallery' for h in hub)} gallery), {len(p['hub_concepts'])} concepts, "
        f"{sum(h['classes'] for h in hub)} logits; classes per model "
        f"{min(h['classes'] for h in hub)}-{max(h['classes'] for h in hub)}",
        f"accuracy on fresh views of the training styles: mean {accs.mean():.3f}, min {accs.min():.3f}; "
        f"on the held-out styles: mean {held.mean():.3f}",
        "arch    models  params (median)  training-style acc  held-out-style acc",
    ]
    for arch in sorted({h["spec"]["arch"] for h in hub}):
        hs = [h for h in hub if h["spec"]["arch"] == arch]
        lines.append(
            f"{arch:7s} {len(hs):6d}  {int(np.median([h['params'] for h in hs])):15d}  "
            f"{np.mean([h['train_styles_acc'] for h in hs]):18.3f}  "
            f"{np.mean([h['heldout_styles_acc'] for h in hs]):18.3f}"
        )
    with open(f"{args.out}/summary.txt", "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines), file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=["plan", "views", "train", "manifest"])
    ap.add_argument("--data")
    ap.add_argument("--out", required=True)
    ap.add_argument("--models", type=int, default=180)
    ap.add_argument("--queries", type=int, default=45)
    ap.add_argument("--views", type=int, default=24)
    ap.add_argument("--concepts", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--last", type=int)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    {"plan": plan, "views": views, "train": train, "manifest": manifest}[args.step](args)


if __name__ == "__main__":
    main()
