//! A repository that changes: deleted models never come back from any search path, before or
//! after compaction (which drops their bytes); a new version replaces the old in one commit;
//! names are unique unless asked otherwise; filters run inside the scan and the graph walk and
//! still fill `top`; explanations split a hit's score over the probes; a delete cut at every
//! storage operation leaves the old or the new state.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use probelog::testkit::FaultyStorage;
use probelog::{
    AnnOptions, AppendOptions, CompactOptions, CreateOptions, Dtype, Error, ExistingName, Grouping,
    Index, IndexWriter, LockWait, LogitMatrix, Metric, ModelFilter, ModelInput, Query, SearchMode,
    SearchParams, compact_with,
};

use crate::common::{self, TestModel};

const PROBES: usize = 32;
const DIM: usize = 6;

/// Ten models of 4 logits in two commits, with metadata `family` (a, b) and `split` (0..4),
/// probe embeddings for text queries, and a graph over every segment.
fn ten_models(dir: &Path, dtype: Dtype) -> (PathBuf, Vec<TestModel>) {
    let path = dir.join("ten.plog");
    let mut opts = CreateOptions::new(PROBES as u32);
    opts.dtype = dtype;
    opts.probe_embeddings = Some((
        (0..PROBES * DIM)
            .map(|i| ((i * 7) % 11) as f32 - 5.0)
            .collect(),
        DIM,
    ));
    probelog::create(&path, &opts).unwrap();
    let mut rng = common::rng(17);
    let models: Vec<TestModel> = (0..10)
        .map(|i| {
            let mut m = common::labeled_model(&mut rng, &format!("m{i}"), PROBES, 4);
            m.meta = vec![
                ("family".into(), if i % 2 == 0 { "a" } else { "b" }.into()),
                ("split".into(), (i % 5).to_string()),
            ];
            m
        })
        .collect();
    for chunk in models.chunks(5) {
        let mut w = IndexWriter::open(&path, LockWait::Fail).unwrap();
        w.set_ann_options(AnnOptions {
            min_entries: 1,
            ..AnnOptions::default()
        })
        .unwrap();
        common::add_models(&mut w, chunk);
        w.commit().unwrap();
    }
    (path, models)
}

fn input(m: &TestModel) -> ModelInput<'_> {
    ModelInput {
        name: m.name.clone(),
        source: m.source.clone(),
        meta: m.meta.clone(),
        labels: m.labels.clone(),
        logits: LogitMatrix::new(&m.logits, m.probes, m.n).unwrap(),
    }
}

/// Every search path: by entry, vector and text; entries, per model, model means; exact and
/// hnsw. Returns the names of the models in all their results.
fn models_found(idx: &Index, filter: Option<&ModelFilter>) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let live: Vec<u64> = (0..idx.entry_count())
        .filter(|&e| idx.entry(e).is_ok())
        .collect();
    let text = [0.5f32, -1.0, 2.0, 0.0, 1.0, -0.5];
    let vector: Vec<f32> = (0..PROBES).map(|p| ((p * 5) % 7) as f32).collect();
    let variants = [
        (Metric::Blend, Grouping::Entries, SearchMode::Exact),
        (Metric::TopK, Grouping::PerModel, SearchMode::Exact),
        (Metric::Full, Grouping::Entries, SearchMode::Exact),
        (Metric::Blend, Grouping::ModelMean, SearchMode::Exact),
        (Metric::TopK, Grouping::Entries, SearchMode::Hnsw),
        (Metric::TopK, Grouping::PerModel, SearchMode::Hnsw),
    ];
    for (metric, grouping, mode) in variants {
        let params = SearchParams {
            top: 100,
            metric,
            grouping,
            mode,
            filter,
            ..SearchParams::default()
        };
        let queries = [
            Query::Entry(live[0]),
            Query::Entry(*live.last().unwrap()),
            Query::Vector(&vector),
            Query::TextEmbedding(&text),
        ];
        for q in &queries {
            for hit in idx.search(q, &params).unwrap() {
                names.insert(hit.model);
            }
        }
    }
    names
}

