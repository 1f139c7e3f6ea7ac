#!/usr/bin/env bash
# End-to-end demo on the embedded default: builds probelog-tool, generates a synthetic hub of
# 60 classifiers over 512 probes, appends them to a fresh index, searches it, verifies it.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p probelog-tool
tool="${CARGO_TARGET_DIR:-target}/release/probelog-tool"
out=${1:-target/demo}
mkdir -p "$out"
rm -f "$out/hub.plog"
"$tool" demo "$out/hub.plog"
"$tool" info "$out/hub.plog"
"$tool" search "$out/hub.plog" --entry 0 --exclude-same-model --per-model --top 5
"$tool" verify "$out/hub.plog"
