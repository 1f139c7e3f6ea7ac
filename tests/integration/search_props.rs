//! Search against a brute-force reference: random zoos written as several commits, random
//! parameters, results compared exactly (ids, scores, metadata).

use std::path::Path;

use half::f16;
use probelog::search::{blend_discrepancy, full_distance, topk_discrepancy};
use probelog::{Dtype, Grouping, Hit, Index, Metric, Query, RawIndex, SearchParams};
use proptest::prelude::*;
use rand::Rng;

use crate::common::{self, TestModel};

/// A zoo as appended: models in id order, with the commit boundaries.
#[derive(Debug)]
struct Zoo {
    probes: usize,
    dtype: Dtype,
    models: Vec<TestModel>,
    /// First entry id of each model, plus the total at the end.
    first_entry: Vec<u64>,
}

impl Zoo {
    fn entries(&self) -> u64 {
        *self.first_entry.last().unwrap()
    }
    /// (model id, logit) of an entry.
    fn locate(&self, e: u64) -> (usize, usize) {
        let m = self.first_entry.partition_point(|&f| f <= e) - 1;
        (m, (e - self.first_entry[m]) as usize)
    }
    /// The descriptor the index must store: each logit z-normalized over the probes in f64 (the
    /// population standard deviation), then stored in the index's dtype.
    fn expected_descriptor(&self, e: u64) -> Vec<f32> {
        let (m, j) = self.locate(e);
        let col = self.models[m].column(j);
        let n = col.len() as f64;
        let mean = col.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let var = col
            .iter()
            .map(|&x| (f64::from(x) - mean).powi(2))
            .sum::<f64>()
            / n;
        let std = var.sqrt();
        col.iter()
            .map(|&x| {
                let z = ((f64::from(x) - mean) / std) as f32;
                match self.dtype {
                    Dtype::F32 => z,
                    Dtype::F16 => f16::from_f32(z).to_f32(),
                }
            })
            .collect()
    }
}

#[derive(Debug, Clone)]
struct ZooSpec {
    seed: u64,
    probes: usize,
    f16: bool,
    /// Logit counts of the models of each commit.
    commits: Vec<Vec<usize>>,
    /// Copy some columns from earlier logits, so that scores tie and ids break the ties.
    duplicates: bool,
}

fn zoo_spec() -> impl Strategy<Value = ZooSpec> {
    (
        any::<u64>(),
        4usize..40,
        any::<bool>(),
        prop::collection::vec(prop::collection::vec(1usize..6, 1..4), 1..4),
        any::<bool>(),
    )
        .prop_map(|(seed, probes, f16, commits, duplicates)| ZooSpec {
            seed,
            probes,
            f16,
            commits,
            duplicates,
        })
}

/// Builds the zoo of `spec` into a new index file, one commit per group.
fn build(dir: &Path, spec: &ZooSpec) -> (Zoo, std::path::PathBuf) {
    let dtype = if spec.f16 { Dtype::F16 } else { Dtype::F32 };
    let path = common::create_index(dir, "zoo.plog", spec.probes, dtype);
    let mut rng = common::rng(spec.seed);
    let mut zoo = Zoo {
        probes: spec.probes,
        dtype,
        models: Vec::new(),
        first_entry: vec![0],
    };
    for (c, group) in spec.commits.iter().enumerate() {
        let mut batch = Vec::new();
        for (i, &n) in group.iter().enumerate() {
            let name = format!("m{c}-{i}");
            let mut m = common::labeled_model(&mut rng, &name, spec.probes, n);
            if i % 2 == 1 {
                m.labels = None;
            }
            if spec.duplicates {
                let earlier: Vec<&TestModel> = zoo.models.iter().chain(&batch).collect();
                if !earlier.is_empty() {
                    for j in 0..n {
                        if rng.random_bool(0.5) {
                            let src = earlier[rng.random_range(0..earlier.len())];
                            let col = src.column(rng.random_range(0..src.n));
                            for (p, x) in col.iter().enumerate() {
                                // Doubling keeps the descriptor bit for bit.
                                m.logits[p * n + j] = x * 2.0;
                            }
                        }
                    }
                }
            }
            batch.push(m);
        }
        common::append(&path, &batch);
        for m in batch {
            let last = zoo.entries();
            zoo.first_entry.push(last + m.n as u64);
            zoo.models.push(m);
        }
    }
    (zoo, path)
}

