//! Tests of the measurements on data whose answers are known.

use super::*;

/// `concepts` concepts, each firing on its own `width` probes; `per` gallery rows per concept
/// (one model each) and one query per concept, plus noise.
fn toy(probes: usize, concepts: usize, per: usize, width: usize, noise: f32) -> (Rows, Rows) {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut make = |c: usize| {
        let mut v: Vec<f32> = (0..probes)
            .map(|_| rng.random_range(-1.0..1.0) * noise)
            .collect();
        for j in 0..width {
            v[(c * width + j) % probes] += 4.0;
        }
        zscore(&mut v);
        v
    };
    let mut gallery = Rows {
        probes,
        ..Default::default()
    };
    let mut queries = gallery.clone();
    for c in 0..concepts {
        for r in 0..per {
            gallery.values.extend(make(c));
            gallery.label.push(c as u32);
            gallery.group.push((c * per + r) as u32);
        }
        queries.values.extend(make(c));
        queries.label.push(c as u32);
        queries.group.push(c as u32);
    }
    (queries, gallery)
}

#[test]
fn every_discrepancy_retrieves_well_separated_concepts() {
    let (q, g) = toy(200, 10, 3, 8, 0.3);
    let kinds = [
        Discrepancy::TopK(8),
        Discrepancy::Full,
        Discrepancy::TopKPlusAll { k: 8, weight: 0.5 },
        Discrepancy::Union(8),
        Discrepancy::RankTopK(8),
        Discrepancy::Calibrated {
            base: Box::new(Discrepancy::TopK(8)),
            neighbours: 3,
        },
    ];
    for kind in &kinds {
        let s = summarize(&retrieve(&Scorer::new(kind, &g), &q));
        assert_eq!(s.top1, 1.0, "{}", kind.name());
        assert!(
            (s.precision5 - 0.6).abs() < 1e-6,
            "{}: 3 relevant rows of 5, got {}",
            kind.name(),
            s.precision5
        );
    }
    // Bottom-k looks only where no concept fires: it cannot tell concepts apart.
    let s = summarize(&retrieve(&Scorer::new(&Discrepancy::BottomK(8), &g), &q));
    assert!(s.top1 < 0.5, "bottom-k top-1 {}", s.top1);
}

#[test]
fn scores_match_their_definitions() {
    let (q, g) = toy(50, 4, 2, 5, 1.0);
    let q0 = q.row(0);
    let top = top_probes(q0, 5);
    let all = Scorer::new(&Discrepancy::TopK(5), &g).score_all(0, q0);
    let union = Scorer::new(&Discrepancy::Union(5), &g).score_all(0, q0);
    let mixed = Scorer::new(&Discrepancy::TopKPlusAll { k: 5, weight: 2.0 }, &g).score_all(0, q0);
    let full = Scorer::new(&Discrepancy::Full, &g).score_all(0, q0);
    for i in 0..g.len() {
        let d = g.row(i);
        let l1 = |set: &[u32]| {
            set.iter()
                .map(|&j| (q0[j as usize] - d[j as usize]).abs())
                .sum::<f32>()
                / set.len() as f32
        };
        assert!((all[i] - l1(&top)).abs() < 1e-5);
        let mut u: Vec<u32> = top.iter().chain(&top_probes(d, 5)).copied().collect();
        u.sort_unstable();
        u.dedup();
        assert!((union[i] - l1(&u)).abs() < 1e-5);
        let every: Vec<u32> = (0..50).collect();
        assert!((mixed[i] - (l1(&top) + 2.0 * l1(&every))).abs() < 1e-4);
        let e: f32 = q0
            .iter()
            .zip(d)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f32>()
            .sqrt();
        assert!((full[i] - e).abs() < 1e-4);
    }
}

