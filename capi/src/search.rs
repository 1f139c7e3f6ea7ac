//! Searches and their results.

use std::ffi::{c_char, c_int};
use std::ptr;

use probelog::search::ProbeContribution;
use probelog::{
    Grouping, Hit, Index, Metric, ModelFilter, Query, SearchError, SearchMode, SearchParams,
};

use crate::args::{code_arg, code_choice, free_handle, opt_str_arg, slice_arg, str_arg, write_out};
use crate::error::{
    CallResult, Failure, PROBELOG_ERR_NO_EMBEDDINGS, PROBELOG_ERR_WRONG_LENGTH, ProbelogStatus,
    guard, quiet,
};
use crate::index::{ProbelogIndex, index_arg};

/// Metric: ProbeLog's asymmetric top-k discrepancy, as in the paper.
pub const PROBELOG_METRIC_TOPK: u32 = 0;
/// Metric: Euclidean distance over all probes (a baseline).
pub const PROBELOG_METRIC_FULL: u32 = 1;
/// Metric: Euclidean distance to each model's mean descriptor, one result per model (a baseline).
pub const PROBELOG_METRIC_MODEL: u32 = 2;
/// Metric: the blend (the default of `probelog_search_params_default`): the top-k discrepancy
/// plus `blend_weight` times the root mean square difference over all probes. It ranked best on real
/// model hubs; exact search only (PROBELOG_MODE_AUTO scans, PROBELOG_MODE_HNSW refuses it).
pub const PROBELOG_METRIC_BLEND: u32 = 3;

/// Mode: hnsw for the topk metric once ANN graphs cover enough entries (1,000,000 today), else
/// exact (the default, and the value of a zero-initialised field). The other metrics, the
/// default blend included, always run exactly.
pub const PROBELOG_MODE_AUTO: u32 = 0;
/// Mode: score every entry.
pub const PROBELOG_MODE_EXACT: u32 = 1;
/// Mode: the index's ANN graphs propose candidates that the exact topk discrepancy reranks;
/// segments without a graph are scanned exactly. Topk metric only.
pub const PROBELOG_MODE_HNSW: u32 = 2;

/// Search parameters: the options of `probelog-tool search`. Start from
/// `probelog_search_params_default()`; a NULL pointer means those defaults.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ProbelogSearchParams {
    /// Number of results (`--top`), at least 1; a value above the entry count returns them all.
    /// Default 10.
    pub top: u32,
    /// Number of the query's highest probes compared by the blend and topk metrics (`--k`), from
    /// 1 to the probe count; 0 means the library's default (16 today, at most the probe count;
    /// `probelog_results_k` tells the k used). Must be 0 for the other metrics.
    pub k: u32,
    /// Non-zero: leave out the query entry's own model (`--exclude-same-model`); entry queries
    /// only.
    pub exclude_same_model: c_int,
    /// Non-zero: only the best logit of each model (`--per-model`).
    pub per_model: c_int,
    /// One of PROBELOG_METRIC_BLEND (the default), PROBELOG_METRIC_TOPK, PROBELOG_METRIC_FULL,
    /// PROBELOG_METRIC_MODEL (`--metric`). A zero-initialised field is PROBELOG_METRIC_TOPK.
    pub metric: u32,
    /// One of PROBELOG_MODE_AUTO (0, the default), PROBELOG_MODE_EXACT, PROBELOG_MODE_HNSW
    /// (`--mode`); PROBELOG_MODE_HNSW needs PROBELOG_METRIC_TOPK. `probelog_results_mode` tells
    /// the mode that ran.
    pub mode: u32,
    /// Candidates per ANN graph that hnsw mode reranks (`--candidates`); 0 means the library's
    /// default (100 today; never fewer than top). Ignored when the search runs exactly.
    pub candidates: u32,
    /// Weight of the all-probe term of PROBELOG_METRIC_BLEND (`--blend-weight`): above 0 and at
    /// most 1e6 (larger weights make the scores overflow); 0 means the library's default (8 today; `probelog_results_blend_weight` tells the
    /// weight used). A weight of exactly 0 ranks and scores as PROBELOG_METRIC_TOPK: use that
    /// metric. Must be 0 for the other metrics.
    pub blend_weight: f32,
    /// NULL, or `where_count` conditions on the models' metadata (`--where`), all of which must
    /// hold: "KEY=VALUE" (the model has metadata KEY with exactly that value) or "KEY!=VALUE"
    /// (it has no KEY, or another value); the key is not empty. Only the models they keep are
    /// searched, inside the scan and the graph walk, so `top` hits come back whenever that many
    /// match. A malformed condition is PROBELOG_ERR_INVALID_ARGUMENT. The strings are read
    /// during the search call only.
    pub where_conditions: *const *const c_char,
    /// Number of strings in `where_conditions`; 0 for none.
    pub where_count: usize,
    /// NULL, or a pattern the model's name must match (`--model-name`): `*` any run of
    /// characters, `?` one character.
    pub model_name: *const c_char,
    /// 0: no explanations. N > 0: for each hit, the N probes with the largest shares of its
    /// score, largest first (`--explain N`; fewer when the index has fewer probes), read with
    /// `probelog_results_explain_len` and `probelog_results_explain_get`.
    pub explain: u32,
}

