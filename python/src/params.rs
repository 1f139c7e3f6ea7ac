//! Parameters as Python passes them (names, numpy arrays, dicts) turned into the core's types.

use super::*;

/// The library's metric and grouping for `metric` and `per_model`, as the command line maps
/// `--metric` and `--per-model`: "model" is the model-mean grouping (whole models).
pub(crate) fn parse_metric(name: Option<&str>, per_model: bool) -> PyResult<(Metric, Grouping)> {
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

pub(crate) fn parse_mode(name: Option<&str>) -> PyResult<SearchMode> {
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

pub(crate) fn parse_dtype(name: &str) -> PyResult<Dtype> {
    [Dtype::F32, Dtype::F16]
        .into_iter()
        .find(|d| d.name() == name)
        .ok_or_else(|| {
            InvalidInputError::new_err(format!("unknown dtype {name:?}: use \"f32\" or \"f16\""))
        })
}

/// A probe set identity from a `ProbeSet` or 64 hex digits.
pub(crate) fn probe_set_id(
    obj: &Bound<'_, PyAny>,
    num_probes: Option<u32>,
) -> PyResult<ProbeSetId> {
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

pub(crate) fn string_pairs(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<(String, String)>> {
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
    obj.extract::<Vec<(String, String)>>().map_err(|_| {
        PyTypeError::new_err("meta must be a dict of str to str or (key, value) pairs")
    })
}

/// What to do with a live model of the same name: `existing_name=` of the writer's appends.
pub(crate) fn parse_existing_name(name: &str) -> PyResult<ExistingName> {
    match name {
        "refuse" => Ok(ExistingName::Refuse),
        "replace" => Ok(ExistingName::Replace),
        "keep" => Ok(ExistingName::Keep),
        other => Err(InvalidInputError::new_err(format!(
            "existing_name {other:?}: use \"refuse\" (the default), \"replace\" or \"keep\""
        ))),
    }
}

/// A search's query as Python gives it: an entry id, a raw logit vector over the probes, or a
/// text embedding.
pub(crate) enum QueryArg {
    Entry(u64),
    Vector(Vec<f32>),
    Text(Vec<f32>),
}

impl QueryArg {
    /// The core's query over one index file.
    pub(crate) fn as_query(&self) -> Query<'_> {
        match self {
            QueryArg::Entry(e) => Query::Entry(*e),
            QueryArg::Vector(v) => Query::Vector(v),
            QueryArg::Text(t) => Query::TextEmbedding(t),
        }
    }
}

/// The query of a search from its `query` argument (an entry id or a 1-D array of logits) and
/// `text_embedding=`: exactly one of the two. `missing` is the error when neither is given.
pub(crate) fn parse_query(
    query: Option<&Bound<'_, PyAny>>,
    text_embedding: Option<PyArrayLike1<'_, f32, AllowTypeChange>>,
    missing: &'static str,
) -> PyResult<QueryArg> {
    match (query.filter(|q| !q.is_none()), text_embedding) {
        (Some(_), Some(_)) => Err(PyTypeError::new_err(
            "give either a query or text_embedding=, not both",
        )),
        (None, None) => Err(PyTypeError::new_err(missing)),
        (None, Some(t)) => Ok(QueryArg::Text(t.as_array().iter().copied().collect())),
        (Some(q), None) if q.is_instance_of::<pyo3::types::PyBool>() => Err(PyTypeError::new_err(
            "a query is an int or an array, not bool",
        )),
        (Some(q), None) => match q.extract::<u64>() {
            Ok(e) => Ok(QueryArg::Entry(e)),
            Err(_) => {
                let v = q
                    .extract::<PyArrayLike1<'_, f32, AllowTypeChange>>()
                    .map_err(|_| {
                        PyTypeError::new_err(
                            "a query is an entry id (int) or a 1-D array of logits over the probes",
                        )
                    })?;
                Ok(QueryArg::Vector(v.as_array().iter().copied().collect()))
            }
        },
    }
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
pub(crate) use search_params;
