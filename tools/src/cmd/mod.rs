//! One module per subcommand, plus the helpers they share: turning library errors into one-line
//! messages, opening an index, taking the writer lock, reading text inputs and parsing flags.

use std::path::Path;

use anyhow::{Result, anyhow};
use probelog::collab::CollabOptions;
use probelog::{Error, Index, LockWait, ProbeSetId};

use crate::input;
use crate::output::excerpt;

pub mod append;
pub mod compact;
pub mod create;
pub mod delete;
pub mod demo;
pub mod export;
pub mod info;
pub mod merge;
pub mod probes;
pub mod search;
pub mod verify;

// `probelog-research eval --raw-manifest` reads the manifest tables `append --manifest` reads.
pub use append::check_input_settings;

/// Converts library results to `anyhow` ones.
///
/// The library's messages already hold their causes (an I/O error's message ends with the OS
/// error), so the error is flattened to its message: printing the chain would repeat the cause.
pub trait LibResult<T> {
    /// Prefixes the message with `path`, unless the message names the file already.
    fn at(self, path: &Path) -> Result<T>;
    /// Keeps the message as it is (it names what it is about).
    fn plain(self) -> Result<T>;
}

impl<T> LibResult<T> for probelog::Result<T> {
    fn at(self, path: &Path) -> Result<T> {
        self.map_err(|e| {
            let names_path = matches!(
                e,
                Error::Io { .. } | Error::Locked { .. } | Error::AlreadyExists { .. }
            );
            let err = anyhow!("{}", render(&e));
            if names_path {
                err
            } else {
                err.context(path.display().to_string())
            }
        })
    }

    fn plain(self) -> Result<T> {
        self.map_err(|e| anyhow!("{}", render(&e)))
    }
}

/// A library error in this command line's words where the library's name its own API.
fn render(e: &Error) -> String {
    match e {
        Error::Search(search) => self::search::render_error(search),
        Error::InputFile { path, source } => format!("{}: {}", path.display(), render(source)),
        Error::DuplicateName { name, live_model } => format!(
            "model name {name:?} is taken by {}: pass --replace to make this model its new \
             version, or --keep-duplicate-names to keep both",
            probelog::error::taken_by(*live_model)
        ),
        _ => e.to_string(),
    }
}

/// Opens an index read-only, once it is known to be a regular file (the library would block for
/// ever opening a FIFO).
pub fn open_index(path: &Path) -> Result<Index> {
    input::require_regular(path, "the index")?;
    Index::open(path).at(path)
}

/// `--no-wait`, of every command that takes the writer lock.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct LockArgs {
    /// Fail at once if another writer holds the index instead of waiting for it.
    #[arg(long)]
    pub no_wait: bool,
}

/// `--refactorize` and the factors it fits, of `compact` and `merge`.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct RefitArgs {
    /// Refit collaborative probing's probe factors on everything the index (or the merged
    /// inputs) observed and complete the partially probed models again with them.
    #[arg(long)]
    pub refactorize: bool,
    /// Rank of the refitted factors.
    #[arg(long, value_name = "R", default_value_t = CollabOptions::default().rank, requires = "refactorize")]
    pub rank: usize,
    /// Ridge regularization of the refitted factors (a finite number > 0).
    #[arg(long, value_name = "L", default_value_t = CollabOptions::default().lambda, value_parser = parse_lambda, requires = "refactorize")]
    pub lambda: f32,
}

impl RefitArgs {
    /// The factors to refit with, when `--refactorize` was given.
    pub fn options(&self) -> Option<CollabOptions> {
        self.refactorize.then(|| CollabOptions {
            rank: self.rank,
            lambda: self.lambda,
            ..CollabOptions::default()
        })
    }
}

/// Runs `open` (which takes the writer lock of `path`) without waiting first. If another writer
/// holds the lock, fails when `no_wait`, else says so on stderr and waits for it.
pub fn with_writer_lock<T>(
    path: &Path,
    no_wait: bool,
    mut open: impl FnMut(LockWait) -> probelog::Result<T>,
) -> Result<T> {
    input::require_regular(path, "the index")?;
    match open(LockWait::Fail) {
        Err(Error::Locked { .. }) if !no_wait => {
            eprintln!("waiting for the writer lock on {}...", path.display());
            open(LockWait::Wait).at(path)
        }
        other => other.at(path),
    }
}

/// Reads a text file of one item per line (probe names, class labels); `what` names it in errors
/// (the flag, or the manifest entry). The rules are [`input::read_lines`]'s.
pub fn read_lines(path: &Path, what: &str) -> Result<Vec<String>> {
    input::read_lines(path, what)
}

/// Clap parser of `--probe-fingerprint`: 64 hex digits.
pub fn parse_fingerprint(s: &str) -> Result<[u8; 32], String> {
    ProbeSetId::parse_fingerprint(s).map_err(|e| e.to_string())
}

/// Clap parser of the ridge `--lambda` of collaborative probing: a finite number > 0, as the
/// index stores it (a factor section with another lambda does not open).
pub fn parse_lambda(s: &str) -> Result<f32, String> {
    match s.trim().parse::<f32>() {
        Ok(l) if l.is_finite() && l > 0.0 => Ok(l),
        _ => Err(format!(
            "{} is not a finite number > 0",
            excerpt(&format!("{s:?}"))
        )),
    }
}

/// Clap parser of `--meta KEY=VALUE`.
pub fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!(
            "expected KEY=VALUE with a non-empty KEY, got {}",
            excerpt(&format!("{s:?}"))
        )),
    }
}

/// How an append or a compaction builds the ANN graph of what it writes.
#[derive(Debug, Clone, clap::Args)]
pub struct GraphArgs {
    /// Build an ANN graph (for `search --mode hnsw`) when the written segment has at least this
    /// many entries; smaller segments are always scanned exactly.
    #[arg(long, value_name = "N", default_value_t = probelog::AnnOptions::default().min_entries)]
    pub graph_min_entries: usize,
    /// Most entries in one ANN graph: a larger segment gets several graphs over consecutive
    /// ranges of near-equal size, which a search walks in parallel.
    #[arg(long, value_name = "N", default_value_t = probelog::AnnOptions::default().max_graph_entries)]
    pub graph_max_entries: usize,
    /// Build no ANN graph.
    #[arg(long, conflicts_with_all = ["graph_min_entries", "graph_max_entries"])]
    pub no_graph: bool,
}

impl GraphArgs {
    pub fn options(&self) -> probelog::AnnOptions {
        if self.no_graph {
            probelog::AnnOptions::disabled()
        } else {
            probelog::AnnOptions {
                min_entries: self.graph_min_entries,
                max_graph_entries: self.graph_max_entries,
                ..Default::default()
            }
        }
    }
}
