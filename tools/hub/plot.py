"""Plots of the hub's evaluation reports (probelog-tool eval --report).

  plot.py --results DIR

Reads DIR/eval-near.json and DIR/eval-far.json and writes
- DIR/accuracy-vs-k.png: top-1 and top-5 against k of the top-k discrepancy, with the
  full-query Euclidean baseline as a dashed line;
- DIR/accuracy-vs-probes.png: top-1 and top-5 against the number of probes every model runs;
- DIR/collab.png: collaborative probing against a fixed subset of the same size (near hub).
"""

import argparse
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HUBS = [("near", "near probes (held-out emoji styles)"), ("far", "far probes (icons)"),
        ("leaves", "dead-leaves probes")]
STYLES = {"near": "-", "far": ":", "leaves": "--"}
COLORS = {"logit->logit": "C0", "text->logit": "C2"}


def load(results):
    out = {}
    for kind, _ in HUBS:
        path = f"{results}/eval-{kind}.json"
        if os.path.exists(path):
            out[kind] = json.load(open(path))
    return out


def accuracy_vs_k(reports, path):
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, metric in zip(axes, ["top1", "top5"]):
        for kind, _ in HUBS:
            r, style = reports.get(kind), STYLES[kind]
            if not r:
                continue
            for setting in ["logit->logit", "text->logit"]:
                lines = [l for l in r["k_sweep"] if l["setting"] == setting]
                topk = [l for l in lines if l["method"] == "top-k"]
                full = [l for l in lines if l["method"].startswith("full")]
                if not topk:
                    continue
                label = f"{setting}, {kind}"
                ax.plot([l["x"] for l in topk], [100 * l[metric] for l in topk], style, marker="o",
                        ms=3, color=COLORS[setting], label=f"top-k, {label}")
                if full:
                    ax.axhline(100 * full[0][metric], ls="--", lw=0.8, color=COLORS[setting], alpha=0.6 if kind == "near" else 0.3)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("k (query's highest probes compared)")
        ax.set_title(f"{'top-1' if metric == 'top1' else 'top-5'} accuracy (dashed: full-query Euclidean)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy, %")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def accuracy_vs_probes(reports, path):
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, metric in zip(axes, ["top1", "top5"]):
        for kind, _ in HUBS:
            r, style = reports.get(kind), STYLES[kind]
            if not r:
                continue
            lines = [l for l in r["probe_curve"] if l["setting"] == "logit->logit"]
            for i, method in enumerate(dict.fromkeys(l["method"] for l in lines)):
                pts = [l for l in lines if l["method"] == method]
                ax.plot([l["x"] for l in pts], [100 * l[metric] for l in pts], style, marker="o", ms=3,
                        color=f"C{i}", label=f"{method}, {kind}")
        ax.set_xscale("log")
        ax.set_xlabel("probes per model")
        ax.set_title(f"logit->logit {'top-1' if metric == 'top1' else 'top-5'} accuracy")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy, %")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def collab(reports, path):
    r = reports.get("near")
    if not r or not r["collab"]:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    lines = [l for l in r["collab"] if l["method"] == "top-k"]
    for prefix, color in [("collaborative", "C3"), ("fixed subset", "C0"), ("full probing", "k")]:
        pts = sorted((l for l in lines if l["setting"].startswith(prefix)), key=lambda l: l["x"])
        if prefix == "full probing":
            ax.axhline(100 * pts[0]["top1"], color=color, ls="--", label="full probing")
            continue
        ax.errorbar([l["x"] for l in pts], [100 * l["top1"] for l in pts],
                    yerr=[[100 * (l["top1"] - l["top1_ci"][0]) for l in pts],
                          [100 * (l["top1_ci"][1] - l["top1"]) for l in pts]],
                    marker="o", ms=3, capsize=2, color=color, label=prefix)
    ax.set_xlabel("fraction of the probes each gallery model runs")
    ax.set_ylabel("top-1 accuracy, % (logit->logit, top-k)")
    ax.set_title("collaborative probing, near hub")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", required=True)
    args = ap.parse_args()
    reports = load(args.results)
    accuracy_vs_k(reports, f"{args.results}/accuracy-vs-k.png")
    accuracy_vs_probes(reports, f"{args.results}/accuracy-vs-probes.png")
    collab(reports, f"{args.results}/collab.png")


if __name__ == "__main__":
    main()
