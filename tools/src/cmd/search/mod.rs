//! `search`: rank the entries (or models) of an index against an entry, a raw logit vector, a
//! text embedding, or a text run through a CLIP text encoder. Several index files of one probe
//! set are searched as one (`probelog::search_many`), each hit naming its file.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Result, ensure};
use clap::ValueEnum;
use probelog::search::{MAX_BLEND_WEIGHT, ParamName, check_blend_weight};
use probelog::{
    Condition, DEFAULT_BLEND_WEIGHT, DEFAULT_CANDIDATES, DEFAULT_K, Grouping, Hit, Index, Metric,
    ModelFilter, MultiQuery, Query, ResolvedSearch, SearchError, SearchMode, SearchParams,
};
use serde::Serialize;

use self::many::{entry_file_position, run_many};
use self::report::{FileReport, ProbeRow, QueryDesc, Report, ResultRow, describe_condition};
use super::{LibResult, open_index};

mod many;
mod report;
use crate::npy;
use crate::output::{Align, Table, excerpt, print_json};
use crate::torch::device::DeviceArg;
use crate::torch::{DEFAULT_CONTEXT_LENGTH, MaskArg, TextSpec, embed_text};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The index to search. Several index files of one probe set are searched as one: the hits
    /// of all of them ranked together, each naming its file.
    #[arg(value_name = "INDEX", required = true, num_args = 1..)]
    pub indexes: Vec<PathBuf>,
    /// With several indexes: the one that holds the --entry query (default: the first). The
    /// entry's descriptor is the query in the other files.
    #[arg(long, value_name = "INDEX", requires = "entry")]
    pub entry_file: Option<PathBuf>,
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
    /// Search only models whose metadata has KEY=VALUE, or with KEY!=VALUE only models without
    /// that value (or without KEY). Repeatable: all must hold. Applied inside the scan and the
    /// graph walk, so --top N returns N hits whenever N models' logits match.
    #[arg(long = "where", value_name = "KEY=VALUE")]
    pub conditions: Vec<String>,
    /// Search only models whose name matches this pattern (`*` any characters, `?` one).
    #[arg(long, value_name = "GLOB")]
    pub model_name: Option<String>,
    /// Show, for each hit, the N probes that contributed most to its score: the probe's name,
    /// the query's and the hit's values, and the probe's share of the score.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub explain: Option<u32>,
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

impl MetricArg {
    /// The library's metric and grouping for `--metric` and `--per-model`: `--metric model` is
    /// the model-mean grouping (whole models), which takes no metric.
    pub fn resolve(self, per_model: bool) -> Result<(Metric, Grouping)> {
        let grouping = if per_model {
            Grouping::PerModel
        } else {
            Grouping::Entries
        };
        Ok(match self {
            MetricArg::Blend => (Metric::Blend, grouping),
            MetricArg::Topk => (Metric::TopK, grouping),
            MetricArg::Full => (Metric::Full, grouping),
            MetricArg::Model => {
                ensure!(
                    !per_model,
                    "--per-model does not apply to --metric model, which ranks whole models"
                );
                (Metric::default(), Grouping::ModelMean)
            }
        })
    }
}

/// The flag of this command line that sets a [`SearchParams`] field.
fn flag(param: ParamName) -> String {
    format!("--{}", param.replace('_', "-"))
}

