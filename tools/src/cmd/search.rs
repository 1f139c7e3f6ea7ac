//! `search`: rank the entries (or models) of an index against an entry, a raw logit vector, a
//! text embedding, or a text run through a CLIP text encoder.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Result, ensure};
use clap::ValueEnum;
use probelog::search::{MAX_BLEND_WEIGHT, check_blend_weight};
use probelog::{
    DEFAULT_BLEND_WEIGHT, DEFAULT_CANDIDATES, DEFAULT_K, Hit, Index, Metric, Query, SearchMode,
    SearchParams,
};
use serde::Serialize;

use super::{LibResult, open_index};
use crate::input;
use crate::npy;
use crate::output::{Align, Table, excerpt, print_json};
use crate::torch::device::DeviceArg;
use crate::torch::{DEFAULT_CONTEXT_LENGTH, MaskArg, TextSpec, embed_text};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The index to search.
    pub index: PathBuf,
    #[command(flatten)]
    pub query: QueryArgs,
    #[command(flatten)]
    pub text: TextArgs,
    /// Number of results.
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub top: u32,
    #[arg(
        long,
        value_name = "K",
        value_parser = clap::value_parser!(u32).range(1..),
        help = format!("Number of the query's highest probes compared by the blend and topk metrics [default: {DEFAULT_K}, at most P]")
    )]
    pub k: Option<u32>,
    /// Leave out the query entry's own model.
    #[arg(long, conflicts_with_all = ["query_logits", "text_embedding", "text"])]
    pub exclude_same_model: bool,
    /// Report only the best logit of each model.
    #[arg(long)]
    pub per_model: bool,
    /// blend (the default): the top-k discrepancy plus W times the root mean square of q - d over
    /// all probes (W from --blend-weight), which ranked best on real model hubs; topk: ProbeLog's top-k
    /// discrepancy as in the paper; full: Euclidean distance over all probes; model: distance to
    /// each model's mean descriptor (one result per model).
    #[arg(long, value_enum, default_value_t = MetricArg::Blend)]
    pub metric: MetricArg,
    #[arg(
        long,
        value_name = "W",
        value_parser = parse_blend_weight,
        help = format!("Weight of the all-probe term of --metric blend, from 0 (ranks as topk) to {MAX_BLEND_WEIGHT:e} (beyond it scores overflow) [default: {DEFAULT_BLEND_WEIGHT}]")
    )]
    pub blend_weight: Option<f32>,
    /// exact: score every entry; hnsw: the ANN graphs propose candidates that the exact topk
    /// discrepancy reranks (segments without a graph are scanned; needs --metric topk); auto:
    /// hnsw for --metric topk once graphs cover enough entries, else exact (the blend, the
    /// default metric, always runs exactly).
    #[arg(long, value_enum, default_value_t = ModeArg::Auto)]
    pub mode: ModeArg,
    #[arg(
        long,
        value_name = "C",
        value_parser = clap::value_parser!(u32).range(1..),
        help = format!("Candidates per graph that hnsw mode reranks [default: {DEFAULT_CANDIDATES}]")
    )]
    pub candidates: Option<u32>,
    /// Print the results as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Exactly one query.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub struct QueryArgs {
    /// An entry of the index (an id from earlier results or from `export`).
    #[arg(long, value_name = "ID")]
    pub entry: Option<u64>,
    /// float32/float64 .npy vector of shape [P]: one logit's raw responses over the probes.
    #[arg(long, value_name = "FILE.npy")]
    pub query_logits: Option<PathBuf>,
    /// float32/float64 .npy vector of shape [d]: a text embedding, compared with the probe image
    /// embeddings the index was created with.
    #[arg(long, value_name = "FILE.npy")]
    pub text_embedding: Option<PathBuf>,
    /// A text, embedded with --clip-text and --tokenizer (needs libtorch: the `torch` feature)
    /// and compared with the probe image embeddings (`probes embed`).
    #[arg(long, value_name = "TEXT", requires_all = ["clip_text", "tokenizer"])]
    pub text: Option<String>,
}

