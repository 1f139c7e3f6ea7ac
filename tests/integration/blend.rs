//! The blend metric (the default): its scores against a direct f64 computation, its reduction to
//! top-k at weight 0, the scan (`score_into`) against per-entry scoring (`score_entries`) bit for
//! bit, its default and the refusal of bad weights.

use probelog::search::ScanPlan;
use probelog::{
    DEFAULT_BLEND_WEIGHT, DEFAULT_CANDIDATES, DEFAULT_K, Dtype, Error, Grouping, Index, Metric,
    Query, SearchError, SearchMode, SearchParams,
};
use rand::Rng;
use rand::seq::SliceRandom;

use crate::common;

/// Probe counts that are not multiples of 4 (and one that is), ks that are not either.
const PROBES: [usize; 3] = [37, 64, 203];
const KS: [usize; 5] = [1, 3, 7, 13, 16];
const WEIGHTS: [f32; 4] = [0.0, 0.37, DEFAULT_BLEND_WEIGHT, 5.0];

/// An index of `probes` probes: two commits of three models of 7 logits (21 entries a segment:
/// more than the f16 kernel's 8 lanes, with a tail).
fn build(dir: &std::path::Path, probes: usize, dtype: Dtype, seed: u64) -> Index {
    let path = common::create_index(dir, "blend.plog", probes, dtype);
    let mut rng = common::rng(seed);
    for c in 0..2 {
        let models: Vec<_> = (0..3)
            .map(|i| common::labeled_model(&mut rng, &format!("m{c}-{i}"), probes, 7))
            .collect();
        common::append(&path, &models);
    }
    Index::open(&path).unwrap()
}

/// Runs `check` on `build`'s index for each dtype and each probe count of `PROBES`, the `i`-th
/// count seeded with `seed + i`.
fn for_each_dtype_and_probe_count(seed: u64, mut check: impl FnMut(Dtype, usize, &Index)) {
    for dtype in [Dtype::F32, Dtype::F16] {
        for (i, &probes) in PROBES.iter().enumerate() {
            let dir = common::tempdir();
            let index = build(dir.path(), probes, dtype, seed + i as u64);
            check(dtype, probes, &index);
        }
    }
}

/// `mean_{topk(q)} |q - d| + w * sqrt(mean_all (q - d)^2)`, in f64 from the definition.
fn blend_f64(q: &[f32], d: &[f32], k: usize, w: f32) -> f64 {
    let top = probelog::descriptor::top_probes(q, k);
    let diff = |p: usize| f64::from(q[p]) - f64::from(d[p]);
    let top_mean = top.iter().map(|&p| diff(p as usize).abs()).sum::<f64>() / top.len() as f64;
    let all_rms = ((0..q.len()).map(|p| diff(p).powi(2)).sum::<f64>() / q.len() as f64).sqrt();
    top_mean + f64::from(w) * all_rms
}

fn blend(k: usize, w: f32) -> SearchParams<'static> {
    SearchParams {
        metric: Metric::Blend,
        k: Some(k),
        blend_weight: Some(w),
        mode: SearchMode::Exact,
        top: usize::MAX,
        ..SearchParams::default()
    }
}

#[test]
fn blend_scores_equal_the_f64_definition() {
    for_each_dtype_and_probe_count(11, |dtype, probes, index| {
        let n = index.entry_count();
        let descs: Vec<Vec<f32>> = (0..n).map(|e| index.descriptor(e).unwrap()).collect();
        let mut rng = common::rng(3);
        let raw: Vec<f32> = (0..probes).map(|_| rng.random_range(-2.0..2.0)).collect();
        let by_vector = probelog::normalize_query(&raw, "q").unwrap();
        for q in [descs[5].clone(), by_vector] {
            for &k in &KS {
                for &w in &WEIGHTS {
                    let params = blend(k, w);
                    let scores = index.score_all_with(&q, &params).unwrap();
                    for (e, d) in descs.iter().enumerate() {
                        let want = blend_f64(&q, d, k, w);
                        let got = f64::from(scores[e]);
                        assert!(
                            (got - want).abs() <= 1e-5 * want.max(1.0),
                            "{dtype:?} P={probes} k={k} w={w} entry {e}: {got} vs {want}"
                        );
                    }
                    // Search returns the same scores, best first.
                    let hits = index.search(&Query::Vector(&q), &params).unwrap();
                    assert_eq!(hits.len() as u64, n);
                    for h in &hits {
                        let e = h.entry.unwrap() as usize;
                        let f = blend_f64(
                            &probelog::normalize_query(&q, "q").unwrap(),
                            &descs[e],
                            k,
                            w,
                        );
                        assert!((f64::from(h.score) - f).abs() <= 1e-5 * f.max(1.0));
                    }
                    assert!(hits.windows(2).all(|p| p[0].score <= p[1].score));
                }
            }
        }
    });
}

