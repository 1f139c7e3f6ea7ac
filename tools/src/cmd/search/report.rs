//! What a search reports: the query, the resolved parameters, the hits (with their files and
//! explanations), as a table or as JSON.

use super::*;

/// A filter condition as the flag that made it.
pub(super) fn describe_condition(c: &Condition) -> String {
    match c {
        Condition::MetaEquals { key, value } => format!("{key}={value}"),
        Condition::MetaNotEquals { key, value } => format!("{key}!={value}"),
        Condition::NameGlob(glob) => format!("name ~ {glob}"),
    }
}

/// One probe of a hit's explanation.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeRow {
    pub probe: u32,
    /// The probe's name, or "probe N" when the index has no names.
    pub name: String,
    pub query: f32,
    pub hit: f32,
    /// The probe's share of the hit's score.
    pub share: f32,
}

/// What the query was, for the report.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum QueryDesc {
    Entry {
        entry: u64,
        model_id: u64,
        model: String,
        logit: u32,
        label: Option<String>,
    },
    Logits {
        file: String,
        probes: usize,
    },
    TextEmbedding {
        file: String,
        dim: usize,
    },
    /// `--text`: the text, the embedding's dimension, the tokens before padding, whether the
    /// encoder was given the attention mask, and its device.
    Text {
        text: String,
        dim: usize,
        tokens: usize,
        attention_mask: bool,
        device: String,
    },
}

impl QueryDesc {
    /// Entry `entry` of `index` as the query: its model and logit.
    pub fn of_entry(index: &Index, entry: u64) -> Result<Self> {
        let info = index.entry(entry).at(index.path())?;
        Ok(QueryDesc::Entry {
            entry,
            model_id: info.model_id,
            model: info.model,
            logit: info.logit,
            label: info.label,
        })
    }
}

/// A search and its results; serialized as the `--json` output.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub query: QueryDesc,
    /// blend, topk, full or model.
    pub metric: &'static str,
    /// The weight of the blend's all-probe term; null for the other metrics.
    pub blend_weight: Option<f32>,
    /// The mode that ran: exact or hnsw (auto resolved).
    pub mode: &'static str,
    /// Candidates per graph reranked in hnsw mode; null in exact mode.
    pub candidates: Option<usize>,
    /// The effective k of the blend and topk metrics; null for the others.
    pub k: Option<usize>,
    pub top: usize,
    pub per_model: bool,
    pub exclude_same_model: bool,
    /// The `--where` and `--model-name` conditions; null without a filter.
    pub filter: Option<Vec<String>>,
    /// With several indexes: each file searched and how (its own mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<FileReport>>,
    /// With several indexes and an `--entry` query: the file that holds the entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_file: Option<String>,
    pub results: Vec<ResultRow>,
}

/// One of several files searched together.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    pub path: String,
    pub entry_count: u64,
    /// The mode that ran on this file: exact or hnsw.
    pub mode: &'static str,
    /// Candidates per graph reranked in hnsw mode; null in exact mode.
    pub candidates: Option<usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ResultRow {
    pub rank: usize,
    /// With several indexes: the file of the hit (its entry and model ids are that file's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    pub entry: Option<u64>,
    pub model_id: u64,
    pub model: String,
    pub logit: Option<u32>,
    pub label: Option<String>,
    pub score: f32,
    /// With `--explain N`: the N probes with the largest shares of the score.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explain: Option<Vec<ProbeRow>>,
}

impl From<Hit> for ResultRow {
    fn from(h: Hit) -> Self {
        ResultRow {
            rank: h.rank,
            file: None,
            entry: h.entry,
            model_id: h.model_id,
            model: h.model,
            logit: h.logit,
            label: h.label,
            score: h.score,
            explain: None,
        }
    }
}

