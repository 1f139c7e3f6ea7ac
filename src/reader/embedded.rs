//! The probe set embedded in an index (format-spec.md, "EmbeddedProbeSet"): the `.pset` file's
//! bytes as stored, and the probe set they hold.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use crate::error::{Error, Result};
use crate::format::embedded_probes;
use crate::probe_set::ProbeSet;

use super::RawIndex;

impl<D: AsRef<[u8]>> RawIndex<D> {
    /// The embedded probe set file's bytes, exactly as they were embedded, or `None` when the
    /// index holds none. Open checked that they state the index's probe-set identity, not yet
    /// that their content matches it: [`RawIndex::embedded_probe_set`] and verify do.
    pub fn embedded_probe_set_bytes(&self) -> Option<&[u8]> {
        let s = self.embedded_probes?;
        let sec = self.segments[s].embedded_probes.expect("recorded at open");
        Some(self.section_bytes(&sec))
    }

    /// The embedded probe set, parsed and checked completely (its fingerprint recomputed over
    /// its content, so this costs a pass over its pixels), or `None` when the index holds none.
    /// Its identity is the index's ([`RawIndex::probe_set`]).
    pub fn embedded_probe_set(&self) -> Result<Option<ProbeSet>> {
        self.embedded_probe_set_bytes()
            .map(|bytes| embedded_probes::decode(bytes, self.probe_set()))
            .transpose()
    }

    /// The segment that holds the embedded probe set.
    pub(crate) fn embedded_probe_set_segment(&self) -> Option<usize> {
        self.embedded_probes
    }
}

impl super::Index {
    /// Writes the embedded probe set out as a probe set file at `out`, byte for byte, after
    /// checking it completely (a damaged copy is never written). The file is written beside
    /// `out`, synced and renamed into place, then the directory is synced, so `out` is either
    /// the complete file or as it was. Refuses an `out` that is the index file itself (by device
    /// and inode, whatever the spelling: symlinks and hard links included), an existing `out`
    /// unless `replace` ([`Error::AlreadyExists`]), and an index that holds no probe set.
    pub fn write_embedded_probe_set(&self, out: &Path, replace: bool) -> Result<ProbeSet> {
        let Some(set) = self.embedded_probe_set()? else {
            return Err(Error::InvalidInput(format!(
                "{} holds no embedded probe set",
                self.path().display()
            )));
        };
        let id = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
        if id(out).is_some() && id(out) == id(self.path()) {
            return Err(Error::InvalidInput(format!(
                "{} is the index file itself; write the probe set to a path of its own",
                out.display()
            )));
        }
        let bytes = self.embedded_probe_set_bytes().expect("checked above");
        write_file(out, bytes, replace)?;
        Ok(set)
    }
}

/// Writes `bytes` to a temporary file beside `path`, syncs it, renames it onto `path` (without
/// `replace`, only where nothing exists: a file that appeared meanwhile is kept) and syncs the
/// directory.
fn write_file(path: &Path, bytes: &[u8], replace: bool) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !replace && std::fs::symlink_metadata(path).is_ok() {
        return Err(Error::AlreadyExists {
            path: path.to_path_buf(),
        });
    }
    let mut tmp = tempfile::Builder::new()
        .prefix(".pset-")
        .permissions(std::fs::Permissions::from_mode(0o644))
        .tempfile_in(dir)
        .map_err(|e| Error::io("create a temporary file in", dir, e))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| Error::io("write", tmp.path().to_path_buf(), e))?;
    let persisted = if replace {
        tmp.persist(path).map(drop)
    } else {
        tmp.persist_noclobber(path).map(drop)
    };
    persisted.map_err(|e| match e.error.kind() {
        std::io::ErrorKind::AlreadyExists => Error::AlreadyExists {
            path: path.to_path_buf(),
        },
        _ => Error::io("rename into place", path, e.error),
    })?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("sync directory", dir, e))
}
