//! Merging: the live models of several index files of one probe set joined into a new file,
//! written beside it and renamed into place, as compaction does.
//!
//! Merge reuses compaction's machinery: each input is verified in full ([`check_intact`]), its
//! live models are read with [`snapshot_meta`] and renumbered ([`renumber`]), its descriptor rows
//! are copied through a [`SnapshotRows`] each, and [`Concat`] lays those side by side in one
//! segment. The output has one segment, whose graphs are built per [`AnnOptions`] (an input's
//! graphs cover its own segments and are not copied).
//!
//! Probe-level sections (probe names, probe embeddings, the embedded probe set) are the first
//! input's, each taken from the first input that has it.
//!
//! Collaborative probing: when some input stores probe factors, the merged file stores factors
//! refitted over everything the merged models observed (with the rank and lambda of the first
//! input that has factors), and every stored descriptor is kept as it is; later appends of
//! partially probed models complete them with the factors of the whole. With
//! [`MergeOptions::refactorize`] the partially probed models are also completed again with the
//! new factors, as `compact --refactorize` does.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::ann::AnnOptions;
use crate::collab::{CollabOptions, Observations, ProbeFactors};
use crate::error::{Error, Result};
use crate::format::{CommitRecord, Dtype, StaticHeader};
use crate::reader::Index;
use crate::storage::{FileStorage, LockWait, Storage};

use super::compact::{SnapshotRows, check_intact, complete, observe, renumber, snapshot_meta};
use super::create::{parent_dir, sync_dir, temp_file_in, write_new_file};
use super::segment::{RowSource, SegmentMeta};

/// Options of [`merge`].
#[derive(Debug, Clone, Copy, Default)]
pub struct MergeOptions {
    /// Keep live models of different inputs that share a name (by default such a merge is
    /// refused, as an append of a second model of a live name is).
    pub keep_duplicate_names: bool,
    /// Replace an existing output file (atomically, under its writer lock) instead of refusing.
    pub replace: bool,
    /// Refit the probe factors with these settings and complete the partially probed models
    /// again with them. Without it, factors are refitted (when an input has some) and every
    /// descriptor is kept.
    pub refactorize: Option<CollabOptions>,
    /// ANN graph of the merged segment.
    pub ann: AnnOptions,
    /// How the merged file stores its descriptors; `None` keeps the inputs' dtype. Every row
    /// passes through f32, so `Some(Dtype::F16)` of f32 inputs ships a file half the size, each
    /// value rounded once.
    pub dtype: Option<Dtype>,
}

/// What the merged file holds for collaborative probing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergedFactors {
    /// No input had probe factors, and the merged file has none.
    None,
    /// Factors of this rank refitted over everything observed; descriptors kept.
    Refitted { rank: usize },
    /// Factors of this rank refitted, and the partially probed models completed again.
    Refactorized { rank: usize },
    /// The first input's factors of this rank, kept: too few live logits were left to refit.
    Kept { rank: usize },
}

/// Summary of [`merge`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MergeSummary {
    pub inputs: usize,
    /// Committed bytes of the inputs.
    pub bytes_in: u64,
    pub bytes_written: u64,
    pub entry_count: u64,
    pub model_count: u64,
    /// Deleted models of the inputs, left out.
    pub models_dropped: u64,
    pub factors: MergedFactors,
}

