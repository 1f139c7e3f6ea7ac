//! `probelog-tool`: create, fill, search, inspect, check, compact and export probelog index files.
//!
//! Every subcommand lives in its own module under [`cmd`]; each turns its raw clap arguments into
//! validated values and then calls the `probelog` library. Errors end up here, printed as one line
//! (`error: <message>` with the whole context chain) and a non-zero exit code.

use std::io::ErrorKind;
use std::process::ExitCode;

use clap::builder::StyledStr;
use clap::error::{ContextKind, ContextValue};
use clap::{Parser, Subcommand};

mod cmd;
mod input;
mod npy;
mod output;
mod paths;
// The pixel accessors and device choice serve `append --model`, which runs models only in a
// build with the `torch` feature.
#[cfg_attr(not(feature = "torch"), allow(dead_code))]
mod pset;
#[cfg_attr(not(feature = "torch"), allow(dead_code))]
mod torch;

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
    /// Show what an index holds.
    Info(cmd::info::Args),
    /// Check every checksum and reference of an index.
    Verify(cmd::verify::Args),
    /// Rewrite an index as a single segment.
    Compact(cmd::compact::Args),
    /// Write the z-normalized descriptors as an [entries, probes] float32 .npy plus a JSON sidecar.
    Export(cmd::export::Args),
    /// Build or describe a probe set file (.pset): the probe images, decoded once.
    #[command(subcommand_required = true)]
    Probes(cmd::probes::Args),
    /// Build a synthetic model zoo into a new index and run an example search.
    Demo(cmd::demo::Args),
    /// Measure retrieval accuracy of a labelled index: queries from held-out models, or text.
    Eval(Box<cmd::eval::Args>),
}

fn main() -> ExitCode {
    let cli = Cli::try_parse().unwrap_or_else(|e| shorten_quoted_arguments(e).exit());
    let result = match cli.command {
        Command::Create(args) => cmd::create::run(args),
        Command::Append(args) => cmd::append::run(*args),
        Command::Search(args) => cmd::search::run(args),
        Command::Info(args) => cmd::info::run(args),
        Command::Verify(args) => cmd::verify::run(args),
        Command::Compact(args) => cmd::compact::run(args),
        Command::Export(args) => cmd::export::run(args),
        Command::Probes(args) => cmd::probes::run(args),
        Command::Demo(args) => cmd::demo::run(args),
        Command::Eval(args) => cmd::eval::run(*args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // A reader of our output went away (`probelog-tool info x | head`): not our failure.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Clap quotes a refused argument whole: a 40 KB argument must not become a 40 KB error line, so
/// every long value quoted is cut to an [`output::excerpt`].
fn shorten_quoted_arguments(mut e: clap::Error) -> clap::Error {
    let long: Vec<(ContextKind, ContextValue)> = e
        .context()
        .filter_map(|(kind, value)| match value {
            ContextValue::String(s) if s.chars().count() > output::EXCERPT_CHARS => {
                Some((kind, ContextValue::String(output::excerpt(s))))
            }
            // Tips ("to pass '--x' as a value, use '-- --x'") quote the argument too.
            ContextValue::StyledStrs(tips)
                if tips
                    .iter()
                    .any(|t| t.to_string().chars().count() > output::EXCERPT_CHARS) =>
            {
                let short = tips
                    .iter()
                    .map(|t| StyledStr::from(output::excerpt(&t.to_string())))
                    .collect();
                Some((kind, ContextValue::StyledStrs(short)))
            }
            _ => None,
        })
        .collect();
    for (kind, short) in long {
        e.insert(kind, short);
    }
    e
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == ErrorKind::BrokenPipe)
    })
}
