//! What `eval` measures: discrepancies between descriptors, retrieval outcomes and their
//! statistics. Pure computation over in-memory matrices, so that tests can check it on data whose
//! answers are known.
//!
//! A query is relevant to a gallery row when both carry the same label (concept). Rows are
//! entry-major: row `i` is one logit's descriptor over the probes.

use std::cmp::Ordering;
use std::sync::Arc;

use probelog::descriptor::top_probes;
use probelog::search::full_distance;
use probelog::{Index, Metric, SearchParams};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;

/// Descriptors with a label and a group each. A gallery row's group is its model; a query's
/// group is its bootstrap cluster (its model, or its concept for text queries).
#[derive(Debug, Clone, Default)]
pub struct Rows {
    pub probes: usize,
    pub values: Vec<f32>,
    pub label: Vec<u32>,
    pub group: Vec<u32>,
    /// The index whose stored descriptors these rows are, unchanged; `None` once they are changed
    /// (restricted to probes, ranked) or made elsewhere (raw logits, text queries).
    pub source: Option<Source>,
}

/// Where rows are stored: the discrepancies the product implements (top-k, the blend,
/// full-query) are scored over such rows by the product's own scan, `Index::score_all_with`.
#[derive(Debug, Clone)]
pub struct Source {
    pub index: Arc<Index>,
    /// The entry of each row.
    pub entries: Vec<u64>,
}

impl Rows {
    pub fn len(&self) -> usize {
        self.label.len()
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.values[i * self.probes..(i + 1) * self.probes]
    }

    /// The rows `idx`, in that order.
    pub fn select(&self, idx: &[usize]) -> Rows {
        Rows {
            probes: self.probes,
            values: idx.iter().flat_map(|&i| self.row(i)).copied().collect(),
            label: idx.iter().map(|&i| self.label[i]).collect(),
            group: idx.iter().map(|&i| self.group[i]).collect(),
            source: self.source.as_ref().map(|s| Source {
                index: Arc::clone(&s.index),
                entries: idx.iter().map(|&i| s.entries[i]).collect(),
            }),
        }
    }

    /// The same rows on the probes `subset` only, each z-normalized again over them: the
    /// descriptors a fixed subset of probes gives (z-normalization is affine, so normalizing the
    /// stored descriptor's subset equals normalizing the raw logits' subset).
    pub fn restrict(&self, subset: &[u32]) -> Rows {
        let mut values = Vec::with_capacity(self.len() * subset.len());
        for i in 0..self.len() {
            let r = self.row(i);
            let start = values.len();
            values.extend(subset.iter().map(|&p| r[p as usize]));
            zscore(&mut values[start..]);
        }
        Rows {
            probes: subset.len(),
            values,
            label: self.label.clone(),
            group: self.group.clone(),
            source: None,
        }
    }

    /// Each row's values replaced by their rank among the row's values, scaled to [0, 1]
    /// (ties broken by probe index).
    pub fn ranks(&self) -> Rows {
        let p = self.probes;
        let mut values = vec![0f32; self.values.len()];
        values
            .par_chunks_mut(p.max(1))
            .enumerate()
            .for_each(|(i, out)| {
                let r = self.row(i);
                let mut idx: Vec<u32> = (0..p as u32).collect();
                idx.sort_unstable_by(|&a, &b| {
                    r[a as usize].total_cmp(&r[b as usize]).then(a.cmp(&b))
                });
                let scale = (p.max(2) - 1) as f32;
                for (rank, &j) in idx.iter().enumerate() {
                    out[j as usize] = rank as f32 / scale;
                }
            });
        Rows {
            probes: p,
            values,
            label: self.label.clone(),
            group: self.group.clone(),
            source: None,
        }
    }
}

/// Z-normalizes `v` in place over its own values (population standard deviation, in f64, as the
/// index does); a constant vector becomes zeros.
pub fn zscore(v: &mut [f32]) {
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    let var = v
        .iter()
        .map(|&x| (f64::from(x) - mean).powi(2))
        .sum::<f64>()
        / n;
    let std = var.sqrt();
    if std <= 1e-9 * mean.abs().max(1.0) {
        v.fill(0.0);
    } else {
        v.iter_mut()
            .for_each(|x| *x = ((f64::from(*x) - mean) / std) as f32);
    }
}

/// The sum of `(q - d)^2` over all probes.
fn squared_distance(q: &[f32], d: &[f32]) -> f32 {
    q.iter().zip(d).map(|(a, b)| (a - b) * (a - b)).sum()
}

