//! `probelog._probelog`: the Python binding of the probelog core crate.
//!
//! Thin on purpose: every rule (validation, normalization, search, the commit protocol, the
//! probe set format) lives in the core crate; this module converts arguments, releases the GIL
//! around work that takes time, and maps `probelog::Error` onto a hierarchy of Python
//! exceptions rooted at `probelog.Error`, carrying the core's message unchanged.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use ndarray::{Array2, ArrayView2, ShapeBuilder};
use numpy::{
    AllowTypeChange, IntoPyArray, PyArray1, PyArray2, PyArray4, PyArrayLike1, PyArrayLike2,
};
use probelog::probe_set::ProbeSet as CoreProbeSet;
use probelog::{
    AppendOptions, CreateOptions, Dtype, ExistingName, Grouping, LockWait, LogitMatrix, Metric, ModelInput,
    ProbeSetId, Query, SearchMode, SearchParams,
};
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyIndexError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyRange, PySlice};
use rayon::prelude::*;

// ---- Errors ------------------------------------------------------------------------------------

create_exception!(
    probelog,
    Error,
    PyException,
    "Base class of every error probelog raises; the message is the core library's."
);
create_exception!(
    probelog,
    InvalidInputError,
    Error,
    "Unusable input or parameter: NaN or infinite values, a constant logit, a wrong shape or \
     label count, an out-of-range parameter."
);
create_exception!(
    probelog,
    ProbeCountMismatchError,
    InvalidInputError,
    "The input has another number of probes than the index."
);
create_exception!(
    probelog,
    ProbeSetMismatchError,
    InvalidInputError,
    "The input was computed on another probe set (a different fingerprint)."
);
create_exception!(
    probelog,
    DuplicateNameError,
    InvalidInputError,
    "A live model already has this name (add_model's existing_name says what to do instead)."
);
create_exception!(
    probelog,
    CorruptIndexError,
    Error,
    "The file is not a probelog index, or it is truncated or damaged."
);
create_exception!(
    probelog,
    LockedError,
    Error,
    "Another writer holds the index's writer lock (and the caller asked not to wait)."
);
create_exception!(
    probelog,
    FileError,
    Error,
    "An operating-system error on a file, a path that is not a regular file, or a file that \
     exists already."
);

/// The Python exception for a core error, with the core's message.
fn py_err(e: probelog::Error) -> PyErr {
    use probelog::Error as E;
    let msg = e.to_string();
    match e {
        E::ProbeCountMismatch { .. } => ProbeCountMismatchError::new_err(msg),
        E::ProbeSetMismatch { .. } => ProbeSetMismatchError::new_err(msg),
        E::InvalidInput(_)
        | E::InvalidParameter(_)
        | E::Search(_)
        | E::NonFinite { .. }
        | E::UnknownModel { .. }
        | E::Deleted { .. }
        | E::ConstantLogit { .. } => InvalidInputError::new_err(msg),
        E::DuplicateName { .. } => DuplicateNameError::new_err(msg),
        E::Locked { .. } => LockedError::new_err(msg),
        E::Io { .. } | E::Storage { .. } | E::NotRegularFile { .. } | E::AlreadyExists { .. } => {
            FileError::new_err(msg)
        }
        ref e if e.is_corruption() => CorruptIndexError::new_err(msg),
        _ => Error::new_err(msg),
    }
}

trait OrPy<T> {
    fn py(self) -> PyResult<T>;
}
impl<T> OrPy<T> for probelog::Result<T> {
    fn py(self) -> PyResult<T> {
        self.map_err(py_err)
    }
}

// ---- Parameters --------------------------------------------------------------------------------

/// The library's metric and grouping for `metric` and `per_model`, as the command line maps
/// `--metric` and `--per-model`: "model" is the model-mean grouping (whole models).
fn parse_metric(name: Option<&str>, per_model: bool) -> PyResult<(Metric, Grouping)> {
    let grouping = if per_model {
        Grouping::PerModel
    } else {
        Grouping::Entries
    };
    let Some(name) = name else {
        return Ok((Metric::default(), grouping));
    };
    if name == "model" || name == Grouping::ModelMean.name() {
        if per_model {
            return Err(InvalidInputError::new_err(
                "per_model does not apply to metric=\"model\", which ranks whole models",
            ));
        }
        return Ok((Metric::default(), Grouping::ModelMean));
    }
    [Metric::Blend, Metric::TopK, Metric::Full]
        .into_iter()
        .find(|m| m.name() == name)
        .map(|m| (m, grouping))
        .ok_or_else(|| {
            InvalidInputError::new_err(format!(
                "unknown metric {name:?}: use \"blend\" (the default), \"topk\", \"full\" or \"model\""
            ))
        })
}

fn parse_mode(name: Option<&str>) -> PyResult<SearchMode> {
    let Some(name) = name else {
        return Ok(SearchMode::default());
    };
    [SearchMode::Exact, SearchMode::Hnsw, SearchMode::Auto]
        .into_iter()
        .find(|m| m.name() == name)
        .ok_or_else(|| {
            InvalidInputError::new_err(format!(
                "unknown mode {name:?}: use \"exact\", \"hnsw\" or \"auto\" (the default)"
            ))
        })
}

fn parse_dtype(name: &str) -> PyResult<Dtype> {
    [Dtype::F32, Dtype::F16]
        .into_iter()
        .find(|d| d.name() == name)
        .ok_or_else(|| {
            InvalidInputError::new_err(format!("unknown dtype {name:?}: use \"f32\" or \"f16\""))
        })
}

/// A probe set identity from a `ProbeSet` or 64 hex digits.
fn probe_set_id(obj: &Bound<'_, PyAny>, num_probes: Option<u32>) -> PyResult<ProbeSetId> {
    if let Ok(set) = obj.cast::<ProbeSet>() {
        return Ok(set.get().inner.id());
    }
    if let Ok(hex) = obj.extract::<String>() {
        let fingerprint = ProbeSetId::parse_fingerprint(&hex).py()?;
        let Some(num_probes) = num_probes else {
            return Err(InvalidInputError::new_err(
                "a probe-set fingerprint needs the number of probes beside it",
            ));
        };
        return Ok(ProbeSetId {
            num_probes,
            fingerprint,
        });
    }
    Err(PyTypeError::new_err(
        "probe_set must be a probelog.ProbeSet or a 64-hex-digit fingerprint",
    ))
}

