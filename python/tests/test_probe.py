"""probe(): torch models over a probe set, without an export step. The descriptors equal
probelog-tool's ``append --model`` on the same TorchScript model within 1e-4, transformers and
timm models run as they are, and the outputs are checked as the tool checks them."""

from __future__ import annotations

import numpy as np
import pytest

import probelog
from conftest import make_probe_set

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def tiny_convnet(torch, num_logits=5, seed=1):
    torch.manual_seed(seed)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 6, 3, padding=1)
            self.head = torch.nn.Linear(6, num_logits)

        def forward(self, x):
            return self.head(self.conv(x).relu().mean(dim=(2, 3)))

    return Net().eval()


def zscore_cols(x):
    x = np.asarray(x, dtype=np.float64)
    return ((x - x.mean(axis=0)) / x.std(axis=0)).T


def test_probe_equals_an_independent_run(torch, tmp_path):
    pset = make_probe_set(tmp_path / "p.pset", probes=20, size=12)
    model = tiny_convnet(torch)
    seen = []
    logits = probelog.probe(model, tmp_path / "p.pset", batch_size=7, mean=MEAN, std=STD,
                            progress=lambda done, total: seen.append((done, total)))
    assert isinstance(logits, probelog.Logits) and isinstance(logits, np.ndarray)
    assert logits.shape == (20, 5) and logits.dtype == np.float32
    assert seen == [(7, 20), (14, 20), (20, 20)]
    assert logits.probe_set.fingerprint == pset.fingerprint and logits.labels is None
    x = torch.from_numpy(pset.pixels().astype(np.float32)) / 255.0
    x = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        want = model(x).numpy()
    np.testing.assert_allclose(logits, want, rtol=1e-5, atol=1e-5)
    # The model's training flag is restored.
    model.train()
    probelog.probe(model, pset, progress=False)
    assert model.training


def test_probe_descriptors_equal_the_cli(torch, tool, tmp_path):
    if not tool.has_torch():
        pytest.fail("probelog-tool lacks append --model")
    pset_path = tmp_path / "p.pset"
    make_probe_set(pset_path, probes=24, size=16)
    model = tiny_convnet(torch, num_logits=6, seed=3)
    script = torch.jit.trace(model, torch.rand(2, 3, 16, 16))
    script.save(str(tmp_path / "m.pt"))
    cli = tmp_path / "cli.plog"
    tool.run("create", cli, "--probes", pset_path)
    r = tool.run("append", cli, "--model", tmp_path / "m.pt", "--probes", pset_path, "--name", "m",
                 "--mean", ",".join(map(str, MEAN)), "--std", ",".join(map(str, STD)),
                 "--batch", "5", "--device", "cpu", check=False)
    if r.returncode != 0 and "libtorch" in r.stderr:
        pytest.fail(f"probelog-tool was built without the torch feature: {r.stderr}")
    assert r.returncode == 0, r.stderr
    py = tmp_path / "py.plog"
    probelog.create(str(py), probes=str(pset_path))
    for i, m in enumerate((str(tmp_path / "m.pt"), torch.jit.load(str(tmp_path / "m.pt")), model)):
        logits = probelog.probe(m, str(pset_path), batch_size=5, mean=MEAN, std=STD, progress=False)
        with probelog.Writer(str(py)) as w:
            w.add_model(f"m{i}", logits)  # the probe set travels with the logits
    a = probelog.Index(str(cli)).descriptors()
    b = probelog.Index(str(py)).descriptors()
    assert a.shape == (6, 24) and b.shape == (18, 24)
    for i in range(3):
        np.testing.assert_allclose(b[6 * i: 6 * i + 6], a, atol=1e-4)
    # Logits of the same model on another probe set are refused by the CLI-made index.
    other = make_probe_set(probes=24, size=16, seed=9)
    logits = probelog.probe(model, other, progress=False)
    before = cli.read_bytes()
    with pytest.raises(probelog.ProbeSetMismatchError):
        with probelog.Writer(str(cli)) as w:
            w.add_model("other", logits)
    assert cli.read_bytes() == before


