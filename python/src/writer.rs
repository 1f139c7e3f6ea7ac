//! `probelog.create` and `probelog.Writer`: new indexes, appends, deletes and commits.

use super::*;

/// Creates a new, empty index file (see `probelog.create`).
#[pyfunction]
#[pyo3(signature = (path, num_probes=None, probe_names=None, dtype="f32", probes=None,
                    probe_embeddings=None, probe_fingerprint=None, embed_probes=false))]
#[allow(clippy::too_many_arguments)] // one per keyword of probelog.create
pub(crate) fn create(
    py: Python<'_>,
    path: PathBuf,
    num_probes: Option<u32>,
    probe_names: Option<Vec<String>>,
    dtype: &str,
    probes: Option<&Bound<'_, PyAny>>,
    probe_embeddings: Option<PyArrayLike2<'_, f32, AllowTypeChange>>,
    probe_fingerprint: Option<String>,
    embed_probes: bool,
) -> PyResult<()> {
    let set = match probes {
        None => None,
        Some(p) if p.is_none() => None,
        Some(p) => Some(probe_set_arg(py, p)?),
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
        opts.embedded_probe_set = embed_probes.then(|| set.to_bytes());
    } else {
        if embed_probes {
            return Err(InvalidInputError::new_err(
                "embed_probes stores the probe set given as probes: pass probes too",
            ));
        }
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

/// A probe set given as a `probelog.ProbeSet` or the path of a `.pset` file (the argument
/// `probes`).
fn probe_set_arg(py: Python<'_>, p: &Bound<'_, PyAny>) -> PyResult<CoreProbeSet> {
    match p.cast::<ProbeSet>() {
        Ok(s) => Ok(s.get().inner.clone()),
        Err(_) => {
            let path: PathBuf = p.extract().map_err(|_| {
                PyTypeError::new_err("probes must be a probelog.ProbeSet or a .pset path")
            })?;
            py.detach(|| CoreProbeSet::read(&path)).py()
        }
    }
}

/// The writer of an index: holds the writer lock until closed. Use as a context manager: the
/// models added in the block are committed together when it exits without an exception, and
/// nothing is written when it raises.
#[pyclass(frozen, module = "probelog")]
pub(crate) struct Writer {
    pub(crate) inner: Mutex<Option<probelog::IndexWriter>>,
}

impl Writer {
    /// The writer's state, or an error when another thread is using it. Never blocks: a thread
    /// holding the GIL must not wait for one that released it.
    pub(crate) fn state(
        &self,
    ) -> PyResult<std::sync::MutexGuard<'_, Option<probelog::IndexWriter>>> {
        self.inner.try_lock().map_err(|_| {
            Error::new_err(
                "this writer is in use by another thread; a Writer is used by one thread at a time",
            )
        })
    }

    pub(crate) fn with<T>(
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
        let existing_name = parse_existing_name(existing_name)?;
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
                InvalidInputError::new_err("logits must be a 2-D float array [P probes, L logits]")
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

    /// Stages the probe set the index was created for (a `probelog.ProbeSet` or a `.pset` path)
    /// to be stored in it at the commit, so that the index ships without the file
    /// (`probelog-tool probes attach`). Another probe set raises `ProbeSetMismatchError`, and an
    /// index that holds one already `InvalidInputError`.
    fn embed_probe_set(&self, py: Python<'_>, probes: &Bound<'_, PyAny>) -> PyResult<()> {
        let set = probe_set_arg(py, probes)?;
        self.with(|w| w.embed_probe_set(set.to_bytes()).py())
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
