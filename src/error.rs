//! Typed errors of the library. Binaries wrap them with `anyhow`; the library never prints.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in probelog.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O operation failed on a file.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// An I/O operation failed on a storage that has no path (tests, in-memory stores).
    #[error("{op}: {source}")]
    Storage {
        op: &'static str,
        #[source]
        source: io::Error,
    },

    /// The bytes are not a probelog index at all.
    #[error(
        "not a probelog index (bad magic bytes); was this file made by `probelog-tool create`?"
    )]
    NotAnIndex,

    /// The file is a probelog index of a format version this build cannot read.
    #[error("index format version {found} is not supported (this build reads version {supported})")]
    UnsupportedVersion { found: u32, supported: u32 },

    /// A structural problem: a size, offset, count or reference read from the file is impossible.
    #[error("corrupt index: {what}")]
    Corrupt { what: String },

    /// A stored checksum does not match the bytes it covers.
    #[error("checksum mismatch in {section}: stored {expected:#010x}, computed {got:#010x}")]
    ChecksumMismatch {
        section: String,
        expected: u32,
        got: u32,
    },

    /// A full check found damage, so an operation that would copy the damaged bytes under fresh
    /// checksums (compaction) refused to run.
    #[error(
        "{path} is damaged ({first}; {problems} problem(s) in all; `probelog-tool verify` lists them): refusing to rewrite it, which would hide the damage under fresh checksums"
    )]
    Damaged {
        path: PathBuf,
        first: String,
        problems: usize,
    },

    /// The file is shorter than its committed state says: it was truncated or copied partially.
    #[error("index is truncated: {what} needs {needed} bytes but the file holds {len}")]
    Truncated { what: String, needed: u64, len: u64 },

    /// Input data (logits, query vectors, embeddings, metadata) is unusable.
    #[error("{0}")]
    InvalidInput(String),

    /// The probe count of some input does not match the index.
    #[error("{what} has {actual} probes, but the index was created with {expected} probes")]
    ProbeCountMismatch {
        what: String,
        expected: u64,
        actual: u64,
    },

    /// Data from another probe set (a different fingerprint) was offered to this index.
    #[error(
        "probe set mismatch: the index was built with probe set {expected}, the input comes from probe set {actual}"
    )]
    ProbeSetMismatch { expected: String, actual: String },

    /// A value in the input is NaN or infinite.
    #[error("{what}: value at row {row} is {value} (NaN and infinite values are refused)")]
    NonFinite {
        what: String,
        row: usize,
        value: f32,
    },

    /// A logit does not vary over the probes, so it has no z-normalized descriptor.
    #[error(
        "{what} is constant over the probes (standard deviation {std:e}); such a logit carries no signal. Pass `keep_constant` (CLI: --keep-constant) to store it as an all-zero descriptor"
    )]
    ConstantLogit { what: String, std: f64 },

    /// Search parameters that cannot run, or a query the index cannot answer.
    #[error(transparent)]
    Search(#[from] crate::search::SearchError),

    /// A search or lookup parameter is out of range.
    #[error("{0}")]
    InvalidParameter(String),

    /// Another process holds the writer lock and the caller asked not to wait.
    #[error(
        "{path} is locked by another writer (an append or compact is running); retry later or wait for the lock"
    )]
    Locked { path: PathBuf },

    /// A new model has the name of a live one (`live_model`), or of one staged in the same commit
    /// (`None`), and the caller asked for names to be unique.
    #[error(
        "model name {name:?} is taken by {}; a new version replaces it \
         (ExistingName::Replace), or both can be kept (ExistingName::Keep)",
        taken_by(*live_model)
    )]
    DuplicateName {
        name: String,
        live_model: Option<u64>,
    },

    /// A model to delete does not exist, or is deleted already.
    #[error("no model {model} to delete: {detail}")]
    UnknownModel { model: String, detail: String },

    /// An entry of a deleted model was asked for: deleted models are never returned.
    #[error("entry {entry} belongs to model {model}, which is deleted")]
    Deleted { entry: u64, model: u64 },

    /// A path names a FIFO, a device or a directory where a regular file is needed.
    #[error(
        "{path} is not a regular file (a FIFO, device or directory); probelog reads and writes regular files only"
    )]
    NotRegularFile { path: PathBuf },

    /// The target of `create` exists already.
    #[error("{path} exists already; remove it first or pick another path")]
    AlreadyExists { path: PathBuf },

    /// One of several index files that an operation joins (merge, a search over several files)
    /// cannot take part: `source` says why.
    #[error("{path}: {source}")]
    InputFile {
        path: PathBuf,
        #[source]
        source: Box<Error>,
    },
}

/// What holds a name already: a live model, or one staged in the same commit.
pub fn taken_by(live_model: Option<u64>) -> String {
    match live_model {
        Some(id) => format!("live model {id}"),
        None => "a model staged in this commit".into(),
    }
}

/// Result type of the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn corrupt(what: impl Into<String>) -> Self {
        Error::Corrupt { what: what.into() }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// True for errors that say the stored bytes are damaged (as opposed to bad input or I/O).
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            Error::NotAnIndex
                | Error::Corrupt { .. }
                | Error::ChecksumMismatch { .. }
                | Error::Truncated { .. }
                | Error::Damaged { .. }
                | Error::UnsupportedVersion { .. }
        )
    }
}
