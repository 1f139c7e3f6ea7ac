//! End-to-end tests of the `probelog-tool` binary (real processes, real files). Pins the index
//! that `append --probe-fraction` writes, bit for bit: a reference built in this process from the
//! collaborative-probing primitives (subsets, factor fit, completion, adaptive choice) and the
//! writer, step by step as the policy is specified, must equal the command's index in every
//! descriptor bit, observed probe set and model record, with and without the adaptive round and
//! with models refused under `--skip-failed`.

mod common;
use common::fixture::*;
use common::*;

use std::fs;
use std::path::{Path, PathBuf};

use probelog::collab::{
    CollabOptions, Observations, ProbeFactors, adaptive_probes, adaptive_split, sample_probe_count,
};
use probelog::writer::ExistingName;
use probelog::{AppendOptions, Index, IndexWriter, LockWait, LogitMatrix, ModelInput};

/// Rows `observed` of a `[P, l]` matrix.
fn rows(logits: &[f32], l: usize, observed: &[u32]) -> Vec<f32> {
    probelog::collab::ProbeRows::select(logits, l, observed).data
}

type Model = (String, Vec<String>, Vec<f32>);

/// The policy of `append --probe-fraction F --adaptive-share S --seed SEED --rank R` over the
/// models `(name, labels, raw logits)` at their positions in the manifest, staged with the writer
/// into `index` and committed. `--skip-failed` cases: a `None` model failed in the first round
/// (its position still counts for the seeds); a position in `unstaged` ran both rounds (its first
/// round helps fit the factors) but was refused when staged.
fn reference(
    index: &Path,
    all: &[Option<Model>],
    unstaged: &[usize],
    fraction: f64,
    share: f64,
    seed: u64,
    rank: usize,
) {
    ok(&["create", s(index), "--num-probes", &P.to_string()]);
    let mut writer = IndexWriter::open(index, LockWait::Fail).unwrap();
    let (random, adaptive) = adaptive_split(P, fraction, share).unwrap();
    let options = CollabOptions {
        rank,
        seed,
        ..CollabOptions::default()
    };
    let stage = |writer: &mut IndexWriter, (name, labels, logits): &Model, observed: &[u32]| {
        let l = labels.len();
        let data = rows(logits, l, observed);
        let input = ModelInput {
            name: name.clone(),
            source: String::new(),
            meta: Vec::new(),
            labels: Some(labels.clone()),
            logits: LogitMatrix::new(&data, observed.len(), l).unwrap(),
        };
        let opts = AppendOptions {
            existing_name: ExistingName::Refuse,
            ..AppendOptions::default()
        };
        writer
            .add_partial_model(input, observed, opts, options)
            .unwrap();
    };
    let (positions, models): (Vec<usize>, Vec<&Model>) = all
        .iter()
        .enumerate()
        .filter_map(|(i, m)| Some((i, m.as_ref()?)))
        .unzip();
    let first: Vec<Vec<u32>> = positions
        .iter()
        .map(|&i| sample_probe_count(P, random, seed + i as u64))
        .collect();
    if adaptive == 0 {
        for ((model, observed), i) in models.iter().zip(&first).zip(&positions) {
            if !unstaged.contains(i) {
                stage(&mut writer, model, observed);
            }
        }
    } else {
        let obs: Vec<Observations> = models
            .iter()
            .zip(&first)
            .map(|((name, labels, logits), observed)| {
                let l = labels.len();
                let data = rows(logits, l, observed);
                let m = LogitMatrix::new(&data, observed.len(), l).unwrap();
                Observations::from_logits(name, &m, observed, P, false)
                    .unwrap()
                    .0
            })
            .collect();
        let (factors, lambda) = match writer.stored_factors().unwrap() {
            Some(stored) => stored,
            None => (
                ProbeFactors::fit(P, &obs, &options).unwrap(),
                options.lambda,
            ),
        };
        for (((model, observed), o), i) in models.iter().zip(&first).zip(&obs).zip(&positions) {
            if unstaged.contains(i) {
                continue;
            }
            let predicted = factors.impute(o, lambda).unwrap();
            let extra = adaptive_probes(&predicted, o.logits, P, observed, adaptive).unwrap();
            let mut union = [observed.clone(), extra].concat();
            union.sort_unstable();
            stage(&mut writer, model, &union);
        }
    }
    writer.commit().unwrap();
}