/// How `--text` is embedded.
#[derive(Debug, clap::Args)]
pub struct TextArgs {
    /// TorchScript text encoder: int64 token ids [N, T] (and the int64 attention mask [N, T]
    /// when it takes two inputs) -> [N, d] embeddings.
    #[arg(long, value_name = "FILE.pt", requires = "text")]
    pub clip_text: Option<PathBuf>,
    /// Hugging Face tokenizer.json of the text encoder.
    #[arg(long, value_name = "FILE.json", requires = "text")]
    pub tokenizer: Option<PathBuf>,
    /// T: the token ids are padded or truncated to it.
    #[arg(long, value_name = "T", default_value_t = DEFAULT_CONTEXT_LENGTH as u32,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub context_length: u32,
    /// Give the encoder the attention mask as a second input: auto (only when it says that an
    /// argument is missing), always or never.
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = MaskArg::Auto)]
    pub attention_mask: MaskArg,
    /// Device of the text encoder: auto, cpu, cuda or cuda:INDEX.
    #[arg(long, value_name = "DEVICE", default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    Exact,
    Hnsw,
    Auto,
}

impl From<ModeArg> for SearchMode {
    fn from(m: ModeArg) -> SearchMode {
        match m {
            ModeArg::Exact => SearchMode::Exact,
            ModeArg::Hnsw => SearchMode::Hnsw,
            ModeArg::Auto => SearchMode::Auto,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MetricArg {
    Blend,
    Topk,
    Full,
    Model,
}

impl From<MetricArg> for Metric {
    fn from(m: MetricArg) -> Metric {
        match m {
            MetricArg::Blend => Metric::Blend,
            MetricArg::Topk => Metric::TopK,
            MetricArg::Full => Metric::Full,
            MetricArg::Model => Metric::Model,
        }
    }
}

/// `--blend-weight`: a number from 0 to [`MAX_BLEND_WEIGHT`] (the library's check).
fn parse_blend_weight(s: &str) -> std::result::Result<f32, String> {
    let w: f32 = s
        .trim()
        .parse()
        .map_err(|_| format!("{} is not a number", excerpt(&format!("{s:?}"))))?;
    check_blend_weight(w).map_err(|e| e.to_string())
}

pub fn run(args: Args) -> Result<()> {
    let metric = Metric::from(args.metric);
    ensure!(
        args.k.is_none() || matches!(metric, Metric::TopK | Metric::Blend),
        "--k only applies to --metric blend and --metric topk"
    );
    ensure!(
        args.blend_weight.is_none() || metric == Metric::Blend,
        "--blend-weight only applies to --metric blend (the default), not --metric {}",
        metric.name()
    );
    let index = open_index(&args.index)?;
    let params = SearchParams {
        // There are never more results than entries; a larger --top must not cost memory.
        top: (args.top as usize).min(index.entry_count().max(1) as usize),
        k: args.k.map(|k| k as usize),
        exclude_same_model: args.exclude_same_model,
        per_model: args.per_model,
        metric,
        mode: args.mode.into(),
        candidates: args.candidates.map(|c| c as usize),
        blend_weight: args.blend_weight,
    };
    let q = &args.query;
    if let Some(text) = &q.text {
        let report = search_text(&index, text, &args.text, &params)?;
        return if args.json {
            print_json(&report)
        } else {
            report.write_human(&mut io::stdout().lock())?;
            Ok(())
        };
    }
    let report = match (q.entry, &q.query_logits, &q.text_embedding) {
        (Some(entry), _, _) => search_entry(&index, entry, &params)?,
        (_, Some(file), _) => {
            let v = npy::read_vector(file, "the query logits")?;
            let desc = QueryDesc::Logits {
                file: file.display().to_string(),
                probes: v.len(),
            };
            search(&index, &Query::Vector(&v), desc, &params)?
        }
        (_, _, Some(file)) => {
            let v = npy::read_vector(file, "the text embedding")?;
            let desc = QueryDesc::TextEmbedding {
                file: file.display().to_string(),
                dim: v.len(),
            };
            search(&index, &Query::TextEmbedding(&v), desc, &params)?
        }
        _ => anyhow::bail!("give one query: --entry, --query-logits, --text-embedding or --text"),
    };
    if args.json {
        print_json(&report)
    } else {
        report.write_human(&mut io::stdout().lock())?;
        Ok(())
    }
}

/// Searches with a text, embedded by the text encoder of `args`.
pub fn search_text(
    index: &Index,
    text: &str,
    args: &TextArgs,
    params: &SearchParams,
) -> Result<Report> {
    let path = index.path();
    // Checked before anything is loaded: the cheapest failures first.
    let Some((_, dim)) = index.probe_embeddings().at(path)? else {
        anyhow::bail!(
            "{}: this index has no probe embeddings: add them with `probes embed {} --clip-image \
             IMAGE_ENCODER.pt --probes PROBES.pset` before searching by text",
            path.display(),
            path.display()
        );
    };
    let (Some(encoder), Some(tokenizer)) = (&args.clip_text, &args.tokenizer) else {
        anyhow::bail!("--text needs --clip-text FILE.pt and --tokenizer FILE.json");
    };
    input::require_regular(encoder, "--clip-text")?;
    input::require_regular(tokenizer, "--tokenizer")?;
    let spec = TextSpec {
        encoder,
        tokenizer,
        context_length: args.context_length as usize,
        mask: args.attention_mask,
        device: args.device,
    };
    let emb = embed_text(text, &spec)?;
    ensure!(
        emb.values.len() == dim,
        "--clip-text {}: the text encoder returned {} dimensions, but the probe embeddings of {} \
         have {dim}; the text and image encoders must be the two towers of one model",
        encoder.display(),
        emb.values.len(),
        path.display()
    );
    let desc = QueryDesc::Text {
        text: text.to_string(),
        dim,
        tokens: emb.tokens,
        attention_mask: emb.with_mask,
        device: emb.device.clone(),
    };
    search(index, &Query::TextEmbedding(&emb.values), desc, params)
}

/// Searches with an entry of the index as the query.
pub fn search_entry(index: &Index, entry: u64, params: &SearchParams) -> Result<Report> {
    let info = index.entry(entry).at(index.path())?;
    let desc = QueryDesc::Entry {
        entry,
        model_id: info.model_id,
        model: info.model,
        logit: info.logit,
        label: info.label,
    };
    search(index, &Query::Entry(entry), desc, params)
}

fn search(
    index: &Index,
    query: &Query<'_>,
    desc: QueryDesc,
    params: &SearchParams,
) -> Result<Report> {
    let path: &Path = index.path();
    let hits = index.search(query, params).at(path)?;
    let k = match params.metric {
        Metric::TopK | Metric::Blend => Some(index.effective_k(params.k).at(path)?),
        Metric::Full | Metric::Model => None,
    };
    let blend_weight = match params.metric {
        Metric::Blend => Some(params.effective_blend_weight().at(path)?),
        _ => None,
    };
    let mode = index.effective_mode(params).at(path)?;
    Ok(Report {
        query: desc,
        metric: params.metric.name(),
        blend_weight,
        mode: mode.name(),
        candidates: (mode == SearchMode::Hnsw)
            .then(|| params.candidates.unwrap_or(DEFAULT_CANDIDATES)),
        k,
        top: params.top,
        per_model: params.per_model,
        exclude_same_model: params.exclude_same_model,
        results: hits.into_iter().map(ResultRow::from).collect(),
    })
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
    pub results: Vec<ResultRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ResultRow {
    pub rank: usize,
    pub entry: Option<u64>,
    pub model_id: u64,
    pub model: String,
    pub logit: Option<u32>,
    pub label: Option<String>,
    pub score: f32,
}

impl From<Hit> for ResultRow {
    fn from(h: Hit) -> Self {
        ResultRow {
            rank: h.rank,
            entry: h.entry,
            model_id: h.model_id,
            model: h.model,
            logit: h.logit,
            label: h.label,
            score: h.score,
        }
    }
}

impl Report {
    /// The query, the parameters and a table of the results.
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
        writeln!(out, "query: {query}")?;
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
        writeln!(out, "{}", how.join(", "))?;
        if self.results.is_empty() {
            return writeln!(out, "no results");
        }
        let mut table = Table::new(&[
            ("rank", Align::Right),
            ("entry", Align::Right),
            ("model", Align::Left),
            ("logit", Align::Right),
            ("label", Align::Left),
            ("score", Align::Right),
        ]);
        let or_dash = |x: Option<String>| x.unwrap_or_else(|| "-".into());
        for r in &self.results {
            table.row(vec![
                r.rank.to_string(),
                or_dash(r.entry.map(|e| e.to_string())),
                r.model.clone(),
                or_dash(r.logit.map(|l| l.to_string())),
                or_dash(r.label.clone()),
                format!("{:.4}", r.score),
            ]);
        }
        table.write(out)
    }
}
