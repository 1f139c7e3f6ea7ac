//! Status codes, this thread's last error message, and the guard that keeps panics on the Rust
//! side of the boundary.

use std::any::Any;
use std::cell::RefCell;
use std::ffi::{CStr, CString, c_char};
use std::panic::{self, AssertUnwindSafe};

use probelog::Error;

/// What a function returns: PROBELOG_OK (0) or one of the PROBELOG_ERR_* codes.
pub type ProbelogStatus = i32;

/// Success.
pub const PROBELOG_OK: ProbelogStatus = 0;
/// A pointer argument that must not be NULL was NULL.
pub const PROBELOG_ERR_NULL_POINTER: ProbelogStatus = 1;
/// A string argument (a path, a name, a label) is not valid UTF-8.
pub const PROBELOG_ERR_INVALID_UTF8: ProbelogStatus = 2;
/// A parameter is out of range: top = 0, k above the probe count, an unknown metric, an entry
/// that does not exist, an option that does not apply to this query, a result index past the
/// end, a filter condition that is not KEY=VALUE or KEY!=VALUE, a model id or name to delete
/// that no live model has.
pub const PROBELOG_ERR_INVALID_ARGUMENT: ProbelogStatus = 3;
/// A vector or matrix has the wrong length: a query vector that is not one value per probe, a
/// text embedding whose dimension is not the probe embeddings', logits over another probe count.
pub const PROBELOG_ERR_WRONG_LENGTH: ProbelogStatus = 4;
/// A query, an embedding or logits hold NaN or an infinite value.
pub const PROBELOG_ERR_NON_FINITE: ProbelogStatus = 5;
/// Other unusable input: a constant query or logit, a label count that does not match the
/// logits, probe data of another probe set.
pub const PROBELOG_ERR_INVALID_INPUT: ProbelogStatus = 6;
/// A text search on an index that holds no probe embeddings.
pub const PROBELOG_ERR_NO_EMBEDDINGS: ProbelogStatus = 7;
/// An I/O error, e.g. the file does not exist or cannot be read.
pub const PROBELOG_ERR_IO: ProbelogStatus = 8;
/// The file is not a probelog index, or it is damaged, truncated or of an unsupported version.
pub const PROBELOG_ERR_CORRUPT: ProbelogStatus = 9;
/// Another writer holds the index and the caller asked not to wait (`PROBELOG_NO_WAIT`).
pub const PROBELOG_ERR_LOCKED: ProbelogStatus = 10;
/// `probelog_create` was given a path that exists already.
pub const PROBELOG_ERR_EXISTS: ProbelogStatus = 11;
/// An internal error (a panic inside probelog, caught at the boundary); a bug to report. A writer
/// that saw one refuses further calls: close it.
pub const PROBELOG_ERR_PANIC: ProbelogStatus = 12;
/// `probelog_writer_add_model` was given a model whose name a live model (or a model staged in
/// the same commit) has already, and `ProbelogModel.existing_name` is PROBELOG_NAME_REFUSE (the
/// default): pass PROBELOG_NAME_REPLACE for a new version, or PROBELOG_NAME_KEEP for both.
pub const PROBELOG_ERR_DUPLICATE_NAME: ProbelogStatus = 13;
/// An entry of a deleted model was asked for (`probelog_index_descriptor`,
/// `probelog_search_entry`): deleted models are never returned.
pub const PROBELOG_ERR_DELETED: ProbelogStatus = 14;

/// The last status code this library defines.
#[cfg(test)]
const LAST_STATUS: ProbelogStatus = PROBELOG_ERR_DELETED;

/// The name of a status code, e.g. "PROBELOG_ERR_IO": a static string; "PROBELOG_ERR_UNKNOWN" for
/// a code this library does not define.
#[unsafe(no_mangle)]
pub extern "C" fn probelog_status_name(status: ProbelogStatus) -> *const c_char {
    quiet(std::ptr::null(), || status_name(status).as_ptr())
}

/// The message of this thread's most recent call that returns a `ProbelogStatus`: why it failed,
/// or "" when it succeeded. Never NULL. The string stays valid until the next such call on this
/// thread; copy it to keep it.
#[unsafe(no_mangle)]
pub extern "C" fn probelog_last_error() -> *const c_char {
    quiet(c"".as_ptr(), || {
        LAST_ERROR
            .try_with(|m| m.borrow().as_ptr())
            .unwrap_or(c"".as_ptr())
    })
}

