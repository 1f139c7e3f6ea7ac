"""Collaborative probing from Python: ``Writer.append_collab(name, labels, prober=..., probe_fraction=...)``
calls ``prober`` with the probes the core policy chooses (a seeded random subset, then the probes
the completion ranks highest) and stages the model on them. The index it writes equals, bit for
bit, the one ``probelog-tool append --probe-fraction`` writes from the same logits."""

from __future__ import annotations

import numpy as np
import pytest

import probelog

P = 40


def low_rank_logits(seed: int, logits: int, rank: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((P, rank))
    return (basis @ rng.standard_normal((rank, logits)) * 2.0 + 0.5).astype(np.float32)


class Recorder:
    """A prober over known logits that records what it was asked."""

    def __init__(self, logits: np.ndarray):
        self.logits = logits
        self.calls: list[np.ndarray] = []

    def __call__(self, probes: np.ndarray) -> np.ndarray:
        self.calls.append(probes.copy())
        return self.logits[probes]


def test_append_collab_writes_what_the_cli_writes(tmp_path, tool):
    logits = low_rank_logits(1, 6)
    npy = tmp_path / "m.npy"
    np.save(npy, logits)
    labels = [f"c{j}" for j in range(6)]
    (tmp_path / "m.labels").write_text("".join(f"{l}\n" for l in labels))
    flags = ["--probe-fraction", "0.5", "--seed", "4", "--rank", "3", "--lambda", "0.5"]
    cli = tmp_path / "cli.plog"
    tool.run("create", cli, "--num-probes", P)
    tool.run("append", cli, "--logits", npy, "--name", "m", "--labels", tmp_path / "m.labels", *flags)

    py = tmp_path / "py.plog"
    probelog.create(str(py), num_probes=P)
    prober = Recorder(logits)
    with probelog.Writer(str(py)) as w:
        added = w.append_collab(
            "m", labels, prober=prober, probe_fraction=0.5, seed=4, rank=3, lambda_=0.5
        )
    assert added["model_id"] == 0 and added["logits"] == 6
    # Two rounds of 10 probes each (DEFAULT_ADAPTIVE_SHARE of a budget of 20), disjoint, sorted.
    assert probelog.DEFAULT_ADAPTIVE_SHARE == 0.5
    assert [len(c) for c in prober.calls] == [10, 10]
    assert all(c.dtype == np.uint32 and np.all(np.diff(c) > 0) for c in prober.calls)
    assert not set(prober.calls[0]) & set(prober.calls[1])
    assert added["observed"].tolist() == sorted(np.concatenate(prober.calls).tolist())

    a, b = probelog.Index(str(cli)), probelog.Index(str(py))
    assert a.descriptors().tobytes() == b.descriptors().tobytes()
    assert [e.label for e in (b.entry(j) for j in range(6))] == labels
    info = tool.json("info", py)
    assert info["models"][0]["observed_probes"] == 20
    assert info["probe_factors"]["rank"] == 3


def test_share_zero_asks_once_and_later_models_fold_in(tmp_path):
    path = tmp_path / "hub.plog"
    probelog.create(str(path), num_probes=P)
    first = Recorder(low_rank_logits(2, 5))
    with probelog.Writer(str(path)) as w:
        w.append_collab("a", prober=first, probe_fraction=0.25, adaptive_share=0, rank=3)
    assert [len(c) for c in first.calls] == [10]
    # The index stores factors now: a model of fewer logits than the rank folds in with them.
    late = Recorder(low_rank_logits(3, 2))
    with probelog.Writer(str(path)) as w:
        added = w.append_collab("b", prober=late, probe_fraction=0.5, meta={"k": "v"})
    assert [len(c) for c in late.calls] == [10, 10]
    assert added["model_id"] == 1 and len(added["observed"]) == 20
    assert probelog.Index(str(path)).model(1).meta == [("k", "v")]


def test_prober_errors_and_bad_arguments_stage_nothing(tmp_path):
    path = tmp_path / "hub.plog"
    probelog.create(str(path), num_probes=P)
    logits = low_rank_logits(4, 5)

    def broken(probes):
        raise RuntimeError("the model crashed")

    with probelog.Writer(str(path)) as w:
        with pytest.raises(RuntimeError, match="the model crashed"):
            w.append_collab("x", prober=broken, probe_fraction=0.5, rank=3)
        with pytest.raises(probelog.InvalidInputError, match="asked for 10 probes"):
            w.append_collab("x", prober=lambda q: logits[q][:-1], probe_fraction=0.5, rank=3)
        with pytest.raises(probelog.InvalidInputError, match="2-D float array"):
            w.append_collab("x", prober=lambda q: "logits", probe_fraction=0.5, rank=3)
        with pytest.raises(probelog.InvalidInputError, match="callable"):
            w.append_collab("x", prober=3, probe_fraction=0.5)
        with pytest.raises(probelog.InvalidInputError, match="probe fraction"):
            w.append_collab("x", prober=Recorder(logits), probe_fraction=1.5)
        with pytest.raises(probelog.InvalidInputError, match="adaptive share"):
            w.append_collab("x", prober=Recorder(logits), probe_fraction=0.5, adaptive_share=1.0)
        with pytest.raises(probelog.InvalidInputError, match="at least 32 logits"):
            w.append_collab("x", prober=Recorder(logits), probe_fraction=0.5)
        with pytest.raises(probelog.InvalidInputError, match="lambda_"):
            w.append_collab("x", prober=Recorder(logits), probe_fraction=0.5, lambda_=float("nan"))
        assert not w.has_pending
