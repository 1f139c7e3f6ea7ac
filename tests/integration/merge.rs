//! Merging index files: the merged file searches exactly as one built in a single pass, inputs
//! that cannot join are refused by name with nothing left behind, a merge cut at any storage
//! operation never yields a file that opens damaged, and collaborative-probing factors are
//! refitted over the whole.

use std::path::{Path, PathBuf};

use probelog::collab::{CollabOptions, sample_probes};
use probelog::testkit::synth::{SynthConfig, SynthZoo};
use probelog::testkit::{FaultyStorage, hidden_files};
use probelog::{
    AppendOptions, CreateOptions, Dtype, Error, Grouping, Index, IndexWriter, LockWait,
    LogitMatrix, MergeOptions, MergeSummary, MergedFactors, ModelInput, ProbeSetId, Query,
    SearchParams, create, merge,
};

use crate::common::{self, TestModel};

pub(crate) const PROBES: usize = 64;

pub(crate) fn models(seed: u64, prefix: &str, count: usize) -> Vec<TestModel> {
    let mut rng = common::rng(seed);
    (0..count)
        .map(|i| common::labeled_model(&mut rng, &format!("{prefix}{i}"), PROBES, 2 + i % 4))
        .collect()
}

/// Three shards of `all` (the middle one in two commits and with a deleted model), and one
/// index of all of them appended in one pass.
pub(crate) fn shards_and_single(
    dir: &Path,
    all: &[TestModel],
    dtype: Dtype,
) -> (Vec<PathBuf>, PathBuf) {
    let single = common::index_with(dir, "single.plog", PROBES, dtype, all);
    let cut = [0, all.len() / 3, 2 * all.len() / 3, all.len()];
    let mut shards = Vec::new();
    for s in 0..3 {
        let path = common::create_index(dir, &format!("shard{s}.plog"), PROBES, dtype);
        let part = &all[cut[s]..cut[s + 1]];
        if s == 1 {
            let half = part.len() / 2;
            common::append(&path, &part[..half]);
            common::append(&path, &models(99, "gone", 1));
            common::append(&path, &part[half..]);
            let mut w = IndexWriter::open(&path, LockWait::Fail).unwrap();
            w.delete_models_named("gone0").unwrap();
            w.commit().unwrap();
        } else {
            common::append(&path, part);
        }
        shards.push(path);
    }
    (shards, single)
}

pub(crate) fn refs(paths: &[PathBuf]) -> Vec<&Path> {
    paths.iter().map(PathBuf::as_path).collect()
}

/// Merges `shards` into `dir/merged.plog` with `opts`; returns its path and the merge's summary.
pub(crate) fn merge_shards(
    dir: &Path,
    shards: &[PathBuf],
    opts: &MergeOptions,
) -> (PathBuf, MergeSummary) {
    let out = dir.join("merged.plog");
    let done = merge(&out, &refs(shards), opts).unwrap();
    (out, done)
}

/// `count` models (seeded with `seed`) as three shards, as one index appended in one pass, and the
/// shards' merge, all in `dtype` in one folder.
pub(crate) struct MergedShards {
    /// The folder, removed when the fixture is dropped.
    _dir: tempfile::TempDir,
    pub(crate) all: Vec<TestModel>,
    pub(crate) shards: Vec<PathBuf>,
    pub(crate) single: PathBuf,
    pub(crate) merged: PathBuf,
    pub(crate) summary: MergeSummary,
}

impl MergedShards {
    pub(crate) fn new(seed: u64, count: usize, dtype: Dtype) -> Self {
        let dir = common::tempdir();
        let all = models(seed, "m", count);
        let (shards, single) = shards_and_single(dir.path(), &all, dtype);
        let (merged, summary) = merge_shards(dir.path(), &shards, &MergeOptions::default());
        MergedShards {
            _dir: dir,
            all,
            shards,
            single,
            merged,
            summary,
        }
    }
}

/// Opens every index of `paths`.
pub(crate) fn open_all(paths: &[PathBuf]) -> Vec<Index> {
    paths.iter().map(|p| Index::open(p).unwrap()).collect()
}

/// What a search found, comparable across files: model name, logit, label and score bits.
fn found(
    index: &Index,
    query: &Query<'_>,
    params: &SearchParams,
) -> Vec<(String, Option<u32>, Option<String>, u32)> {
    index
        .search(query, params)
        .unwrap()
        .hits
        .into_iter()
        .map(|h| (h.model, h.logit, h.label, h.score.to_bits()))
        .collect()
}

