//! `Writer.append_collab(name, labels, *, prober, probe_fraction, ...)`: collaborative probing
//! from Python. The core policy (`probelog::collab::probe_batch`) chooses the probes of each
//! round and calls `prober` with them; the commit completes the other probes from the index's
//! probe factors. The rules live in the core crate: this module converts arguments and results.

use numpy::{AllowTypeChange, IntoPyArray, PyArrayLike2};
use probelog::AppendOptions;
use probelog::collab::{
    self, CollabOptions, DEFAULT_ADAPTIVE_SHARE, ModelDetails, ProbePlan, ProbeRows, Prober, Round,
};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::{InvalidInputError, Writer, parse_existing_name, py_err, string_pairs};

/// A failure inside the policy: the core's own, or the exception `prober` raised.
enum CollabError {
    Core(probelog::Error),
    Python(PyErr),
}

impl From<probelog::Error> for CollabError {
    fn from(e: probelog::Error) -> Self {
        CollabError::Core(e)
    }
}

impl From<CollabError> for PyErr {
    fn from(e: CollabError) -> Self {
        match e {
            CollabError::Core(e) => py_err(e),
            CollabError::Python(e) => e,
        }
    }
}

/// The Python callable as the policy's prober: called with the probes (a uint32 array), returns
/// the model's logits on them, `[len(probes), L]`.
struct Callable<'py> {
    prober: Bound<'py, PyAny>,
    details: Option<ModelDetails>,
}

impl Prober for Callable<'_> {
    type Error = CollabError;

    fn run(&mut self, _: usize, _: Round, probes: &[u32]) -> Result<ProbeRows, CollabError> {
        let py = self.prober.py();
        let asked = probes.to_vec().into_pyarray(py);
        let answer = self.prober.call1((asked,)).map_err(CollabError::Python)?;
        let array = answer
            .extract::<PyArrayLike2<'_, f32, AllowTypeChange>>()
            .map_err(|_| {
                CollabError::Python(InvalidInputError::new_err(format!(
                    "prober must return a 2-D float array [{} probes, L logits], got {}",
                    probes.len(),
                    answer
                        .get_type()
                        .name()
                        .map_or_else(|_| "?".into(), |n| n.to_string())
                )))
            })?;
        let view = array.as_array();
        let (rows, logits) = view.dim();
        Ok(ProbeRows {
            data: view.as_standard_layout().iter().copied().collect(),
            rows,
            logits,
        })
    }

    fn details(&mut self, _: usize) -> Result<ModelDetails, CollabError> {
        Ok(self.details.take().unwrap_or_default())
    }
}

/// Stages one model probed on part of the probe set (collaborative probing). `prober(probes)`
/// receives a sorted uint32 array of probe indices and returns the model's logits on them,
/// `[len(probes), L]`. It is called with a seeded random `probe_fraction * (1 -
/// adaptive_share)` of the probes, then (unless `adaptive_share` is 0) with the probes where
/// the completion from that first answer is highest. The commit completes the other probes from
/// the index's probe factors, or from factors of rank `rank` fitted on the commit's partially
/// probed models when the index has none (the second round then uses factors fitted on this
/// model's first answer, which needs at least `rank` logits). An exception `prober` raises is
/// raised here, and nothing is staged. Returns a dict: model_id, first_entry, logits,
/// constant_logits, observed (the probes it was run on, a uint32 array).
#[pyfunction]
#[pyo3(signature = (writer, name, labels=None, *, prober, probe_fraction,
                    adaptive_share=DEFAULT_ADAPTIVE_SHARE, seed=0, rank=None, lambda_=None,
                    meta=None, source=None, keep_constant=false, existing_name="refuse"))]
#[allow(clippy::too_many_arguments)]
fn _writer_append_collab<'py>(
    py: Python<'py>,
    writer: &Writer,
    name: String,
    labels: Option<Vec<String>>,
    prober: Bound<'py, PyAny>,
    probe_fraction: f64,
    adaptive_share: f64,
    seed: u64,
    rank: Option<usize>,
    lambda_: Option<f32>,
    meta: Option<&Bound<'py, PyAny>>,
    source: Option<String>,
    keep_constant: bool,
    existing_name: &str,
) -> PyResult<Bound<'py, PyDict>> {
    if !prober.is_callable() {
        return Err(InvalidInputError::new_err(
            "prober must be a callable: prober(probes) -> logits [len(probes), L]",
        ));
    }
    let existing_name = parse_existing_name(existing_name)?;
    let defaults = CollabOptions::default();
    let lambda = lambda_.unwrap_or(defaults.lambda);
    if !(lambda.is_finite() && lambda > 0.0) {
        return Err(InvalidInputError::new_err(format!(
            "lambda_ must be a finite number > 0, got {lambda}"
        )));
    }
    let options = CollabOptions {
        rank: rank.unwrap_or(defaults.rank),
        lambda,
        seed,
        ..defaults
    };
    let details = ModelDetails {
        source: source.unwrap_or_default(),
        meta: string_pairs(meta)?,
        labels,
        existing_name: None,
    };
    let opts = AppendOptions {
        keep_constant,
        existing_name,
        ..AppendOptions::default()
    };
    writer.with(|w| {
        let probes = w.probe_set().num_probes as usize;
        let plan = ProbePlan::new(probes, probe_fraction, adaptive_share, seed, options)
            .map_err(py_err)?;
        let mut callable = Callable {
            prober,
            details: Some(details),
        };
        let staged =
            collab::probe_batch(w, std::slice::from_ref(&name), opts, &plan, &mut callable)?;
        let staged = staged
            .into_iter()
            .next()
            .ok_or_else(|| InvalidInputError::new_err(format!("model {name:?} was not staged")))?;
        let d = PyDict::new(py);
        d.set_item("model_id", staged.added.model_id)?;
        d.set_item("first_entry", staged.added.first_entry)?;
        d.set_item("logits", staged.added.logits)?;
        d.set_item("constant_logits", staged.added.constant_logits)?;
        d.set_item("observed", staged.observed.into_pyarray(py))?;
        Ok(d)
    })
}

/// Adds `Writer.append_collab` (a `functools.partialmethod` over the module function, so that it
/// binds its writer like a method of `#[pymethods]`) and `DEFAULT_ADAPTIVE_SHARE`.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let function = wrap_pyfunction!(_writer_append_collab, m)?;
    m.add_function(function.clone())?;
    m.add("DEFAULT_ADAPTIVE_SHARE", DEFAULT_ADAPTIVE_SHARE)?;
    let method = py
        .import("functools")?
        .getattr("partialmethod")?
        .call1((function,))?;
    py.get_type::<Writer>().setattr("append_collab", method)
}
