"""Probing on Ray against the plain command line, and fan-out search against one file, measured in
one run on one machine (docs/distributed.md has the figures and what they mean).

    .venv-py/bin/python python/benches/distributed.py --tool $CARGO_TARGET_DIR/release/probelog-tool

1. Probing throughput: the demo's TorchScript classifiers (tools/demo/models.toml, repeated
   --copies times under new names) over its 320-probe set, by `probelog-tool append --manifest`
   and by `build_index` with 1 Ray worker (all the CPUs) and with 2 (half each); images/s and
   the ratios, and Ray's cost per model in ms ((ray 1 worker - plain) / models).
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


def copied_manifest(dst: Path, copies: int) -> int:
    """The demo manifest `copies` times over, with absolute paths and numbered names."""
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
            out.append(f"std = {m['std']}\n")
    dst.write_text("\n".join(out))
    return len(models) * copies


def probing(tool: Path, copies: int, work: Path) -> None:
    import ray

    manifest = work / "m.toml"
    n = copied_manifest(manifest, copies)
    probes = DEMO / "probes.pset"
    p = len(probelog.ProbeSet(str(probes)))
    plain = work / "plain.plog"
    subprocess.run([tool, "create", plain, "--probes", probes], check=True, capture_output=True)
    t0 = time.perf_counter()
    subprocess.run([tool, "append", plain, "--manifest", manifest, "--probes", probes, "--device",
                    "cpu"], check=True, capture_output=True)
    t_plain = time.perf_counter() - t0
    cpus = os.cpu_count() or 2
    ray.init(num_cpus=cpus, include_dashboard=False, _node_ip_address="127.0.0.1",
             log_to_driver=False)
    try:
        rows = [("probelog-tool append --manifest", t_plain)]
        for workers in (1, 2):
            out = work / f"ray{workers}.plog"
            t0 = time.perf_counter()
            build_index(manifest, probes, out, workers, tool=tool, cpus_per_task=cpus / workers,
                        progress=False)
            rows.append((f"build_index, {workers} Ray worker{'s' * (workers > 1)} "
                         f"({cpus / workers:g} CPUs each)", time.perf_counter() - t0))
    finally:
        ray.shutdown()
    print(f"probing {n} models x {p} probes on {cpus} CPUs (one run each)")
    for name, t in rows:
        print(f"  {name:52s} {t:7.2f} s  {n * p / t:8.1f} images/s  "
              f"{t_plain / t:5.2f}x the plain append's throughput")
    print(f"  Ray's cost per model (1 worker - plain) / models: "
          f"{(rows[1][1] - t_plain) / n * 1000:.0f} ms")


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
        with probelog.Writer(str(path)) as w:
            for name, x in part:
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
    ap.add_argument("--entries", type=int, default=20000, help="entries per search shard")
    ap.add_argument("--rounds", type=int, default=200, help="search queries")
    ap.add_argument("--skip-probing", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        if not args.skip_probing:
            probing(Path(args.tool).resolve(), args.copies, Path(d))
        search(args.entries, 320, args.rounds, Path(d))
    return 0


if __name__ == "__main__":
    sys.exit(main())