/// Joins the live models of the index files `inputs` (in order) into a new index file `out`.
///
/// Every input is verified in full first. An input of another probe set, another dtype or
/// another probe count, a damaged input, and (unless [`MergeOptions::keep_duplicate_names`]) a
/// live model name that two inputs share are refused with the input's path
/// ([`Error::InputFile`], or [`Error::Damaged`]). `out` must not exist, unless
/// [`MergeOptions::replace`]; it must never be one of the inputs. The file is written beside
/// `out` under a name starting `.NAME.merge-` and renamed into place once synced, so `out`
/// either does not exist or is complete; what a killed merge left is removed by the next merge
/// to the same `out`.
pub fn merge(out: &Path, inputs: &[&Path], opts: &MergeOptions) -> Result<MergeSummary> {
    opts.ann.check()?;
    let indexes = inputs
        .iter()
        .map(|p| Index::open(p).map_err(|e| input_error(p, e)))
        .collect::<Result<Vec<_>>>()?;
    check_output(out, inputs, opts.replace)?;
    let refs: Vec<&Index> = indexes.iter().collect();
    let plan = MergePlan::new(&refs, opts)?;
    // Replacing an index takes its writer lock, so that no append lands in the file that is
    // being replaced; the lock is held until the new file is in place.
    let locked = match std::fs::symlink_metadata(out) {
        Ok(_) => Some(FileStorage::open_locked(out, LockWait::Fail)?),
        Err(_) => None,
    };
    let target = locked
        .as_ref()
        .map_or_else(|| out.to_path_buf(), |l| l.path().to_path_buf());
    let dir = parent_dir(&target);
    remove_stale_merges(&target);
    let permissions = match &locked {
        Some(l) => l
            .file()
            .metadata()
            .map_err(|e| Error::io("stat", &target, e))?
            .permissions(),
        None => std::os::unix::fs::PermissionsExt::from_mode(0o644),
    };
    let (tmp, mut storage) = temp_file_in(&dir, &merge_prefix(&target), permissions)?;
    // The lock on the temporary file tells the next merge to `out` that it is in use.
    tmp.as_file()
        .try_lock()
        .map_err(|e| Error::io("lock", tmp.path(), std::io::Error::other(e.to_string())))?;
    let commit = plan.write(&mut storage)?;
    if locked.is_some() {
        tmp.persist(&target)
            .map_err(|e| Error::io("rename into place", &target, e.error))?;
    } else {
        tmp.persist_noclobber(&target).map_err(|e| {
            if e.error.kind() == std::io::ErrorKind::AlreadyExists {
                Error::AlreadyExists {
                    path: target.clone(),
                }
            } else {
                Error::io("rename into place", &target, e.error)
            }
        })?;
    }
    sync_dir(&dir)?;
    drop(locked);
    Ok(plan.summary(&commit))
}

/// [`merge`] of opened indexes into any storage, which must be empty: the checks and the
/// writing, without the output file's handling. For crash tests through the storage seam.
#[doc(hidden)]
pub fn merge_into_storage<S: Storage>(
    storage: &mut S,
    inputs: &[&Index],
    opts: &MergeOptions,
) -> Result<(MergeSummary, CommitRecord)> {
    opts.ann.check()?;
    let plan = MergePlan::new(inputs, opts)?;
    let commit = plan.write(storage)?;
    Ok((plan.summary(&commit), commit))
}

/// Everything a merge writes, checked and gathered before the output is touched.
struct MergePlan<'a> {
    inputs: &'a [&'a Index],
    header: StaticHeader,
    meta: SegmentMeta,
    /// Per input: the snapshot's entry ranges kept, and the replaced columns.
    kept: Vec<Vec<std::ops::Range<usize>>>,
    replaced: Vec<Vec<(u64, usize, Vec<f32>)>>,
    widths: Vec<usize>,
    entries: u64,
    dropped: u64,
    factors: MergedFactors,
    ann: AnnOptions,
}