fn string_pairs(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<(String, String)>> {
    let Some(obj) = obj else {
        return Ok(Vec::new());
    };
    if obj.is_none() {
        return Ok(Vec::new());
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        return d
            .iter()
            .map(|(k, v)| Ok((k.extract::<String>()?, v.extract::<String>()?)))
            .collect::<PyResult<_>>()
            .map_err(|_: PyErr| PyTypeError::new_err("meta must map str keys to str values"));
    }
    obj.extract::<Vec<(String, String)>>()
        .map_err(|_| PyTypeError::new_err("meta must be a dict of str to str or (key, value) pairs"))
}

/// The core's `SearchParams` from the Python keywords. A macro, not a function, so that the
/// struct literal takes whatever lifetime and further fields (left at their defaults) the core
/// gives it.
macro_rules! search_params {
    ($top:expr, $k:expr, $metric:expr, $per_model:expr, $mode:expr, $blend_weight:expr,
     $candidates:expr) => {{
        let (metric, grouping) = parse_metric($metric, $per_model)?;
        SearchParams {
            top: $top,
            k: $k,
            grouping,
            metric,
            mode: parse_mode($mode)?,
            candidates: $candidates,
            blend_weight: $blend_weight,
            ..SearchParams::default()
        }
    }};
}

// ---- create ------------------------------------------------------------------------------------

/// Creates a new, empty index file (see `probelog.create`).
#[pyfunction]
#[pyo3(signature = (path, num_probes=None, probe_names=None, dtype="f32", probes=None,
                    probe_embeddings=None, probe_fingerprint=None))]
fn create(
    py: Python<'_>,
    path: PathBuf,
    num_probes: Option<u32>,
    probe_names: Option<Vec<String>>,
    dtype: &str,
    probes: Option<&Bound<'_, PyAny>>,
    probe_embeddings: Option<PyArrayLike2<'_, f32, AllowTypeChange>>,
    probe_fingerprint: Option<String>,
) -> PyResult<()> {
    let set = match probes {
        None => None,
        Some(p) if p.is_none() => None,
        Some(p) => Some(match p.cast::<ProbeSet>() {
            Ok(s) => s.get().inner.clone(),
            Err(_) => {
                let path: PathBuf = p.extract().map_err(|_| {
                    PyTypeError::new_err("probes must be a probelog.ProbeSet or a .pset path")
                })?;
                py.detach(|| CoreProbeSet::read(&path)).py()?
            }
        }),
    };
    let num_probes = match (num_probes, &set, &probe_names) {
        (Some(n), _, _) => n,
        (None, Some(s), _) => s.len() as u32,
        (None, None, Some(names)) => names.len() as u32,
        (None, None, None) => {
            return Err(InvalidInputError::new_err(
                "create needs num_probes, probe_names or probes (a probe set)",
            ));
        }
    };
    let mut opts = CreateOptions::new(num_probes);
    opts.dtype = parse_dtype(dtype)?;
    if let Some(set) = &set {
        if probe_names.is_some() || probe_fingerprint.is_some() {
            return Err(InvalidInputError::new_err(
                "probes (a probe set) gives the names and the fingerprint: pass neither beside it",
            ));
        }
        if set.len() as u32 != num_probes {
            return Err(InvalidInputError::new_err(format!(
                "num_probes = {num_probes} but the probe set holds {} probes",
                set.len()
            )));
        }
        opts.probe_set = set.id();
        opts.probe_names = Some(set.names().to_vec());
    } else {
        if let Some(names) = &probe_names {
            if names.len() as u32 != num_probes {
                return Err(InvalidInputError::new_err(format!(
                    "num_probes = {num_probes} but {} probe names were given",
                    names.len()
                )));
            }
            opts.probe_set = ProbeSetId::from_names(names);
        }
        if let Some(hex) = &probe_fingerprint {
            opts.probe_set = ProbeSetId {
                num_probes,
                fingerprint: ProbeSetId::parse_fingerprint(hex).py()?,
            };
        }
        opts.probe_names = probe_names;
    }
    if let Some(emb) = probe_embeddings {
        let a = emb.as_array();
        let dim = a.ncols();
        opts.probe_embeddings = Some((a.as_standard_layout().iter().copied().collect(), dim));
    }
    py.detach(|| probelog::create(&path, &opts)).py()
}

// ---- Index -------------------------------------------------------------------------------------

/// Keeps a memory map alive for the NumPy arrays that view it.
#[pyclass(frozen, module = "probelog")]
struct MapOwner {
    _index: Arc<probelog::Index>,
}

/// One search result.
#[pyclass(frozen, get_all, module = "probelog")]
#[derive(Clone)]
struct Hit {
    /// 1-based rank.
    rank: usize,
    /// The entry id; None for metric="model", which ranks whole models.
    entry: Option<u64>,
    /// The model's name.
    model: String,
    model_id: u64,
    /// The logit's column in its model; None for metric="model".
    logit: Option<u32>,
    label: Option<String>,
    /// Lower is closer.
    score: f32,
    /// With `search(..., explain=N)`: the N probes with the largest shares of the score.
    explain: Option<Vec<ProbeShare>>,
}

/// One probe's part in a hit's score (`search(..., explain=N)`).
#[pyclass(frozen, get_all, module = "probelog")]
#[derive(Clone)]
struct ProbeShare {
    probe: u32,
    /// The probe's name; None when the index has no probe names.
    name: Option<String>,
    /// The query descriptor's value on the probe.
    query: f32,
    /// The hit's value on the probe.
    hit: f32,
    /// The probe's share of the score; a hit's shares add up to its score.
    share: f32,
}

#[pymethods]
impl ProbeShare {
    fn __repr__(&self) -> String {
        format!(
            "ProbeShare(probe={}, name={}, query={:.4}, hit={:.4}, share={:.6})",
            self.probe,
            self.name.as_ref().map_or("None".into(), |n| format!("{n:?}")),
            self.query,
            self.hit,
            self.share
        )
    }
}

