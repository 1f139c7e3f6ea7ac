//! Collaborative probing through the index: partially probed models are completed at commit from
//! probe factors that the index stores, and later appends fold in with the stored factors.

use probelog::collab::{CollabOptions, sample_probes};
use probelog::testkit::synth::standard_normal;
use probelog::{
    AppendOptions, Index, IndexWriter, LockWait, LogitMatrix, ModelAdded, ModelInput, compact,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::common;

const PROBES: usize = 120;
const RANK: usize = 4;

/// Models whose logits are exactly rank `RANK` over the probes (plus a per-logit scale and shift),
/// so completion from a subset of probes can recover them.
struct LowRankZoo {
    basis: Vec<f32>, // [PROBES, RANK]
    rng: ChaCha8Rng,
}

impl LowRankZoo {
    fn new(seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let basis = (0..PROBES * RANK)
            .map(|_| standard_normal(&mut rng))
            .collect();
        LowRankZoo { basis, rng }
    }

    /// Row-major [PROBES, logits] raw logits.
    fn model(&mut self, logits: usize) -> Vec<f32> {
        let codes: Vec<f32> = (0..logits * RANK)
            .map(|_| standard_normal(&mut self.rng))
            .collect();
        let mut out = vec![0f32; PROBES * logits];
        for p in 0..PROBES {
            for j in 0..logits {
                let v: f32 = (0..RANK)
                    .map(|k| self.basis[p * RANK + k] * codes[j * RANK + k])
                    .sum();
                out[p * logits + j] = 3.0 * v + 1.5;
            }
        }
        out
    }
}

fn input<'a>(name: &str, logits: &'a [f32], rows: usize, l: usize) -> ModelInput<'a> {
    ModelInput {
        name: name.into(),
        source: String::new(),
        meta: vec![],
        labels: None,
        logits: LogitMatrix::new(logits, rows, l).unwrap(),
    }
}

fn rows_of(logits: &[f32], l: usize, observed: &[u32]) -> Vec<f32> {
    observed
        .iter()
        .flat_map(|&p| logits[p as usize * l..(p as usize + 1) * l].to_vec())
        .collect()
}

/// Stages `rows` (raw logits of `l` logits on the `observed` probes, row-major) as the partially
/// probed model `name`.
fn add_partial(
    w: &mut IndexWriter,
    name: &str,
    rows: &[f32],
    observed: &[u32],
    l: usize,
    collab: CollabOptions,
) -> probelog::Result<ModelAdded> {
    let input = input(name, rows, rows.len() / l, l);
    w.add_partial_model(input, observed, AppendOptions::default(), collab)
}

fn options() -> CollabOptions {
    CollabOptions {
        rank: RANK,
        lambda: 1e-3,
        iterations: 30,
        seed: 2,
    }
}

/// Stages each of `models` (raw logits of `l` logits over every probe) probed on its own third of
/// the probes, seeded from `seed`, as `partial-i`; returns the subsets.
fn add_partials(w: &mut IndexWriter, models: &[Vec<f32>], l: usize, seed: u64) -> Vec<Vec<u32>> {
    let mut subsets = Vec::new();
    for (i, m) in models.iter().enumerate() {
        let observed = sample_probes(PROBES, 1.0 / 3.0, seed + i as u64).unwrap();
        let rows = rows_of(m, l, &observed);
        let added = add_partial(w, &format!("partial-{i}"), &rows, &observed, l, options());
        assert_eq!(added.unwrap().logits as usize, l);
        subsets.push(observed);
    }
    subsets
}

/// Stages each of `models` (raw logits of `l` logits over every probe) as `{prefix}{i}`.
fn add_fully_probed(w: &mut IndexWriter, prefix: &str, models: &[Vec<f32>], l: usize) {
    for (i, m) in models.iter().enumerate() {
        w.add_model(
            input(&format!("{prefix}{i}"), m, PROBES, l),
            AppendOptions::default(),
        )
        .unwrap();
    }
}

/// `ref.plog` in `dir`: `models` probed on every probe, as `r0`, `r1`, ...
fn fully_probed(dir: &std::path::Path, models: &[Vec<f32>], l: usize) -> Index {
    let path = common::create_index(dir, "ref.plog", PROBES, probelog::Dtype::F32);
    let mut w = IndexWriter::open(&path, LockWait::Fail).unwrap();
    add_fully_probed(&mut w, "r", models, l);
    w.commit().unwrap();
    Index::open(&path).unwrap()
}

