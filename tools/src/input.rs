//! Opening and reading input files (indexes, logits, manifests, label and name lists, probe sets,
//! embeddings) so that a hostile path cannot hang or exhaust the process.
//!
//! Every input must be a regular file: a FIFO blocks its reader until some writer appears (for
//! ever, if none does), and a device such as `/dev/zero` never ends. Each file is read with memory
//! bounded by its size on disk, and text files by [`MAX_TEXT_BYTES`] too.

use std::fs::{self, File};
use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};

use crate::output::excerpt;

/// Largest text input (manifest, label or name list) read: far above any real one (a million
/// labels of 100 bytes is 100 MB), far below what would exhaust memory.
pub const MAX_TEXT_BYTES: u64 = 256 << 20;

/// What kind of file system object a path names, for messages.
fn kind_name(t: fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// Checks, without opening it, that `path` names a regular file (after symlinks); `what` names
/// the input in the message ("the index", "--labels"). Returns its metadata.
///
/// `stat` never blocks, where opening a FIFO does: this is the check to make before handing a
/// path to code that opens it (the library's `Index::open` and `IndexWriter::open`).
pub fn require_regular(path: &Path, what: &str) -> Result<fs::Metadata> {
    let meta =
        fs::metadata(path).with_context(|| format!("cannot read {what} {}", path.display()))?;
    ensure!(
        meta.is_file(),
        "{what} {} is {}; it must be a regular file",
        path.display(),
        kind_name(meta.file_type())
    );
    Ok(meta)
}

/// An input file opened for reading, known to be regular, with its length when opened.
#[derive(Debug)]
pub struct InputFile {
    pub file: File,
    pub len: u64,
}

/// Opens `path` for reading after [`require_regular`], and checks the opened file again (the path
/// may have been replaced in between). A FIFO swapped in between the two checks would still
/// block the open; std has no portable `O_NONBLOCK`, and the window is a few microseconds.
pub fn open(path: &Path, what: &str) -> Result<InputFile> {
    require_regular(path, what)?;
    let file =
        File::open(path).with_context(|| format!("cannot open {what} {}", path.display()))?;
    let meta = file
        .metadata()
        .with_context(|| format!("cannot stat {what} {}", path.display()))?;
    ensure!(
        meta.is_file(),
        "{what} {} is {}; it must be a regular file",
        path.display(),
        kind_name(meta.file_type())
    );
    Ok(InputFile {
        file,
        len: meta.len(),
    })
}

impl InputFile {
    /// Reads exactly `n` more bytes (the caller checked `n` against the file's length).
    pub fn read_exact_vec(&mut self, n: u64, path: &Path) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        buf.try_reserve_exact(usize::try_from(n)?)
            .with_context(|| format!("{}: no memory for {n} bytes", path.display()))?;
        (&mut self.file)
            .take(n)
            .read_to_end(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        ensure!(
            buf.len() as u64 == n,
            "{} shrank while it was read ({} of {n} bytes)",
            path.display(),
            buf.len()
        );
        Ok(buf)
    }
}

/// Reads a whole text input of at most [`MAX_TEXT_BYTES`] as UTF-8.
pub fn read_text(path: &Path, what: &str) -> Result<String> {
    let mut f = open(path, what)?;
    ensure!(
        f.len <= MAX_TEXT_BYTES,
        "{what} {} is {} bytes; text inputs are limited to {MAX_TEXT_BYTES} bytes",
        path.display(),
        f.len
    );
    let bytes = f.read_exact_vec(f.len, path)?;
    String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "{what} {} is not UTF-8 text (invalid byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        )
    })
}

/// Reads a file of one item per line (labels, probe names, concept names).
///
/// The rules, so that every item survives line-oriented output unchanged: lines end with `\n`
/// (or `\r\n`); the last line may end with one newline or none; an empty line anywhere else is an
/// error naming it (a blank line inside a list would shift every item after it), as is an item
/// holding a control character. An empty file is an empty list.
pub fn read_lines(path: &Path, what: &str) -> Result<Vec<String>> {
    let text = read_text(path, what)?;
    let body = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(&text);
    if body.is_empty() {
        return Ok(Vec::new());
    }
    body.split('\n')
        .enumerate()
        .map(|(i, line)| {
            let line = line.strip_suffix('\r').unwrap_or(line);
            ensure!(
                !line.is_empty(),
                "{what} {}: line {} is empty; give one item per line (only the last line may end \
                 with a newline)",
                path.display(),
                i + 1
            );
            check_printable(line, &format!("{what} {}: line {}", path.display(), i + 1))?;
            Ok(line.to_string())
        })
        .collect()
}

/// Refuses a name or label holding a control character (a newline, a tab, an escape): it would
/// break the line- and column-oriented output that prints it. `what` says where it came from.
pub fn check_printable(name: &str, what: &str) -> Result<()> {
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        bail!(
            "{what}: {} holds the control character {:?}; names and labels must be printable",
            excerpt(&format!("{name:?}")),
            c
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(text: &str) -> Result<Vec<String>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("labels.txt");
        fs::write(&path, text).unwrap();
        read_lines(&path, "--labels")
    }

    #[test]
    fn line_lists_accept_one_trailing_newline_and_nothing_blank() {
        assert_eq!(lines_of("a\nb").unwrap(), ["a", "b"]);
        assert_eq!(lines_of("a\nb\n").unwrap(), ["a", "b"]);
        assert_eq!(lines_of("a\r\nb\r\n").unwrap(), ["a", "b"]);
        assert!(lines_of("").unwrap().is_empty());
        assert!(lines_of("\n").unwrap().is_empty());
        let e = format!("{:#}", lines_of("a\n\nb\n").unwrap_err());
        assert!(e.contains("line 2 is empty"), "{e}");
        let e = format!("{:#}", lines_of("a\nb\n\n").unwrap_err());
        assert!(e.contains("line 3 is empty"), "{e}");
        let e = format!("{:#}", lines_of("a\nb\x1b[31m\n").unwrap_err());
        assert!(
            e.contains("line 2") && e.contains("control character"),
            "{e}"
        );
    }

    #[test]
    fn only_regular_files_are_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let e = format!("{:#}", open(dir.path(), "--labels").unwrap_err());
        assert!(e.contains("is a directory"), "{e}");
        let e = format!(
            "{:#}",
            open(Path::new("/dev/zero"), "--logits").unwrap_err()
        );
        assert!(e.contains("character device"), "{e}");
    }
}