/// A discrepancy between a query descriptor `q` and a gallery descriptor `d`; lower is closer.
#[derive(Debug, Clone, PartialEq)]
pub enum Discrepancy {
    /// ProbeLog: mean `|q - d|` over the query's `k` highest probes.
    TopK(usize),
    /// Mean `|q - d|` over the query's `k` lowest probes (ablation).
    BottomK(usize),
    /// Mean `|q - d|` over `k` random probes, drawn per query (ablation).
    RandomK { k: usize, seed: u64 },
    /// Euclidean distance over all probes (the paper's full-query baseline).
    Full,
    /// Top-k L1 plus `weight` times the mean `|q - d|` over all probes (the earlier form of the
    /// blend metric).
    TopKPlusAll { k: usize, weight: f32 },
    /// Top-k L1 plus `weight` times the root mean square of `q - d` over all probes: the
    /// library's blend metric, the product's default.
    TopKPlusRms { k: usize, weight: f32 },
    /// Mean `|q - d|` over the union of the query's and the gallery row's top-k probes.
    Union(usize),
    /// Top-k L1 between the probe ranks of `q` and `d` (each scaled to [0, 1]) on the query's top
    /// `k` probes.
    RankTopK(usize),
    /// Hubness correction (CSLS): `base(q, d)` minus the mean of the `neighbours` smallest
    /// `base(x, d)` over gallery rows `x` of other models: a row close to everything is pushed
    /// back.
    Calibrated {
        base: Box<Discrepancy>,
        neighbours: usize,
    },
}

impl Discrepancy {
    pub fn name(&self) -> String {
        match self {
            Discrepancy::TopK(k) => format!("top-k (k={k})"),
            Discrepancy::BottomK(k) => format!("bottom-k (k={k})"),
            Discrepancy::RandomK { k, .. } => format!("random-k (k={k})"),
            Discrepancy::Full => "full-query Euclidean".into(),
            Discrepancy::TopKPlusAll { k, weight } => {
                format!("top-k + {weight}*all-probe L1 (k={k})")
            }
            Discrepancy::TopKPlusRms { k, weight } => {
                format!("top-k + {weight}*all-probe RMS (k={k})")
            }
            Discrepancy::Union(k) => format!("union of top-k sets (k={k})"),
            Discrepancy::RankTopK(k) => format!("top-k on ranks (k={k})"),
            Discrepancy::Calibrated { base, neighbours } => {
                format!("{}, hubness-calibrated (m={neighbours})", base.name())
            }
        }
    }
}

/// A discrepancy made ready for one gallery: what it needs of every row, computed once.
#[derive(Debug)]
pub struct Scorer<'a> {
    kind: &'a Discrepancy,
    gallery: &'a Rows,
    /// RankTopK: the gallery's ranks.
    ranks: Option<Rows>,
    /// Union: each gallery row's top-k probes.
    tops: Option<Vec<Vec<u32>>>,
    /// Calibrated: the base scorer and each gallery row's offset.
    base: Option<(Box<Scorer<'a>>, Vec<f32>)>,
}

impl<'a> Scorer<'a> {
    pub fn new(kind: &'a Discrepancy, gallery: &'a Rows) -> Self {
        let mut s = Scorer {
            kind,
            gallery,
            ranks: None,
            tops: None,
            base: None,
        };
        match kind {
            Discrepancy::RankTopK(_) => s.ranks = Some(gallery.ranks()),
            Discrepancy::Union(k) => {
                s.tops = Some(
                    (0..gallery.len())
                        .into_par_iter()
                        .map(|i| top_probes(gallery.row(i), *k))
                        .collect(),
                );
            }
            Discrepancy::Calibrated { base, neighbours } => {
                let inner = Scorer::new(base, gallery);
                let offsets = hub_offsets(&inner, *neighbours);
                s.base = Some((Box::new(inner), offsets));
            }
            _ => {}
        }
        s
    }