/// `g` written to an index of `dtype`, one model a row, and the rows as the index stores them,
/// with the index as their source.
fn stored(g: &Rows, dtype: probelog::Dtype) -> (tempfile::TempDir, Rows) {
    use probelog::{CreateOptions, IndexWriter, LockWait, LogitMatrix, ModelInput};
    let probes = g.probes;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.plog");
    let mut opts = CreateOptions::new(probes as u32);
    opts.dtype = dtype;
    probelog::create(&path, &opts).unwrap();
    let mut w = IndexWriter::open(&path, LockWait::Fail).unwrap();
    for i in 0..g.len() {
        let input = ModelInput {
            name: format!("m{i}"),
            source: String::new(),
            meta: vec![],
            labels: None,
            logits: LogitMatrix::new(g.row(i), probes, 1).unwrap(),
        };
        w.add_model(input, Default::default()).unwrap();
    }
    w.commit().unwrap();
    drop(w);
    let index = Index::open(&path).unwrap();
    let rows = Rows {
        probes,
        values: (0..g.len() as u64)
            .flat_map(|e| index.descriptor(e).unwrap())
            .collect(),
        source: Some(Source {
            index: Arc::new(index),
            entries: (0..g.len() as u64).collect(),
        }),
        ..g.clone()
    };
    (dir, rows)
}

/// Rows stored in an index are scored by the product's scan where it implements the
/// discrepancy; the scores equal this module's definitions (to 1e-5), f32 and f16.
#[test]
fn scan_scores_equal_the_definitions() {
    let (q, g) = toy(50, 6, 3, 5, 1.5);
    for dtype in [probelog::Dtype::F32, probelog::Dtype::F16] {
        let (_dir, backed) = stored(&g, dtype);
        let plain = Rows {
            source: None,
            ..backed.clone()
        };
        for kind in [
            Discrepancy::TopK(7),
            Discrepancy::TopKPlusRms { k: 5, weight: 2.0 },
            Discrepancy::Full,
        ] {
            let (scan, defined) = (Scorer::new(&kind, &backed), Scorer::new(&kind, &plain));
            for qi in 0..q.len() {
                let (a, b) = (
                    scan.score_all(qi, q.row(qi)),
                    defined.score_all(qi, q.row(qi)),
                );
                for (e, (a, b)) in a.iter().zip(&b).enumerate() {
                    assert!(
                        (a - b).abs() <= 1e-5,
                        "{dtype:?} {kind:?} {qi} {e}: {a} {b}"
                    );
                }
            }
        }
    }
}

/// The library's blend metric (the product's default) is this module's `TopKPlusRms`: on a
/// small hub written to an index (f32 and f16), both give every gallery row the same score
/// (to 1e-5) and rank the hub identically.
#[test]
fn core_blend_metric_equals_topk_plus_rms() {
    use probelog::{Dtype, Metric, SearchMode, SearchParams};
    let (q, g) = toy(50, 6, 3, 5, 1.5);
    for dtype in [Dtype::F32, Dtype::F16] {
        let (_dir, backed) = stored(&g, dtype);
        let index = Arc::clone(&backed.source.as_ref().unwrap().index);
        // The gallery as the index stores it, scored here rather than by the scan.
        let stored = Rows {
            source: None,
            ..backed
        };
        for (k, weight) in [(5, 2.0), (16, probelog::DEFAULT_BLEND_WEIGHT), (7, 0.5)] {
            let kind = Discrepancy::TopKPlusRms { k, weight };
            let scorer = Scorer::new(&kind, &stored);
            let params = SearchParams {
                top: g.len(),
                k: Some(k),
                metric: Metric::Blend,
                blend_weight: Some(weight),
                mode: SearchMode::Exact,
                ..SearchParams::default()
            };
            for qi in 0..q.len() {
                let qv = q.row(qi);
                let want = scorer.score_all(qi, qv);
                let got = index.score_all_with(qv, &params).unwrap();
                for (e, (a, b)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (a - b).abs() <= 1e-5,
                        "{dtype:?} k={k} w={weight} query {qi} row {e}: {a} vs {b}"
                    );
                }
                let mut order: Vec<usize> = (0..want.len()).collect();
                order.sort_by(|&a, &b| want[a].total_cmp(&want[b]).then(a.cmp(&b)));
                let ranked: Vec<usize> = index
                    .search_descriptor(qv, None, &params)
                    .unwrap()
                    .iter()
                    .map(|s| s.id as usize)
                    .collect();
                assert_eq!(ranked, order, "{dtype:?} k={k} w={weight} query {qi}");
            }
        }
    }
}

