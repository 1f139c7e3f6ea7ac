//! Opens, verifies, searches and appends to index images derived from the input.
//! The logic lives in `probelog::testkit::fuzzing` so that `tests/integration/fuzz_regressions.rs` replays
//! the corpus and the regressions through the same code.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    probelog::testkit::fuzzing::open_search_verify(data);
});
