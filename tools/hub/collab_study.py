"""Collaborative probing study on an exported hub: alternatives to the product's completion.

Works on the fully probed near hub as `probelog-tool export` writes it (descriptors .npy plus
the JSON sidecar). Each gallery model keeps a random third of the probes (its own subset, drawn
from --mask-seed), and the rest of its descriptor is either completed or left out. Then the query
logits (models with split=query, fully probed) search the gallery with the product's default
discrepancy (top-k L1 at k = 16 plus 8x the RMS over all probes, as `eval --candidate
topk+rms:8`; `--metric l1` takes the earlier default, top-k plus 2x the all-probe L1,
`topk+all:2`), and the script prints top-1 / top-5 accuracy in %:

  full       the gallery fully probed (the target: within 1 point of this)
  als        the product's completion, in numpy: observations z-normalized over their probes,
             rank-32 factors with an intercept by alternating least squares (lambda 1, 15
             sweeps), missing values from the factors, every row z-normalized again
  knn        missing values averaged from the 30 most correlated logits of other models that
             observed the probe (correlation over the probes both observed), half-and-half
             with `als`
  observed   no completion: each gallery logit is compared on the probes its model ran only
             (the query's k highest among them, and the L1 over them)
  hybrid     the mean of the `als` and `observed` discrepancies
  smoothq    `als`, with the query replaced on each gallery model's unobserved probes by its own
             low-rank fit (smooth against smooth)
  adaptiveS  (with --adaptive-share S) two rounds of the same budget: (1 - S) of it at random,
             `als` on those, then S of it on the probes where each model's completion is highest
             (its logits taking turns), then `als` on both rounds: what `append --probe-fraction`
             does (its default S is 0.5)
  adaptiveS+smoothq  both
  obstopk    `als`, with the top-k term over the query's k highest probes among those each
             gallery model ran (measured values only); the all-probe term as usual
  adaptiveS+obstopk  both
  rounds3-S  three rounds of the same budget: (1 - S) of it at random, then S / 2 where the
             completion is highest, `als` again, and the other S / 2 the same way
  rounds3-S+obstopk  both

`--weight W` sets the all-probe term's weight (8 for rms, 2 for l1 by default).

`--gallery-models N` runs it on a random subset of N gallery models, `--methods` picks the rows.

    probelog-tool export --out near.npy .hub-work/hub-near.plog
    .venv-py/bin/python tools/hub/collab_study.py near.npy --mask-seed 1 --mask-seed 2
    .venv-py/bin/python tools/hub/collab_study.py near.npy --methods als,adaptive0.5,rounds3-0.67 \
        --adaptive-share 0.5 --adaptive-share 0.67 --mask-seed 1
"""

import argparse
import json

import numpy as np

K = 16
# The discrepancy's all-probe term: "rms" (the default metric, `eval --candidate topk+rms:8`) or
# "l1" (the earlier default, `topk+all:2`); set by --metric.
METRIC = {"term": "rms", "weight": 8.0}


def load(path, gallery_models=None, seed=0):
    """The hub; with `gallery_models`, a seeded random subset of that many gallery models."""
    desc = np.load(path)
    with open(path[: -len(".npy")] + ".json") as f:
        side = json.load(f)
    models = {m["id"]: m for m in side["models"]}
    label = np.array([e["label"] for e in side["entries"]])
    model = np.array([e["model_id"] for e in side["entries"]])
    query = np.array([models[m]["meta"].get("split") == "query" for m in model])
    live = np.abs(desc).sum(1) > 0  # eval skips constant logits
    gallery = np.where(~query & live)[0]
    if gallery_models is not None:
        names = np.unique(model[gallery])
        keep = np.random.default_rng(seed).choice(names, min(gallery_models, len(names)), replace=False)
        gallery = gallery[np.isin(model[gallery], keep)]
    queries = np.where(query & live & np.isin(label, list(set(label[gallery]))))[0]
    return desc, label, model, gallery, queries


def znorm_rows(x):
    return (x - x.mean(1, keepdims=True)) / (x.std(1, keepdims=True) + 1e-12)


def accuracy(hub, distances):
    """Top-1 and top-5 % of the queries, `distances(q)` giving one value per gallery logit."""
    desc, label, _, gallery, queries = hub
    top1 = top5 = 0
    for qi in queries:
        order = np.argsort(distances(desc[qi]))[:5]
        top1 += label[gallery[order[0]]] == label[qi]
        top5 += (label[gallery[order]] == label[qi]).any()
    return 100 * top1 / len(queries), 100 * top5 / len(queries)


def all_probe_term(diff):
    if METRIC["term"] == "rms":
        return np.sqrt((diff**2).mean(1))
    return np.abs(diff).mean(1)


def default_distance(gal):
    def d(q):
        t = np.argpartition(-q, K)[:K]
        return np.abs(gal[:, t] - q[t]).mean(1) + METRIC["weight"] * all_probe_term(gal - q)

    return d


