#!/usr/bin/env bash
# The Python side of `cargo bench --bench build`: a virtual environment in .venv-bench with
# faiss-cpu and numpy (FAISS IndexHNSWFlat, the build it is compared with).
# Usage: tools/setup-bench.sh [VENV_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-.venv-bench}"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --upgrade pip
"$venv/bin/pip" install --quiet faiss-cpu numpy
"$venv/bin/python" -c 'import faiss, numpy; print("faiss", faiss.__version__, "numpy", numpy.__version__)'