#[test]
fn merged_file_searches_as_one_built_in_a_single_pass() {
    for dtype in [Dtype::F32, Dtype::F16] {
        let fixture = MergedShards::new(1, 12, dtype);
        let done = &fixture.summary;
        assert_eq!(done.inputs, 3);
        assert_eq!(done.models_dropped, 1);
        assert_eq!(done.factors, MergedFactors::None);
        let a = Index::open(&fixture.single).unwrap();
        let b = Index::open(&fixture.merged).unwrap();
        assert!(b.verify().is_ok(), "{:?}", b.verify());
        assert_eq!(
            (b.model_count(), b.entry_count()),
            (a.model_count(), a.entry_count())
        );
        assert_eq!(
            (done.model_count, done.entry_count),
            (a.model_count(), a.entry_count())
        );
        assert_eq!(b.segment_count(), 1);
        for e in 0..a.entry_count() {
            assert_eq!(
                a.entry(e).unwrap(),
                b.entry(e).unwrap(),
                "{dtype:?} entry {e}"
            );
            assert_eq!(a.descriptor(e).unwrap(), b.descriptor(e).unwrap());
        }
        for m in 0..a.model_count() {
            let (x, y) = (a.model(m).unwrap(), b.model(m).unwrap());
            assert_eq!((x.name, x.source, x.meta), (y.name, y.source, y.meta));
        }
        let logits = fixture.all[5].column(1);
        for params in common::param_variants(15, 8) {
            for e in (0..a.entry_count()).step_by(5) {
                let q = Query::Entry(e);
                assert_eq!(
                    found(&a, &q, &params),
                    found(&b, &q, &params),
                    "{dtype:?} {params:?} entry {e}"
                );
                if params.grouping != Grouping::ModelMean {
                    let ex = SearchParams {
                        exclude_same_model: true,
                        ..params
                    };
                    assert_eq!(found(&a, &q, &ex), found(&b, &q, &ex));
                }
            }
            let q = Query::Vector(&logits);
            let (x, y) = (
                a.search(&q, &params).unwrap(),
                b.search(&q, &params).unwrap(),
            );
            assert_eq!(x, y, "{dtype:?} {params:?} vector query");
        }
    }
}

