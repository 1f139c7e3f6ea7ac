//! `verify`: check every checksum and reference of the committed state. Exits non-zero when the
//! index is damaged.

use std::io::{self, Write};
use std::path::PathBuf;

use anyhow::{Result, bail};
use probelog::VerifyReport;
use serde::Serialize;

use super::open_index;
use crate::output::{human_bytes, print_json, progress_bytes};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The index to check.
    pub index: PathBuf,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct Report<'a> {
    path: String,
    ok: bool,
    sequence: u64,
    segments: u32,
    entries: u64,
    models: u64,
    sections_checked: usize,
    bytes_checked: u64,
    problems: Vec<Problem<'a>>,
    warnings: &'a [String],
}

#[derive(Debug, Serialize)]
struct Problem<'a> {
    section: &'a str,
    message: &'a str,
}

pub fn run(args: Args) -> Result<()> {
    let index = open_index(&args.index)?;
    let bar = progress_bytes(0);
    let report = index.verify_with_progress(&mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    bar.finish_and_clear();
    if args.json {
        print_json(&Report {
            path: args.index.display().to_string(),
            ok: report.is_ok(),
            sequence: report.sequence,
            segments: report.segments,
            entries: report.entries,
            models: report.models,
            sections_checked: report.sections_checked,
            bytes_checked: report.bytes_checked,
            problems: report
                .problems
                .iter()
                .map(|p| Problem {
                    section: &p.section,
                    message: &p.message,
                })
                .collect(),
            warnings: &report.warnings,
        })?;
    } else {
        write_human(
            &args.index.display().to_string(),
            &report,
            &mut io::stdout().lock(),
        )?;
    }
    match report.problems.as_slice() {
        [] => Ok(()),
        [only] => bail!("{} is damaged: {only}", args.index.display()),
        [first, rest @ ..] => bail!(
            "{} is damaged: {first} (and {} more problems)",
            args.index.display(),
            rest.len()
        ),
    }
}

fn write_human(path: &str, r: &VerifyReport, out: &mut dyn Write) -> io::Result<()> {
    let facts = format!(
        "commit {}, {} segments, {} models, {} entries; {} sections, {} checked",
        r.sequence,
        r.segments,
        r.models,
        r.entries,
        r.sections_checked,
        human_bytes(r.bytes_checked)
    );
    if r.is_ok() {
        writeln!(out, "{path}: OK ({facts})")?;
    } else {
        let n = r.problems.len();
        let plural = if n == 1 { "problem" } else { "problems" };
        writeln!(out, "{path}: {n} {plural} ({facts})")?;
    }
    for p in &r.problems {
        writeln!(out, "{p}")?;
    }
    for w in &r.warnings {
        writeln!(out, "warning: {w}")?;
    }
    Ok(())
}
