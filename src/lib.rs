//! probelog: find the classifiers that recognize a concept, from their behaviour alone.
//!
//! Every output logit of every model gets a descriptor: its responses to a fixed, ordered set of
//! probe images, z-normalized over the probes. An index file holds these descriptors probe-major,
//! memory-mapped, so that the ProbeLog asymmetric top-k discrepancy (compare only on the query's
//! `k` highest probes) reads `k` contiguous rows per query. The default metric,
//! [`Metric::Blend`], adds the root mean square difference over all probes (weighted by
//! [`DEFAULT_BLEND_WEIGHT`]) to the top-k term, in the same single pass over the rows;
//! [`Metric::TopK`] is the paper's discrepancy alone.
//!
//! ```no_run
//! use probelog::{create, CreateOptions, Index, IndexWriter, LockWait, LogitMatrix, ModelInput,
//!                AppendOptions, Query, SearchParams};
//! # fn main() -> probelog::Result<()> {
//! let path = std::path::Path::new("hub.plog");
//! create(path, &CreateOptions::new(1000))?;
//! let logits = vec![0.5f32; 1000 * 10]; // one model's raw logits, [probes, logits]
//! let mut w = IndexWriter::open(path, LockWait::Wait)?;
//! w.add_model(ModelInput { name: "resnet".into(), source: String::new(), meta: vec![],
//!              labels: None, logits: LogitMatrix::new(&logits, 1000, 10)? },
//!             AppendOptions::default())?;
//! w.commit()?;
//! let index = Index::open(path)?;
//! let hits = index.search(&Query::Entry(0), &SearchParams::default())?;
//! # Ok(()) }
//! ```
//!
//! Layers: [`format`] (bytes on disk), [`reader`] ([`RawIndex`] over any bytes, [`Index`] over an
//! mmap), [`writer`] (create, append, compact), [`search`], [`verify`], [`storage`] (the seam that
//! fault tests cut). The feature `test-kit` adds `testkit`: crash-testing storage, the fuzz
//! harness and synthetic zoos.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_debug_implementations)]

#[cfg(target_endian = "big")]
compile_error!(
    "probelog maps little-endian index files directly and supports little-endian targets only"
);
#[cfg(not(unix))]
compile_error!(
    "probelog uses Unix file APIs (pread/pwrite, flock); other platforms are not supported yet"
);

pub mod ann;
pub mod collab;
pub mod descriptor;
pub mod error;
mod fanout;
pub mod format;
mod prefetch;
pub mod probe_set;
pub mod reader;
pub mod search;
pub mod selection;
pub mod storage;
#[cfg(any(test, feature = "test-kit"))]
pub mod testkit;
pub mod verify;
pub mod writer;

pub use ann::AnnOptions;
pub use descriptor::{LogitMatrix, normalize_query};
pub use error::{Error, Result};
pub use format::{Dtype, ProbeSetId};
pub use reader::{AlignedBytes, EntryInfo, GraphPart, Index, ModelInfo, OpenOptions, RawIndex};
pub use search::{
    AUTO_HNSW_MIN_ENTRIES, DEFAULT_BLEND_WEIGHT, DEFAULT_CANDIDATES, DEFAULT_K, FileHit, Grouping,
    Hit, Metric, MultiQuery, MultiResults, Query, ResolvedSearch, Scored, SearchError, SearchMode,
    SearchParams, SearchResults, search_many,
};
pub use selection::{Condition, EntryMask, ModelFilter};
pub use storage::{FileStorage, LockWait, Storage};
// The unit tests of `writer` name the zoos `crate::synth`.
#[cfg(test)]
use testkit::synth;
pub use verify::{Problem, VerifyReport};
pub use writer::{
    AppendOptions, CommitSummary, CompactOptions, CompactSummary, CreateOptions, ExistingName,
    IndexWriter, MergeOptions, MergeSummary, MergedFactors, ModelAdded, ModelInput, compact,
    compact_with, create, merge,
};
