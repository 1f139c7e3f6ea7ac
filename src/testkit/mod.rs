//! The test kit, compiled only with the feature `test-kit` (and in the crate's own unit tests):
//! what the tests, the fuzz target, the benchmarks and the research crate need from the core, kept
//! out of the product build.
//!
//! - [`FaultyStorage`]: an in-memory storage that crashes at a chosen operation, for crash tests.
//! - [`fuzzing`]: the harness of the fuzz target, which the integration tests replay the corpus
//!   through.
//! - [`layout`]: the field offsets of the header, commit slots and directories, for tests that
//!   patch bytes.
//! - [`probe_sets`]: small probe sets for unit tests.
//! - [`synth`]: synthetic model zoos for tests, benchmarks, the demo and the choice of the default
//!   `k`.
//! - [`hidden_files`]: the temporary files writers leave beside their targets, for crash tests.

mod faulty_storage;
pub mod fuzzing;
pub mod layout;
pub mod probe_sets;
pub mod synth;

pub use faulty_storage::FaultyStorage;

/// The names of the files in `dir` that start with `.`: the temporary files a compaction or a
/// merge writes beside its target (none once it has finished or been cleaned up).
pub fn hidden_files(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect()
}
