//! The studies beyond the table: ablations, variants, the probe-count curve and collaborative
//! probing, each a list of report lines.

use super::*;

pub(super) fn ablations(s: &Setting, k: usize, seed: u64) -> Vec<Line> {
    let p = s.gallery.probes;
    let mut out = vec![
        line(
            s,
            &format!("top-k (k={k})"),
            &measure_kind(s, &Discrepancy::TopK(k)),
            None,
        ),
        line(
            s,
            &format!("bottom-k (k={k})"),
            &measure_kind(s, &Discrepancy::BottomK(k)),
            None,
        ),
        line(
            s,
            &format!("random-k (k={k})"),
            &measure_kind(s, &Discrepancy::RandomK { k, seed }),
            None,
        ),
        line(
            s,
            "all probes, L1",
            &measure_kind(s, &Discrepancy::TopK(p)),
            None,
        ),
        line(
            s,
            "all probes, Euclidean",
            &measure_kind(s, &Discrepancy::Full),
            None,
        ),
    ];
    if let (Some(q), Some(g)) = (&s.raw_queries, &s.raw_gallery) {
        let kind = Discrepancy::TopK(k);
        let o = retrieve(&Scorer::new(&kind, g), q);
        out.push(line(
            s,
            &format!("top-k without normalization (k={k})"),
            &o,
            None,
        ));
        let o = retrieve(&Scorer::new(&Discrepancy::Full, g), q);
        out.push(line(s, "full-query without normalization", &o, None));
    }
    out
}

/// The variants compared by `--variants`, with their short names.
pub(super) fn variant_list(k: usize) -> Vec<(String, Discrepancy)> {
    let topk = Discrepancy::TopK(k);
    let mut v = vec![
        ("topk".to_string(), topk.clone()),
        ("full".to_string(), Discrepancy::Full),
    ];
    for w in [0.5f32, 1.0, 2.0, 4.0] {
        v.push((
            format!("topk+all:{w}"),
            Discrepancy::TopKPlusAll { k, weight: w },
        ));
    }
    for w in [2.0f32, 4.0, 6.0, 8.0, 10.0, 12.0, 16.0] {
        v.push((
            format!("topk+rms:{w}"),
            Discrepancy::TopKPlusRms { k, weight: w },
        ));
    }
    v.push(("union".into(), Discrepancy::Union(k)));
    v.push(("rank".into(), Discrepancy::RankTopK(k)));
    for (name, base) in [
        ("topk", topk),
        ("union", Discrepancy::Union(k)),
        (
            "topk+rms:8",
            Discrepancy::TopKPlusRms {
                k,
                weight: DEFAULT_BLEND_WEIGHT,
            },
        ),
        ("full", Discrepancy::Full),
    ] {
        v.push((
            format!("calibrated:{name}"),
            Discrepancy::Calibrated {
                base: Box::new(base),
                neighbours: 10,
            },
        ));
    }
    v
}