def test_transformers_models_from_configs(torch, tmp_path):
    transformers = pytest.importorskip("transformers") if not _require() else _import("transformers")
    pset = make_probe_set(probes=16, size=32)
    labels = ["cat", "dog", "car", "tree"]
    cfg = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1,
                                 num_attention_heads=2, intermediate_size=48, num_labels=4,
                                 id2label=dict(enumerate(labels)),
                                 label2id={l: i for i, l in enumerate(labels)})
    vit = transformers.ViTForImageClassification(cfg)
    logits = probelog.probe(vit, pset, batch_size=5, progress=False)
    assert logits.shape == (16, 4) and logits.labels == labels
    with torch.no_grad():
        x = torch.from_numpy(pset.pixels().astype(np.float32)) / 255.0
        np.testing.assert_allclose(logits, vit(pixel_values=x).logits.numpy(), rtol=1e-4, atol=1e-5)
    rcfg = transformers.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
                                     num_labels=3)
    resnet = transformers.ResNetForImageClassification(rcfg)
    out = probelog.probe(resnet, pset, progress=False)
    assert out.shape == (16, 3) and out.labels == ["LABEL_0", "LABEL_1", "LABEL_2"]
    path = tmp_path / "hf.plog"
    probelog.create(str(path), probes=pset)
    with probelog.Writer(str(path)) as w:
        w.add_model("vit", logits)
        w.add_model("resnet", out)
    idx = probelog.Index(str(path))
    assert [idx.entry(e).label for e in range(7)] == labels + ["LABEL_0", "LABEL_1", "LABEL_2"]


def test_timm_model(torch):
    timm = pytest.importorskip("timm") if not _require() else _import("timm")
    pset = make_probe_set(probes=10, size=32)
    model = timm.create_model("resnet18", pretrained=False, num_classes=7)
    logits = probelog.probe(model, pset, batch_size=4, mean=model.pretrained_cfg["mean"],
                            std=model.pretrained_cfg["std"], progress=False)
    assert logits.shape == (10, 7) and np.isfinite(logits).all()


def test_bad_outputs_are_refused(torch):
    pset = make_probe_set(probes=9, size=8)

    class Wrap(torch.nn.Module):
        def __init__(self, f):
            super().__init__()
            self.f = f
            self.lin = torch.nn.Linear(3, 4)

        def forward(self, x):
            return self.f(self.lin(x.mean(dim=(2, 3))), x)

    cases = [
        (lambda y, x: y.flatten(), "shape"),
        (lambda y, x: y.unsqueeze(1), "shape"),
        (lambda y, x: y + float("nan"), "nan"),
        (lambda y, x: y[:, : 1 + (x.shape[0] % 4)], "must not depend"),
        (lambda y, x: "text", "must return"),
    ]
    for f, what in cases:
        with pytest.raises(probelog.InvalidInputError, match=what):
            probelog.probe(Wrap(f), pset, batch_size=4, progress=False)

    class Broken(torch.nn.Module):
        def forward(self, x):
            raise RuntimeError("size mismatch, m1: [4 x 192]")

    with pytest.raises(probelog.InvalidInputError, match="failed on probes 0..4.*size mismatch"):
        probelog.probe(Broken(), pset, batch_size=4, progress=False)
    with pytest.raises(probelog.InvalidInputError, match="std"):
        probelog.probe(Wrap(cases[0][0]), pset, std=(1, 0, 1), progress=False)
    with pytest.raises(probelog.InvalidInputError, match="batch"):
        probelog.probe(Wrap(cases[0][0]), pset, batch_size=0, progress=False)
    with pytest.raises(TypeError):
        probelog.probe(lambda x: x, pset)


def test_progress_bar_and_input_size(torch, capsys):
    pset = make_probe_set(probes=6, size=8)
    model = tiny_convnet(torch, num_logits=3)
    a = probelog.probe(model, pset, progress=True)
    b = probelog.probe(model, pset, progress=False, input_size=16)
    assert a.shape == b.shape == (6, 3)
    # The resize changes the input only a little: the logits agree closely.
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.9


def _require():
    from conftest import REQUIRE_ALL

    return REQUIRE_ALL


def _import(name):
    import importlib

    return importlib.import_module(name)


def test_quickstart_script_matches_the_cli(torch, tool, tmp_path):
    """The newcomer's script (python/examples/quickstart.py): index, two transformers
    classifiers, searches by entry and raw logits, equal to probelog-tool's on the same file."""
    import subprocess
    import sys
    from pathlib import Path

    if not _require():
        pytest.importorskip("transformers")
    script = Path(__file__).resolve().parents[1] / "examples" / "quickstart.py"
    r = subprocess.run([sys.executable, str(script), "--dir", str(tmp_path), "--check-cli",
                        str(tool.path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "the CLI's results are the same" in r.stdout
    idx = probelog.Index(str(tmp_path / "hub.plog"))
    assert [m.name for m in idx.models] == ["vit-tiny", "resnet-tiny"]
    assert idx.entry(1).label == "dog" and idx.entry(5).label == "dog"
