//! What a search asks for ([`SearchParams`]), and the one step that resolves it against an index
//! ([`RawIndex::resolve_search`]): defaults filled in, `auto` decided, every value checked.
//! The search runs on the resolved parameters and returns them with its hits, so that every front
//! end (CLI, C ABI, SQLite, Python) reports what ran instead of working it out again; and it
//! fails with a typed [`SearchError`] that each front end only renders.

use crate::error::Result;
use crate::reader::RawIndex;
use crate::selection::ModelFilter;

use super::Query;

/// Default number of top query probes compared: best mean top-1 over six synthetic zoos
/// (docs/benchmarks.md, "Choosing k").
pub const DEFAULT_K: usize = 16;

/// Default weight `w` of the all-probe term of [`Metric::Blend`]: with k = 16, at least as good
/// as the top-k discrepancy and the full-query distance on every real hub (docs/results.md,
/// "Which discrepancy").
pub const DEFAULT_BLEND_WEIGHT: f32 = 8.0;

/// Largest weight `w` of [`Metric::Blend`]. Descriptors are z-normalized, so the all-probe term is
/// at most 2: up to this weight every score stays finite (near `f32::MAX` they overflow and the
/// ranking is arbitrary), and at it the all-probe term alone decides, as [`Metric::Full`] does.
pub const MAX_BLEND_WEIGHT: f32 = 1e6;

/// [`SearchMode::Auto`] uses the graphs from this many graph-covered entries on: below it the
/// exact scan is fast enough (docs/benchmarks.md, "`--mode auto`").
pub const AUTO_HNSW_MIN_ENTRIES: u64 = 1_000_000;

/// Default candidates per graph that the exact discrepancy reranks: recall@10 above 0.95 at 1M
/// entries and on the real hubs (docs/benchmarks.md, "Why these defaults").
pub const DEFAULT_CANDIDATES: usize = 100;

/// How many nodes the HNSW walk keeps as it goes (its `ef`) when the rerank takes `c`
/// candidates: 35% of them, rounded up. The rerank takes the best `c` list scores among every
/// node the walk scored, the seeds included, so the walk need not hold them all
/// (docs/benchmarks.md, "Why these defaults").
pub fn walk_breadth(c: usize) -> usize {
    (c * 7).div_ceil(20)
}

/// How a query is compared with an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Metric {
    /// The default: ProbeLog's top-k discrepancy plus `w` times the root mean square difference
    /// over all probes, `mean_{p in topk(q)} |q_p - d_p| + w * sqrt(mean_{all p} (q_p - d_p)^2)`
    /// (the full-query distance over `sqrt(P)`), with `k` from [`SearchParams::k`] and `w` from
    /// [`SearchParams::blend_weight`]. `w = 0` is [`Metric::TopK`], score for score. Exact search
    /// only: the graphs are built for the top-k discrepancy.
    #[default]
    Blend,
    /// ProbeLog's asymmetric top-k discrepancy as in the paper (mean absolute difference on the
    /// query's top-k probes).
    TopK,
    /// Baseline: Euclidean distance over all probes.
    Full,
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Metric::Blend => "blend",
            Metric::TopK => "topk",
            Metric::Full => "full",
        }
    }

    /// Whether the metric compares the query's top `k` probes.
    pub fn uses_k(self) -> bool {
        matches!(self, Metric::Blend | Metric::TopK)
    }
}

/// What a search returns: single logits, or models. Apart from the [`Metric`], which scores
/// logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Grouping {
    /// Every logit, closest first.
    #[default]
    Entries,
    /// The closest logit of each model, closest first: "which models recognize this".
    PerModel,
    /// Whole models, by the Euclidean distance between the query and each model's mean
    /// descriptor: the paper's model-level baseline. It scores models, not logits, so it takes no
    /// [`Metric`] (nor `k`, a blend weight or graphs).
    ModelMean,
}

impl Grouping {
    pub fn name(self) -> &'static str {
        match self {
            Grouping::Entries => "entries",
            Grouping::PerModel => "per-model",
            Grouping::ModelMean => "model-mean",
        }
    }
}

