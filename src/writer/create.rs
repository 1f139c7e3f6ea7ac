//! Creating an index: a new file with one segment, written beside its destination and renamed
//! into place.

use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::pending::Pending;
use super::segment::{SegmentContent, publish_commit, write_segment};
use crate::ann::AnnOptions;
use crate::error::{Error, Result};
use crate::format::directory::Extent;
use crate::format::header;
use crate::format::*;
use crate::storage::{FileStorage, Storage};

/// Options of [`create`].
#[derive(Debug, Clone)]
pub struct CreateOptions {
    pub probe_set: ProbeSetId,
    pub dtype: Dtype,
    /// One name per probe, in probe order.
    pub probe_names: Option<Vec<String>>,
    /// Row-major `[num_probes, dim]` image embeddings of the probes (for text queries).
    pub probe_embeddings: Option<(Vec<f32>, usize)>,
    /// A probe set file's bytes (`.pset`) to store in the index verbatim, so that the index
    /// alone is enough to probe models; its identity must be `probe_set`.
    pub embedded_probe_set: Option<Vec<u8>>,
}

impl CreateOptions {
    /// An f32 index over an anonymous probe set of `num_probes` probes.
    pub fn new(num_probes: u32) -> Self {
        CreateOptions {
            probe_set: ProbeSetId::anonymous(num_probes),
            dtype: Dtype::F32,
            probe_names: None,
            probe_embeddings: None,
            embedded_probe_set: None,
        }
    }

    /// An f32 index over `set`: its identity and probe names, and with `embed` the set itself
    /// stored in the index.
    pub fn for_probe_set(set: &crate::probe_set::ProbeSet, embed: bool) -> Self {
        CreateOptions {
            probe_set: set.id(),
            dtype: Dtype::F32,
            probe_names: Some(set.names().to_vec()),
            probe_embeddings: None,
            embedded_probe_set: embed.then(|| set.to_bytes()),
        }
    }
}

/// Creates a new, empty index at `path`. The file is written beside its destination and renamed
/// into place, so a crash never leaves a half-made index; an existing file is never replaced.
pub fn create(path: &Path, opts: &CreateOptions) -> Result<()> {
    check_probe_count(opts.probe_set.num_probes)?;
    if path.exists() {
        return Err(Error::AlreadyExists {
            path: path.to_path_buf(),
        });
    }
    let mut pending = Pending::new(opts.probe_set.num_probes as usize);
    if let Some(names) = &opts.probe_names {
        pending.set_probe_names(names.clone())?;
    }
    if let Some((emb, dim)) = &opts.probe_embeddings {
        pending.set_probe_embeddings(emb, *dim)?;
    }
    if let Some(bytes) = &opts.embedded_probe_set {
        pending.set_embedded_probe_set(bytes.clone(), opts.probe_set)?;
    }
    let header = StaticHeader {
        probe_set: opts.probe_set,
        dtype: opts.dtype,
    };
    let dir = parent_dir(path);
    let (tmp, mut storage) = temp_file_in(
        &dir,
        ".probelog-create-",
        std::fs::Permissions::from_mode(0o644),
    )?;
    write_new_file(
        &mut storage,
        &header,
        &pending.as_content(),
        0,
        &AnnOptions::disabled(),
    )?;
    tmp.persist_noclobber(path).map_err(|e| {
        if e.error.kind() == std::io::ErrorKind::AlreadyExists {
            Error::AlreadyExists {
                path: path.to_path_buf(),
            }
        } else {
            Error::io("rename into place", path, e.error)
        }
    })?;
    sync_dir(&dir)?;
    Ok(())
}

/// Writes a complete new index file: header page, one segment, commit record in slot 0.
pub(super) fn write_new_file<S: Storage>(
    storage: &mut S,
    header: &StaticHeader,
    content: &SegmentContent<'_>,
    prev_sequence: u64,
    ann: &AnnOptions,
) -> Result<CommitRecord> {
    storage
        .write_all_at(&header::encode_page(header), 0)
        .map_err(|e| Error::Storage {
            op: "write header",
            source: e,
        })?;
    let empty = CommitRecord {
        sequence: prev_sequence,
        committed_len: HEADER_PAGE_LEN,
        directory: Extent {
            offset: 0,
            len: 0,
            crc: 0,
        },
        segment_count: 0,
        entry_count: 0,
        model_count: 0,
    };
    let commit = write_segment(storage, header, &empty, content, ann)?;
    publish_commit(storage, 0, &commit)?;
    Ok(commit)
}

/// A temporary file in `dir` (named `prefix` and random characters, with `permissions`), to be
/// renamed into place once written, and a storage that writes it.
pub(super) fn temp_file_in(
    dir: &Path,
    prefix: &str,
    permissions: std::fs::Permissions,
) -> Result<(tempfile::NamedTempFile, FileStorage)> {
    let tmp = tempfile::Builder::new()
        .prefix(prefix)
        .permissions(permissions)
        .tempfile_in(dir)
        .map_err(|e| Error::io("create a temporary file in", dir, e))?;
    let file = tmp
        .as_file()
        .try_clone()
        .map_err(|e| Error::io("clone handle of", tmp.path(), e))?;
    let storage = FileStorage::new_unshared(file, tmp.path().to_path_buf());
    Ok((tmp, storage))
}

pub(super) fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Makes a rename in `dir` durable.
pub(super) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("sync directory", dir, e))
}
