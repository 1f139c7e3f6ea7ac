//! Compaction: the live state of an index rewritten as one segment in a new file, renamed over
//! the old one.

use std::ops::Range;
use std::path::Path;

use crate::ann::AnnOptions;
use crate::collab::{CollabOptions, Observations, ProbeFactors};
use crate::error::{Error, Result};
use crate::format::StaticHeader;
use crate::format::models::ModelSpec;
use crate::reader::RawIndex;
use crate::storage::{FileStorage, LockWait, Storage};

use super::create::{parent_dir, sync_dir, temp_file_in, write_new_file};
use super::segment::{RowSource, SegmentMeta};

/// Summary of [`compact`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactSummary {
    pub segments_before: u32,
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub entry_count: u64,
    pub model_count: u64,
}

/// Options of [`compact_with`].
#[derive(Debug, Clone, Copy, Default)]
pub struct CompactOptions {
    /// Refit collaborative probing's probe factors on everything the index observed (every probe
    /// of fully probed models, the observed probes of the others) with these settings, and
    /// complete the partially probed models again with the new factors.
    pub refactorize: Option<CollabOptions>,
    /// ANN graph of the compacted index (one graph over all its entries, when it has at least
    /// `ann.min_entries`).
    pub ann: AnnOptions,
}

/// Rewrites the index at `path` as a single segment in a new file beside it and renames that file
/// into place. Processes that still map the old file keep a valid view of it.
pub fn compact(path: &Path, wait: LockWait) -> Result<CompactSummary> {
    compact_with(path, wait, CompactOptions::default())
}

/// [`compact`], with options.
pub fn compact_with(path: &Path, wait: LockWait, opts: CompactOptions) -> Result<CompactSummary> {
    opts.ann.check()?;
    let locked = FileStorage::open_locked(path, wait)?;
    // The file itself, not a symlink to it: the new file is renamed onto the file, and a link
    // replaced by a regular file would leave its target stale for every other path to it.
    let path = locked.path().to_path_buf();
    let path = path.as_path();
    let bytes_before = locked.size().map_err(|e| Error::io("stat", path, e))?;
    let snapshot = crate::reader::Index::from_file(locked.file(), path)?;
    let raw = snapshot.raw();
    let dir = parent_dir(path);
    remove_stale_compactions(path);
    check_intact(raw, path)?;
    // The new file takes the old one's permissions, so compaction changes nobody's access.
    let permissions = locked
        .file()
        .metadata()
        .map_err(|e| Error::io("stat", path, e))?
        .permissions();
    let (tmp, mut storage) = temp_file_in(&dir, &compaction_prefix(path), permissions)?;
    let mut meta = snapshot_meta(raw)?;
    let completed = match &opts.refactorize {
        Some(collab) => refactorize(raw, &mut meta, collab)?,
        None => Vec::new(),
    };
    let (kept, live_entries) = renumber(&mut meta, 0);
    let header = StaticHeader {
        probe_set: raw.probe_set(),
        dtype: raw.dtype(),
    };
    let rows = SnapshotRows {
        raw,
        replaced: &completed,
        kept: (!raw.deleted_models().is_empty()).then_some(&kept[..]),
    };
    let commit = write_new_file(
        &mut storage,
        &header,
        &meta.as_content(live_entries, &rows),
        raw.sequence(),
        &opts.ann,
    )?;
    tmp.persist(path)
        .map_err(|e| Error::io("rename into place", path, e.error))?;
    sync_dir(&dir)?;
    drop(locked);
    Ok(CompactSummary {
        segments_before: raw.segment_count(),
        bytes_before,
        bytes_after: commit.committed_len,
        entry_count: commit.entry_count,
        model_count: commit.model_count,
    })
}

