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

source tools/python-tool-env.sh
exec .venv-py/bin/python tools/export/test_export.py "$@"
