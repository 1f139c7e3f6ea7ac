//! Search over several index files as one (`search_many`): the same models, labels, scores and
//! order as a search of the files' merge, for entry, vector, per-model and hnsw searches; files
//! of another probe set are refused by name.

use std::path::{Path, PathBuf};

use probelog::{
    AnnOptions, CreateOptions, Dtype, Error, Grouping, Index, IndexWriter, LockWait, MergeOptions,
    Metric, MultiQuery, ProbeSetId, Query, SearchMode, SearchParams, create, search_many,
};

use crate::common::{self, TestModel};
use crate::merge::{MergedShards, PROBES, merge_shards, models, open_all};

/// A hit as the files' merge would show it: model name, logit, label, score bits.
type Seen = (String, Option<u32>, Option<String>, u32);

fn over_files(files: &[&Index], q: &MultiQuery<'_>, params: &SearchParams) -> Vec<Seen> {
    let found = search_many(files, q, params).unwrap();
    assert_eq!(found.params.len(), files.len());
    found
        .hits
        .into_iter()
        .enumerate()
        .map(|(i, h)| {
            assert_eq!(h.hit.rank, i + 1);
            // The hit is its own file's: its entry belongs to the model it names there.
            if let Some(e) = h.hit.entry {
                assert_eq!(files[h.file].entry(e).unwrap().model, h.hit.model);
            }
            (h.hit.model, h.hit.logit, h.hit.label, h.hit.score.to_bits())
        })
        .collect()
}

fn over_merge(merged: &Index, q: &Query<'_>, params: &SearchParams) -> Vec<Seen> {
    merged
        .search(q, params)
        .unwrap()
        .hits
        .into_iter()
        .map(|h| (h.model, h.logit, h.label, h.score.to_bits()))
        .collect()
}

/// The merged file's entry for entry `e` of `file` (by model name and logit).
fn merged_entry(merged: &Index, file: &Index, e: u64) -> u64 {
    let info = file.entry(e).unwrap();
    let m = (0..merged.model_count())
        .find(|&m| merged.model(m).unwrap().name == info.model)
        .unwrap();
    merged.model(m).unwrap().first_entry + u64::from(info.logit)
}

/// Compares `search_many` over `files` with a search of `merged` under `params`: an entry query
/// from each file (plus `exclude_same_model` where it applies) and a vector query.
fn compare(files: &[&Index], merged: &Index, params: SearchParams, vector: &[f32], what: &str) {
    for (f, ix) in files.iter().enumerate() {
        for e in (0..ix.entry_count()).step_by(4) {
            if ix.entry(e).is_err() {
                continue; // an entry of a deleted model
            }
            let m = merged_entry(merged, ix, e);
            let mut variants = vec![params];
            if params.grouping != Grouping::ModelMean {
                variants.push(SearchParams {
                    exclude_same_model: true,
                    ..params
                });
            }
            for p in variants {
                assert_eq!(
                    over_files(files, &MultiQuery::Entry { file: f, entry: e }, &p),
                    over_merge(merged, &Query::Entry(m), &p),
                    "{what}: file {f} entry {e} {p:?}"
                );
            }
        }
    }
    assert_eq!(
        over_files(files, &MultiQuery::Vector(vector), &params),
        over_merge(merged, &Query::Vector(vector), &params),
        "{what}: vector query {params:?}"
    );
}

#[test]
fn search_over_files_equals_search_over_their_merge() {
    for dtype in [Dtype::F32, Dtype::F16] {
        let fixture = MergedShards::new(11, 15, dtype);
        let merged = Index::open(&fixture.merged).unwrap();
        let opened = open_all(&fixture.shards);
        let files: Vec<&Index> = opened.iter().collect();
        let vector = fixture.all[3].column(0);
        let base = SearchParams {
            top: 12,
            ..Default::default()
        };
        let mut variants = common::param_variants(12, 6);
        variants.push(SearchParams { top: 200, ..base });
        for params in variants {
            compare(&files, &merged, params, &vector, &format!("{dtype:?}"));
        }
        // One file alone is that file's search.
        let alone =
            search_many(&files[..1], &MultiQuery::Entry { file: 0, entry: 2 }, &base).unwrap();
        let direct = files[0].search(&Query::Entry(2), &base).unwrap();
        assert_eq!(alone.params, vec![direct.params]);
        assert_eq!(
            alone.hits.into_iter().map(|h| h.hit).collect::<Vec<_>>(),
            direct.hits
        );
    }
}

