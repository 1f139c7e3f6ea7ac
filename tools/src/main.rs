//! `probelog-tool`: create, fill, search, inspect, check, compact and export probelog index files.
//!
//! Every subcommand lives in its own module of the crate's library (`probelog_tool::cmd`); each
//! turns its raw clap arguments into validated values and then calls the `probelog` library. Errors end up here, printed as one line
//! (`error: <message>` with the whole context chain) and a non-zero exit code.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use probelog_tool::cmd;
use probelog_tool::output::{exit_code, shorten_quoted_arguments};

/// Find the classifiers that recognize a concept, from their logits on a fixed probe set.
#[derive(Debug, Parser)]
#[command(name = "probelog-tool", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a new, empty index for a probe set.
    Create(cmd::create::Args),
    /// Append one model's logits, or every model listed in a manifest, in one commit.
    Append(Box<cmd::append::Args>),
    /// Search the index with an entry, a raw logit vector or a text embedding.
    Search(cmd::search::Args),
    /// Delete models: no search returns their entries from this commit on.
    Delete(cmd::delete::Args),
    /// Show what an index holds.
    Info(cmd::info::Args),
    /// Check every checksum and reference of an index.
    Verify(cmd::verify::Args),
    /// Rewrite an index as a single segment.
    Compact(cmd::compact::Args),
    /// Join index files of one probe set into a new index file.
    Merge(cmd::merge::Args),
    /// Write the z-normalized descriptors as an [entries, probes] float32 .npy plus a JSON sidecar.
    Export(cmd::export::Args),
    /// Build or describe a probe set file (.pset): the probe images, decoded once.
    #[command(subcommand_required = true)]
    Probes(cmd::probes::Args),
    /// Build a synthetic model zoo into a new index and run an example search.
    Demo(cmd::demo::Args),
}

fn main() -> ExitCode {
    let cli = Cli::try_parse().unwrap_or_else(|e| shorten_quoted_arguments(e).exit());
    let result = match cli.command {
        Command::Create(args) => cmd::create::run(args),
        Command::Append(args) => cmd::append::run(*args),
        Command::Search(args) => cmd::search::run(args),
        Command::Delete(args) => cmd::delete::run(args),
        Command::Info(args) => cmd::info::run(args),
        Command::Verify(args) => cmd::verify::run(args),
        Command::Compact(args) => cmd::compact::run(args),
        Command::Merge(args) => cmd::merge::run(args),
        Command::Export(args) => cmd::export::run(args),
        Command::Probes(args) => cmd::probes::run(args),
        Command::Demo(args) => cmd::demo::run(args),
    };
    exit_code(result)
}