impl Default for ProbelogSearchParams {
    fn default() -> Self {
        ProbelogSearchParams {
            top: 10,
            k: 0,
            exclude_same_model: 0,
            per_model: 0,
            metric: PROBELOG_METRIC_BLEND,
            mode: PROBELOG_MODE_AUTO,
            candidates: 0,
            blend_weight: 0.0,
            where_conditions: ptr::null(),
            where_count: 0,
            model_name: ptr::null(),
            explain: 0,
        }
    }
}

/// One probe's part in a hit's score (`probelog_results_explain_get`). The shares of all the
/// probes of a hit add up to its score: the top-k term is split over the query's top k probes
/// (`|query - hit| / k` each), an all-probe term in proportion to `(query - hit)^2`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ProbelogProbeShare {
    /// The probe's index, 0 to P - 1.
    pub probe: u32,
    /// The query descriptor's value on the probe (z-normalized).
    pub query: f32,
    /// The hit's value on the probe: its descriptor's, or for PROBELOG_METRIC_MODEL its model's
    /// mean descriptor's.
    pub hit: f32,
    /// The probe's share of the hit's score.
    pub share: f32,
    /// The probe's name, NUL-terminated UTF-8, when the index has probe names; else NULL. Valid
    /// until the results are freed.
    pub name: *const c_char,
    /// Bytes in `name` before its NUL; 0 when `name` is NULL.
    pub name_len: usize,
}

/// One result. The strings belong to the `ProbelogResults` they were read from and stay valid
/// until it is freed.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ProbelogHit {
    /// 1-based.
    pub rank: u32,
    /// The entry id; -1 for PROBELOG_METRIC_MODEL, which ranks whole models.
    pub entry: i64,
    /// The model's id in the index.
    pub model_id: u64,
    /// The model's name as given at append: NUL-terminated UTF-8, never NULL.
    pub model: *const c_char,
    /// Bytes in `model` before its NUL (names may hold NUL bytes; this length counts them).
    pub model_len: usize,
    /// The logit's column in its model; -1 for PROBELOG_METRIC_MODEL.
    pub logit: i64,
    /// The logit's class label, NUL-terminated UTF-8; NULL when it has none.
    pub label: *const c_char,
    /// Bytes in `label` before its NUL; 0 when `label` is NULL.
    pub label_len: usize,
    /// The score; lower is closer.
    pub score: f32,
}

/// The results of one search. Opaque; free with `probelog_results_free`. Independent of the
/// index handle (it may be closed first) and safe to read from several threads.
pub struct ProbelogResults {
    hits: Vec<StoredHit>,
    /// Per hit, its explanation (empty without `explain`).
    explain: Vec<Vec<StoredShare>>,
    k: u32,
    blend_weight: f32,
    mode: u32,
    candidates: u32,
}

impl std::fmt::Debug for ProbelogResults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbelogResults")
            .field("len", &self.hits.len())
            .field("explained", &!self.explain.is_empty())
            .field("k", &self.k)
            .field("blend_weight", &self.blend_weight)
            .field("mode", &self.mode)
            .field("candidates", &self.candidates)
            .finish()
    }
}

/// A probe's share with its name NUL-terminated.
#[derive(Debug)]
struct StoredShare {
    c: ProbeContribution,
    name: Option<Box<[u8]>>,
}

