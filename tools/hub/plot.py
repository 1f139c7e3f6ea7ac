"""Plots of the hub's evaluation reports (probelog-research eval --report).

  plot.py --results DIR

Reads DIR/eval-{near,far,leaves}.json (those present) and writes
- DIR/accuracy-vs-k.png: top-1 and top-5 against k of the top-k discrepancy, one column per
  hub, logit->logit and text->logit, with full-query Euclidean (dashed) and the default metric
  (the report's candidate, dotted) and text->logit chance (grey) as horizontal lines;
- DIR/accuracy-vs-probes.png: top-1 and top-5 logit->logit accuracy against the number of probes
  every model runs (a random subset, the same for every model), one column per hub, for top-k,
  full-query and the default metric; on the near hub also collaborative probing (each gallery
  model runs its own random subset, the rest completed from probe factors);
- DIR/collab.png: collaborative probing against a fixed subset of the same size and full probing
  (near hub, top-1 with 95% intervals), one panel per discrepancy.
"""

import argparse
import json
import os
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HUBS = [("near", "near probes (held-out emoji styles)"), ("far", "far probes (icons)"),
        ("leaves", "dead-leaves probes")]
SETTING_COLORS = {"logit->logit": "C0", "text->logit": "C2"}
METRIC_NAMES = {"top1": "top-1", "top5": "top-5"}



def label_panel(ax, row, col, title, xlabel, ylabel):
    """A grid on panel (row, col) of a 2-row figure; the title on the top row, the x label on the
    bottom row, the y label in the first column."""
    ax.grid(alpha=0.3)
    if row == 0:
        ax.set_title(title, fontsize=10)
    if row == 1:
        ax.set_xlabel(xlabel)
    if col == 0:
        ax.set_ylabel(ylabel)

def load(results):
    out = {}
    for kind, _ in HUBS:
        path = f"{results}/eval-{kind}.json"
        if os.path.exists(path):
            out[kind] = json.load(open(path))
    return out


def candidate_method(r):
    """The report's candidate as the probe curve and collab sections name it, and a short label."""
    for l in r["table"]:
        m = re.match(r"candidate ([^:]+(?::[^:]+)?): (.*)", l["method"])
        if m:
            return m.group(2), f"default ({m.group(1)})"
    return None, None


def label_of(method, r):
    cand, short = candidate_method(r)
    if method == cand:
        return short
    return {"top-k": f"top-k (k={r['k']})", "full-query Euclidean": "full-query Euclidean"}.get(method, method)


def method_color(method, r):
    cand, _ = candidate_method(r)
    if method == cand:
        return "C3"
    return {"top-k": "C0", "full-query Euclidean": "C1"}.get(method, "C7")


def accuracy_vs_k(reports, path):
    kinds = [(k, t) for k, t in HUBS if k in reports]
    fig, axes = plt.subplots(2, len(kinds), figsize=(4.2 * len(kinds), 7), sharex=True, squeeze=False)
    for col, (kind, title) in enumerate(kinds):
        r = reports[kind]
        cand, short = candidate_method(r)
        for row, metric in enumerate(["top1", "top5"]):
            ax = axes[row][col]
            for setting, color in SETTING_COLORS.items():
                lines = [l for l in r["k_sweep"] if l["setting"] == setting]
                topk = [l for l in lines if l["method"] == "top-k"]
                if not topk:
                    continue
                ax.plot([l["x"] for l in topk], [100 * l[metric] for l in topk], "-", marker="o", ms=3,
                        color=color, label=f"{setting}: top-k")
                full = [l for l in lines if l["method"].startswith("full")]
                if full:
                    ax.axhline(100 * full[0][metric], ls="--", lw=1, color=color,
                               label=f"{setting}: full-query Euclidean")
                default = [l for l in r["table"] if l["setting"] == setting and l["method"].startswith("candidate")]
                if default:
                    ax.axhline(100 * default[0][metric], ls=":", lw=1.5, color=color,
                               label=f"{setting}: {short}, k={r['k']}")
            chance = [c for c in r["chance"] if c["setting"] == "text->logit"]
            if chance:
                ax.axhline(100 * chance[0][metric], ls="-", lw=2, color="0.6", alpha=0.6,
                           label="text->logit: chance")
            ax.set_xscale("log", base=2)
            label_panel(ax, row, col, title, "k (the query's highest probes compared)",
                        f"{METRIC_NAMES[metric]} accuracy, %")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle("Retrieval accuracy against k (logit->logit: logits of held-out models as queries; "
                 "text->logit: concept names)", fontsize=11)
    fig.tight_layout(rect=(0, 0.07, 1, 0.97))
    fig.savefig(path, dpi=110)