/// The library's search errors in this command line's words: its flags and metric names.
pub fn render_error(e: &SearchError) -> String {
    match *e {
        SearchError::NoResults => "--top must be at least 1".into(),
        SearchError::KOutOfRange { k, probes } => {
            format!("--k {k} is out of range: it must be between 1 and the probe count {probes}")
        }
        SearchError::BlendWeightOutOfRange { weight } => format!(
            "--blend-weight {weight:e} is invalid: it must be a number from 0 (ranks as topk) to \
             {MAX_BLEND_WEIGHT:e} (larger weights make the scores overflow)"
        ),
        SearchError::NoCandidates => "--candidates must be at least 1".into(),
        SearchError::NotApplicable { param, used_by } => {
            let applies = match param {
                "k" => "--metric blend and --metric topk",
                "blend_weight" => "--metric blend",
                _ => "other searches",
            };
            format!(
                "{} only applies to {applies}, not to {used_by}",
                flag(param)
            )
        }
        SearchError::HnswUnsupported { what } => format!(
            "hnsw mode ranks by the blend or topk metric only, not {}: search with --metric blend \
             or topk to use the graphs, or with --mode exact or auto",
            what.trim_start_matches("the ")
        ),
        SearchError::ExcludeNeedsEntry => "--exclude-same-model needs an --entry query".into(),
        SearchError::ConstantEntry { .. } => e.to_string(),
        SearchError::NoProbeEmbeddings => "this index has no probe embeddings: add them with \
             `probes embed INDEX --clip-image IMAGE_ENCODER.pt --probes PROBES.pset` (or create \
             it with --probe-embeddings) before searching by text"
            .into(),
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
    let (metric, grouping) = args.metric.resolve(args.per_model)?;
    let mut filter = ModelFilter::default();
    for expr in &args.conditions {
        filter.add_where(expr).plain()?;
    }
    if let Some(glob) = &args.model_name {
        filter.add_name_glob(glob);
    }
    if args.indexes.len() > 1 {
        return run_many(&args, &filter, metric, grouping);
    }
    let path = &args.indexes[0];
    if let Some(file) = &args.entry_file {
        entry_file_position(file, &args.indexes)?;
    }
    let index = open_index(path)?;
    let params = search_params(&args, index.entry_count(), metric, grouping, &filter);
    let explain = args.explain.map(|n| n as usize);
    let q = &args.query;
    if let Some(text) = &q.text {
        let report = search_text(&index, text, &args.text, &params, explain)?;
        return report.print(args.json);
    }
    let report = match (q.entry, &q.query_logits, &q.text_embedding) {
        (Some(entry), _, _) => search_entry(&index, entry, &params, explain)?,
        (_, Some(file), _) => {
            let v = npy::read_vector(file, "the query logits")?;
            let desc = QueryDesc::Logits {
                file: file.display().to_string(),
                probes: v.len(),
            };
            search(&index, &Query::Vector(&v), desc, &params, explain)?
        }
        (_, _, Some(file)) => {
            let v = npy::read_vector(file, "the text embedding")?;
            let desc = QueryDesc::TextEmbedding {
                file: file.display().to_string(),
                dim: v.len(),
            };
            search(&index, &Query::TextEmbedding(&v), desc, &params, explain)?
        }
        _ => anyhow::bail!("give one query: --entry, --query-logits, --text-embedding or --text"),
    };
    report.print(args.json)
}

/// The library's search parameters from the flags, over indexes of `entries` entries in all.
fn search_params<'a>(
    args: &Args,
    entries: u64,
    metric: Metric,
    grouping: Grouping,
    filter: &'a ModelFilter,
) -> SearchParams<'a> {
    SearchParams {
        // There are never more results than entries; a larger --top must not cost memory.
        top: (args.top as usize).min(entries.max(1) as usize),
        k: args.k.map(|k| k as usize),
        exclude_same_model: args.exclude_same_model,
        grouping,
        metric,
        mode: args.mode.into(),
        candidates: args.candidates.map(|c| c as usize),
        blend_weight: args.blend_weight,
        filter: (!filter.is_empty()).then_some(filter),
    }
}

/// Searches with a text, embedded by the text encoder of `args`.
pub fn search_text(
    index: &Index,
    text: &str,
    args: &TextArgs,
    params: &SearchParams,
    explain: Option<usize>,
) -> Result<Report> {
    let (values, desc) = embed_text_query(index, text, args)?;
    search(index, &Query::TextEmbedding(&values), desc, params, explain)
}

/// A text embedded by the text encoder of `args`, checked against the probe embeddings of
/// `index`, and its description for the report.
fn embed_text_query(index: &Index, text: &str, args: &TextArgs) -> Result<(Vec<f32>, QueryDesc)> {
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
    let context_length = args.context_length as usize;
    let spec = TextSpec::from_flags(
        encoder,
        tokenizer,
        context_length,
        args.attention_mask,
        args.device,
    )?;
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
    Ok((emb.values, desc))
}

/// Searches with an entry of the index as the query.
pub fn search_entry(
    index: &Index,
    entry: u64,
    params: &SearchParams,
    explain: Option<usize>,
) -> Result<Report> {
    let desc = QueryDesc::of_entry(index, entry)?;
    search(index, &Query::Entry(entry), desc, params, explain)
}

fn search(
    index: &Index,
    query: &Query<'_>,
    desc: QueryDesc,
    params: &SearchParams,
    explain: Option<usize>,
) -> Result<Report> {
    let path: &Path = index.path();
    let found = index.search(query, params).at(path)?;
    let why = match explain {
        Some(n) => {
            let names = index.probe_names().at(path)?;
            let name = |p: u32| {
                names
                    .as_ref()
                    .map_or_else(|| format!("probe {p}"), |n| n[p as usize].clone())
            };
            let per_hit = index.explain(query, &found, n).at(path)?;
            Some(
                per_hit
                    .into_iter()
                    .map(|probes| {
                        probes
                            .into_iter()
                            .map(|c| ProbeRow {
                                probe: c.probe,
                                name: name(c.probe),
                                query: c.query,
                                hit: c.hit,
                                share: c.share,
                            })
                            .collect::<Vec<ProbeRow>>()
                    })
                    .collect::<Vec<_>>(),
            )
        }
        None => None,
    };
    let mut report = Report::new(desc, &found.params, found.hits);
    report.filter = params
        .filter
        .map(|f| f.conditions.iter().map(describe_condition).collect());
    if let Some(why) = why {
        for (row, probes) in report.results.iter_mut().zip(why) {
            row.explain = Some(probes);
        }
    }
    Ok(report)
}