#[pymethods]
impl Hit {
    fn __repr__(&self) -> String {
        format!(
            "Hit(rank={}, entry={}, model={:?}, logit={}, label={}, score={:.6})",
            self.rank,
            self.entry.map_or("None".into(), |e| e.to_string()),
            self.model,
            self.logit.map_or("None".into(), |l| l.to_string()),
            self.label.as_ref().map_or("None".into(), |l| format!("{l:?}")),
            self.score
        )
    }
    /// The hit as a dict (the fields of `probelog-tool search --json`).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("rank", self.rank)?;
        d.set_item("entry", self.entry)?;
        d.set_item("model", &self.model)?;
        d.set_item("model_id", self.model_id)?;
        d.set_item("logit", self.logit)?;
        d.set_item("label", &self.label)?;
        d.set_item("score", self.score)?;
        Ok(d)
    }
}

impl From<probelog::Hit> for Hit {
    fn from(h: probelog::Hit) -> Self {
        Hit {
            rank: h.rank,
            entry: h.entry,
            model: h.model,
            model_id: h.model_id,
            logit: h.logit,
            label: h.label,
            score: h.score,
            explain: None,
        }
    }
}

/// `filter=` of a search: a dict `{key: value}` (each must equal), or KEY=VALUE / KEY!=VALUE
/// strings (one, or a list), all of which must hold; `model_name=` a `*`/`?` pattern.
fn model_filter(
    filter: Option<&Bound<'_, PyAny>>,
    model_name: Option<&str>,
) -> PyResult<Option<probelog::ModelFilter>> {
    let mut f = probelog::ModelFilter::default();
    if let Some(obj) = filter.filter(|o| !o.is_none()) {
        if let Ok(d) = obj.cast::<PyDict>() {
            for (k, v) in d.iter() {
                let (k, v): (String, String) = (k.extract()?, v.extract()?);
                f.conditions.push(probelog::Condition::MetaEquals { key: k, value: v });
            }
        } else if let Ok(one) = obj.extract::<String>() {
            f.add_where(&one).py()?;
        } else if let Ok(many) = obj.extract::<Vec<String>>() {
            for c in &many {
                f.add_where(c).py()?;
            }
        } else {
            return Err(PyTypeError::new_err(
                "filter must be a dict {key: value}, or KEY=VALUE / KEY!=VALUE strings",
            ));
        }
    }
    if let Some(glob) = model_name {
        f.add_name_glob(glob);
    }
    Ok((!f.is_empty()).then_some(f))
}

/// A model of the index.
#[pyclass(frozen, get_all, module = "probelog")]
struct Model {
    id: u64,
    name: String,
    source: String,
    /// key=value metadata, in the order given at append.
    meta: Vec<(String, String)>,
    first_entry: u64,
    logit_count: u32,
}

#[pymethods]
impl Model {
    /// The entry ids of this model's logits.
    #[getter]
    fn entries<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyRange>> {
        PyRange::new(
            py,
            self.first_entry as isize,
            (self.first_entry + u64::from(self.logit_count)) as isize,
        )
    }
    fn __repr__(&self) -> String {
        format!(
            "Model(id={}, name={:?}, logit_count={}, first_entry={}, meta={:?})",
            self.id, self.name, self.logit_count, self.first_entry, self.meta
        )
    }
}

/// One entry (logit) of the index.
#[pyclass(frozen, get_all, module = "probelog")]
struct Entry {
    id: u64,
    model_id: u64,
    model: String,
    logit: u32,
    label: Option<String>,
}

#[pymethods]
impl Entry {
    fn __repr__(&self) -> String {
        format!(
            "Entry(id={}, model={:?}, logit={}, label={:?})",
            self.id, self.model, self.logit, self.label
        )
    }
}

/// What `Index.verify()` found.
#[pyclass(frozen, get_all, module = "probelog")]
struct VerifyReport {
    /// True when nothing is damaged.
    ok: bool,
    /// (section, message) for every piece of damage.
    problems: Vec<(String, String)>,
    /// States a crash leaves behind legitimately (a torn commit slot, a torn tail).
    warnings: Vec<String>,
    sequence: u64,
    segments: u32,
    entries: u64,
    models: u64,
    sections_checked: usize,
    bytes_checked: u64,
}

#[pymethods]
impl VerifyReport {
    fn __bool__(&self) -> bool {
        self.ok
    }
    fn __repr__(&self) -> String {
        format!(
            "VerifyReport(ok={}, problems={:?}, entries={}, bytes_checked={})",
            if self.ok { "True" } else { "False" },
            self.problems,
            self.entries,
            self.bytes_checked
        )
    }
}

/// A read-only, memory-mapped index: a snapshot of its last commit (see `refresh`).
#[pyclass(frozen, module = "probelog")]
struct Index {
    inner: RwLock<Arc<probelog::Index>>,
}

impl Index {
    fn get(&self) -> Arc<probelog::Index> {
        self.inner.read().expect("index lock").clone()
    }
}

/// Which entries `descriptors` reads: a contiguous range, or a list.
enum Entries {
    Range(u64, u64),
    List(Vec<u64>),
}

fn parse_entries(obj: Option<&Bound<'_, PyAny>>, n: u64) -> PyResult<(Entries, bool)> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok((Entries::Range(0, n), false));
    };
    if obj.is_instance_of::<pyo3::types::PyBool>() {
        return Err(PyTypeError::new_err("entries must be ints, not bool"));
    }
    if let Ok(e) = obj.extract::<u64>() {
        return Ok((Entries::List(vec![e]), true));
    }
    if let Ok(s) = obj.cast::<PySlice>() {
        let ind = s.indices(n as isize)?;
        if ind.step == 1 {
            let stop = ind.stop.max(ind.start);
            return Ok((Entries::Range(ind.start as u64, stop as u64), false));
        }
        let v: Vec<u64> = (0..ind.slicelength)
            .map(|i| (ind.start + i as isize * ind.step) as u64)
            .collect();
        return Ok((Entries::List(v), false));
    }
    if let Ok(r) = obj.cast::<PyRange>() {
        let start: i64 = r.getattr("start")?.extract()?;
        let stop: i64 = r.getattr("stop")?.extract()?;
        let step: i64 = r.getattr("step")?.extract()?;
        if step == 1 && start >= 0 {
            return Ok((Entries::Range(start as u64, stop.max(start) as u64), false));
        }
    }
    let v: Vec<u64> = match obj.extract::<PyArrayLike1<'_, u64, AllowTypeChange>>() {
        Ok(a) => a.as_array().iter().copied().collect(),
        Err(_) => obj.extract::<Vec<u64>>().map_err(|_| {
            PyTypeError::new_err(
                "entries must be None, an int, a slice, a range or a sequence of non-negative ints",
            )
        })?,
    };
    Ok((Entries::List(v), false))
}

