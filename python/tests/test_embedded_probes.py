"""An index that ships with its probe set (``probelog-tool create --embed-probes``, ``probes
attach``, ``probelog.create(embed_probes=True)``): ``Index.probe_set()`` gives the stored set
back as a ``ProbeSet``, byte for byte the file that was embedded, or None; a damaged copy raises
``CorruptIndexError``."""

from __future__ import annotations

import pytest

import probelog
from conftest import make_probe_set


def test_embedded_at_create_comes_back_byte_for_byte(tmp_path, tool):
    pset = tmp_path / "probes.pset"
    original = make_probe_set(pset, probes=6, size=5)
    index = tmp_path / "hub.plog"
    tool.run("create", index, "--probes", pset, "--embed-probes")
    idx = probelog.Index(str(index))
    got = idx.probe_set()
    assert isinstance(got, probelog.ProbeSet)
    assert got.to_bytes() == pset.read_bytes()
    assert got.fingerprint == original.fingerprint == idx.probe_fingerprint
    assert got.names == original.names and len(got) == idx.num_probes


def test_python_create_embeds_as_the_command_line_does(tmp_path, tool):
    pset = tmp_path / "probes.pset"
    original = make_probe_set(pset, probes=6, size=5)
    by_python, by_tool = tmp_path / "python.plog", tmp_path / "tool.plog"
    probelog.create(str(by_python), probes=original, embed_probes=True)
    tool.run("create", by_tool, "--probes", pset, "--embed-probes")
    for path in (by_python, by_tool):
        got = probelog.Index(str(path)).probe_set()
        assert got is not None and got.to_bytes() == pset.read_bytes(), path
    assert by_python.read_bytes() == by_tool.read_bytes()
    with pytest.raises(probelog.InvalidInputError, match="embed_probes .* pass probes too"):
        probelog.create(str(tmp_path / "none.plog"), num_probes=6, embed_probes=True)
    assert not (tmp_path / "none.plog").exists()


def test_a_python_writer_attaches_as_probes_attach_does(tmp_path):
    pset, other = tmp_path / "probes.pset", tmp_path / "other.pset"
    original = make_probe_set(pset, probes=6, size=5)
    make_probe_set(other, probes=6, size=5, seed=9)
    index = tmp_path / "hub.plog"
    probelog.create(str(index), probes=original)
    with probelog.Writer(str(index)) as w:
        with pytest.raises(probelog.ProbeSetMismatchError):
            w.embed_probe_set(str(other))
        w.embed_probe_set(str(pset))
        with pytest.raises(probelog.InvalidInputError, match="already"):
            w.embed_probe_set(original)
    assert probelog.Index(str(index)).probe_set().to_bytes() == pset.read_bytes()
    with probelog.Writer(str(index)) as w:
        with pytest.raises(probelog.InvalidInputError, match="already"):
            w.embed_probe_set(original)


def test_none_until_attached(tmp_path, tool):
    pset = tmp_path / "probes.pset"
    original = make_probe_set(pset, probes=6, size=5)
    index = tmp_path / "hub.plog"
    probelog.create(str(index), probes=original)
    idx = probelog.Index(str(index))
    assert idx.probe_set() is None
    tool.run("probes", "attach", index, pset)
    assert idx.probe_set() is None, "a snapshot keeps its commit"
    assert idx.refresh()
    assert idx.probe_set().to_bytes() == pset.read_bytes()


def test_a_damaged_copy_raises(tmp_path, tool):
    pset = tmp_path / "probes.pset"
    make_probe_set(pset, probes=6, size=5)
    original = pset.read_bytes()
    index = tmp_path / "hub.plog"
    tool.run("create", index, "--probes", pset, "--embed-probes")
    data = bytearray(index.read_bytes())
    at = bytes(data).find(original)
    assert at > 0
    data[at + len(original) - 40] ^= 0x3C  # a pixel
    index.write_bytes(bytes(data))
    idx = probelog.Index(str(index))
    with pytest.raises(probelog.CorruptIndexError, match="fingerprint"):
        idx.probe_set()
    report = idx.verify()
    assert not report.ok
    assert any(section == "segment 0 embedded probe set" for section, _ in report.problems)