/// Which search runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SearchMode {
    /// Score every entry.
    Exact,
    /// The ANN graphs propose candidates by the top-k discrepancy, the exact metric reranks
    /// them. Segments without a graph are scanned exactly. [`Metric::TopK`] and
    /// [`Metric::Blend`].
    Hnsw,
    /// [`SearchMode::Hnsw`] when the metric is [`Metric::TopK`] and graphs cover at least
    /// [`AUTO_HNSW_MIN_ENTRIES`] entries, else [`SearchMode::Exact`]. The blend scans: the
    /// graphs' top-k candidates hold too few of its exact top 10 (docs/benchmarks.md).
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

/// What a search asks for. `None` fields take the library's defaults; parameters that do not
/// apply to the metric or grouping must stay `None`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SearchParams<'a> {
    /// Number of results.
    pub top: usize,
    /// Top query probes compared by [`Metric::TopK`] and by the top-k term of [`Metric::Blend`];
    /// `None` means [`DEFAULT_K`] (at most the probe count).
    pub k: Option<usize>,
    /// Leave out the query entry's own model (entry queries only).
    pub exclude_same_model: bool,
    pub grouping: Grouping,
    pub metric: Metric,
    pub mode: SearchMode,
    /// Candidates per graph for [`SearchMode::Hnsw`]; `None` means [`DEFAULT_CANDIDATES`] (never
    /// fewer than `top`).
    pub candidates: Option<usize>,
    /// Weight `w` of the all-probe term of [`Metric::Blend`], from 0 to [`MAX_BLEND_WEIGHT`];
    /// `None` means [`DEFAULT_BLEND_WEIGHT`].
    pub blend_weight: Option<f32>,
    /// Search only the models this filter keeps (inside the scan and the graph walk, so that
    /// `top` results come back whenever that many match). Deleted models are never searched.
    pub filter: Option<&'a ModelFilter>,
}

impl Default for SearchParams<'_> {
    fn default() -> Self {
        SearchParams {
            top: 10,
            k: None,
            exclude_same_model: false,
            grouping: Grouping::Entries,
            metric: Metric::default(),
            mode: SearchMode::Auto,
            candidates: None,
            blend_weight: None,
            filter: None,
        }
    }
}

/// The parameters a search ran with: [`SearchParams`] resolved against an index by
/// [`RawIndex::resolve_search`]. Every `Option` is `Some` exactly where the value was used.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ResolvedSearch {
    pub top: usize,
    pub grouping: Grouping,
    /// The metric that scored logits; `None` for [`Grouping::ModelMean`].
    pub metric: Option<Metric>,
    /// The query probes compared ([`Metric::TopK`], [`Metric::Blend`]).
    pub k: Option<usize>,
    /// The weight of the blend's all-probe term ([`Metric::Blend`]).
    pub blend_weight: Option<f32>,
    /// [`SearchMode::Exact`] or [`SearchMode::Hnsw`]: never `Auto`.
    pub mode: SearchMode,
    /// Candidates per graph reranked ([`SearchMode::Hnsw`]).
    pub candidates: Option<usize>,
    pub exclude_same_model: bool,
}

/// A parameter name as the library spells it (the fields of [`SearchParams`]); front ends map it
/// to their own spelling (a CLI flag, a C field, a Python keyword).
pub type ParamName = &'static str;

/// Why search parameters cannot run. The messages name [`SearchParams`] fields; front ends may
/// render them in their own words.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum SearchError {
    #[error("top must be at least 1")]
    NoResults,
    #[error("k = {k} is out of range: it must be between 1 and the probe count {probes}")]
    KOutOfRange { k: usize, probes: usize },
    #[error(
        "blend_weight {weight:e} is invalid: it must be a number from 0 (ranks as topk) to \
         {MAX_BLEND_WEIGHT:e} (larger weights make the scores overflow)"
    )]
    BlendWeightOutOfRange { weight: f32 },
    #[error("candidates must be at least 1")]
    NoCandidates,
    /// A parameter was given that the metric or grouping does not use.
    #[error("{param} does not apply to {used_by}")]
    NotApplicable {
        param: ParamName,
        used_by: &'static str,
    },
    /// Hnsw mode asked for with a metric or grouping the graphs cannot serve.
    #[error(
        "hnsw mode ranks logits by the blend or topk metric only, not {what}: use one of those, \
         or exact or auto mode"
    )]
    HnswUnsupported { what: &'static str },
    #[error("exclude_same_model needs an entry query")]
    ExcludeNeedsEntry,
    /// The query entry is a constant logit, stored as zeros: it ranks nothing.
    #[error("entry {entry} is a constant logit (stored as zeros); it cannot be a query")]
    ConstantEntry { entry: u64 },
    /// A text query on an index without probe image embeddings.
    #[error("this index has no probe image embeddings, which a text query is compared with")]
    NoProbeEmbeddings,
}

