//! Printing: JSON documents, plain-text tables, byte sizes and progress bars.

use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Result;
use clap::builder::StyledStr;
use clap::error::{ContextKind, ContextValue};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Serialize, Serializer};

/// `println!` that returns the write error (say, a closed pipe) instead of panicking. Exported
/// for the research crate as `output::outln`.
#[doc(hidden)]
#[macro_export]
macro_rules! __outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}
pub use crate::__outln as outln;

/// Prints `value` to stdout as one pretty-printed JSON document.
pub fn print_json<T: Serialize>(value: &T) -> Result<()> {
    let mut out = io::stdout().lock();
    // As an io::Error, a closed pipe stays recognizable (see main).
    serde_json::to_writer_pretty(&mut out, value).map_err(io::Error::from)?;
    writeln!(out)?;
    Ok(())
}

/// Prints a command's summary: as one JSON document when `json` (the `--json` flag), else as
/// the plain text that `text` writes.
pub fn print_summary<T: Serialize>(
    json: bool,
    summary: &T,
    text: impl FnOnce(&T) -> io::Result<()>,
) -> Result<()> {
    if json {
        return print_json(summary);
    }
    text(summary)?;
    Ok(())
}

/// Serializes key/value pairs as a JSON object, in their order.
pub fn pairs_as_object<S: Serializer>(pairs: &[(String, String)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(pairs.iter().map(|(k, v)| (k, v)))
}

/// Column alignment of a [`Table`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A plain-text table with a header line and columns padded to their widest cell.
#[derive(Debug)]
pub struct Table {
    columns: Vec<(&'static str, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(columns: &[(&'static str, Align)]) -> Self {
        Table {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; it must have one cell per column.
    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.columns.len());
        self.rows.push(cells);
    }

    pub fn write(&self, out: &mut dyn Write) -> io::Result<()> {
        let widths: Vec<usize> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, (title, _))| {
                self.rows
                    .iter()
                    .map(|r| r[i].chars().count())
                    .chain([title.len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let header: Vec<String> = self.columns.iter().map(|(t, _)| t.to_string()).collect();
        for cells in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in cells.iter().enumerate() {
                let pad = " ".repeat(widths[i] - cell.chars().count());
                if i > 0 {
                    line.push_str("  ");
                }
                match self.columns[i].1 {
                    Align::Left => line.extend([cell.as_str(), &pad]),
                    Align::Right => line.extend([&pad, cell.as_str()]),
                }
            }
            writeln!(out, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

/// Longest piece of user input echoed in a message, in characters.
pub const EXCERPT_CHARS: usize = 80;

/// `text` cut to [`EXCERPT_CHARS`] characters with "…" when longer: error messages quote what
/// they refuse, and a 40 KB header or argument must not become a 40 KB error line.
pub fn excerpt(text: &str) -> String {
    match text.char_indices().nth(EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// `1.5 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} bytes")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A progress bar on stderr, hidden when stderr is not a terminal, and cleared when dropped so that
/// an error message never lands behind a half-drawn bar.
#[derive(Debug)]
pub struct Progress(ProgressBar);

impl std::ops::Deref for Progress {
    type Target = ProgressBar;
    fn deref(&self) -> &ProgressBar {
        &self.0
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

/// A progress bar over `len` items called `unit`.
pub fn progress(len: u64, unit: &str) -> Progress {
    bar(len, &format!("{{pos}}/{{len}} {unit}"))
}

/// A progress bar over `len` bytes.
pub fn progress_bytes(len: u64) -> Progress {
    bar(len, "{bytes}/{total_bytes}")
}

/// A bar that never draws.
pub fn no_progress() -> Progress {
    Progress(ProgressBar::hidden())
}

fn bar(len: u64, counts: &str) -> Progress {
    if !io::stderr().is_terminal() {
        return no_progress();
    }
    let template = format!("{{elapsed_precise}} [{{bar:40}}] {counts} {{msg}}");
    let style = ProgressStyle::with_template(&template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    Progress(ProgressBar::new(len).with_style(style))
}

/// Clap quotes a refused argument whole: a 40 KB argument must not become a 40 KB error line, so
/// every long value quoted is cut to an [`excerpt`].
pub fn shorten_quoted_arguments(mut e: clap::Error) -> clap::Error {
    let long: Vec<(ContextKind, ContextValue)> = e
        .context()
        .filter_map(|(kind, value)| match value {
            ContextValue::String(s) if s.chars().count() > EXCERPT_CHARS => {
                Some((kind, ContextValue::String(excerpt(s))))
            }
            // Tips ("to pass '--x' as a value, use '-- --x'") quote the argument too.
            ContextValue::StyledStrs(tips)
                if tips
                    .iter()
                    .any(|t| t.to_string().chars().count() > EXCERPT_CHARS) =>
            {
                let short = tips
                    .iter()
                    .map(|t| StyledStr::from(excerpt(&t.to_string())))
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

/// The exit status of a command's result: an error is printed as one line, `error: <message>`
/// with its whole context chain, and fails; a reader of our output that went away
/// (`probelog-tool info x | head`) is not our failure.
pub fn exit_code(result: Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Whether the error is a reader of our output that went away (`probelog-tool info x | head`):
/// not a failure of the command.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_pads_columns() {
        let mut t = Table::new(&[("rank", Align::Right), ("model", Align::Left)]);
        t.row(vec!["1".into(), "resnet".into()]);
        t.row(vec!["10".into(), "vit".into()]);
        let mut out = Vec::new();
        t.write(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "rank  model\n   1  resnet\n  10  vit\n"
        );
    }

    #[test]
    fn excerpts_cut_long_input() {
        assert_eq!(excerpt("short"), "short");
        let long = "é".repeat(100);
        let cut = excerpt(&long);
        assert_eq!(cut.chars().count(), EXCERPT_CHARS + 1);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(human_bytes(512), "512 bytes");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 20), "3.0 MiB");
    }
}
