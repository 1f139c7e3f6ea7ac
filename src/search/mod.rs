//! Exact search: the blend (the default), the paper's asymmetric top-k discrepancy and its two
//! baselines.
//!
//! The top-k discrepancy between a query descriptor `q` and an entry `d` takes the `k` probes where
//! `q` is highest and averages `|q[p] - d[p]|` over those probes only. Descriptors are stored
//! probe-major, so one query reads `k` contiguous rows of the matrix: per-query probe reordering.
//!
//! The blend ([`Metric::Blend`]) adds `w` times the root mean square of `q[p] - d[p]` over all `P`
//! probes to the top-k term: `mean_{p in topk(q)} |q_p - d_p| + w * sqrt(mean_{all p} (q_p -
//! d_p)^2)`. The second term is the full-query Euclidean distance divided by `sqrt(P)`. The top-k
//! term keeps the query's concept in focus; the all-probe term breaks its near-ties by how well the
//! rest of the behaviour agrees. One pass reads the `k` top rows into one accumulator (absolute
//! differences) and every probe row into a second (squared differences), so the top rows are read
//! twice: `k` of `P + k` rows.
//!
//! The modules: [`params`] resolves what a search asks for, once; this module turns a query into
//! a descriptor and ranks entries or models; [`scan`] holds the per-query scan plan and its
//! kernels.

use std::ops::Range;

use rayon::prelude::*;

use crate::descriptor::normalize_query;
use crate::error::{Error, Result};
use crate::reader::{DescriptorRows, RawIndex};
use crate::selection::Allowed;

pub mod explain;
pub mod multi;
pub mod params;
mod results;
pub mod scan;

pub use explain::ProbeContribution;
pub use multi::{FileHit, MultiQuery, MultiResults, search_many};
pub(crate) use results::TopN;
pub use results::{Hit, Scored, SearchResults};

pub use params::{
    AUTO_HNSW_MIN_ENTRIES, DEFAULT_BLEND_WEIGHT, DEFAULT_CANDIDATES, DEFAULT_K, Grouping,
    MAX_BLEND_WEIGHT, Metric, ParamName, ResolvedSearch, SearchError, SearchMode, SearchParams,
    check_blend_weight, walk_breadth,
};
pub use scan::{
    RERANK_PREFETCH_AHEAD, ScanPlan, blend_discrepancy, full_distance, topk_discrepancy,
};

/// Entries per work unit of the scan (docs/benchmarks.md, "Measured choices of the scan"): the
/// block's accumulator (32 KiB) stays in L1/L2 while k row pieces of 32 KiB stream past it.
const BLOCK: usize = 8192;

