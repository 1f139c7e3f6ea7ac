"""The index from Python: create, Writer (atomic commit), Index, search, search_batch,
descriptors, models, verify, errors, and the GIL released during search and append."""

from __future__ import annotations

import sys
import threading

import numpy as np
import pytest

import probelog
from conftest import make_zoo


@pytest.fixture
def zoo(tmp_path, rng):
    path = tmp_path / "zoo.plog"
    logits = make_zoo(path, rng)
    return path, logits


def zscore(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    return (x - x.mean(axis=0)) / x.std(axis=0)


def test_create_and_counts(zoo):
    path, logits = zoo
    idx = probelog.Index(str(path))
    assert len(idx) == 6 * 8
    assert idx.num_probes == 48 and idx.num_models == 6 and idx.dtype == "f32"
    assert len(idx.probe_fingerprint) == 64


def test_create_variants(tmp_path):
    names = [f"p{i}" for i in range(5)]
    probelog.create(str(tmp_path / "a.plog"), num_probes=5, probe_names=names, dtype="f16")
    a = probelog.Index(str(tmp_path / "a.plog"))
    assert a.probe_names == names and a.dtype == "f16" and len(a) == 0
    probelog.create(str(tmp_path / "b.plog"), probe_names=names)
    assert probelog.Index(str(tmp_path / "b.plog")).probe_fingerprint == a.probe_fingerprint
    with pytest.raises(probelog.FileError, match="exists already"):
        probelog.create(str(tmp_path / "a.plog"), num_probes=5)
    with pytest.raises(probelog.InvalidInputError, match="probes"):
        probelog.create(str(tmp_path / "c.plog"), num_probes=1)
    with pytest.raises(probelog.InvalidInputError, match="dtype"):
        probelog.create(str(tmp_path / "d.plog"), num_probes=4, dtype="f64")
    with pytest.raises(probelog.InvalidInputError, match="4 probe names"):
        probelog.create(str(tmp_path / "e.plog"), num_probes=5, probe_names=names[:4])


def test_models_and_entries(zoo):
    path, _ = zoo
    idx = probelog.Index(str(path))
    models = idx.models
    assert [m.name for m in models] == [f"model-{m}" for m in range(6)]
    assert [m.logit_count for m in models] == [8] * 6
    assert models[2].meta == [("arch", "random"), ("seed", "2")]
    assert models[2].source == "hf://zoo/model-2"
    assert list(models[2].entries) == list(range(16, 24))
    e = idx.entry(17)
    assert (e.model, e.model_id, e.logit, e.label) == ("model-2", 2, 1, "class-2-1")


def test_descriptors_are_the_z_normalized_logits(zoo):
    path, logits = zoo
    idx = probelog.Index(str(path))
    d = idx.descriptors(range(8, 16))
    np.testing.assert_allclose(d, zscore(logits[1]).T, atol=1e-5)
    np.testing.assert_allclose(idx.descriptors(9), zscore(logits[1])[:, 1], atol=1e-5)
    everything = idx.descriptors()
    assert everything.shape == (48, 48) and everything.dtype == np.float32
    np.testing.assert_array_equal(idx.descriptors([3, 40, 3]), everything[[3, 40, 3]])
    np.testing.assert_array_equal(idx.descriptors(slice(0, 48, 5)), everything[0:48:5])
    with pytest.raises(IndexError):
        idx.descriptors(48)


def test_descriptors_are_zero_copy_views_of_the_map(zoo, rng):
    path, _ = zoo
    idx = probelog.Index(str(path))
    d = idx.descriptors(slice(0, 20))
    assert d.base is not None and type(d.base).__name__ == "MapOwner"
    assert not d.flags.writeable
    with pytest.raises(ValueError):
        d[0, 0] = 1.0
    # A list is a copy; an f16 index always copies.
    assert idx.descriptors([0, 1]).flags.writeable
    # The view outlives a refresh that replaces the map, and the index object itself.
    before = d.copy()
    with probelog.Writer(str(path)) as w:
        w.add_model("late", rng.normal(size=(48, 3)))
    assert idx.refresh() is True and len(idx) == 51
    del idx
    np.testing.assert_array_equal(d, before)
    # Ranges across segments are copied and still right.
    idx = probelog.Index(str(path))
    both = idx.descriptors(range(46, 51))
    assert both.flags.writeable and both.shape == (5, 48)
    np.testing.assert_array_equal(both[:2], idx.descriptors([46, 47]))
    np.testing.assert_array_equal(both[2:], idx.descriptors([48, 49, 50]))


def test_f16_index_and_input_dtypes(tmp_path, rng):
    x = rng.normal(size=(32, 5))
    results = {}
    for name, arr in {
        "f32_c": x.astype(np.float32),
        "f64": x,
        "f32_fortran": np.asfortranarray(x.astype(np.float32)),
        "f16": x.astype(np.float16),
    }.items():
        path = tmp_path / f"{name}.plog"
        probelog.create(str(path), num_probes=32)
        with probelog.Writer(str(path)) as w:
            w.add_model("m", arr)
        results[name] = probelog.Index(str(path)).descriptors()
    np.testing.assert_allclose(results["f64"], results["f32_c"], atol=1e-6)
    np.testing.assert_array_equal(results["f32_fortran"], results["f32_c"])
    np.testing.assert_allclose(results["f16"], results["f32_c"], atol=5e-3)
    path = tmp_path / "half.plog"
    probelog.create(str(path), num_probes=32, dtype="f16")
    with probelog.Writer(str(path)) as w:
        w.add_model("m", x)
    d = probelog.Index(str(path)).descriptors(slice(0, 5))
    assert d.flags.writeable  # f16 storage: converted copy
    np.testing.assert_allclose(d, results["f32_c"], atol=2e-3)


def test_search_by_entry(zoo):
    path, _ = zoo
    idx = probelog.Index(str(path))
    hits = idx.search(0, top=6)
    assert hits[0].entry == 0 and hits[0].score == pytest.approx(0.0, abs=1e-5)
    assert all(a.score <= b.score for a, b in zip(hits, hits[1:]))
    assert [h.rank for h in hits] == list(range(1, 7))
    # Logit 0 of every model detects the shared concept.
    others = idx.search(0, top=5, exclude_model=True, per_model=True)
    assert sorted(h.entry for h in others) == [8, 16, 24, 32, 40]
    assert {h.model for h in others} == {f"model-{m}" for m in range(1, 6)}
    assert all(h.logit == 0 and h.label.endswith("-0") for h in others)
    assert others[0].to_dict()["model"] == others[0].model


def test_search_by_vector_and_metrics(zoo):
    path, logits = zoo
    idx = probelog.Index(str(path))
    q = logits[3][:, 0] * 2.5 + 1.0  # raw, un-normalized: the core z-normalizes it
    hits = idx.search(q, top=1)
    assert hits[0].entry == 24 and hits[0].score == pytest.approx(0.0, abs=1e-4)
    assert idx.search(q.astype(np.float64), top=3, metric="topk", k=4)[0].entry == 24
    assert idx.search(list(q), top=1, metric="full")[0].entry == 24
    models = idx.search(q, top=6, metric="model")  # distance to each model's mean descriptor
    assert all(h.entry is None and h.logit is None for h in models)
    assert sorted(h.model_id for h in models) == list(range(6))
    # exclude a model by name or id
    assert all(h.model != "model-3" for h in idx.search(q, top=10, exclude_model="model-3"))
    assert all(h.model_id != 3 for h in idx.search(q, top=10, exclude_model=3))
    # blend weight 0 ranks and scores as topk
    a = idx.search(q, top=5, k=8, blend_weight=0.0)
    b = idx.search(q, top=5, k=8, metric="topk")
    assert [(h.entry, h.score) for h in a] == [(h.entry, h.score) for h in b]


def test_search_errors(zoo):
    path, _ = zoo
    idx = probelog.Index(str(path))
    with pytest.raises(probelog.InvalidInputError, match="NaN"):
        idx.search(np.full(48, np.nan))
    with pytest.raises(probelog.ProbeCountMismatchError, match="47 probes"):
        idx.search(np.ones(47) * np.arange(47))
    with pytest.raises(probelog.InvalidInputError, match="constant"):
        idx.search(np.ones(48))
    with pytest.raises(probelog.InvalidInputError, match="does not exist"):
        idx.search(10_000)
    with pytest.raises(probelog.InvalidInputError, match="k = 0"):
        idx.search(0, k=0)
    with pytest.raises(probelog.InvalidInputError, match="metric"):
        idx.search(0, metric="cosine")
    with pytest.raises(probelog.InvalidInputError, match="hnsw"):
        idx.search(0, mode="hnsw", metric="full")  # the graphs serve blend and topk only
    with pytest.raises(probelog.InvalidInputError, match="entry query"):
        idx.search(np.arange(48.0), exclude_model=True)
    with pytest.raises(probelog.InvalidInputError, match="embeddings"):
        idx.search(text_embedding=np.ones(4))
    with pytest.raises(TypeError):
        idx.search()
    with pytest.raises(TypeError):
        idx.search(True)
    assert issubclass(probelog.ProbeCountMismatchError, probelog.InvalidInputError)
    assert issubclass(probelog.InvalidInputError, probelog.Error)


def test_text_embedding_search(tmp_path, rng):
    emb = rng.normal(size=(40, 6)).astype(np.float32)
    path = tmp_path / "t.plog"
    probelog.create(str(path), num_probes=40, probe_embeddings=emb)
    t = rng.normal(size=6)
    unit = emb.astype(np.float64) / np.linalg.norm(emb.astype(np.float64), axis=1, keepdims=True)
    sims = unit @ t  # the index stores the embeddings L2-normalized
    with probelog.Writer(str(path)) as w:
        w.add_model("m", np.stack([sims, rng.normal(size=40), -sims], axis=1))
    hits = probelog.Index(str(path)).search(text_embedding=t, top=3)
    assert hits[0].entry == 0 and hits[0].score == pytest.approx(0.0, abs=1e-4)
    assert hits[-1].entry == 2


def test_search_batch_equals_single_searches(zoo, rng):
    path, _ = zoo
    idx = probelog.Index(str(path))
    Q = rng.normal(size=(9, 48))
    for kwargs in ({}, {"metric": "topk", "k": 5}, {"per_model": True}, {"metric": "model"}):
        ids, scores = idx.search_batch(Q, top=4, **kwargs)
        assert ids.shape == (9, 4) and ids.dtype == np.int64 and scores.dtype == np.float32
        for i, q in enumerate(Q):
            hits = idx.search(q, top=4, **kwargs)
            want = [h.model_id if kwargs.get("metric") == "model" else h.entry for h in hits]
            assert ids[i].tolist() == want
            assert scores[i].tolist() == [h.score for h in hits]
    # fewer results than top: padded
    ids, scores = idx.search_batch(Q[:2], top=60)
    assert (ids[:, 48:] == -1).all() and np.isinf(scores[:, 48:]).all()
    with pytest.raises(probelog.ProbeCountMismatchError):
        idx.search_batch(Q[:, :40])
    bad = Q.copy()
    bad[5, 3] = np.inf
    with pytest.raises(probelog.InvalidInputError, match="infinite|inf"):
        idx.search_batch(bad)


def test_writer_commits_atomically_and_nothing_on_error(zoo, rng):
    path, _ = zoo
    before = path.read_bytes()
    with pytest.raises(RuntimeError, match="boom"):
        with probelog.Writer(str(path)) as w:
            w.add_model("a", rng.normal(size=(48, 4)))
            w.add_model("b", rng.normal(size=(48, 4)))
            raise RuntimeError("boom")
    assert path.read_bytes() == before
    # bad input inside the block: the error propagates, nothing is committed
    for bad, err, what in [
        (np.full((48, 3), np.nan), probelog.InvalidInputError, "NaN"),
        (np.ones((48, 3)), probelog.InvalidInputError, "constant"),
        (rng.normal(size=(47, 3)), probelog.ProbeCountMismatchError, "47 probes"),
        (rng.normal(size=48), probelog.InvalidInputError, "2-D"),
        (rng.normal(size=(48, 3, 2)), probelog.InvalidInputError, "2-D"),
    ]:
        with pytest.raises(err, match=what):
            with probelog.Writer(str(path)) as w:
                w.add_model("ok", rng.normal(size=(48, 2)))
                w.add_model("bad", bad)
        assert path.read_bytes() == before
    with pytest.raises(probelog.InvalidInputError, match="label"):
        with probelog.Writer(str(path)) as w:
            w.add_model("labels", rng.normal(size=(48, 3)), labels=["a", "b"])
    assert path.read_bytes() == before
    # two models in one commit
    with probelog.Writer(str(path)) as w:
        r = w.add_model("c", rng.normal(size=(48, 4)))
        assert r == {"model_id": 6, "first_entry": 48, "logits": 4, "constant_logits": 0}
        w.add_model("d", rng.normal(size=(48, 4)))
        assert w.has_pending
    idx = probelog.Index(str(path))
    assert len(idx) == 56 and idx.num_models == 8 and idx.verify().ok
    # keep_constant stores zeros
    with probelog.Writer(str(path)) as w:
        x = rng.normal(size=(48, 3))
        x[:, 1] = 2.0
        assert w.add_model("k", x, keep_constant=True)["constant_logits"] == 1
    # explicit commit, and a closed writer says so
    w = probelog.Writer(str(path))
    w.add_model("e", rng.normal(size=(48, 2)))
    s = w.commit()
    assert s["models_added"] == 1 and not w.is_open
    with pytest.raises(probelog.Error, match="closed"):
        w.add_model("f", rng.normal(size=(48, 2)))
    # abort writes nothing
    before = path.read_bytes()
    w = probelog.Writer(str(path))
    w.add_model("g", rng.normal(size=(48, 2)))
    w.abort()
    assert path.read_bytes() == before


def test_model_names(zoo, rng):
    path, _ = zoo
    before = path.read_bytes()
    with pytest.raises(probelog.DuplicateNameError, match="model-1"):
        with probelog.Writer(str(path)) as w:
            w.add_model("model-1", rng.normal(size=(48, 2)))
    assert path.read_bytes() == before
    with probelog.Writer(str(path)) as w:
        w.add_model("model-1", rng.normal(size=(48, 2)), existing_name="keep")
    assert [m.name for m in probelog.Index(str(path)).models].count("model-1") == 2
    with pytest.raises(probelog.InvalidInputError, match="existing_name"):
        with probelog.Writer(str(path)) as w:
            w.add_model("x", rng.normal(size=(48, 2)), existing_name="rename")


def test_writer_lock(zoo):
    path, _ = zoo
    with probelog.Writer(str(path)):
        with pytest.raises(probelog.LockedError, match="locked"):
            probelog.Writer(str(path), wait=False)
    probelog.Writer(str(path), wait=False).abort()


def test_meta_must_be_strings(zoo, rng):
    path, _ = zoo
    with pytest.raises(TypeError):
        with probelog.Writer(str(path)) as w:
            w.add_model("m", rng.normal(size=(48, 2)), meta={"a": 1})


def test_probe_set_mismatch(tmp_path, rng):
    from conftest import make_probe_set

    a = make_probe_set(probes=20, seed=1)
    b = make_probe_set(probes=20, seed=2)
    path = tmp_path / "p.plog"
    probelog.create(str(path), probes=a)
    idx = probelog.Index(str(path))
    assert idx.probe_fingerprint == a.fingerprint and idx.probe_names == a.names
    before = path.read_bytes()
    with pytest.raises(probelog.ProbeSetMismatchError, match="probe set mismatch"):
        with probelog.Writer(str(path)) as w:
            w.add_model("m", rng.normal(size=(20, 3)), probe_set=b)
    assert path.read_bytes() == before
    with pytest.raises(probelog.ProbeSetMismatchError):
        with probelog.Writer(str(path)) as w:
            w.add_model("m", rng.normal(size=(20, 3)), probe_set=b.fingerprint)
    with probelog.Writer(str(path)) as w:
        w.add_model("m", rng.normal(size=(20, 3)), probe_set=a)
    assert len(probelog.Index(str(path))) == 3


def test_damaged_files(zoo, tmp_path):
    path, _ = zoo
    data = bytearray(path.read_bytes())
    bad = tmp_path / "bad.plog"
    bad.write_bytes(b"not an index at all" * 300)
    with pytest.raises(probelog.CorruptIndexError, match="not a probelog index"):
        probelog.Index(str(bad))
    bad.write_bytes(bytes(data[:5000]))
    with pytest.raises(probelog.CorruptIndexError):
        probelog.Index(str(bad))
    with pytest.raises(probelog.FileError):
        probelog.Index(str(tmp_path / "missing.plog"))
    with pytest.raises(probelog.FileError):
        probelog.Index(str(tmp_path))
    # A flipped byte in the descriptors: open works (lazy), verify names the damage, and a
    # writer refuses to append.
    idx = probelog.Index(str(path))
    assert idx.verify().ok
    data[4096 + 100] ^= 0xFF
    bad.write_bytes(bytes(data))
    report = probelog.Index(str(bad)).verify()
    assert not report.ok and not report and report.problems
    assert any("checksum" in msg or "must be zero" in msg for _, msg in report.problems)


def test_gil_is_released_during_search_and_append(tmp_path, rng):
    # With a long switch interval, another Python thread can only run while a call has
    # released the GIL: count its steps during each call.
    path = tmp_path / "big.plog"
    probelog.create(str(path), num_probes=512)
    # Under 20,000 entries a segment gets no ANN graph, which would take long to build.
    x = rng.normal(size=(512, 15_000)).astype(np.float32)
    with probelog.Writer(str(path)) as w:
        w.add_model("big", x)
    idx = probelog.Index(str(path))
    counter = [0]
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            counter[0] += 1

    old = sys.getswitchinterval()
    sys.setswitchinterval(0.5)
    t = threading.Thread(target=spin)
    t.start()
    try:
        during = {}
        for name, call in [
            ("search", lambda: idx.search(rng.normal(size=512), top=5)),
            ("search_batch", lambda: idx.search_batch(rng.normal(size=(8, 512)), top=5)),
            ("verify", lambda: idx.verify()),
            ("append", lambda: _append(path, x)),
        ]:
            c0 = counter[0]
            call()
            during[name] = counter[0] - c0
    finally:
        stop.set()
        sys.setswitchinterval(old)
        t.join()
    assert all(v > 0 for v in during.values()), during


def _append(path, x):
    with probelog.Writer(str(path)) as w:
        w.add_model("again", x)


def test_threads_search_in_parallel_with_the_same_results(zoo, rng):
    path, _ = zoo
    idx = probelog.Index(str(path))
    Q = rng.normal(size=(32, 48))
    want = [[(h.entry, h.score) for h in idx.search(q, top=5)] for q in Q]
    got = [None] * len(Q)

    def work(i):
        got[i] = [(h.entry, h.score) for h in idx.search(Q[i], top=5)]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(Q))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == want