impl<'a> MergePlan<'a> {
    fn new(inputs: &'a [&'a Index], opts: &MergeOptions) -> Result<Self> {
        let Some(first) = inputs.first() else {
            return Err(Error::InvalidInput(
                "a merge needs at least one input index".into(),
            ));
        };
        for ix in &inputs[1..] {
            check_compatible(first, ix)?;
        }
        for ix in inputs {
            check_intact(ix.raw(), ix.path())?;
        }
        // The first input that stores factors gives the rank and lambda of the refit.
        let mut stored_factors = None;
        for ix in inputs {
            if let Some(f) = ix.probe_factors().map_err(|e| input_error(ix.path(), e))? {
                stored_factors = Some(f);
                break;
            }
        }
        let fit = match (opts.refactorize, &stored_factors) {
            (Some(c), _) => Some((c, true)),
            (None, Some((f, lambda))) => Some((
                CollabOptions {
                    rank: f.rank,
                    lambda: *lambda,
                    ..CollabOptions::default()
                },
                false,
            )),
            (None, None) => None,
        };
        let mut meta: Option<SegmentMeta> = None;
        let (mut models, mut labels, mut observed) = (Vec::new(), Vec::new(), Vec::new());
        let mut any_label = false;
        let mut kept = Vec::with_capacity(inputs.len());
        let mut widths = Vec::with_capacity(inputs.len());
        let mut observations: Vec<Observations> = Vec::new();
        // Per input: its partially probed models (first entry in its snapshot, observation).
        let mut partial = Vec::with_capacity(inputs.len());
        let mut names: std::collections::HashMap<String, usize> = Default::default();
        let mut dropped = 0;
        for (i, ix) in inputs.iter().enumerate() {
            let raw = ix.raw();
            let mut m = snapshot_meta(raw).map_err(|e| input_error(ix.path(), e))?;
            dropped += raw.deleted_models().len() as u64;
            if !opts.keep_duplicate_names {
                for model in &m.models {
                    match names.get(&model.name) {
                        Some(&j) if j != i => {
                            return Err(input_error(
                                ix.path(),
                                Error::InvalidInput(format!(
                                    "model name {:?} is also a live model of {}; merge with \
                                     keep_duplicate_names (CLI: --keep-duplicate-names) to keep \
                                     both",
                                    model.name,
                                    inputs[j].path().display()
                                )),
                            ));
                        }
                        _ => {
                            names.insert(model.name.clone(), i);
                        }
                    }
                }
            }
            partial.push(match fit {
                Some(_) => observe(raw, &m, &mut observations)?,
                None => Vec::new(),
            });
            let (k, n) = renumber(&mut m, labels.len() as u64);
            kept.push(k);
            widths.push(n as usize);
            any_label |= m.any_label;
            models.append(&mut m.models);
            labels.append(&mut m.labels);
            observed.append(&mut m.observed);
            match &mut meta {
                // The first input's probe-level sections are the merged file's; a later input
                // gives those the first lacks.
                None => meta = Some(m),
                Some(base) => {
                    if base.probe_names.is_none() {
                        base.probe_names = m.probe_names.take();
                    }
                    if base.probe_embeddings.is_none() {
                        base.probe_embeddings = m.probe_embeddings.take();
                    }
                    if base.embedded_probes.is_none() {
                        base.embedded_probes = m.embedded_probes.take();
                    }
                }
            }
        }
        let mut meta = meta.expect("at least one input");
        meta.models = models;
        meta.labels = labels;
        meta.observed = observed;
        meta.any_label = any_label;
        let entries = meta.labels.len() as u64;
        let mut replaced = vec![Vec::new(); inputs.len()];
        meta.probe_factors = None;
        let factors = match fit {
            None => MergedFactors::None,
            Some((collab, refactorize)) => {
                match ProbeFactors::fit(first.num_probes(), &observations, &collab) {
                    Ok(fitted) => {
                        let rank = fitted.rank;
                        if refactorize {
                            for (i, part) in partial.iter().enumerate() {
                                replaced[i] =
                                    complete(&fitted, collab.lambda, part, &observations)?;
                            }
                        }
                        meta.probe_factors = Some((fitted, collab.lambda));
                        if refactorize {
                            MergedFactors::Refactorized { rank }
                        } else {
                            MergedFactors::Refitted { rank }
                        }
                    }
                    // Too few live logits are left to refit (the models that fitted the stored
                    // factors were deleted): the first stored factors are kept as they are.
                    Err(_) if !refactorize => {
                        let (f, lambda) = stored_factors.expect("a refit has stored factors");
                        let rank = f.rank;
                        meta.probe_factors = Some((f, lambda));
                        MergedFactors::Kept { rank }
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        Ok(MergePlan {
            inputs,
            header: StaticHeader {
                probe_set: first.probe_set(),
                dtype: opts.dtype.unwrap_or(first.dtype()),
            },
            meta,
            kept,
            replaced,
            widths,
            entries,
            dropped,
            factors,
            ann: opts.ann,
        })
    }

    fn write<S: Storage>(&self, storage: &mut S) -> Result<CommitRecord> {
        let parts: Vec<SnapshotRows<'_, memmap2::Mmap>> = self
            .inputs
            .iter()
            .enumerate()
            .map(|(i, ix)| SnapshotRows {
                raw: ix.raw(),
                replaced: &self.replaced[i],
                kept: (!ix.deleted_models().is_empty()).then_some(&self.kept[i][..]),
            })
            .collect();
        let rows = Concat {
            parts: parts
                .iter()
                .zip(&self.widths)
                .map(|(p, &w)| (p as &dyn RowSource, w))
                .collect(),
        };
        write_new_file(
            storage,
            &self.header,
            &self.meta.as_content(self.entries, &rows),
            0,
            &self.ann,
        )
    }

    fn summary(&self, commit: &CommitRecord) -> MergeSummary {
        MergeSummary {
            inputs: self.inputs.len(),
            bytes_in: self.inputs.iter().map(|ix| ix.commit().committed_len).sum(),
            bytes_written: commit.committed_len,
            entry_count: commit.entry_count,
            model_count: commit.model_count,
            models_dropped: self.dropped,
            factors: self.factors,
        }
    }
}

/// Descriptor rows laid side by side: each part fills the next `width` entries of a row.
struct Concat<'a> {
    parts: Vec<(&'a dyn RowSource, usize)>,
}

impl RowSource for Concat<'_> {
    fn fill_row(&self, p: usize, out: &mut [f32]) -> Result<()> {
        let mut at = 0;
        for &(part, width) in &self.parts {
            part.fill_row(p, &mut out[at..at + width])?;
            at += width;
        }
        Ok(())
    }
}

/// An error about input `path`, with its path.
fn input_error(path: &Path, e: Error) -> Error {
    match e {
        // These name the file already.
        e @ (Error::Damaged { .. } | Error::Io { .. } | Error::NotRegularFile { .. }) => e,
        e => Error::InputFile {
            path: path.to_path_buf(),
            source: Box::new(e),
        },
    }
}

/// Refuses `ix` unless it can join `first`: the same probe count, probe set and dtype.
fn check_compatible(first: &Index, ix: &Index) -> Result<()> {
    let (a, b) = (first.probe_set(), ix.probe_set());
    let why = if a.num_probes != b.num_probes {
        format!(
            "it has {} probes, {} has {}: only indexes of one probe set merge",
            b.num_probes,
            first.path().display(),
            a.num_probes
        )
    } else if a.fingerprint != b.fingerprint {
        format!(
            "its probe set has fingerprint {}, {} has {}: only indexes of one probe set merge",
            &b.fingerprint_hex()[..16],
            first.path().display(),
            &a.fingerprint_hex()[..16]
        )
    } else if first.dtype() != ix.dtype() {
        format!(
            "it stores {} descriptors, {} stores {}: only indexes of one dtype merge",
            ix.dtype().name(),
            first.path().display(),
            first.dtype().name()
        )
    } else {
        return Ok(());
    };
    Err(input_error(ix.path(), Error::InvalidInput(why)))
}

/// Refuses an output that exists (unless `replace`) or that is one of the inputs (by device and
/// inode, so that another spelling or a link of an input is caught too).
fn check_output(out: &Path, inputs: &[&Path], replace: bool) -> Result<()> {
    let Ok(meta) = std::fs::metadata(out) else {
        if std::fs::symlink_metadata(out).is_ok() && !replace {
            return Err(Error::AlreadyExists {
                path: out.to_path_buf(),
            });
        }
        return Ok(());
    };
    for input in inputs {
        if let Ok(m) = std::fs::metadata(input)
            && (m.dev(), m.ino()) == (meta.dev(), meta.ino())
        {
            return Err(Error::InvalidInput(format!(
                "the output {} is the input {}: a merge writes a new file; give another output \
                 path",
                out.display(),
                input.display()
            )));
        }
    }
    if !replace {
        return Err(Error::AlreadyExists {
            path: out.to_path_buf(),
        });
    }
    if !meta.is_file() {
        return Err(Error::NotRegularFile {
            path: out.to_path_buf(),
        });
    }
    Ok(())
}

/// The name prefix of the temporary file that a merge into `out` writes beside it:
/// `.NAME.merge-` followed by random characters.
fn merge_prefix(out: &Path) -> String {
    let name = out.file_name().unwrap_or_default().to_string_lossy();
    format!(".{name}.merge-")
}

/// Removes what killed merges into `out` left beside it: a merge holds a lock on its temporary
/// file until it renamed it into place, so a file of that name that can be locked is stale.
/// Best effort: a file that cannot be removed stays, as it would without this.
fn remove_stale_merges(out: &Path) {
    let prefix = merge_prefix(out);
    let Ok(entries) = std::fs::read_dir(parent_dir(out)) else {
        return;
    };
    for entry in entries.flatten() {
        let ours = entry.file_name().to_str().is_some_and(|n| {
            n.strip_prefix(prefix.as_str())
                .is_some_and(|rest| !rest.is_empty())
        });
        if !ours || !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let path: PathBuf = entry.path();
        if let Ok(f) = std::fs::File::open(&path)
            && f.try_lock().is_ok()
        {
            let _ = std::fs::remove_file(&path);
        }
    }
}