    /// The product's scan of the index the gallery is stored in, for the discrepancies it
    /// implements: the scores a search computes, equal to the per-row definitions below (the
    /// `scan_scores_equal_the_definitions` test). `None` for the others and for rows not stored.
    fn scan(&self, q: &[f32]) -> Option<Vec<f32>> {
        let source = self.gallery.source.as_ref()?;
        let (metric, k, blend_weight) = match *self.kind {
            Discrepancy::TopK(k) => (Metric::TopK, Some(k), None),
            Discrepancy::TopKPlusRms { k, weight } => (Metric::Blend, Some(k), Some(weight)),
            Discrepancy::Full => (Metric::Full, None, None),
            _ => return None,
        };
        let params = SearchParams {
            metric,
            k,
            blend_weight,
            ..SearchParams::default()
        };
        let all = source
            .index
            .score_all_with(q, &params)
            .expect("k, the blend weight and the query's length were checked against the index");
        Some(source.entries.iter().map(|&e| all[e as usize]).collect())
    }

    /// Scores of every gallery row against query `q` (its position `qi` seeds random-k).
    pub fn score_all(&self, qi: usize, q: &[f32]) -> Vec<f32> {
        if let Some(scores) = self.scan(q) {
            return scores;
        }
        let g = self.gallery;
        let p = g.probes;
        let mean_abs = |d: &[f32], probes: &[u32]| {
            probes
                .iter()
                .map(|&j| (q[j as usize] - d[j as usize]).abs())
                .sum::<f32>()
                / probes.len().max(1) as f32
        };
        match self.kind {
            Discrepancy::TopK(k) => {
                let probes = top_probes(q, *k);
                (0..g.len()).map(|i| mean_abs(g.row(i), &probes)).collect()
            }
            Discrepancy::BottomK(k) => {
                let neg: Vec<f32> = q.iter().map(|x| -x).collect();
                let probes = top_probes(&neg, *k);
                (0..g.len()).map(|i| mean_abs(g.row(i), &probes)).collect()
            }
            Discrepancy::RandomK { k, seed } => {
                let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_add(qi as u64));
                let mut probes: Vec<u32> = (0..p as u32).collect();
                probes.shuffle(&mut rng);
                probes.truncate((*k).min(p));
                (0..g.len()).map(|i| mean_abs(g.row(i), &probes)).collect()
            }
            Discrepancy::Full => (0..g.len()).map(|i| full_distance(q, g.row(i))).collect(),
            Discrepancy::TopKPlusAll { k, weight } | Discrepancy::TopKPlusRms { k, weight } => {
                let rms = matches!(self.kind, Discrepancy::TopKPlusRms { .. });
                let probes = top_probes(q, *k);
                (0..g.len())
                    .map(|i| {
                        let d = g.row(i);
                        let all = if rms {
                            (squared_distance(q, d) / p as f32).sqrt()
                        } else {
                            q.iter().zip(d).map(|(a, b)| (a - b).abs()).sum::<f32>() / p as f32
                        };
                        mean_abs(d, &probes) + weight * all
                    })
                    .collect()
            }
            Discrepancy::Union(k) => {
                let mine = top_probes(q, *k);
                let mut in_mine = vec![false; p];
                for &j in &mine {
                    in_mine[j as usize] = true;
                }
                let tops = self.tops.as_ref().expect("prepared for Union");
                (0..g.len())
                    .map(|i| {
                        let d = g.row(i);
                        let mut sum: f32 = mine
                            .iter()
                            .map(|&j| (q[j as usize] - d[j as usize]).abs())
                            .sum();
                        let mut n = mine.len();
                        for &j in &tops[i] {
                            if !in_mine[j as usize] {
                                sum += (q[j as usize] - d[j as usize]).abs();
                                n += 1;
                            }
                        }
                        sum / n as f32
                    })
                    .collect()
            }
            Discrepancy::RankTopK(k) => {
                let probes = top_probes(q, *k);
                let qr = Rows {
                    probes: p,
                    values: q.to_vec(),
                    label: vec![0],
                    group: vec![0],
                    source: None,
                }
                .ranks();
                let ranks = self.ranks.as_ref().expect("prepared for RankTopK");
                (0..g.len())
                    .map(|i| {
                        let d = ranks.row(i);
                        probes
                            .iter()
                            .map(|&j| (qr.values[j as usize] - d[j as usize]).abs())
                            .sum::<f32>()
                            / probes.len() as f32
                    })
                    .collect()
            }
            Discrepancy::Calibrated { .. } => {
                let (inner, offsets) = self.base.as_ref().expect("prepared for Calibrated");
                let mut s = inner.score_all(qi, q);
                s.iter_mut().zip(offsets).for_each(|(x, o)| *x -= o);
                s
            }
        }
    }
}