#[pymethods]
impl Index {
    /// Opens (memory-maps) an index file. Constant time in the number of entries.
    #[new]
    fn new(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let index = py.detach(|| probelog::Index::open(&path)).py()?;
        Ok(Index {
            inner: RwLock::new(Arc::new(index)),
        })
    }

    /// Moves this reader to the newest commit; True when the snapshot changed. Arrays returned
    /// earlier by `descriptors` keep the old snapshot's map alive and stay valid.
    fn refresh(&self, py: Python<'_>) -> PyResult<bool> {
        let current = self.get();
        let path = current.path().to_path_buf();
        // A new snapshot in a new handle (the core's Index::refresh works in place, and arrays
        // and searches of other threads may hold this one).
        let fresh = py.detach(|| probelog::Index::open(&path)).py()?;
        let changed = fresh.sequence() != current.sequence()
            || fresh.entry_count() != current.entry_count()
            || fresh.model_count() != current.model_count();
        if changed {
            *self.inner.write().expect("index lock") = Arc::new(fresh);
        }
        Ok(changed)
    }

    /// Number of entries (logits of all models).
    fn __len__(&self) -> usize {
        self.get().entry_count() as usize
    }

    fn __repr__(&self) -> String {
        let i = self.get();
        format!(
            "probelog.Index({:?}, entries={}, models={}, probes={}, dtype={:?})",
            i.path().display().to_string(),
            i.entry_count(),
            i.model_count(),
            i.num_probes(),
            i.dtype().name()
        )
    }

