//! The HNSW candidate stage: graphs built by appends and compaction, hnsw mode against exact
//! mode, the auto rule, and hostile graph sections.

use probelog::testkit::synth::{SynthConfig, SynthZoo};
use probelog::{
    AnnOptions, CompactOptions, CreateOptions, Dtype, Error, Index, IndexWriter, LockWait,
    LogitMatrix, Metric, ModelInput, Query, SearchError, SearchMode, SearchParams, create,
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
    build_with(dir, big, small, small_graphs())
}

/// [`build`], with these graph options.
fn build_with(
    dir: &std::path::Path,
    big: usize,
    small: usize,
    ann: AnnOptions,
) -> std::path::PathBuf {
    build_as(dir, big, small, ann, Dtype::F16)
}

/// [`build_with`], storing the descriptors as `dtype`.
fn build_as(
    dir: &std::path::Path,
    big: usize,
    small: usize,
    ann: AnnOptions,
    dtype: Dtype,
) -> std::path::PathBuf {
    let zoo = SynthZoo::generate(SynthConfig {
        probes: PROBES,
        concepts: 60,
        models: big + small,
        seed: 5,
        ..Default::default()
    });
    let path = dir.join("ann.plog");
    let mut opts = CreateOptions::new(PROBES as u32);
    opts.dtype = dtype;
    create(&path, &opts).unwrap();
    for range in [0..big, big..big + small] {
        let mut w = IndexWriter::open(&path, LockWait::Fail).unwrap();
        w.set_ann_options(ann).unwrap();
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

/// Compacts the index at `path`, building its graphs with `ann`.
fn compact(path: &std::path::Path, ann: AnnOptions) {
    probelog::compact_with(
        path,
        LockWait::Fail,
        CompactOptions {
            ann,
            ..Default::default()
        },
    )
    .unwrap();
}

fn params(mode: SearchMode) -> SearchParams<'static> {
    SearchParams {
        top: 10,
        exclude_same_model: true,
        mode,
        // The graphs serve the paper's top-k discrepancy only; the default blend always scans.
        metric: Metric::TopK,
        ..Default::default()
    }
}

/// Checks hnsw mode's recall@10 over 40 queries (at least 0.9) and that with every entry as a
/// candidate it is exact over 20 queries; `what` names the index in the messages.
fn assert_hnsw_recall(index: &Index, what: &str) {
    let r = recall(index, 40, &params(SearchMode::Hnsw));
    assert!(r >= 0.9, "recall@10 {what} {r}");
    let all = SearchParams {
        candidates: Some(index.entry_count() as usize),
        ..params(SearchMode::Hnsw)
    };
    assert_eq!(
        recall(index, 20, &all),
        1.0,
        "recall@10 {what}, every entry a candidate"
    );
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
        index.segment_graphs(1).unwrap().len() == 1,
        "big append built a graph"
    );
    assert!(
        index.segment_graphs(2).unwrap().is_empty(),
        "small append did not"
    );
    let big_entries = index.graph_entries();
    assert!(big_entries >= 1000 && big_entries < index.entry_count());
    assert!(index.verify().is_ok());

    // More candidates never find less, and C = all entries is exact.
    assert_hnsw_recall(&index, "of hnsw mode");

    // Per-model results: one per model, best logit first.
    let per_model = SearchParams {
        grouping: probelog::Grouping::PerModel,
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
        index
            .resolve_params(&params(SearchMode::Auto))
            .unwrap()
            .mode,
        SearchMode::Exact
    );
    assert_eq!(
        index
            .resolve_params(&params(SearchMode::Hnsw))
            .unwrap()
            .mode,
        SearchMode::Hnsw
    );
    let full = SearchParams {
        metric: Metric::Full,
        ..params(SearchMode::Hnsw)
    };
    assert!(matches!(
        index.search(&Query::Entry(0), &full),
        Err(Error::Search(SearchError::HnswUnsupported { .. }))
    ));
    // The default metric, the blend: auto scans; hnsw walks the graphs by the top-k discrepancy
    // and reranks by the blend, so with every entry a candidate it ranks as exact mode.
    let blend = SearchParams {
        metric: Metric::Blend,
        ..params(SearchMode::Auto)
    };
    assert_eq!(
        index.resolve_params(&blend).unwrap().mode,
        SearchMode::Exact
    );
    assert_eq!(
        index.resolve_params(&SearchParams::default()).unwrap().mode,
        SearchMode::Exact
    );
    let blend_all = SearchParams {
        mode: SearchMode::Hnsw,
        candidates: Some(index.entry_count() as usize),
        ..blend
    };
    let exact_blend = SearchParams {
        mode: SearchMode::Exact,
        ..blend
    };
    for e in [0, 7, 31] {
        let hnsw = index.search(&Query::Entry(e), &blend_all).unwrap();
        assert_eq!(hnsw.params.mode, SearchMode::Hnsw);
        let exact = index.search(&Query::Entry(e), &exact_blend).unwrap();
        let pairs = |r: &probelog::SearchResults| -> Vec<(Option<u64>, f32)> {
            r.iter().map(|h| (h.entry, h.score)).collect()
        };
        assert_eq!(pairs(&hnsw), pairs(&exact), "entry {e}");
    }
    match index.search(&Query::Entry(0), &full) {
        Err(Error::Search(e @ SearchError::HnswUnsupported { .. })) => {
            assert!(e.to_string().contains("blend or topk"), "{e}")
        }
        other => panic!("hnsw with the full metric: {other:?}"),
    }
    let zero = SearchParams {
        candidates: Some(0),
        ..params(SearchMode::Hnsw)
    };
    assert!(matches!(
        index.search(&Query::Entry(0), &zero),
        Err(Error::Search(SearchError::NoCandidates))
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
    compact(&path, small_graphs());
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
    compact(&path, AnnOptions::disabled());
    assert_eq!(Index::open(&path).unwrap().graph_entries(), 0);
}

/// Graph options that split segments of more than 700 entries into parts.
fn graph_parts() -> AnnOptions {
    AnnOptions {
        max_graph_entries: 700,
        ..small_graphs()
    }
}

/// A segment larger than `max_graph_entries` gets several graphs over consecutive ranges. They
/// are walked together, and hnsw mode returns exact scores, excludes the query model across
/// them, and finds what one graph finds; entry plans come from the part that holds the entry;
/// compaction splits again.
#[test]
fn large_segments_get_graph_parts_searched_together() {
    let dir = common::tempdir();
    let path = build_with(dir.path(), 300, 20, graph_parts());
    let index = Index::open(&path).unwrap();
    let n1 = index.segment_entry_starts()[2] as usize;
    let parts = index.segment_graphs(1).unwrap();
    assert_eq!(parts.len(), n1.div_ceil(700), "{n1} entries");
    assert_eq!(index.graph_count(), parts.len());
    let mut next = 0;
    for p in &parts {
        assert_eq!(p.first, next, "the parts tile the segment in order");
        assert!(p.view.nodes() <= 700);
        next += p.view.nodes();
    }
    assert_eq!(next, n1);
    assert_eq!(
        probelog::ann::graph_ranges(n1, 700)
            .iter()
            .map(|r| (r.start, r.len()))
            .collect::<Vec<_>>(),
        parts
            .iter()
            .map(|p| (p.first, p.view.nodes()))
            .collect::<Vec<_>>()
    );
    let kinds: Vec<String> = index
        .section_extents()
        .into_iter()
        .map(|(name, _, _)| name)
        .filter(|name| name.contains("ANN graph"))
        .collect();
    assert_eq!(kinds.len(), parts.len());
    assert!(
        kinds.iter().all(|k| k.contains("ANN graph part")),
        "{kinds:?}"
    );
    assert!(index.verify().is_ok());
    assert_eq!(index.graph_entries(), n1 as u64);

    // `recall` checks exact scores and the exclusion of the query model.
    assert_hnsw_recall(&index, "over graph parts");

    // Entry plans read the list of the entry's own part.
    for entry in [0u64, 699, 700, 701, n1 as u64 - 1] {
        let (s, e) = (1, entry as usize);
        let part = index.graph_of_entry(s, e).unwrap().expect("covered");
        assert!((part.first..part.first + part.view.nodes()).contains(&e));
        let p = params(SearchMode::Hnsw);
        let planned = index
            .entry_plan_from_graph(&Query::Entry(entry), &index.resolve_params(&p).unwrap())
            .unwrap();
        let want = index
            .search_descriptor(
                &index.descriptor(entry).unwrap(),
                Some(index.model_of_entry(entry).unwrap()),
                &p,
            )
            .unwrap();
        let got = index.search(&Query::Entry(entry), &p).unwrap();
        assert!(planned.is_some(), "entry {entry}");
        assert_eq!(
            got.iter()
                .map(|h| (h.entry.unwrap(), h.score.to_bits()))
                .collect::<Vec<_>>(),
            want.iter()
                .map(|s| (s.id, s.score.to_bits()))
                .collect::<Vec<_>>(),
            "entry {entry}"
        );
    }

    // Compaction splits the whole index the same way.
    drop(index);
    compact(&path, graph_parts());
    let index = Index::open(&path).unwrap();
    let n = index.entry_count() as usize;
    assert_eq!(index.segment_count(), 1);
    assert_eq!(index.segment_graphs(0).unwrap().len(), n.div_ceil(700));
    assert_eq!(index.graph_entries(), n as u64);
    assert!(index.verify().is_ok());
    let r = recall(&index, 30, &params(SearchMode::Hnsw));
    assert!(r >= 0.9, "recall@10 after compaction into parts {r}");
}

#[test]
fn graph_ranges_split_evenly() {
    use probelog::ann::graph_ranges;
    assert_eq!(graph_ranges(10, 10), vec![0..10]);
    assert_eq!(graph_ranges(11, 10), vec![0..6, 6..11]);
    assert_eq!(
        graph_ranges(1_000_000, 600_000),
        vec![0..500_000, 500_000..1_000_000]
    );
    assert_eq!(graph_ranges(7, 2), vec![0..2, 2..4, 4..6, 6..7]);
    for (n, max) in [(1usize, 1usize), (999, 10), (1000, 999), (12_345, 1000)] {
        let r = graph_ranges(n, max);
        assert_eq!(r.len(), n.div_ceil(max));
        assert_eq!(r[0].start, 0);
        assert_eq!(r.last().unwrap().end, n);
        assert!(r.windows(2).all(|w| w[0].end == w[1].start));
        let lens: Vec<usize> = r.iter().map(|x| x.len()).collect();
        assert!(lens.iter().max().unwrap() - lens.iter().min().unwrap() <= 1);
        assert!(lens.iter().all(|&l| l <= max));
    }
    assert!(
        AnnOptions {
            max_graph_entries: 1,
            ..Default::default()
        }
        .check()
        .is_err()
    );
}

/// Graph parts whose ranges do not tile their segment, or that are mixed with a whole graph,
/// are refused at open as corrupt (with valid checksums); a reader then never walks a graph
/// against the wrong entries.
#[test]
fn graph_parts_that_do_not_tile_their_segment_are_corrupt() {
    use probelog::testkit::layout::*;
    let dir = common::tempdir();
    let path = build_with(dir.path(), 150, 0, graph_parts());
    let img = std::fs::read(&path).unwrap();
    let index = common::open_image(&img).unwrap();
    let (_, dir_at, _) = index
        .section_extents()
        .into_iter()
        .rfind(|e| e.0.ends_with("directory"))
        .unwrap();
    drop(index);
    let dir_at = dir_at as usize;
    let count = get_u32(&img, dir_at + D_SECTION_COUNT) as usize;
    let parts: Vec<usize> = (0..count)
        .map(|i| dir_at + D_SECTIONS + i * SECTION_ENTRY_LEN)
        .filter(|&e| get_u32(&img, e + S_KIND) == SectionKind::AnnGraphPart as u32)
        .collect();
    assert!(parts.len() >= 2, "{} parts", parts.len());
    let entries = get_u64(&img, dir_at + D_ENTRY_COUNT);
    type Patch = Box<dyn Fn(&mut Vec<u8>)>;
    let (a, b) = (parts[0], parts[1]);
    let cases: Vec<(&str, Patch)> = vec![
        (
            "no part starts at 0",
            Box::new(move |m| put_u64(m, a + S_PARAM, 1)),
        ),
        (
            "two parts start at the same entry",
            Box::new(move |m| {
                let p = get_u64(m, a + S_PARAM);
                put_u64(m, b + S_PARAM, p)
            }),
        ),
        (
            "a part starts past the segment",
            Box::new(move |m| put_u64(m, b + S_PARAM, entries)),
        ),
        (
            "a part beside a whole graph",
            Box::new(move |m| put_u32(m, b + S_KIND, SectionKind::AnnGraph as u32)),
        ),
        (
            "two whole graphs",
            Box::new(move |m| {
                put_u32(m, a + S_KIND, SectionKind::AnnGraph as u32);
                put_u32(m, b + S_KIND, SectionKind::AnnGraph as u32);
            }),
        ),
    ];
    for (what, patch) in cases {
        let mut bad = img.clone();
        patch(&mut bad);
        probelog::testkit::fuzzing::fix_checksums(&mut bad);
        match common::open_image(&bad) {
            Err(Error::Corrupt { what: msg }) => {
                assert!(msg.contains("ANN graph"), "{what}: {msg}")
            }
            other => panic!("{what}: {other:?}"),
        }
    }
    // A part moved by one entry (still tiling) opens, and its graph no longer matches its
    // range's length: the first search that uses it is a Corrupt error, and verify reports it.
    let mut shifted = img.clone();
    let p = get_u64(&shifted, b + S_PARAM);
    put_u64(&mut shifted, b + S_PARAM, p + 1);
    probelog::testkit::fuzzing::fix_checksums(&mut shifted);
    let idx = common::open_image(&shifted).unwrap();
    assert!(matches!(
        idx.search(&Query::Entry(0), &params(SearchMode::Hnsw)),
        Err(Error::Corrupt { .. })
    ));
    assert!(!idx.verify().is_ok());
}

/// The bytes of `build`'s index of one append of 150 models (with a graph) and none after it,
/// built in a folder that is removed again.
fn graph_image() -> Vec<u8> {
    let dir = common::tempdir();
    let path = build(dir.path(), 150, 0);
    std::fs::read(&path).unwrap()
}

/// Rewrites bytes inside the graph section; searches must return results or an error (never
/// panic, never hang), and verify must notice every change that matters.
#[test]
fn hostile_graph_sections_give_errors_not_panics() {
    let bytes = graph_image();
    let index = common::open_image(&bytes).unwrap();
    let (_, offset, len) = index
        .section_extents()
        .into_iter()
        .find(|(name, _, _)| name.contains("ANN graph"))
        .expect("a graph section");
    let (offset, len) = (offset as usize, len as usize);
    let header = index.segment_graphs(1).unwrap()[0].view.header;
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
                    .entry_plan_from_graph(&Query::Entry(entry), &index.resolve_params(&p).unwrap())
                    .unwrap();
                if index.graph_of_entry(1, entry as usize).unwrap().is_some() {
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

/// In an f16 index the search takes values from the graph's top lists (the rerank's values
/// there, an entry query's top probes), so verify checks the lists against the descriptors: a
/// list value that is not the stored one, or a list that leaves out a higher probe, is damage
/// even with every checksum right. The search itself runs on.
#[test]
fn lists_that_disagree_with_the_descriptors_fail_verify() {
    use probelog::ann::{pack_item, unpack_item};
    let img = graph_image();
    let index = common::open_image(&img).unwrap();
    assert!(index.verify().is_ok(), "{:?}", index.verify().problems);
    let graph = index.segment_graphs(1).unwrap().remove(0);
    let node = 3usize;
    let list: Vec<u32> = graph.view.list(node).to_vec();
    let entry = (graph.first + node) as u64;
    let descriptor = index.descriptor(entry).unwrap();
    drop(index);
    // The list's bytes, found in the file (a node's list is 32 distinct items: unique there).
    let pattern: Vec<u8> = list.iter().flat_map(|i| i.to_le_bytes()).collect();
    let at = img
        .windows(pattern.len())
        .position(|w| w == pattern.as_slice())
        .expect("the list is in the file");
    let on_list = |p: u32| list.iter().any(|&i| unpack_item(i).0 == p);
    let lowest = list
        .iter()
        .map(|&i| unpack_item(i).1)
        .fold(f32::INFINITY, f32::min);
    let below = (0..PROBES as u32)
        .find(|&p| !on_list(p) && descriptor[p as usize] < lowest)
        .expect("a probe below the list");
    let (top_probe, top_value) = unpack_item(list[0]);
    let last = list.len() - 1;
    // What is written over which item of the list, and what verify must say.
    let cases: Vec<(&str, usize, u32, &str)> = vec![
        (
            "a value that is not the stored one",
            0,
            pack_item(top_probe, top_value + 0.25),
            "its descriptor holds",
        ),
        (
            "the highest probe left out for a lower one",
            0,
            pack_item(below, descriptor[below as usize]),
            "not on the list",
        ),
        (
            "the lowest item replaced by a second copy of the highest",
            last,
            list[0],
            "a probe twice",
        ),
    ];
    for (what, slot, item, message) in cases {
        let mut bad = img.clone();
        bad[at + 4 * slot..at + 4 * slot + 4].copy_from_slice(&item.to_le_bytes());
        probelog::testkit::fuzzing::fix_checksums(&mut bad);
        let idx = common::open_image(&bad).unwrap();
        let report = idx.verify();
        assert!(
            report.problems.iter().any(|p| p.message.contains(message)),
            "{what}: {:?}",
            report.problems
        );
        for mode in [SearchMode::Exact, SearchMode::Hnsw] {
            let hits = idx.search(&Query::Entry(entry), &params(mode)).unwrap();
            assert_eq!(hits.len(), 10, "{what}");
        }
    }
}

/// The rerank's scores with values taken from the candidates' lists are those of reading every
/// value from the rows, bit for bit, for any candidates; list items naming a probe past the
/// index change nothing; an f32 index reads the rows whatever the lists say.
#[test]
fn listed_rerank_scores_as_the_rows_do() {
    use probelog::ann::pack_item;
    use probelog::search::ScanPlan;
    let dir = common::tempdir();
    let path = build(dir.path(), 150, 0);
    let index = Index::open(&path).unwrap();
    let rows = index.segment_rows(1).unwrap().unwrap();
    let graph = index.segment_graphs(1).unwrap().remove(0);
    let mut rng = common::rng(23);
    for k in [1usize, 7, 16, 40] {
        let q = index
            .descriptor(rng.random_range(0..index.entry_count()))
            .unwrap();
        let plan = ScanPlan::new(&q, k, Metric::TopK);
        let entries: Vec<usize> = (0..60)
            .map(|_| rng.random_range(0..graph.view.nodes()))
            .collect();
        let lists: Vec<&[u32]> = entries.iter().map(|&e| graph.view.list(e)).collect();
        let mut want = vec![0f32; entries.len()];
        plan.score_entries(&rows, &entries, &mut want);
        let mut got = vec![0f32; entries.len()];
        plan.score_entries_listed(&rows, &entries, &lists, &mut got);
        assert_eq!(bits(&got), bits(&want), "k = {k}");
        // Items past the index (as a damaged list may hold) and fewer lists than entries.
        let odd: Vec<Vec<u32>> = lists
            .iter()
            .map(|l| {
                let mut l = l.to_vec();
                l.push(pack_item(PROBES as u32 + 3, 9.0));
                l.push(pack_item(u32::from(u16::MAX), -9.0));
                l
            })
            .collect();
        let odd: Vec<&[u32]> = odd.iter().take(40).map(Vec::as_slice).collect();
        plan.score_entries_listed(&rows, &entries, &odd, &mut got);
        assert_eq!(bits(&got), bits(&want), "k = {k}, odd lists");
    }
    // In an f32 index the lists hold rounded values: the rows are read, even for lists that lie.
    let f32_dir = common::tempdir();
    let f32_path = build_as(f32_dir.path(), 30, 0, small_graphs(), Dtype::F32);
    let index = Index::open(&f32_path).unwrap();
    let rows = index.segment_rows(1).unwrap().unwrap();
    let q = index.descriptor(0).unwrap();
    let plan = ScanPlan::new(&q, 16, Metric::TopK);
    let entries: Vec<usize> = (0..rows.entries()).collect();
    let lying: Vec<u32> = plan.probes().iter().map(|&p| pack_item(p, 100.0)).collect();
    let lists: Vec<&[u32]> = entries.iter().map(|_| lying.as_slice()).collect();
    let mut want = vec![0f32; entries.len()];
    plan.score_entries(&rows, &entries, &mut want);
    let mut got = vec![0f32; entries.len()];
    plan.score_entries_listed(&rows, &entries, &lists, &mut got);
    assert_eq!(bits(&got), bits(&want), "f32 rows are always read");
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}