/// Checks everything a rewrite is about to copy, as `verify` does. A rewrite (compaction, merge)
/// puts every section under fresh checksums, so damage it copied would no longer be found.
pub(super) fn check_intact<D: AsRef<[u8]>>(raw: &RawIndex<D>, path: &Path) -> Result<()> {
    let report = raw.verify();
    match report.problems.first() {
        Some(first) => Err(Error::Damaged {
            path: path.to_path_buf(),
            first: first.to_string(),
            problems: report.problems.len(),
        }),
        None => Ok(()),
    }
}

/// Renumbers the live models of `meta` (from [`snapshot_meta`]) from entry `first` on, in order,
/// as deleted models are left out. Returns the snapshot's entry ranges that they keep and the
/// number of their entries.
pub(super) fn renumber(meta: &mut SegmentMeta, first: u64) -> (Vec<Range<usize>>, u64) {
    let kept: Vec<Range<usize>> = meta
        .models
        .iter()
        .map(|m| m.first_entry as usize..(m.first_entry + u64::from(m.logit_count)) as usize)
        .collect();
    let mut next = first;
    for m in &mut meta.models {
        m.first_entry = next;
        next += u64::from(m.logit_count);
    }
    (kept, next - first)
}

/// The descriptor rows of a snapshot, with some models' columns replaced, and only the columns
/// of the models kept.
pub(super) struct SnapshotRows<'a, D: AsRef<[u8]>> {
    pub(super) raw: &'a RawIndex<D>,
    /// (first entry, logits, entry-major descriptors) of models whose columns are replaced.
    pub(super) replaced: &'a [(u64, usize, Vec<f32>)],
    /// The entries to keep, in order (`None`: all of them).
    pub(super) kept: Option<&'a [Range<usize>]>,
}

impl<D: AsRef<[u8]> + Sync> RowSource for SnapshotRows<'_, D> {
    fn fill_row(&self, p: usize, out: &mut [f32]) -> Result<()> {
        let Some(kept) = self.kept else {
            return self.fill_all(p, out);
        };
        let mut all = vec![0f32; self.raw.entry_count() as usize];
        self.fill_all(p, &mut all)?;
        let mut at = 0;
        for r in kept {
            out[at..at + r.len()].copy_from_slice(&all[r.clone()]);
            at += r.len();
        }
        Ok(())
    }
}

impl<D: AsRef<[u8]>> SnapshotRows<'_, D> {
    /// Row `p` of every entry of the snapshot, the replaced columns replaced.
    pub(super) fn fill_all(&self, p: usize, out: &mut [f32]) -> Result<()> {
        let mut at = 0;
        for s in 0..self.raw.segment_count() as usize {
            let rows = self.raw.segment_rows(s)?;
            let Some(rows) = rows else { continue };
            let n = rows.entries();
            rows.read_row(p, 0..n, &mut out[at..at + n]);
            at += n;
        }
        let probes = self.raw.num_probes();
        for (first, logits, desc) in self.replaced {
            for j in 0..*logits {
                out[*first as usize + j] = desc[j * probes + p];
            }
        }
        Ok(())
    }
}

/// Refits the probe factors on everything `raw` observed and completes its partially probed
/// models again. Returns their new columns, and stores the factors in `meta`.
pub(super) fn refactorize<D: AsRef<[u8]>>(
    raw: &RawIndex<D>,
    meta: &mut SegmentMeta,
    collab: &CollabOptions,
) -> Result<Vec<(u64, usize, Vec<f32>)>> {
    let p = raw.num_probes();
    let mut observations = Vec::with_capacity(meta.models.len());
    let partial = observe(raw, meta, &mut observations)?;
    let factors = ProbeFactors::fit(p, &observations, collab)?;
    let completed = complete(&factors, collab.lambda, &partial, &observations)?;
    meta.probe_factors = Some((factors, collab.lambda));
    Ok(completed)
}

/// Completes the partially probed models `partial` ((first entry, index into `observations`))
/// with `factors`: their new columns, as [`SnapshotRows::replaced`] takes them.
pub(super) fn complete(
    factors: &ProbeFactors,
    lambda: f32,
    partial: &[(u64, usize)],
    observations: &[Observations],
) -> Result<Vec<(u64, usize, Vec<f32>)>> {
    partial
        .iter()
        .map(|&(first, i)| {
            let obs = &observations[i];
            Ok((first, obs.logits, factors.impute(obs, lambda)?))
        })
        .collect()
}

