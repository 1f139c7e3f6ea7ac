"""Probe set files (.pset), read and written by the core crate: the same bytes and fingerprint
as probelog-tool's."""

from __future__ import annotations

import numpy as np
import pytest

import probelog
from conftest import make_probe_set


def test_round_trip_and_pixels(tmp_path):
    s = make_probe_set(tmp_path / "p.pset", probes=5, size=6)
    back = probelog.ProbeSet(str(tmp_path / "p.pset"))
    assert len(back) == 5 and back.size == 6 and back.names == s.names
    assert back.fingerprint == s.fingerprint
    px = back.pixels()
    assert px.shape == (5, 3, 6, 6) and px.dtype == np.uint8 and not px.flags.writeable
    np.testing.assert_array_equal(px, s.pixels())
    assert probelog.ProbeSet.from_bytes(s.to_bytes()).fingerprint == s.fingerprint


def test_fingerprint_is_the_pinned_one():
    # The sample of tools/src/pset.rs and src/probe_set.rs: the three must never disagree.
    px = (np.arange(2 * 3 * 4 * 4) * 7 % 256).astype(np.uint8).reshape(2, 3, 4, 4)
    s = probelog.ProbeSet.from_pixels(["p0.png", "p1.png"], px)
    assert s.fingerprint == "35a9aed604e8e7af46b880d430de38a32311b41de3e708ae9d2752ae0fa4324d"


def test_damaged_and_bad_sets(tmp_path):
    s = make_probe_set(probes=3, size=4)
    b = bytearray(s.to_bytes())
    b[-40] ^= 0xFF
    with pytest.raises(probelog.InvalidInputError, match="fingerprint"):
        probelog.ProbeSet.from_bytes(bytes(b))
    (tmp_path / "t.pset").write_bytes(s.to_bytes()[:-5])
    with pytest.raises(probelog.InvalidInputError, match="t.pset.*truncated"):
        probelog.ProbeSet(str(tmp_path / "t.pset"))
    with pytest.raises(probelog.FileError):
        probelog.ProbeSet(str(tmp_path / "missing.pset"))
    with pytest.raises(probelog.InvalidInputError, match="twice"):
        probelog.ProbeSet.from_pixels(["a", "a"], np.zeros((2, 3, 2, 2), np.uint8))
    with pytest.raises(probelog.InvalidInputError, match="square"):
        probelog.ProbeSet.from_pixels(["a"], np.zeros((1, 3, 2, 3), np.uint8))


def test_the_cli_reads_it_and_agrees(tool, tmp_path):
    s = make_probe_set(tmp_path / "p.pset", probes=7, size=5)
    info = tool.json("probes", "info", tmp_path / "p.pset")
    assert info["fingerprint"] == s.fingerprint
    tool.run("create", tmp_path / "cli.plog", "--probes", tmp_path / "p.pset")
    probelog.create(str(tmp_path / "py.plog"), probes=str(tmp_path / "p.pset"))
    a, b = probelog.Index(str(tmp_path / "cli.plog")), probelog.Index(str(tmp_path / "py.plog"))
    assert a.probe_fingerprint == b.probe_fingerprint == s.fingerprint
    assert a.probe_names == b.probe_names == s.names
