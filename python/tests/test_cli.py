"""The Python package and probelog-tool on the same files: the same search results, both ways
(an index made in Python searched by the CLI, and one made by the CLI searched from Python)."""

from __future__ import annotations

import numpy as np
import pytest

import probelog
from conftest import make_zoo


def cli_hits(tool, path, *args):
    out = tool.json("search", path, *args)
    return [(h["entry"], h["model"], h["logit"], h["label"], h["score"]) for h in out["results"]]


def py_hits(hits):
    return [(h.entry, h.model, h.logit, h.label, h.score) for h in hits]


def same(a, b):
    assert [x[:4] for x in a] == [x[:4] for x in b]
    np.testing.assert_allclose([x[4] for x in a], [x[4] for x in b], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", ["f32", "f16"])
def test_python_index_searched_by_the_cli(tool, tmp_path, rng, dtype):
    path = tmp_path / "zoo.plog"
    logits = make_zoo(path, rng, models=8, dtype=dtype)
    idx = probelog.Index(str(path))
    assert tool.json("verify", path)["problems"] == []
    info = tool.json("info", path)
    assert info["entry_count"] == len(idx) and info["fingerprint"] == idx.probe_fingerprint
    for entry in (0, 13, 40):
        same(cli_hits(tool, path, "--entry", entry, "--top", 7), py_hits(idx.search(entry, top=7)))
        same(cli_hits(tool, path, "--entry", entry, "--top", 5, "--exclude-same-model", "--per-model"),
             py_hits(idx.search(entry, top=5, exclude_model=True, per_model=True)))
        same(cli_hits(tool, path, "--entry", entry, "--metric", "topk", "--k", "4"),
             py_hits(idx.search(entry, metric="topk", k=4)))
    q = logits[2][:, 3] * 3.0 - 1.0
    np.save(tmp_path / "q.npy", q.astype(np.float32))
    same(cli_hits(tool, path, "--query-logits", tmp_path / "q.npy", "--top", 6),
         py_hits(idx.search(q, top=6)))
    same(cli_hits(tool, path, "--query-logits", tmp_path / "q.npy", "--metric", "full"),
         py_hits(idx.search(q, metric="full")))
    ids, scores = idx.search_batch(q[None, :], top=6)
    assert ids[0].tolist() == [h[0] for h in cli_hits(tool, path, "--query-logits", tmp_path / "q.npy", "--top", 6)]


def test_cli_index_searched_from_python(tool, tmp_path, rng):
    path = tmp_path / "cli.plog"
    names = tmp_path / "probes.txt"
    names.write_text("".join(f"probe-{i}\n" for i in range(40)))
    tool.run("create", path, "--num-probes", 40, "--probe-names", names)
    for m in range(4):
        np.save(tmp_path / f"m{m}.npy", rng.normal(size=(40, 6)).astype(np.float32))
        (tmp_path / f"m{m}.txt").write_text("".join(f"c{m}{j}\n" for j in range(6)))
        tool.run("append", path, "--logits", tmp_path / f"m{m}.npy", "--name", f"m{m}",
                 "--labels", tmp_path / f"m{m}.txt", "--meta", f"seed={m}")
    idx = probelog.Index(str(path))
    assert idx.probe_names == [f"probe-{i}" for i in range(40)]
    assert [(m.name, m.meta, m.logit_count) for m in idx.models] == [
        (f"m{m}", [("seed", str(m))], 6) for m in range(4)
    ]
    for entry in (0, 11, 23):
        same(cli_hits(tool, path, "--entry", entry, "--top", 10), py_hits(idx.search(entry, top=10)))
    # The descriptors equal the CLI's export.
    tool.run("export", path, "--out", tmp_path / "d.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "d.npy"), idx.descriptors())
    # A model appended from Python is visible to the CLI, and a refresh shows CLI appends.
    with probelog.Writer(str(path)) as w:
        w.add_model("py", rng.normal(size=(40, 2)))
    assert tool.json("info", path)["model_count"] == 5
    tool.run("append", path, "--logits", tmp_path / "m0.npy", "--name", "again")
    assert idx.refresh() and idx.num_models == 6
