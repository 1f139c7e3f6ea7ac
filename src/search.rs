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

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::ops::Range;

use rayon::prelude::*;

use crate::descriptor::{normalize_query, top_probes};
use crate::error::{Error, Result};
use crate::reader::{DescriptorRows, RawIndex, RowData};

/// Default number of top query probes compared. Chosen by measurement (`cargo bench --bench
/// k_sweep`, README "Choosing k"): on six synthetic zoos (1,000 and 4,000 probes, concepts firing
/// on 0.5% to 8% of probes) k = 16 had the best mean top-1 and was within 0.001 of each zoo's best
/// k, while k >= 128 fell toward the full-query baseline. Real trained hubs may move it.
pub const DEFAULT_K: usize = 16;

/// Default weight `w` of the all-probe term of [`Metric::Blend`]. Measured on five real model
/// hubs (`tools/hub/build.sh`, `probelog-tool eval --variants`; README, "Which discrepancy"): with
/// k = 16, w = 8 was at least as good as both the top-k discrepancy and the full-query distance
/// in top-1 and top-5 on every hub. Of the weights tried (2 to 16), 8, 10 and 12 were; on the hub
/// of 400 classifiers on 30 shared concepts, w = 8 ties the full query in top-5.
pub const DEFAULT_BLEND_WEIGHT: f32 = 8.0;

/// Largest weight `w` of [`Metric::Blend`] accepted. Descriptors are z-normalized, so the root
/// mean square of `q - d` is at most 2 and the blend score at most `2 w` plus the top-k term:
/// up to this bound every score stays finite and the ranking meaningful (at 1e6 the all-probe
/// term alone decides, as [`Metric::Full`] does). Weights near `f32::MAX` made every score
/// infinite and the ranking arbitrary.
pub const MAX_BLEND_WEIGHT: f32 = 1e6;

/// Entries per work unit of the scan (measured: 8192 beat 2048 and 16384; see README). The
/// block's accumulator (32 KiB) stays in L1/L2 while k row pieces of 32 KiB stream past it.
const BLOCK: usize = 8192;

/// How a query is compared with the entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Metric {
    /// The default: ProbeLog's top-k discrepancy plus `w` times the root mean square difference
    /// over all probes, `mean_{p in topk(q)} |q_p - d_p| + w * sqrt(mean_{all p} (q_p - d_p)^2)`
    /// (the full-query distance over `sqrt(P)`), with `k` from
    /// [`SearchParams::k`] and `w` from [`SearchParams::blend_weight`] ([`DEFAULT_BLEND_WEIGHT`]).
    /// `w = 0` is [`Metric::TopK`], score for score. Exact search only: [`SearchMode::Auto`] scans,
    /// [`SearchMode::Hnsw`] refuses it (the graphs are built for the top-k discrepancy).
    #[default]
    Blend,
    /// ProbeLog's asymmetric top-k discrepancy as in the paper (mean absolute difference on the
    /// query's top-k probes).
    TopK,
    /// Baseline: Euclidean distance over all probes.
    Full,
    /// Baseline: Euclidean distance to each model's mean descriptor; one result per model.
    Model,
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Metric::Blend => "blend",
            Metric::TopK => "topk",
            Metric::Full => "full",
            Metric::Model => "model",
        }
    }
}

/// Which search runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SearchMode {
    /// Score every entry.
    Exact,
    /// The ANN graphs propose candidates, the exact discrepancy reranks them. Segments without a
    /// graph are scanned exactly. [`Metric::TopK`] only (an error for the others, the default
    /// [`Metric::Blend`] included).
    Hnsw,
    /// [`SearchMode::Hnsw`] when the metric is [`Metric::TopK`] and graphs cover at least
    /// [`AUTO_HNSW_MIN_ENTRIES`] entries, else [`SearchMode::Exact`]: the other metrics, the
    /// default [`Metric::Blend`] included, always scan.
    #[default]
    Auto,
}

impl SearchMode {
    pub fn name(self) -> &'static str {
        match self {
            SearchMode::Exact => "exact",
            SearchMode::Hnsw => "hnsw",
            SearchMode::Auto => "auto",
        }
    }
}

/// [`SearchMode::Auto`] uses the graphs from this many graph-covered entries on. Measured (README,
/// "HNSW candidate stage"): at 1M synthetic entries, in two graph parts, hnsw mode at the
/// default candidates was 9.0x to 11.4x faster than the exact scan (18 runs) and kept 95.3% to
/// 96.0% of its top 10; with the earlier walk it was 2.2x to 2.5x faster
/// at 250k (the scan takes 0.5 to 0.7 ms there), and on a 2k real hub slower than the scan, so
/// auto stays exact until the scan itself gets slow.
pub const AUTO_HNSW_MIN_ENTRIES: u64 = 1_000_000;