    #[getter]
    fn path(&self) -> PathBuf {
        self.get().path().to_path_buf()
    }
    #[getter]
    fn num_probes(&self) -> usize {
        self.get().num_probes()
    }
    #[getter]
    fn num_models(&self) -> u64 {
        self.get().model_count()
    }
    /// Ids of the deleted models (no search returns them; `compact` drops them).
    #[getter]
    fn deleted_models(&self) -> Vec<u64> {
        self.get().deleted_models().to_vec()
    }
    /// Models that are not deleted.
    #[getter]
    fn live_model_count(&self) -> u64 {
        self.get().live_model_count()
    }
    #[getter]
    fn dtype(&self) -> &'static str {
        self.get().dtype().name()
    }
    /// The fingerprint of the index's probe set, 64 hex digits.
    #[getter]
    fn probe_fingerprint(&self) -> String {
        self.get().probe_set().fingerprint_hex()
    }
    /// The commit sequence number of this snapshot.
    #[getter]
    fn sequence(&self) -> u64 {
        self.get().sequence()
    }
    #[getter]
    fn probe_names(&self) -> PyResult<Option<Vec<String>>> {
        self.get().probe_names().py()
    }

    /// Every model, in append order: id, name, source, meta, first entry, logit count.
    #[getter]
    fn models(&self) -> PyResult<Vec<Model>> {
        let i = self.get();
        (0..i.model_count()).map(|id| model_of(&i, id)).collect()
    }

    /// Model `id` (0-based, append order).
    fn model(&self, id: u64) -> PyResult<Model> {
        model_of(&self.get(), id)
    }

    /// Entry `id`: its model, logit column and label.
    fn entry(&self, id: u64) -> PyResult<Entry> {
        let e = self.get().entry(id).py()?;
        Ok(Entry {
            id: e.id,
            model_id: e.model_id,
            model: e.model,
            logit: e.logit,
            label: e.label,
        })
    }

    /// The stored z-normalized descriptors of `entries` as float32 `[n, P]` (`[P]` for one int).
    /// A contiguous range within one segment of an f32 index is a read-only zero-copy view of the
    /// memory map; anything else is a copy.
    #[pyo3(signature = (entries=None))]
    fn descriptors<'py>(
        &self,
        py: Python<'py>,
        entries: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let index = self.get();
        let n = index.entry_count();
        let p = index.num_probes();
        let (which, scalar) = parse_entries(entries, n)?;
        let check = |e: u64| -> PyResult<()> {
            if e >= n {
                Err(PyIndexError::new_err(format!(
                    "entry {e} does not exist (the index has {n} entries)"
                )))
            } else {
                Ok(())
            }
        };
        match which {
            Entries::Range(a, b) => {
                if a < b {
                    check(b - 1)?;
                }
                if let Some(view) = zero_copy_view(py, &index, a, b)? {
                    return Ok(view.into_any());
                }
                let index2 = index.clone();
                let out = py.detach(move || copy_range(&index2, a, b)).py()?;
                Ok(out.into_pyarray(py).into_any())
            }
            Entries::List(list) => {
                for &e in &list {
                    check(e)?;
                }
                let index2 = index.clone();
                let out = py
                    .detach(move || -> probelog::Result<Vec<f32>> {
                        let mut out = Vec::with_capacity(list.len() * p);
                        for e in list {
                            out.extend(index2.descriptor(e)?);
                        }
                        Ok(out)
                    })
                    .py()?;
                if scalar {
                    return Ok(PyArray1::from_vec(py, out).into_any());
                }
                let rows = out.len() / p;
                let a = Array2::from_shape_vec((rows, p), out).expect("rows * p values");
                Ok(a.into_pyarray(py).into_any())
            }
        }
    }

    /// Checks every checksum and reference (streams the whole file; the GIL is released).
    fn verify(&self, py: Python<'_>) -> VerifyReport {
        let index = self.get();
        let r = py.detach(move || index.verify());
        VerifyReport {
            ok: r.problems.is_empty(),
            problems: r
                .problems
                .iter()
                .map(|p| (p.section.clone(), p.message.clone()))
                .collect(),
            warnings: r.warnings.clone(),
            sequence: r.sequence,
            segments: r.segments,
            entries: r.entries,
            models: r.models,
            sections_checked: r.sections_checked,
            bytes_checked: r.bytes_checked,
        }
    }

    /// Searches by an entry id (int), a raw logit vector over the probes (1-D array) or a text
    /// embedding (`text_embedding=`). Returns the hits, best first.
    #[pyo3(signature = (query=None, *, top=10, k=None, metric=None, per_model=false,
                        exclude_model=None, mode=None, blend_weight=None, candidates=None,
                        text_embedding=None, filter=None, model_name=None, explain=None))]
    #[allow(clippy::too_many_arguments)]
    fn search(
        &self,
        py: Python<'_>,
        query: Option<&Bound<'_, PyAny>>,
        top: usize,
        k: Option<usize>,
        metric: Option<&str>,
        per_model: bool,
        exclude_model: Option<&Bound<'_, PyAny>>,
        mode: Option<&str>,
        blend_weight: Option<f32>,
        candidates: Option<usize>,
        text_embedding: Option<PyArrayLike1<'_, f32, AllowTypeChange>>,
        filter: Option<&Bound<'_, PyAny>>,
        model_name: Option<&str>,
        explain: Option<usize>,
    ) -> PyResult<Vec<Hit>> {
        let mut params = search_params!(top, k, metric, per_model, mode, blend_weight, candidates);
        let filter = model_filter(filter, model_name)?;
        let index = self.get();
        // exclude_model: True leaves out the query entry's own model (the core's rule); a model
        // id (int) or name (str) leaves out that model.
        let mut exclude: Option<u64> = None;
        if let Some(x) = exclude_model.filter(|x| !x.is_none()) {
            if x.is_instance_of::<pyo3::types::PyBool>() {
                params.exclude_same_model = x.extract::<bool>()?;
            } else if let Ok(id) = x.extract::<u64>() {
                index.model(id).py()?;
                exclude = Some(id);
            } else if let Ok(name) = x.extract::<String>() {
                exclude = Some(model_by_name(&index, &name)?);
            } else {
                return Err(PyTypeError::new_err(
                    "exclude_model must be True (the query entry's model), a model id or a model name",
                ));
            }
        }
        enum Q {
            Entry(u64),
            Vector(Vec<f32>),
            Text(Vec<f32>),
        }
        let q = match (query.filter(|q| !q.is_none()), text_embedding) {
            (Some(_), Some(_)) => {
                return Err(PyTypeError::new_err(
                    "give either a query or text_embedding=, not both",
                ));
            }
            (None, None) => {
                return Err(PyTypeError::new_err(
                    "search needs a query: an entry id, a logit vector, or text_embedding=",
                ));
            }
            (None, Some(t)) => Q::Text(t.as_array().iter().copied().collect()),
            (Some(q), None) => {
                if q.is_instance_of::<pyo3::types::PyBool>() {
                    return Err(PyTypeError::new_err("a query is an int or an array, not bool"));
                }
                if let Ok(e) = q.extract::<u64>() {
                    Q::Entry(e)
                } else {
                    let v = q
                        .extract::<PyArrayLike1<'_, f32, AllowTypeChange>>()
                        .map_err(|_| {
                            PyTypeError::new_err(
                                "a query is an entry id (int) or a 1-D array of logits over the probes",
                            )
                        })?;
                    Q::Vector(v.as_array().iter().copied().collect())
                }
            }
        };
        type Explained = Vec<Vec<probelog::search::ProbeContribution>>;
        let (hits, why, names) = py
            .detach(move || -> probelog::Result<(Vec<probelog::Hit>, Option<Explained>, Option<Vec<String>>)> {
                let query = match &q {
                    Q::Entry(e) => Query::Entry(*e),
                    Q::Vector(v) => Query::Vector(v),
                    Q::Text(t) => Query::TextEmbedding(t),
                };
                let params = SearchParams {
                    filter: filter.as_ref(),
                    ..params
                };
                let found = match exclude {
                    None => index.search(&query, &params)?,
                    Some(model) => index.search_excluding(&query, &params, model)?,
                };
                let why = match explain {
                    Some(n) => Some(index.explain(&query, &found, n)?),
                    None => None,
                };
                let names = match explain {
                    Some(_) => index.probe_names()?,
                    None => None,
                };
                Ok((found.hits, why, names))
            })
            .py()?;
        let mut out: Vec<Hit> = hits.into_iter().map(Hit::from).collect();
        if let Some(why) = why {
            for (hit, shares) in out.iter_mut().zip(why) {
                hit.explain = Some(
                    shares
                        .into_iter()
                        .map(|c| ProbeShare {
                            probe: c.probe,
                            name: names.as_ref().map(|n| n[c.probe as usize].clone()),
                            query: c.query,
                            hit: c.hit,
                            share: c.share,
                        })
                        .collect(),
                );
            }
        }
        Ok(out)
    }

    /// Searches every row of a 2-D array of raw logit vectors `[n, P]` (queries in parallel,
    /// GIL released). Returns `(ids, scores)`: int64 and float32 arrays `[n, top]`, best first;
    /// ids are entry ids (model ids for metric="model"), padded with -1 and inf where an index
    /// has fewer than `top` results.
    #[pyo3(signature = (queries, *, top=10, k=None, metric=None, per_model=false, mode=None,
                        blend_weight=None, candidates=None))]
    #[allow(clippy::too_many_arguments)]
    fn search_batch<'py>(
        &self,
        py: Python<'py>,
        queries: PyArrayLike2<'py, f32, AllowTypeChange>,
        top: usize,
        k: Option<usize>,
        metric: Option<&str>,
        per_model: bool,
        mode: Option<&str>,
        blend_weight: Option<f32>,
        candidates: Option<usize>,
    ) -> PyResult<(Bound<'py, PyArray2<i64>>, Bound<'py, PyArray2<f32>>)> {
        let params = search_params!(top, k, metric, per_model, mode, blend_weight, candidates);
        let index = self.get();
        let q = queries.as_array().as_standard_layout().into_owned();
        let (n, width) = q.dim();
        let p = index.num_probes();
        if width != p {
            return Err(ProbeCountMismatchError::new_err(format!(
                "the query vectors have {width} probes, but the index was created with {p} probes"
            )));
        }
        let (ids, scores) = py
            .detach(move || -> probelog::Result<(Vec<i64>, Vec<f32>)> {
                let flat = q.as_slice().expect("standard layout");
                let rows: Vec<probelog::Result<Vec<probelog::Scored>>> = flat
                    .par_chunks(p.max(1))
                    .map(|row| {
                        let prepared = index.prepare_query(&Query::Vector(row))?;
                        index.search_descriptor(&prepared.descriptor, None, &params)
                    })
                    .collect();
                let mut ids = vec![-1i64; n * top];
                let mut scores = vec![f32::INFINITY; n * top];
                for (i, r) in rows.into_iter().enumerate() {
                    let r = r.map_err(|e| match e {
                        probelog::Error::InvalidInput(m) => {
                            probelog::Error::InvalidInput(format!("query {i}: {m}"))
                        }
                        other => other,
                    })?;
                    for (j, s) in r.into_iter().enumerate().take(top) {
                        ids[i * top + j] = s.id as i64;
                        scores[i * top + j] = s.score;
                    }
                }
                Ok((ids, scores))
            })
            .py()?;
        let ids = Array2::from_shape_vec((n, top), ids).expect("n * top");
        let scores = Array2::from_shape_vec((n, top), scores).expect("n * top");
        Ok((ids.into_pyarray(py), scores.into_pyarray(py)))
    }
}