pub(crate) fn status_name(status: ProbelogStatus) -> &'static CStr {
    match status {
        PROBELOG_OK => c"PROBELOG_OK",
        PROBELOG_ERR_NULL_POINTER => c"PROBELOG_ERR_NULL_POINTER",
        PROBELOG_ERR_INVALID_UTF8 => c"PROBELOG_ERR_INVALID_UTF8",
        PROBELOG_ERR_INVALID_ARGUMENT => c"PROBELOG_ERR_INVALID_ARGUMENT",
        PROBELOG_ERR_WRONG_LENGTH => c"PROBELOG_ERR_WRONG_LENGTH",
        PROBELOG_ERR_NON_FINITE => c"PROBELOG_ERR_NON_FINITE",
        PROBELOG_ERR_INVALID_INPUT => c"PROBELOG_ERR_INVALID_INPUT",
        PROBELOG_ERR_NO_EMBEDDINGS => c"PROBELOG_ERR_NO_EMBEDDINGS",
        PROBELOG_ERR_IO => c"PROBELOG_ERR_IO",
        PROBELOG_ERR_CORRUPT => c"PROBELOG_ERR_CORRUPT",
        PROBELOG_ERR_LOCKED => c"PROBELOG_ERR_LOCKED",
        PROBELOG_ERR_EXISTS => c"PROBELOG_ERR_EXISTS",
        PROBELOG_ERR_PANIC => c"PROBELOG_ERR_PANIC",
        PROBELOG_ERR_DUPLICATE_NAME => c"PROBELOG_ERR_DUPLICATE_NAME",
        PROBELOG_ERR_DELETED => c"PROBELOG_ERR_DELETED",
        _ => c"PROBELOG_ERR_UNKNOWN",
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// A failed call: its status and message.
#[derive(Debug)]
pub(crate) struct Failure {
    pub status: ProbelogStatus,
    pub message: String,
}

impl Failure {
    pub fn new(status: ProbelogStatus, message: impl Into<String>) -> Self {
        Failure {
            status,
            message: message.into(),
        }
    }

    pub fn null(what: &str) -> Self {
        Failure::new(PROBELOG_ERR_NULL_POINTER, format!("{what} is NULL"))
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Failure::new(PROBELOG_ERR_INVALID_ARGUMENT, message)
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let status = if e.is_corruption() {
            PROBELOG_ERR_CORRUPT
        } else {
            // Not exhaustive on purpose: variants added to the library later land in the
            // catch-all input error instead of breaking the build.
            match &e {
                Error::Io { .. } | Error::Storage { .. } => PROBELOG_ERR_IO,
                Error::Locked { .. } => PROBELOG_ERR_LOCKED,
                Error::AlreadyExists { .. } => PROBELOG_ERR_EXISTS,
                Error::NonFinite { .. } => PROBELOG_ERR_NON_FINITE,
                Error::ProbeCountMismatch { .. } => PROBELOG_ERR_WRONG_LENGTH,
                Error::InvalidParameter(_) | Error::Search(_) => PROBELOG_ERR_INVALID_ARGUMENT,
                Error::DuplicateName { .. } => PROBELOG_ERR_DUPLICATE_NAME,
                Error::Deleted { .. } => PROBELOG_ERR_DELETED,
                // A model id or name to delete that no live model has: a bad argument.
                Error::UnknownModel { .. } => PROBELOG_ERR_INVALID_ARGUMENT,
                _ => PROBELOG_ERR_INVALID_INPUT,
            }
        };
        let message = match &e {
            Error::Search(search) => crate::search::render_error(search),
            Error::DuplicateName { name, live_model } => duplicate_name_message(name, *live_model),
            Error::Deleted { entry, model } => format!(
                "entry {entry} belongs to model {model}, which is deleted: deleted models are \
                 never returned"
            ),
            _ => e.to_string(),
        };
        Failure::new(status, message)
    }
}

pub(crate) type CallResult<T = ()> = Result<T, Failure>;

/// `Error::DuplicateName` in the words of this C API: the `ProbelogModel.existing_name` values
/// that would accept the model.
fn duplicate_name_message(name: &str, live_model: Option<u64>) -> String {
    let existing = probelog::error::taken_by(live_model);
    match live_model {
        // Only keeping both helps when the other model is in the same commit.
        None => format!(
            "model name {name:?} is taken by {existing}; two models of one commit may share a \
             name only with existing_name = PROBELOG_NAME_KEEP"
        ),
        Some(_) => format!(
            "model name {name:?} is taken by {existing}; set existing_name = \
             PROBELOG_NAME_REPLACE to replace it with this new version (in the same commit), or \
             PROBELOG_NAME_KEEP to keep both"
        ),
    }
}

/// Records `message` as this thread's last error. NUL bytes (possible in names read from a file)
/// are shown as `\0`.
fn set_last_error(message: String) {
    let c = CString::new(message).unwrap_or_else(|e| {
        let shown = String::from_utf8_lossy(&e.into_vec()).replace('\0', "\\0");
        CString::new(shown).unwrap_or_default()
    });
    // During thread teardown the slot may be gone; the message is then dropped.
    let _ = LAST_ERROR.try_with(|m| *m.borrow_mut() = c);
}

/// Runs the body of an exported function that returns a status: catches panics, records the
/// message, returns the code.
pub(crate) fn guard(f: impl FnOnce() -> CallResult) -> ProbelogStatus {
    let (status, message) = match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => (PROBELOG_OK, String::new()),
        Ok(Err(fail)) => (fail.status, fail.message),
        Err(payload) => (
            PROBELOG_ERR_PANIC,
            format!(
                "internal error in probelog ({}); this is a bug, please report it",
                panic_message(payload.as_ref())
            ),
        ),
    };
    set_last_error(message);
    status
}

