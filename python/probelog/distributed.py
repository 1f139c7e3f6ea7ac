"""Probing a model repository on a Ray cluster, and searching sharded indexes through Ray actors.

:func:`build_index` splits a manifest (the TOML of ``probelog-tool append --manifest``) into N
contiguous shards and runs each as a Ray task. A task creates a fresh shard index over the probe
set and appends its slice with ``probelog-tool append --manifest M --shard I/N`` (the libtorch
prober); the driver then merges the shard files in shard order with ``probelog-tool merge``, so
the result holds the models in manifest order, as one sequential ``append --manifest`` would.

Failures: a task that raises, or whose worker process dies, is retried by Ray (``max_retries``).
Every attempt writes its own file and only a complete attempt is renamed to the shard's file, so
a retried shard starts from a fresh index and no model is ever appended twice. The output
appears only complete: the merge writes a temporary file beside it that is renamed at the end.

The shard files live in a work directory beside the output; on a cluster of several machines it
must be on a file system that every node sees (the manifest, the models and the probe set too).

    python -m probelog.distributed --manifest hub.toml --probes probes.pset --out hub.plog \\
        --shards 8 [--address auto] [--gpus-per-task 1] [--tool PATH] [--json]

:class:`ShardedIndex` searches several index files, one Ray actor each, as if they were the file
that ``probelog-tool merge`` makes of them: same signature and results as :meth:`Index.search`.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

from ._probelog import InvalidInputError

__all__ = ["DistributedError", "ShardedIndex", "build_index", "main"]

PathLike = Union[str, "os.PathLike[str]"]

#: Environment variable naming a shard whose first attempt kills its own worker process
#: (``os._exit``) once its prober is running: the tests' way to check the retry.
CRASH_ENV = "PROBELOG_DISTRIBUTED_CRASH_SHARD"

#: Models per ``append`` commit inside a shard: the granularity of the progress reports.
DEFAULT_MODELS_PER_COMMIT = 64


class DistributedError(InvalidInputError):
    """A distributed build could not run: bad input, a missing tool, a shard that kept failing."""


# ---- inputs --------------------------------------------------------------------------------------


def _count_manifest_models(manifest: Path) -> int:
    """The number of ``[[model]]`` tables, with the paths each names checked to exist."""
    try:
        text = manifest.read_text(encoding="utf-8")
    except OSError as e:
        raise DistributedError(f"manifest {manifest}: cannot read it ({e.strerror or e})") from None
    try:
        import tomllib as toml  # Python 3.11+
    except ImportError:  # pragma: no cover - older interpreters
        try:
            import tomli as toml  # type: ignore[no-redef]
        except ImportError:
            toml = None
    if toml is None:  # pragma: no cover - the tool checks the manifest itself
        n = len(re.findall(r"(?m)^\s*\[\[\s*model\s*\]\]", text))
    else:
        try:
            doc = toml.loads(text)
        except Exception as e:  # tomllib.TOMLDecodeError
            raise DistributedError(f"manifest {manifest}: not valid TOML ({e})") from None
        models = doc.get("model")
        if not isinstance(models, list) or not all(isinstance(m, dict) for m in models):
            raise DistributedError(
                f"manifest {manifest}: expected [[model]] tables (the manifest of probelog-tool "
                "append --manifest)")
        for i, m in enumerate(models):
            for key in ("model", "logits", "labels"):
                if isinstance(m.get(key), str):
                    p = Path(m[key])
                    p = p if p.is_absolute() else manifest.parent / p
                    if not p.is_file():
                        raise DistributedError(
                            f"manifest {manifest}: model {i} ({m.get('name', '?')!s}): "
                            f"{key} file {p} does not exist")
        n = len(models)
    if n == 0:
        raise DistributedError(f"manifest {manifest}: the manifest lists no models (expected [[model]] tables)")
    return n


def _find_tool(tool: Optional[PathLike]) -> Path:
    """probelog-tool: ``tool``, else $PROBELOG_TOOL, else the one on PATH; it must know
    ``append --shard`` and ``merge``."""
    where = "--tool"
    if tool is None and os.environ.get("PROBELOG_TOOL"):
        tool, where = os.environ["PROBELOG_TOOL"], "PROBELOG_TOOL"
    if tool is None:
        found = shutil.which("probelog-tool")
        if found is None:
            raise DistributedError(
                "probelog-tool not found: pass --tool PATH (tool=) or set PROBELOG_TOOL "
                "(cargo build --release -p probelog-tool --features torch)")
        tool, where = found, "PATH"
    path = Path(tool).resolve()
    if not path.is_file() or not os.access(path, os.X_OK):
        raise DistributedError(f"probelog-tool not found: {tool} ({where}) is not an executable file")
    for cmd, mark, what in (("append", "--shard", "append --shard"), ("merge", "<OUT>", "merge")):
        r = subprocess.run([str(path), cmd, "--help"], capture_output=True, text=True)
        if r.returncode != 0 or mark not in r.stdout:
            raise DistributedError(f"{path} has no `{what}`: build a newer probelog-tool")
    return path


# ---- the shard task ------------------------------------------------------------------------------


def _run_tool(tool: str, *args: str) -> str:
    r = subprocess.run([tool, *args], capture_output=True, text=True)
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or [f"exit status {r.returncode}"])[-1]
        raise RuntimeError(f"probelog-tool {args[0]}: {last}")
    return r.stdout


def _shard_task(job: Dict[str, Any], shard: int, tracker) -> Dict[str, Any]:
    """One shard, run inside a Ray worker: a fresh attempt file, the shard's slice appended in
    ``job["commits"]`` commits (sub-slices of the shard, so that progress can be reported), then
    renamed to the shard's file."""
    import ray

    attempt = ray.get(tracker.start.remote(shard))
    started = time.perf_counter()
    work = Path(job["work"])
    final = work / f"shard-{shard:05d}.plog"
    part = work / f"shard-{shard:05d}.attempt-{attempt}-{uuid.uuid4().hex[:8]}.plog"
    try:
        models, entries = _append_slice(job, shard, attempt, part, tracker)
    except BaseException:
        part.unlink(missing_ok=True)  # a failed attempt leaves nothing; the retry starts afresh
        raise
    # Only a complete attempt becomes the shard's file (a rename in one directory).
    os.replace(part, final)
    return {
        "shard": shard,
        "models": models,
        "entries": entries,
        "attempt": attempt,
        "seconds": time.perf_counter() - started,
        "node": ray.get_runtime_context().get_node_id(),
        "pid": os.getpid(),
    }


