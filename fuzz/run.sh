#!/usr/bin/env bash
# Runs the open_search_verify fuzz target for a bounded time.
#
#   fuzz/run.sh [SECONDS] [extra libFuzzer flags...]     (default 300 seconds)
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). No nightly toolchain is needed: RUSTC_BOOTSTRAP=1
# lets the stable compiler accept the -Z flags cargo-fuzz passes (sanitizer, coverage).
# New interesting inputs go to fuzz/corpus-work/open_search_verify (git-ignored); the checked-in
# seeds in fuzz/corpus/open_search_verify are read, never written. Crashes land in
# fuzz/artifacts/open_search_verify/: copy each into fuzz/regressions/, list it in
# tests/integration/fuzz_regressions.rs with what it broke, and fix the bug.
set -euo pipefail
secs="${1:-300}"
shift || true
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
work="fuzz/corpus-work/open_search_verify"
mkdir -p "$work" fuzz/artifacts/open_search_verify
# FUZZ_JOBS=N runs N fuzzing processes (libFuzzer then writes fuzz-<n>.log into fuzz/).
jobs=()
if [ "${FUZZ_JOBS:-1}" -gt 1 ]; then
    jobs=(-jobs="$FUZZ_JOBS" -workers="$FUZZ_JOBS")
    cd fuzz && work="corpus-work/open_search_verify" && seeds="corpus/open_search_verify"
else
    seeds="fuzz/corpus/open_search_verify"
fi
RUSTC_BOOTSTRAP=1 exec cargo fuzz run --fuzz-dir "$root/fuzz" open_search_verify "$work" "$seeds" \
    -- -max_total_time="$secs" -max_len=16384 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 "${jobs[@]}" "$@"