/// `n` models appended in one commit with a graph for the segment.
fn graph_shard(path: &Path, models: &[TestModel], ann: AnnOptions) {
    let mut opts = CreateOptions::new(PROBES as u32);
    opts.dtype = Dtype::F16;
    create(path, &opts).unwrap();
    let mut w = IndexWriter::open(path, LockWait::Fail).unwrap();
    w.set_ann_options(ann).unwrap();
    common::add_models(&mut w, models);
    w.commit().unwrap();
}

#[test]
fn hnsw_search_over_files_with_graphs_equals_search_over_their_merge() {
    let dir = common::tempdir();
    let all = models(12, "g", 45);
    let ann = AnnOptions {
        min_entries: 1,
        ..Default::default()
    };
    let shards: Vec<PathBuf> = (0..3)
        .map(|s| {
            let p = dir.path().join(format!("g{s}.plog"));
            graph_shard(&p, &all[s * 15..(s + 1) * 15], ann);
            p
        })
        .collect();
    let opts = MergeOptions {
        ann,
        ..Default::default()
    };
    let (out, _) = merge_shards(dir.path(), &shards, &opts);
    let merged = Index::open(&out).unwrap();
    assert_eq!(merged.graph_count(), 1);
    let opened = open_all(&shards);
    let files: Vec<&Index> = opened.iter().collect();
    assert!(files.iter().all(|f| f.graph_count() == 1));
    // With more candidates than entries, every graph's walk reaches all of its nodes, so the
    // files' graphs and the merge's give the same hits; the scores are the exact rerank's.
    let params = SearchParams {
        top: 10,
        metric: Metric::TopK,
        mode: SearchMode::Hnsw,
        candidates: Some(2000),
        ..Default::default()
    };
    let found = search_many(&files, &MultiQuery::Entry { file: 1, entry: 0 }, &params).unwrap();
    assert!(found.params.iter().all(|p| p.mode == SearchMode::Hnsw));
    let vector = all[20].column(1);
    for p in [
        params,
        SearchParams {
            grouping: Grouping::PerModel,
            ..params
        },
    ] {
        compare(&files, &merged, p, &vector, "hnsw");
    }
}

#[test]
fn files_of_another_probe_set_are_refused_by_name() {
    let dir = common::tempdir();
    let d = dir.path();
    let a = common::index_with(d, "a.plog", PROBES, Dtype::F32, &models(13, "a", 2));
    let named = d.join("named.plog");
    let names: Vec<String> = (0..PROBES).map(|p| format!("probe-{p}")).collect();
    let mut opts = CreateOptions::new(PROBES as u32);
    opts.probe_set = ProbeSetId::from_names(&names);
    create(&named, &opts).unwrap();
    let wide = common::create_index(d, "wide.plog", PROBES + 1, Dtype::F32);
    let a = Index::open(&a).unwrap();
    for other in [named, wide] {
        let b = Index::open(&other).unwrap();
        let q = MultiQuery::Entry { file: 0, entry: 0 };
        let err = search_many(&[&a, &b], &q, &SearchParams::default()).unwrap_err();
        assert!(
            matches!(&err, Error::InputFile { path, .. } if path == &other),
            "{err}"
        );
        assert!(err.to_string().contains("probe set"), "{err}");
    }
    // A query entry of a file that is not searched.
    let err = search_many(
        &[&a],
        &MultiQuery::Entry { file: 1, entry: 0 },
        &SearchParams::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("no file 1"), "{err}");
}
