"""Type stubs of the compiled core binding, ``probelog._probelog`` (re-exported by ``probelog``)."""

from __future__ import annotations

import os
from types import TracebackType
from typing import Any, Callable, Dict, List, Literal, Mapping, Optional, Sequence, Tuple, Type, Union

import numpy as np
import numpy.typing as npt

_Path = Union[str, "os.PathLike[str]"]
_Metric = Literal["blend", "topk", "full", "model"]
_Mode = Literal["exact", "hnsw", "auto"]
_Entries = Union[None, int, slice, range, Sequence[int], npt.NDArray[np.integer]]

DEFAULT_K: int
DEFAULT_BLEND_WEIGHT: float
DEFAULT_ADAPTIVE_SHARE: float

class Error(Exception):
    """Base class of every error probelog raises; the message is the core library's."""

class InvalidInputError(Error):
    """Unusable input or parameter: NaN or infinity, a constant logit, a wrong shape or label
    count, an out-of-range or inapplicable search parameter."""

class ProbeCountMismatchError(InvalidInputError):
    """The input has another number of probes than the index."""

class ProbeSetMismatchError(InvalidInputError):
    """The input was computed on another probe set (a different fingerprint)."""

class DuplicateNameError(InvalidInputError):
    """A live model already has this name (see ``Writer.add_model(existing_name=...)``)."""

class CorruptIndexError(Error):
    """The file is not a probelog index, or it is truncated or damaged."""

class LockedError(Error):
    """Another writer holds the writer lock (``Writer(path, wait=False)``)."""

class FileError(Error):
    """An operating-system error on a file, a path that is not a regular file, or a file that
    exists already."""

def create(
    path: _Path,
    num_probes: Optional[int] = None,
    probe_names: Optional[Sequence[str]] = None,
    dtype: Literal["f32", "f16"] = "f32",
    probes: Union[None, ProbeSet, _Path] = None,
    probe_embeddings: Optional[npt.ArrayLike] = None,
    probe_fingerprint: Optional[str] = None,
    embed_probes: bool = False,
) -> None:
    """Creates a new, empty index for a probe set of ``num_probes`` probes: anonymous, known by
    its ``probe_names`` (in order), by a 64-hex-digit ``probe_fingerprint``, or taken from a
    probe set file (``probes``: count, names and fingerprint). With ``embed_probes`` the index
    stores that probe set itself, so that it ships without the ``.pset`` file
    (``Index.probe_set()``; ``probelog-tool create --embed-probes``). ``probe_embeddings``
    ``[P, d]`` (CLIP image embeddings of the probes) enable ``search(text_embedding=...)``.
    Raises ``FileError`` when ``path`` exists."""

class Hit:
    """One search result. ``entry`` and ``logit`` are None for ``metric="model"``, which ranks
    whole models."""

    rank: int
    entry: Optional[int]
    model: str
    model_id: int
    logit: Optional[int]
    label: Optional[str]
    score: float
    explain: Optional[List[ProbeShare]]
    """With ``search(..., explain=N)``: the N probes with the largest shares of the score."""
    def to_dict(self) -> Dict[str, Any]: ...

class ProbeShare:
    """One probe's part in a hit's score; a hit's shares add up to its score."""

    probe: int
    name: Optional[str]
    query: float
    hit: float
    share: float

class Model:
    """A model of the index."""

    id: int
    name: str
    source: str
    meta: List[Tuple[str, str]]
    first_entry: int
    logit_count: int
    @property
    def entries(self) -> range: ...

class Entry:
    """One entry (a logit of a model)."""

    id: int
    model_id: int
    model: str
    logit: int
    label: Optional[str]

class VerifyReport:
    """What ``Index.verify()`` found; true when nothing is damaged."""

    ok: bool
    problems: List[Tuple[str, str]]
    warnings: List[str]
    sequence: int
    segments: int
    entries: int
    models: int
    sections_checked: int
    bytes_checked: int
    def __bool__(self) -> bool: ...

class MapOwner:
    """The base object of the zero-copy arrays of ``Index.descriptors``: keeps the map alive."""

