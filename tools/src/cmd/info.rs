//! `info`: what an index holds.

use std::io::{self, Write};
use std::path::PathBuf;

use anyhow::Result;
use probelog::{DEFAULT_BLEND_WEIGHT, DEFAULT_K, Index, Metric, SearchParams};
use serde::Serialize;

use super::{LibResult, open_index};
use crate::output::{Align, Table, human_bytes, pairs_as_object, print_json};

/// Models listed in human output; `--json` lists all.
const MODELS_SHOWN: usize = 20;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The index to describe.
    pub index: PathBuf,
    /// Print one JSON object, listing every model.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct Info {
    path: String,
    num_probes: usize,
    fingerprint: String,
    dtype: &'static str,
    entry_count: u64,
    model_count: u64,
    /// Models and entries deleted (`delete`, `append --replace`); `compact` drops them.
    deleted_models: u64,
    deleted_entries: u64,
    segment_count: u32,
    sequence: u64,
    file_size: u64,
    committed_len: u64,
    probe_names: bool,
    /// Dimension of the probe embeddings, if the index has them.
    probe_embedding_dim: Option<usize>,
    /// Size in bytes of the probe set file embedded in the index (`create --embed-probes`,
    /// `probes attach`), if it holds one.
    embedded_probe_set_bytes: Option<u64>,
    /// Collaborative probing's stored probe factors, if any.
    probe_factors: Option<FactorsRow>,
    /// Entries covered by ANN graphs (searched by `search --mode hnsw`), and in how many graphs.
    graph_entries: u64,
    graphs: usize,
    /// What `search --mode auto --metric topk` runs: exact or hnsw (the default metric, blend,
    /// always runs exactly).
    auto_mode: &'static str,
    /// The metric `search` ranks by unless told otherwise: blend.
    default_metric: &'static str,
    models: Vec<ModelRow>,
}

#[derive(Debug, Serialize)]
struct FactorsRow {
    rank: usize,
    lambda: f32,
}

#[derive(Debug, Serialize)]
struct ModelRow {
    id: u64,
    name: String,
    logits: u32,
    first_entry: u64,
    source: String,
    #[serde(serialize_with = "pairs_as_object")]
    meta: Vec<(String, String)>,
    /// How many probes the model was run on (all of them unless collaboratively probed).
    observed_probes: usize,
    /// Deleted: no search returns it, and `compact` drops it.
    deleted: bool,
}

pub fn run(args: Args) -> Result<()> {
    let index = open_index(&args.index)?;
    let listed = if args.json {
        index.model_count()
    } else {
        index.model_count().min(MODELS_SHOWN as u64)
    };
    let info = collect(&index, listed)?;
    if args.json {
        print_json(&info)
    } else {
        write_human(&info, &mut io::stdout().lock())?;
        Ok(())
    }
}