#[test]
fn deleted_models_never_come_back_and_compaction_drops_them() {
    for dtype in [Dtype::F32, Dtype::F16] {
        let dir = common::tempdir();
        let (path, models) = ten_models(dir.path(), dtype);
        let all: BTreeSet<String> = models.iter().map(|m| m.name.clone()).collect();
        assert_eq!(models_found(&Index::open(&path).unwrap(), None), all);

        // Two deletions (by name and by id) and one new version, as a new user would.
        let mut w = IndexWriter::open(&path, LockWait::Fail).unwrap();
        assert_eq!(w.delete_models_named("m3").unwrap(), vec![3]);
        w.delete_model(7).unwrap();
        let summary = w.commit().unwrap();
        assert_eq!((summary.models_deleted, summary.models_added), (2, 0));
        let mut newer = common::labeled_model(&mut common::rng(99), "m5", PROBES, 3);
        newer.meta = vec![
            ("family".into(), "b".into()),
            ("version".into(), "2".into()),
        ];
        let added = w
            .add_model(
                input(&newer),
                AppendOptions {
                    existing_name: ExistingName::Replace,
                    ..AppendOptions::default()
                },
            )
            .unwrap();
        let summary = w.commit().unwrap();
        assert_eq!((summary.models_deleted, summary.models_added), (1, 1));
        drop(w);

        let idx = Index::open(&path).unwrap();
        assert_eq!(idx.deleted_models(), &[3, 5, 7]);
        assert_eq!(idx.live_model_count(), 8);
        assert_eq!(idx.live_entry_count().unwrap(), 7 * 4 + 3);
        let live: BTreeSet<String> = all
            .iter()
            .filter(|n| *n != "m3" && *n != "m7")
            .cloned()
            .collect();
        assert_eq!(models_found(&idx, None), live, "{dtype:?}");
        // Lookups of deleted entries are refused; the new m5 is the only m5.
        assert!(matches!(
            idx.entry(12),
            Err(Error::Deleted { model: 3, .. })
        ));
        assert!(matches!(
            idx.descriptor(28),
            Err(Error::Deleted { model: 7, .. })
        ));
        // Refused on every path, the graph's entry plan (top-k, f16) included.
        for (metric, mode) in [
            (Metric::Blend, SearchMode::Exact),
            (Metric::TopK, SearchMode::Exact),
            (Metric::TopK, SearchMode::Hnsw),
        ] {
            let params = SearchParams {
                metric,
                mode,
                ..SearchParams::default()
            };
            let got = idx.search(&Query::Entry(12), &params);
            assert!(
                matches!(got, Err(Error::Deleted { .. })),
                "{dtype:?} {metric:?} {mode:?}: {got:?}"
            );
        }
        assert_eq!(idx.live_models_named("m5").unwrap(), vec![added.model_id]);
        assert!(idx.verify().is_ok(), "{:?}", idx.verify().problems);
        let before = ranked_by_vector(&idx, &newer.column(0));
        let bytes_before = std::fs::metadata(&path).unwrap().len();
        drop(idx);

        let done = compact_with(
            &path,
            LockWait::Fail,
            CompactOptions {
                ann: AnnOptions {
                    min_entries: 1,
                    ..AnnOptions::default()
                },
                ..CompactOptions::default()
            },
        )
        .unwrap();
        assert_eq!((done.model_count, done.entry_count), (8, 31));
        assert!(done.bytes_after < bytes_before);
        let idx = Index::open(&path).unwrap();
        assert!(idx.deleted_models().is_empty());
        assert_eq!(idx.entry_count(), 31);
        assert!(idx.verify().is_ok(), "{:?}", idx.verify().problems);
        assert_eq!(models_found(&idx, None), live);
        let after = ranked_by_vector(&idx, &newer.column(0));
        assert_eq!(before, after, "{dtype:?}: results changed with compaction");
        let m5 = idx.live_models_named("m5").unwrap();
        assert_eq!(idx.model(m5[0]).unwrap().logit_count, 3);
    }
}