#[test]
fn blend_at_weight_zero_is_topk_score_for_score() {
    for dtype in [Dtype::F32, Dtype::F16] {
        let dir = common::tempdir();
        let index = build(dir.path(), 37, dtype, 5);
        for e in [0, 9, 30] {
            let q = index.descriptor(e).unwrap();
            for &k in &KS {
                let topk = SearchParams {
                    metric: Metric::TopK,
                    blend_weight: None,
                    ..blend(k, 0.0)
                };
                let a = index.score_all_with(&q, &blend(k, 0.0)).unwrap();
                let b = index.score_all_with(&q, &topk).unwrap();
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&a), bits(&b), "{dtype:?} k={k}");
                for grouping in [Grouping::Entries, Grouping::PerModel] {
                    let ha = index
                        .search(
                            &Query::Entry(e),
                            &SearchParams {
                                grouping,
                                ..blend(k, 0.0)
                            },
                        )
                        .unwrap();
                    let hb = index
                        .search(&Query::Entry(e), &SearchParams { grouping, ..topk })
                        .unwrap();
                    assert_eq!(ha.hits, hb.hits, "{dtype:?} k={k} {grouping:?}");
                }
            }
        }
    }
}

/// Per-entry scoring (the rerank of hnsw mode) gives the scan's scores bit for bit, for every
/// entry metric, f32 and f16, whole segments and blocks, any entry order.
#[test]
fn score_entries_is_bit_identical_to_score_into() {
    for_each_dtype_and_probe_count(40, |dtype, probes, index| {
        let q = index.descriptor(3).unwrap();
        let mut plans = vec![
            ScanPlan::new(&q, DEFAULT_K.min(probes), Metric::TopK),
            ScanPlan::new(&q, 7, Metric::TopK),
            ScanPlan::new(&q, 1, Metric::Full),
            ScanPlan::new(&q, DEFAULT_K.min(probes), Metric::Blend),
        ];
        for &k in &KS {
            for &w in &WEIGHTS {
                plans.push(ScanPlan::with_blend_weight(&q, k, Metric::Blend, w));
            }
        }
        let mut rng = common::rng(9);
        for s in 0..index.segment_count() as usize {
            let Some(rows) = index.segment_rows(s).unwrap() else {
                continue;
            };
            let n = rows.entries();
            for plan in &plans {
                let mut scan = vec![0f32; n];
                plan.score_into(&rows, 0..n, &mut scan);
                // Blocks of the scan score as the whole.
                for r in [0..5, 5..n, 2..13] {
                    let mut part = vec![0f32; r.len()];
                    plan.score_into(&rows, r.clone(), &mut part);
                    assert_eq!(
                        part.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                        scan[r].iter().map(|x| x.to_bits()).collect::<Vec<_>>()
                    );
                }
                let mut entries: Vec<usize> = (0..n).collect();
                entries.shuffle(&mut rng);
                let mut one = vec![0f32; n];
                plan.score_entries(&rows, &entries, &mut one);
                for (&e, &x) in entries.iter().zip(&one) {
                    assert_eq!(
                        x.to_bits(),
                        scan[e].to_bits(),
                        "{dtype:?} P={probes} {plan:?}"
                    );
                }
            }
        }
    });
}

#[test]
fn the_blend_is_the_default_metric() {
    assert_eq!(Metric::default(), Metric::Blend);
    assert_eq!(Metric::Blend.name(), "blend");
    let p = SearchParams::default();
    assert_eq!(p.metric, Metric::Blend);
    assert_eq!(p.blend_weight, None);
    assert_eq!(DEFAULT_BLEND_WEIGHT, 8.0);

    let dir = common::tempdir();
    let index = build(dir.path(), 64, Dtype::F32, 2);
    let explicit = SearchParams {
        metric: Metric::Blend,
        blend_weight: Some(8.0),
        k: Some(DEFAULT_K),
        ..p
    };
    let found = index.search(&Query::Entry(4), &p).unwrap();
    assert_eq!(found, index.search(&Query::Entry(4), &explicit).unwrap());
    // The search reports what it resolved: the defaults, and auto mode scanning for the blend.
    assert_eq!(
        (
            found.params.metric,
            found.params.k,
            found.params.blend_weight
        ),
        (
            Some(Metric::Blend),
            Some(DEFAULT_K),
            Some(DEFAULT_BLEND_WEIGHT)
        )
    );
    assert_eq!(
        (found.params.mode, found.params.candidates),
        (SearchMode::Exact, None)
    );
    let q = index.descriptor(4).unwrap();
    assert_eq!(
        index.score_all(&q, Metric::Blend, None).unwrap(),
        index.score_all_with(&q, &explicit).unwrap()
    );
}

