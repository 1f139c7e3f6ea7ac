#!/usr/bin/env bash
# Runs every test of the workspace: unit tests, the integration suite (property, concurrency,
# crash, corruption and fuzz-corpus replay tests) and the CLI tests. Builds once, then tests.
# Then the libtorch part: installs libtorch into .venv-torch (tools/setup-libtorch.sh; a no-op
# when it is there) and runs probelog-tool's tests with the `torch` feature (TorchScript models
# made in the tests), and the export scripts' tests (tools/test-python.sh). CI (.ci/run) calls
# exactly this script.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace --all-targets --locked
cargo test --workspace --locked

./tools/setup-libtorch.sh
cargo test -p probelog-tool --features torch --locked
# The research crate's eval runs TorchScript models and text encoders through the same feature.
cargo test -p probelog-research --features torch --locked

# The Python export scripts, end to end through the debug probelog-tool built above. Installs the
# pinned Python side into .venv-py first (tools/setup-python.sh, about 5 GB, a no-op when present).
PROBELOG_TOOL_PROFILE=debug ./tools/test-python.sh
PROBELOG_TOOL_PROFILE=debug ./tools/test-python-package.sh  # the Python package (python/): pip into .venv-py, pytest