/// Brute force: every entry scored with the reference definitions, sorted by (score, id).
fn reference(
    idx: &RawIndex<impl AsRef<[u8]> + Sync>,
    zoo: &Zoo,
    q: &[f32],
    exclude: Option<u64>,
    params: &SearchParams,
) -> Vec<(u64, f32)> {
    let k = params.k.unwrap_or(probelog::DEFAULT_K).min(zoo.probes);
    let descs: Vec<Vec<f32>> = (0..zoo.entries())
        .map(|e| idx.descriptor(e).unwrap())
        .collect();
    let mut scored: Vec<(u64, f32)> = match (params.grouping, params.metric) {
        (Grouping::ModelMean, _) => (0..zoo.models.len())
            .filter(|&m| Some(m as u64) != exclude)
            .map(|m| {
                let (a, b) = (zoo.first_entry[m], zoo.first_entry[m + 1]);
                let mut dist = 0f64;
                for (p, &qp) in q.iter().enumerate() {
                    let sum: f64 = (a..b).map(|e| f64::from(descs[e as usize][p])).sum();
                    let mean = (sum / (b - a) as f64) as f32;
                    dist += f64::from(qp - mean).powi(2);
                }
                (m as u64, dist.sqrt() as f32)
            })
            .collect(),
        (_, metric) => {
            let w = params
                .blend_weight
                .unwrap_or(probelog::DEFAULT_BLEND_WEIGHT);
            let score = |e: u64| match metric {
                Metric::TopK => topk_discrepancy(q, &descs[e as usize], k),
                Metric::Blend => blend_discrepancy(q, &descs[e as usize], k, w),
                _ => full_distance(q, &descs[e as usize]),
            };
            let all = (0..zoo.entries()).filter(|&e| Some(zoo.locate(e).0 as u64) != exclude);
            if params.grouping == Grouping::PerModel {
                (0..zoo.models.len())
                    .filter(|&m| Some(m as u64) != exclude)
                    .map(|m| {
                        (zoo.first_entry[m]..zoo.first_entry[m + 1])
                            .map(|e| (e, score(e)))
                            .min_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)))
                            .unwrap()
                    })
                    .collect()
            } else {
                all.map(|e| (e, score(e))).collect()
            }
        }
    };
    scored.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    scored.truncate(params.top);
    scored
}

/// Asserts that `hits` are exactly `want`, with the metadata the zoo was appended with.
fn assert_hits(zoo: &Zoo, hits: &[Hit], want: &[(u64, f32)], params: &SearchParams) {
    let got: Vec<(u64, u32)> = hits
        .iter()
        .map(|h| (h.entry.unwrap_or(h.model_id), h.score.to_bits()))
        .collect();
    let want_bits: Vec<(u64, u32)> = want.iter().map(|&(i, s)| (i, s.to_bits())).collect();
    assert_eq!(
        got, want_bits,
        "search {params:?}\n got {hits:?}\nwant {want:?}"
    );
    for (i, h) in hits.iter().enumerate() {
        assert_eq!(h.rank, i + 1);
        if params.grouping == Grouping::ModelMean {
            assert_eq!((h.entry, h.logit, &h.label), (None, None, &None));
            assert_eq!(h.model, zoo.models[h.model_id as usize].name);
            continue;
        }
        let e = h.entry.unwrap();
        let (m, j) = zoo.locate(e);
        let model = &zoo.models[m];
        assert_eq!(h.model_id, m as u64);
        assert_eq!(h.model, model.name);
        assert_eq!(h.logit, Some(j as u32));
        assert_eq!(h.label, model.labels.as_ref().map(|l| l[j].clone()));
    }
}

#[derive(Debug, Clone)]
struct QuerySpec {
    entry: u64,
    by_vector: bool,
    k: Option<usize>,
    top: usize,
    per_model: bool,
    exclude_same_model: bool,
    metric: usize,
    blend_weight: usize,
}

fn query_specs() -> impl Strategy<Value = Vec<QuerySpec>> {
    prop::collection::vec(
        (
            any::<u64>(),
            any::<bool>(),
            prop::option::weighted(0.8, 1usize..64),
            1usize..30,
            any::<bool>(),
            any::<bool>(),
            0usize..6,
            0usize..4,
        )
            .prop_map(
                |(entry, by_vector, k, top, per_model, exclude, metric, blend_weight)| QuerySpec {
                    entry,
                    by_vector,
                    k,
                    top,
                    per_model,
                    exclude_same_model: exclude && !by_vector,
                    // top-k and blend twice as often as each baseline
                    metric,
                    blend_weight,
                },
            ),
        1..8,
    )
}