/// For each gallery row `d`: the mean of the `m` smallest `base(x, d)` over rows `x` of other
/// models (its "hubness").
fn hub_offsets(base: &Scorer<'_>, m: usize) -> Vec<f32> {
    let g = base.gallery;
    let n = g.len();
    // Column j of the matrix is row j's distance from every other row as a query.
    let matrix: Vec<Vec<f32>> = (0..n)
        .into_par_iter()
        .map(|x| base.score_all(x, g.row(x)))
        .collect();
    (0..n)
        .into_par_iter()
        .map(|d| {
            let mut col: Vec<f32> = (0..n)
                .filter(|&x| g.group[x] != g.group[d])
                .map(|x| matrix[x][d])
                .collect();
            let m = m.min(col.len()).max(1);
            if col.is_empty() {
                return 0.0;
            }
            col.select_nth_unstable_by(m - 1, f32::total_cmp);
            col[..m].iter().sum::<f32>() / m as f32
        })
        .collect()
}

/// One query's retrieval result.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Outcome {
    /// The first result is relevant.
    pub top1: bool,
    /// A relevant result is among the first five.
    pub top5: bool,
    /// Share of the first five results that are relevant.
    pub precision5: f32,
}

/// The first five (score, id) pairs, lowest score first, ties to the lower id.
fn best5(scores: impl Iterator<Item = (f32, usize)>) -> Vec<usize> {
    let mut best: Vec<(f32, usize)> = Vec::with_capacity(6);
    let cmp = |a: &(f32, usize), b: &(f32, usize)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
    for s in scores {
        if best.len() < 5 || cmp(&s, &best[best.len() - 1]) == Ordering::Less {
            let at = best.partition_point(|b| cmp(b, &s) == Ordering::Less);
            best.insert(at, s);
            best.truncate(5);
        }
    }
    best.into_iter().map(|(_, i)| i).collect()
}

fn outcome(relevant: impl Fn(usize) -> bool, top: &[usize]) -> Outcome {
    let rel: Vec<bool> = top.iter().map(|&i| relevant(i)).collect();
    Outcome {
        top1: rel.first().copied().unwrap_or(false),
        top5: rel.iter().any(|&r| r),
        precision5: rel.iter().filter(|&&r| r).count() as f32 / 5.0,
    }
}

/// Logit-level retrieval of every query in the gallery the scorer was made for.
pub fn retrieve(scorer: &Scorer<'_>, queries: &Rows) -> Vec<Outcome> {
    let g = scorer.gallery;
    (0..queries.len())
        .into_par_iter()
        .map(|qi| {
            let scores = scorer.score_all(qi, queries.row(qi));
            let top = best5(scores.into_iter().enumerate().map(|(i, s)| (s, i)));
            outcome(|i| g.label[i] == queries.label[qi], &top)
        })
        .collect()
}

/// The model-level baseline: Euclidean distance from the query to each gallery model's mean
/// descriptor; a model is relevant when one of its logits carries the query's label.
pub fn retrieve_models(queries: &Rows, gallery: &Rows) -> Vec<Outcome> {
    let p = gallery.probes;
    let groups = gallery.group.iter().max().map_or(0, |&m| m as usize + 1);
    let mut sums = vec![0f64; groups * p];
    let mut counts = vec![0usize; groups];
    let mut labels: Vec<Vec<u32>> = vec![Vec::new(); groups];
    for i in 0..gallery.len() {
        let m = gallery.group[i] as usize;
        counts[m] += 1;
        labels[m].push(gallery.label[i]);
        for (s, &x) in sums[m * p..(m + 1) * p].iter_mut().zip(gallery.row(i)) {
            *s += f64::from(x);
        }
    }
    let present: Vec<usize> = (0..groups).filter(|&m| counts[m] > 0).collect();
    let means: Vec<Vec<f32>> = present
        .iter()
        .map(|&m| {
            sums[m * p..(m + 1) * p]
                .iter()
                .map(|s| (s / counts[m] as f64) as f32)
                .collect()
        })
        .collect();
    (0..queries.len())
        .into_par_iter()
        .map(|qi| {
            let q = queries.row(qi);
            let scores = means.iter().enumerate().map(|(j, mean)| {
                let d: f32 = q.iter().zip(mean).map(|(a, b)| (a - b) * (a - b)).sum();
                (d.sqrt(), j)
            });
            let top = best5(scores);
            outcome(|j| labels[present[j]].contains(&queries.label[qi]), &top)
        })
        .collect()
}