/// Default number of candidates per graph that the exact discrepancy reranks. Measured at 1M
/// synthetic entries in two graph parts of 256 seeds per probe (`cargo bench --bench ann --
/// scale`, samples of 1,000 entry queries, README): recall@10 0.957 to 0.960 at 9.0x to 11.4x
/// the exact scan's speed (18 runs); 150 candidates gave 0.961 to 0.966 at 8.4x to 9.6x. On the
/// real hubs (2,130 and 1,154 logits) 100 candidates kept 0.966 to 0.985.
pub const DEFAULT_CANDIDATES: usize = 100;

/// How many nodes the HNSW walk keeps as it goes (its `ef`) when the rerank takes `c`
/// candidates: 35% of them, rounded up. The rerank takes the best `c` list scores among every
/// node the walk scored, the seeds included, so the walk need not hold them all. Measured at 1M
/// synthetic entries on 1,000 queries (README, "HNSW candidate stage"), at C = 100: keeping
/// 35% gave recall 0.957 to 0.960 at 10.0x to 11.4x the scan's speed, 50% 0.960 to 0.965 at
/// 9.4x to 10.0x, 25% 0.954 to 0.955 and no faster than 35% (the runs of that comparison).
pub fn walk_breadth(c: usize) -> usize {
    (c * 7).div_ceil(20)
}

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

/// Search parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SearchParams {
    /// Number of results.
    pub top: usize,
    /// Top query probes compared by [`Metric::TopK`] and by the top-k term of [`Metric::Blend`];
    /// `None` means [`DEFAULT_K`] (at most the probe count).
    pub k: Option<usize>,
    /// Leave out the query entry's own model (entry queries only).
    pub exclude_same_model: bool,
    /// Return only the best logit of each model: "which models recognize this".
    pub per_model: bool,
    pub metric: Metric,
    pub mode: SearchMode,
    /// Candidates per graph for [`SearchMode::Hnsw`]; `None` means [`DEFAULT_CANDIDATES`] (never
    /// fewer than `top`).
    pub candidates: Option<usize>,
    /// Weight `w` of the all-probe term of [`Metric::Blend`]: from 0 to [`MAX_BLEND_WEIGHT`];
    /// `None` means [`DEFAULT_BLEND_WEIGHT`]. The other metrics ignore it (it is still validated).
    pub blend_weight: Option<f32>,
}

impl SearchParams {
    /// The weight [`Metric::Blend`] uses: `blend_weight`, or [`DEFAULT_BLEND_WEIGHT`]. Errors
    /// for a negative or NaN weight, or one above [`MAX_BLEND_WEIGHT`].
    pub fn effective_blend_weight(&self) -> Result<f32> {
        match self.blend_weight {
            None => Ok(DEFAULT_BLEND_WEIGHT),
            Some(w) => check_blend_weight(w),
        }
    }
}

/// Checks a weight of [`Metric::Blend`]'s all-probe term: from 0 to [`MAX_BLEND_WEIGHT`].
pub fn check_blend_weight(w: f32) -> Result<f32> {
    if (0.0..=MAX_BLEND_WEIGHT).contains(&w) {
        Ok(w)
    } else {
        Err(Error::InvalidParameter(format!(
            "blend weight {w:e} is invalid: it must be a number from 0 (ranks as topk) to \
             {MAX_BLEND_WEIGHT:e} (larger weights make the scores overflow)"
        )))
    }
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

impl Default for SearchParams {
    fn default() -> Self {
        SearchParams {
            top: 10,
            k: None,
            exclude_same_model: false,
            per_model: false,
            metric: Metric::default(),
            mode: SearchMode::Auto,
            candidates: None,
            blend_weight: None,
        }
    }
}

/// One search result.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// 1-based.
    pub rank: usize,
    /// The entry; `None` for [`Metric::Model`], which ranks whole models.
    pub entry: Option<u64>,
    pub model_id: u64,
    pub model: String,
    /// The logit's column in its model; `None` for [`Metric::Model`].
    pub logit: Option<u32>,
    pub label: Option<String>,
    /// Lower is closer.
    pub score: f32,
}

/// A scored entry or model, before metadata is attached.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    /// Entry id, or model id for [`Metric::Model`].
    pub id: u64,
    pub score: f32,
}

impl Eq for Scored {}
impl PartialOrd for Scored {
    #[inline]
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scored {
    /// Better (lower score, then lower id) sorts first.
    #[inline]
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then(self.id.cmp(&other.id))
    }
}

/// The best `n` items seen; the worst of them sits on top of a max-heap.
#[derive(Debug, Clone)]
struct TopN {
    n: usize,
    heap: BinaryHeap<Scored>,
    /// Once the heap is full: the worst kept score. An item scoring above it cannot enter, which
    /// one float comparison settles for almost every entry of a scan.
    bar: f32,
}