fn model_of(index: &probelog::Index, id: u64) -> PyResult<Model> {
    let m = index.model(id).py()?;
    Ok(Model {
        id: m.id,
        name: m.name,
        source: m.source,
        meta: m.meta,
        first_entry: m.first_entry,
        logit_count: m.logit_count,
    })
}

fn model_by_name(index: &probelog::Index, name: &str) -> PyResult<u64> {
    for id in 0..index.model_count() {
        if index.model(id).py()?.name == name {
            return Ok(id);
        }
    }
    Err(InvalidInputError::new_err(format!(
        "no model named {name:?} in this index"
    )))
}

/// Entries `a..b` as a read-only `[b - a, P]` view of the map, when they lie in one segment of an
/// f32 index.
fn zero_copy_view<'py>(
    py: Python<'py>,
    index: &Arc<probelog::Index>,
    a: u64,
    b: u64,
) -> PyResult<Option<Bound<'py, PyArray2<f32>>>> {
    if a >= b || index.dtype() != Dtype::F32 {
        return Ok(None);
    }
    let starts = index.segment_entry_starts();
    let starts = &starts[..index.segment_count() as usize];
    let s = starts.partition_point(|&st| st <= a) - 1;
    let Some(rows) = index.segment_rows(s).py()? else {
        return Ok(None);
    };
    let first = starts[s];
    if b > first + rows.entries() as u64 {
        return Ok(None);
    }
    let r = (a - first) as usize..(b - first) as usize;
    let Some(row0) = rows.row_f32(0, r.clone()) else {
        return Ok(None);
    };
    let p = index.num_probes();
    // The last probe's row must be in the map too (it is: the rows form one section).
    let Some(_) = rows.row_f32(p - 1, r.clone()) else {
        return Ok(None);
    };
    let shape = (r.len(), p).strides((1, rows.stride()));
    // SAFETY: row0 points at entry `a`'s value on probe 0; probe `p` of entry `a + i` is
    // `p * stride + i` elements further, inside the descriptor section (checked above for the
    // last probe), which the map holds for as long as `owner` lives.
    let view: ArrayView2<'_, f32> = unsafe { ArrayView2::from_shape_ptr(shape, row0.as_ptr()) };
    let owner = Bound::new(
        py,
        MapOwner {
            _index: index.clone(),
        },
    )?;
    // SAFETY: `owner` keeps the Arc'd map alive as the array's base object.
    let array = unsafe { PyArray2::borrow_from_array(&view, owner.into_any()) };
    array.call_method1("setflags", ((), false))?;
    Ok(Some(array))
}

/// Entries `a..b` as a row-major `[b - a, P]` copy, read row by row.
fn copy_range(index: &probelog::Index, a: u64, b: u64) -> probelog::Result<Array2<f32>> {
    let p = index.num_probes();
    let mut out = Array2::<f32>::zeros(((b - a) as usize, p));
    let starts = index.segment_entry_starts();
    let mut row = Vec::new();
    for (s, &first) in starts.iter().enumerate().take(index.segment_count() as usize) {
        let Some(rows) = index.segment_rows(s)? else {
            continue;
        };
        let end = first + rows.entries() as u64;
        let (lo, hi) = (a.max(first), b.min(end));
        if lo >= hi {
            continue;
        }
        let r = (lo - first) as usize..(hi - first) as usize;
        row.resize(r.len(), 0.0);
        for probe in 0..p {
            rows.read_row(probe, r.clone(), &mut row);
            for (i, &v) in row.iter().enumerate() {
                out[[(lo - a) as usize + i, probe]] = v;
            }
        }
    }
    Ok(out)
}

// ---- Writer ------------------------------------------------------------------------------------

/// The writer of an index: holds the writer lock until closed. Use as a context manager: the
/// models added in the block are committed together when it exits without an exception, and
/// nothing is written when it raises.
#[pyclass(frozen, module = "probelog")]
struct Writer {
    inner: Mutex<Option<probelog::IndexWriter>>,
}