/// Appends to `observations` what `raw` observed of the live models of `meta` (every probe of a
/// fully probed model, the observed probes of the others). Returns the partially probed models
/// as (first entry in the snapshot, index into `observations`).
pub(super) fn observe<D: AsRef<[u8]>>(
    raw: &RawIndex<D>,
    meta: &SegmentMeta,
    observations: &mut Vec<Observations>,
) -> Result<Vec<(u64, usize)>> {
    let p = raw.num_probes();
    let mut partial = Vec::new();
    for (model, observed) in meta.models.iter().zip(&meta.observed) {
        let (first, l) = (model.first_entry, model.logit_count as usize);
        let mut values = Vec::with_capacity(l * p);
        for e in first..first + l as u64 {
            let d = raw.descriptor(e)?;
            match observed {
                None => values.extend(d),
                Some(probes) => {
                    // Observations are z-normalized over their own probes, as at append.
                    let mut sub: Vec<f32> = probes.iter().map(|&q| d[q as usize]).collect();
                    crate::collab::renormalize(&mut sub);
                    values.extend(sub);
                }
            }
        }
        match observed {
            None => observations.push(Observations::complete(p, values)),
            Some(probes) => {
                partial.push((first, observations.len()));
                observations.push(Observations {
                    observed: probes.clone(),
                    logits: l,
                    values,
                });
            }
        }
    }
    Ok(partial)
}

/// The metadata of a snapshot's live models, for compaction (their `first_entry` still the
/// snapshot's); descriptor rows are read by [`SnapshotRows`].
pub(super) fn snapshot_meta<D: AsRef<[u8]>>(raw: &RawIndex<D>) -> Result<SegmentMeta> {
    let mut meta = SegmentMeta {
        probe_names: raw.probe_names()?,
        probe_embeddings: raw.probe_embeddings()?.map(|(e, d)| (e.to_vec(), d)),
        probe_factors: raw.probe_factors()?,
        embedded_probes: raw.embedded_probe_set_bytes().map(<[u8]>::to_vec),
        ..SegmentMeta::default()
    };
    for m in (0..raw.model_count()).filter(|&m| !raw.is_model_deleted(m)) {
        let info = raw.model(m)?;
        meta.observed.push(raw.observed_probes(m)?);
        for e in info.first_entry..info.first_entry + u64::from(info.logit_count) {
            let label = raw.entry_label(e)?;
            meta.any_label |= label.is_some();
            meta.labels.push(label);
        }
        meta.models.push(ModelSpec {
            first_entry: info.first_entry,
            logit_count: info.logit_count,
            name: info.name,
            source: info.source,
            meta: info.meta,
        });
    }
    Ok(meta)
}

/// The name prefix of the temporary file that a compaction of `path` writes beside it:
/// `.NAME.compact-` followed by random characters.
pub(super) fn compaction_prefix(path: &Path) -> String {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    format!(".{name}.compact-")
}

/// Removes what killed compactions of `path` left beside it. Only a writer holding the lock of
/// `path` may call this: a compaction holds that lock from before it creates its temporary file
/// until after it renamed it into place, so every such file found under the lock is stale.
/// Best effort: a file that cannot be removed stays, as it would without this.
pub(super) fn remove_stale_compactions(path: &Path) {
    let prefix = compaction_prefix(path);
    let Ok(entries) = std::fs::read_dir(parent_dir(path)) else {
        return;
    };
    for entry in entries.flatten() {
        let stale = entry.file_name().to_str().is_some_and(|n| {
            n.strip_prefix(prefix.as_str())
                .is_some_and(|rest| !rest.is_empty())
        });
        if stale && entry.file_type().is_ok_and(|t| t.is_file()) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}