impl Report {
    /// The report of a search that ran with `params` and found `hits`.
    pub fn new(query: QueryDesc, params: &ResolvedSearch, hits: Vec<Hit>) -> Self {
        Report {
            query,
            metric: params.metric.map_or("model", Metric::name),
            blend_weight: params.blend_weight,
            mode: params.mode.name(),
            candidates: params.candidates,
            k: params.k,
            top: params.top,
            per_model: params.grouping == Grouping::PerModel,
            exclude_same_model: params.exclude_same_model,
            filter: None,
            files: None,
            query_file: None,
            results: hits.into_iter().map(ResultRow::from).collect(),
        }
    }

    /// The query, the parameters and a table of the results.
    /// Prints the report on stdout: as one JSON object when `json`, else as text.
    pub fn print(&self, json: bool) -> Result<()> {
        if json {
            print_json(self)
        } else {
            self.write_human(&mut io::stdout().lock())?;
            Ok(())
        }
    }

    pub fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        let query = match &self.query {
            QueryDesc::Entry {
                entry,
                model,
                logit,
                label,
                ..
            } => format!(
                "entry {entry} (model {model}, logit {logit}{})",
                label
                    .as_ref()
                    .map_or(String::new(), |l| format!(", label {l}"))
            ),
            QueryDesc::Logits { file, .. } => format!("logits from {file}"),
            QueryDesc::TextEmbedding { file, dim } => {
                format!("text embedding from {file} (dim {dim})")
            }
            QueryDesc::Text {
                text, dim, tokens, ..
            } => format!("text {text:?} ({tokens} tokens, dim {dim})"),
        };
        match &self.query_file {
            Some(file) => writeln!(out, "query: {query} of {file}")?,
            None => writeln!(out, "query: {query}")?,
        }
        if let Some(files) = &self.files {
            writeln!(out, "{} indexes searched as one", files.len())?;
        }
        let mut how = vec![match (self.k, self.blend_weight) {
            (Some(k), Some(w)) => format!("metric {} (k = {k}, weight {w})", self.metric),
            (Some(k), None) => format!("metric {} (k = {k})", self.metric),
            _ => format!("metric {}", self.metric),
        }];
        if let Some(c) = self.candidates {
            how.push(format!("hnsw candidates {c} per graph, reranked exactly"));
        }
        if self.per_model {
            how.push("best logit per model".into());
        }
        if self.exclude_same_model {
            how.push("query's model excluded".into());
        }
        if let Some(filter) = &self.filter {
            how.push(format!("only models with {}", filter.join(", ")));
        }
        writeln!(out, "{}", how.join(", "))?;
        if self.results.is_empty() {
            return writeln!(out, "no results");
        }
        let many = self.files.is_some();
        let mut columns = vec![("rank", Align::Right)];
        if many {
            columns.push(("file", Align::Left));
        }
        columns.extend([
            ("entry", Align::Right),
            ("model", Align::Left),
            ("logit", Align::Right),
            ("label", Align::Left),
            ("score", Align::Right),
        ]);
        let mut table = Table::new(&columns);
        let or_dash = |x: Option<String>| x.unwrap_or_else(|| "-".into());
        for r in &self.results {
            let mut row = vec![r.rank.to_string()];
            if many {
                row.push(or_dash(r.file.clone()));
            }
            row.extend([
                or_dash(r.entry.map(|e| e.to_string())),
                r.model.clone(),
                or_dash(r.logit.map(|l| l.to_string())),
                or_dash(r.label.clone()),
                format!("{:.4}", r.score),
            ]);
            table.row(row);
        }
        table.write(out)?;
        for r in &self.results {
            let Some(probes) = &r.explain else { continue };
            writeln!(
                out,
                "rank {} ({}): the probes that decided its score",
                r.rank, r.model
            )?;
            let mut why = Table::new(&[
                ("probe", Align::Left),
                ("query", Align::Right),
                ("hit", Align::Right),
                ("share", Align::Right),
            ]);
            for p in probes {
                why.row(vec![
                    p.name.clone(),
                    format!("{:.3}", p.query),
                    format!("{:.3}", p.hit),
                    format!("{:.4}", p.share),
                ]);
            }
            why.write(out)?;
        }
        Ok(())
    }
}
