"""probelog.distributed on a local Ray cluster bound to 127.0.0.1 (started by this module, stopped
at its end): build_index over the demo's real TorchScript classifiers against one sequential
`probelog-tool append --manifest`, a worker killed mid-run, the input errors, and ShardedIndex
against the single file that holds the shards' models in order."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import probelog
from conftest import REPO, REQUIRE_ALL, Tool, concept_logits, tool_path, unavailable

try:
    import ray
except ImportError:
    if REQUIRE_ALL:  # CI: a missing ray is a failure, not a skip
        raise
    pytest.skip('ray is not installed (pip install "./python[ray]")', allow_module_level=True)

from probelog import distributed  # noqa: E402
from probelog.distributed import DistributedError, ShardedIndex, build_index  # noqa: E402

DEMO = REPO / "tools" / "demo"
MANIFEST = DEMO / "models.toml"
PROBES = DEMO / "probes.pset"


@pytest.fixture(scope="module")
def cluster():
    """A local cluster of 2 CPUs on the loopback address, for this module's tests."""
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
             log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def torch_tool() -> Tool:
    p = tool_path()
    if p is None:
        unavailable("probelog-tool is not built (cargo build -p probelog-tool --features torch)")
    t = Tool(p)
    if "--shard" not in t.run("append", "--help").stdout:
        unavailable(f"{p} has no `append --shard`: rebuild probelog-tool")
    return t


@pytest.fixture(scope="module")
def sequential(torch_tool, tmp_path_factory) -> Path:
    """The reference: one `append --manifest` of the demo's 7 classifiers (libtorch, CPU)."""
    path = tmp_path_factory.mktemp("seq") / "seq.plog"
    torch_tool.run("create", path, "--probes", PROBES)
    torch_tool.run("append", path, "--manifest", MANIFEST, "--probes", PROBES, "--device", "cpu")
    return path


def assert_same_index(got: Path, want: Path) -> None:
    a, b = probelog.Index(str(got)), probelog.Index(str(want))
    assert [(m.name, m.logit_count, m.meta, m.source) for m in a.models] == \
        [(m.name, m.logit_count, m.meta, m.source) for m in b.models]
    assert len(a) == len(b) and a.probe_fingerprint == b.probe_fingerprint
    assert [a.entry(e).label for e in range(len(a))] == [b.entry(e).label for e in range(len(b))]
    np.testing.assert_allclose(a.descriptors(), b.descriptors(), atol=1e-4, rtol=0)
    assert a.verify().ok


def test_three_shards_equal_one_sequential_append(cluster, torch_tool, sequential, tmp_path):
    out = tmp_path / "hub.plog"
    # One model per commit: each shard commits several times and reports progress after each.
    summary = build_index(MANIFEST, PROBES, out, 3, tool=torch_tool.path, models_per_commit=1,
                          progress=False)
    assert_same_index(out, sequential)
    assert summary["models"] == 7 and summary["entries"] == len(probelog.Index(str(sequential)))
    assert summary["shards"] == 3 and summary["retries"] == 0 and summary["device"] == "cpu"
    # Contiguous slices of 7: models [0, 2), [2, 4), [4, 7).
    assert [(r["shard"], r["models"], r["attempts"]) for r in summary["shard_reports"]] == \
        [(0, 2, 1), (1, 2, 1), (2, 3, 1)]
    assert summary["images_per_s"] > 0
    # Nothing is left beside the output but the output.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hub.plog"]


