//! Errors: `probelog::Error` mapped onto Python exceptions rooted at `probelog.Error`, with the
//! core's message unchanged.

use super::*;

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
pub(crate) fn py_err(e: probelog::Error) -> PyErr {
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

pub(crate) trait OrPy<T> {
    fn py(self) -> PyResult<T>;
}
impl<T> OrPy<T> for probelog::Result<T> {
    fn py(self) -> PyResult<T> {
        self.map_err(py_err)
    }
}