def _append_slice(job: Dict[str, Any], shard: int, attempt: int, part: Path, tracker):
    """Creates ``part`` and appends shard ``shard``'s slice to it; (models, entries) added."""
    tool, n, k = job["tool"], job["shards"], job["commits"]
    _run_tool(tool, "create", str(part), "--probes", job["probes"], "--dtype", job["dtype"])
    models = entries = 0
    for j in range(k):
        args = [tool, "append", str(part), "--manifest", job["manifest"], "--shard",
                f"{shard * k + j}/{n * k}", "--probes", job["probes"], "--device", job["device"],
                "--json", *job["append_args"]]
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if job["crash_shard"] == shard and attempt == 1:
            # The test hook: the worker dies while its prober is appending.
            time.sleep(0.3)
            os._exit(1)
        out, err = proc.communicate()
        if proc.returncode != 0:
            last = (err.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
            raise RuntimeError(f"shard {shard}/{n}: probelog-tool append: {last}")
        summary = json.loads(out)
        models += summary["models_added"]
        entries += summary["entries_added"]
        tracker.report.remote(shard, attempt, models)
    return models, entries


class _Tracker:
    """Counts each shard's attempts and the models its current attempt has committed."""

    def __init__(self, shards: int):
        self.attempts = [0] * shards
        self.models = [0] * shards

    def start(self, shard: int) -> int:
        self.attempts[shard] += 1
        self.models[shard] = 0
        return self.attempts[shard]

    def report(self, shard: int, attempt: int, models: int) -> None:
        if attempt == self.attempts[shard]:
            self.models[shard] = models

    def state(self):
        return list(self.attempts), list(self.models)


# ---- the driver ----------------------------------------------------------------------------------


def _import_ray():
    try:
        import ray
    except ImportError:
        raise DistributedError('ray is not installed: pip install "probelog[ray]"') from None
    return ray


class _Progress:
    """Models done / total and images/s, on a tqdm bar when tqdm is there, else lines on stderr."""

    def __init__(self, total: int, probes: int, enabled: bool):
        self.total, self.probes, self.done = total, probes, 0
        self.t0 = time.perf_counter()
        self.bar = None
        self.enabled = enabled
        if enabled:
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total, unit="model", file=sys.stderr, dynamic_ncols=True)
            except ImportError:
                pass

    def rate(self) -> float:
        dt = time.perf_counter() - self.t0
        return self.done * self.probes / dt if dt > 0 else 0.0

    def update(self, done: int, retries: int) -> None:
        if done == self.done and not retries:
            return
        step, self.done = done - self.done, done
        if self.bar is not None:
            self.bar.update(step)
            self.bar.set_postfix_str(f"{self.rate():.1f} images/s"
                                     + (f", {retries} retried" if retries else ""), refresh=True)
        elif self.enabled and step:
            print(f"probelog.distributed: {done}/{self.total} models, {self.rate():.1f} images/s"
                  + (f", {retries} retried" if retries else ""), file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def build_index(manifest: PathLike, probes: PathLike, out: PathLike, shards: int, *,
                address: Optional[str] = None, gpus_per_task: Optional[float] = None,
                cpus_per_task: float = 1, tool: Optional[PathLike] = None, dtype: str = "f32",
                max_retries: int = 2, models_per_commit: int = DEFAULT_MODELS_PER_COMMIT,
                append_args: Sequence[str] = (), keep_duplicate_names: bool = False,
                overwrite: bool = False, progress: bool = True) -> Dict[str, Any]:
    """Probes every model of ``manifest`` on ``probes`` in ``shards`` Ray tasks and writes the
    merged index to ``out``. Returns the summary (the CLI's ``--json``).

    ``address``: the Ray cluster (``"auto"``, ``"ray://host:10001"``); None joins the one this
    process is connected to, else starts a local one. ``gpus_per_task``: GPUs each task asks for
    when the cluster has GPUs (default 1); without GPUs the tasks probe on the CPU, each asking
    for ``cpus_per_task`` CPUs. ``max_retries``: attempts after the first, per shard, for a task
    that raises or whose worker dies. ``append_args``: more ``append`` flags (``--batch 32``).
    ``keep_duplicate_names``: models may share a name (``--keep-duplicate-names`` of append and
    merge); without it a name that repeats is refused, as one sequential append refuses it.
    """
    t_start = time.perf_counter()
    if isinstance(shards, bool) or not isinstance(shards, int) or shards < 1:
        raise DistributedError(f"shards must be a whole number of at least 1, got {shards!r}")
    if max_retries < 0:
        raise DistributedError(f"max_retries must be 0 or more, got {max_retries}")
    if models_per_commit < 1:
        raise DistributedError(f"models_per_commit must be at least 1, got {models_per_commit}")
    if dtype not in ("f32", "f16"):
        raise DistributedError(f'dtype must be "f32" or "f16", got {dtype!r}')
    manifest, probes, out = Path(manifest).resolve(), Path(probes).resolve(), Path(out).resolve()
    total = _count_manifest_models(manifest)
    if not probes.is_file():
        raise DistributedError(f"probe set {probes}: no such file")
    if out.exists() and not overwrite:
        raise DistributedError(f"{out} already exists: remove it or pass --overwrite")
    if not out.parent.is_dir():
        raise DistributedError(f"{out.parent}: no such directory for the output")
    tool_path = _find_tool(tool)
    from ._probelog import ProbeSet

    num_probes = len(ProbeSet(str(probes)))

    ray = _import_ray()
    started_ray = False
    if not ray.is_initialized():
        kwargs: Dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if address is not None:
            kwargs["address"] = address
        try:
            ray.init(**kwargs)
        except Exception as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise DistributedError(f"cannot start or join the Ray cluster ({address or 'local'}): "
                                   f"{first}") from None
        started_ray = True
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.work-", dir=out.parent))
    tracker = None
    try:
        gpus = float(ray.cluster_resources().get("GPU", 0))
        if gpus > 0:
            per_task = {"num_gpus": 1.0 if gpus_per_task is None else float(gpus_per_task),
                        "num_cpus": cpus_per_task}
            device = "auto"
        else:
            if progress or gpus_per_task:
                print("probelog.distributed: the Ray cluster has no GPUs: probing on the CPU "
                      f"({cpus_per_task:g} CPU per task)", file=sys.stderr, flush=True)
            per_task = {"num_cpus": cpus_per_task}
            device = "cpu"
        crash = os.environ.get(CRASH_ENV)
        job = {
            "tool": str(tool_path), "manifest": str(manifest), "probes": str(probes),
            "work": str(work), "shards": shards, "dtype": dtype, "device": device,
            "commits": max(1, math.ceil(total / shards / models_per_commit)),
            "append_args": list(append_args) + ["--keep-duplicate-names"] * keep_duplicate_names,
            "crash_shard": int(crash) if crash not in (None, "") else None,
        }
        tracker = ray.remote(num_cpus=0)(_Tracker).remote(shards)
        task = ray.remote(max_retries=max_retries, retry_exceptions=True, **per_task)(_shard_task)
        t_probe = time.perf_counter()
        pending = [task.remote(job, i, tracker) for i in range(shards)]
        refs = list(pending)
        bar = _Progress(total, num_probes, progress)
        try:
            while pending:
                _, pending = ray.wait(pending, num_returns=len(pending), timeout=0.5)
                attempts, models = ray.get(tracker.state.remote())
                bar.update(sum(models), sum(a - 1 for a in attempts if a > 1))
            try:
                reports = ray.get(refs)
            except Exception as e:
                raise DistributedError(f"a shard failed after {max_retries} retries: {_cause(e)}") from None
            attempts, _ = ray.get(tracker.state.remote())
        finally:
            bar.close()
        probe_seconds = time.perf_counter() - t_probe
        t_merge = time.perf_counter()
        merged = work / "merged.plog"
        inputs = [str(work / f"shard-{i:05d}.plog") for i in range(shards)]
        try:
            _run_tool(str(tool_path), "merge", str(merged), *inputs,
                      *["--keep-duplicate-names"] * keep_duplicate_names)
        except RuntimeError as e:
            raise DistributedError(f"merging the shards: {e}") from None
        os.replace(merged, out)
        _fsync_dir(out.parent)
        merge_seconds = time.perf_counter() - t_merge
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if tracker is not None:
            ray.kill(tracker)
        if started_ray:
            ray.shutdown()
    from ._probelog import Index

    idx = Index(str(out))
    for r in reports:
        r["attempts"] = attempts[r["shard"]]
    seconds = time.perf_counter() - t_start
    return {
        "index": str(out),
        "models": idx.num_models,
        "entries": len(idx),
        "probes": num_probes,
        "shards": shards,
        "device": "gpu" if device != "cpu" else "cpu",
        "retries": sum(a - 1 for a in attempts),
        "seconds": seconds,
        "startup_seconds": t_probe - t_start,
        "probe_seconds": probe_seconds,
        "merge_seconds": merge_seconds,
        "images_per_s": idx.num_models and total * num_probes / probe_seconds,
        "shard_reports": sorted(reports, key=lambda r: r["shard"]),
    }


def _cause(e: BaseException) -> str:
    """The last line of a Ray task error: the task's own message."""
    cause = getattr(e, "cause", None)
    text = str(cause if cause is not None else e).strip()
    return text.splitlines()[-1] if text else type(e).__name__


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---- sharded search ------------------------------------------------------------------------------


class _ShardActor:
    """One index file in a Ray actor: searches it and sends the hits back as tuples."""

    def __init__(self, path: str):
        from ._probelog import Index

        self.index = Index(path)

    def info(self):
        i = self.index
        return {"entries": len(i), "models": i.num_models, "probes": i.num_probes,
                "fingerprint": i.probe_fingerprint, "path": str(i.path)}

    def model_named(self, name: str) -> Optional[int]:
        for m in self.index.models:
            if m.name == name:
                return m.id
        return None

    def descriptor(self, entry: int):
        return self._guard(lambda: self.index.descriptors(entry))

    def search(self, query, kwargs):
        return self._guard(lambda: _hit_tuples(self.index.search(query, **kwargs)))

    def search_prepared(self, descriptor, kwargs):
        from ._probelog import _search_prepared

        return self._guard(lambda: _hit_tuples(_search_prepared(self.index, descriptor, **kwargs)))

    @staticmethod
    def _guard(f):
        """The result, or the probelog error as (class name, message): the caller raises the
        same class, whatever Ray does with exceptions of extension types."""
        from . import _probelog

        try:
            return ("ok", f())
        except _probelog.Error as e:
            return ("error", type(e).__name__, str(e))
        except (TypeError, IndexError, ValueError) as e:
            return ("error", type(e).__name__, str(e))


def _hit_tuples(hits):
    return [(h.entry, h.model, h.model_id, h.logit, h.label, h.score,
             None if h.explain is None else
             [(s.probe, s.name, s.query, s.hit, s.share) for s in h.explain]) for h in hits]


def _unwrap(reply):
    if reply[0] == "ok":
        return reply[1]
    import builtins

    from . import _probelog

    cls = getattr(_probelog, reply[1], None) or getattr(builtins, reply[1], RuntimeError)
    raise cls(reply[2])


class ShardedIndex:
    """Several index files searched as the one file that ``probelog-tool merge`` makes of them
    (in the order given): one Ray actor per file, each searching its file, the driver merging
    the actors' top results by (score, id). :meth:`search` takes the arguments of
    :meth:`probelog.Index.search` and returns the same hits, with entry and model ids numbered
    through the files in order (file 1's first entry follows file 0's last), as the merged file
    numbers them. Exact searches equal the merged file's; ``mode="hnsw"`` walks each file's own
    graphs, so its candidates may differ.

    ``paths``: index files, or ``(node, path)`` pairs that pin a file's actor to a Ray node (a
    node id or its IP address) where the file lives. ``address``: the Ray cluster (None: the one
    this process is connected to, else a local one).
    """

    def __init__(self, paths: Sequence[Union[PathLike, tuple]], *, address: Optional[str] = None,
                 cpus_per_actor: float = 0):
        if isinstance(paths, (str, os.PathLike)) or len(paths) == 0:
            raise DistributedError("ShardedIndex takes a non-empty list of index files")
        ray = _import_ray()
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        self._ray = ray
        node_ids = {n["NodeManagerAddress"]: n["NodeID"] for n in ray.nodes() if n.get("Alive")}
        actor = ray.remote(_ShardActor)
        self._actors = []
        for item in paths:
            options: Dict[str, Any] = {"num_cpus": cpus_per_actor}
            if isinstance(item, tuple):
                node, path = item
                from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

                node_id = node_ids.get(node, node)
                if node_id not in node_ids.values():
                    raise DistributedError(f"{path}: no live Ray node {node!r} (give a node id or IP)")
                options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_id, soft=False)
            else:
                path = os.fspath(item)
                if not Path(path).is_file():
                    raise DistributedError(f"{path}: no such index file")
            self._actors.append(actor.options(**options).remote(str(path)))
        try:
            infos = ray.get([a.info.remote() for a in self._actors])
        except Exception as e:
            self.close()
            raise DistributedError(f"cannot open a shard: {_cause(e)}") from None
        first = infos[0]
        for info in infos[1:]:
            if (info["probes"], info["fingerprint"]) != (first["probes"], first["fingerprint"]):
                self.close()
                raise DistributedError(
                    f"{info['path']} was made over another probe set than {first['path']} "
                    f"({info['probes']} probes, fingerprint {info['fingerprint'][:12]}..., "
                    f"against {first['probes']}, {first['fingerprint'][:12]}...)")
        self.paths = [i["path"] for i in infos]
        self.num_probes = first["probes"]
        self.probe_fingerprint = first["fingerprint"]
        self._entry_base = [0]
        self._model_base = [0]
        for info in infos:
            self._entry_base.append(self._entry_base[-1] + info["entries"])
            self._model_base.append(self._model_base[-1] + info["models"])

    def __len__(self) -> int:
        return self._entry_base[-1]

    @property
    def num_models(self) -> int:
        return self._model_base[-1]

    def __repr__(self) -> str:
        return (f"ShardedIndex({len(self._actors)} files, {self.num_models} models, {len(self)} "
                f"entries, {self.num_probes} probes)")

    def close(self) -> None:
        """Ends the actors."""
        for a in getattr(self, "_actors", []):
            self._ray.kill(a)
        self._actors = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _locate(self, base: List[int], gid: int, what: str):
        import bisect

        if gid < 0 or gid >= base[-1]:
            raise IndexError(f"{what} {gid} does not exist (the shards hold {base[-1]} {what}s)")
        s = bisect.bisect_right(base, gid) - 1
        return s, gid - base[s]

    def search(self, query=None, *, top: int = 10, k=None, metric=None, per_model: bool = False,
               exclude_model=None, mode=None, blend_weight=None, candidates=None,
               text_embedding=None, filter=None, model_name=None, explain=None):
        """:meth:`probelog.Index.search` over every shard, as over their merged file."""
        ray = self._ray
        kw = dict(top=top, k=k, metric=metric, per_model=per_model, mode=mode,
                  blend_weight=blend_weight, candidates=candidates, filter=filter,
                  model_name=model_name, explain=explain)
        n = len(self._actors)
        excluded: List[Optional[int]] = [None] * n
        exclude_own = False
        if exclude_model is not None:
            if isinstance(exclude_model, bool):
                exclude_own = exclude_model
            elif isinstance(exclude_model, int):
                s, local = self._locate(self._model_base, exclude_model, "model")
                excluded[s] = local
            elif isinstance(exclude_model, str):
                found = ray.get([a.model_named.remote(exclude_model) for a in self._actors])
                hit = next((s for s, m in enumerate(found) if m is not None), None)
                if hit is None:
                    raise InvalidInputError(f"no model named {exclude_model!r} in these indexes")
                excluded[hit] = found[hit]
            else:
                raise TypeError("exclude_model must be True (the query entry's model), a model id "
                                "or a model name")
        is_entry = isinstance(query, numbers.Integral) and not isinstance(query, bool)
        if is_entry and text_embedding is None:
            s, local = self._locate(self._entry_base, int(query), "entry")
            own_kw = dict(kw, exclude_model=True if exclude_own else excluded[s])
            owner = self._actors[s].search.remote(local, own_kw)
            desc = _unwrap(ray.get(self._actors[s].descriptor.remote(local)))
            calls = {s: owner}
            for i, a in enumerate(self._actors):
                if i != s:
                    calls[i] = a.search_prepared.remote(desc, dict(kw, exclude_model=excluded[i]))
        else:
            if exclude_own:
                kw["exclude_model"] = True  # the core's error: it needs an entry query
            calls = {}
            for i, a in enumerate(self._actors):
                q = dict(kw, text_embedding=text_embedding)
                if not exclude_own:
                    q["exclude_model"] = excluded[i]
                calls[i] = a.search.remote(query, q)
        replies = dict(zip(calls, ray.get(list(calls.values()))))
        merged = []
        for i in sorted(replies):
            for entry, model, model_id, logit, label, score, why in _unwrap(replies[i]):
                g_entry = None if entry is None else entry + self._entry_base[i]
                g_model = model_id + self._model_base[i]
                key = g_model if g_entry is None else g_entry
                merged.append((score, key, g_entry, model, g_model, logit, label, why))
        merged.sort(key=lambda t: (t[0], t[1]))
        from ._probelog import _make_hit

        return [_make_hit(r + 1, e, m, mid, lg, lb, sc, why)
                for r, (sc, _, e, m, mid, lg, lb, why) in enumerate(merged[:top])]