def test_a_killed_worker_is_retried_and_changes_nothing(cluster, torch_tool, sequential, tmp_path):
    out = tmp_path / "hub.plog"
    env = dict(os.environ, PROBELOG_TOOL=str(torch_tool.path), **{distributed.CRASH_ENV: "1"})
    r = subprocess.run(
        [sys.executable, "-m", "probelog.distributed", "--manifest", str(MANIFEST), "--probes",
         str(PROBES), "--out", str(out), "--shards", "3", "--address", cluster, "--json",
         "--no-progress"], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["retries"] == 1
    assert [s["attempts"] for s in summary["shard_reports"]] == [1, 2, 1]
    assert_same_index(out, sequential)


def test_errors_are_one_clear_line(torch_tool, tmp_path):
    out = tmp_path / "o.plog"
    bad = tmp_path / "bad.toml"
    bad.write_text("[[model]\nname = 1\n")
    with pytest.raises(DistributedError, match="not valid TOML"):
        build_index(bad, PROBES, out, 2, tool=torch_tool.path)
    bad.write_text('title = "no models"\n')
    with pytest.raises(DistributedError, match=r"expected \[\[model\]\] tables"):
        build_index(bad, PROBES, out, 2, tool=torch_tool.path)
    bad.write_text('[[model]]\nmodel = "missing.pt"\nname = "m"\n')
    with pytest.raises(DistributedError, match="model file .*missing.pt does not exist"):
        build_index(bad, PROBES, out, 2, tool=torch_tool.path)
    with pytest.raises(DistributedError, match="cannot read it"):
        build_index(tmp_path / "none.toml", PROBES, out, 2, tool=torch_tool.path)
    for shards in (0, -1, 1.5, True):
        with pytest.raises(DistributedError, match="shards must be a whole number of at least 1"):
            build_index(MANIFEST, PROBES, out, shards, tool=torch_tool.path)
    with pytest.raises(DistributedError, match="probelog-tool not found: .*nope"):
        build_index(MANIFEST, PROBES, out, 2, tool=tmp_path / "nope")
    old = tmp_path / "old-tool"
    old.write_text("#!/bin/sh\necho 'Usage: probelog-tool append [OPTIONS] <INDEX>'\n")
    old.chmod(0o755)
    with pytest.raises(DistributedError, match="has no `append --shard`: build a newer probelog-tool"):
        build_index(MANIFEST, PROBES, out, 2, tool=old)
    with pytest.raises(DistributedError, match=r"probe set .*none.pset: no such file"):
        build_index(MANIFEST, tmp_path / "none.pset", out, 2, tool=torch_tool.path)
    out.write_bytes(b"")
    with pytest.raises(DistributedError, match="already exists"):
        build_index(MANIFEST, PROBES, out, 2, tool=torch_tool.path)
    # The command line: exit status 2 and the message on one line.
    env = {k: v for k, v in os.environ.items() if k != "PROBELOG_TOOL"}
    env["PATH"] = str(tmp_path)
    r = subprocess.run([sys.executable, "-m", "probelog.distributed", "--manifest", str(MANIFEST),
                        "--probes", str(PROBES), "--out", str(tmp_path / "x.plog"), "--shards", "2"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("probelog.distributed: error: probelog-tool not found: pass --tool")
    assert r.stderr.count("\n") == 1


# ---- ShardedIndex --------------------------------------------------------------------------------


def write_models(path: Path, models, probes: int, dtype: str) -> None:
    probelog.create(str(path), num_probes=probes, dtype=dtype)
    with probelog.Writer(str(path)) as w:
        for name, group, logits in models:
            w.add_model(name, logits, labels=[f"{name}-{j}" for j in range(logits.shape[1])],
                        meta={"group": group}, existing_name="keep")


@pytest.fixture(scope="module", params=["f32", "f16"])
def shards(request, tmp_path_factory):
    """Three shard files and the one file holding their models in order (what merge makes)."""
    dtype = request.param
    rng = np.random.default_rng(11)
    probes = 64
    logits = concept_logits(rng, probes, [3 + m % 4 for m in range(13)], hot=8)
    # Two models share a name (exclude_model by name takes the first), one repeats another's
    # logits (equal scores: ties go to the lower id).
    logits[12] = logits[3]
    models = [(f"m{m % 11}", "ab"[m % 2], x) for m, x in enumerate(logits)]
    d = tmp_path_factory.mktemp(f"shards-{dtype}")
    parts = [models[:4], models[4:5], models[5:]]
    paths = []
    for i, part in enumerate(parts):
        paths.append(d / f"s{i}.plog")
        write_models(paths[-1], part, probes, dtype)
    whole = d / "whole.plog"
    write_models(whole, models, probes, dtype)
    return paths, whole, models


def hits_of(hits):
    return [(h.rank, h.entry, h.model, h.model_id, h.logit, h.label, h.score) for h in hits]


def test_sharded_index_searches_as_the_single_file(cluster, shards):
    paths, whole, models = shards
    single = probelog.Index(str(whole))
    with ShardedIndex([str(p) for p in paths]) as sharded:
        assert len(sharded) == len(single) and sharded.num_models == single.num_models == 13
        cases = [dict(top=10), dict(top=7, per_model=True), dict(top=5, metric="topk", k=6),
                 dict(top=6, metric="full"), dict(top=4, metric="model"),
                 dict(top=200), dict(top=8, filter={"group": "a"}),
                 dict(top=8, model_name="m1*"), dict(top=5, mode="exact", metric="topk")]
        for entry in (0, 5, 14, 15, len(single) - 1):
            for kw in cases:
                assert hits_of(sharded.search(entry, **kw)) == hits_of(single.search(entry, **kw)), (entry, kw)
            for ex in (True, 0, 4, 12, "m1", "m0"):
                assert hits_of(sharded.search(entry, top=9, exclude_model=ex)) == \
                    hits_of(single.search(entry, top=9, exclude_model=ex)), (entry, ex)
        q = models[6][2][:, 0] * 2.0 + 1.0
        for kw in cases:
            assert hits_of(sharded.search(q, **kw)) == hits_of(single.search(q, **kw)), kw
        assert hits_of(sharded.search(q, top=6, exclude_model="m5")) == \
            hits_of(single.search(q, top=6, exclude_model="m5"))
        # explain: exact for a vector query; for an entry query the other shards score against
        # the stored descriptor, so the shares agree to float rounding.
        a, b = sharded.search(q, top=3, explain=4), single.search(q, top=3, explain=4)
        assert [[(s.probe, s.share) for s in h.explain] for h in a] == \
            [[(s.probe, s.share) for s in h.explain] for h in b]
        a, b = sharded.search(2, top=6, explain=3), single.search(2, top=6, explain=3)
        for x, y in zip(a, b):
            np.testing.assert_allclose([s.share for s in x.explain], [s.share for s in y.explain],
                                       rtol=2e-3, atol=1e-5)
        # The single file's errors, with its classes.
        with pytest.raises(IndexError, match="entry 9999 does not exist"):
            sharded.search(9999)
        with pytest.raises(probelog.InvalidInputError, match="exclude_same_model needs an entry query"):
            sharded.search(q, exclude_model=True)
        with pytest.raises(probelog.InvalidInputError, match="no model named"):
            sharded.search(q, exclude_model="nobody")
        with pytest.raises(probelog.InvalidInputError, match="k = 999 is out of range"):
            sharded.search(3, metric="topk", k=999)
        with pytest.raises(probelog.ProbeCountMismatchError):
            sharded.search(np.ones(5, dtype=np.float32))


def test_sharded_index_equals_the_file_that_merge_makes(cluster, shards, tool, tmp_path):
    paths, whole, models = shards
    merged = tmp_path / "merged.plog"
    tool.run("merge", merged, *paths, "--keep-duplicate-names")
    single = probelog.Index(str(merged))
    q = models[9][2][:, 1]
    with ShardedIndex([str(p) for p in paths]) as sharded:
        for query in (1, 7, 20, q):
            for kw in (dict(top=12), dict(top=6, per_model=True, metric="topk"),
                       dict(top=5, metric="model")):
                assert hits_of(sharded.search(query, **kw)) == hits_of(single.search(query, **kw))


def test_sharded_index_refuses_mixed_probe_sets_and_missing_files(cluster, tmp_path):
    probelog.create(str(tmp_path / "a.plog"), num_probes=16)
    probelog.create(str(tmp_path / "b.plog"), num_probes=17)
    with pytest.raises(DistributedError, match="another probe set"):
        ShardedIndex([str(tmp_path / "a.plog"), str(tmp_path / "b.plog")])
    with pytest.raises(DistributedError, match="no such index file"):
        ShardedIndex([str(tmp_path / "a.plog"), str(tmp_path / "c.plog")])
    with pytest.raises(DistributedError, match="non-empty list"):
        ShardedIndex([])
    with pytest.raises(DistributedError, match="no live Ray node '10.9.9.9'"):
        ShardedIndex([("10.9.9.9", str(tmp_path / "a.plog"))])
    # A (node, path) pair pins the actor to that node: here the one node, by its address and
    # by its id (Ray names a node started on 127.0.0.1 by this machine's own address).
    with probelog.Writer(str(tmp_path / "a.plog")) as w:
        w.add_model("m", np.random.default_rng(1).normal(size=(16, 3)))
    node = ray.nodes()[0]
    a = str(tmp_path / "a.plog")
    with ShardedIndex([(node["NodeManagerAddress"], a), (node["NodeID"], a)]) as s:
        assert len(s) == 6 and s.num_models == 2
        # Entry 4 (file 1's entry 1) and its copy, entry 1 of file 0: equal scores, lower id first.
        assert [(h.entry, h.model_id, h.score) for h in s.search(4, top=2)] == [(1, 0, 0.0), (4, 1, 0.0)]


def test_a_shard_that_keeps_failing_ends_the_run_and_writes_nothing(cluster, torch_tool, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_text("not a TorchScript file\n")
    manifest = tmp_path / "m.toml"
    manifest.write_text(MANIFEST.read_text().replace('"models/', f'"{DEMO}/models/')
                        .replace(f'model = "{DEMO}/models/farm-resnet.pt"', f'model = "{bad}"'))
    out = tmp_path / "hub.plog"
    with pytest.raises(DistributedError, match=r"a shard failed after 1 retries: .*shard 0/2: "
                                               r"probelog-tool append: .*bad\.pt"):
        build_index(manifest, PROBES, out, 2, tool=torch_tool.path, max_retries=1, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pt", "m.toml"]