impl StoredShare {
    fn view(&self) -> ProbelogProbeShare {
        let (name, name_len) = match &self.name {
            Some(n) => (n.as_ptr().cast::<c_char>(), n.len() - 1),
            None => (ptr::null(), 0),
        };
        ProbelogProbeShare {
            probe: self.c.probe,
            query: self.c.query,
            hit: self.c.hit,
            share: self.c.share,
            name,
            name_len,
        }
    }
}

/// A hit with its strings NUL-terminated, so that C can read them in place.
#[derive(Debug)]
struct StoredHit {
    rank: u32,
    entry: Option<u64>,
    model_id: u64,
    model: Box<[u8]>,
    logit: Option<u32>,
    label: Option<Box<[u8]>>,
    score: f32,
}

fn nul_terminated(s: String) -> Box<[u8]> {
    let mut v = s.into_bytes();
    v.push(0);
    v.into_boxed_slice()
}

impl StoredHit {
    fn new(h: Hit) -> Self {
        StoredHit {
            rank: u32::try_from(h.rank).unwrap_or(u32::MAX),
            entry: h.entry,
            model_id: h.model_id,
            model: nul_terminated(h.model),
            logit: h.logit,
            label: h.label.map(nul_terminated),
            score: h.score,
        }
    }

    fn view(&self) -> ProbelogHit {
        let (label, label_len) = match &self.label {
            Some(l) => (l.as_ptr().cast::<c_char>(), l.len() - 1),
            None => (ptr::null(), 0),
        };
        ProbelogHit {
            rank: self.rank,
            entry: self
                .entry
                .map_or(-1, |e| i64::try_from(e).unwrap_or(i64::MAX)),
            model_id: self.model_id,
            model: self.model.as_ptr().cast::<c_char>(),
            model_len: self.model.len() - 1,
            logit: self.logit.map_or(-1, i64::from),
            label,
            label_len,
            score: self.score,
        }
    }
}

/// The default parameters: top 10, k = 0 (the library's default k), PROBELOG_METRIC_BLEND with
/// blend_weight = 0 (the library's default weight), no exclusion, every logit,
/// PROBELOG_MODE_AUTO, candidates = 0 (the library's default), no filter (where_conditions and
/// model_name NULL, where_count 0), explain = 0.
#[unsafe(no_mangle)]
pub extern "C" fn probelog_search_params_default() -> ProbelogSearchParams {
    quiet(
        ProbelogSearchParams::default(),
        ProbelogSearchParams::default,
    )
}

/// The model filter of C parameters: `None` without conditions.
///
/// # Safety
/// `p.where_conditions` is NULL or points to `p.where_count` pointers, each NULL or a
/// NUL-terminated string; `p.model_name` is NULL or a NUL-terminated string.
unsafe fn filter_arg(p: &ProbelogSearchParams) -> CallResult<Option<ModelFilter>> {
    let mut filter = ModelFilter::default();
    if p.where_count > 0 {
        // SAFETY: the caller promises `where_count` pointers at `where_conditions`, or NULL.
        let exprs = unsafe { slice_arg(p.where_conditions, p.where_count, "where_conditions") }?;
        for (i, &expr) in exprs.iter().enumerate() {
            // SAFETY: the caller promises each is NULL or NUL-terminated.
            let expr = unsafe { str_arg(expr, &format!("where_conditions[{i}]")) }?;
            filter.add_where(expr).map_err(|e| {
                Failure::invalid(format!(
                    "where_conditions[{i}] {expr:?} is not KEY=VALUE or KEY!=VALUE with a \
                     non-empty key ({e})"
                ))
            })?;
        }
    }
    // SAFETY: the caller promises NULL or a NUL-terminated string.
    if let Some(glob) = unsafe { opt_str_arg(p.model_name, "model_name") }? {
        filter.add_name_glob(glob);
    }
    Ok((!filter.is_empty()).then_some(filter))
}