/// Mean outcomes with 95% Wilson intervals.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    pub queries: usize,
    pub top1: f64,
    pub top1_ci: (f64, f64),
    pub top5: f64,
    pub top5_ci: (f64, f64),
    pub precision5: f64,
}

pub fn summarize(outcomes: &[Outcome]) -> Summary {
    let n = outcomes.len();
    let h1 = outcomes.iter().filter(|o| o.top1).count();
    let h5 = outcomes.iter().filter(|o| o.top5).count();
    let p5: f64 = outcomes.iter().map(|o| f64::from(o.precision5)).sum();
    let frac = |h: usize| if n == 0 { 0.0 } else { h as f64 / n as f64 };
    Summary {
        queries: n,
        top1: frac(h1),
        top1_ci: wilson(h1, n),
        top5: frac(h5),
        top5_ci: wilson(h5, n),
        precision5: if n == 0 { 0.0 } else { p5 / n as f64 },
    }
}

/// The 95% Wilson score interval of `hits` successes in `n` trials.
pub fn wilson(hits: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let z = 1.959_963_985_f64;
    let (n, p) = (n as f64, hits as f64 / n as f64);
    let denom = 1.0 + z * z / n;
    let centre = (p + z * z / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / denom;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// A paired difference `a - b` of mean top-1 and top-5, with 95% bootstrap intervals that
/// resample whole groups (query models), since a model's queries are not independent.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Difference {
    pub top1: f64,
    pub top1_ci: (f64, f64),
    pub top5: f64,
    pub top5_ci: (f64, f64),
}

pub fn paired_difference(
    a: &[Outcome],
    b: &[Outcome],
    groups: &[u32],
    reps: usize,
    seed: u64,
) -> Difference {
    assert_eq!(a.len(), b.len());
    assert_eq!(a.len(), groups.len());
    let mut ids: Vec<u32> = groups.to_vec();
    ids.sort_unstable();
    ids.dedup();
    // Per group: (count, sum of top-1 differences, sum of top-5 differences).
    let mut per = vec![(0f64, 0f64, 0f64); ids.len()];
    for i in 0..a.len() {
        let g = ids.binary_search(&groups[i]).expect("listed");
        per[g].0 += 1.0;
        per[g].1 += f64::from(a[i].top1 as u8) - f64::from(b[i].top1 as u8);
        per[g].2 += f64::from(a[i].top5 as u8) - f64::from(b[i].top5 as u8);
    }
    let mean = |sel: &mut dyn Iterator<Item = usize>| {
        let (mut n, mut d1, mut d5) = (0.0, 0.0, 0.0);
        for g in sel {
            n += per[g].0;
            d1 += per[g].1;
            d5 += per[g].2;
        }
        if n == 0.0 {
            (0.0, 0.0)
        } else {
            (d1 / n, d5 / n)
        }
    };
    let (top1, top5) = mean(&mut (0..per.len()));
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut s1 = Vec::with_capacity(reps);
    let mut s5 = Vec::with_capacity(reps);
    for _ in 0..reps {
        let picks: Vec<usize> = (0..per.len())
            .map(|_| rng.random_range(0..per.len()))
            .collect();
        let (d1, d5) = mean(&mut picks.into_iter());
        s1.push(d1);
        s5.push(d5);
    }
    Difference {
        top1,
        top1_ci: percentile_interval(&mut s1),
        top5,
        top5_ci: percentile_interval(&mut s5),
    }
}

fn percentile_interval(v: &mut [f64]) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0);
    }
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.025), at(0.975))
}

/// Expected top-1 and top-5 accuracy of a random ranking of the gallery, averaged over queries.
pub fn chance(queries: &Rows, gallery: &Rows) -> (f64, f64) {
    let n = gallery.len() as f64;
    if queries.len() == 0 || n == 0.0 {
        return (0.0, 0.0);
    }
    let (mut c1, mut c5) = (0.0, 0.0);
    for &l in &queries.label {
        let rel = gallery.label.iter().filter(|&&x| x == l).count() as f64;
        c1 += rel / n;
        // 1 - C(n - rel, 5) / C(n, 5)
        let mut none = 1.0;
        for i in 0..5 {
            none *= ((n - rel - i as f64) / (n - i as f64)).max(0.0);
        }
        c5 += 1.0 - none;
    }
    (c1 / queries.len() as f64, c5 / queries.len() as f64)
}

#[cfg(test)]
mod tests;