def collab_points(r):
    """Collaborative-probing lines of the report with their probes per model."""
    out = []
    for l in r.get("collab", []):
        m = re.match(r"collaborative, (\d+) probes per model", l["setting"])
        if m:
            out.append((int(m.group(1)), l))
    return out


def accuracy_vs_probes(reports, path):
    kinds = [(k, t) for k, t in HUBS if k in reports]
    fig, axes = plt.subplots(2, len(kinds), figsize=(4.2 * len(kinds), 7), sharex=True, squeeze=False)
    for col, (kind, title) in enumerate(kinds):
        r = reports[kind]
        lines = [l for l in r["probe_curve"] if l["setting"] == "logit->logit"]
        methods = list(dict.fromkeys(l["method"] for l in lines))
        collab = collab_points(r)
        for row, metric in enumerate(["top1", "top5"]):
            ax = axes[row][col]
            for method in methods:
                pts = sorted((l for l in lines if l["method"] == method), key=lambda l: l["x"])
                ax.plot([l["x"] for l in pts], [100 * l[metric] for l in pts], "-", marker="o", ms=3,
                        color=method_color(method, r), label=f"{label_of(method, r)}, same subset for all")
                cp = sorted(((n, l) for n, l in collab if l["method"] == method), key=lambda t: t[0])
                if cp:
                    ax.plot([n for n, _ in cp], [100 * l[metric] for _, l in cp], ":", marker="X", ms=6,
                            color=method_color(method, r), label=f"{label_of(method, r)}, collaborative")
            ax.set_xscale("log")
            label_panel(ax, row, col, title, "probes per model",
                        f"logit->logit {METRIC_NAMES[metric]} accuracy, %")
    # One legend with every series (the near hub has the collaborative ones).
    seen = {}
    for ax in axes.flat:
        for h, l in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(l, h)
    fig.legend(list(seen.values()), list(seen.keys()), loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle("Accuracy against the number of probes each model runs", fontsize=11)
    fig.tight_layout(rect=(0, 0.08, 1, 0.97))
    fig.savefig(path, dpi=110)


def collab(reports, path):
    r = reports.get("near")
    if not r or not r.get("collab"):
        return
    methods = list(dict.fromkeys(l["method"] for l in r["collab"]))
    fig, axes = plt.subplots(1, len(methods), figsize=(4.2 * len(methods), 4), sharey=True, squeeze=False)
    for ax, method in zip(axes[0], methods):
        lines = [l for l in r["collab"] if l["method"] == method]
        for prefix, color, marker in [("collaborative", "C3", "X"), ("fixed subset", "C0", "o")]:
            pts = sorted((l for l in lines if l["setting"].startswith(prefix)), key=lambda l: l["x"])
            ax.errorbar([l["x"] for l in pts], [100 * l["top1"] for l in pts],
                        yerr=[[100 * (l["top1"] - l["top1_ci"][0]) for l in pts],
                              [100 * (l["top1_ci"][1] - l["top1"]) for l in pts]],
                        marker=marker, ms=4, capsize=2, color=color, label=prefix)
        full = [l for l in lines if l["setting"].startswith("full probing")]
        if full:
            ax.axhline(100 * full[0]["top1"], color="k", ls="--", label="full probing")
            ax.axhspan(100 * full[0]["top1_ci"][0], 100 * full[0]["top1_ci"][1], color="k", alpha=0.08)
        ax.set_xlabel("fraction of the probes each gallery model runs")
        ax.set_title(label_of(method, r), fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("logit->logit top-1 accuracy, %")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Collaborative probing, near hub (95% intervals)", fontsize=11)
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