/// Converts C parameters to the library's; the library checks them (`resolve_search`), and
/// [`render_error`] words its errors for C.
fn core_params<'f>(
    index: &Index,
    p: &ProbelogSearchParams,
    filter: Option<&'f ModelFilter>,
) -> CallResult<SearchParams<'f>> {
    let logit_grouping = grouping(p);
    let (metric, grouping) = code_arg(
        p.metric,
        "metric",
        &[
            code_choice!(PROBELOG_METRIC_BLEND => (Metric::Blend, logit_grouping)),
            code_choice!(PROBELOG_METRIC_TOPK => (Metric::TopK, logit_grouping)),
            code_choice!(PROBELOG_METRIC_FULL => (Metric::Full, logit_grouping)),
            // The model-level baseline ranks whole models: per_model adds nothing to it.
            code_choice!(PROBELOG_METRIC_MODEL => (Metric::default(), Grouping::ModelMean)),
        ],
    )?;
    let mode = code_arg(
        p.mode,
        "mode",
        &[
            code_choice!(PROBELOG_MODE_AUTO => SearchMode::Auto),
            code_choice!(PROBELOG_MODE_EXACT => SearchMode::Exact),
            code_choice!(PROBELOG_MODE_HNSW => SearchMode::Hnsw),
        ],
    )?;
    // There are never more results than entries; a larger top must not cost memory.
    let top =
        (p.top as usize).min(usize::try_from(index.entry_count().max(1)).unwrap_or(usize::MAX));
    // Struct update on purpose: fields added to SearchParams later keep their defaults.
    #[allow(clippy::needless_update)]
    let params = SearchParams {
        top,
        k: (p.k != 0).then_some(p.k as usize),
        exclude_same_model: p.exclude_same_model != 0,
        grouping,
        metric,
        mode,
        candidates: (p.candidates != 0).then_some(p.candidates as usize),
        // 0 is the library's default weight in C.
        blend_weight: (p.blend_weight != 0.0).then_some(p.blend_weight),
        filter,
        ..SearchParams::default()
    };
    Ok(params)
}

fn grouping(p: &ProbelogSearchParams) -> Grouping {
    if p.per_model != 0 {
        Grouping::PerModel
    } else {
        Grouping::Entries
    }
}

/// The library's search errors in the words of this C API: its field and constant names.
pub(crate) fn render_error(e: &SearchError) -> String {
    let metric_name = |what: &str| -> String {
        match what {
            "the blend metric" => "PROBELOG_METRIC_BLEND".into(),
            "the topk metric" => "PROBELOG_METRIC_TOPK".into(),
            "the full metric" => "PROBELOG_METRIC_FULL".into(),
            "the model-mean grouping" => "PROBELOG_METRIC_MODEL".into(),
            other => other.into(),
        }
    };
    match *e {
        SearchError::NotApplicable {
            param: "k",
            used_by,
        } => format!(
            "k only applies to the blend and topk metrics, not to {}; pass k = 0",
            metric_name(used_by)
        ),
        SearchError::NotApplicable {
            param: "blend_weight",
            used_by,
        } => format!(
            "blend_weight only applies to PROBELOG_METRIC_BLEND, not to {}; pass blend_weight = 0",
            metric_name(used_by)
        ),
        SearchError::BlendWeightOutOfRange { weight } => format!(
            "blend_weight {weight} is invalid: it must be a number from 0 (the library's default) \
             to {:e}",
            probelog::search::MAX_BLEND_WEIGHT
        ),
        SearchError::HnswUnsupported { what } => format!(
            "PROBELOG_MODE_HNSW ranks by the blend or topk metric only, not by {}: pass \
             PROBELOG_METRIC_BLEND or PROBELOG_METRIC_TOPK to use the ANN graphs, or \
             PROBELOG_MODE_EXACT or PROBELOG_MODE_AUTO",
            metric_name(what)
        ),
        SearchError::ExcludeNeedsEntry => {
            "exclude_same_model needs an entry query (probelog_search_entry)".into()
        }
        SearchError::NoProbeEmbeddings => "this index has no probe embeddings: add them with \
             `probelog-tool probes embed` before searching by text"
            .into(),
        _ => e.to_string(),
    }
}