class Masked:
    """The gallery with a random third of the probes per model, z-normalized over them."""

    def __init__(self, hub, seed, fraction=0.33, observed=None):
        desc, _, model, gallery, _ = hub
        rng = np.random.default_rng(seed)
        probes = desc.shape[1]
        self.owner = model[gallery]
        self.models = np.unique(self.owner)
        self.rows = {m: np.where(self.owner == m)[0] for m in self.models}
        self.observed = {}
        mask = np.zeros((len(gallery), probes), bool)
        for m in self.models:
            if observed is None:
                o = np.sort(rng.choice(probes, round(fraction * probes), replace=False))
            else:
                o = np.sort(observed[m])
            self.observed[m] = o
            mask[np.ix_(self.rows[m], o)] = True
        self.mask = mask
        z = np.zeros((len(gallery), probes))
        for m in self.models:
            v = desc[gallery[self.rows[m]]][:, self.observed[m]]
            z[np.ix_(self.rows[m], self.observed[m])] = znorm_rows(v)
        self.z = z

    def als(self, rank=32, lam=1.0, sweeps=15, seed=1):
        """Low-rank estimate of every value, the product's fit with an intercept per logit."""
        z, mask = self.z, self.mask
        probes = z.shape[1]
        v = np.random.default_rng(seed).normal(size=(probes, rank)) / np.sqrt(rank)
        codes = np.zeros((len(z), rank + 1))

        def fold_in():
            basis = np.hstack([v, np.ones((probes, 1))])
            for m in self.models:
                rows, o = self.rows[m], self.observed[m]
                b = basis[o]
                a = b.T @ b + lam * np.eye(rank + 1)
                codes[rows] = np.linalg.solve(a, b.T @ z[np.ix_(rows, o)].T).T
            return basis

        for _ in range(sweeps):
            fold_in()
            u, bias = codes[:, :rank], codes[:, rank]
            for p in range(probes):
                who = mask[:, p]
                a = u[who].T @ u[who] + lam * np.eye(rank)
                v[p] = np.linalg.solve(a, u[who].T @ (z[who, p] - bias[who]))
        self.basis = fold_in()
        return codes @ self.basis.T

    def smoothed_query_distance(self, gallery, lam=1.0):
        """The discrepancy against completed `gallery` rows with the query smoothed where the
        gallery was imputed: on each gallery model's unobserved probes the query's value is its
        own low-rank fit (the factors of the last `als` call), so that smooth imputed values
        are compared with a query of the same smoothness; observed probes keep the query's own
        values."""
        b = self.basis
        projection = b @ np.linalg.solve(b.T @ b + lam * np.eye(b.shape[1]), b.T)

        def d(q):
            mixed = np.where(self.mask, q[None, :], (projection @ q)[None, :])
            t = np.argpartition(-q, K)[:K]
            return np.abs(gallery[:, t] - mixed[:, t]).mean(1) + METRIC["weight"] * all_probe_term(
                gallery - mixed
            )

        return d

    def completed(self, estimate):
        return znorm_rows(np.where(self.mask, self.z, estimate))

    def knn(self, fallback, neighbours=30):
        z, maskf = self.z, self.mask.astype(float)
        both = (z**2) @ maskf.T
        corr = (z @ z.T) / np.sqrt(both * both.T + 1e-9)
        corr[self.owner[:, None] == self.owner[None, :]] = -np.inf
        nearest = np.argpartition(-corr, neighbours, axis=1)[:, :neighbours]
        out = np.empty_like(z)
        for i, nb in enumerate(nearest):
            w = np.maximum(corr[i, nb], 0)[:, None] * maskf[nb]
            total = w.sum(0)
            out[i] = np.where(total > 1e-6, (w * z[nb]).sum(0) / np.maximum(total, 1e-9), fallback[i])
        return out

    def adaptive(self, hub, fraction, estimate):
        """A second round of probing: each model also runs the probes where the completion of
        this round predicts its logits highest (taking each logit's next-highest unobserved
        probe in turn), until it has run `fraction` of the probes in all."""
        probes = self.z.shape[1]
        budget = round(fraction * probes)
        predicted = self.completed(estimate)
        observed = {}
        for m in self.models:
            seen = np.zeros(probes, bool)
            seen[self.observed[m]] = True
            order = np.argsort(-predicted[self.rows[m]], axis=1)
            cursor = np.zeros(len(order), int)
            taken = int(seen.sum())
            while taken < budget:
                for j in range(len(order)):
                    while seen[order[j, cursor[j]]]:
                        cursor[j] += 1
                    seen[order[j, cursor[j]]] = True
                    taken += 1
                    if taken == budget:
                        break
            observed[m] = np.where(seen)[0]
        return Masked(hub, 0, observed=observed)

    def observed_topk_distance(self, gallery):
        """The default discrepancy against completed `gallery` rows, with its top-k term taken
        over the query's k highest probes among those each gallery model ran (so that it compares
        measured values only), and its all-probe term over every probe as usual."""

        def d(q):
            out = np.empty(len(gallery))
            for m in self.models:
                rows, o = self.rows[m], self.observed[m]
                t = o[np.argpartition(-q[o], K)[:K]]
                out[rows] = np.abs(gallery[np.ix_(rows, t)] - q[t]).mean(1)
            return out + METRIC["weight"] * all_probe_term(gallery - q)

        return d

    def observed_distance(self):
        def d(q):
            out = np.empty(len(self.z))
            for m in self.models:
                rows, o = self.rows[m], self.observed[m]
                qo, go = q[o], self.z[np.ix_(rows, o)]
                t = np.argpartition(-qo, K)[:K]
                out[rows] = np.abs(go[:, t] - qo[t]).mean(1) + METRIC["weight"] * all_probe_term(go - qo)
            return out

        return d


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("descriptors", help="the .npy that probelog-tool export wrote (sidecar beside it)")
    ap.add_argument("--mask-seed", type=int, action="append", help="one run per seed [default: 1]")
    ap.add_argument("--gallery-models", type=int, help="a random subset of this many gallery models")
    ap.add_argument("--methods", default="als,knn,observed,hybrid", help="comma-separated")
    ap.add_argument("--fraction", type=float, default=0.33, help="share of the probes each model runs")
    ap.add_argument("--adaptive-share", type=float, action="append", default=[],
                    help="adds the method adaptiveS: a random round of (1 - S) of the budget, "
                    "then S of it on the probes the completion predicts highest")
    ap.add_argument("--metric", choices=["rms", "l1"], default="rms",
                    help="the all-probe term: rms (topk+rms:8, the default) or l1 (topk+all:2)")
    ap.add_argument("--weight", type=float, help="the all-probe term's weight [default: 8 for rms, 2 for l1]")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    METRIC.update(term=args.metric, weight=args.weight or (8.0 if args.metric == "rms" else 2.0))
    hub = load(args.descriptors, args.gallery_models)
    desc, _, _, gallery, queries = hub
    print(f"{len(queries)} queries, {len(gallery)} gallery logits, {desc.shape[1]} probes")
    results = {"full": accuracy(hub, default_distance(desc[gallery]))}
    print("full      top-1 %.1f  top-5 %.1f" % results["full"])
    for seed in args.mask_seed or [1]:
        masked = Masked(hub, seed, args.fraction)
        estimate = masked.als()
        als_d = default_distance(masked.completed(estimate))
        observed = masked.observed_distance()
        rows = {
            "als": lambda: als_d,
            "knn": lambda: default_distance(
                masked.completed(0.5 * masked.knn(estimate) + 0.5 * estimate)
            ),
            "observed": lambda: observed,
            "hybrid": lambda: lambda q: 0.5 * als_d(q) + 0.5 * observed(q),
            "smoothq": lambda: masked.smoothed_query_distance(masked.completed(estimate)),
            "obstopk": lambda: masked.observed_topk_distance(masked.completed(estimate)),
        }
        for share in args.adaptive_share:
            # The random round takes (1 - share) of the budget, the adaptive round the rest.
            def adaptive(share=share):
                first = Masked(hub, seed, args.fraction * (1 - share))
                second = first.adaptive(hub, args.fraction, first.als())
                return default_distance(second.completed(second.als()))

            def adaptive_smoothq(share=share):
                first = Masked(hub, seed, args.fraction * (1 - share))
                second = first.adaptive(hub, args.fraction, first.als())
                return second.smoothed_query_distance(second.completed(second.als()))

            def adaptive_obstopk(share=share):
                first = Masked(hub, seed, args.fraction * (1 - share))
                second = first.adaptive(hub, args.fraction, first.als())
                return second.observed_topk_distance(second.completed(second.als()))

            def three_rounds(share=share, obstopk=False):
                # (1 - share) at random, then share / 2 where the completion is highest, a refit,
                # and the other share / 2 the same way.
                first = Masked(hub, seed, args.fraction * (1 - share))
                second = first.adaptive(hub, args.fraction * (1 - share / 2), first.als())
                third = second.adaptive(hub, args.fraction, second.als())
                done = third.completed(third.als())
                return third.observed_topk_distance(done) if obstopk else default_distance(done)

            rows[f"adaptive{share:g}"] = adaptive
            rows[f"adaptive{share:g}+smoothq"] = adaptive_smoothq
            rows[f"adaptive{share:g}+obstopk"] = adaptive_obstopk
            rows[f"rounds3-{share:g}"] = three_rounds
            rows[f"rounds3-{share:g}+obstopk"] = lambda share=share: three_rounds(share, True)
        for name in args.methods.split(","):
            d = rows[name]()
            results[f"{name} seed {seed}"] = accuracy(hub, d)
            print(f"{name:<9} top-1 %.1f  top-5 %.1f  (mask seed {seed})" % results[f"{name} seed {seed}"], flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({k: {"top1": a, "top5": b} for k, (a, b) in results.items()}, f, indent=1)


if __name__ == "__main__":
    main()