impl Writer {
    /// The writer's state, or an error when another thread is using it. Never blocks: a thread
    /// holding the GIL must not wait for one that released it.
    fn state(&self) -> PyResult<std::sync::MutexGuard<'_, Option<probelog::IndexWriter>>> {
        self.inner.try_lock().map_err(|_| {
            Error::new_err("this writer is in use by another thread; a Writer is used by one thread at a time")
        })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut probelog::IndexWriter) -> PyResult<T>,
    ) -> PyResult<T> {
        let mut guard = self.state()?;
        match guard.as_mut() {
            Some(w) => f(w),
            None => Err(Error::new_err(
                "this writer is closed (committed or aborted): open a new probelog.Writer",
            )),
        }
    }
}

#[pymethods]
impl Writer {
    /// Opens `path` for appending, taking the writer lock; `wait=False` raises `LockedError`
    /// when another writer holds it instead of waiting (the GIL is released while waiting).
    #[new]
    #[pyo3(signature = (path, *, wait=true))]
    fn new(py: Python<'_>, path: PathBuf, wait: bool) -> PyResult<Self> {
        let lock = if wait { LockWait::Wait } else { LockWait::Fail };
        let w = py
            .detach(|| probelog::IndexWriter::open(&path, lock))
            .py()?;
        Ok(Writer {
            inner: Mutex::new(Some(w)),
        })
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    /// Commits when the block ends normally; discards the staged models when it raises.
    fn __exit__(
        &self,
        py: Python<'_>,
        exc_type: Option<&Bound<'_, PyAny>>,
        _exc_value: Option<&Bound<'_, PyAny>>,
        _traceback: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let ok = exc_type.is_none_or(|t| t.is_none());
        let w = self.state()?.take();
        if let (true, Some(mut w)) = (ok, w) {
            py.detach(move || w.commit().map(drop)).py()?;
        }
        Ok(false)
    }

    /// Stages one model: `logits` float32 `[P, L]` (other float dtypes are converted; C or
    /// Fortran order), one label per logit, `meta` a dict of str. A name that a live model has
    /// is refused (`DuplicateNameError`) unless `existing_name` is "replace" (a new version, in
    /// the same commit) or "keep". Nothing is visible to readers
    /// until the commit. Returns a dict: model_id, first_entry, logits, constant_logits.
    #[pyo3(signature = (name, logits, labels=None, meta=None, source=None, *,
                        keep_constant=false, probe_set=None, existing_name="refuse"))]
    #[allow(clippy::too_many_arguments)]
    fn add_model<'py>(
        &self,
        py: Python<'py>,
        name: String,
        logits: &Bound<'py, PyAny>,
        labels: Option<Vec<String>>,
        meta: Option<&Bound<'py, PyAny>>,
        source: Option<String>,
        keep_constant: bool,
        probe_set: Option<&Bound<'py, PyAny>>,
        existing_name: &str,
    ) -> PyResult<Bound<'py, PyDict>> {
        let existing_name = match existing_name {
            "refuse" => ExistingName::Refuse,
            "replace" => ExistingName::Replace,
            "keep" => ExistingName::Keep,
            other => {
                return Err(InvalidInputError::new_err(format!(
                    "existing_name {other:?}: use \"refuse\" (the default), \"replace\" or \"keep\""
                )));
            }
        };
        // probelog.probe() returns an ndarray subclass that carries its labels and probe set.
        let labels = match labels {
            Some(l) => Some(l),
            None => logits
                .getattr_opt("labels")?
                .filter(|l| !l.is_none())
                .map(|l| l.extract::<Vec<String>>())
                .transpose()?,
        };
        let carried = logits.getattr_opt("probe_set")?.filter(|p| !p.is_none());
        let probe_set = probe_set.filter(|p| !p.is_none()).cloned().or(carried);
        let array = logits
            .extract::<PyArrayLike2<'py, f32, AllowTypeChange>>()
            .map_err(|_| {
                InvalidInputError::new_err(
                    "logits must be a 2-D float array [P probes, L logits]",
                )
            })?;
        let view = array.as_array();
        let (p, l) = view.dim();
        let probe_set = probe_set
            .map(|s| probe_set_id(&s, u32::try_from(p).ok()))
            .transpose()?;
        let meta = string_pairs(meta)?;
        let source = source.unwrap_or_default();
        let data = view.as_standard_layout();
        let data = data.as_slice().expect("standard layout");
        self.with(|w| {
            let added = py
                .detach(|| {
                    w.add_model(
                        ModelInput {
                            name,
                            source,
                            meta,
                            labels,
                            logits: LogitMatrix::new(data, p, l)?,
                        },
                        AppendOptions {
                            keep_constant,
                            probe_set,
                            existing_name,
                            ..AppendOptions::default()
                        },
                    )
                })
                .py()?;
            let d = PyDict::new(py);
            d.set_item("model_id", added.model_id)?;
            d.set_item("first_entry", added.first_entry)?;
            d.set_item("logits", added.logits)?;
            d.set_item("constant_logits", added.constant_logits)?;
            Ok(d)
        })
    }

    /// Stages the deletion of model `model_id`: from the commit on, no search or lookup returns
    /// its entries, and compaction drops them. An unknown or deleted id raises `InvalidInputError`.
    fn delete_model(&self, model_id: u64) -> PyResult<()> {
        self.with(|w| w.delete_model(model_id).py())
    }

    /// Stages the deletion of every live model named `name`; returns their ids. No live model of
    /// that name raises `InvalidInputError`, and nothing is staged.
    fn delete_models(&self, name: &str) -> PyResult<Vec<u64>> {
        self.with(|w| w.delete_models_named(name).py())
    }

    /// Publishes the staged models in one atomic commit and closes the writer (releasing the
    /// lock). Returns a dict: sequence, entries_added, models_added, entry_count, model_count.
    fn commit<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let w = self.state()?.take();
        let Some(mut w) = w else {
            return Err(Error::new_err(
                "this writer is closed (committed or aborted): open a new probelog.Writer",
            ));
        };
        let s = py.detach(move || w.commit()).py()?;
        let d = PyDict::new(py);
        d.set_item("sequence", s.sequence)?;
        d.set_item("entries_added", s.entries_added)?;
        d.set_item("models_added", s.models_added)?;
        d.set_item("models_deleted", s.models_deleted)?;
        d.set_item("entry_count", s.entry_count)?;
        d.set_item("model_count", s.model_count)?;
        Ok(d)
    }

    /// Discards the staged models and releases the lock; nothing is written.
    fn abort(&self) -> PyResult<()> {
        self.state()?.take();
        Ok(())
    }

    /// True while the writer holds the lock (before commit or abort).
    #[getter]
    fn is_open(&self) -> PyResult<bool> {
        Ok(self.state()?.is_some())
    }

    /// Models staged and not yet committed.
    #[getter]
    fn has_pending(&self) -> PyResult<bool> {
        self.with(|w| Ok(w.has_pending()))
    }
}