#[test]
fn inputs_that_cannot_join_are_refused_by_name_and_nothing_is_left() {
    let dir = common::tempdir();
    let d = dir.path();
    let good = common::index_with(d, "good.plog", PROBES, Dtype::F32, &models(2, "a", 3));
    let other = common::index_with(d, "other.plog", PROBES, Dtype::F32, &models(3, "b", 3));
    let out = d.join("out.plog");
    let refused = |inputs: &[&Path], opts: &MergeOptions| -> Error {
        let err = merge(&out, inputs, opts).expect_err("the merge must be refused");
        assert!(!out.exists(), "{err}: the output exists");
        assert!(
            hidden_files(d).is_empty(),
            "{err}: left {:?}",
            hidden_files(d)
        );
        err
    };
    let names_input = |err: &Error, path: &Path, words: &str| {
        let line = err.to_string();
        assert!(
            matches!(err, Error::InputFile { path: p, .. } if p == path),
            "{line}"
        );
        assert!(line.contains(words) && !line.contains('\n'), "{line}");
    };

    // Another probe set of the same size.
    let named = d.join("named.plog");
    let names: Vec<String> = (0..PROBES).map(|p| format!("probe-{p}")).collect();
    let mut opts = CreateOptions::new(PROBES as u32);
    opts.probe_set = ProbeSetId::from_names(&names);
    create(&named, &opts).unwrap();
    let err = refused(&[&good, &named], &MergeOptions::default());
    names_input(&err, &named, "fingerprint");
    // Another probe count, another dtype.
    let wide = common::create_index(d, "wide.plog", PROBES + 8, Dtype::F32);
    names_input(
        &refused(&[&good, &wide], &MergeOptions::default()),
        &wide,
        "probes",
    );
    let half = common::create_index(d, "half.plog", PROBES, Dtype::F16);
    names_input(
        &refused(&[&good, &half], &MergeOptions::default()),
        &half,
        "f16",
    );
    // A live name in two inputs, unless asked to keep both.
    let twin = common::index_with(d, "twin.plog", PROBES, Dtype::F32, &models(4, "a", 1));
    names_input(
        &refused(&[&good, &twin], &MergeOptions::default()),
        &twin,
        "\"a0\"",
    );
    let keep = MergeOptions {
        keep_duplicate_names: true,
        ..Default::default()
    };
    merge(&out, &[&good, &twin], &keep).unwrap();
    assert_eq!(Index::open(&out).unwrap().model_count(), 4);
    // The output exists: refused unless replace; it is never an input.
    let before = std::fs::read(&out).unwrap();
    assert!(matches!(
        merge(&out, &[&good, &other], &MergeOptions::default()),
        Err(Error::AlreadyExists { .. })
    ));
    assert_eq!(std::fs::read(&out).unwrap(), before);
    let replace = MergeOptions {
        replace: true,
        ..Default::default()
    };
    for inputs in [
        vec![out.as_path(), good.as_path()],
        vec![good.as_path(), out.as_path()],
    ] {
        let err = merge(&out, &inputs, &replace).unwrap_err();
        assert!(err.to_string().contains("is the input"), "{err}");
        assert_eq!(std::fs::read(&out).unwrap(), before);
    }
    let link = d.join("link.plog");
    std::fs::hard_link(&good, &link).unwrap();
    let err = merge(&link, &[&good, &other], &replace).unwrap_err();
    assert!(err.to_string().contains("is the input"), "{err}");
    std::fs::remove_file(&link).unwrap();
    let done = merge(&out, &[&good, &other], &replace).unwrap();
    assert_eq!(done.model_count, 6);
    assert!(Index::open(&out).unwrap().verify().is_ok());
    std::fs::remove_file(&out).unwrap();

    // A damaged input is refused with the section that is damaged.
    let img = std::fs::read(&other).unwrap();
    let (name, offset, len) = common::section_ending(&img, "descriptors");
    let mut bad = img.clone();
    bad[(offset + len / 2) as usize] ^= 0x40;
    std::fs::write(&other, &bad).unwrap();
    let err = refused(&[&good, &other], &MergeOptions::default());
    assert!(
        matches!(&err, Error::Damaged { path, first, .. } if path == &other && first.starts_with(&name)),
        "{err}"
    );
}

#[test]
fn a_merge_cut_at_any_storage_operation_never_yields_a_damaged_file() {
    let dir = common::tempdir();
    let all = models(5, "m", 9);
    let (shards, _) = shards_and_single(dir.path(), &all, Dtype::F32);
    let inputs = open_all(&shards);
    let inputs: Vec<&Index> = inputs.iter().collect();
    let opts = MergeOptions::default();
    let mut full = FaultyStorage::new(Vec::new());
    let (summary, _) = probelog::writer::merge_into_storage(&mut full, &inputs, &opts).unwrap();
    let total = full.ops();
    assert!(total >= 3, "a merge writes and syncs: {total} operations");
    for n in 0..total {
        let mut storage = FaultyStorage::new(Vec::new()).fail_at_op(n);
        assert!(
            probelog::writer::merge_into_storage(&mut storage, &inputs, &opts).is_err(),
            "op {n}"
        );
        for seed in 0..4 {
            let img = storage.crash_image(seed);
            // A file that opens at all is the whole merge: the commit record is written last.
            if let Ok(raw) = common::open_image(&img) {
                assert!(raw.verify().is_ok(), "op {n} seed {seed}");
                assert_eq!(raw.entry_count(), summary.entry_count, "op {n} seed {seed}");
            }
        }
    }
}

#[test]
fn a_merge_removes_what_killed_merges_left_and_spares_running_ones() {
    let dir = common::tempdir();
    let d = dir.path();
    let a = common::index_with(d, "a.plog", PROBES, Dtype::F32, &models(6, "a", 2));
    let stale = d.join(".out.plog.merge-k1ll3d");
    let running = d.join(".out.plog.merge-running");
    let unrelated = d.join(".other.plog.merge-x");
    for p in [&stale, &running, &unrelated] {
        std::fs::write(p, b"partial").unwrap();
    }
    let held = std::fs::File::open(&running).unwrap();
    held.lock().unwrap();
    merge(&d.join("out.plog"), &[&a], &MergeOptions::default()).unwrap();
    assert!(!stale.exists(), "a stale merge file survived");
    assert!(running.exists(), "the file of a running merge was removed");
    assert!(unrelated.exists(), "another output's file was removed");
}