#[test]
fn names_are_unique_unless_asked_and_bad_deletes_commit_nothing() {
    let dir = common::tempdir();
    let (path, models) = ten_models(dir.path(), Dtype::F32);
    let sequence = Index::open(&path).unwrap().sequence();
    let mut w = IndexWriter::open(&path, LockWait::Fail).unwrap();
    // A live name is refused, and nothing is staged.
    let err = w
        .add_model(input(&models[2]), AppendOptions::default())
        .unwrap_err();
    assert!(matches!(err, Error::DuplicateName { .. }), "{err}");
    assert!(!w.has_pending());
    // Unknown names and ids, and second deletions, are errors.
    assert!(matches!(
        w.delete_models_named("nope"),
        Err(Error::UnknownModel { .. })
    ));
    assert!(matches!(
        w.delete_model(10),
        Err(Error::UnknownModel { .. })
    ));
    w.delete_model(4).unwrap();
    assert!(matches!(w.delete_model(4), Err(Error::UnknownModel { .. })));
    assert!(matches!(
        w.delete_models_named("m4"),
        Err(Error::UnknownModel { .. })
    ));
    // Two models of one name in one commit are refused; asked for, kept.
    let twin = common::labeled_model(&mut common::rng(1), "twin", PROBES, 2);
    w.add_model(input(&twin), AppendOptions::default()).unwrap();
    assert!(w.add_model(input(&twin), AppendOptions::default()).is_err());
    drop(w);
    assert_eq!(
        Index::open(&path).unwrap().sequence(),
        sequence,
        "a dropped writer committed"
    );

    let mut w = IndexWriter::open(&path, LockWait::Fail).unwrap();
    let keep = AppendOptions {
        existing_name: ExistingName::Keep,
        ..AppendOptions::default()
    };
    w.add_model(input(&models[2]), keep).unwrap();
    w.commit().unwrap();
    drop(w);
    let idx = Index::open(&path).unwrap();
    assert_eq!(idx.live_models_named("m2").unwrap(), vec![2, 10]);
    // Deleting by name takes every live model of the name.
    drop(idx);
    let mut w = IndexWriter::open(&path, LockWait::Fail).unwrap();
    assert_eq!(w.delete_models_named("m2").unwrap(), vec![2, 10]);
    w.commit().unwrap();
    assert!(
        Index::open(&path)
            .unwrap()
            .live_models_named("m2")
            .unwrap()
            .is_empty()
    );
}

/// Model, label and score bits of each hit of a default search for the raw responses `vector`.
fn ranked_by_vector(idx: &Index, vector: &[f32]) -> Vec<(String, Option<String>, u32)> {
    idx.search(&Query::Vector(vector), &SearchParams::default())
        .unwrap()
        .into_iter()
        .map(|h| (h.model, h.label, h.score.to_bits()))
        .collect()
}

/// The two ways a filtered search is checked: an exact scan under the blend, a graph walk under
/// top-k.
const FILTERED_WAYS: [(Metric, SearchMode); 2] = [
    (Metric::Blend, SearchMode::Exact),
    (Metric::TopK, SearchMode::Hnsw),
];

/// A search for `top` results under `metric` and `mode`, of the models `filter` keeps.
fn filtered(
    top: usize,
    metric: Metric,
    mode: SearchMode,
    filter: &ModelFilter,
) -> SearchParams<'_> {
    SearchParams {
        top,
        metric,
        mode,
        filter: Some(filter),
        ..SearchParams::default()
    }
}

