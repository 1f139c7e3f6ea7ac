#!/usr/bin/env bash
# End-to-end demo on the shipped assets (tools/demo/, see its README): sets up libtorch, builds
# probelog-tool with the `torch` feature, runs 7 small trained TorchScript classifiers over a
# 320-image probe set through libtorch (`append --model`), stores the probes' embeddings from a
# small text stand-in's image tower (`probes embed`), searches by example and by text, and
# verifies the index. 6 minutes on a fresh 2-core machine (measured 5 min 55 s), nearly all of
# it the release build; tools/demo/README.md has the measurement.
#
#   ./tools/demo.sh [OUT]      # OUT: target/demo by default; honours CARGO_TARGET_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/demo}
assets=tools/demo
step() { printf '\n== %s\n' "$*"; }

step "libtorch into .venv-torch (tools/setup-libtorch.sh; nothing to do when it is there)"
./tools/setup-libtorch.sh

step "build probelog-tool with the torch feature (release)"
cargo build --release --locked -p probelog-tool --features torch
tool="${CARGO_TARGET_DIR:-target}/release/probelog-tool"

mkdir -p "$out"
index=$out/hub.plog
rm -f "$index"
pset=$assets/probes.pset

step "create $index over the shipped probe set"
"$tool" probes info "$pset"
"$tool" create "$index" --probes "$pset"

step "append the shipped classifiers: each runs on the 320 probes through libtorch (CPU)"
# name:architecture:task, in the order of tools/demo/models.toml (entry 0 is pets-cnn's "dog").
for spec in pets-cnn:cnn:pets farm-resnet:resnet:farm zoo-dwnet:dwnet:zoo fruit-cnn:cnn:fruit \
            food-cnn:cnn:food travel-resnet:resnet:travel mixed-cnn:cnn:mixed; do
    IFS=: read -r name arch task <<<"$spec"
    printf '%-14s labels: %s\n' "$name" "$(paste -sd, "$assets/models/$name.txt")"
    "$tool" append "$index" --model "$assets/models/$name.pt" --probes "$pset" \
        --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225 --device cpu \
        --labels "$assets/models/$name.txt" --name "$name" --source "probelog-demo/$name" \
        --meta "arch=$arch" --meta "task=$task" >/dev/null
done
"$tool" info "$index"

step "store the probes' embeddings from the text stand-in's image tower (probes embed)"
"$tool" probes embed "$index" --clip-image "$assets/text/clip_image.pt" --probes "$pset" --device cpu

step "search by example: which other models recognize what pets-cnn's \"dog\" logit (entry 0) does?"
"$tool" search "$index" --entry 0 --exclude-same-model --per-model --top 5

step "search by example: fruit-cnn's \"banana\" logit (entry 20)"
"$tool" search "$index" --entry 20 --exclude-same-model --per-model --top 5

for text in "dog" "a photo of a banana" "airplane"; do
    step "search by text: \"$text\" (the shipped word-level text stand-in, not a real CLIP)"
    "$tool" search "$index" --text "$text" --clip-text "$assets/text/clip_text.pt" \
        --tokenizer "$assets/text/tokenizer.json" --device cpu --top 5
done

step "verify every checksum of $index"
"$tool" verify "$index"
