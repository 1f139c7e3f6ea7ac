//! The collaborative-probing policy through its callback API (`collab::probe_batch`,
//! `collab::probe_model`): which probes each round asks the caller's prober for, what is staged,
//! refusals, and the checks on what a prober returns.

use probelog::collab::{
    CollabOptions, ModelDetails, Observations, ProbeFactors, ProbePlan, ProbeRows, Prober, Round,
    Staged, adaptive_probes, probe_batch, probe_model,
};
use probelog::testkit::synth::standard_normal;
use probelog::{AppendOptions, Error, ExistingName, Index, IndexWriter, LockWait, LogitMatrix};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::common;

const PROBES: usize = 120;
const LOGITS: usize = 5;
const RANK: usize = 4;

/// `n` models of `LOGITS` logits, raw `[PROBES, LOGITS]`, exactly rank `RANK` plus an offset.
fn zoo(n: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let basis: Vec<f32> = (0..PROBES * RANK)
        .map(|_| standard_normal(&mut rng))
        .collect();
    (0..n)
        .map(|_| {
            let codes: Vec<f32> = (0..LOGITS * RANK)
                .map(|_| standard_normal(&mut rng))
                .collect();
            let mut out = vec![0f32; PROBES * LOGITS];
            for p in 0..PROBES {
                for j in 0..LOGITS {
                    let v: f32 = (0..RANK)
                        .map(|k| basis[p * RANK + k] * codes[j * RANK + k])
                        .sum();
                    out[p * LOGITS + j] = 2.0 * v + 0.5;
                }
            }
            out
        })
        .collect()
}

fn rows_of(logits: &[f32], probes: &[u32]) -> ProbeRows {
    ProbeRows::select(logits, LOGITS, probes)
}

/// A prober over in-memory logits that records every call.
struct Fake {
    models: Vec<Vec<f32>>,
    calls: Vec<(usize, Round, Vec<u32>)>,
    finished: Vec<usize>,
    refused: Vec<usize>,
    /// This model's first run fails.
    broken: Option<usize>,
    /// Leave refused models out (else the batch ends).
    skip: bool,
    /// Return one row less than asked.
    short: bool,
}

impl Fake {
    fn new(models: Vec<Vec<f32>>) -> Self {
        Fake {
            models,
            calls: Vec::new(),
            finished: Vec::new(),
            refused: Vec::new(),
            broken: None,
            skip: false,
            short: false,
        }
    }
}

impl Prober for Fake {
    type Error = Error;

    fn run(&mut self, model: usize, round: Round, probes: &[u32]) -> Result<ProbeRows, Error> {
        self.calls.push((model, round, probes.to_vec()));
        if self.broken == Some(model) {
            return Err(Error::InvalidInput(format!("model {model} is broken")));
        }
        let mut rows = rows_of(&self.models[model], probes);
        if self.short {
            rows.rows -= 1;
            rows.data.truncate(rows.rows * LOGITS);
        }
        Ok(rows)
    }

    fn details(&mut self, model: usize) -> Result<ModelDetails, Error> {
        Ok(ModelDetails {
            source: format!("zoo:{model}"),
            labels: Some((0..LOGITS).map(|j| format!("m{model}-c{j}")).collect()),
            ..ModelDetails::default()
        })
    }

    fn refused(&mut self, model: usize, error: Error) -> Result<(), Error> {
        self.refused.push(model);
        if self.skip { Ok(()) } else { Err(error) }
    }

    fn finished(&mut self, model: usize) {
        self.finished.push(model);
    }
}

/// A new empty f32 index `c.plog` of `PROBES` probes in a new folder.
fn new_index() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = common::tempdir();
    let path = common::create_index(dir.path(), "c.plog", PROBES, probelog::Dtype::F32);
    (dir, path)
}

