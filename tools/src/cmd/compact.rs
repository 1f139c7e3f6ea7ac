//! `compact`: rewrite an index as one segment, dropping nothing but per-append overhead.

use std::path::PathBuf;

use anyhow::Result;
use probelog::CompactOptions;
use serde::Serialize;

use super::{open_index, with_writer_lock};
use crate::output::{human_bytes, outln, print_summary};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The index to compact (replaced in place; readers that have it open keep their snapshot).
    pub index: PathBuf,
    #[command(flatten)]
    pub refit: super::RefitArgs,
    #[command(flatten)]
    pub graph: super::GraphArgs,
    #[command(flatten)]
    pub lock: super::LockArgs,
    /// Print the summary as a JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct Summary {
    index: String,
    segments_before: u32,
    segments_after: u32,
    bytes_before: u64,
    bytes_after: u64,
    entry_count: u64,
    model_count: u64,
    sequence: u64,
}

pub fn run(args: Args) -> Result<()> {
    let path = &args.index;
    let opts = CompactOptions {
        refactorize: args.refit.options(),
        ann: args.graph.options(),
    };
    let done = with_writer_lock(path, args.lock.no_wait, |wait| {
        probelog::compact_with(path, wait, opts)
    })?;
    let after = open_index(path)?;
    let summary = Summary {
        index: path.display().to_string(),
        segments_before: done.segments_before,
        segments_after: after.segment_count(),
        bytes_before: done.bytes_before,
        bytes_after: done.bytes_after,
        entry_count: done.entry_count,
        model_count: done.model_count,
        sequence: after.sequence(),
    };
    print_summary(args.json, &summary, |summary| {
        outln!(
            "compacted {}: {} segments -> {}, {} -> {} ({} models, {} entries)",
            summary.index,
            summary.segments_before,
            summary.segments_after,
            human_bytes(summary.bytes_before),
            human_bytes(summary.bytes_after),
            summary.model_count,
            summary.entry_count
        )
    })
}
