//! `delete`: retract models. One commit of tombstones: from it on, no search, lookup or export
//! returns the models' entries; `compact` then drops their bytes.

use std::path::PathBuf;

use anyhow::{Result, ensure};
use probelog::IndexWriter;
use serde::Serialize;

use super::{LibResult, with_writer_lock};
use crate::output::{outln, print_summary};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The index to delete from.
    pub index: PathBuf,
    /// A model to delete, by name: every live model of that name. Repeatable.
    #[arg(long = "model", value_name = "NAME")]
    pub models: Vec<String>,
    /// A model to delete, by id (from `info --models` or search results). Repeatable.
    #[arg(long = "model-id", value_name = "ID")]
    pub model_ids: Vec<u64>,
    #[command(flatten)]
    pub lock: super::LockArgs,
    /// Print the summary as a JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct Summary {
    index: String,
    /// The ids of the models deleted, ascending.
    deleted: Vec<u64>,
    sequence: u64,
    live_models: u64,
}

pub fn run(args: Args) -> Result<()> {
    ensure!(
        !args.models.is_empty() || !args.model_ids.is_empty(),
        "name the models to delete: --model NAME or --model-id ID (repeatable)"
    );
    let path = &args.index;
    let mut w = with_writer_lock(path, args.lock.no_wait, |wait| {
        IndexWriter::open(path, wait)
    })?;
    // Everything is staged first: an unknown name or id leaves the index as it was.
    let mut deleted = Vec::new();
    for name in &args.models {
        deleted.extend(w.delete_models_named(name).at(path)?);
    }
    for &id in &args.model_ids {
        w.delete_model(id).at(path)?;
        deleted.push(id);
    }
    let summary = w.commit().at(path)?;
    drop(w);
    deleted.sort_unstable();
    let index = super::open_index(path)?;
    let report = Summary {
        index: path.display().to_string(),
        deleted,
        sequence: summary.sequence,
        live_models: index.live_model_count(),
    };
    print_summary(args.json, &report, |report| {
        outln!(
            "deleted {} model(s) from {} (commit {}): ids {}; {} live model(s) remain",
            report.deleted.len(),
            report.index,
            report.sequence,
            report
                .deleted
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            report.live_models
        )
    })
}