/// Descriptor bits per entry, observed probes per model, the models' records from `info`.
type Dump = (Vec<Vec<u32>>, Vec<Option<Vec<u32>>>, serde_json::Value);

/// What an index holds, for bit-for-bit comparisons.
fn dump(index: &Path) -> Dump {
    let opened = Index::open(index).unwrap();
    let descriptors = (0..opened.entry_count())
        .map(|e| {
            opened
                .descriptor(e)
                .unwrap()
                .iter()
                .map(|v| v.to_bits())
                .collect()
        })
        .collect();
    let observed = (0..opened.model_count())
        .map(|m| opened.observed_probes(m).unwrap())
        .collect();
    let info = model_info(s(index));
    (descriptors, observed, info["models"].clone())
}

/// The six fixture models as `(name, labels, logits)`.
fn six(f: &Fixture) -> (PathBuf, Vec<Model>) {
    let (m, raw) = f.six_model_manifest();
    let models = raw
        .into_iter()
        .enumerate()
        .map(|(i, logits)| {
            let labels = SIX_MODELS[i]
                .iter()
                .map(|c| format!("concept-{c}"))
                .collect();
            (format!("m{i}"), labels, logits)
        })
        .collect();
    (m, models)
}

#[test]
fn collaborative_append_writes_the_reference_index_bit_for_bit() {
    let f = Fixture::new();
    let (m, models) = six(&f);
    for (share, seed, rank) in [("0.5", 3u64, 6usize), ("0", 5, 4), ("0.75", 0, 6)] {
        let tag = format!("{share}-{seed}");
        let cli = f.path(&format!("cli-{tag}.plog"));
        ok(&["create", s(&cli), "--num-probes", &P.to_string()]);
        let r = ok_json(&fixture::half_probed(
            s(&cli),
            &m,
            &[
                "--adaptive-share",
                share,
                "--seed",
                &seed.to_string(),
                "--rank",
                &rank.to_string(),
            ],
        ));
        assert_eq!(r["models_added"], 6);
        let want = f.path(&format!("ref-{tag}.plog"));
        let all: Vec<Option<Model>> = models.iter().cloned().map(Some).collect();
        reference(&want, &all, &[], 0.5, share.parse().unwrap(), seed, rank);
        assert_eq!(dump(&cli), dump(&want), "share {share}, seed {seed}");
    }
}

#[test]
fn models_refused_in_either_round_are_left_out_as_before() {
    let f = Fixture::new();
    let (_, models) = six(&f);
    // Model 1 fails in the first round (a NaN on every probe), model 3 when it is staged after
    // its second round (its labels file is missing).
    let mut bad = models[1].2.clone();
    for v in bad.iter_mut().step_by(SIX_MODELS[1].len()) {
        *v = f32::NAN;
    }
    write_npy(&f.path("m1.npy"), &bad, P, SIX_MODELS[1].len());
    fs::remove_file(f.path("m3.labels")).unwrap();
    let (cli, m) = (f.path("cli.plog"), f.path("m.toml"));
    ok(&["create", s(&cli), "--num-probes", &P.to_string()]);
    let args = fixture::half_probed(
        s(&cli),
        &m,
        &["--seed", "3", "--rank", "6", "--skip-failed", "--json"],
    );
    let out = run(&args);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["models_added"], 4);
    let skipped: Vec<&str> = r["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(skipped, ["m1", "m3"], "in the order they failed");
    let err = stderr(&out);
    assert!(
        err.contains("\"m1\" (model 2 of") && err.contains("\"m3\" (model 4 of"),
        "{err}"
    );
    // The others keep the subsets of their manifest positions, and model 3's first round helps
    // fit the factors that choose the second rounds, though model 3 is not stored.
    let all: Vec<Option<Model>> = models
        .iter()
        .enumerate()
        .map(|(i, m)| (i != 1).then(|| m.clone()))
        .collect();
    let want = f.path("ref.plog");
    reference(&want, &all, &[3], 0.5, 0.5, 3, 6);
    assert_eq!(dump(&cli), dump(&want));
    ok(&["verify", s(&cli)]);
}
