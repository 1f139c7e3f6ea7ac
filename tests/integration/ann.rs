//! The HNSW candidate stage: graphs built by appends and compaction, hnsw mode against exact
//! mode, the auto rule, and hostile graph sections.

use probelog::synth::{SynthConfig, SynthZoo};
use probelog::{
    AnnOptions, CompactOptions, CreateOptions, Dtype, Error, Index, IndexWriter, LockWait,
    LogitMatrix, Metric, ModelInput, Query, SearchMode, SearchParams, create,
};
use rand::Rng;

use crate::common;

const PROBES: usize = 200;

fn small_graphs() -> AnnOptions {
    AnnOptions {
        min_entries: 1000,
        ..Default::default()
    }
}

/// An f16 index of synthetic logits: one append of `big` models (which gets a graph) and one of
/// `small` models (too few entries for a graph).
fn build(dir: &std::path::Path, big: usize, small: usize) -> std::path::PathBuf {
    let zoo = SynthZoo::generate(SynthConfig {
        probes: PROBES,
        concepts: 60,
        models: big + small,
        seed: 5,
        ..Default::default()
    });
    let path = dir.join("ann.plog");
    let mut opts = CreateOptions::new(PROBES as u32);
    opts.dtype = Dtype::F16;
    create(&path, &opts).unwrap();
    for range in [0..big, big..big + small] {
        let mut w = IndexWriter::open(&path, LockWait::Fail).unwrap();
        w.set_ann_options(small_graphs()).unwrap();
        for m in &zoo.models[range] {
            w.add_model(
                ModelInput {
                    name: m.name.clone(),
                    source: String::new(),
                    meta: vec![],
                    labels: Some(m.concepts.iter().map(|c| format!("c{c}")).collect()),
                    logits: LogitMatrix::new(&m.logits, PROBES, m.concepts.len()).unwrap(),
                },
                Default::default(),
            )
            .unwrap();
        }
        w.commit().unwrap();
    }
    path
}

fn params(mode: SearchMode) -> SearchParams {
    SearchParams {
        top: 10,
        exclude_same_model: true,
        mode,
        // The graphs serve the paper's top-k discrepancy only; the default blend always scans.
        metric: Metric::TopK,
        ..Default::default()
    }
}

/// Recall@10 of hnsw mode against exact mode over `queries` entries; also checks that every
/// entry hnsw returns carries exactly the score exact mode gives it.
fn recall(index: &Index, queries: u64, p: &SearchParams) -> f64 {
    let n = index.entry_count();
    let mut total = 0.0;
    for i in 0..queries {
        let entry = i * 7919 % n;
        let own_model = index.model_of_entry(entry).unwrap();
        let q = Query::Entry(entry);
        let exact = index.search(&q, &params(SearchMode::Exact)).unwrap();
        let got = index.search(&q, p).unwrap();
        assert_eq!(got.len(), exact.len());
        let all_scores = index
            .score_all(&index.descriptor(entry).unwrap(), Metric::TopK, None)
            .unwrap();
        for h in &got {
            let e = h.entry.unwrap();
            assert_eq!(
                h.score.to_bits(),
                all_scores[e as usize].to_bits(),
                "hnsw reranks with the exact discrepancy"
            );
            assert_ne!(h.model_id, own_model, "the query's model is excluded");
        }
        total += got
            .iter()
            .filter(|h| exact.iter().any(|x| x.entry == h.entry))
            .count() as f64
            / exact.len() as f64;
    }
    total / queries as f64
}

#[test]
fn hnsw_mode_reranks_graph_candidates_exactly() {
    let dir = common::tempdir();
    let path = build(dir.path(), 300, 20);
    let index = Index::open(&path).unwrap();
    assert_eq!(index.segment_count(), 3);
    assert!(
        index.segment_graph(1).unwrap().is_some(),
        "big append built a graph"
    );
    assert!(
        index.segment_graph(2).unwrap().is_none(),
        "small append did not"
    );
    let big_entries = index.graph_entries();
    assert!(big_entries >= 1000 && big_entries < index.entry_count());
    assert!(index.verify().is_ok());

    let r = recall(&index, 40, &params(SearchMode::Hnsw));
    assert!(r >= 0.9, "recall@10 of hnsw mode {r}");
    // More candidates never find less, and C = all entries is exact.
    let all = SearchParams {
        candidates: Some(index.entry_count() as usize),
        ..params(SearchMode::Hnsw)
    };
    assert_eq!(recall(&index, 20, &all), 1.0);

    // Per-model results: one per model, best logit first.
    let per_model = SearchParams {
        per_model: true,
        ..params(SearchMode::Hnsw)
    };
    let hits = index.search(&Query::Entry(5), &per_model).unwrap();
    let mut models: Vec<u64> = hits.iter().map(|h| h.model_id).collect();
    models.sort_unstable();
    models.dedup();
    assert_eq!(models.len(), hits.len(), "one hit per model");
    assert!(hits.windows(2).all(|w| w[0].score <= w[1].score));
}

