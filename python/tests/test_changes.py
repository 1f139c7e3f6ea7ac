"""A repository that changes, from Python: deletes and new versions, filters, explanations; the
same answers as probelog-tool on the same file."""

from __future__ import annotations

import numpy as np
import pytest

import probelog
from conftest import make_zoo


def hits(found):
    return [(h.entry, h.model, h.logit, h.label) for h in found]


def cli(tool, path, *args):
    return [(h["entry"], h["model"], h["logit"], h["label"]) for h in tool.json("search", path, *args)["results"]]


def test_deletes_and_new_versions(tool, tmp_path, rng):
    path = tmp_path / "zoo.plog"
    logits = make_zoo(path, rng, models=6)
    with probelog.Writer(str(path)) as w:
        assert w.delete_models("model-2") == [2]
        w.delete_model(4)
        with pytest.raises(probelog.InvalidInputError, match="no live model"):
            w.delete_models("model-2")
    idx = probelog.Index(str(path))
    assert idx.deleted_models == [2, 4] and idx.live_model_count == 4
    for query in (0, logits[1][:, 0]):
        found = idx.search(query, top=100)
        assert {h.model for h in found}.isdisjoint({"model-2", "model-4"})
    with pytest.raises(probelog.InvalidInputError, match="deleted"):
        idx.search(16)  # an entry of model-2
    assert hits(idx.search(0, top=10)) == cli(tool, path, "--entry", 0, "--top", 10)

    # A new version replaces the live model in one commit; a plain add of a taken name raises.
    with pytest.raises(probelog.DuplicateNameError):
        with probelog.Writer(str(path)) as w:
            w.add_model("model-1", logits[1])
    with probelog.Writer(str(path)) as w:
        w.add_model("model-1", logits[1] * 2 + 1, existing_name="replace")
    idx = probelog.Index(str(path))
    assert idx.deleted_models == [1, 2, 4]
    names = [m.name for m in idx.models if m.id not in idx.deleted_models]
    assert names.count("model-1") == 1


def test_filters_and_explanations_equal_the_cli(tool, tmp_path, rng):
    path = tmp_path / "zoo.plog"
    make_zoo(path, rng, models=6)
    idx = probelog.Index(str(path))
    for filt, flags in [
        ({"seed": "3"}, ["--where", "seed=3"]),
        (["seed!=3", "arch=random"], ["--where", "seed!=3", "--where", "arch=random"]),
        ("seed=5", ["--where", "seed=5"]),
    ]:
        found = idx.search(0, top=8, filter=filt)
        assert len(found) == 8
        assert hits(found) == cli(tool, path, "--entry", 0, "--top", 8, *flags)
    found = idx.search(0, top=5, model_name="model-*", filter={"seed": "1"})
    assert len(found) == 5 and all(h.model == "model-1" for h in found)
    found = idx.search(0, top=8, model_name="model-?")
    assert {h.model for h in found} <= {f"model-{m}" for m in range(6)}
    with pytest.raises(probelog.InvalidInputError, match="KEY=VALUE"):
        idx.search(0, filter="nokey")

    found = idx.search(0, top=3, metric="topk", k=4, explain=48)
    out = tool.json("search", path, "--entry", 0, "--top", 3, "--metric", "topk", "--k", 4, "--explain", 2)
    for h, row in zip(found, out["results"]):
        assert sum(p.share for p in h.explain) == pytest.approx(h.score, rel=1e-4, abs=1e-5)
        assert [p.probe for p in h.explain[:2]] == [p["probe"] for p in row["explain"]]
    assert idx.search(0, top=2)[0].explain is None