/// A fresh f32 index named `name` in a new folder, and a low-rank zoo seeded with `seed`.
fn new_index(name: &str, seed: u64) -> (tempfile::TempDir, std::path::PathBuf, LowRankZoo) {
    let dir = common::tempdir();
    let path = common::create_index(dir.path(), name, PROBES, probelog::Dtype::F32);
    (dir, path, LowRankZoo::new(seed))
}

fn max_difference(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn partial_models_are_completed_and_later_appends_fold_in() {
    let seed = 21;
    let (dir, path, mut zoo) = new_index("c.plog", seed);
    let l = 5;
    // First commit: 3 fully probed models and 2 probed on a third of the probes.
    let full: Vec<Vec<f32>> = (0..3).map(|_| zoo.model(l)).collect();
    let partial: Vec<Vec<f32>> = (0..2).map(|_| zoo.model(l)).collect();
    let mut w = IndexWriter::open(&path, LockWait::Fail).unwrap();
    add_fully_probed(&mut w, "full-", &full, l);
    let subsets = add_partials(&mut w, &partial, l, seed);
    w.commit().unwrap();
    drop(w);

    let index = Index::open(&path).unwrap();
    assert!(index.verify().is_ok(), "seed {seed}: {:?}", index.verify());
    let (factors, lambda) = index.probe_factors().unwrap().expect("factors are stored");
    assert_eq!((factors.rank, lambda), (RANK, 1e-3));
    assert_eq!(index.observed_probes(0).unwrap(), None);
    assert_eq!(
        index.observed_probes(3).unwrap().as_ref(),
        Some(&subsets[0])
    );
    // The completed descriptors of a partial model match what full probing would have given.
    let reference = fully_probed(dir.path(), &partial, l);
    for i in 0..2u64 {
        for j in 0..l as u64 {
            let got = index
                .descriptor(index.model(3 + i).unwrap().first_entry + j)
                .unwrap();
            let want = reference.descriptor(i * l as u64 + j).unwrap();
            let err = max_difference(&got, &want);
            assert!(
                err < 0.05,
                "seed {seed}: model {i} logit {j}: max error {err}"
            );
        }
    }

    // A later partial append folds in with the stored factors and leaves them unchanged.
    let later = zoo.model(l);
    let observed = sample_probes(PROBES, 0.4, 99).unwrap();
    let rows = rows_of(&later, l, &observed);
    let mut w = IndexWriter::open(&path, LockWait::Fail).unwrap();
    add_partial(&mut w, "later", &rows, &observed, l, options()).unwrap();
    w.commit().unwrap();
    drop(w);
    let index = Index::open(&path).unwrap();
    assert_eq!(index.probe_factors().unwrap().unwrap().0, factors);
    assert_eq!(index.observed_probes(5).unwrap(), Some(observed));

    // Compaction keeps the factors, the observed masks and the descriptors.
    let before: Vec<Vec<f32>> = (0..index.entry_count())
        .map(|e| index.descriptor(e).unwrap())
        .collect();
    compact(&path, LockWait::Fail).unwrap();
    let compacted = Index::open(&path).unwrap();
    assert_eq!(compacted.probe_factors().unwrap().unwrap().0, factors);
    assert_eq!(
        compacted.observed_probes(3).unwrap().as_ref(),
        Some(&subsets[0])
    );
    assert_eq!(compacted.observed_probes(1).unwrap(), None);
    for (e, d) in before.iter().enumerate() {
        assert_eq!(&compacted.descriptor(e as u64).unwrap(), d);
    }
    assert!(compacted.verify().is_ok());
}

#[test]
fn too_few_logits_to_fit_factors_is_refused_and_nothing_is_written() {
    let (_dir, path, mut zoo) = new_index("few.plog", 3);
    let m = zoo.model(2);
    let observed = sample_probes(PROBES, 0.5, 1).unwrap();
    let rows = rows_of(&m, 2, &observed);
    let sequence = Index::open(&path).unwrap().sequence();
    let mut w = IndexWriter::open(&path, LockWait::Fail).unwrap();
    let opts = CollabOptions {
        rank: 8,
        ..options()
    };
    add_partial(&mut w, "p", &rows, &observed, 2, opts).unwrap();
    let err = w.commit().unwrap_err().to_string();
    assert!(err.contains("at least 8 logits"), "{err}");
    drop(w);
    let index = Index::open(&path).unwrap();
    assert_eq!((index.sequence(), index.entry_count()), (sequence, 0));
}

#[test]
fn partial_inputs_are_checked() {
    let dir = common::tempdir();
    let path = common::create_index(dir.path(), "chk.plog", PROBES, probelog::Dtype::F32);
    let mut w = IndexWriter::open(&path, LockWait::Fail).unwrap();
    let rows = vec![1.0f32; 6];
    let bad: [&[u32]; 3] = [&[0, 1], &[3, 2, 9], &[0, 5, PROBES as u32]];
    for observed in bad {
        let r = add_partial(&mut w, "x", &rows, observed, 2, options());
        assert!(r.is_err(), "{observed:?} was accepted");
    }
    let nan = [1.0, f32::NAN, 2.0, 3.0, 4.0, 5.0];
    let e = add_partial(&mut w, "nan", &nan, &[0, 1, 2], 2, options())
        .unwrap_err()
        .to_string();
    assert!(e.contains("nan") && e.contains("logit 1"), "{e}");
}

#[test]
fn damaged_stored_factors_are_refused_by_a_later_partial_append() {
    let (_dir, path, mut zoo) = new_index("dmg.plog", 8);
    let l = 5;
    let observed = sample_probes(PROBES, 0.5, 3).unwrap();
    let mut w = IndexWriter::open(&path, LockWait::Fail).unwrap();
    for i in 0..2 {
        let m = zoo.model(l);
        let rows = rows_of(&m, l, &observed);
        add_partial(&mut w, &format!("p{i}"), &rows, &observed, l, options()).unwrap();
    }
    w.commit().unwrap();
    drop(w);
    let mut bytes = std::fs::read(&path).unwrap();
    let (_, offset, _) = common::section_ending(&bytes, "probe factors");
    bytes[offset as usize + 100] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();
    let m = zoo.model(l);
    let rows = rows_of(&m, l, &observed);
    let mut w = IndexWriter::open(&path, LockWait::Fail).unwrap();
    add_partial(&mut w, "late", &rows, &observed, l, options()).unwrap();
    let err = w.commit().unwrap_err();
    assert!(
        matches!(err, probelog::Error::ChecksumMismatch { .. }),
        "{err}"
    );
    drop(w);
    assert_eq!(Index::open(&path).unwrap().model_count(), 2);
}

#[test]
fn refactorizing_compaction_completes_partial_models_better() {
    let seed = 31;
    let (dir, path, mut zoo) = new_index("rf.plog", seed);
    let l = 3;
    // Two partial models fit factors on their own 6 logits, a third of the probes each: poor.
    let partial: Vec<Vec<f32>> = (0..2).map(|_| zoo.model(l)).collect();
    let mut w = IndexWriter::open(&path, LockWait::Fail).unwrap();
    let subsets = add_partials(&mut w, &partial, l, seed);
    w.commit().unwrap();
    // Then fully probed models arrive, which the stored factors never saw.
    let full: Vec<Vec<f32>> = (0..6).map(|_| zoo.model(l)).collect();
    add_fully_probed(&mut w, "full-", &full, l);
    w.commit().unwrap();
    drop(w);
    let reference = fully_probed(dir.path(), &partial, l);
    let error = |index: &Index| -> f32 {
        (0..2 * l as u64)
            .map(|e| {
                max_difference(
                    &index.descriptor(e).unwrap(),
                    &reference.descriptor(e).unwrap(),
                )
            })
            .fold(0.0, f32::max)
    };
    let before = Index::open(&path).unwrap();
    let error_before = error(&before);
    let full_before: Vec<Vec<f32>> = (2 * l as u64..before.entry_count())
        .map(|e| before.descriptor(e).unwrap())
        .collect();

    let opts = probelog::CompactOptions {
        refactorize: Some(options()),
        ..Default::default()
    };
    probelog::compact_with(&path, LockWait::Fail, opts).unwrap();
    let after = Index::open(&path).unwrap();
    let error_after = error(&after);
    assert!(
        error_after < 0.02 && error_after < error_before / 10.0,
        "seed {seed}: max error {error_before} before, {error_after} after refactorizing"
    );
    // Fully probed models and the observed masks are kept as they were.
    for (i, d) in full_before.iter().enumerate() {
        assert_eq!(&after.descriptor(2 * l as u64 + i as u64).unwrap(), d);
    }
    assert_eq!(
        after.observed_probes(0).unwrap().as_ref(),
        Some(&subsets[0])
    );
    assert_eq!(after.observed_probes(2).unwrap(), None);
    assert!(after.verify().is_ok(), "{:?}", after.verify());
}