/// Runs the body of an exported function that reports no status: a panic gives `fallback`.
pub(crate) fn quiet<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or(fallback)
}

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "panic"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last() -> String {
        // SAFETY: probelog_last_error never returns NULL, and the string lives until the next
        // status call on this thread, after this copy.
        unsafe { CStr::from_ptr(probelog_last_error()) }
            .to_str()
            .unwrap()
            .to_string()
    }

    #[test]
    fn a_panic_becomes_a_status_and_a_message() {
        let status = guard(|| panic!("boom {}", 7));
        assert_eq!(status, PROBELOG_ERR_PANIC);
        assert!(last().contains("boom 7"), "{}", last());
        assert_eq!(guard(|| Ok(())), PROBELOG_OK);
        assert_eq!(last(), "");
        assert_eq!(quiet(5, || panic!("quiet")), 5);
    }

    #[test]
    fn messages_with_nul_bytes_are_kept_readable() {
        let status = guard(|| Err(Failure::invalid("model a\0b")));
        assert_eq!(status, PROBELOG_ERR_INVALID_ARGUMENT);
        assert_eq!(last(), "model a\\0b");
    }

    #[test]
    fn every_code_has_a_name() {
        for code in 0..=LAST_STATUS {
            let name = status_name(code).to_str().unwrap();
            assert!(name.starts_with("PROBELOG_") && name != "PROBELOG_ERR_UNKNOWN");
        }
        assert_eq!(status_name(99), c"PROBELOG_ERR_UNKNOWN");
    }

    #[test]
    fn library_errors_map_to_codes() {
        let io = Error::Io {
            op: "open",
            path: "x".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        assert_eq!(Failure::from(io).status, PROBELOG_ERR_IO);
        assert_eq!(
            Failure::from(Error::NotAnIndex).status,
            PROBELOG_ERR_CORRUPT
        );
        let nan = Error::NonFinite {
            what: "q".into(),
            row: 1,
            value: f32::NAN,
        };
        assert_eq!(Failure::from(nan).status, PROBELOG_ERR_NON_FINITE);
        assert_eq!(
            Failure::from(Error::InvalidInput("x".into())).status,
            PROBELOG_ERR_INVALID_INPUT
        );
        let dup = Failure::from(Error::DuplicateName {
            name: "m".into(),
            live_model: Some(3),
        });
        assert_eq!(dup.status, PROBELOG_ERR_DUPLICATE_NAME);
        assert!(
            dup.message.contains("PROBELOG_NAME_REPLACE"),
            "{}",
            dup.message
        );
        let deleted = Failure::from(Error::Deleted { entry: 4, model: 1 });
        assert_eq!(deleted.status, PROBELOG_ERR_DELETED);
        let unknown = Failure::from(Error::UnknownModel {
            model: "id 9".into(),
            detail: "x".into(),
        });
        assert_eq!(unknown.status, PROBELOG_ERR_INVALID_ARGUMENT);
    }
}