# ---- command line --------------------------------------------------------------------------------


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m probelog.distributed``: :func:`build_index` from the command line."""
    import argparse

    ap = argparse.ArgumentParser(
        prog="python -m probelog.distributed",
        description="Probe the models of a manifest on a Ray cluster, in N shards, and merge "
                    "them into one index (the same index as one `probelog-tool append "
                    "--manifest`).")
    ap.add_argument("--manifest", required=True, help="TOML of [[model]] tables (append --manifest)")
    ap.add_argument("--probes", required=True, help="the probe set (.pset) the index is made over")
    ap.add_argument("--out", required=True, help="the index to write (appears only complete)")
    ap.add_argument("--shards", required=True, type=int, help="number of Ray tasks (slices)")
    ap.add_argument("--address", help="Ray cluster address (auto, ray://host:port); "
                                      "default: a local cluster")
    ap.add_argument("--gpus-per-task", type=float, help="GPUs per task when the cluster has GPUs (default 1)")
    ap.add_argument("--cpus-per-task", type=float, default=1, help="CPUs per task (default 1)")
    ap.add_argument("--tool", help="probelog-tool (default: $PROBELOG_TOOL, then PATH)")
    ap.add_argument("--dtype", default="f32", choices=["f32", "f16"], help="descriptor storage")
    ap.add_argument("--max-retries", type=int, default=2, help="retries per shard (default 2)")
    ap.add_argument("--models-per-commit", type=int, default=DEFAULT_MODELS_PER_COMMIT,
                    help=f"models per append commit in a shard (default {DEFAULT_MODELS_PER_COMMIT})")
    ap.add_argument("--keep-duplicate-names", action="store_true",
                    help="models may share a name (append's and merge's flag)")
    ap.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    ap.add_argument("--no-progress", action="store_true", help="no progress on stderr")
    ap.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = ap.parse_args(argv)
    # Ray prints its own notices (a worker that died) on stdout, from its threads and as late as
    # its shutdown: stdout is the summary's, so file descriptor 1 points at stderr from here on
    # and the summary goes to the original stdout.
    sys.stdout.flush()
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    try:
        summary = build_index(
            args.manifest, args.probes, args.out, args.shards, address=args.address,
            gpus_per_task=args.gpus_per_task, cpus_per_task=args.cpus_per_task,
            tool=args.tool, dtype=args.dtype, max_retries=args.max_retries,
            models_per_commit=args.models_per_commit,
            keep_duplicate_names=args.keep_duplicate_names, overwrite=args.overwrite,
            progress=not args.no_progress)
    except DistributedError as e:
        print(f"probelog.distributed: error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(summary, indent=2), file=out)
    else:
        retried = f", {summary['retries']} shard attempts retried" if summary["retries"] else ""
        print(f"wrote {summary['index']}: {summary['models']} models, {summary['entries']} entries "
              f"from {summary['shards']} shards on {summary['device']} in {summary['seconds']:.1f} s "
              f"({summary['images_per_s']:.1f} images/s{retried})", file=out)
    out.flush()
    return 0


if __name__ == "__main__":
    # Run as `python -m probelog.distributed`: call the package module's copy, so that the Ray
    # workers import the task by name instead of receiving this __main__ module's functions.
    from probelog.distributed import main as _main

    sys.exit(_main())