/// The common body of the three searches.
///
/// # Safety
/// `index`, `params` and `out` are as the exported search functions document.
unsafe fn run_search<'q>(
    index: *const ProbelogIndex,
    params: *const ProbelogSearchParams,
    out: *mut *mut ProbelogResults,
    query: impl FnOnce(&Index) -> CallResult<Query<'q>>,
) -> CallResult {
    // SAFETY: the caller promises `out` is NULL or writable.
    unsafe { write_out(out, ptr::null_mut(), "out") }?;
    // SAFETY: the caller promises a live handle or NULL.
    let handle = unsafe { index_arg(index) }?;
    // SAFETY: the caller promises `params` is NULL or points to a ProbelogSearchParams.
    let p = unsafe { params.as_ref() }.copied().unwrap_or_default();
    // SAFETY: the caller promises the pointers of `params` are as its fields document.
    let filter = unsafe { filter_arg(&p) }?;
    let index = handle.read();
    let params = core_params(&index, &p, filter.as_ref())?;
    let query = query(&index)?;
    // Resolved and run under the same read guard: what the results report is what ran.
    let found = index.search(&query, &params)?;
    let explain = if p.explain > 0 {
        let names = index.probe_names()?;
        index
            .explain(&query, &found, p.explain as usize)?
            .into_iter()
            .map(|probes| {
                probes
                    .into_iter()
                    .map(|c| StoredShare {
                        name: names
                            .as_ref()
                            .and_then(|n| n.get(c.probe as usize))
                            .map(|n| nul_terminated(n.clone())),
                        c,
                    })
                    .collect()
            })
            .collect()
    } else {
        Vec::new()
    };
    let resolved = found.params;
    let k = resolved
        .k
        .map_or(0, |k| u32::try_from(k).unwrap_or(u32::MAX));
    let blend_weight = resolved.blend_weight.unwrap_or(0.0);
    let (mode, candidates) = match resolved.candidates {
        Some(c) => (PROBELOG_MODE_HNSW, u32::try_from(c).unwrap_or(u32::MAX)),
        None => (PROBELOG_MODE_EXACT, 0),
    };
    let results = ProbelogResults {
        hits: found.hits.into_iter().map(StoredHit::new).collect(),
        explain,
        k,
        blend_weight,
        mode,
        candidates,
    };
    let handle = Box::into_raw(Box::new(results));
    // SAFETY: checked writable above.
    unsafe { write_out(out, handle, "out") }
}

/// Searches with an entry of the index as the query (`probelog-tool search --entry`). On
/// success `*out` holds the results; on failure it is set to NULL.
///
/// # Safety
/// `index` is NULL or a live handle; `params` is NULL or points to a `ProbelogSearchParams`;
/// `out` is NULL or valid for writing a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn probelog_search_entry(
    index: *const ProbelogIndex,
    entry: u64,
    params: *const ProbelogSearchParams,
    out: *mut *mut ProbelogResults,
) -> ProbelogStatus {
    guard(|| {
        // SAFETY: forwarded from the caller.
        unsafe { run_search(index, params, out, |_| Ok(Query::Entry(entry))) }
    })
}

/// Searches with one logit's raw responses over the probes (`--query-logits`): `len` floats,
/// one per probe, in probe order; they are z-normalized here. NaN, infinities and a constant
/// vector are refused.
///
/// # Safety
/// `index` is NULL or a live handle; `values` is NULL or points to `len` floats (4-byte aligned);
/// `params` is NULL or points to a `ProbelogSearchParams`; `out` is NULL or valid for writing a
/// pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn probelog_search_vector(
    index: *const ProbelogIndex,
    values: *const f32,
    len: usize,
    params: *const ProbelogSearchParams,
    out: *mut *mut ProbelogResults,
) -> ProbelogStatus {
    guard(|| {
        // SAFETY: the caller promises `len` floats at `values`, or NULL.
        let v = unsafe { slice_arg(values, len, "values") }?;
        // SAFETY: forwarded from the caller.
        unsafe { run_search(index, params, out, |_| Ok(Query::Vector(v))) }
    })
}