/// A discrepancy by name: `topk`, `full`, `union`, `rank`, `topk+all:W` or `topk+rms:W` (W from
/// 0 to [`probelog::search::MAX_BLEND_WEIGHT`]), with `@K` for a k other than the default (at most the probe count
/// `p`), behind `calibrated:` or `calibrated/M:` for the hubness correction over M neighbours
/// (10 by default). Examples: `topk@64`, `calibrated/20:topk+rms:8`.
pub(super) fn parse_variant(name: &str, k: usize, p: usize) -> Result<Discrepancy> {
    let err = || {
        anyhow::anyhow!(
            "discrepancy {}: expected topk, full, union, rank, topk+all:W or topk+rms:W, optionally \
             with @K, optionally behind calibrated: or calibrated/M:",
            excerpt(&format!("{name:?}"))
        )
    };
    let weight = |w: &str| -> Result<f32> {
        let w: f32 = w.parse().map_err(|_| err())?;
        check_blend_weight(w).map_err(|_| {
            anyhow::anyhow!(
                "discrepancy {}: the blend weight {w:e} is out of range: it must be a number \
                 from 0 to {:e} (larger weights make the scores overflow)",
                excerpt(&format!("{name:?}")),
                probelog::search::MAX_BLEND_WEIGHT
            )
        })
    };
    if let Some(rest) = name.strip_prefix("calibrated") {
        let (m, base) = rest.split_once(':').ok_or_else(err)?;
        let neighbours = match m.strip_prefix('/') {
            Some(m) => m.parse::<usize>().ok().filter(|&m| m > 0).ok_or_else(err)?,
            None if m.is_empty() => 10,
            None => return Err(err()),
        };
        return Ok(Discrepancy::Calibrated {
            base: Box::new(parse_variant(base, k, p)?),
            neighbours,
        });
    }
    let (base, k) = match name.rsplit_once('@') {
        Some((base, kk)) => {
            let kk = kk
                .parse::<usize>()
                .ok()
                .filter(|&x| x > 0)
                .ok_or_else(err)?;
            ensure!(
                kk <= p,
                "discrepancy {}: k = {kk} is more than the {p} probes",
                excerpt(&format!("{name:?}"))
            );
            (base, kk)
        }
        None => (name, k),
    };
    if let Some(w) = base.strip_prefix("topk+rms:") {
        return Ok(Discrepancy::TopKPlusRms {
            k,
            weight: weight(w)?,
        });
    }
    if let Some(w) = base.strip_prefix("topk+all:") {
        return Ok(Discrepancy::TopKPlusAll {
            k,
            weight: weight(w)?,
        });
    }
    match base {
        "topk" => Ok(Discrepancy::TopK(k)),
        "full" => Ok(Discrepancy::Full),
        "union" => Ok(Discrepancy::Union(k)),
        "rank" => Ok(Discrepancy::RankTopK(k)),
        _ => Err(err()),
    }
}

pub(super) fn variants(
    s: &Setting,
    k: usize,
    extra: &[(String, Discrepancy)],
    reps: usize,
    seed: u64,
) -> Vec<Line> {
    let mut list = variant_list(k);
    list.extend(extra.iter().cloned());
    let outcomes: Vec<Vec<Outcome>> = list.iter().map(|(_, d)| measure_kind(s, d)).collect();
    let groups = &s.queries.group;
    list.iter()
        .zip(&outcomes)
        .map(|((name, d), o)| Line {
            setting: s.name.clone(),
            method: format!("{name}: {}", d.name()),
            summary: summarize(o),
            vs_topk: Some(paired_difference(o, &outcomes[0], groups, reps, seed)),
            vs_full: Some(paired_difference(o, &outcomes[1], groups, reps, seed)),
            x: None,
        })
        .collect()
}

/// Pooled outcomes over `seeds` random subsets of `n` probes.
pub(super) fn subset_outcomes(
    s: &Setting,
    n: usize,
    kind: &Discrepancy,
    seeds: u64,
    seed: u64,
) -> Vec<Outcome> {
    let p = s.gallery.probes;
    let mut pooled = Vec::new();
    for r in 0..seeds {
        let mut probes: Vec<u32> = (0..p as u32).collect();
        probes.shuffle(&mut ChaCha8Rng::seed_from_u64(seed.wrapping_add(1000 + r)));
        probes.truncate(n);
        probes.sort_unstable();
        let sub = Setting {
            name: s.name.clone(),
            queries: s.queries.restrict(&probes),
            gallery: s.gallery.restrict(&probes),
            raw_queries: None,
            raw_gallery: None,
        };
        pooled.extend(measure_kind(&sub, &clamp_k(kind, n)));
    }
    pooled
}