fn collect(index: &Index, listed: u64) -> Result<Info> {
    let path = index.path();
    let models = (0..listed)
        .map(|id| {
            let m = index.model(id).at(path)?;
            Ok(ModelRow {
                id,
                name: m.name,
                logits: m.logit_count,
                first_entry: m.first_entry,
                source: m.source,
                meta: m.meta,
                observed_probes: index
                    .observed_probes(id)
                    .at(path)?
                    .map_or(index.num_probes(), |o| o.len()),
                deleted: index.is_model_deleted(id),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Info {
        path: path.display().to_string(),
        num_probes: index.num_probes(),
        fingerprint: index.probe_set().fingerprint_hex(),
        dtype: index.dtype().name(),
        entry_count: index.entry_count(),
        model_count: index.model_count(),
        deleted_models: index.deleted_models().len() as u64,
        deleted_entries: index.deleted_entry_count().at(path)?,
        segment_count: index.segment_count(),
        sequence: index.sequence(),
        file_size: index.data_len(),
        committed_len: index.commit().committed_len,
        probe_names: index.probe_names().at(path)?.is_some(),
        probe_embedding_dim: index.probe_embeddings().at(path)?.map(|(_, dim)| dim),
        embedded_probe_set_bytes: index.embedded_probe_set_bytes().map(|b| b.len() as u64),
        probe_factors: index
            .probe_factors()
            .at(path)?
            .map(|(f, lambda)| FactorsRow {
                rank: f.rank,
                lambda,
            }),
        graph_entries: index.graph_entries(),
        graphs: (0..index.segment_count() as usize)
            .map(|s| index.segment_graphs(s).map(|g| g.len()))
            .sum::<probelog::Result<usize>>()
            .at(path)?,
        auto_mode: index
            .resolve_params(&SearchParams {
                metric: Metric::TopK,
                ..SearchParams::default()
            })
            .at(path)?
            .mode
            .name(),
        default_metric: Metric::default().name(),
        models,
    })
}

fn write_human(info: &Info, out: &mut dyn Write) -> io::Result<()> {
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    let size = if info.file_size == info.committed_len {
        human_bytes(info.file_size)
    } else {
        format!(
            "{} ({} committed; the rest is a torn tail the next append reclaims)",
            human_bytes(info.file_size),
            human_bytes(info.committed_len)
        )
    };
    let fields = [
        ("index", info.path.clone()),
        ("probes", info.num_probes.to_string()),
        ("fingerprint", info.fingerprint.clone()),
        ("dtype", info.dtype.to_string()),
        (
            "entries",
            live_and_deleted(info.entry_count, info.deleted_entries),
        ),
        (
            "models",
            live_and_deleted(info.model_count, info.deleted_models),
        ),
        ("segments", info.segment_count.to_string()),
        ("commit", info.sequence.to_string()),
        ("size", size),
        ("probe names", yes_no(info.probe_names).to_string()),
        (
            "probe embeddings",
            info.probe_embedding_dim
                .map_or("no".to_string(), |d| format!("yes (dim {d})")),
        ),
        (
            "probe set",
            info.embedded_probe_set_bytes
                .map_or("not embedded".to_string(), |n| {
                    format!(
                        "embedded ({}; `probes extract` writes it out)",
                        human_bytes(n)
                    )
                }),
        ),
        (
            "probe factors",
            info.probe_factors.as_ref().map_or("no".to_string(), |f| {
                format!(
                    "rank {}, lambda {} (collaborative probing)",
                    f.rank, f.lambda
                )
            }),
        ),
        (
            "ANN graphs",
            if info.graphs == 0 {
                "none (every search is exact)".to_string()
            } else {
                format!(
                    "{} covering {} of {} entries (search --mode auto --metric topk runs {})",
                    info.graphs, info.graph_entries, info.entry_count, info.auto_mode
                )
            },
        ),
        (
            "search metric",
            format!(
                "{} by default (k = {}, weight {DEFAULT_BLEND_WEIGHT}); --metric topk is the \
                 paper's top-k discrepancy",
                info.default_metric,
                DEFAULT_K.min(info.num_probes)
            ),
        ),
    ];
    for (k, v) in fields {
        writeln!(out, "{:<17} {v}", format!("{k}:"))?;
    }
    if info.models.is_empty() {
        return Ok(());
    }
    writeln!(out)?;
    let mut table = Table::new(&[
        ("id", Align::Right),
        ("name", Align::Left),
        ("logits", Align::Right),
        ("probes run", Align::Right),
        ("source", Align::Left),
    ]);
    for m in &info.models {
        table.row(vec![
            m.id.to_string(),
            if m.deleted {
                format!("{} (deleted)", m.name)
            } else {
                m.name.clone()
            },
            m.logits.to_string(),
            m.observed_probes.to_string(),
            m.source.clone(),
        ]);
    }
    table.write(out)?;
    let more = info.model_count - info.models.len() as u64;
    if more > 0 {
        writeln!(out, "... {more} more")?;
    }
    Ok(())
}

/// `total` as live and deleted counts.
fn live_and_deleted(total: u64, deleted: u64) -> String {
    if deleted == 0 {
        total.to_string()
    } else {
        format!(
            "{} live, {deleted} deleted (`compact` drops them)",
            total - deleted
        )
    }
}
