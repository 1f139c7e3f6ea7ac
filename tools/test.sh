#!/usr/bin/env bash
# Runs every test of the workspace: unit tests, the integration suite (property, concurrency,
# crash, corruption and fuzz-corpus replay tests) and the CLI tests. Builds once, then tests.
# CI (.ci/run) calls exactly this script.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace --all-targets --locked
cargo test --workspace --locked
