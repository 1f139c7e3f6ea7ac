//! `merge`: join index files of one probe set into a new index file.

use std::path::{Path, PathBuf};

use anyhow::Result;
use probelog::{MergeOptions, MergedFactors};
use serde::Serialize;

use super::LibResult;
use crate::input;
use crate::output::{human_bytes, outln, print_summary};
use crate::paths::refuse_outputs_over_inputs;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The new index file (written beside itself and renamed into place).
    pub out: PathBuf,
    /// The indexes to join, in order: their live models keep this order in OUT.
    #[arg(required = true, num_args = 1..)]
    pub inputs: Vec<PathBuf>,
    /// Replace OUT if it exists (atomically, under its writer lock).
    #[arg(long)]
    pub force: bool,
    /// Keep live models of different inputs that share a name (refused by default).
    #[arg(long)]
    pub keep_duplicate_names: bool,
    #[command(flatten)]
    pub refit: super::RefitArgs,
    #[command(flatten)]
    pub graph: super::GraphArgs,
    /// How OUT stores descriptors (default: as the inputs do); f16 of f32 inputs halves the file
    /// and rounds each value once.
    #[arg(long, value_enum)]
    pub dtype: Option<super::create::DtypeArg>,
    /// Print the summary as a JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct Summary {
    out: String,
    inputs: Vec<String>,
    bytes_in: u64,
    bytes_written: u64,
    model_count: u64,
    entry_count: u64,
    /// Deleted models of the inputs, left out.
    models_dropped: u64,
    /// none, refitted, refactorized or kept (too few live logits to refit).
    factors: &'static str,
    /// Rank of the merged file's probe factors; null without factors.
    factor_rank: Option<usize>,
    graphs: usize,
    /// f32 or f16: how OUT stores descriptors.
    dtype: &'static str,
}

pub fn run(args: Args) -> Result<()> {
    for p in &args.inputs {
        input::require_regular(p, "an input index")?;
    }
    let roles: Vec<(&str, &Path)> = args
        .inputs
        .iter()
        .map(|p| ("the input", p.as_path()))
        .collect();
    refuse_outputs_over_inputs(&[("the output", &args.out)], &roles)?;
    let opts = MergeOptions {
        keep_duplicate_names: args.keep_duplicate_names,
        replace: args.force,
        refactorize: args.refit.options(),
        ann: args.graph.options(),
        dtype: args.dtype.map(Into::into),
    };
    let inputs: Vec<&Path> = args.inputs.iter().map(PathBuf::as_path).collect();
    let done = probelog::merge(&args.out, &inputs, &opts).plain()?;
    let merged = super::open_index(&args.out)?;
    let (factors, factor_rank) = match done.factors {
        MergedFactors::None => ("none", None),
        MergedFactors::Refitted { rank } => ("refitted", Some(rank)),
        MergedFactors::Refactorized { rank } => ("refactorized", Some(rank)),
        MergedFactors::Kept { rank } => ("kept", Some(rank)),
    };
    let summary = Summary {
        out: args.out.display().to_string(),
        inputs: args
            .inputs
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
        bytes_in: done.bytes_in,
        bytes_written: done.bytes_written,
        model_count: done.model_count,
        entry_count: done.entry_count,
        models_dropped: done.models_dropped,
        factors,
        factor_rank,
        graphs: merged.graph_count(),
        dtype: merged.dtype().name(),
    };
    print_summary(args.json, &summary, |summary| {
        outln!(
            "merged {} indexes ({}) into {} ({}, {}): {} models, {} entries",
            summary.inputs.len(),
            human_bytes(summary.bytes_in),
            summary.out,
            human_bytes(summary.bytes_written),
            summary.dtype,
            summary.model_count,
            summary.entry_count
        )?;
        if summary.models_dropped > 0 {
            outln!("left out {} deleted models", summary.models_dropped)?;
        }
        if let Some(rank) = summary.factor_rank {
            outln!("probe factors {factors} (rank {rank})")?;
        }
        if summary.graphs > 0 {
            outln!("built {} ANN graphs", summary.graphs)?;
        }
        Ok(())
    })
}
