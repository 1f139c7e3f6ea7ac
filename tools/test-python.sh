#!/usr/bin/env bash
# Tests of the Python export scripts (tools/export/) end to end through the real probelog-tool:
# sets up .venv-py (tools/setup-python.sh, a no-op when up to date) and libtorch
# (tools/setup-libtorch.sh), builds probelog-tool with the `torch` feature, then runs
# tools/export/test_export.py. Random-weight models only; nothing is downloaded but packages.
#
#   ./tools/test-python.sh                       # the tests
#   PROBELOG_TEST_REAL=1 ./tools/test-python.sh  # also a real-size open_clip ViT-B-32 export
#   ./tools/test-python.sh ExportTest.test_hf_clip_tiny   # one test (unittest names)
#
# Honours CARGO_TARGET_DIR (default: target).
set -euo pipefail
cd "$(dirname "$0")/.."

./tools/setup-python.sh
./tools/setup-libtorch.sh
# PROBELOG_TOOL_PROFILE=debug reuses the debug build that tools/test.sh has already made.
profile=${PROBELOG_TOOL_PROFILE:-release}
if [[ $profile == release ]]; then
    cargo build --release -p probelog-tool --features torch --locked
else
    cargo build -p probelog-tool --features torch --locked
fi
target=${CARGO_TARGET_DIR:-target}
[[ $target = /* ]] || target=$PWD/$target
export PROBELOG_TOOL=$target/$profile/probelog-tool
exec .venv-py/bin/python tools/export/test_export.py "$@"