/// Checks a weight of [`Metric::Blend`]'s all-probe term: from 0 to [`MAX_BLEND_WEIGHT`].
pub fn check_blend_weight(w: f32) -> Result<f32, SearchError> {
    if (0.0..=MAX_BLEND_WEIGHT).contains(&w) {
        Ok(w)
    } else {
        Err(SearchError::BlendWeightOutOfRange { weight: w })
    }
}

/// Resolves `k` against `probes`: `None` is [`DEFAULT_K`] (at most `probes`).
pub fn resolve_k(k: Option<usize>, probes: usize) -> Result<usize, SearchError> {
    match k {
        None => Ok(DEFAULT_K.min(probes)),
        Some(k) if (1..=probes).contains(&k) => Ok(k),
        Some(k) => Err(SearchError::KOutOfRange { k, probes }),
    }
}

impl<D: AsRef<[u8]>> RawIndex<D> {
    /// Resolves `params` for `query` against this index: the one place where defaults are filled
    /// in, `auto` is decided and every value is checked. [`RawIndex::search`] runs on the result
    /// and returns it with its hits.
    pub fn resolve_search(
        &self,
        params: &SearchParams,
        query: &Query<'_>,
    ) -> Result<ResolvedSearch> {
        if params.exclude_same_model && !matches!(query, Query::Entry(_)) {
            return Err(SearchError::ExcludeNeedsEntry.into());
        }
        self.resolve_params(params)
    }

    /// [`RawIndex::resolve_search`] without a query (for searches by descriptor).
    pub fn resolve_params(&self, params: &SearchParams) -> Result<ResolvedSearch> {
        Ok(self.resolve_checked(params)?)
    }

    fn resolve_checked(&self, params: &SearchParams) -> Result<ResolvedSearch, SearchError> {
        if params.top == 0 {
            return Err(SearchError::NoResults);
        }
        if params.candidates == Some(0) {
            return Err(SearchError::NoCandidates);
        }
        let model_mean = params.grouping == Grouping::ModelMean;
        // What uses k and the blend weight, for the messages.
        let metric = (!model_mean).then_some(params.metric);
        let used_by = if model_mean {
            "the model-mean grouping"
        } else {
            match params.metric {
                Metric::Blend => "the blend metric",
                Metric::TopK => "the topk metric",
                Metric::Full => "the full metric",
            }
        };
        let k = match metric {
            Some(m) if m.uses_k() => Some(resolve_k(params.k, self.num_probes())?),
            _ if params.k.is_some() => {
                return Err(SearchError::NotApplicable {
                    param: "k",
                    used_by,
                });
            }
            _ => None,
        };
        let blend_weight = match (metric, params.blend_weight) {
            (Some(Metric::Blend), w) => {
                Some(check_blend_weight(w.unwrap_or(DEFAULT_BLEND_WEIGHT))?)
            }
            (_, Some(_)) => {
                return Err(SearchError::NotApplicable {
                    param: "blend_weight",
                    used_by,
                });
            }
            (_, None) => None,
        };
        let topk = metric == Some(Metric::TopK);
        // The walk scores nodes by the top-k L1; the rerank is exact in either metric.
        let graphs_serve = matches!(metric, Some(Metric::TopK | Metric::Blend));
        let mode = match params.mode {
            SearchMode::Exact => SearchMode::Exact,
            SearchMode::Hnsw if !graphs_serve => {
                return Err(SearchError::HnswUnsupported {
                    what: if model_mean {
                        "the model-mean grouping"
                    } else {
                        used_by
                    },
                });
            }
            SearchMode::Hnsw => SearchMode::Hnsw,
            SearchMode::Auto if topk && self.graph_entries() >= AUTO_HNSW_MIN_ENTRIES => {
                SearchMode::Hnsw
            }
            SearchMode::Auto => SearchMode::Exact,
        };
        Ok(ResolvedSearch {
            top: params.top,
            grouping: params.grouping,
            metric,
            k,
            blend_weight,
            mode,
            candidates: (mode == SearchMode::Hnsw)
                .then(|| params.candidates.unwrap_or(DEFAULT_CANDIDATES)),
            exclude_same_model: params.exclude_same_model,
        })
    }
}
