#!/usr/bin/env bash
# Installs libtorch for the `torch` feature of probelog-tool, from the project's own pins.
#
# Creates `.venv-torch` at the repository root and installs the torch wheel into it without its
# Python dependencies: the wheel is used only as a libtorch distribution (the `torch` directory
# holds `lib/` and `include/`); `import torch` does not work from this venv. `libtorch_cpu.so`
# needs libcudart and libcupti, so those two NVIDIA wheels come along; the rest of the CUDA set
# is only needed on a GPU machine, where the system's CUDA driver and libraries are used.
#
# Idempotent: does nothing when the pinned versions are already installed. `.cargo/config.toml`
# points LIBTORCH at the result.
set -euo pipefail
cd "$(dirname "$0")/.."

# tch 0.26 pins libtorch 2.13.0; keep these in step with tools/Cargo.toml.
TORCH_VERSION=2.13.0
PINS=(
    "torch==${TORCH_VERSION}"
    "nvidia-cuda-runtime==13.0.96"
    "nvidia-cuda-cupti==13.0.85"
)
VENV=.venv-torch
PYTHON=${PYTHON:-python3}

die() { echo "setup-libtorch: error: $*" >&2; exit 1; }

installed() {
    # Every pin present at its exact version?
    local frozen
    frozen=$("$VENV/bin/pip" freeze --disable-pip-version-check 2>/dev/null) || return 1
    local pin
    for pin in "${PINS[@]}"; do
        grep -qixF -- "$pin" <<<"$frozen" || return 1
    done
}

command -v "$PYTHON" >/dev/null || die "$PYTHON not found; install Python 3.11 (python3-venv)"
py_minor=$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
if [[ "$py_minor" != "3.11" ]]; then
    echo "setup-libtorch: warning: python $py_minor; .cargo/config.toml expects" \
         "$VENV/lib/python3.11 (set LIBTORCH to $VENV/lib/python$py_minor/site-packages/torch)" >&2
fi

if [[ -x "$VENV/bin/pip" ]] && installed; then
    echo "setup-libtorch: libtorch ${TORCH_VERSION} already installed in $VENV" >&2
    exit 0
fi

if [[ ! -x "$VENV/bin/pip" ]]; then
    echo "setup-libtorch: creating $VENV" >&2
    "$PYTHON" -m venv "$VENV" || die "python3 -m venv failed (on Debian: apt-get install python3-venv)"
fi

echo "setup-libtorch: installing ${PINS[*]} (about 540 MB)" >&2
"$VENV/bin/pip" install --disable-pip-version-check --no-cache-dir --no-deps "${PINS[@]}" \
    || die "pip install failed (network to PyPI needed; see the messages above)"
installed || die "pip finished but ${PINS[*]} are not all installed in $VENV"
[[ -f "$VENV/lib/python$py_minor/site-packages/torch/lib/libtorch_cpu.so" ]] \
    || die "$VENV/lib/python$py_minor/site-packages/torch/lib/libtorch_cpu.so is missing"
echo "setup-libtorch: done; libtorch ${TORCH_VERSION} in $VENV/lib/python$py_minor/site-packages/torch" >&2