fn check_queries(idx: &Index, zoo: &Zoo, queries: &[QuerySpec]) {
    for qs in queries {
        let e = qs.entry % zoo.entries();
        let (m, j) = zoo.locate(e);
        // Index 3 is the model-mean grouping, which takes no metric.
        let metric = [
            Metric::TopK,
            Metric::Blend,
            Metric::Full,
            Metric::Blend,
            Metric::TopK,
            Metric::Blend,
        ][qs.metric];
        let grouping = match (qs.metric, qs.per_model) {
            (3, _) => Grouping::ModelMean,
            (_, true) => Grouping::PerModel,
            (_, false) => Grouping::Entries,
        };
        let entry_metric = grouping != Grouping::ModelMean;
        let params = SearchParams {
            top: qs.top,
            // k beyond the probe count is an error, checked below; wrap it into range here.
            // Parameters that the metric does not use are refused, also checked below.
            k: qs
                .k
                .map(|k| 1 + (k - 1) % zoo.probes)
                .filter(|_| entry_metric && metric.uses_k()),
            exclude_same_model: qs.exclude_same_model,
            grouping,
            metric,
            mode: probelog::SearchMode::Exact,
            candidates: None,
            blend_weight: [None, Some(0.0), Some(0.5), Some(3.25)][qs.blend_weight]
                .filter(|_| entry_metric && metric == Metric::Blend),
            filter: None,
        };
        let col = zoo.models[m].column(j);
        let (query, q) = if qs.by_vector {
            let q = probelog::normalize_query(&col, "q").unwrap();
            (Query::Vector(&col), q)
        } else {
            (Query::Entry(e), idx.descriptor(e).unwrap())
        };
        let exclude = qs.exclude_same_model.then_some(m as u64);
        let hits = idx.search(&query, &params).unwrap();
        let want = reference(idx, zoo, &q, exclude, &params);
        assert_hits(zoo, &hits, &want, &params);
        if params.metric.uses_k() && params.grouping == Grouping::Entries && exclude.is_none() {
            // The query's own entry is a perfect match (score 0) unless a tie with a lower id
            // precedes it.
            let own = hits.iter().find(|h| h.entry == Some(e));
            if zoo.dtype == Dtype::F32 || !qs.by_vector {
                assert!(hits[0].score == 0.0, "{hits:?}");
                if let Some(own) = own {
                    assert_eq!(own.score, 0.0);
                }
            }
        }
        if zoo.dtype == Dtype::F32 && qs.by_vector {
            // Query by the raw logit column = query by the entry, result for result.
            let by_entry = idx.search(&Query::Entry(e), &params).unwrap();
            assert_eq!(
                hits, by_entry,
                "vector query of entry {e} differs from the entry query"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    /// Every search (blend, top-k and full metrics, model baseline, per-model, excluding the query's
    /// model, f32 and f16, several segments) equals the brute-force reference exactly, and the
    /// index stores exactly the expected descriptors and metadata.
    #[test]
    fn search_matches_brute_force(spec in zoo_spec(), queries in query_specs()) {
        let dir = common::tempdir();
        let (zoo, path) = build(dir.path(), &spec);
        let idx = Index::open(&path).unwrap();
        prop_assert_eq!(idx.entry_count(), zoo.entries());
        prop_assert_eq!(idx.model_count(), zoo.models.len() as u64);
        prop_assert_eq!(idx.segment_count() as usize, spec.commits.len() + 1);
        for e in 0..zoo.entries() {
            let got = idx.descriptor(e).unwrap();
            let want = zoo.expected_descriptor(e);
            let same = got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits());
            prop_assert!(same, "entry {}: stored {:?}, expected {:?}", e, got, want);
        }
        for (m, model) in zoo.models.iter().enumerate() {
            let info = idx.model(m as u64).unwrap();
            prop_assert_eq!(&info.name, &model.name);
            prop_assert_eq!(&info.source, &model.source);
            prop_assert_eq!(&info.meta, &model.meta);
            prop_assert_eq!(info.first_entry, zoo.first_entry[m]);
            prop_assert_eq!(info.logit_count as usize, model.n);
        }
        check_queries(&idx, &zoo, &queries);
        let report = idx.verify();
        prop_assert!(report.is_ok() && report.warnings.is_empty(), "{:?}", report);
    }

    /// Z-normalization makes descriptors invariant to a model's scale and shift: scaling by a power
    /// of two (with or without sign flip) keeps them bit for bit; any positive scale and shift
    /// keeps them up to rounding of the transformed input; a negative scale negates them.
    #[test]
    fn descriptors_are_invariant_to_scale_and_shift(
        seed in any::<u64>(),
        probes in 3usize..50,
        n in 1usize..5,
        exp in -8i32..8,
        scale in 0.05f32..20.0,
        shift in -100f32..100.0,
    ) {
        let dir = common::tempdir();
        let path = common::create_index(dir.path(), "inv.plog", probes, Dtype::F32);
        let mut rng = common::rng(seed);
        let base = common::labeled_model(&mut rng, "base", probes, n);
        let pow2 = 2f32.powi(exp);
        let variant = |name: &str, f: &dyn Fn(f32) -> f32| TestModel {
            name: name.into(),
            logits: base.logits.iter().map(|&x| f(x)).collect(),
            ..base.clone()
        };
        let models = vec![
            base.clone(),
            variant("pow2", &|x| x * pow2),
            variant("neg-pow2", &|x| -x * pow2),
            variant("affine", &|x| x * scale + shift),
            variant("neg-affine", &|x| -x * scale + shift),
        ];
        common::append(&path, &models);
        let idx = Index::open(&path).unwrap();
        for j in 0..n as u64 {
            let at = |m: u64| idx.descriptor(m * n as u64 + j).unwrap();
            let d = at(0);
            prop_assert_eq!(&at(1), &d);
            let negated: Vec<f32> = d.iter().map(|x| -x).collect();
            prop_assert_eq!(&at(2), &negated);
            // |x| <= 11 and |shift| <= 100: rounding the transformed input in f32 moves a
            // z-score (population std >= ~1 for these logits) by far less than 1e-3.
            for (a, b) in at(3).iter().zip(&d) {
                prop_assert!((a - b).abs() < 1e-3, "affine: {} vs {}", a, b);
            }
            for (a, b) in at(4).iter().zip(&negated) {
                prop_assert!((a - b).abs() < 1e-3, "negated affine: {} vs {}", a, b);
            }
            // The transformed copies are the base logit's best matches.
            let hits = idx
                .search(&Query::Entry(j), &SearchParams { top: 3, grouping: Grouping::PerModel, ..Default::default() })
                .unwrap();
            let models: std::collections::BTreeSet<u64> = hits.iter().map(|h| h.model_id).collect();
            prop_assert_eq!(models, [0u64, 1, 3].into_iter().collect());
        }
    }
}

/// Out-of-range parameters are errors, not panics or silent clamps.
#[test]
fn invalid_search_parameters_are_refused() {
    let dir = common::tempdir();
    let spec = ZooSpec {
        seed: 7,
        probes: 12,
        f16: false,
        commits: vec![vec![3, 2], vec![4]],
        duplicates: false,
    };
    let (zoo, path) = build(dir.path(), &spec);
    let idx = Index::open(&path).unwrap();
    let p = SearchParams::default();
    for bad in [
        SearchParams { k: Some(0), ..p },
        SearchParams { k: Some(13), ..p },
        SearchParams { top: 0, ..p },
        SearchParams {
            blend_weight: Some(-0.5),
            ..p
        },
        SearchParams {
            blend_weight: Some(f32::NAN),
            ..p
        },
        SearchParams {
            blend_weight: Some(f32::INFINITY),
            ..p
        },
        SearchParams {
            blend_weight: Some(-1.0),
            metric: Metric::TopK,
            ..p
        },
    ] {
        assert!(idx.search(&Query::Entry(0), &bad).is_err(), "{bad:?}");
    }
    assert!(idx.search(&Query::Entry(zoo.entries()), &p).is_err());
    let col = zoo.models[0].column(0);
    assert!(idx.search(&Query::Vector(&col[..11]), &p).is_err());
    let ex = SearchParams {
        exclude_same_model: true,
        ..p
    };
    assert!(idx.search(&Query::Vector(&col), &ex).is_err());
    assert!(
        idx.search(&Query::Vector(&[1.0; 12]), &p).is_err(),
        "constant query"
    );
    assert!(
        idx.search(&Query::TextEmbedding(&[1.0; 4]), &p).is_err(),
        "no embeddings"
    );
}