/// What to search for.
#[derive(Debug, Clone, Copy)]
pub enum Query<'a> {
    /// An entry of this index.
    Entry(u64),
    /// One logit's raw responses over the probes (z-normalized here).
    Vector(&'a [f32]),
    /// A text embedding, compared with the stored probe image embeddings.
    TextEmbedding(&'a [f32]),
}

/// [`normalize_query`] for a search: a constant query is refused with a message for searches
/// (the library's message for constant logits is about appending them with `keep_constant`).
fn normalize_search_query(values: &[f32], what: &str) -> Result<Vec<f32>> {
    normalize_query(values, what).map_err(|e| match e {
        Error::ConstantLogit { what, std } => Error::InvalidInput(format!(
            "{what} is constant over the probes (standard deviation {std:e}): it has no \
             z-normalized descriptor, so it cannot rank anything; query with responses that vary \
             over the probes"
        )),
        other => other,
    })
}

/// The raw responses of a text query over the probes: the dot product of `text` with each probe's
/// embedding (the rows of `probe_embeddings`, `dim` values each), summed in f64. Z-normalizing them
/// gives the text query's descriptor.
pub fn text_similarities(probe_embeddings: &[f32], dim: usize, text: &[f32]) -> Vec<f32> {
    probe_embeddings
        .chunks_exact(dim)
        .map(|row| {
            row.iter()
                .zip(text)
                .map(|(&a, &b)| f64::from(a) * f64::from(b))
                .sum::<f64>() as f32
        })
        .collect()
}

/// A validated query: its z-normalized descriptor and, for entry queries, its model.
#[derive(Debug, Clone)]
pub struct PreparedQuery {
    pub descriptor: Vec<f32>,
    pub model: Option<u64>,
}

impl<D: AsRef<[u8]> + Sync> RawIndex<D> {
    /// Turns a query into a z-normalized descriptor over this index's probes.
    pub fn prepare_query(&self, query: &Query<'_>) -> Result<PreparedQuery> {
        let p = self.num_probes();
        match *query {
            Query::Entry(e) => {
                let d = self.descriptor(e)?;
                if d.iter().all(|&x| x == 0.0) {
                    return Err(SearchError::ConstantEntry { entry: e }.into());
                }
                Ok(PreparedQuery {
                    descriptor: d,
                    model: Some(self.model_of_entry(e)?),
                })
            }
            Query::Vector(v) => {
                if v.len() != p {
                    return Err(Error::ProbeCountMismatch {
                        what: "the query vector".into(),
                        expected: p as u64,
                        actual: v.len() as u64,
                    });
                }
                Ok(PreparedQuery {
                    descriptor: normalize_search_query(v, "the query vector")?,
                    model: None,
                })
            }
            Query::TextEmbedding(t) => {
                let Some((emb, dim)) = self.probe_embeddings()? else {
                    return Err(SearchError::NoProbeEmbeddings.into());
                };
                if t.len() != dim {
                    return Err(Error::InvalidInput(format!(
                        "the text embedding has {} dimensions, the probe embeddings have {dim}",
                        t.len()
                    )));
                }
                if let Some((i, &x)) = t.iter().enumerate().find(|(_, x)| !x.is_finite()) {
                    return Err(Error::NonFinite {
                        what: "the text embedding".into(),
                        row: i,
                        value: x,
                    });
                }
                let sims = text_similarities(emb, dim, t);
                Ok(PreparedQuery {
                    descriptor: normalize_search_query(&sims, "the text query descriptor")?,
                    model: None,
                })
            }
        }
    }

    /// Resolves `params` ([`RawIndex::resolve_search`]), searches, and attaches metadata to the
    /// results.
    pub fn search(&self, query: &Query<'_>, params: &SearchParams) -> Result<SearchResults> {
        self.search_leaving_out(query, params, None)
    }

    /// [`RawIndex::search`] that leaves out the entries of `model`, any model of the index (where
    /// `exclude_same_model` leaves out the query entry's own). The two do not combine.
    pub fn search_excluding(
        &self,
        query: &Query<'_>,
        params: &SearchParams,
        model: u64,
    ) -> Result<SearchResults> {
        if params.exclude_same_model {
            return Err(Error::InvalidParameter(
                "search_excluding takes the model to leave out; exclude_same_model must be false"
                    .into(),
            ));
        }
        self.model(model)?;
        self.search_leaving_out(query, params, Some(model))
    }

    fn search_leaving_out(
        &self,
        query: &Query<'_>,
        params: &SearchParams,
        excluded: Option<u64>,
    ) -> Result<SearchResults> {
        let resolved = self.resolve_search(params, query)?;
        let mask = |query_model: Option<u64>| {
            let exclude = excluded.or(query_model.filter(|_| resolved.exclude_same_model));
            self.allowed(params.filter, exclude)
        };
        let scored = match self.entry_plan_from_graph(query, &resolved)? {
            Some((plan, model)) => self.search_plan(&plan, &mask(Some(model))?, &resolved)?,
            None => {
                let q = self.prepare_query(query)?;
                self.search_masked(&q.descriptor, &mask(q.model)?, &resolved)?
            }
        };
        self.results(scored, resolved)
    }

    /// The results of a ranking: each scored entry (or model) with its metadata, ranked from 1.
    fn results(&self, scored: Vec<Scored>, resolved: ResolvedSearch) -> Result<SearchResults> {
        let hits = scored
            .into_iter()
            .enumerate()
            .map(|(i, s)| self.hit(i + 1, s, resolved.grouping))
            .collect::<Result<_>>()?;
        Ok(SearchResults {
            params: resolved,
            hits,
        })
    }

    /// For an entry query under the top-k metric: the [`ScanPlan`] read from the entry's top list
    /// in its segment's graph instead of its descriptor, which would cost one cache miss per
    /// probe (the rows are probe-major), and the entry's model. The plan is the one
    /// [`ScanPlan::new`] makes from the descriptor, value for value: the list holds the entry's
    /// highest probes, and in an f16 index its values are the stored ones. `None` where that
    /// cannot be promised (an f32 index, no graph, `k` not below the list's length, a tie that
    /// reaches the end of the list) and for other queries.
    #[doc(hidden)]
    pub fn entry_plan_from_graph(
        &self,
        query: &Query<'_>,
        params: &ResolvedSearch,
    ) -> Result<Option<(ScanPlan, u64)>> {
        let Query::Entry(entry) = *query else {
            return Ok(None);
        };
        if params.metric != Some(Metric::TopK) || self.dtype() != crate::Dtype::F16 {
            return Ok(None);
        }
        let Some(k) = params.k else {
            return Ok(None);
        };
        // The descriptor path refuses an entry of a deleted model (`descriptor`); so does this one.
        let model = self.live_model_of_entry(entry)?;
        let (s, e) = self.segment_of_entry(entry)?;
        let Some(graph) = self.graph_of_entry(s, e)? else {
            return Ok(None);
        };
        let list = graph.view.list(e - graph.first);
        // The k-th value must be compared with one below it on the list.
        if k >= list.len() {
            return Ok(None);
        }
        let mut items: Vec<(u32, f32)> = list.iter().map(|&i| crate::ann::unpack_item(i)).collect();
        if items
            .iter()
            .any(|&(p, v)| p as usize >= self.num_probes() || !v.is_finite())
        {
            return Ok(None);
        }
        // The list was ranked by the values before their rounding to f16: rank again by the
        // stored values, ties by lower probe, as `top_probes` ranks the descriptor.
        items.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        // Every probe off the list is at most its lowest value: the first k are the descriptor's
        // top k only when the k-th is strictly above it (this also sends a constant logit, all
        // zeros, to the descriptor path and its error).
        if items[k - 1].1 <= items[items.len() - 1].1 {
            return Ok(None);
        }
        let (probes, values): (Vec<u32>, Vec<f32>) = items[..k].iter().copied().unzip();
        Ok(Some((
            ScanPlan::from_top(probes, values, self.num_probes()),
            model,
        )))
    }

    fn hit(&self, rank: usize, s: Scored, grouping: Grouping) -> Result<Hit> {
        if grouping == Grouping::ModelMean {
            let m = self.model(s.id)?;
            return Ok(Hit {
                rank,
                entry: None,
                model_id: s.id,
                model: m.name,
                logit: None,
                label: None,
                score: s.score,
            });
        }
        let e = self.entry(s.id)?;
        Ok(Hit {
            rank,
            entry: Some(s.id),
            model_id: e.model_id,
            model: e.model,
            logit: Some(e.logit),
            label: e.label,
            score: s.score,
        })
    }

    /// Ranks entries (or models) against a z-normalized query descriptor, without metadata.
    /// `exclude_model` leaves that model's entries out.
    pub fn search_descriptor(
        &self,
        q: &[f32],
        exclude_model: Option<u64>,
        params: &SearchParams,
    ) -> Result<Vec<Scored>> {
        let resolved = self.resolve_params(params)?;
        let allowed = self.allowed(params.filter, exclude_model)?;
        self.search_masked(q, &allowed, &resolved)
    }

    /// [`RawIndex::search_descriptor`] with the hits' metadata, as [`RawIndex::search`] returns
    /// them.
    pub fn search_descriptor_hits(
        &self,
        q: &[f32],
        exclude_model: Option<u64>,
        params: &SearchParams,
    ) -> Result<SearchResults> {
        let resolved = self.resolve_params(params)?;
        let allowed = self.allowed(params.filter, exclude_model)?;
        let scored = self.search_masked(q, &allowed, &resolved)?;
        self.results(scored, resolved)
    }

    /// Ranks the entries (or models) that `mask` holds (all, without one) against `q`.
    fn search_masked(
        &self,
        q: &[f32],
        allowed: &Allowed,
        params: &ResolvedSearch,
    ) -> Result<Vec<Scored>> {
        let p = self.num_probes();
        if q.len() != p {
            return Err(Error::ProbeCountMismatch {
                what: "the query descriptor".into(),
                expected: p as u64,
                actual: q.len() as u64,
            });
        }
        let Some(metric) = params.metric else {
            return self.rank_models(q, allowed, params.top);
        };
        let plan = ScanPlan::with_blend_weight(
            q,
            params.k.unwrap_or(0),
            metric,
            params.blend_weight.unwrap_or(0.0),
        );
        self.search_plan(&plan, allowed, params)
    }

    /// Ranks the entries `mask` holds against a [`ScanPlan`], as [`RawIndex::search_masked`]
    /// does after making it.
    fn search_plan(
        &self,
        plan: &ScanPlan,
        allowed: &Allowed,
        params: &ResolvedSearch,
    ) -> Result<Vec<Scored>> {
        if let Some(c) = params.candidates {
            self.rank_hnsw(plan, allowed, params, c)
        } else if params.grouping == Grouping::PerModel {
            self.rank_per_model(plan, allowed, params.top)
        } else {
            self.rank_entries(plan, allowed, params.top)
        }
    }

    /// Scores of all entries against `q` (lower is closer), in entry order; [`Metric::Blend`]
    /// with [`DEFAULT_BLEND_WEIGHT`]. `k` is for the metrics that use it.
    pub fn score_all(&self, q: &[f32], metric: Metric, k: Option<usize>) -> Result<Vec<f32>> {
        self.score_all_with(
            q,
            &SearchParams {
                metric,
                k: k.filter(|_| metric.uses_k()),
                ..SearchParams::default()
            },
        )
    }

    /// Scores of all entries against `q` with the metric, k and blend weight of `params`, in
    /// entry order (the other fields are not used).
    pub fn score_all_with(&self, q: &[f32], params: &SearchParams) -> Result<Vec<f32>> {
        let resolved = self.resolve_params(&SearchParams {
            grouping: Grouping::Entries,
            mode: SearchMode::Exact,
            ..*params
        })?;
        let metric = resolved.metric.expect("an entry grouping has a metric");
        if q.len() != self.num_probes() {
            return Err(Error::InvalidParameter(
                "score_all takes a full-length descriptor".into(),
            ));
        }
        let plan = ScanPlan::with_blend_weight(
            q,
            resolved.k.unwrap_or(0),
            metric,
            resolved.blend_weight.unwrap_or(0.0),
        );
        let mut out = vec![0f32; self.entry_count() as usize];
        for (s, start) in self
            .segment_entry_starts()
            .iter()
            .enumerate()
            .take(self.segments.len())
        {
            if let Some(rows) = self.segment_rows(s)? {
                let dst = &mut out[*start as usize..*start as usize + rows.entries()];
                plan.score_into(&rows, 0..rows.entries(), dst);
            }
        }
        Ok(out)
    }

    /// Work units of a scan: (first entry id of the segment, its rows, a block of its entries).
    fn blocks(&self) -> Result<Vec<(u64, DescriptorRows<'_>, Range<usize>)>> {
        let mut tasks = Vec::new();
        for s in 0..self.segments.len() {
            if let Some(rows) = self.segment_rows(s)? {
                let first = self.segments[s].dir.first_entry;
                let n = rows.entries();
                for b in (0..n).step_by(BLOCK) {
                    tasks.push((first, rows, b..(b + BLOCK).min(n)));
                }
            }
        }
        Ok(tasks)
    }

    fn rank_entries(&self, plan: &ScanPlan, allowed: &Allowed, top: usize) -> Result<Vec<Scored>> {
        let tasks = self.blocks()?;
        Ok(tasks
            .par_iter()
            .fold(
                || (TopN::new(top), vec![0f32; BLOCK]),
                |(mut best, mut acc), (first, rows, r)| {
                    let scores = &mut acc[..r.len()];
                    plan.score_into(rows, r.clone(), scores);
                    for (i, &score) in scores.iter().enumerate() {
                        let id = first + (r.start + i) as u64;
                        if allowed.contains(id) {
                            best.push(Scored { id, score });
                        }
                    }
                    (best, acc)
                },
            )
            .map(|(best, _)| best)
            .reduce(|| TopN::new(top), TopN::merge)
            .into_sorted())
    }

    fn rank_per_model(
        &self,
        plan: &ScanPlan,
        allowed: &Allowed,
        top: usize,
    ) -> Result<Vec<Scored>> {
        let mut best = TopN::new(top);
        let mut model_best: Vec<(u64, Scored)> = Vec::new();
        for s in 0..self.segments.len() {
            let Some(rows) = self.segment_rows(s)? else {
                continue;
            };
            let mut scores = vec![0f32; rows.entries()];
            scores
                .par_chunks_mut(BLOCK)
                .enumerate()
                .for_each(|(b, dst)| {
                    let r = b * BLOCK..b * BLOCK + dst.len();
                    plan.score_into(&rows, r, dst);
                });
            let seg = &self.segments[s].dir;
            for (m, range) in self.model_ranges(s)?.into_iter().enumerate() {
                let model = seg.first_model + m as u64;
                // A mask holds whole models: their first entry says.
                if !allowed.contains(seg.first_entry + range.start as u64) {
                    continue;
                }
                let winner = range
                    .map(|e| Scored {
                        id: seg.first_entry + e as u64,
                        score: scores[e],
                    })
                    .min()
                    .expect("models have at least one logit");
                model_best.push((model, winner));
            }
        }
        for (_, w) in model_best {
            best.push(w);
        }
        Ok(best.into_sorted())
    }

    /// The candidate stage and its rerank: per graph, the walk proposes `c` candidates among the
    /// entries `mask` holds, each scored exactly; segments without a graph are scanned, and so
    /// are graphs of which the mask holds only a few entries.
    fn rank_hnsw(
        &self,
        plan: &ScanPlan,
        allowed: &Allowed,
        params: &ResolvedSearch,
        c: usize,
    ) -> Result<Vec<Scored>> {
        // The work: each segment without a graph is scanned, each graph of the others walked.
        let mut units: Vec<(usize, Option<crate::reader::GraphPart<'_>>)> = Vec::new();
        for s in 0..self.segments.len() {
            if self.segments[s].dir.entry_count == 0 {
                continue;
            }
            let graphs = self.segment_graphs(s)?;
            if graphs.is_empty() {
                units.push((s, None));
            }
            units.extend(graphs.into_iter().map(|g| (s, Some(g))));
        }
        let search_unit = |&(s, graph): &(usize, Option<crate::reader::GraphPart<'_>>)| {
            let Some(rows) = self.segment_rows(s)? else {
                return Ok(Vec::new());
            };
            let first = self.segments[s].dir.first_entry;
            let n = rows.entries();
            let Some(graph) = graph else {
                // No graph: scan this segment.
                let mut out = Vec::new();
                let mut scores = vec![0f32; BLOCK.min(n)];
                for b in (0..n).step_by(BLOCK) {
                    let r = b..(b + BLOCK).min(n);
                    let dst = &mut scores[..r.len()];
                    plan.score_into(&rows, r.clone(), dst);
                    let ids = r.map(|e| first + e as u64);
                    for (id, &score) in ids.zip(dst.iter()) {
                        if allowed.contains(id) {
                            out.push(Scored { id, score });
                        }
                    }
                }
                return Ok(keep_best(out, params));
            };
            let (top_probes, top_values) = plan.top_part();
            let lq = crate::ann::ListQuery::new(self.num_probes(), top_probes, top_values);
            // This graph's entries, as global ids.
            let start = first + graph.first as u64;
            let nodes_n = graph.view.nodes();
            let covered = start..start + nodes_n as u64;
            let take = c.max(params.top);
            let ef = walk_breadth(c).max(params.top);
            let nodes = if allowed.is_all() {
                graph.view.search_query(&lq, ef, take)?
            } else {
                let kept = allowed.count_in(covered.clone()) as usize;
                if kept <= filter_scan_limit(nodes_n, take) {
                    // Few entries pass: score them all, exactly.
                    let local: Vec<usize> = allowed
                        .ids_in(covered)
                        .into_iter()
                        .map(|id| (id - first) as usize)
                        .collect();
                    let mut out = Vec::with_capacity(local.len());
                    let mut scores = vec![0f32; BLOCK.min(local.len())];
                    for chunk in local.chunks(BLOCK) {
                        let dst = &mut scores[..chunk.len()];
                        plan.score_entries(&rows, chunk, dst);
                        for (&e, &score) in chunk.iter().zip(dst.iter()) {
                            out.push(Scored {
                                id: first + e as u64,
                                score,
                            });
                        }
                    }
                    return Ok(keep_best(out, params));
                }
                graph.view.search_query_filtered(
                    &lq,
                    |v| allowed.contains(start + u64::from(v)),
                    ef,
                    take,
                )?
            };
            let candidates: Vec<usize> = nodes
                .iter()
                .map(|&(_, v)| graph.first + v as usize)
                .collect();
            let lists: Vec<&[u32]> = nodes
                .iter()
                .map(|&(_, v)| graph.view.list(v as usize))
                .collect();
            let mut out = Vec::with_capacity(candidates.len());
            let mut scores = vec![0f32; BLOCK.min(candidates.len())];
            for (chunk, lists) in candidates.chunks(BLOCK).zip(lists.chunks(BLOCK)) {
                let dst = &mut scores[..chunk.len()];
                plan.score_entries_listed(&rows, chunk, lists, dst);
                for (&e, &score) in chunk.iter().zip(dst.iter()) {
                    out.push(Scored {
                        id: first + e as u64,
                        score,
                    });
                }
            }
            Ok(keep_best(out, params))
        };
        // Walks take a fraction of a millisecond: they go to the spinning helpers of
        // `fanout`, which a sleeping pool worker's wake-up would cost as much as it saves. A
        // segment without a graph is a scan, which the pool's threads share.
        let per_unit: Vec<Result<Vec<Scored>>> = if units.iter().all(|u| u.1.is_some()) {
            crate::fanout::run(units.len(), |i| search_unit(&units[i]))
        } else {
            units.par_iter().map(search_unit).collect()
        };
        let mut best = TopN::new(params.top);
        if params.grouping == Grouping::PerModel {
            let mut winners: std::collections::HashMap<u64, Scored> = Default::default();
            for list in per_unit {
                for sc in list? {
                    let m = self.model_of_entry(sc.id)?;
                    winners
                        .entry(m)
                        .and_modify(|w| *w = (*w).min(sc))
                        .or_insert(sc);
                }
            }
            winners.into_values().for_each(|w| best.push(w));
        } else {
            for list in per_unit {
                list?.into_iter().for_each(|sc| best.push(sc));
            }
        }
        Ok(best.into_sorted())
    }

    /// Baseline: Euclidean distance between `q` and each model's mean descriptor.
    fn rank_models(&self, q: &[f32], allowed: &Allowed, top: usize) -> Result<Vec<Scored>> {
        const ROWS: usize = 64;
        let p = self.num_probes();
        let mut best = TopN::new(top);
        for s in 0..self.segments.len() {
            let Some(rows) = self.segment_rows(s)? else {
                continue;
            };
            let ranges = self.model_ranges(s)?;
            let mut dist = vec![0f64; ranges.len()];
            let mut means = vec![0f32; ROWS * ranges.len()];
            for p0 in (0..p).step_by(ROWS) {
                let p1 = (p0 + ROWS).min(p);
                means
                    .par_chunks_mut(ranges.len())
                    .zip(p0..p1)
                    .for_each_init(
                        || vec![0f32; rows.entries()],
                        |row, (dst, pr)| {
                            rows.read_row(pr, 0..rows.entries(), row);
                            for (d, r) in dst.iter_mut().zip(&ranges) {
                                let sum: f64 = row[r.clone()].iter().map(|&x| f64::from(x)).sum();
                                *d = (sum / r.len() as f64) as f32;
                            }
                        },
                    );
                for (i, pr) in (p0..p1).enumerate() {
                    let m = &means[i * ranges.len()..(i + 1) * ranges.len()];
                    for (d, &mean) in dist.iter_mut().zip(m) {
                        *d += f64::from(q[pr] - mean).powi(2);
                    }
                }
            }
            let seg = &self.segments[s].dir;
            for (m, d) in dist.into_iter().enumerate() {
                let id = seg.first_model + m as u64;
                // A mask holds whole models: their first entry says.
                if allowed.contains(seg.first_entry + ranges[m].start as u64) {
                    best.push(Scored {
                        id,
                        score: d.sqrt() as f32,
                    });
                }
            }
        }
        Ok(best.into_sorted())
    }
}

/// Up to how many entries of a graph that a filter keeps are scored exactly instead of walked
/// to: an eighth of the graph's nodes, and at least four times the candidates (docs/benchmarks.md,
/// "Filtered search and deletes": at 10% scoring them was faster than the walk, with recall 1).
/// Below it a walk that keeps only those entries visits most of the graph anyway.
fn filter_scan_limit(nodes: usize, take: usize) -> usize {
    (nodes / 8).max(take.saturating_mul(4))
}

/// A segment's scored entries, cut to the best `top` unless per-model results need all of them.
fn keep_best(scored: Vec<Scored>, params: &ResolvedSearch) -> Vec<Scored> {
    if params.grouping == Grouping::PerModel {
        return scored;
    }
    let mut best = TopN::new(params.top);
    scored.into_iter().for_each(|s| best.push(s));
    best.into_sorted()
}
