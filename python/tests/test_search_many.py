"""probelog.search_many: several index files searched as the one file that holds their models in
order (what `probelog-tool merge` makes of them), in one process."""

from __future__ import annotations

import numpy as np
import pytest

import probelog
from conftest import concept_logits


def build(tmp_path, dtype):
    rng = np.random.default_rng(5)
    probes = 40
    logits = concept_logits(rng, probes, [2 + m % 3 for m in range(9)])
    logits[8] = logits[1]  # a tie across files
    models = [(f"m{m}", x) for m, x in enumerate(logits)]
    parts = [models[:3], models[3:4], models[4:]]

    def write(path, ms):
        probelog.create(str(path), num_probes=probes, dtype=dtype)
        with probelog.Writer(str(path)) as w:
            for name, x in ms:
                w.add_model(name, x, labels=[f"{name}-{j}" for j in range(x.shape[1])],
                            meta={"odd": str(int(name[1:]) % 2)})
        return probelog.Index(str(path))

    files = [write(tmp_path / f"s{i}.plog", p) for i, p in enumerate(parts)]
    return files, write(tmp_path / "whole.plog", models), models


def as_global(files, pairs):
    entry_base = np.cumsum([0] + [len(f) for f in files])
    model_base = np.cumsum([0] + [f.num_models for f in files])
    return [(h.rank, None if h.entry is None else h.entry + int(entry_base[i]), h.model,
             h.model_id + int(model_base[i]), h.logit, h.label, h.score) for i, h in pairs]


def plain(hits):
    return [(h.rank, h.entry, h.model, h.model_id, h.logit, h.label, h.score) for h in hits]


@pytest.mark.parametrize("dtype", ["f32", "f16"])
def test_search_many_is_the_search_of_the_merged_file(tmp_path, dtype):
    files, whole, models = build(tmp_path, dtype)
    bases = np.cumsum([0] + [len(f) for f in files])
    cases = [dict(top=10), dict(top=6, per_model=True), dict(top=5, metric="topk", k=5),
             dict(top=4, metric="full"), dict(top=3, metric="model"), dict(top=100),
             dict(top=7, filter={"odd": "1"}), dict(top=7, model_name="m[13]*")]
    for g in (0, 4, 9, len(whole) - 1):
        f = int(np.searchsorted(bases, g, side="right") - 1)
        for kw in cases + [dict(top=8, exclude_model=True)]:
            got = probelog.search_many(files, g - int(bases[f]), entry_file=f, **kw)
            assert as_global(files, got) == plain(whole.search(g, **kw)), (g, kw)
    q = models[5][1][:, 0] * 1.5
    for kw in cases:
        assert as_global(files, probelog.search_many(files, q, **kw)) == plain(whole.search(q, **kw))


def test_search_many_errors(tmp_path):
    files, whole, models = build(tmp_path, "f32")
    q = models[0][1][:, 0]
    with pytest.raises(probelog.InvalidInputError, match="exclude_same_model needs an entry query"):
        probelog.search_many(files, q, exclude_model=True)
    with pytest.raises(TypeError, match="exclude_model=True"):
        probelog.search_many(files, 0, exclude_model=3)
    with pytest.raises(TypeError, match="needs a query"):
        probelog.search_many(files)
    with pytest.raises(probelog.Error, match="no file 7"):
        probelog.search_many(files, 0, entry_file=7)
    with pytest.raises(probelog.Error, match="at least one index"):
        probelog.search_many([], q)
    probelog.create(str(tmp_path / "other.plog"), num_probes=41)
    with pytest.raises(probelog.Error, match="other.plog"):
        probelog.search_many([files[0], probelog.Index(str(tmp_path / "other.plog"))], 0)


# Bad queries, refused alike by Index.search and search_many (one decoder serves both).
BAD_QUERIES = [
    (dict(query=0, text_embedding=np.zeros(4, np.float32)), "not both"),
    (dict(query=True), "a query is an int or an array, not bool"),
    (dict(query="abc"), r"a query is an entry id \(int\) or a 1-D array of logits over the probes"),
    (dict(), "needs a query: an entry id"),
]


@pytest.mark.parametrize("kwargs, message", BAD_QUERIES)
def test_search_and_search_many_refuse_the_same_bad_queries(tmp_path, kwargs, message):
    files, whole, _ = build(tmp_path, "f32")
    with pytest.raises(TypeError, match=message):
        whole.search(**kwargs)
    with pytest.raises(TypeError, match=message):
        probelog.search_many(files, **kwargs)
