"""Shared fixtures of the probelog Python package's tests.

The torch tests need torch (``pip install "./python[torch]"``; transformers and timm for their
models) and the CLI comparisons need ``probelog-tool`` (``PROBELOG_TOOL``, or the debug/release
build under ``$CARGO_TARGET_DIR``/target; built with ``--features torch`` for ``append --model``).
Without them those tests skip, saying why; with ``PROBELOG_PY_REQUIRE_ALL=1`` (CI,
tools/test-python-package.sh) a missing one is a failure instead.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

import probelog

REPO = Path(__file__).resolve().parents[2]
REQUIRE_ALL = os.environ.get("PROBELOG_PY_REQUIRE_ALL") == "1"


def unavailable(why: str):
    """Skip, or fail in CI where everything must be there."""
    if REQUIRE_ALL:
        pytest.fail(f"{why} (PROBELOG_PY_REQUIRE_ALL=1)")
    pytest.skip(why)


def tool_path() -> Path | None:
    env = os.environ.get("PROBELOG_TOOL")
    if env:
        return Path(env) if Path(env).is_file() else None
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    if not target.is_absolute():
        target = REPO / target
    for profile in ("debug", "release"):
        p = target / profile / "probelog-tool"
        if p.is_file():
            return p
    return None


class Tool:
    """probelog-tool, run as a subprocess."""

    def __init__(self, path: Path):
        self.path = path

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run([str(self.path), *map(str, args)], capture_output=True, text=True)
        if check and r.returncode != 0:
            raise AssertionError(f"probelog-tool {' '.join(map(str, args))}: {r.stderr}")
        return r

    def json(self, *args: str) -> dict:
        return json.loads(self.run(*args, "--json").stdout)

    def has_torch(self) -> bool:
        r = self.run("append", "--help", check=False)
        # Without the feature the flag exists but running a model says how to get libtorch.
        return r.returncode == 0


@pytest.fixture
def tool() -> Tool:
    p = tool_path()
    if p is None:
        unavailable("probelog-tool is not built (cargo build -p probelog-tool) and PROBELOG_TOOL is unset")
    return Tool(p)


@pytest.fixture
def torch():
    try:
        import torch  # noqa: F401
    except ImportError:
        unavailable('torch is not installed (pip install "./python[torch]")')
    import torch

    torch.manual_seed(0)
    return torch


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


def make_zoo(path: Path, rng: np.random.Generator, models: int = 6, logits: int = 8,
             probes: int = 48, dtype: str = "f32") -> list[np.ndarray]:
    """An index of random models whose logit 0 all detect one shared 'concept' (the same probes
    fire), so that entry searches have a clear answer. Returns the logits added."""
    probelog.create(str(path), num_probes=probes, dtype=dtype)
    added = concept_logits(rng, probes, [logits] * models)
    with probelog.Writer(str(path)) as w:
        for m, x in enumerate(added):
            w.add_model(f"model-{m}", x, labels=[f"class-{m}-{j}" for j in range(logits)],
                        meta={"arch": "random", "seed": str(m)}, source=f"hf://zoo/model-{m}")
    return added


def concept_logits(rng: np.random.Generator, probes: int, widths: list[int], hot: int = 6
                   ) -> list[np.ndarray]:
    """Random float32 logit matrices ``[probes, width]``, one per width, whose logit 0 all fire
    on the same ``hot`` probes (one shared 'concept'), drawn from ``rng`` in that order."""
    concept = np.zeros(probes)
    concept[rng.choice(probes, hot, replace=False)] = 4.0
    out = []
    for width in widths:
        x = rng.normal(size=(probes, width)).astype(np.float32)
        x[:, 0] += concept
        out.append(x)
    return out


def make_probe_set(path: Path | None = None, probes: int = 24, size: int = 16, seed: int = 0
                   ) -> probelog.ProbeSet:
    """A probe set of smooth random-coloured images (distinct per probe)."""
    g = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    px = np.empty((probes, 3, size, size), dtype=np.uint8)
    for i in range(probes):
        for c in range(3):
            a, b, d = g.uniform(-20, 20, size=3)
            px[i, c] = np.clip(128 + a * np.sin(xx / (2 + c)) + b * np.cos(yy / 3) + d * 3, 0, 255)
    s = probelog.ProbeSet.from_pixels([f"probe-{i:03d}.png" for i in range(probes)], px)
    if path is not None:
        s.write(str(path))
    return s