/// The same discrepancy with its k at most `n`.
pub(super) fn clamp_k(kind: &Discrepancy, n: usize) -> Discrepancy {
    match kind {
        Discrepancy::TopK(k) => Discrepancy::TopK((*k).min(n)),
        Discrepancy::TopKPlusAll { k, weight } => Discrepancy::TopKPlusAll {
            k: (*k).min(n),
            weight: *weight,
        },
        Discrepancy::TopKPlusRms { k, weight } => Discrepancy::TopKPlusRms {
            k: (*k).min(n),
            weight: *weight,
        },
        Discrepancy::Union(k) => Discrepancy::Union((*k).min(n)),
        Discrepancy::RankTopK(k) => Discrepancy::RankTopK((*k).min(n)),
        Discrepancy::Calibrated { base, neighbours } => Discrepancy::Calibrated {
            base: Box::new(clamp_k(base, n)),
            neighbours: *neighbours,
        },
        other => other.clone(),
    }
}

/// The paper's two baselines (top-k, full-query) and the candidate discrepancy, if any, by name.
fn baselines_and(k: usize, candidate: Option<&Discrepancy>) -> Vec<(String, Discrepancy)> {
    let mut kinds = vec![
        ("top-k".to_string(), Discrepancy::TopK(k)),
        ("full-query Euclidean".to_string(), Discrepancy::Full),
    ];
    kinds.extend(candidate.map(|c| (c.name(), c.clone())));
    kinds
}

pub(super) fn probe_curve(
    s: &Setting,
    counts: &[usize],
    k: usize,
    candidate: Option<&Discrepancy>,
    seeds: u64,
    seed: u64,
) -> Vec<Line> {
    let p = s.gallery.probes;
    let kinds = baselines_and(k, candidate);
    let mut out = Vec::new();
    // The counts were checked to be below p (run).
    let mut counts = counts.to_vec();
    counts.push(p);
    for n in counts {
        for (name, kind) in &kinds {
            let o = if n == p {
                measure_kind(s, kind)
            } else {
                subset_outcomes(s, n, kind, seeds, seed)
            };
            out.push(line(s, name, &o, Some(n as f64)));
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
pub(super) fn collab(
    full: &Setting,
    hub: &Hub,
    evaluated: &Index,
    fraction: f64,
    path: &Path,
    k: usize,
    candidate: Option<&Discrepancy>,
    seeds: u64,
    seed: u64,
) -> Result<Vec<Line>> {
    if let Some(name) = &hub.shared_gallery_name {
        bail!(
            "--collab matches the gallery models by name, but {} names more than one gallery \
             model of {}; give them names of their own",
            excerpt(&format!("{name:?}")),
            evaluated.path().display()
        );
    }
    let index = Arc::new(open_index(path)?);
    let (theirs, ours) = (index.raw().probe_set(), evaluated.raw().probe_set());
    ensure!(
        theirs == ours,
        "--collab {}: its probe set ({theirs}) is not the one of the evaluated index {} ({ours}); \
         a collaboratively probed index is compared on the same probes",
        path.display(),
        evaluated.path().display()
    );
    let gallery = load_gallery(&index, hub).with_context(|| path.display().to_string())?;
    let partial = Setting {
        name: format!("collaborative {fraction}"),
        queries: full.queries.clone(),
        gallery,
        raw_queries: None,
        raw_gallery: None,
    };
    let p = full.gallery.probes;
    let n = ((p as f64 * fraction).round() as usize).clamp(2, p);
    let kinds = baselines_and(k, candidate);
    let mut out = Vec::new();
    for (name, kind) in &kinds {
        let mut l = line(
            &partial,
            name,
            &measure_kind(&partial, kind),
            Some(fraction),
        );
        l.setting = format!("collaborative, {n} probes per model");
        out.push(l);
        let mut l = line(
            full,
            name,
            &subset_outcomes(full, n, kind, seeds, seed),
            Some(fraction),
        );
        l.setting = format!("fixed subset, {n} probes");
        out.push(l);
        let mut l = line(full, name, &measure_kind(full, kind), Some(1.0));
        l.setting = format!("full probing, {p} probes");
        out.push(l);
    }
    Ok(out)
}
