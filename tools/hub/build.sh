#!/usr/bin/env bash
# Builds the real-model evaluation hub from registry material only, indexes it through
# probelog-tool (libtorch), and evaluates it. One command; every step is skipped when its output
# exists, so an interrupted run resumes (delete a step's output to redo it).
#
#   tools/hub/build.sh            # everything: data, 180 classifiers, text tower, indexes, eval
#   JOBS=1 tools/hub/build.sh     # one training process instead of two
#
# Work goes to .hub-work/ at the repository root (git-ignored, about 1.5 GB with node_modules);
# the measured tables, reports and plots go to .hub-work/results/ and are copied into
# tools/hub/results/ (kept in the repository for the README). The hub indexes themselves, f16,
# are copied into tools/hub/artifacts/ (committed), from which tools/hub/restore.sh restores
# the hub on a fresh clone in minutes, without training or probing.
#
# Steps:
#  1. npm ci of tools/hub/package.json (+ lock): emoji-datasource PNGs, iconify emoji and icon sets
#  2. render.py: every emoji concept in 11 styles, and the icon sets, as 48 px RGBA arrays
#  3. train.py: plan 180 models (5-20 of 300 concepts each, 5 architecture families, widths,
#     depths, seeds, 45 of them queries), render the shared training views (8 styles; 3 styles
#     are held out), train and export each to TorchScript, write the manifests
#  4. make_probes.py: three probe sets of 2,000 images, none from the training distribution:
#     "near" (held-out emoji styles), "far" (icons), "leaves" (dead-leaves discs)
#  5. probelog-tool (release, feature torch): probes build, create, append --manifest (the
#     classifiers run through libtorch), for each probe set: three hubs
#  6. text_tower.py: a small image tower aligned to MiniLM, evaluated concepts held out;
#     probes embed
#  7. collaborative-probing indexes: the gallery models appended with --probe-fraction F (two
#     rounds: a random half of the budget, then the probes the completion ranks highest; and,
#     at a third of the probes, three draws each of those and of the paper's random subsets,
#     --adaptive-share 0, evaluated side by side into collab-rounds-near.txt) (eval
#     searches them with the fully probed query models of the near index)
#  8. the hub and collaborative indexes (f16) copied to tools/hub/artifacts/; probelog-research
#     eval on each index, and plot.py
#  9. the dense hubs, for collaborative probing: 100 and 400 more classifiers on only 30 concepts
#     (so each concept is a head of many models, as in a hub of shared classes), the near probes,
#     three collaborative indexes each at a third of the probes (three draws of the subsets; both
#     ways of choosing them, into collab-rounds-dense-N.txt), eval
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
W=${HUB_WORK:-$ROOT/.hub-work}
PY=$ROOT/.venv-py/bin/python
JOBS=${JOBS:-2}
MODELS=${HUB_MODELS:-180}
QUERIES=${HUB_QUERIES:-45}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
TOOL=$CARGO_TARGET_DIR/release/probelog-tool
RESEARCH=$CARGO_TARGET_DIR/release/probelog-research
mkdir -p "$W" "$W/results"
TIMES=$W/results/timings.txt
start_all=$(date +%s)

step() { # step NAME: prints and records the time of the previous step
    local now; now=$(date +%s)
    if [[ -n "${STEP:-}" ]]; then echo "$STEP $((now - STEP_START)) s" >> "$TIMES"; fi
    STEP=$1; STEP_START=$now
    echo "== hub: $1" >&2
}
echo "run $(date -u +%Y-%m-%dT%H:%M:%SZ) (steps whose output exists are skipped)" >> "$TIMES"

step python
./tools/setup-python.sh
./tools/setup-libtorch.sh

step npm
if [[ ! -d $W/npm/node_modules ]]; then
    mkdir -p "$W/npm"
    cp tools/hub/package.json tools/hub/package-lock.json "$W/npm/"
    (cd "$W/npm" && npm ci --no-audit --no-fund --ignore-scripts)
fi

step render
[[ -f $W/data/icons.npz ]] || nice "$PY" tools/hub/render.py --npm "$W/npm/node_modules" --out "$W/data" --jobs "$JOBS"

# train_hub DIR MODELS QUERIES CONCEPTS: plans, renders the views, trains (JOBS processes) and
# writes the manifests of one hub of classifiers.
train_hub() {
    local dir=$1 models=$2 queries=$3 concepts=$4
    (
        cd tools/hub
        [[ -f $dir/plan.json ]] || "$PY" train.py plan --data "$W/data" --out "$dir" \
            --models "$models" --queries "$queries" --concepts "$concepts"
        [[ -f $dir/views.npz ]] || nice "$PY" train.py views --data "$W/data" --out "$dir"
        local per=$(( (models + JOBS - 1) / JOBS )) pids=() j first last
        for ((j = 0; j < JOBS; j++)); do
            first=$((j * per)); last=$(( (j + 1) * per - 1 ))
            nice "$PY" train.py train --out "$dir" --first $first --last $last > "$dir/train-$first.log" 2>&1 &
            pids+=($!)
        done
        for p in "${pids[@]}"; do wait "$p"; done
        "$PY" train.py manifest --out "$dir"
    )
}

