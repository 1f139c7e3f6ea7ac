#!/usr/bin/env python3
"""What a user would otherwise try: FAISS HNSW over dense compact vectors, then a numpy rerank.

FAISS needs dense vectors, so the export holds a 128-d random sketch of each entry's top list
(the sparse summary probelog's own graphs store). Reads the files that
`cargo bench --bench ann -- scale ... --export DIR` writes (the sketches of every entry, each
query's sketch and top-k probes, entry-major f16 descriptors and the exact answers of probelog's
exact mode), builds a faiss.IndexHNSWFlat over the sketches with the same
graph parameters as probelog (M = 16, efConstruction = 100, inner-product queries), and for each
candidate count C searches the C nearest sketches, reranks them with the top-k discrepancy in
numpy, leaves out the query's own model, and reports recall@10 against exact mode and p50/p99
latency, one query at a time as an application would issue them.

Run: .venv-py/bin/python benches/faiss_compare.py DIR [--threads 2] [--candidates 50,100,200,400]
(.venv-py comes from tools/setup-python.sh, which installs faiss-cpu.)
"""

import argparse
import json
import os
import time

import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--candidates", default="50,100,200,400")
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--ef-construction", type=int, default=100)
    args = ap.parse_args()
    import faiss

    faiss.omp_set_num_threads(args.threads)
    d = args.dir
    meta = json.load(open(os.path.join(d, "meta.json")))
    n, p, dims, nq, k = (meta[x] for x in ("entries", "probes", "dims", "queries", "k"))
    sketches = np.fromfile(os.path.join(d, "sketches.f32"), dtype=np.float32).reshape(n, dims)
    queries = np.fromfile(os.path.join(d, "queries.f32"), dtype=np.float32).reshape(nq, dims)
    qprobes = np.fromfile(os.path.join(d, "query_probes.u32"), dtype=np.uint32).reshape(nq, k)
    qvals = np.fromfile(os.path.join(d, "query_values.f32"), dtype=np.float32).reshape(nq, k)
    qmodel = np.fromfile(os.path.join(d, "query_model_range.u64"), dtype=np.uint64).reshape(nq, 2)
    truth = np.fromfile(os.path.join(d, "truth.u64"), dtype=np.uint64).reshape(nq, -1)
    desc = np.memmap(os.path.join(d, "descriptors.f16"), dtype=np.float16, mode="r", shape=(n, p))

    cs = [int(x) for x in args.candidates.split(",")]
    # Reference: the exact inner-product top C over all sketches (no graph), to separate what the
    # sketch loses from what the graph loses.
    flat = faiss.IndexFlatIP(dims)
    flat.add(sketches)
    for c in cs:
        _, cand = flat.search(queries, c + 64)
        recall = 0.0
        for i in range(nq):
            lo, hi = qmodel[i]
            ci = cand[i][(cand[i] >= 0) & ((cand[i] < lo) | (cand[i] >= hi))][:c]
            ci.sort()
            rows = desc[ci][:, qprobes[i]].astype(np.float32)
            best = ci[np.argsort(np.abs(rows - qvals[i]).mean(axis=1), kind="stable")[:10]]
            recall += len(np.intersect1d(best, truth[i])) / truth.shape[1]
        print(f"brute-force sketch C={c:<5} recall@10 {recall / nq:.3f}")

    t = time.perf_counter()
    index = faiss.IndexHNSWFlat(dims, args.m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = args.ef_construction
    index.add(sketches)
    build_s = time.perf_counter() - t
    print(f"faiss HNSW (M={args.m}, efConstruction={args.ef_construction}, inner product) "
          f"over {n} x {dims} sketches: build {build_s:.1f} s, {args.threads} threads")

    # One untimed pass first: the descriptor pages the reranks touch come into the page cache,
    # as probelog's own run has them.
    index.hnsw.efSearch = max(cs)
    for i in range(nq):
        _, cand = index.search(queries[i : i + 1], max(cs))
        desc[np.sort(cand[0][cand[0] >= 0])][:, qprobes[i]].astype(np.float32)
    for c in cs:
        index.hnsw.efSearch = c
        lat, recall = [], 0.0
        for i in range(nq):
            t = time.perf_counter()
            _, cand = index.search(queries[i : i + 1], c)
            cand = cand[0][cand[0] >= 0]
            lo, hi = qmodel[i]
            cand = cand[(cand < lo) | (cand >= hi)]
            cand.sort()
            rows = desc[cand][:, qprobes[i]].astype(np.float32)
            score = np.abs(rows - qvals[i]).mean(axis=1)
            best = cand[np.argsort(score, kind="stable")[:10]]
            lat.append(time.perf_counter() - t)
            recall += len(np.intersect1d(best, truth[i])) / truth.shape[1]
        lat = np.array(lat) * 1e3
        print(f"faiss C={c:<5} recall@10 {recall / nq:.3f}  p50 {np.percentile(lat, 50):.3f} ms"
              f"  p99 {np.percentile(lat, 99):.3f} ms")


if __name__ == "__main__":
    main()
