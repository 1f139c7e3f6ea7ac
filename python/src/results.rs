//! What searches and lookups return to Python: hits, explanations, models, entries, verify
//! reports (and the memory-map owner that zero-copy views keep alive).

use super::*;

/// Keeps a memory map alive for the NumPy arrays that view it.
#[pyclass(frozen, module = "probelog")]
pub(crate) struct MapOwner {
    pub(crate) _index: Arc<probelog::Index>,
}

/// One search result.
#[pyclass(frozen, get_all, module = "probelog")]
#[derive(Clone)]
pub(crate) struct Hit {
    /// 1-based rank.
    pub(crate) rank: usize,
    /// The entry id; None for metric="model", which ranks whole models.
    pub(crate) entry: Option<u64>,
    /// The model's name.
    pub(crate) model: String,
    pub(crate) model_id: u64,
    /// The logit's column in its model; None for metric="model".
    pub(crate) logit: Option<u32>,
    pub(crate) label: Option<String>,
    /// Lower is closer.
    pub(crate) score: f32,
    /// With `search(..., explain=N)`: the N probes with the largest shares of the score.
    pub(crate) explain: Option<Vec<ProbeShare>>,
}

/// One probe's part in a hit's score (`search(..., explain=N)`).
#[pyclass(frozen, get_all, module = "probelog")]
#[derive(Clone)]
pub(crate) struct ProbeShare {
    pub(crate) probe: u32,
    /// The probe's name; None when the index has no probe names.
    pub(crate) name: Option<String>,
    /// The query descriptor's value on the probe.
    pub(crate) query: f32,
    /// The hit's value on the probe.
    pub(crate) hit: f32,
    /// The probe's share of the score; a hit's shares add up to its score.
    pub(crate) share: f32,
}

#[pymethods]
impl ProbeShare {
    fn __repr__(&self) -> String {
        format!(
            "ProbeShare(probe={}, name={}, query={:.4}, hit={:.4}, share={:.6})",
            self.probe,
            self.name
                .as_ref()
                .map_or("None".into(), |n| format!("{n:?}")),
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
            self.label
                .as_ref()
                .map_or("None".into(), |l| format!("{l:?}")),
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
pub(crate) fn model_filter(
    filter: Option<&Bound<'_, PyAny>>,
    model_name: Option<&str>,
) -> PyResult<Option<probelog::ModelFilter>> {
    let mut f = probelog::ModelFilter::default();
    if let Some(obj) = filter.filter(|o| !o.is_none()) {
        if let Ok(d) = obj.cast::<PyDict>() {
            for (k, v) in d.iter() {
                let (k, v): (String, String) = (k.extract()?, v.extract()?);
                f.conditions
                    .push(probelog::Condition::MetaEquals { key: k, value: v });
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
pub(crate) struct Model {
    pub(crate) id: u64,
    pub(crate) name: String,
    pub(crate) source: String,
    /// key=value metadata, in the order given at append.
    pub(crate) meta: Vec<(String, String)>,
    pub(crate) first_entry: u64,
    pub(crate) logit_count: u32,
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
pub(crate) struct Entry {
    pub(crate) id: u64,
    pub(crate) model_id: u64,
    pub(crate) model: String,
    pub(crate) logit: u32,
    pub(crate) label: Option<String>,
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
pub(crate) struct VerifyReport {
    /// True when nothing is damaged.
    pub(crate) ok: bool,
    /// (section, message) for every piece of damage.
    pub(crate) problems: Vec<(String, String)>,
    /// States a crash leaves behind legitimately (a torn commit slot, a torn tail).
    pub(crate) warnings: Vec<String>,
    pub(crate) sequence: u64,
    pub(crate) segments: u32,
    pub(crate) entries: u64,
    pub(crate) models: u64,
    pub(crate) sections_checked: usize,
    pub(crate) bytes_checked: u64,
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

/// Hits as Python objects, each with its explanation (the shares of the probes, named when the
/// index has probe names) when the search was asked to explain.
pub(crate) fn explained_hits(
    hits: Vec<probelog::Hit>,
    why: Option<Vec<Vec<probelog::search::ProbeContribution>>>,
    names: Option<Vec<String>>,
) -> Vec<Hit> {
    let mut out: Vec<Hit> = hits.into_iter().map(Hit::from).collect();
    for (hit, shares) in out.iter_mut().zip(why.into_iter().flatten()) {
        let share = |c: probelog::search::ProbeContribution| ProbeShare {
            probe: c.probe,
            name: names.as_ref().map(|n| n[c.probe as usize].clone()),
            query: c.query,
            hit: c.hit,
            share: c.share,
        };
        hit.explain = Some(shares.into_iter().map(share).collect());
    }
    out
}