class Index:
    """A read-only, memory-mapped index: a snapshot of its last commit. Any number of readers
    (threads, processes) may search while one writer appends; ``refresh()`` moves to the newest
    commit. Searches release the GIL, so threads search in parallel."""

    def __init__(self, path: _Path) -> None: ...
    def __len__(self) -> int:
        """Number of entries (logits of all models)."""
    def refresh(self) -> bool:
        """Moves to the newest commit; True when the snapshot changed."""
    @property
    def path(self) -> "os.PathLike[str]": ...
    @property
    def num_probes(self) -> int: ...
    @property
    def num_models(self) -> int: ...
    @property
    def deleted_models(self) -> List[int]:
        """Ids of the deleted models: no search returns them; ``compact`` drops them."""
    @property
    def live_model_count(self) -> int: ...
    @property
    def dtype(self) -> Literal["f32", "f16"]: ...
    @property
    def probe_fingerprint(self) -> str: ...
    @property
    def sequence(self) -> int: ...
    @property
    def probe_names(self) -> Optional[List[str]]: ...
    def probe_set(self) -> Optional[ProbeSet]:
        """The probe set file stored in the index (``probelog-tool create --embed-probes``,
        ``probes attach``), checked against its fingerprint, or None when it holds none."""
    @property
    def models(self) -> List[Model]:
        """Every model, in append order."""
    def model(self, id: int) -> Model: ...
    def entry(self, id: int) -> Entry: ...
    def descriptors(self, entries: _Entries = None) -> npt.NDArray[np.float32]:
        """The stored z-normalized descriptors, float32 ``[n, P]`` (``[P]`` for one int; all
        entries for None). A contiguous range inside one segment of an f32 index is a read-only
        zero-copy view of the memory map; anything else is a copy."""
    def verify(self) -> VerifyReport:
        """Checks every checksum and reference."""
    def search(
        self,
        query: Union[None, int, npt.ArrayLike] = None,
        *,
        top: int = 10,
        k: Optional[int] = None,
        metric: Optional[_Metric] = None,
        per_model: bool = False,
        exclude_model: Union[None, bool, int, str] = None,
        mode: Optional[_Mode] = None,
        blend_weight: Optional[float] = None,
        candidates: Optional[int] = None,
        text_embedding: Optional[npt.ArrayLike] = None,
        filter: Union[None, Mapping[str, str], str, Sequence[str]] = None,
        model_name: Optional[str] = None,
        explain: Optional[int] = None,
    ) -> List[Hit]:
        """Searches by an entry id, a raw logit vector over the probes (1-D, z-normalized by the
        library) or ``text_embedding=``. ``metric``: "blend" (default: top-k discrepancy plus
        ``blend_weight`` times the all-probe RMS), "topk" (the paper's), "full", or "model"
        (whole models by their mean descriptor). ``per_model`` keeps each model's best logit.
        ``exclude_model``: True leaves out the query entry's model; a model id or name leaves
        out that model. ``mode``: "exact", "hnsw" (metric "blend" or "topk") or "auto". ``filter``
        (``{key: value}``, or "KEY=VALUE" / "KEY!=VALUE" strings) and ``model_name`` (``*``/``?``
        pattern) keep only matching models, inside the scan and the graph walk, so ``top`` is
        filled whenever that many matching logits exist. ``explain=N`` adds each hit's N probes
        with the largest shares of its score. Deleted models never come back. Lower scores are
        closer."""
    def search_batch(
        self,
        queries: npt.ArrayLike,
        *,
        top: int = 10,
        k: Optional[int] = None,
        metric: Optional[_Metric] = None,
        per_model: bool = False,
        mode: Optional[_Mode] = None,
        blend_weight: Optional[float] = None,
        candidates: Optional[int] = None,
    ) -> Tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Searches every row of ``queries`` ``[n, P]`` (raw logit vectors), in parallel.
        Returns ``(ids, scores)`` ``[n, top]``, best first: entry ids (model ids for
        metric="model"), padded with -1 and inf."""

class Writer:
    """The single writer of an index (holds the writer lock until closed). As a context manager
    it commits every model added in the block atomically when the block exits normally, and
    writes nothing when it raises."""

    def __init__(self, path: _Path, *, wait: bool = True) -> None: ...
    def __enter__(self) -> Writer: ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc_value: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> bool: ...
    def add_model(
        self,
        name: str,
        logits: npt.ArrayLike,
        labels: Optional[Sequence[str]] = None,
        meta: Union[None, Mapping[str, str], Sequence[Tuple[str, str]]] = None,
        source: Optional[str] = None,
        *,
        keep_constant: bool = False,
        probe_set: Union[None, ProbeSet, str] = None,
        existing_name: Literal["refuse", "replace", "keep"] = "refuse",
    ) -> Dict[str, int]:
        """Stages a model: ``logits`` ``[P probes, L logits]`` (float32; other dtypes converted;
        C or Fortran order). ``labels``/``probe_set`` default to those a :class:`Logits` from
        ``probe()`` carries. Returns model_id, first_entry, logits, constant_logits."""
    def append_collab(
        self,
        name: str,
        labels: Optional[Sequence[str]] = None,
        *,
        prober: Callable[[npt.NDArray[np.uint32]], npt.ArrayLike],
        probe_fraction: float,
        adaptive_share: float = ...,
        seed: int = 0,
        rank: Optional[int] = None,
        lambda_: Optional[float] = None,
        meta: Union[None, Mapping[str, str], Sequence[Tuple[str, str]]] = None,
        source: Optional[str] = None,
        keep_constant: bool = False,
        existing_name: Literal["refuse", "replace", "keep"] = "refuse",
    ) -> Dict[str, Any]:
        """Collaborative probing: stages a model run on ``probe_fraction`` of the probes.
        ``prober(probes)`` gets a sorted uint32 array of probe indices and returns the logits on
        them, ``[len(probes), L]``; it is called for a seeded random subset, then (unless
        ``adaptive_share`` is 0) for the probes the completion ranks highest. The commit
        completes the rest. Returns model_id, first_entry, logits, constant_logits, observed."""
    def embed_probe_set(self, probes: Union[ProbeSet, _Path]) -> None:
        """Stages the probe set the index was created for to be stored in it at the commit, so
        that the index ships without the ``.pset`` file (``probelog-tool probes attach``).
        Another probe set raises ``ProbeSetMismatchError``; an index that holds one already,
        ``InvalidInputError``."""
    def delete_model(self, model_id: int) -> None:
        """Stages the deletion of a model: from the commit on no search returns it."""
    def delete_models(self, name: str) -> List[int]:
        """Stages the deletion of every live model named ``name``; returns their ids."""
    def commit(self) -> Dict[str, int]:
        """Publishes the staged models (and deletions) atomically and closes the writer."""
    def abort(self) -> None:
        """Discards the staged models and closes the writer."""
    @property
    def is_open(self) -> bool: ...
    @property
    def has_pending(self) -> bool: ...

class ProbeSet:
    """A probe set file (.pset): uint8 RGB images ``[P, 3, S, S]``, names and fingerprint."""

    def __init__(self, path: _Path) -> None: ...
    @staticmethod
    def from_pixels(names: Sequence[str], pixels: npt.NDArray[np.uint8]) -> ProbeSet: ...
    @staticmethod
    def from_bytes(data: bytes) -> ProbeSet: ...
    def to_bytes(self) -> bytes: ...
    def write(self, path: _Path) -> None: ...
    def __len__(self) -> int: ...
    @property
    def size(self) -> int: ...
    @property
    def names(self) -> List[str]: ...
    @property
    def fingerprint(self) -> str: ...
    def pixels(self) -> npt.NDArray[np.uint8]:
        """All pixels ``[P, 3, S, S]``, a read-only view."""

def search_many(
    indexes: Sequence[Index],
    query: Union[None, int, npt.ArrayLike] = None,
    *,
    entry_file: int = 0,
    top: int = 10,
    k: Optional[int] = None,
    metric: Optional[_Metric] = None,
    per_model: bool = False,
    exclude_model: Optional[bool] = None,
    mode: Optional[_Mode] = None,
    blend_weight: Optional[float] = None,
    candidates: Optional[int] = None,
    text_embedding: Optional[npt.ArrayLike] = None,
    filter: Union[None, Mapping[str, str], str, Sequence[str]] = None,
    model_name: Optional[str] = None,
) -> List[Tuple[int, Hit]]:
    """Searches index files of one probe set as one: the search of the file that ``merge``
    makes of them, in order. Returns ``(file, hit)`` pairs, best first; ``file`` is the position
    in ``indexes`` and the hit's ids are that file's. An int ``query`` is an entry of
    ``indexes[entry_file]``; ``exclude_model=True`` leaves out its model."""

def _search_prepared(index: Index, descriptor: npt.ArrayLike, **kwargs: Any) -> List[Hit]:
    """``Index.search`` by a z-normalized descriptor used as it is (``ShardedIndex``'s actors)."""

def _make_hit(rank: int, entry: Optional[int], model: str, model_id: int, logit: Optional[int],
              label: Optional[str], score: float,
              explain: Optional[List[Tuple[int, Optional[str], float, float, float]]] = None
              ) -> Hit: ...