/// Probes the models `m0`, `m1`, ... (`count` of them) through `fake` as one batch under `plan`,
/// with the default append options.
fn probe_fakes(
    w: &mut IndexWriter,
    count: usize,
    plan: &ProbePlan,
    fake: &mut Fake,
) -> Result<Vec<Staged>, Error> {
    let names: Vec<String> = (0..count).map(|i| format!("m{i}")).collect();
    probe_batch(w, &names, AppendOptions::default(), plan, fake)
}

fn plan(share: f64) -> ProbePlan {
    let options = CollabOptions {
        rank: RANK,
        lambda: 0.1,
        ..CollabOptions::default()
    };
    ProbePlan::new(PROBES, 0.3, share, 7, options).unwrap()
}

#[test]
fn rounds_ask_for_the_seeded_subsets_then_the_completions_highest() {
    let (_dir, path) = new_index();
    let models = zoo(6, 1);
    let plan = plan(0.5);
    assert_eq!((plan.random, plan.adaptive), (18, 18));
    let mut fake = Fake::new(models.clone());
    let mut w = IndexWriter::open(&path, LockWait::Fail).unwrap();
    let staged = probe_fakes(&mut w, 6, &plan, &mut fake).unwrap();
    // Every first round before any second one, in batch order.
    let rounds: Vec<(usize, Round)> = fake.calls.iter().map(|c| (c.0, c.1)).collect();
    let want: Vec<(usize, Round)> = (0..6)
        .map(|i| (i, Round::Random))
        .chain((0..6).map(|i| (i, Round::Adaptive)))
        .collect();
    assert_eq!(rounds, want);
    // Round 1: the seeded subsets; round 2: the unobserved probes the completion from the
    // factors fitted on round 1 ranks highest.
    let first: Vec<Observations> = (0..6)
        .map(|i| {
            assert_eq!(fake.calls[i].2, plan.first_round(PROBES, i));
            let rows = rows_of(&models[i], &fake.calls[i].2);
            let m = LogitMatrix::new(&rows.data, rows.rows, LOGITS).unwrap();
            Observations::from_logits("m", &m, &fake.calls[i].2, PROBES, false)
                .unwrap()
                .0
        })
        .collect();
    let factors = ProbeFactors::fit(PROBES, &first, &plan.options).unwrap();
    for (i, obs) in first.iter().enumerate() {
        let predicted = factors.impute(obs, plan.options.lambda).unwrap();
        let extra =
            adaptive_probes(&predicted, LOGITS, PROBES, &obs.observed, plan.adaptive).unwrap();
        assert_eq!(fake.calls[6 + i].2, extra, "model {i}");
        let mut union = [obs.observed.clone(), extra].concat();
        union.sort_unstable();
        assert_eq!(staged[i].model, i);
        assert_eq!(staged[i].observed, union);
        assert_eq!(staged[i].added.model_id, i as u64);
    }
    assert_eq!(fake.finished, (0..6).collect::<Vec<_>>());
    w.commit().unwrap();
    drop(w);
    let index = Index::open(&path).unwrap();
    for s in &staged {
        assert_eq!(
            index.observed_probes(s.added.model_id).unwrap().unwrap(),
            s.observed
        );
        let info = index.model(s.added.model_id).unwrap();
        assert_eq!(
            info.source,
            format!("zoo:{}", s.model),
            "details are stored"
        );
    }
    // A later model folds in with the stored factors, through a closure.
    let late = zoo(1, 9).remove(0);
    let mut w = IndexWriter::open(&path, LockWait::Fail).unwrap();
    let mut asked = Vec::new();
    let one = probe_model(
        &mut w,
        "late",
        ModelDetails::default(),
        AppendOptions::default(),
        &plan,
        |round, probes| {
            asked.push(round);
            Ok(rows_of(&late, probes))
        },
    )
    .unwrap();
    assert_eq!(asked, [Round::Random, Round::Adaptive]);
    assert_eq!(one.observed.len(), plan.random + plan.adaptive);
    assert_eq!(one.added.model_id, 6);
    w.commit().unwrap();
    let index = Index::open(&path).unwrap();
    assert_eq!(index.observed_probes(6).unwrap().unwrap(), one.observed);
}

