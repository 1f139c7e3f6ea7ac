//! Search over several index files of one probe set as if they were one: each file is searched
//! through its own resolved parameters (exact or hnsw, as `auto` decides for that file), and the
//! files' best hits are merged into one exact top N, each hit carrying the file it came from.
//!
//! The result is the search of the files' merge (`crate::merge` of the same files in the same
//! order): the same models, labels, scores and order. Ties in score are broken by file, then by
//! entry (or model) id, as the merged file's ids order them. A query given as an entry of one
//! file is read from that file and used as a descriptor on the others; `exclude_same_model`
//! leaves out that entry's model in its own file only, and per-model grouping keeps one hit per
//! (file, model).

use std::cmp::Ordering;

use crate::error::{Error, Result};
use crate::reader::Index;

use super::{Hit, Query, ResolvedSearch, SearchError, SearchParams, SearchResults};

/// What to search several files for.
#[derive(Debug, Clone, Copy)]
pub enum MultiQuery<'a> {
    /// Entry `entry` of file number `file` (a position in the files searched).
    Entry { file: usize, entry: u64 },
    /// One logit's raw responses over the probes (z-normalized here), for every file.
    Vector(&'a [f32]),
    /// A text embedding, compared with each file's stored probe image embeddings.
    TextEmbedding(&'a [f32]),
}

/// One hit of a search over several files.
#[derive(Debug, Clone, PartialEq)]
pub struct FileHit {
    /// The position of the hit's file in the files searched.
    pub file: usize,
    /// The hit, as its own file numbers it (entry and model ids are that file's); `rank` is the
    /// rank among the hits of all files.
    pub hit: Hit,
}

/// What [`search_many`] found, best first, and the parameters each file's search ran with.
#[derive(Debug, Clone, PartialEq)]
pub struct MultiResults {
    /// Per file, in the order given.
    pub params: Vec<ResolvedSearch>,
    pub hits: Vec<FileHit>,
}

/// Searches the index files `indexes` as one (see the module documentation). All must share
/// the probe set (count and fingerprint): a file that does not is refused by its path
/// ([`Error::InputFile`]), as is a file that fails its own search.
pub fn search_many(
    indexes: &[&Index],
    query: &MultiQuery<'_>,
    params: &SearchParams,
) -> Result<MultiResults> {
    let Some(first) = indexes.first() else {
        return Err(Error::InvalidInput(
            "a search over several files needs at least one index".into(),
        ));
    };
    for ix in &indexes[1..] {
        if ix.probe_set() != first.probe_set() {
            return Err(Error::InputFile {
                path: ix.path().to_path_buf(),
                source: Box::new(Error::InvalidInput(format!(
                    "its probe set ({}) is not that of {} ({}): only files of one probe set are \
                     searched together",
                    ix.probe_set(),
                    first.path().display(),
                    first.probe_set()
                ))),
            });
        }
    }
    if params.exclude_same_model && !matches!(query, MultiQuery::Entry { .. }) {
        return Err(SearchError::ExcludeNeedsEntry.into());
    }
    // An entry query's descriptor, read once from its own file, for the other files.
    let entry_descriptor = match *query {
        MultiQuery::Entry { file, entry } => {
            let Some(ix) = indexes.get(file) else {
                return Err(Error::InvalidParameter(format!(
                    "no file {file} to take the query entry from: {} files are searched",
                    indexes.len()
                )));
            };
            let q = ix
                .prepare_query(&Query::Entry(entry))
                .map_err(|e| file_error(ix, e))?;
            Some((file, entry, q.descriptor))
        }
        _ => None,
    };
    let mut all_params = Vec::with_capacity(indexes.len());
    let mut hits: Vec<FileHit> = Vec::new();
    for (i, ix) in indexes.iter().enumerate() {
        let found = match (&entry_descriptor, *query) {
            (Some((file, entry, _)), _) if *file == i => ix.search(&Query::Entry(*entry), params),
            (Some((_, _, descriptor)), _) => search_descriptor(ix, descriptor, params),
            (None, MultiQuery::Vector(v)) => ix.search(&Query::Vector(v), params),
            (None, MultiQuery::TextEmbedding(t)) => ix.search(&Query::TextEmbedding(t), params),
            (None, MultiQuery::Entry { .. }) => unreachable!("an entry query has a descriptor"),
        }
        .map_err(|e| file_error(ix, e))?;
        all_params.push(found.params);
        hits.extend(found.hits.into_iter().map(|hit| FileHit { file: i, hit }));
    }
    hits.sort_by(order);
    hits.truncate(params.top);
    for (i, h) in hits.iter_mut().enumerate() {
        h.hit.rank = i + 1;
    }
    Ok(MultiResults {
        params: all_params,
        hits,
    })
}

/// Better first: lower score, then the earlier file, then the lower id (an entry, or a model for
/// the model-mean grouping), as the ids of the files' merge order them.
fn order(a: &FileHit, b: &FileHit) -> Ordering {
    let id = |h: &FileHit| h.hit.entry.unwrap_or(h.hit.model_id);
    a.hit
        .score
        .total_cmp(&b.hit.score)
        .then(a.file.cmp(&b.file))
        .then(id(a).cmp(&id(b)))
}

/// A search of `ix` by a z-normalized descriptor taken from another file, used as it is (a
/// vector query would z-normalize it again, which may change its last bits).
fn search_descriptor(ix: &Index, q: &[f32], params: &SearchParams) -> Result<SearchResults> {
    let resolved = ix.resolve_params(params)?;
    let allowed = ix.allowed(params.filter, None)?;
    let scored = ix.search_masked(q, &allowed, &resolved)?;
    ix.results(scored, resolved)
}

/// An error of file `ix`'s part of the search, with its path; errors in the search parameters,
/// which are the same for every file, are left as they are.
fn file_error(ix: &Index, e: Error) -> Error {
    match e {
        Error::Search(s)
            if !matches!(
                s,
                SearchError::NoProbeEmbeddings | SearchError::ConstantEntry { .. }
            ) =>
        {
            Error::Search(s)
        }
        e @ (Error::Io { .. } | Error::InputFile { .. }) => e,
        e => Error::InputFile {
            path: ix.path().to_path_buf(),
            source: Box::new(e),
        },
    }
}
