#!/usr/bin/env bash
# Tests of the Python package (python/: PyO3 + maturin, `import probelog`): installs it with pip
# from the checkout into .venv-py (tools/setup-python.sh, a no-op when up to date: torch,
# transformers and timm for probe()), builds probelog-tool with the `torch` feature for the
# comparisons with the command line, then runs python/tests with pytest. Missing torch or
# probelog-tool fails the run here instead of skipping (PROBELOG_PY_REQUIRE_ALL=1).
#
#   ./tools/test-python-package.sh                 # the tests
#   ./tools/test-python-package.sh -k search       # some of them (pytest arguments)
#
# Honours CARGO_TARGET_DIR (default: target); the extension is built there too, in release.
set -euo pipefail
cd "$(dirname "$0")/.."

source tools/python-tool-env.sh

# pip builds the wheel with maturin (fetched into pip's isolated build environment) from the
# workspace, against Cargo.lock as it is, and installs it (a local directory is always rebuilt
# and reinstalled). The [test] extra adds pytest.
MATURIN_PEP517_ARGS="--locked" CARGO_TARGET_DIR=$target \
    .venv-py/bin/pip install --quiet --disable-pip-version-check "./python[test]"
export PROBELOG_PY_REQUIRE_ALL=1
exec .venv-py/bin/python -m pytest python/tests -q "$@"