impl TopN {
    fn new(n: usize) -> Self {
        // `n` comes from the caller and may be far larger than the index: grow on demand.
        TopN {
            n,
            heap: BinaryHeap::with_capacity(n.min(1024) + 1),
            bar: f32::INFINITY,
        }
    }
    #[inline]
    fn push(&mut self, s: Scored) {
        // `>` is false for NaN, which takes the slow path and the total order below.
        if s.score > self.bar {
            return;
        }
        if self.heap.len() < self.n {
            self.heap.push(s);
        } else if let Some(worst) = self.heap.peek()
            && s < *worst
        {
            self.heap.pop();
            self.heap.push(s);
        }
        if self.heap.len() >= self.n {
            self.bar = self.heap.peek().map_or(f32::INFINITY, |w| w.score);
        }
    }
    fn merge(mut self, other: TopN) -> TopN {
        for s in other.heap {
            self.push(s);
        }
        self
    }
    fn into_sorted(self) -> Vec<Scored> {
        self.heap.into_sorted_vec()
    }
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
                    return Err(Error::InvalidParameter(format!(
                        "entry {e} is a constant logit (stored as zeros); it cannot be a query"
                    )));
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
                    return Err(Error::InvalidParameter(
                        "this index has no probe embeddings: create it with --probe-embeddings (or add them with `probes embed`) before searching by text".into(),
                    ));
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
                let sims: Vec<f32> = emb
                    .chunks_exact(dim)
                    .map(|row| {
                        row.iter()
                            .zip(t)
                            .map(|(&a, &b)| f64::from(a) * f64::from(b))
                            .sum::<f64>() as f32
                    })
                    .collect();
                Ok(PreparedQuery {
                    descriptor: normalize_search_query(&sims, "the text query descriptor")?,
                    model: None,
                })
            }
        }
    }

    /// Searches and attaches metadata to the results.
    pub fn search(&self, query: &Query<'_>, params: &SearchParams) -> Result<Vec<Hit>> {
        if params.exclude_same_model && !matches!(query, Query::Entry(_)) {
            return Err(Error::InvalidParameter(
                "excluding the query's own model needs an entry query (--entry)".into(),
            ));
        }
        let scored = match self.entry_plan_from_graph(query, params)? {
            Some((plan, model)) => {
                let exclude = params.exclude_same_model.then_some(model);
                self.search_plan(&plan, exclude, params)?
            }
            None => {
                let q = self.prepare_query(query)?;
                let exclude = if params.exclude_same_model {
                    q.model
                } else {
                    None
                };
                self.search_descriptor(&q.descriptor, exclude, params)?
            }
        };
        scored
            .into_iter()
            .enumerate()
            .map(|(i, s)| self.hit(i + 1, s, params.metric))
            .collect()
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
        params: &SearchParams,
    ) -> Result<Option<(ScanPlan, u64)>> {
        let Query::Entry(entry) = *query else {
            return Ok(None);
        };
        if params.metric != Metric::TopK || self.dtype() != crate::Dtype::F16 {
            return Ok(None);
        }
        let k = self.effective_k(params.k)?;
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
            self.model_of_entry(entry)?,
        )))
    }

    fn hit(&self, rank: usize, s: Scored, metric: Metric) -> Result<Hit> {
        if metric == Metric::Model {
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

    /// The mode a search with `params` runs in: [`SearchMode::Auto`] resolved by the metric and
    /// the entries that graphs cover. Errors for combinations that cannot run.
    pub fn effective_mode(&self, params: &SearchParams) -> Result<SearchMode> {
        if params.candidates == Some(0) {
            return Err(Error::InvalidParameter(
                "the number of candidates must be at least 1".into(),
            ));
        }
        Ok(match params.mode {
            SearchMode::Exact => SearchMode::Exact,
            SearchMode::Hnsw if params.metric != Metric::TopK => {
                return Err(Error::InvalidParameter(format!(
                    "hnsw mode ranks by the topk metric only, not {} (the default metric is \
                     blend): search with --metric topk (Metric::TopK) to use the graphs, or in \
                     exact or auto mode",
                    params.metric.name()
                )));
            }
            SearchMode::Hnsw => SearchMode::Hnsw,
            SearchMode::Auto => {
                if params.metric == Metric::TopK && self.graph_entries() >= AUTO_HNSW_MIN_ENTRIES {
                    SearchMode::Hnsw
                } else {
                    SearchMode::Exact
                }
            }
        })
    }

    /// Resolves `params.k` against the probe count.
    pub fn effective_k(&self, k: Option<usize>) -> Result<usize> {
        let p = self.num_probes();
        match k {
            None => Ok(DEFAULT_K.min(p)),
            Some(k) if (1..=p).contains(&k) => Ok(k),
            Some(k) => Err(Error::InvalidParameter(format!(
                "k = {k} is out of range: it must be between 1 and the probe count {p}"
            ))),
        }
    }

    /// Ranks entries (or models) against a z-normalized query descriptor, without metadata.
    /// `exclude_model` leaves that model's entries out.
    pub fn search_descriptor(
        &self,
        q: &[f32],
        exclude_model: Option<u64>,
        params: &SearchParams,
    ) -> Result<Vec<Scored>> {
        let p = self.num_probes();
        if q.len() != p {
            return Err(Error::ProbeCountMismatch {
                what: "the query descriptor".into(),
                expected: p as u64,
                actual: q.len() as u64,
            });
        }
        if params.top == 0 {
            return Err(Error::InvalidParameter(
                "the number of results must be at least 1".into(),
            ));
        }
        let k = self.effective_k(params.k)?;
        let blend_weight = params.effective_blend_weight()?;
        let hnsw = self.effective_mode(params)? == SearchMode::Hnsw;
        match params.metric {
            Metric::Model => self.rank_models(q, exclude_model, params.top),
            metric => {
                let plan = if hnsw {
                    ScanPlan::new(q, k, Metric::TopK)
                } else {
                    ScanPlan::with_blend_weight(q, k, metric, blend_weight)
                };
                self.search_plan(&plan, exclude_model, params)
            }
        }
    }

    /// Ranks entries against a [`ScanPlan`] (any metric but [`Metric::Model`]), as
    /// [`RawIndex::search_descriptor`] does after making it.
    fn search_plan(
        &self,
        plan: &ScanPlan,
        exclude_model: Option<u64>,
        params: &SearchParams,
    ) -> Result<Vec<Scored>> {
        if params.top == 0 {
            return Err(Error::InvalidParameter(
                "the number of results must be at least 1".into(),
            ));
        }
        // The checks search_descriptor makes, for plans that did not come through it.
        params.effective_blend_weight()?;
        self.effective_k(params.k)?;
        let excluded = match exclude_model {
            Some(m) => {
                let info = self.model(m)?;
                info.first_entry..info.first_entry + u64::from(info.logit_count)
            }
            None => 0..0,
        };
        if self.effective_mode(params)? == SearchMode::Hnsw {
            let c = params.candidates.unwrap_or(DEFAULT_CANDIDATES);
            self.rank_hnsw(plan, exclude_model, excluded, params, c)
        } else if params.per_model {
            self.rank_per_model(plan, exclude_model, params.top)
        } else {
            self.rank_entries(plan, excluded, params.top)
        }
    }

    /// Scores of all entries against `q` (lower is closer), in entry order; [`Metric::Blend`]
    /// with [`DEFAULT_BLEND_WEIGHT`].
    pub fn score_all(&self, q: &[f32], metric: Metric, k: Option<usize>) -> Result<Vec<f32>> {
        self.score_all_with(
            q,
            &SearchParams {
                metric,
                k,
                ..SearchParams::default()
            },
        )
    }

    /// Scores of all entries against `q` with the metric, k and blend weight of `params`, in
    /// entry order (the other fields are not used).
    pub fn score_all_with(&self, q: &[f32], params: &SearchParams) -> Result<Vec<f32>> {
        let metric = params.metric;
        if q.len() != self.num_probes() || metric == Metric::Model {
            return Err(Error::InvalidParameter(
                "score_all takes a full-length descriptor and an entry metric".into(),
            ));
        }
        let plan = ScanPlan::with_blend_weight(
            q,
            self.effective_k(params.k)?,
            metric,
            params.effective_blend_weight()?,
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

    fn rank_entries(
        &self,
        plan: &ScanPlan,
        excluded: Range<u64>,
        top: usize,
    ) -> Result<Vec<Scored>> {
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
                        if !excluded.contains(&id) {
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
        exclude_model: Option<u64>,
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
                if Some(model) == exclude_model {
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

    /// The candidate stage and its rerank: per segment, the graph proposes `c` candidates (plus
    /// room for excluded ones), each scored exactly; segments without a graph are scanned.
    fn rank_hnsw(
        &self,
        plan: &ScanPlan,
        exclude_model: Option<u64>,
        excluded: Range<u64>,
        params: &SearchParams,
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
                        if !excluded.contains(&id) {
                            out.push(Scored { id, score });
                        }
                    }
                }
                return Ok(keep_best(out, params));
            };
            let lq = crate::ann::ListQuery::new(self.num_probes(), plan.probes(), plan.values());
            // This graph's entries, as global ids.
            let start = first + graph.first as u64;
            let covered = start..start + graph.view.nodes() as u64;
            // Room for the query model's own entries, which the graph may return but the
            // results leave out.
            let overlap = excluded
                .end
                .min(covered.end)
                .saturating_sub(excluded.start.max(covered.start));
            let take = c.max(params.top).saturating_add(overlap as usize);
            let ef = walk_breadth(c)
                .max(params.top)
                .saturating_add(overlap as usize);
            let nodes = graph.view.search_query(&lq, ef, take)?;
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
                    let id = first + e as u64;
                    if !excluded.contains(&id) {
                        out.push(Scored { id, score });
                    }
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
        if params.per_model {
            let mut winners: std::collections::HashMap<u64, Scored> = Default::default();
            for list in per_unit {
                for sc in list? {
                    let m = self.model_of_entry(sc.id)?;
                    if Some(m) == exclude_model {
                        continue;
                    }
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
    fn rank_models(
        &self,
        q: &[f32],
        exclude_model: Option<u64>,
        top: usize,
    ) -> Result<Vec<Scored>> {
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
            let first_model = self.segments[s].dir.first_model;
            for (m, d) in dist.into_iter().enumerate() {
                let id = first_model + m as u64;
                if Some(id) != exclude_model {
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

/// A segment's scored entries, cut to the best `top` unless per-model results need all of them.
fn keep_best(scored: Vec<Scored>, params: &SearchParams) -> Vec<Scored> {
    if params.per_model {
        return scored;
    }
    let mut best = TopN::new(params.top);
    scored.into_iter().for_each(|s| best.push(s));
    best.into_sorted()
}

/// The per-query part of a scan: which probe rows to read, in which order, with which query values.
#[derive(Debug, Clone)]
pub struct ScanPlan {
    probes: Vec<u32>,
    values: Vec<f32>,
    metric: Metric,
    /// Blend: how many of `probes` (the first ones) are the query's top-k; the rest (every
    /// probe, in order) are summed apart, squared.
    top: usize,
    /// Blend: the weight of the all-probe term and the probe count P.
    weight: f32,
    all: usize,
}

/// How many candidates ahead of the one being summed the rerank starts loading its scattered
/// values (`cargo bench --bench ann -- stages`, the rerank lines).
pub const RERANK_PREFETCH_AHEAD: usize = 4;

impl ScanPlan {
    /// `q` is a z-normalized descriptor. Top-k reads the `k` highest probes of `q`, highest
    /// first; the full metric reads every probe in order; the blend reads the top-k probes, then
    /// every probe in order. [`Metric::Blend`] weighs with [`DEFAULT_BLEND_WEIGHT`].
    pub fn new(q: &[f32], k: usize, metric: Metric) -> Self {
        Self::with_blend_weight(q, k, metric, DEFAULT_BLEND_WEIGHT)
    }

    /// As [`ScanPlan::new`], with the weight `w` of [`Metric::Blend`]'s all-probe term (finite,
    /// at least 0; other metrics ignore it). With `w = 0` the other probes are not read at all.
    pub fn with_blend_weight(q: &[f32], k: usize, metric: Metric, blend_weight: f32) -> Self {
        let mut probes: Vec<u32> = match metric {
            Metric::TopK | Metric::Blend => top_probes(q, k),
            _ => (0..q.len() as u32).collect(),
        };
        let top = probes.len();
        if metric == Metric::Blend && blend_weight != 0.0 {
            probes.extend(0..q.len() as u32);
        }
        let values = probes.iter().map(|&p| q[p as usize]).collect();
        ScanPlan {
            probes,
            values,
            metric,
            top,
            weight: blend_weight,
            all: q.len(),
        }
    }

    /// The top-k plan, over `all` probes, of a query whose `k` highest probes (highest first,
    /// ties by lower probe) and its values there are already known.
    pub fn from_top(probes: Vec<u32>, values: Vec<f32>, all: usize) -> Self {
        let top = probes.len();
        ScanPlan {
            probes,
            values,
            metric: Metric::TopK,
            top,
            weight: DEFAULT_BLEND_WEIGHT,
            all,
        }
    }

    pub fn probes(&self) -> &[u32] {
        &self.probes
    }

    /// The query's values at [`ScanPlan::probes`].
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// The blend from its two sums: `top` of the absolute differences over the top-k probes,
    /// `all` of the squared differences over every probe.
    #[inline]
    fn blend(&self, top: f32, all: f32) -> f32 {
        top / self.top as f32 + self.weight * (all / self.all as f32).sqrt()
    }

    /// Scores the listed entries of one segment into `out`, with the same operations in the same
    /// order as [`ScanPlan::score_into`], so the scores are bit-identical to a scan's.
    pub fn score_entries(&self, rows: &DescriptorRows<'_>, entries: &[usize], out: &mut [f32]) {
        let sum = |e: usize, probes: &[u32], values: &[f32], squared: bool| {
            let mut acc = 0f32;
            for (&p, &q) in probes.iter().zip(values) {
                let d = q - rows.value(p as usize, e);
                acc += if squared { d * d } else { d.abs() };
            }
            acc
        };
        if self.metric == Metric::TopK {
            // The k values of each entry are scattered over k rows: start every load first, so
            // that they overlap.
            for &e in entries {
                self.probes
                    .iter()
                    .for_each(|&p| rows.prefetch(p as usize, e));
            }
        }
        for (o, &e) in out.iter_mut().zip(entries) {
            *o = match self.metric {
                Metric::Blend => {
                    let (tp, rp) = self.probes.split_at(self.top);
                    let (tv, rv) = self.values.split_at(self.top);
                    self.blend(sum(e, tp, tv, false), sum(e, rp, rv, true))
                }
                Metric::TopK => {
                    sum(e, &self.probes, &self.values, false) / self.probes.len() as f32
                }
                _ => sum(e, &self.probes, &self.values, self.metric == Metric::Full).sqrt(),
            };
        }
    }

    /// [`ScanPlan::score_entries`] for candidates whose graph lists are at hand: `lists[i]` is
    /// the top list of `entries[i]`. In an f16 index a list's values are the stored ones, so a
    /// top-k plan takes every value it needs that the list holds from there, and reads only the
    /// others from the scattered rows: the same values, summed in the same order, so the scores
    /// are bit-identical to [`ScanPlan::score_entries`]. Other plans and f32 rows (whose lists
    /// hold rounded values) read every value from the rows.
    pub fn score_entries_listed(
        &self,
        rows: &DescriptorRows<'_>,
        entries: &[usize],
        lists: &[&[u32]],
        out: &mut [f32],
    ) {
        let k = self.probes.len();
        let f16_rows = matches!(rows.data(), crate::reader::RowData::F16(_));
        if self.metric != Metric::TopK || !f16_rows || k >= usize::from(u16::MAX) {
            return self.score_entries(rows, entries, out);
        }
        // Where each probe stands in the plan; every other probe (and any past the index, which
        // a damaged list may name) maps to slot k, which nothing reads. No branch per item.
        let stride = k + 1;
        let mut slot = vec![k as u16; self.all + 1];
        for (i, &p) in self.probes.iter().enumerate() {
            slot[p as usize] = i as u16;
        }
        // Per candidate, the f16 bits of its values on the plan's probes that its list holds;
        // NOT_LISTED for the rest.
        const NOT_LISTED: u32 = u32::MAX;
        let mut known = vec![NOT_LISTED; entries.len() * stride];
        for (c, list) in lists.iter().enumerate().take(entries.len()) {
            let dst = &mut known[c * stride..(c + 1) * stride];
            for &item in *list {
                dst[usize::from(slot[((item & 0xffff) as usize).min(self.all)])] = item >> 16;
            }
        }
        // The values still to read are scattered over the rows: loads started a few candidates
        // ahead overlap with the sums.
        let prefetch = |c: usize| {
            if let Some(&e) = entries.get(c) {
                for (s, &p) in self.probes.iter().enumerate() {
                    if known[c * stride + s] == NOT_LISTED {
                        rows.prefetch(p as usize, e);
                    }
                }
            }
        };
        (0..RERANK_PREFETCH_AHEAD).for_each(prefetch);
        for (c, (o, &e)) in out.iter_mut().zip(entries).enumerate() {
            prefetch(c + RERANK_PREFETCH_AHEAD);
            let mut acc = 0f32;
            for (s, (&p, &q)) in self.probes.iter().zip(&self.values).enumerate() {
                let bits = known[c * stride + s];
                let x = if bits == NOT_LISTED {
                    rows.value(p as usize, e)
                } else {
                    half::f16::from_bits(bits as u16).to_f32()
                };
                acc += (q - x).abs();
            }
            *o = acc / k as f32;
        }
    }

    /// Scores entries `r` of one segment into `out`.
    pub fn score_into(&self, rows: &DescriptorRows<'_>, r: Range<usize>, out: &mut [f32]) {
        // f16 rows that F16C cannot read are converted into this buffer.
        let mut converted = Vec::new();
        match self.metric {
            Metric::Blend => {
                let (tp, rp) = self.probes.split_at(self.top);
                let (tv, rv) = self.values.split_at(self.top);
                accumulate_rows(rows, r.clone(), tp, tv, false, out, &mut converted);
                if rp.is_empty() {
                    out.iter_mut().for_each(|x| *x = self.blend(*x, 0.0));
                } else {
                    let mut all = vec![0f32; out.len()];
                    accumulate_rows(rows, r, rp, rv, true, &mut all, &mut converted);
                    for (x, &y) in out.iter_mut().zip(&all) {
                        *x = self.blend(*x, y);
                    }
                }
            }
            Metric::TopK => {
                accumulate_rows(
                    rows,
                    r,
                    &self.probes,
                    &self.values,
                    false,
                    out,
                    &mut converted,
                );
                let k = self.probes.len() as f32;
                out.iter_mut().for_each(|x| *x /= k);
            }
            _ => {
                let squared = self.metric == Metric::Full;
                accumulate_rows(
                    rows,
                    r,
                    &self.probes,
                    &self.values,
                    squared,
                    out,
                    &mut converted,
                );
                out.iter_mut().for_each(|x| *x = x.sqrt());
            }
        }
    }
}

/// `out[i]` = the sum over `probes` (in order, left to right) of `|q - d|` (or its square when
/// `squared`) for entry `r.start + i`: four rows at a time, then the remainder one by one.
fn accumulate_rows(
    rows: &DescriptorRows<'_>,
    r: Range<usize>,
    probes: &[u32],
    values: &[f32],
    squared: bool,
    out: &mut [f32],
    converted: &mut Vec<f32>,
) {
    out.fill(0.0);
    let len = r.len();
    let quads = probes.chunks_exact(4).zip(values.chunks_exact(4));
    for (ps, qs) in quads {
        let q = [qs[0], qs[1], qs[2], qs[3]];
        match rows.data() {
            RowData::F32(_) => {
                let rs = std::array::from_fn(|i| {
                    rows.row_f32(ps[i] as usize, r.clone()).expect("f32 rows")
                });
                accumulate4(out, rs, q, squared);
            }
            RowData::F16(_) if f16c::available() => {
                let rs = std::array::from_fn(|i| {
                    rows.row_f16_bits(ps[i] as usize, r.clone())
                        .expect("f16 rows")
                });
                // SAFETY: `available()` confirmed AVX and F16C on this CPU.
                unsafe { f16c::accumulate4(out, rs, q, squared) };
            }
            RowData::F16(_) => {
                converted.resize(4 * len, 0.0);
                for (i, dst) in converted.chunks_exact_mut(len.max(1)).enumerate() {
                    rows.read_row(ps[i] as usize, r.clone(), &mut dst[..len]);
                }
                let rs = std::array::from_fn(|i| &converted[i * len..(i + 1) * len]);
                accumulate4(out, rs, q, squared);
            }
        }
    }
    let start = probes.len() - probes.len() % 4;
    for j in start..probes.len() {
        let p = probes[j] as usize;
        match rows.row_f32(p, r.clone()) {
            Some(row) => accumulate1(out, row, values[j], squared),
            None => {
                converted.resize(len, 0.0);
                rows.read_row(p, r.clone(), &mut converted[..len]);
                accumulate1(out, &converted[..len], values[j], squared);
            }
        }
    }
}

#[inline]
fn accumulate4(out: &mut [f32], rs: [&[f32]; 4], q: [f32; 4], squared: bool) {
    let n = out.len();
    let (r0, r1, r2, r3) = (&rs[0][..n], &rs[1][..n], &rs[2][..n], &rs[3][..n]);
    if squared {
        for i in 0..n {
            let (d0, d1, d2, d3) = (q[0] - r0[i], q[1] - r1[i], q[2] - r2[i], q[3] - r3[i]);
            out[i] = (((out[i] + d0 * d0) + d1 * d1) + d2 * d2) + d3 * d3;
        }
    } else {
        for i in 0..n {
            let (d0, d1, d2, d3) = (q[0] - r0[i], q[1] - r1[i], q[2] - r2[i], q[3] - r3[i]);
            out[i] = (((out[i] + d0.abs()) + d1.abs()) + d2.abs()) + d3.abs();
        }
    }
}

#[inline]
fn accumulate1(out: &mut [f32], row: &[f32], q: f32, squared: bool) {
    let row = &row[..out.len()];
    if squared {
        for (o, &x) in out.iter_mut().zip(row) {
            let d = q - x;
            *o += d * d;
        }
    } else {
        for (o, &x) in out.iter_mut().zip(row) {
            *o += (q - x).abs();
        }
    }
}

/// The f16 kernel: converts with F16C in registers instead of through a buffer. Same operations in
/// the same order as [`accumulate4`], so results are bit-identical to the portable path.
#[cfg(target_arch = "x86_64")]
mod f16c {
    use std::arch::x86_64::*;

    pub fn available() -> bool {
        std::arch::is_x86_feature_detected!("avx") && std::arch::is_x86_feature_detected!("f16c")
    }

    /// For each `i`: `out[i] = (((out[i] + t0) + t1) + t2) + t3` with `tj = |q[j] - rs[j][i]|`,
    /// or its square when `squared`.
    ///
    /// # Safety
    /// The CPU must support AVX and F16C.
    #[target_feature(enable = "avx,f16c")]
    pub unsafe fn accumulate4(out: &mut [f32], rs: [&[u16]; 4], q: [f32; 4], squared: bool) {
        let n = out.len();
        assert!(
            rs.iter().all(|r| r.len() >= n),
            "rows shorter than the output"
        );
        let qv = q.map(|x| _mm256_set1_ps(x));
        let sign = _mm256_set1_ps(-0.0);
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= n and every row holds at least n values (asserted above), so the
            // eight-value loads from each row and the load and store of `out` stay in bounds; the
            // unaligned load and store intrinsics have no alignment requirement.
            unsafe {
                let mut acc = _mm256_loadu_ps(out.as_ptr().add(i));
                for j in 0..4 {
                    let x = _mm256_cvtph_ps(_mm_loadu_si128(rs[j].as_ptr().add(i).cast()));
                    let d = _mm256_sub_ps(qv[j], x);
                    let t = if squared {
                        _mm256_mul_ps(d, d)
                    } else {
                        _mm256_andnot_ps(sign, d)
                    };
                    acc = _mm256_add_ps(acc, t);
                }
                _mm256_storeu_ps(out.as_mut_ptr().add(i), acc);
            }
            i += 8;
        }
        for (k, o) in out.iter_mut().enumerate().skip(i) {
            for j in 0..4 {
                let d = q[j] - half::f16::from_bits(rs[j][k]).to_f32();
                *o += if squared { d * d } else { d.abs() };
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod f16c {
    pub fn available() -> bool {
        false
    }
    /// # Safety
    /// Never called: `available()` is false on this architecture.
    pub unsafe fn accumulate4(_: &mut [f32], _: [&[u16]; 4], _: [f32; 4], _: bool) {
        unreachable!("no F16C kernel on this architecture")
    }
}

/// The reference definition of the top-k discrepancy, one entry at a time, in the same summation
/// order as the scan. Tests compare the scan with it.
pub fn topk_discrepancy(q: &[f32], d: &[f32], k: usize) -> f32 {
    let probes = top_probes(q, k);
    let mut acc = 0f32;
    for &p in &probes {
        acc += (q[p as usize] - d[p as usize]).abs();
    }
    acc / probes.len() as f32
}

/// The reference definition of [`Metric::Blend`], one entry at a time, in the same summation order
/// as the scan: the top-k probes highest first, then every probe in order. Tests compare the scan
/// with it.
pub fn blend_discrepancy(q: &[f32], d: &[f32], k: usize, weight: f32) -> f32 {
    let probes = top_probes(q, k);
    let mut top = 0f32;
    for &p in &probes {
        top += (q[p as usize] - d[p as usize]).abs();
    }
    let mut all = 0f32;
    if weight != 0.0 {
        for (a, b) in q.iter().zip(d) {
            all += (a - b) * (a - b);
        }
    }
    top / probes.len() as f32 + weight * (all / q.len() as f32).sqrt()
}

/// The reference definition of the full-query Euclidean distance.
pub fn full_distance(q: &[f32], d: &[f32]) -> f32 {
    let mut acc = 0f32;
    for (a, b) in q.iter().zip(d) {
        acc += (a - b) * (a - b);
    }
    acc.sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16c_kernel_matches_portable_path_bit_for_bit() {
        if !f16c::available() {
            return;
        }
        let n = 1003; // not a multiple of 8: exercises the tail
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let mut rnd = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 20_000) as f32 / 2_000.0 - 5.0
        };
        let rows: Vec<Vec<half::f16>> = (0..4)
            .map(|_| (0..n).map(|_| half::f16::from_f32(rnd())).collect())
            .collect();
        let q = [rnd(), rnd(), rnd(), rnd()];
        for squared in [false, true] {
            let start: Vec<f32> = (0..n).map(|_| rnd().abs()).collect();
            let mut fast = start.clone();
            let bits: Vec<&[u16]> = rows.iter().map(|r| bytemuck::cast_slice(r)).collect();
            // SAFETY: available() checked above.
            unsafe {
                f16c::accumulate4(&mut fast, [bits[0], bits[1], bits[2], bits[3]], q, squared)
            };
            let mut slow = start.clone();
            let conv: Vec<Vec<f32>> = rows
                .iter()
                .map(|r| r.iter().map(|h| h.to_f32()).collect())
                .collect();
            accumulate4(
                &mut slow,
                [&conv[0], &conv[1], &conv[2], &conv[3]],
                q,
                squared,
            );
            assert_eq!(fast, slow, "squared = {squared}");
        }
    }

    #[test]
    fn blend_weights_keep_scores_finite() {
        for w in [0.0, DEFAULT_BLEND_WEIGHT, MAX_BLEND_WEIGHT] {
            assert_eq!(check_blend_weight(w).unwrap(), w);
        }
        for w in [
            -1.0,
            f32::NAN,
            f32::INFINITY,
            3e38,
            MAX_BLEND_WEIGHT * 1.001,
        ] {
            assert!(check_blend_weight(w).is_err(), "{w}");
        }
        // At the bound, the score of z-normalized opposites is finite.
        let q = [1.0f32, -1.0, 1.0, -1.0];
        let d = [-1.0f32, 1.0, -1.0, 1.0];
        assert!(blend_discrepancy(&q, &d, 2, MAX_BLEND_WEIGHT).is_finite());
    }
}