/// Searches with a text embedding (`--text-embedding`): `len` floats, the dimension of the
/// probe embeddings stored in the index (`ProbelogIndexInfo.embedding_dim`). The query
/// descriptor is the probe embeddings dotted with it, z-normalized.
///
/// # Safety
/// As `probelog_search_vector`, with `embedding` for `values`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn probelog_search_text_embedding(
    index: *const ProbelogIndex,
    embedding: *const f32,
    len: usize,
    params: *const ProbelogSearchParams,
    out: *mut *mut ProbelogResults,
) -> ProbelogStatus {
    guard(|| {
        // SAFETY: the caller promises `len` floats at `embedding`, or NULL.
        let t = unsafe { slice_arg(embedding, len, "embedding") }?;
        let query = |index: &Index| {
            let Some((_, dim)) = index.probe_embeddings()? else {
                return Err(Failure::new(
                    PROBELOG_ERR_NO_EMBEDDINGS,
                    format!(
                        "{} has no probe embeddings, so it cannot be searched by text: create it \
                         with probe embeddings (`probelog-tool create --probe-embeddings`) or add \
                         them (`probelog-tool probes embed`)",
                        index.path().display()
                    ),
                ));
            };
            if t.len() != dim {
                return Err(Failure::new(
                    PROBELOG_ERR_WRONG_LENGTH,
                    format!(
                        "the text embedding has {} dimensions, the probe embeddings of {} have {dim}",
                        t.len(),
                        index.path().display()
                    ),
                ));
            }
            Ok(Query::TextEmbedding(t))
        };
        // SAFETY: forwarded from the caller.
        unsafe { run_search(index, params, out, query) }
    })
}

/// The number of results; 0 for NULL.
///
/// # Safety
/// `results` is NULL or a live results handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn probelog_results_len(results: *const ProbelogResults) -> usize {
    quiet(0, || {
        // SAFETY: the caller promises a live handle or NULL.
        unsafe { results.as_ref() }.map_or(0, |r| r.hits.len())
    })
}

/// The k the blend or topk metric used (the library's default, capped at the probe count, when
/// the parameters said 0); 0 for the other metrics and for NULL.
///
/// # Safety
/// `results` is NULL or a live results handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn probelog_results_k(results: *const ProbelogResults) -> u32 {
    quiet(0, || {
        // SAFETY: the caller promises a live handle or NULL.
        unsafe { results.as_ref() }.map_or(0, |r| r.k)
    })
}

/// The weight of the all-probe term the blend metric used (the library's default when the
/// parameters said 0; the `blend_weight` of `probelog-tool search --json`); 0 for the other
/// metrics and for NULL.
///
/// # Safety
/// `results` is NULL or a live results handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn probelog_results_blend_weight(results: *const ProbelogResults) -> f32 {
    quiet(0.0, || {
        // SAFETY: the caller promises a live handle or NULL.
        unsafe { results.as_ref() }.map_or(0.0, |r| r.blend_weight)
    })
}

/// The mode the search ran in: PROBELOG_MODE_EXACT or PROBELOG_MODE_HNSW (PROBELOG_MODE_AUTO
/// resolved; the `mode` of `probelog-tool search --json`); PROBELOG_MODE_AUTO (0) for NULL.
///
/// # Safety
/// `results` is NULL or a live results handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn probelog_results_mode(results: *const ProbelogResults) -> u32 {
    quiet(PROBELOG_MODE_AUTO, || {
        // SAFETY: the caller promises a live handle or NULL.
        unsafe { results.as_ref() }.map_or(PROBELOG_MODE_AUTO, |r| r.mode)
    })
}

/// The candidates per ANN graph that hnsw mode reranked (the library's default when the
/// parameters said 0; the `candidates` of `probelog-tool search --json`); 0 when the search ran
/// exactly, and for NULL.
///
/// # Safety
/// `results` is NULL or a live results handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn probelog_results_candidates(results: *const ProbelogResults) -> u32 {
    quiet(0, || {
        // SAFETY: the caller promises a live handle or NULL.
        unsafe { results.as_ref() }.map_or(0, |r| r.candidates)
    })
}

/// Fills `*out` with result `i` (0-based; results are sorted best first, so result i has rank
/// i + 1).
///
/// # Safety
/// `results` is NULL or a live results handle; `out` is NULL or valid for writing a
/// `ProbelogHit`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn probelog_results_get(
    results: *const ProbelogResults,
    i: usize,
    out: *mut ProbelogHit,
) -> ProbelogStatus {
    guard(|| {
        // SAFETY: the caller promises a live handle or NULL.
        let r = unsafe { results.as_ref() }.ok_or_else(|| Failure::null("results"))?;
        let hit = r.hits.get(i).ok_or_else(|| {
            Failure::invalid(format!(
                "result {i} is out of range: there are {} results",
                r.hits.len()
            ))
        })?;
        // SAFETY: the caller promises `out` is NULL or writable.
        unsafe { write_out(out, hit.view(), "out") }
    })
}

