"""Python against Rust on the same index, queries and model (issue 20, item 5).

1. Search latency: `Index.search` (entry and raw-vector queries) against the Rust API's
   `Index::search` (python/benches/search_latency.rs), median microseconds per query; and
   `Index.search_batch` per query against the Rust exact scan run one query after another (what
   `probelog-tool search` runs), plus the CLI's whole-process time per search for reference.
2. probe() throughput against probelog-tool's libtorch path (`append --model`) on the same
   TorchScript model and probe set, images per second.

    CARGO_TARGET_DIR=... .venv-py/bin/python python/benches/bench.py [--quick]

Needs the package installed (pip install "./python[torch]"), timm, and a release probelog-tool
built with `--features torch` (built here when missing).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import probelog

REPO = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))


def cargo(*args):
    subprocess.run(["cargo", *args], cwd=REPO, check=True, stdout=subprocess.DEVNULL)


def make_index(path: Path, probes: int, segments: int, per_segment: int, rng) -> None:
    probelog.create(str(path), num_probes=probes)
    logits_per_model = 100
    for s in range(segments):  # one commit per segment, each under the 20,000-entry graph bar
        with probelog.Writer(str(path)) as w:
            for m in range(per_segment // logits_per_model):
                x = rng.normal(size=(probes, logits_per_model)).astype(np.float32)
                x[rng.integers(0, probes, 8), rng.integers(0, logits_per_model, 8)] += 4.0
                w.add_model(f"s{s}-m{m}", x)


def py_latency(idx: probelog.Index, Q: np.ndarray, repeats: int) -> dict:
    n = len(Q)
    entries = len(idx)
    for q in Q:
        idx.search(q)
    entry_us, vector_us = [], []
    for r in range(repeats):
        for i in range(n):
            e = (i * 7919 + r) % entries
            t = time.perf_counter_ns()
            idx.search(e)
            entry_us.append((time.perf_counter_ns() - t) / 1e3)
            t = time.perf_counter_ns()
            idx.search(Q[i])
            vector_us.append((time.perf_counter_ns() - t) / 1e3)
    batch = []
    for _ in range(max(repeats, 3)):
        t = time.perf_counter_ns()
        idx.search_batch(Q)
        batch.append((time.perf_counter_ns() - t) / 1e3 / n)
    return {
        "entry_us": statistics.median(entry_us),
        "vector_us": statistics.median(vector_us),
        "search_batch_us_per_query": statistics.median(batch),
    }


def cli_search_us(tool: Path, path: Path, Q: np.ndarray, tmp: Path, runs: int = 5) -> float:
    np.save(tmp / "q.npy", Q[0].astype(np.float32))
    times = []
    for _ in range(runs):
        t = time.perf_counter_ns()
        subprocess.run([str(tool), "search", str(path), "--query-logits", str(tmp / "q.npy"), "--json"],
                       check=True, stdout=subprocess.DEVNULL)
        times.append((time.perf_counter_ns() - t) / 1e3)
    return statistics.median(times)


def med(rows, key):
    return statistics.median(r[key] for r in rows)


def bench_search(tmp: Path, rng, quick: bool, tool: Path) -> list:
    """Rust and Python alternate, round after round, so that both see the same machine (a
    shared 2-core machine swings by a third between minutes); medians over the rounds."""
    example = TARGET / "release" / "examples" / "search_latency"
    cargo("build", "--release", "-p", "probelog-python", "--example", "search_latency")
    rows = []
    sizes = [(256, 1, 5_000), (256, 4, 15_000)]
    rounds, repeats = (2, 2) if quick else (7, 3)
    for probes, segments, per in sizes[:1] if quick else sizes:
        path = tmp / f"bench-{probes}-{segments * per}.plog"
        make_index(path, probes, segments, per, rng)
        Q = rng.normal(size=(64, probes)).astype(np.float32)
        Q.tofile(tmp / "q.f32")
        idx = probelog.Index(str(path))
        rust, py = [], []
        for _ in range(rounds):
            rust.append(json.loads(subprocess.run(
                [str(example), str(path), str(tmp / "q.f32"), str(repeats)],
                check=True, capture_output=True, text=True).stdout))
            py.append(py_latency(idx, Q, repeats))
        r = {k: med(rust, k) for k in ("entry_us", "vector_us", "sequential_batch_us_per_query")}
        p = {k: med(py, k) for k in ("entry_us", "vector_us", "search_batch_us_per_query")}
        rows.append({
            "entries": len(idx), "probes": probes, "queries": len(Q), "rounds": rounds,
            "rust": r, "python": p,
            "ratio_entry": p["entry_us"] / r["entry_us"],
            "ratio_vector": p["vector_us"] / r["vector_us"],
            "ratio_entry_per_round": [round(b["entry_us"] / a["entry_us"], 3) for a, b in zip(rust, py)],
            "batch_vs_rust_sequential_scan": p["search_batch_us_per_query"]
            / r["sequential_batch_us_per_query"],
            "cli_process_us_per_search": cli_search_us(tool, path, Q, tmp),
        })
    return rows


def bench_probe(tmp: Path, tool: Path, quick: bool) -> dict:
    import timm
    import torch

    probes, size = (64, 64) if quick else (256, 64)
    g = np.random.default_rng(0)
    px = g.integers(0, 256, size=(probes, 3, size, size), dtype=np.uint8)
    pset = probelog.ProbeSet.from_pixels([f"p{i}" for i in range(probes)], px)
    pset.write(str(tmp / "p.pset"))
    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False, num_classes=100).eval()
    torch.jit.trace(model, torch.rand(2, 3, size, size)).save(str(tmp / "m.pt"))
    mean, std = "0.485,0.456,0.406", "0.229,0.224,0.225"
    scripted = torch.jit.load(str(tmp / "m.pt"))
    cli_rates = []
    rates = {"torchscript": [], "eager": []}
    for i in range(3):  # CLI and Python alternate
        path = tmp / f"cli{i}.plog"
        subprocess.run([str(tool), "create", str(path), "--probes", str(tmp / "p.pset")], check=True,
                       stdout=subprocess.DEVNULL)
        r = subprocess.run([str(tool), "append", str(path), "--model", str(tmp / "m.pt"), "--probes",
                            str(tmp / "p.pset"), "--name", "m", "--mean", mean, "--std", std,
                            "--device", "cpu", "--batch", "64"],
                           check=True, capture_output=True, text=True)
        m = re.search(r"\(([\d.]+) images/s\)", r.stderr)
        cli_rates.append(float(m.group(1)))
        for name, mod in (("torchscript", scripted), ("eager", model)):
            t = time.perf_counter()
            probelog.probe(mod, pset, batch_size=64, mean=(0.485, 0.456, 0.406),
                           std=(0.229, 0.224, 0.225), progress=False)
            rates[name].append(probes / (time.perf_counter() - t))
    rates = {k: statistics.median(v) for k, v in rates.items()}
    cli = statistics.median(cli_rates)
    return {
        "model": "timm resnet18 (random weights), 100 logits", "probes": probes, "size": size,
        "torch_threads": torch.get_num_threads(),
        "cli_images_per_s": cli,
        "python_torchscript_images_per_s": rates["torchscript"],
        "python_eager_images_per_s": rates["eager"],
        "ratio_torchscript": rates["torchscript"] / cli,
        "ratio_eager": rates["eager"] / cli,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    tool = TARGET / "release" / "probelog-tool"
    if not tool.is_file():
        cargo("build", "--release", "-p", "probelog-tool", "--features", "torch")
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        out = {"search": bench_search(tmp, rng, args.quick, tool), "probe": bench_probe(tmp, tool, args.quick)}
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
