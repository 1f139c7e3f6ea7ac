//! `probelog.Index`: a memory-mapped index, searched, read and verified from Python.

use super::*;

/// What one search gives back before it becomes Python objects: the hits, each hit's
/// per-probe explanation when asked for, and the probe names the explanations use.
type Searched = (
    Vec<probelog::Hit>,
    Option<Vec<Vec<probelog::search::ProbeContribution>>>,
    Option<Vec<String>>,
);

/// `search_batch`'s result: entry ids and scores, `[queries, top]` each.
type IdsAndScores<'py> = (Bound<'py, PyArray2<i64>>, Bound<'py, PyArray2<f32>>);

/// A read-only, memory-mapped index: a snapshot of its last commit (see `refresh`).
#[pyclass(frozen, module = "probelog")]
pub(crate) struct Index {
    pub(crate) inner: RwLock<Arc<probelog::Index>>,
}

impl Index {
    pub(crate) fn get(&self) -> Arc<probelog::Index> {
        self.inner.read().expect("index lock").clone()
    }
}

/// Which entries `descriptors` reads: a contiguous range, or a list.
pub(crate) enum Entries {
    Range(u64, u64),
    List(Vec<u64>),
}

pub(crate) fn parse_entries(obj: Option<&Bound<'_, PyAny>>, n: u64) -> PyResult<(Entries, bool)> {
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
        let q = parse_query(
            query,
            text_embedding,
            "search needs a query: an entry id, a logit vector, or text_embedding=",
        )?;
        let (hits, why, names) = py
            .detach(move || -> probelog::Result<Searched> {
                let query = q.as_query();
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
        Ok(explained_hits(hits, why, names))
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
    ) -> PyResult<IdsAndScores<'py>> {
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

pub(crate) fn model_of(index: &probelog::Index, id: u64) -> PyResult<Model> {
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

pub(crate) fn model_by_name(index: &probelog::Index, name: &str) -> PyResult<u64> {
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
pub(crate) fn zero_copy_view<'py>(
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
pub(crate) fn copy_range(index: &probelog::Index, a: u64, b: u64) -> probelog::Result<Array2<f32>> {
    let p = index.num_probes();
    let mut out = Array2::<f32>::zeros(((b - a) as usize, p));
    let starts = index.segment_entry_starts();
    let mut row = Vec::new();
    for (s, &first) in starts
        .iter()
        .enumerate()
        .take(index.segment_count() as usize)
    {
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
