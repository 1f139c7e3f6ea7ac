//! `Index.probe_set()`: the probe set file stored in an index (`probelog-tool create
//! --embed-probes`, `probes attach`; format-spec.md, "EmbeddedProbeSet") as a `ProbeSet`, so
//! that an index ships without side files.

use pyo3::prelude::*;

use crate::{Index, OrPy, ProbeSet};

/// The probe set stored in the index, checked completely (its fingerprint recomputed), or None
/// when the index holds none. Installed as the method `Index.probe_set`.
#[pyfunction]
fn _index_probe_set(py: Python<'_>, index: &Index) -> PyResult<Option<ProbeSet>> {
    let index = index.get();
    let set = py.detach(|| index.embedded_probe_set()).py()?;
    Ok(set.map(|inner| ProbeSet { inner }))
}

/// Adds `Index.probe_set()`: a `functools.partialmethod` over a module function, so that the
/// method binds its index like one written in `#[pymethods]`.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let function = wrap_pyfunction!(_index_probe_set, m)?;
    m.add_function(function.clone())?;
    let method = py
        .import("functools")?
        .getattr("partialmethod")?
        .call1((function,))?;
    py.get_type::<Index>().setattr("probe_set", method)
}