#[test]
fn filters_run_inside_the_search_and_fill_top() {
    let dir = common::tempdir();
    let (path, _) = ten_models(dir.path(), Dtype::F16);
    let mut w = IndexWriter::open(&path, LockWait::Fail).unwrap();
    w.delete_models_named("m8").unwrap();
    w.commit().unwrap();
    drop(w);
    let idx = Index::open(&path).unwrap();
    let mut family_a = ModelFilter::default();
    family_a.add_where("family=a").unwrap();
    let mut not_split_0 = ModelFilter::default();
    not_split_0.add_where("split!=0").unwrap();
    let mut by_name = ModelFilter::default();
    by_name.add_name_glob("m?");
    by_name.add_where("family=b").unwrap();
    let mut one = ModelFilter::default();
    one.add_where("family=b").unwrap();
    one.add_where("split=3").unwrap();
    let cases: [(&ModelFilter, &[&str]); 4] = [
        (&family_a, &["m0", "m2", "m4", "m6"]),
        (&not_split_0, &["m1", "m2", "m3", "m4", "m6", "m7", "m9"]),
        (&by_name, &["m1", "m3", "m5", "m7", "m9"]),
        (&one, &["m3"]),
    ];
    for (filter, want) in cases {
        let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
        assert_eq!(models_found(&idx, Some(filter)), want, "{filter:?}");
        // A full top N whenever N matching logits exist, in exact and hnsw mode alike.
        let n = want.len() * 4;
        for (metric, mode) in FILTERED_WAYS {
            let params = filtered(n, metric, mode, filter);
            let hits = idx.search(&Query::Entry(1), &params).unwrap();
            assert_eq!(hits.len(), n, "{filter:?} {mode:?}");
        }
    }
    // With the query's own model excluded, the filter still fills top from the others.
    let params = SearchParams {
        top: 8,
        filter: Some(&family_a),
        exclude_same_model: true,
        ..SearchParams::default()
    };
    let hits = idx.search(&Query::Entry(0), &params).unwrap();
    assert_eq!(hits.len(), 8);
    assert!(hits.iter().all(|h| h.model != "m0"));
    // Any model can be left out, in exact and hnsw mode, with the filter still filling top.
    for (metric, mode) in FILTERED_WAYS {
        let params = filtered(12, metric, mode, &family_a);
        let hits = idx.search_excluding(&Query::Entry(0), &params, 2).unwrap();
        assert_eq!(hits.len(), 12);
        assert!(hits.iter().all(|h| h.model != "m2" && h.model != "m8"));
    }
    let both = SearchParams {
        exclude_same_model: true,
        ..SearchParams::default()
    };
    assert!(idx.search_excluding(&Query::Entry(0), &both, 2).is_err());
}

#[test]
fn explanations_split_each_score_over_the_probes() {
    let dir = common::tempdir();
    let (path, _) = ten_models(dir.path(), Dtype::F32);
    let idx = Index::open(&path).unwrap();
    let q = Query::Entry(5);
    for (metric, grouping) in [
        (Metric::TopK, Grouping::Entries),
        (Metric::Blend, Grouping::PerModel),
        (Metric::Full, Grouping::Entries),
        (Metric::Blend, Grouping::ModelMean),
    ] {
        let params = SearchParams {
            top: 5,
            metric,
            grouping,
            ..SearchParams::default()
        };
        let found = idx.search(&q, &params).unwrap();
        let all = idx.explain(&q, &found, PROBES).unwrap();
        let top3 = idx.explain(&q, &found, 3).unwrap();
        for ((hit, shares), best) in found.iter().zip(&all).zip(&top3) {
            let sum: f32 = shares.iter().map(|c| c.share).sum();
            assert!(
                (sum - hit.score).abs() <= 1e-3 * hit.score.max(1.0),
                "{metric:?} {grouping:?}: shares add to {sum}, score {}",
                hit.score
            );
            assert_eq!(best.len(), 3);
            assert_eq!(&shares[..3], &best[..], "the top three come first");
            assert!(best.windows(2).all(|w| w[0].share >= w[1].share));
        }
    }
}

#[test]
fn a_delete_cut_at_every_storage_operation_leaves_old_or_new() {
    let dir = common::tempdir();
    let (path, _) = ten_models(dir.path(), Dtype::F32);
    let base = std::fs::read(&path).unwrap();
    let (mut saw_old, mut saw_new) = (false, false);
    let stage = |w: &mut IndexWriter<FaultyStorage>| {
        w.delete_models_named("m1").unwrap();
        w.delete_model(6).unwrap();
    };
    common::commit_cut_at_every_op(&base, "delete", stage, |n, img| {
        let idx = common::open_image(&img).unwrap();
        let deleted = idx.deleted_models().to_vec();
        assert!(
            deleted.is_empty() || deleted == [1, 6],
            "op {n}: {deleted:?}"
        );
        saw_old |= deleted.is_empty();
        saw_new |= !deleted.is_empty();
        assert!(idx.verify().is_ok(), "op {n}: {:?}", idx.verify().problems);
        // The next writer carries on from whichever state it is.
        let mut w = IndexWriter::from_storage(FaultyStorage::new(img)).unwrap();
        match deleted.is_empty() {
            true => w.delete_model(1).unwrap(),
            false => assert!(w.delete_model(1).is_err()),
        }
    });
    assert!(saw_old && saw_new);
}
