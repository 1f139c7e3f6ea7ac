//! `probelog-research`: the experiments behind probelog's defaults, apart from the product's
//! command line. `eval` measures the retrieval accuracy of a labelled index (the analogues of the
//! ProbeLog paper's Table 1 and ablations, and the variants the default metric was chosen from);
//! the benchmarks in `benches/` sweep synthetic zoos.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use probelog_tool::output::{exit_code, shorten_quoted_arguments};

mod eval;

/// Research measurements on probelog indexes.
#[derive(Debug, Parser)]
#[command(name = "probelog-research", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Measure retrieval accuracy of a labelled index: queries from held-out models, or text.
    Eval(Box<eval::Args>),
}

fn main() -> ExitCode {
    let cli = Cli::try_parse().unwrap_or_else(|e| shorten_quoted_arguments(e).exit());
    let result = match cli.command {
        Command::Eval(args) => eval::run(*args),
    };
    exit_code(result)
}
