"""probelog: find the classifiers in a model repository that recognize a concept, from what they do.

Every output logit of every model gets a descriptor: its responses to a fixed, ordered set of
probe images, z-normalized over the probes (ProbeLog, arXiv 2502.09619). The index is one
memory-mapped file, shared with the Rust library, the ``probelog-tool`` command line and the C
library: this package is a thin binding of the same core crate, so every rule (validation,
normalization, search, the commit protocol) is the core's.

>>> import numpy as np, probelog
>>> probelog.create("hub.plog", num_probes=512)
>>> with probelog.Writer("hub.plog") as w:                 # one atomic commit
...     w.add_model("resnet18", logits, labels=classes, meta={"task": "pets"})
>>> idx = probelog.Index("hub.plog")
>>> idx.search(3, top=5, per_model=True, exclude_model=True)
>>> ids, scores = idx.search_batch(queries)                # [n, P] raw logit vectors

Probing torch models (``pip install "./python[torch]"``): :func:`probe` runs any
``torch.nn.Module`` over a probe set (``.pset``) and returns its ``[P, L]`` logits.
"""

from __future__ import annotations

from ._probelog import (
    DEFAULT_ADAPTIVE_SHARE,
    DEFAULT_BLEND_WEIGHT,
    DEFAULT_K,
    CorruptIndexError,
    DuplicateNameError,
    Entry,
    Error,
    FileError,
    Hit,
    Index,
    InvalidInputError,
    LockedError,
    Model,
    ProbeShare,
    ProbeCountMismatchError,
    ProbeSet,
    ProbeSetMismatchError,
    VerifyReport,
    Writer,
    create,
    search_many,
)
from ._probing import Logits, labels_of, probe

__all__ = [
    "DEFAULT_ADAPTIVE_SHARE",
    "DEFAULT_BLEND_WEIGHT",
    "DEFAULT_K",
    "CorruptIndexError",
    "DuplicateNameError",
    "Entry",
    "Error",
    "FileError",
    "Hit",
    "Index",
    "InvalidInputError",
    "LockedError",
    "Logits",
    "Model",
    "ProbeShare",
    "ProbeCountMismatchError",
    "ProbeSet",
    "ProbeSetMismatchError",
    "VerifyReport",
    "Writer",
    "create",
    "labels_of",
    "probe",
    "search_many",
]