#[test]
fn auto_mode_and_hnsw_limits() {
    let dir = common::tempdir();
    let path = build(dir.path(), 120, 0);
    let index = Index::open(&path).unwrap();
    assert!(index.graph_entries() > 0);
    // Below the auto threshold, auto is exact.
    assert_eq!(
        index.effective_mode(&params(SearchMode::Auto)).unwrap(),
        SearchMode::Exact
    );
    assert_eq!(
        index.effective_mode(&params(SearchMode::Hnsw)).unwrap(),
        SearchMode::Hnsw
    );
    let full = SearchParams {
        metric: Metric::Full,
        ..params(SearchMode::Hnsw)
    };
    assert!(matches!(
        index.search(&Query::Entry(0), &full),
        Err(Error::InvalidParameter(_))
    ));
    // The default metric, the blend, never runs on the graphs: auto scans, hnsw is refused with
    // a message that names the metric that can.
    let blend = SearchParams {
        metric: Metric::Blend,
        ..params(SearchMode::Auto)
    };
    assert_eq!(index.effective_mode(&blend).unwrap(), SearchMode::Exact);
    assert_eq!(
        index.effective_mode(&SearchParams::default()).unwrap(),
        SearchMode::Exact
    );
    match index.search(
        &Query::Entry(0),
        &SearchParams {
            mode: SearchMode::Hnsw,
            ..blend
        },
    ) {
        Err(Error::InvalidParameter(m)) => assert!(m.contains("--metric topk"), "{m}"),
        other => panic!("hnsw with the blend: {other:?}"),
    }
    let zero = SearchParams {
        candidates: Some(0),
        ..params(SearchMode::Hnsw)
    };
    assert!(matches!(
        index.search(&Query::Entry(0), &zero),
        Err(Error::InvalidParameter(_))
    ));
}