/// How many probes explain result `i` (`ProbelogSearchParams.explain`, at most the probe
/// count); 0 without explanations, for a result index past the end, and for NULL.
///
/// # Safety
/// `results` is NULL or a live results handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn probelog_results_explain_len(
    results: *const ProbelogResults,
    i: usize,
) -> usize {
    quiet(0, || {
        // SAFETY: the caller promises a live handle or NULL.
        unsafe { results.as_ref() }.map_or(0, |r| r.explain.get(i).map_or(0, Vec::len))
    })
}

/// Fills `*out` with the probe of rank `j` (0-based, largest share first) in the explanation
/// of result `i`. Asking past `probelog_results_explain_len(results, i)` is
/// PROBELOG_ERR_INVALID_ARGUMENT.
///
/// # Safety
/// `results` is NULL or a live results handle; `out` is NULL or valid for writing a
/// `ProbelogProbeShare`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn probelog_results_explain_get(
    results: *const ProbelogResults,
    i: usize,
    j: usize,
    out: *mut ProbelogProbeShare,
) -> ProbelogStatus {
    guard(|| {
        // SAFETY: the caller promises a live handle or NULL.
        let r = unsafe { results.as_ref() }.ok_or_else(|| Failure::null("results"))?;
        if i >= r.hits.len() {
            return Err(Failure::invalid(format!(
                "result {i} is out of range: there are {} results",
                r.hits.len()
            )));
        }
        let probes = r.explain.get(i).map_or(&[][..], Vec::as_slice);
        let share = probes.get(j).ok_or_else(|| {
            if r.explain.is_empty() {
                Failure::invalid(
                    "these results have no explanations: search with \
                     ProbelogSearchParams.explain > 0",
                )
            } else {
                Failure::invalid(format!(
                    "probe {j} of result {i} is out of range: its explanation has {} probes",
                    probes.len()
                ))
            }
        })?;
        // SAFETY: the caller promises `out` is NULL or writable.
        unsafe { write_out(out, share.view(), "out") }
    })
}

/// Frees results; NULL is ignored. The strings of hits read from them become invalid.
///
/// # Safety
/// `results` is NULL or a live results handle that is not used again.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn probelog_results_free(results: *mut ProbelogResults) {
    // SAFETY: forwarded from the caller.
    unsafe { free_handle(results) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::PROBELOG_ERR_INVALID_ARGUMENT;
    use crate::writer::existing_name_arg;

    #[test]
    fn unknown_codes_list_every_choice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.plog");
        probelog::create(&path, &probelog::CreateOptions::new(8)).unwrap();
        let index = Index::open(&path).unwrap();
        let with = |metric, mode| {
            let p = ProbelogSearchParams {
                metric,
                mode,
                ..probelog_search_params_default()
            };
            core_params(&index, &p, None).map(|_| ())
        };
        let cases = [
            (
                with(7, PROBELOG_MODE_AUTO),
                "unknown metric 7: use PROBELOG_METRIC_BLEND (3), PROBELOG_METRIC_TOPK (0), \
                 PROBELOG_METRIC_FULL (1) or PROBELOG_METRIC_MODEL (2)",
            ),
            (
                with(PROBELOG_METRIC_TOPK, 3),
                "unknown mode 3: use PROBELOG_MODE_AUTO (0), PROBELOG_MODE_EXACT (1) or \
                 PROBELOG_MODE_HNSW (2)",
            ),
            (
                existing_name_arg(9).map(|_| ()),
                "unknown model->existing_name 9: use PROBELOG_NAME_REFUSE (0), \
                 PROBELOG_NAME_REPLACE (1) or PROBELOG_NAME_KEEP (2)",
            ),
        ];
        for (result, want) in cases {
            let failure = result.expect_err(want);
            assert_eq!(failure.status, PROBELOG_ERR_INVALID_ARGUMENT, "{want}");
            assert_eq!(failure.message, want);
        }
        // Known codes map to their values.
        let p = ProbelogSearchParams {
            metric: PROBELOG_METRIC_TOPK,
            per_model: 1,
            mode: PROBELOG_MODE_HNSW,
            ..probelog_search_params_default()
        };
        let params = core_params(&index, &p, None).unwrap();
        assert_eq!(
            (params.metric, params.grouping, params.mode),
            (Metric::TopK, Grouping::PerModel, SearchMode::Hnsw)
        );
    }
}
