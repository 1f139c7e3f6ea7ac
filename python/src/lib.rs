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
    AppendOptions, CreateOptions, Dtype, ExistingName, Grouping, LockWait, LogitMatrix, Metric,
    ModelInput, ProbeSetId, Query, SearchMode, SearchParams,
};
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyIndexError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyRange, PySlice};
use rayon::prelude::*;

mod collab;
mod embedded;
mod errors;
mod index;
mod multi;
mod params;
mod probe_set;
mod results;
mod writer;

use self::errors::*;
use self::index::*;
use self::params::*;
use self::probe_set::*;
use self::results::*;
use self::writer::*;

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
    m.add(
        "ProbeSetMismatchError",
        py.get_type::<ProbeSetMismatchError>(),
    )?;
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