#[test]
fn calibration_pushes_back_a_hub() {
    // A gallery row that fires on every concept's probes is close to every query; the
    // calibrated score removes its advantage.
    let (q, mut g) = toy(200, 10, 2, 8, 0.3);
    let mut hub = vec![0f32; 200];
    for c in 0..10 {
        for j in 0..8 {
            hub[c * 8 + j] = 4.0;
        }
    }
    zscore(&mut hub);
    g.values.extend(&hub);
    g.label.push(99);
    g.group.push(999);
    let plain = Scorer::new(&Discrepancy::Union(8), &g);
    let hub_row = g.len() - 1;
    let calibrated_kind = Discrepancy::Calibrated {
        base: Box::new(Discrepancy::Union(8)),
        neighbours: 2,
    };
    let calibrated = Scorer::new(&calibrated_kind, &g);
    let rank_of_hub = |s: &Scorer<'_>| {
        let scores = s.score_all(0, q.row(0));
        scores.iter().filter(|&&x| x < scores[hub_row]).count()
    };
    assert!(rank_of_hub(&calibrated) >= rank_of_hub(&plain));
    assert_eq!(summarize(&retrieve(&calibrated, &q)).top1, 1.0);
}

#[test]
fn restricting_renormalizes_over_the_subset() {
    let (_, g) = toy(40, 2, 1, 4, 1.0);
    let r = g.restrict(&[0, 3, 7, 11, 20]);
    assert_eq!(r.probes, 5);
    for i in 0..r.len() {
        let v = r.row(i);
        let mean: f32 = v.iter().sum::<f32>() / 5.0;
        let var: f32 = v.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / 5.0;
        assert!(mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-4);
    }
}

#[test]
fn model_level_finds_the_model_holding_the_concept() {
    let (q, g) = toy(200, 6, 1, 10, 0.1);
    let s = summarize(&retrieve_models(&q, &g));
    assert_eq!(s.top1, 1.0);
}

#[test]
fn wilson_and_chance_match_known_values() {
    let (lo, hi) = wilson(50, 100);
    assert!((lo - 0.4038).abs() < 1e-3 && (hi - 0.5962).abs() < 1e-3);
    assert_eq!(wilson(0, 10).0, 0.0);
    // One relevant row among ten: 1/10 at top-1, 5/10 at top-5.
    let g = Rows {
        probes: 1,
        values: vec![0.0; 10],
        label: (0..10).collect(),
        group: (0..10).collect(),
        source: None,
    };
    let q = Rows {
        probes: 1,
        values: vec![0.0],
        label: vec![3],
        group: vec![0],
        source: None,
    };
    let (c1, c5) = chance(&q, &g);
    assert!((c1 - 0.1).abs() < 1e-12 && (c5 - 0.5).abs() < 1e-12);
}

#[test]
fn paired_difference_of_identical_outcomes_is_zero_and_detects_a_gap() {
    let hit = Outcome {
        top1: true,
        top5: true,
        precision5: 1.0,
    };
    let miss = Outcome {
        top1: false,
        top5: false,
        precision5: 0.0,
    };
    let a = vec![hit; 40];
    let groups: Vec<u32> = (0..40).map(|i| i / 4).collect();
    let d = paired_difference(&a, &a, &groups, 200, 1);
    assert_eq!((d.top1, d.top1_ci), (0.0, (0.0, 0.0)));
    let b: Vec<Outcome> = (0..40)
        .map(|i| if i % 2 == 0 { hit } else { miss })
        .collect();
    let d = paired_difference(&a, &b, &groups, 500, 1);
    assert!((d.top1 - 0.5).abs() < 1e-12);
    assert!(d.top1_ci.0 > 0.0 && d.top1_ci.1 <= 1.0);
}
