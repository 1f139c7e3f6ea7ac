//! Searches over several index files: `search_many` (the core's, in one process), and the
//! pieces that `probelog.distributed.ShardedIndex` runs in its Ray actors.
//!
//! `_search_prepared(index, descriptor, ...)` ranks one file's entries against a z-normalized
//! query descriptor that another file prepared (an entry query's stored descriptor, read with
//! `Index.descriptors(entry)`), with the parameters of `Index.search`. Searching every shard
//! with the same descriptor and merging the results by (score, global id) gives the ranking of
//! the file that `probelog-tool merge` makes of the shards: the scores are the same scan over the
//! same stored values, and ties go to the lower id in both.

use numpy::{AllowTypeChange, PyArrayLike1};
use probelog::search::{MultiQuery, SearchResults};
use probelog::{Query, SearchParams};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyBool;

use crate::{
    Hit, Index, OrPy, ProbeShare, QueryArg, explained_hits, model_filter, parse_metric, parse_mode,
    parse_query, search_params,
};

/// Registers this module's functions in `probelog._probelog`.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(_search_prepared, m)?)?;
    m.add_function(wrap_pyfunction!(_make_hit, m)?)?;
    m.add_function(wrap_pyfunction!(search_many, m)?)?;
    Ok(())
}

/// Ranks `index`'s entries (or models, metric="model") against `descriptor`, a z-normalized
/// query descriptor over its probes, used as it is. `exclude_model` is a model id of this file
/// whose entries are left out. The other keywords are `Index.search`'s; `explain=N` splits each
/// hit's score over the probes.
#[pyfunction]
#[pyo3(signature = (index, descriptor, *, top=10, k=None, metric=None, per_model=false,
                    exclude_model=None, mode=None, blend_weight=None, candidates=None,
                    filter=None, model_name=None, explain=None))]
#[allow(clippy::too_many_arguments)]
fn _search_prepared(
    py: Python<'_>,
    index: &Index,
    descriptor: PyArrayLike1<'_, f32, AllowTypeChange>,
    top: usize,
    k: Option<usize>,
    metric: Option<&str>,
    per_model: bool,
    exclude_model: Option<u64>,
    mode: Option<&str>,
    blend_weight: Option<f32>,
    candidates: Option<usize>,
    filter: Option<&Bound<'_, PyAny>>,
    model_name: Option<&str>,
    explain: Option<usize>,
) -> PyResult<Vec<Hit>> {
    let params = search_params!(top, k, metric, per_model, mode, blend_weight, candidates);
    let filter = model_filter(filter, model_name)?;
    let q: Vec<f32> = descriptor.as_array().iter().copied().collect();
    let index = index.get();
    let names_of = index.clone();
    if let Some(m) = exclude_model {
        index.model(m).py()?;
    }
    type Found = (
        SearchResults,
        Option<Vec<Vec<probelog::search::ProbeContribution>>>,
    );
    let (found, why) = py
        .detach(move || -> probelog::Result<Found> {
            let params = SearchParams {
                filter: filter.as_ref(),
                ..params
            };
            let found = index.search_descriptor_hits(&q, exclude_model, &params)?;
            // The shares against the descriptor as a query vector: z-normalizing a stored
            // descriptor again changes its values by float rounding only.
            let why = match explain {
                Some(n) => Some(index.explain(&Query::Vector(&q), &found, n)?),
                None => None,
            };
            Ok((found, why))
        })
        .py()?;
    let names = match why {
        Some(_) => names_of.probe_names().py()?,
        None => None,
    };
    Ok(explained_hits(found.hits, why, names))
}

/// One probe's share of a hit's score as a tuple: `(probe, name, query, hit, share)`.
type ShareTuple = (u32, Option<String>, f32, f32, f32);

/// A `Hit` from its fields, for results assembled in Python from several files (hits travel
/// between processes as tuples). `explain` is a list of `(probe, name, query, hit, share)`.
#[pyfunction]
#[pyo3(signature = (rank, entry, model, model_id, logit, label, score, explain=None))]
#[allow(clippy::too_many_arguments)]
fn _make_hit(
    rank: usize,
    entry: Option<u64>,
    model: String,
    model_id: u64,
    logit: Option<u32>,
    label: Option<String>,
    score: f32,
    explain: Option<Vec<ShareTuple>>,
) -> Hit {
    Hit {
        rank,
        entry,
        model,
        model_id,
        logit,
        label,
        score,
        explain: explain.map(|shares| {
            shares
                .into_iter()
                .map(|(probe, name, query, hit, share)| ProbeShare {
                    probe,
                    name,
                    query,
                    hit,
                    share,
                })
                .collect()
        }),
    }
}

/// Searches several index files of one probe set as one (the core's `search_many`): the search
/// of the file that `merge` makes of them, in that order. Returns `(file, hit)` pairs, best
/// first: `file` is the position of the hit's index in `indexes`, and the hit's entry and model
/// ids are that file's own; ranks run over all files. An int `query` is an entry of
/// `indexes[entry_file]`, read there and used as a descriptor on the others; `exclude_model=True`
/// leaves out its model. The other keywords are `Index.search`'s.
#[pyfunction]
#[pyo3(signature = (indexes, query=None, *, entry_file=0, top=10, k=None, metric=None,
                    per_model=false, exclude_model=None, mode=None, blend_weight=None,
                    candidates=None, text_embedding=None, filter=None, model_name=None))]
#[allow(clippy::too_many_arguments)]
fn search_many(
    py: Python<'_>,
    indexes: Vec<PyRef<'_, Index>>,
    query: Option<&Bound<'_, PyAny>>,
    entry_file: usize,
    top: usize,
    k: Option<usize>,
    metric: Option<&str>,
    per_model: bool,
    exclude_model: Option<&Bound<'_, PyAny>>,
    mode: Option<&str>,
    blend_weight: Option<f32>,
    candidates: Option<usize>,
    text_embedding: Option<PyArrayLike1<'_, f32, AllowTypeChange>>,
    filter: Option<&Bound<'_, PyAny>>,
    model_name: Option<&str>,
) -> PyResult<Vec<(usize, Hit)>> {
    let params = search_params!(top, k, metric, per_model, mode, blend_weight, candidates);
    let filter = model_filter(filter, model_name)?;
    let exclude_same_model = match exclude_model.filter(|x| !x.is_none()) {
        None => false,
        Some(x) if x.is_instance_of::<PyBool>() => x.extract::<bool>()?,
        Some(_) => {
            return Err(PyTypeError::new_err(
                "search_many takes exclude_model=True (the query entry's model) only; filter= \
                 or model_name= leave out other models",
            ));
        }
    };
    let q = parse_query(
        query,
        text_embedding,
        "search_many needs a query: an entry id (of indexes[entry_file]), a logit vector, or \
         text_embedding=",
    )?;
    let held: Vec<_> = indexes.iter().map(|i| i.get()).collect();
    let found = py
        .detach(move || {
            let files: Vec<&probelog::Index> = held.iter().map(|a| a.as_ref()).collect();
            let query = match &q {
                QueryArg::Entry(entry) => MultiQuery::Entry {
                    file: entry_file,
                    entry: *entry,
                },
                QueryArg::Vector(v) => MultiQuery::Vector(v),
                QueryArg::Text(t) => MultiQuery::TextEmbedding(t),
            };
            let params = SearchParams {
                exclude_same_model,
                filter: filter.as_ref(),
                ..params
            };
            probelog::search_many(&files, &query, &params)
        })
        .py()?;
    Ok(found
        .hits
        .into_iter()
        .map(|h| (h.file, Hit::from(h.hit)))
        .collect())
}