#[test]
fn bad_blend_weights_are_refused() {
    let dir = common::tempdir();
    let index = build(dir.path(), 37, Dtype::F32, 8);
    let q = index.descriptor(0).unwrap();
    for w in [
        -1.0,
        -1e-30,
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        3e38,
    ] {
        let params = SearchParams {
            blend_weight: Some(w),
            ..SearchParams::default()
        };
        for r in [
            index.search(&Query::Entry(0), &params).map(|_| ()),
            index.score_all_with(&q, &params).map(|_| ()),
            index.resolve_params(&params).map(|_| ()),
        ] {
            match r {
                Err(Error::Search(SearchError::BlendWeightOutOfRange { .. })) => {}
                other => panic!("weight {w}: {other:?}"),
            }
        }
    }
    // Zero and large finite weights are fine.
    for w in [0.0, 1e6] {
        let params = SearchParams {
            blend_weight: Some(w),
            ..SearchParams::default()
        };
        assert!(index.search(&Query::Entry(0), &params).is_ok());
    }
}

/// Search parameters are resolved in one step that the search runs and returns: defaults filled
/// in, `auto` decided, and every value checked with a typed error that names no front end's flag.
#[test]
fn parameters_are_resolved_once_with_typed_errors() {
    let dir = common::tempdir();
    let index = build(dir.path(), 12, Dtype::F32, 5);
    let entry = Query::Entry(3);
    let run = |p: SearchParams| index.search(&entry, &p).map(|found| found.params);
    let base = SearchParams::default();

    let topk = run(SearchParams {
        metric: Metric::TopK,
        k: Some(3),
        grouping: Grouping::PerModel,
        ..base
    })
    .unwrap();
    assert_eq!(
        (topk.metric, topk.k, topk.blend_weight, topk.grouping),
        (Some(Metric::TopK), Some(3), None, Grouping::PerModel)
    );
    let full = run(SearchParams {
        metric: Metric::Full,
        ..base
    })
    .unwrap();
    assert_eq!((full.k, full.blend_weight), (None, None));
    let models = run(SearchParams {
        grouping: Grouping::ModelMean,
        ..base
    })
    .unwrap();
    assert_eq!(
        (models.metric, models.k, models.blend_weight),
        (None, None, None)
    );
    // Fewer probes than the default k: k is the probe count.
    assert_eq!(run(base).unwrap().k, Some(DEFAULT_K.min(12)));
    // The graphs serve the blend when asked: hnsw mode with the default candidates.
    let blend_hnsw = run(SearchParams {
        mode: SearchMode::Hnsw,
        ..base
    })
    .unwrap();
    assert_eq!(
        (blend_hnsw.metric, blend_hnsw.mode, blend_hnsw.candidates),
        (Some(Metric::Blend), SearchMode::Hnsw, Some(DEFAULT_CANDIDATES))
    );

    let refused = [
        (SearchParams { top: 0, ..base }, SearchError::NoResults),
        (
            SearchParams {
                k: Some(13),
                ..base
            },
            SearchError::KOutOfRange { k: 13, probes: 12 },
        ),
        (
            SearchParams {
                metric: Metric::Full,
                k: Some(2),
                ..base
            },
            SearchError::NotApplicable {
                param: "k",
                used_by: "the full metric",
            },
        ),
        (
            SearchParams {
                metric: Metric::TopK,
                blend_weight: Some(1.0),
                ..base
            },
            SearchError::NotApplicable {
                param: "blend_weight",
                used_by: "the topk metric",
            },
        ),
        (
            SearchParams {
                grouping: Grouping::ModelMean,
                k: Some(2),
                ..base
            },
            SearchError::NotApplicable {
                param: "k",
                used_by: "the model-mean grouping",
            },
        ),
        (
            SearchParams {
                mode: SearchMode::Hnsw,
                metric: Metric::Full,
                ..base
            },
            SearchError::HnswUnsupported {
                what: "the full metric",
            },
        ),
        (
            SearchParams {
                mode: SearchMode::Hnsw,
                metric: Metric::TopK,
                grouping: Grouping::ModelMean,
                ..base
            },
            SearchError::HnswUnsupported {
                what: "the model-mean grouping",
            },
        ),
        (
            SearchParams {
                candidates: Some(0),
                ..base
            },
            SearchError::NoCandidates,
        ),
    ];
    for (params, want) in refused {
        match run(params) {
            Err(Error::Search(got)) => {
                assert_eq!(got, want, "{params:?}");
                assert!(!got.to_string().contains("--"), "a CLI flag in {got}");
            }
            other => panic!("{params:?}: {other:?}"),
        }
    }
    let v: Vec<f32> = (0..12).map(|p| p as f32).collect();
    let exclude = SearchParams {
        exclude_same_model: true,
        ..base
    };
    assert!(matches!(
        index.search(&Query::Vector(&v), &exclude),
        Err(Error::Search(SearchError::ExcludeNeedsEntry))
    ));
    assert!(matches!(
        index.search(&Query::TextEmbedding(&[1.0, 2.0]), &base),
        Err(Error::Search(SearchError::NoProbeEmbeddings))
    ));
}
