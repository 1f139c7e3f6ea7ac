#!/usr/bin/env bash
# Runs every test of the workspace: unit tests, the integration suite (property, concurrency,
# crash, corruption and fuzz-corpus replay tests) and the CLI tests. Builds once, then tests.
# Then the libtorch part: installs libtorch into .venv-torch (tools/setup-libtorch.sh; a no-op
# when it is there) and runs probelog-tool's tests with the `torch` feature (TorchScript models
# made in the tests). CI (.ci/run) calls exactly this script.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace --all-targets --locked
cargo test --workspace --locked

./tools/setup-libtorch.sh
cargo test -p probelog-tool --features torch --locked
