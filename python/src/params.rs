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
