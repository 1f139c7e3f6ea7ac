//! `search A.plog B.plog ...`: several index files of one probe set searched as one.

use super::*;

/// The position in `indexes` of the file `file` names (by device and inode, so any spelling of
/// the path or a link to it will do).
pub(super) fn entry_file_position(file: &Path, indexes: &[PathBuf]) -> Result<usize> {
    use std::os::unix::fs::MetadataExt;
    let id = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    let wanted = id(file);
    indexes
        .iter()
        .position(|p| wanted.is_some() && id(p) == wanted)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "--entry-file {} is not one of the indexes searched",
                file.display()
            )
        })
}

/// `search A.plog B.plog ...`: the files searched as one.
pub(super) fn run_many(
    args: &Args,
    filter: &ModelFilter,
    metric: Metric,
    grouping: Grouping,
) -> Result<()> {
    ensure!(
        args.explain.is_none(),
        "--explain takes one index: search the file of a hit alone to explain it"
    );
    let indexes = args
        .indexes
        .iter()
        .map(|p| open_index(p))
        .collect::<Result<Vec<_>>>()?;
    let entries: u64 = indexes.iter().map(|ix| ix.entry_count()).sum();
    let params = search_params(args, entries, metric, grouping, filter);
    let q = &args.query;
    let text_values;
    let vector;
    let (query, desc, query_file) = match (q.entry, &q.query_logits, &q.text_embedding, &q.text) {
        (Some(entry), _, _, _) => {
            let file = match &args.entry_file {
                Some(f) => entry_file_position(f, &args.indexes)?,
                None => 0,
            };
            let desc = QueryDesc::of_entry(&indexes[file], entry)?;
            (MultiQuery::Entry { file, entry }, desc, Some(file))
        }
        (_, Some(file), _, _) => {
            vector = npy::read_vector(file, "the query logits")?;
            let desc = QueryDesc::Logits {
                file: file.display().to_string(),
                probes: vector.len(),
            };
            (MultiQuery::Vector(&vector), desc, None)
        }
        (_, _, Some(file), _) => {
            vector = npy::read_vector(file, "the text embedding")?;
            let desc = QueryDesc::TextEmbedding {
                file: file.display().to_string(),
                dim: vector.len(),
            };
            (MultiQuery::TextEmbedding(&vector), desc, None)
        }
        (_, _, _, Some(text)) => {
            let (values, desc) = embed_text_query(&indexes[0], text, &args.text)?;
            text_values = values;
            (MultiQuery::TextEmbedding(&text_values), desc, None)
        }
        _ => anyhow::bail!("give one query: --entry, --query-logits, --text-embedding or --text"),
    };
    let refs: Vec<&Index> = indexes.iter().collect();
    let found = probelog::search_many(&refs, &query, &params).plain()?;
    let names: Vec<String> = args
        .indexes
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let first = found.params[query_file.unwrap_or(0)];
    let mut report = Report::new(desc, &first, Vec::new());
    if found.params.iter().any(|p| p.mode != first.mode) {
        report.mode = "mixed";
    }
    report.filter = params
        .filter
        .map(|f| f.conditions.iter().map(describe_condition).collect());
    report.query_file = query_file.map(|f| names[f].clone());
    report.files = Some(
        found
            .params
            .iter()
            .zip(&names)
            .zip(&indexes)
            .map(|((p, name), ix)| FileReport {
                path: name.clone(),
                entry_count: ix.entry_count(),
                mode: p.mode.name(),
                candidates: p.candidates,
            })
            .collect(),
    );
    report.results = found
        .hits
        .into_iter()
        .map(|h| ResultRow {
            file: Some(names[h.file].clone()),
            ..ResultRow::from(h.hit)
        })
        .collect();
    report.print(args.json)
}