// ---- Probe sets --------------------------------------------------------------------------------

/// A probe set (`.pset`): the probe images, uint8 RGB `[P, 3, S, S]`, with names and a
/// fingerprint. Read and checked by the core library.
#[pyclass(frozen, module = "probelog")]
struct ProbeSet {
    inner: CoreProbeSet,
}

#[pymethods]
impl ProbeSet {
    /// Reads and checks a `.pset` file.
    #[new]
    fn new(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let inner = py.detach(|| CoreProbeSet::read(&path)).py()?;
        Ok(ProbeSet { inner })
    }

    /// A probe set from names and uint8 pixels `[P, 3, S, S]` (RGB, planar).
    #[staticmethod]
    fn from_pixels(names: Vec<String>, pixels: &Bound<'_, PyAny>) -> PyResult<Self> {
        let a = pixels
            .extract::<numpy::PyReadonlyArray4<'_, u8>>()
            .map_err(|_| PyTypeError::new_err("pixels must be a uint8 array [P, 3, S, S]"))?;
        let a = a.as_array();
        let (_, c, h, w) = a.dim();
        if c != 3 || h != w {
            return Err(InvalidInputError::new_err(format!(
                "pixels must be [P, 3, S, S] (square RGB), got {:?}",
                a.shape()
            )));
        }
        if a.dim().0 != names.len() {
            return Err(InvalidInputError::new_err(format!(
                "{} names for {} images",
                names.len(),
                a.dim().0
            )));
        }
        let size = u32::try_from(h).map_err(|_| InvalidInputError::new_err("image too large"))?;
        let data: Vec<u8> = a.as_standard_layout().iter().copied().collect();
        Ok(ProbeSet {
            inner: CoreProbeSet::new(size, names, data).py()?,
        })
    }

    /// Parses `.pset` bytes.
    #[staticmethod]
    fn from_bytes(data: &[u8]) -> PyResult<Self> {
        Ok(ProbeSet {
            inner: CoreProbeSet::from_bytes(data).py()?,
        })
    }

    /// The file bytes.
    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, pyo3::types::PyBytes> {
        pyo3::types::PyBytes::new(py, &self.inner.to_bytes())
    }

    /// Writes the file beside `path` and renames it into place.
    fn write(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        let bytes = self.inner.to_bytes();
        py.detach(|| -> std::io::Result<()> {
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => PathBuf::from("."),
            };
            let mut tmp = tempfile::Builder::new().prefix(".pset-").tempfile_in(dir)?;
            std::io::Write::write_all(&mut tmp, &bytes)?;
            tmp.as_file().sync_all()?;
            tmp.persist(&path).map_err(|e| e.error)?;
            Ok(())
        })
        .map_err(|e| FileError::new_err(format!("write {}: {e}", path.display())))
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }
    /// Side S of the square images.
    #[getter]
    fn size(&self) -> u32 {
        self.inner.size()
    }
    #[getter]
    fn names(&self) -> Vec<String> {
        self.inner.names().to_vec()
    }
    /// The content fingerprint an index records, 64 hex digits.
    #[getter]
    fn fingerprint(&self) -> String {
        self.inner.id().fingerprint_hex()
    }
    /// All pixels, uint8 `[P, 3, S, S]`: a read-only view of this object's memory.
    fn pixels<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyArray4<u8>>> {
        let me = slf.get();
        let s = me.inner.size() as usize;
        let p = me.inner.len();
        let view = ndarray::ArrayView4::from_shape((p, 3, s, s), me.inner.pixels())
            .expect("pixels are [P, 3, S, S]");
        // SAFETY: `slf` (frozen, never mutated) owns the bytes and is the array's base.
        let array = unsafe { PyArray4::borrow_from_array(&view, slf.clone().into_any()) };
        array.call_method1("setflags", ((), false))?;
        Ok(array)
    }
    fn __repr__(&self) -> String {
        format!(
            "probelog.ProbeSet(probes={}, size={}, fingerprint={})",
            self.inner.len(),
            self.inner.size(),
            &self.inner.id().fingerprint_hex()[..16]
        )
    }
}

mod collab;
mod embedded;
mod multi;

#[pymodule]
fn _probelog(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_function(wrap_pyfunction!(create, m)?)?;
    m.add_class::<Index>()?;
    m.add_class::<Writer>()?;
    m.add_class::<Hit>()?;
    m.add_class::<ProbeShare>()?;
    m.add_class::<Model>()?;
    m.add_class::<Entry>()?;
    m.add_class::<VerifyReport>()?;
    m.add_class::<ProbeSet>()?;
    m.add_class::<MapOwner>()?;
    m.add("Error", py.get_type::<Error>())?;
    m.add("InvalidInputError", py.get_type::<InvalidInputError>())?;
    m.add(
        "ProbeCountMismatchError",
        py.get_type::<ProbeCountMismatchError>(),
    )?;
    m.add("ProbeSetMismatchError", py.get_type::<ProbeSetMismatchError>())?;
    m.add("CorruptIndexError", py.get_type::<CorruptIndexError>())?;
    m.add("DuplicateNameError", py.get_type::<DuplicateNameError>())?;
    m.add("LockedError", py.get_type::<LockedError>())?;
    m.add("FileError", py.get_type::<FileError>())?;
    m.add("DEFAULT_K", probelog::DEFAULT_K)?;
    m.add("DEFAULT_BLEND_WEIGHT", probelog::DEFAULT_BLEND_WEIGHT)?;
    multi::register(m)?;
    embedded::register(m)?;
    collab::register(m)?;
    Ok(())
}
