//! Integration tests of probelog: search against a brute-force reference, concurrent readers and
//! writers in separate processes, crash safety (simulated crashes through the storage seam and
//! killed processes), corruption detection, and replay of the fuzz corpus and regressions.
//!
//! Tests that need several processes re-execute this test binary: the parent spawns
//! `current_exe() --exact <child test> --include-ignored` with an environment variable naming the
//! child's role (see `common::spawn_child`). Child tests are `#[ignore]`d and return at once when
//! the variable is absent.

mod ann;
mod blend;
mod collab;
mod collab_rounds;
mod common;
mod concurrency;
mod corruption;
mod crash;
mod deletes;
mod embedded_probes;
mod fuzz_regressions;
mod merge;
mod multi_search;
mod search_props;
mod storage_precision;
mod writer_safety;