/// Collaborative probing across shards: a zoo with low-rank structure, a third of its models
/// probed on a quarter of the probes, built in one pass and as three shards merged. The merged
/// file refits the factors over everything observed and keeps every descriptor; with
/// `refactorize` it completes the partial models again with them. Top-1 of every query entry
/// (best other model's logit) is compared with the single pass and with the concept truth.
#[test]
fn merged_factors_search_as_well_as_a_single_pass() {
    let z = SynthZoo::generate(SynthConfig {
        probes: 200,
        concepts: 30,
        models: 60,
        latent_firing: true,
        seed: 7,
        ..Default::default()
    });
    let collab = CollabOptions {
        rank: 8,
        ..Default::default()
    };
    let dir = common::tempdir();
    let d = dir.path();
    let build = |path: &Path, range: std::ops::Range<usize>| {
        create(path, &CreateOptions::new(200)).unwrap();
        let mut w = IndexWriter::open(path, LockWait::Fail).unwrap();
        for i in range {
            let m = &z.models[i];
            let l = m.concepts.len();
            let labels = Some(m.concepts.iter().map(|c| format!("c{c}")).collect());
            if i % 3 == 2 {
                let observed = sample_probes(200, 0.25, i as u64).unwrap();
                let rows: Vec<f32> = observed
                    .iter()
                    .flat_map(|&p| m.logits[p as usize * l..(p as usize + 1) * l].to_vec())
                    .collect();
                let input = ModelInput {
                    name: m.name.clone(),
                    source: String::new(),
                    meta: vec![],
                    labels,
                    logits: LogitMatrix::new(&rows, observed.len(), l).unwrap(),
                };
                w.add_partial_model(input, &observed, AppendOptions::default(), collab)
                    .unwrap();
            } else {
                let input = ModelInput {
                    name: m.name.clone(),
                    source: String::new(),
                    meta: vec![],
                    labels,
                    logits: LogitMatrix::new(&m.logits, 200, l).unwrap(),
                };
                w.add_model(input, AppendOptions::default()).unwrap();
            }
        }
        w.commit().unwrap();
    };
    let single = d.join("single.plog");
    build(&single, 0..60);
    let shards: Vec<PathBuf> = (0..3).map(|s| d.join(format!("s{s}.plog"))).collect();
    for (s, p) in shards.iter().enumerate() {
        build(p, s * 20..(s + 1) * 20);
    }
    let merged = d.join("merged.plog");
    let done = merge(&merged, &refs(&shards), &MergeOptions::default()).unwrap();
    assert_eq!(done.factors, MergedFactors::Refitted { rank: 8 });
    let refit = d.join("refit.plog");
    let opts = MergeOptions {
        refactorize: Some(collab),
        ..Default::default()
    };
    let done = merge(&refit, &refs(&shards), &opts).unwrap();
    assert_eq!(done.factors, MergedFactors::Refactorized { rank: 8 });

    let single = Index::open(&single).unwrap();
    let merged = Index::open(&merged).unwrap();
    let refit = Index::open(&refit).unwrap();
    assert!(merged.probe_factors().unwrap().is_some());
    assert!(merged.verify().is_ok() && refit.verify().is_ok());
    // Every descriptor of the plain merge is its shard's.
    let shard0 = Index::open(&shards[0]).unwrap();
    for e in 0..shard0.entry_count() {
        assert_eq!(shard0.descriptor(e).unwrap(), merged.descriptor(e).unwrap());
    }
    let params = SearchParams {
        top: 1,
        exclude_same_model: true,
        ..Default::default()
    };
    let top1 = |ix: &Index, e: u64| ix.search(&Query::Entry(e), &params).unwrap().hits[0].clone();
    let n = single.entry_count();
    let (mut agree, mut agree_refit) = (0, 0);
    let mut correct = [0u32; 3];
    for e in 0..n {
        let truth = single.entry(e).unwrap().label;
        let hits = [top1(&single, e), top1(&merged, e), top1(&refit, e)];
        for (c, h) in correct.iter_mut().zip(&hits) {
            *c += u32::from(h.label == truth);
        }
        agree += u32::from(hits[1].entry == hits[0].entry);
        agree_refit += u32::from(hits[2].entry == hits[0].entry);
    }
    let rate = |x: u32| f64::from(x) / n as f64;
    println!(
        "{n} query entries: top-1 concept accuracy single pass {:.3}, merged {:.3}, merged \
         --refactorize {:.3}; top-1 equal to the single pass: merged {:.3}, merged \
         --refactorize {:.3}",
        rate(correct[0]),
        rate(correct[1]),
        rate(correct[2]),
        rate(agree),
        rate(agree_refit)
    );
    assert!(rate(correct[1]) >= rate(correct[0]) - 0.05);
    assert!(rate(correct[2]) >= rate(correct[0]) - 0.05);
    // Without refactorizing, the shards' partial models keep their completions from the shards'
    // own factors, so the top-1 logit often differs while the concept found does not.
    assert!(
        rate(agree) >= 0.5,
        "merged top-1 equal to the single pass {}",
        rate(agree)
    );
    assert!(
        rate(agree_refit) >= 0.95,
        "refactorized top-1 equal {}",
        rate(agree_refit)
    );
}