#[test]
fn share_zero_stages_the_seeded_subsets_alone() {
    let (_dir, path) = new_index();
    let plan = plan(0.0);
    assert_eq!((plan.random, plan.adaptive), (36, 0));
    let mut fake = Fake::new(zoo(3, 2));
    let mut w = IndexWriter::open(&path, LockWait::Fail).unwrap();
    let staged = probe_fakes(&mut w, 3, &plan, &mut fake).unwrap();
    assert!(fake.calls.iter().all(|c| c.1 == Round::Random));
    for (i, s) in staged.iter().enumerate() {
        assert_eq!(s.observed, plan.first_round(PROBES, i));
    }
    w.commit().unwrap();
}

#[test]
fn refused_models_are_left_out_or_end_the_batch() {
    let (_dir, path) = new_index();
    let plan = plan(0.5);
    // Left out: model 2 fails its first round and runs no second one.
    let mut fake = Fake::new(zoo(5, 3));
    fake.broken = Some(2);
    fake.skip = true;
    let mut w = IndexWriter::open(&path, LockWait::Fail).unwrap();
    let staged = probe_fakes(&mut w, 5, &plan, &mut fake).unwrap();
    let kept: Vec<usize> = staged.iter().map(|s| s.model).collect();
    assert_eq!(kept, [0, 1, 3, 4]);
    assert_eq!(fake.refused, [2]);
    assert_eq!(
        fake.finished,
        [2, 0, 1, 3, 4],
        "refused in round 1, the others after round 2"
    );
    assert!(
        !fake
            .calls
            .iter()
            .any(|c| c.0 == 2 && c.1 == Round::Adaptive)
    );
    // A writer refusal (a duplicate name) at staging goes the same way.
    let mut fake = Fake::new(zoo(2, 4));
    fake.skip = true;
    let dup = probe_batch(
        &mut w,
        &["m0".to_string(), "fresh".to_string()],
        AppendOptions {
            existing_name: ExistingName::Refuse,
            ..AppendOptions::default()
        },
        &plan,
        &mut fake,
    )
    .unwrap();
    assert_eq!(dup.len(), 1);
    assert_eq!(fake.refused, [0], "m0 is staged already");
    w.commit().unwrap();
    drop(w);
    // Not left out: the batch ends with the model's error.
    let mut fake = Fake::new(zoo(3, 5));
    fake.broken = Some(1);
    let mut w = IndexWriter::open(&path, LockWait::Fail).unwrap();
    let e = probe_fakes(&mut w, 3, &plan, &mut fake).unwrap_err();
    assert!(e.to_string().contains("model 1 is broken"), "{e}");
    assert_eq!(fake.calls.len(), 2, "nothing runs after the refusal");
}

#[test]
fn a_prober_must_return_one_row_per_probe() {
    let (_dir, path) = new_index();
    for share in [0.0, 0.5] {
        let mut fake = Fake::new(zoo(1, 6));
        fake.short = true;
        let mut w = IndexWriter::open(&path, LockWait::Fail).unwrap();
        let e = probe_fakes(&mut w, 1, &plan(share), &mut fake).unwrap_err();
        assert!(
            e.to_string().contains("asked for 36 probes")
                || e.to_string().contains("asked for 18 probes"),
            "{e}"
        );
        assert!(!w.has_pending());
    }
    // Without stored factors, one model of fewer logits than the rank cannot choose round 2.
    let mut w = IndexWriter::open(&path, LockWait::Fail).unwrap();
    let options = CollabOptions {
        rank: 8,
        ..CollabOptions::default()
    };
    let plan = ProbePlan::new(PROBES, 0.3, 0.5, 1, options).unwrap();
    let model = zoo(1, 7).remove(0);
    let e = probe_model(
        &mut w,
        "small",
        ModelDetails::default(),
        AppendOptions::default(),
        &plan,
        |_, probes| Ok(rows_of(&model, probes)),
    )
    .unwrap_err();
    assert!(e.to_string().contains("at least 8 logits"), "{e}");
}