#[test]
fn compaction_builds_one_graph_over_everything() {
    let dir = common::tempdir();
    let path = build(dir.path(), 200, 20);
    let before = Index::open(&path).unwrap();
    let before_hits = before
        .search(&Query::Entry(3), &params(SearchMode::Exact))
        .unwrap();
    probelog::compact_with(
        &path,
        LockWait::Fail,
        CompactOptions {
            ann: small_graphs(),
            ..Default::default()
        },
    )
    .unwrap();
    let index = Index::open(&path).unwrap();
    assert_eq!(index.segment_count(), 1);
    assert_eq!(index.graph_entries(), index.entry_count());
    assert!(index.verify().is_ok());
    assert_eq!(
        index
            .search(&Query::Entry(3), &params(SearchMode::Exact))
            .unwrap(),
        before_hits
    );
    let r = recall(&index, 30, &params(SearchMode::Hnsw));
    assert!(r >= 0.9, "recall@10 after compaction {r}");
    // Compaction without graphs drops them.
    probelog::compact_with(
        &path,
        LockWait::Fail,
        CompactOptions {
            ann: AnnOptions::disabled(),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(Index::open(&path).unwrap().graph_entries(), 0);
}

/// Rewrites bytes inside the graph section; searches must return results or an error (never
/// panic, never hang), and verify must notice every change that matters.
#[test]
fn hostile_graph_sections_give_errors_not_panics() {
    let dir = common::tempdir();
    let path = build(dir.path(), 150, 0);
    let bytes = std::fs::read(&path).unwrap();
    let index = common::open_image(&bytes).unwrap();
    let (_, offset, len) = index
        .section_extents()
        .into_iter()
        .find(|(name, _, _)| name.contains("ANN graph"))
        .expect("a graph section");
    let (offset, len) = (offset as usize, len as usize);
    let graph = index.segment_graph(1).unwrap().unwrap();
    let header = graph.header;
    drop(index);
    let mut rng = common::rng(17);
    let mut errors = 0;
    for round in 0..400 {
        let mut img = bytes.clone();
        let section = &mut img[offset..offset + len];
        match round % 4 {
            // Header fields: anything, including huge counts and out-of-range entry points.
            0 => {
                let field = rng.random_range(0..11) * 4;
                let v: u32 = if rng.random() {
                    rng.random()
                } else {
                    rng.random_range(0..4)
                };
                section[field..field + 4].copy_from_slice(&v.to_le_bytes());
            }
            // Links, levels and upper rows: random words in the tail of the section.
            1 | 2 => {
                let tail = len - (header.nodes as usize * 4 * (header.degree0 as usize + 1)) - 64;
                for _ in 0..8 {
                    let at = rng.random_range(tail / 4..len / 4) * 4;
                    let v: u32 = match rng.random_range(0..3) {
                        0 => rng.random(),
                        1 => header.nodes + rng.random_range(0..3),
                        _ => rng.random_range(0..64),
                    };
                    section[at..at + 4].copy_from_slice(&v.to_le_bytes());
                }
            }
            // Vectors and basis: NaN and infinities.
            _ => {
                for _ in 0..16 {
                    let at = rng.random_range(16..len / 4) * 4;
                    let v = [f32::NAN, f32::INFINITY, -1e30][rng.random_range(0..3)];
                    section[at..at + 4].copy_from_slice(&v.to_le_bytes());
                }
            }
        }
        if img == bytes {
            continue;
        }
        let Ok(idx) = common::open_image(&img) else {
            continue;
        };
        for e in [0u64, 17, 333] {
            match idx.search(&Query::Entry(e), &params(SearchMode::Hnsw)) {
                Ok(hits) => assert!(hits.len() <= 10),
                Err(Error::Corrupt { .. }) => errors += 1,
                Err(other) => panic!("round {round}: unexpected error {other}"),
            }
        }
        assert!(
            !idx.verify().is_ok(),
            "round {round}: verify misses a changed graph section"
        );
    }
    assert!(
        errors > 0,
        "some damage must be detected by the search itself"
    );
}

/// Entry queries under the top-k metric read their plan from the entry's top list in the graph
/// instead of gathering its descriptor: the results must be those of the descriptor, bit for
/// bit, in both modes and for every k (those past the list take the descriptor path).
#[test]
fn entry_queries_planned_from_the_graph_match_the_descriptor() {
    let dir = common::tempdir();
    let path = build(dir.path(), 300, 20);
    let index = Index::open(&path).unwrap();
    let n = index.entry_count();
    for k in [1usize, 5, 16, 32, 33, 64] {
        for mode in [SearchMode::Exact, SearchMode::Hnsw] {
            let p = SearchParams {
                k: Some(k),
                ..params(mode)
            };
            for i in 0..25u64 {
                let entry = (i * 104_729 + k as u64) % n;
                let model = index.model_of_entry(entry).unwrap();
                let planned = index
                    .entry_plan_from_graph(&Query::Entry(entry), &p)
                    .unwrap();
                if index.segment_graph(1).unwrap().unwrap().nodes() as u64 > entry {
                    // Segment 1 (the first entries) has a graph with lists of 32; the k-th value
                    // is compared with one below it, so k = 32 takes the descriptor path.
                    assert_eq!(planned.is_some(), k < 32, "entry {entry}, k = {k}");
                } else {
                    assert!(planned.is_none(), "entry {entry} has no graph");
                }
                let got = index.search(&Query::Entry(entry), &p).unwrap();
                let want = index
                    .search_descriptor(&index.descriptor(entry).unwrap(), Some(model), &p)
                    .unwrap();
                let got: Vec<(u64, u32)> = got
                    .iter()
                    .map(|h| (h.entry.unwrap(), h.score.to_bits()))
                    .collect();
                let want: Vec<(u64, u32)> =
                    want.iter().map(|s| (s.id, s.score.to_bits())).collect();
                assert_eq!(got, want, "entry {entry}, k = {k}, {}", mode.name());
            }
        }
    }
}
