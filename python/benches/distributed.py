"""Probing on Ray against the plain command line, and fan-out search against one file, measured in
one run on one machine (docs/distributed.md has the figures and what they mean).

    .venv-py/bin/python python/benches/distributed.py --tool $CARGO_TARGET_DIR/release/probelog-tool

1. Probing throughput: the demo's TorchScript classifiers (tools/demo/models.toml, repeated
   --copies times under new names) over its 320-probe set, by `probelog-tool append --manifest`
   and by `build_index` with 1 and 2 Ray workers, one libtorch thread per prober, taking turns
   (medians of --rounds); images/s, the ratios, and Ray's cost per model in ms ((1 worker -
   plain) / models: scheduling, shard file, merge).
2. Search: ShardedIndex over 3 shard files (3 actors) against the one file that holds their
   models, p50 of the same vector queries, alternating round by round; the ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import probelog
from probelog.distributed import ShardedIndex, build_index

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "tools" / "demo"


def copied_manifest(dst: Path, copies: int, input_size: int = 0) -> int:
    """The demo manifest `copies` times over, with absolute paths and numbered names; with
    `input_size`, the probes are resized to it (more work per model)."""
    import tomllib

    models = tomllib.loads((DEMO / "models.toml").read_text())["model"]
    out = []
    for c in range(copies):
        for m in models:
            out.append("[[model]]")
            out.append(f'model = "{DEMO / m["model"]}"')
            out.append(f'labels = "{DEMO / m["labels"]}"')
            out.append(f'name = "{m["name"]}-{c}"')
            out.append(f"mean = {m['mean']}")
            if input_size:
                out.append(f"input_size = {input_size}")
            out.append(f"std = {m['std']}\n")
    dst.write_text("\n".join(out))
    return len(models) * copies


def probing(tool: Path, copies: int, input_size: int, rounds: int, work: Path) -> None:
    import ray

    manifest = work / "m.toml"
    n = copied_manifest(manifest, copies, input_size)
    probes = DEMO / "probes.pset"
    p = len(probelog.ProbeSet(str(probes)))
    # One libtorch thread per prober process everywhere (Ray gives a task of 1 CPU
    # OMP_NUM_THREADS=1): the plain append and one Ray worker then do the same work, and their
    # difference is Ray's cost.
    env = dict(os.environ, OMP_NUM_THREADS="1")
    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
             log_to_driver=False)
    t_init = time.perf_counter() - t0
    names = ["probelog-tool append --manifest", "build_index, 1 Ray worker", "build_index, 2 Ray workers"]
    times: dict = {name: [] for name in names}
    parts: dict = {"startup_seconds": [], "probe_seconds": [], "merge_seconds": []}
    try:
        for r in range(rounds):
            plain = work / f"plain{r}.plog"
            subprocess.run([tool, "create", plain, "--probes", probes], check=True,
                           capture_output=True)
            t0 = time.perf_counter()
            subprocess.run([tool, "append", plain, "--manifest", manifest, "--probes", probes,
                            "--device", "cpu"], check=True, capture_output=True, env=env)
            times[names[0]].append(time.perf_counter() - t0)
            for workers in (1, 2):
                out = work / f"ray{workers}-{r}.plog"
                t0 = time.perf_counter()
                summary = build_index(manifest, probes, out, workers, tool=tool, progress=False)
                times[names[workers]].append(time.perf_counter() - t0)
                if workers == 1:
                    for k in parts:
                        parts[k].append(summary[k])
    finally:
        ray.shutdown()
    med = {k: statistics.median(v) for k, v in times.items()}
    base = med[names[0]]
    size = f" at {input_size} px" if input_size else ""
    print(f"probing {n} models x {p} probes{size}, CPU, one libtorch thread per prober, "
          f"medians of {rounds} rounds (the three take turns); Ray cluster start {t_init:.1f} s")
    for name in names:
        t = med[name]
        print(f"  {name:34s} {t:7.2f} s  {n * p / t:8.1f} images/s  "
              f"{base / t:5.2f}x the plain append's throughput   (rounds: "
              + ", ".join(f"{x:.1f}" for x in times[name]) + " s)")
    print(f"  Ray's cost per model, (1 worker - plain) / {n} models: "
          f"{(med[names[1]] - base) / n * 1000:.0f} ms")
    part = {k: statistics.median(v) for k, v in parts.items()}
    print(f"  1 worker, its parts: checks and scheduling {part['startup_seconds']:.2f} s, "
          f"shard task {part['probe_seconds']:.2f} s ({(part['probe_seconds'] - base) / n * 1000:.0f} "
          f"ms per model over the plain append), merge {part['merge_seconds']:.2f} s")


def search(entries_per_shard: int, probes: int, rounds: int, work: Path) -> None:
    import ray

    rng = np.random.default_rng(3)
    models = [(f"m{i}", rng.normal(size=(probes, 10)).astype(np.float32))
              for i in range(3 * entries_per_shard // 10)]
    per = len(models) // 3
    parts = [models[:per], models[per:2 * per], models[2 * per:]]
    paths = []
    for i, part in enumerate(parts + [models]):
        path = work / (f"s{i}.plog" if i < 3 else "whole.plog")
        probelog.create(str(path), num_probes=probes)
        # Commits of 10,000 entries: segments under the 20,000 that get an ANN graph, which
        # the exact search does not use.
        for c in range(0, len(part), 1000):
            with probelog.Writer(str(path)) as w:
                for name, x in part[c:c + 1000]:
                    w.add_model(name, x, existing_name="keep")
        paths.append(path)
    whole = probelog.Index(str(paths[3]))
    queries = rng.normal(size=(rounds, probes)).astype(np.float32)
    ray.init(num_cpus=os.cpu_count() or 2, include_dashboard=False,
             _node_ip_address="127.0.0.1", log_to_driver=False)
    try:
        with ShardedIndex([str(p) for p in paths[:3]]) as sharded:
            single, fanned = [], []
            for q in queries[:5]:  # warm both
                sharded.search(q, top=10)
                whole.search(q, top=10)
            for q in queries:
                t0 = time.perf_counter()
                a = whole.search(q, top=10)
                single.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                b = sharded.search(q, top=10)
                fanned.append(time.perf_counter() - t0)
                assert [h.entry for h in a] == [h.entry for h in b]
    finally:
        ray.shutdown()
    s, f = statistics.median(single), statistics.median(fanned)
    print(f"search, top 10, blend, {len(whole)} entries x {probes} probes, {rounds} queries:")
    print(f"  one file (Index.search)            p50 {s * 1e3:8.3f} ms")
    print(f"  3 shard files, 3 Ray actors        p50 {f * 1e3:8.3f} ms  ({f / s:.1f}x the single file)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tool", required=True, help="probelog-tool built with --features torch")
    ap.add_argument("--copies", type=int, default=4, help="demo manifest repeats (7 models each)")
    ap.add_argument("--input-size", type=int, default=0,
                    help="resize the probes to S px for every model (more work per model)")
    ap.add_argument("--entries", type=int, default=20000, help="entries per search shard")
    ap.add_argument("--rounds", type=int, default=3, help="probing rounds")
    ap.add_argument("--queries", type=int, default=200, help="search queries")
    ap.add_argument("--skip-probing", action="store_true")
    ap.add_argument("--skip-search", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        if not args.skip_probing:
            probing(Path(args.tool).resolve(), args.copies, args.input_size, args.rounds,
                    Path(d))
        if not args.skip_search:
            search(args.entries, 320, args.queries, Path(d))
    return 0


if __name__ == "__main__":
    sys.exit(main())