# new_index OUT PSET MANIFEST [APPEND OPTIONS...]: unless OUT exists, creates it (f16, as the
# artifacts are committed) for the probe set PSET and appends the manifest's models in one commit
# (written as OUT.tmp, then renamed).
new_index() {
    local out=$1 pset=$2 manifest=$3
    shift 3
    [[ -f $out ]] && return 0
    rm -f "$out.tmp"
    "$TOOL" create "$out.tmp" --probes "$pset" --dtype f16
    "$TOOL" append "$out.tmp" --manifest "$manifest" --probes "$pset" --device cpu "$@"
    mv "$out.tmp" "$out"
}

step train
H=$W/hub
train_hub "$H" "$MODELS" "$QUERIES" 300
cd tools/hub

KINDS="near far leaves"
step probes
for kind in $KINDS; do
    [[ -d $W/probes-$kind ]] || nice "$PY" make_probes.py --data "$W/data" --out "$W/probes-$kind" --kind $kind
done
cd "$ROOT"

step tool
nice cargo build --release -p probelog-tool -p probelog-research \
    --features probelog-tool/torch,probelog-research/torch --locked

step index
for kind in $KINDS; do
    I=$W/hub-$kind.plog
    [[ -f $W/$kind.pset ]] || "$TOOL" probes build --images "$W/probes-$kind" --out "$W/$kind.pset" --size 32
    new_index "$I" "$W/$kind.pset" "$H/models.toml"
done

step text-tower
# text_tower.py's defaults: the evaluated concepts held out (--holdout concepts), EfficientNet-Lite0
# at 64 px, a linear head, 4 views, 8 epochs.
T=$W/tower-concepts
[[ -f $T/clip_text.pt ]] || (cd tools/hub && nice "$PY" text_tower.py --data "$W/data" --hub "$H" --out "$T" --threads "$JOBS")
for kind in $KINDS; do
    # The stamp names the image tower whose embeddings the index holds.
    stamp=$W/hub-$kind.embedded
    want=$(sha256sum "$T/clip_image.pt" | cut -d' ' -f1)
    [[ -f $stamp && "$(cat "$stamp")" == "$want" ]] && continue
    "$TOOL" probes embed "$W/hub-$kind.plog" --clip-image "$T/clip_image.pt" --probes "$W/$kind.pset" --device cpu
    echo "$want" > "$stamp"
done

step collab
FRACTIONS=${HUB_FRACTIONS:-"0.1 0.2 0.33 0.5"}
for f in $FRACTIONS; do
    new_index "$W/collab-near-$f.plog" "$W/near.pset" "$H/gallery.toml" --probe-fraction "$f" --seed 1
done

# collab_rounds NAME HUB GALLERY: three draws of a third of the probes, chosen in two rounds (the
# default) and at random (--adaptive-share 0), each searched by the fully probed queries of HUB.
collab_rounds() {
    local name=$1 hub=$2 gallery=$3 out=$W/results/collab-rounds-$1.txt seed share
    for seed in 1 2 3; do
        for share in 0.5 0; do
            new_index "$W/collab-$name-0.33-share$share-s$seed.plog" "$W/near.pset" "$gallery" \
                --probe-fraction 0.33 --seed $seed --adaptive-share $share
        done
    done
    [[ -f $out ]] && return 0
    for seed in 1 2 3; do
        for share in 0.5 0; do
            echo "== --adaptive-share $share --seed $seed"
            nice "$RESEARCH" eval "$hub" --candidate "${HUB_CANDIDATE:-topk+rms:8}" \
                --collab "0.33=$W/collab-$name-0.33-share$share-s$seed.plog"
        done
    done > "$out.tmp"
    mv "$out.tmp" "$out"
}

step artifacts
# The hub indexes, f16, are committed (tools/hub/artifacts/, read by restore.sh), and the eval
# below measures exactly those files. An f32 index of an older build is converted in place first.
ART=tools/hub/artifacts
mkdir -p "$ART"
arts=("$W"/hub-{near,far,leaves}.plog)
for f in $FRACTIONS; do arts+=("$W/collab-near-$f.plog"); done
for f in "${arts[@]}"; do
    read -r dtype segments < <("$TOOL" info "$f" --json |
        "$PY" -c 'import json, sys; i = json.load(sys.stdin); print(i["dtype"], i["segment_count"])')
    if [[ $dtype != f16 ]]; then
        rm -f "$f.f16"
        "$TOOL" merge "$f.f16" "$f" --dtype f16 --no-graph > /dev/null
        mv "$f.f16" "$f"
    elif ((segments > 1)); then
        # Probe embeddings stored again leave the old ones behind until compacted.
        "$TOOL" compact "$f" --no-graph > /dev/null
    fi
    cmp -s "$f" "$ART/$(basename "$f")" || cp "$f" "$ART/"
