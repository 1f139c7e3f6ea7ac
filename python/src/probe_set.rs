//! `probelog.ProbeSet`: a probe set file (`.pset`) read, built and checked from Python.

use super::*;

/// A probe set (`.pset`): the probe images, uint8 RGB `[P, 3, S, S]`, with names and a
/// fingerprint. Read and checked by the core library.
#[pyclass(frozen, module = "probelog")]
pub(crate) struct ProbeSet {
    pub(crate) inner: CoreProbeSet,
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