/// Probe-level sections come from the first input that has each: here the second input's
/// embedded probe set, with the probe names both share.
#[test]
fn probe_level_sections_come_from_the_first_input_that_has_them() {
    let dir = common::tempdir();
    let d = dir.path();
    let names: Vec<String> = (0..PROBES).map(|i| format!("img{i}.png")).collect();
    let pixels = (0..PROBES * 27)
        .map(|i| (i as u8).wrapping_mul(31))
        .collect();
    let set = probelog::probe_set::ProbeSet::new(3, names.clone(), pixels).unwrap();
    let (a, b) = (d.join("a.plog"), d.join("b.plog"));
    create(&a, &CreateOptions::for_probe_set(&set, false)).unwrap();
    create(&b, &CreateOptions::for_probe_set(&set, true)).unwrap();
    common::append(&a, &models(21, "a", 2));
    common::append(&b, &models(22, "b", 2));
    let out = d.join("out.plog");
    merge(&out, &[&a, &b], &MergeOptions::default()).unwrap();
    let merged = Index::open(&out).unwrap();
    let b = Index::open(&b).unwrap();
    assert_eq!(merged.probe_names().unwrap(), Some(names));
    assert_eq!(
        merged.embedded_probe_set_bytes(),
        b.embedded_probe_set_bytes()
    );
    assert!(merged.embedded_probe_set_bytes().is_some());
    assert!(merged.verify().is_ok());
}

/// When the live models are too few to refit the factors (the models that fitted them were
/// deleted), the first input's stored factors are kept.
#[test]
fn stored_factors_are_kept_when_too_few_live_logits_remain_to_refit() {
    let dir = common::tempdir();
    let path = common::create_index(dir.path(), "p.plog", PROBES, Dtype::F32);
    let full = models(23, "full", 3);
    let partial = &models(24, "partial", 1)[0];
    let observed: Vec<u32> = (0..PROBES as u32).step_by(2).collect();
    let rows: Vec<f32> = observed
        .iter()
        .flat_map(|&p| {
            partial.logits[p as usize * partial.n..(p as usize + 1) * partial.n].to_vec()
        })
        .collect();
    let collab = CollabOptions {
        rank: 8,
        ..Default::default()
    };
    let mut w = IndexWriter::open(&path, LockWait::Fail).unwrap();
    common::add_models(&mut w, &full);
    let input = ModelInput {
        name: partial.name.clone(),
        source: String::new(),
        meta: vec![],
        labels: None,
        logits: LogitMatrix::new(&rows, observed.len(), partial.n).unwrap(),
    };
    w.add_partial_model(input, &observed, AppendOptions::default(), collab)
        .unwrap();
    w.commit().unwrap();
    for m in &full {
        w.delete_models_named(&m.name).unwrap();
    }
    w.commit().unwrap();
    drop(w);
    let stored = Index::open(&path)
        .unwrap()
        .probe_factors()
        .unwrap()
        .unwrap();
    let out = dir.path().join("out.plog");
    let done = merge(&out, &[&path], &MergeOptions::default()).unwrap();
    assert_eq!(done.factors, MergedFactors::Kept { rank: 8 });
    assert_eq!(
        Index::open(&out).unwrap().probe_factors().unwrap().unwrap(),
        stored
    );
}