done
cp "$T/text_eval_concepts.txt" "$ART/"
# The draws of a third of the probes, searched by the near hub's queries (as committed).
collab_rounds near "$W/hub-near.plog" "$H/gallery.toml"

step eval
R=$W/results
text=(--text-concepts "$T/text_eval_concepts.txt" --clip-text "$T/clip_text.pt"
      --tokenizer "$T/tokenizer.json" --context-length 32 --device cpu)
collab=()
for f in $FRACTIONS; do collab+=(--collab "$f=$W/collab-near-$f.plog"); done
# The default metric (`--metric blend` of search; eval's topk+rms:8) and its neighbours in weight
# (topk+rms:2 to :16 in eval's built-in list) and in k; the earlier blend (topk+all:W, in the
# list too); the hubness-calibrated union, which needs per-index statistics, as the
# measured-better direction.
CANDIDATE=${HUB_CANDIDATE:-topk+rms:8}
sensitivity=()
for v in topk+rms:8@8 topk+rms:8@32 topk+rms:8@64 \
         union@64 calibrated:union@64 calibrated:union@32 calibrated:union@128; do
    sensitivity+=(--variant "$v")
done
for kind in $KINDS; do
    eval_start=$(date +%s)
    extra=()
    # The raw logits (no-normalization ablation) and collaborative probing: near hub only.
    [[ $kind == near ]] && extra=(--raw-manifest "$H/models.toml" --probes "$W/$kind.pset" "${collab[@]}")
    if [[ ! -f $R/eval-$kind.json ]]; then
        nice "$RESEARCH" eval "$W/hub-$kind.plog" --ablations --k-sweep --probe-curve --variants \
            --candidate "$CANDIDATE" "${sensitivity[@]}" "${text[@]}" "${extra[@]}" \
            --report "$R/eval-$kind.json.tmp" > "$R/eval-$kind.txt"
        mv "$R/eval-$kind.json.tmp" "$R/eval-$kind.json"
    fi
    # Hubs of one architecture family (similar models), cut from the same index; logit queries
    # only (the text encoder is loaded once per concept, minutes per run).
    if [[ ! -f $R/families-$kind.txt ]]; then
        for arch in cnn resnet dwnet mlp vit; do
            echo "== --restrict arch=$arch"
            nice "$RESEARCH" eval "$W/hub-$kind.plog" --restrict arch=$arch --variants \
                --variant calibrated:union@64 --candidate "$CANDIDATE"
        done > "$R/families-$kind.txt.tmp"
        mv "$R/families-$kind.txt.tmp" "$R/families-$kind.txt"
    fi
    echo "eval-$kind $(( $(date +%s) - eval_start )) s" >> "$TIMES"
done

step dense-hub
# Collaborative probing needs concepts that many models share: the main hub's 300 concepts are
# heads of about 5 gallery models each. The dense hubs train N models on 30 concepts (a quarter
# of them queries), so each concept is a head of about N/4 gallery models.
for n in ${DENSE_SIZES:-100 400}; do
    D=$W/dense-$n
    train_hub "$D" "$n" $((n / 4)) 30
    I=$W/hub-dense-$n-near.plog
    new_index "$I" "$W/near.pset" "$D/models.toml"
    collab_rounds "dense-$n" "$I" "$D/gallery.toml"
    if [[ ! -f $R/variants-dense-$n.txt ]]; then
        nice "$RESEARCH" eval "$I" --variants --candidate "$CANDIDATE" > "$R/variants-dense-$n.txt.tmp"
        mv "$R/variants-dense-$n.txt.tmp" "$R/variants-dense-$n.txt"
    fi
    cp "$D/summary.txt" "$R/dense-$n-summary.txt"
done

step plot
cp "$H/summary.txt" "$R/hub-summary.txt"
cp "$T/tower.json" "$R/text-tower.json"
"$PY" tools/hub/plot.py --results "$R"
# The small results are kept in the repository (README figures): tables, reports, plots.
mkdir -p tools/hub/results
cp "$R"/eval-*.txt "$R"/eval-*.json "$R"/families-*.txt "$R"/variants-*.txt "$R"/*.png \
   "$R"/*summary.txt "$R"/collab-rounds-*.txt \
   "$R/text-tower.json" "$TIMES" tools/hub/results/
step done
echo "total $(( $(date +%s) - start_all )) s" >> "$TIMES"
cat "$TIMES" >&2
