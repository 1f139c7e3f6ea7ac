//! Creating, appending to and compacting an index file.
//!
//! The commit protocol (format-spec.md, "Commit protocol"): an append writes a new segment after
//! the committed end of the file, syncs it, then writes a commit record into the commit slot that
//! is not current and syncs again. A crash before the second sync completes leaves the previous
//! record current; the bytes after its committed end are a torn tail, ignored by readers and
//! overwritten by the next append.

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::ann::AnnOptions;
use crate::collab::{CollabOptions, Observations, ProbeFactors};
use crate::descriptor::{LogitMatrix, normalize_logits};
use crate::error::{Error, Result};
use crate::format::directory::{self, Extent, SectionEntry, SegmentDirectory};
use crate::format::models::{self, ModelSpec};
use crate::format::strings::StringPool;
use crate::format::*;
use crate::format::{
    deleted, descriptors, header, labels, observed, probe_embeddings, probe_factors, probe_names,
};
use crate::reader::RawIndex;
use crate::storage::{FileStorage, LockWait, Storage};

/// Options of [`create`].
#[derive(Debug, Clone)]
pub struct CreateOptions {
    pub probe_set: ProbeSetId,
    pub dtype: Dtype,
    /// One name per probe, in probe order.
    pub probe_names: Option<Vec<String>>,
    /// Row-major `[num_probes, dim]` image embeddings of the probes (for text queries).
    pub probe_embeddings: Option<(Vec<f32>, usize)>,
}

impl CreateOptions {
    /// An f32 index over an anonymous probe set of `num_probes` probes.
    pub fn new(num_probes: u32) -> Self {
        CreateOptions {
            probe_set: ProbeSetId::anonymous(num_probes),
            dtype: Dtype::F32,
            probe_names: None,
            probe_embeddings: None,
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
    let header = StaticHeader {
        probe_set: opts.probe_set,
        dtype: opts.dtype,
    };
    let dir = parent_dir(path);
    let tmp = tempfile::Builder::new()
        .prefix(".probelog-create-")
        .permissions(std::fs::Permissions::from_mode(0o644))
        .tempfile_in(&dir)
        .map_err(|e| Error::io("create a temporary file in", &dir, e))?;
    let file = tmp
        .as_file()
        .try_clone()
        .map_err(|e| Error::io("clone handle of", tmp.path(), e))?;
    let mut storage = FileStorage::new_unshared(file, tmp.path().to_path_buf());
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
fn write_new_file<S: Storage>(
    storage: &mut S,
    header: &StaticHeader,
    content: &SegmentContent<'_>,
    prev_sequence: u64,
    ann: &AnnOptions,
) -> Result<CommitRecord> {
    storage.write_all_at(&header::encode_page(header), 0).map_err(|e| Error::Storage {
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

/// One model to append.
#[derive(Debug, Clone)]
pub struct ModelInput<'a> {
    /// The name results report for this model.
    pub name: String,
    /// Where the model came from (a path, a hub id); free text, may be empty.
    pub source: String,
    /// User key=value pairs.
    pub meta: Vec<(String, String)>,
    /// One class label per logit, or none.
    pub labels: Option<Vec<String>>,
    pub logits: LogitMatrix<'a>,
}

/// Options of [`IndexWriter::add_model`].
#[derive(Debug, Clone, Copy, Default)]
pub struct AppendOptions {
    /// Store constant logits as all-zero descriptors instead of refusing the model.
    pub keep_constant: bool,
    /// The probe set the logits were computed on; refused if it is not the index's.
    pub probe_set: Option<ProbeSetId>,
    /// What to do when a live model already has the new model's name.
    pub existing_name: ExistingName,
}

/// What [`IndexWriter::add_model`] does when a live model (or one staged in the same commit)
/// already has the new model's name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ExistingName {
    /// Refuse the model ([`Error::DuplicateName`]): a name names one live model.
    #[default]
    Refuse,
    /// A new version: the live models of that name are deleted by the same commit that adds
    /// this one, so readers see the old version or the new, never both or neither.
    Replace,
    /// Keep both.
    Keep,
}

/// The committed state's live model names and deletions, read once per writer when a name or
/// a deletion must be checked.
#[derive(Debug, Default)]
struct Catalog {
    /// Live committed models by name.
    names: std::collections::HashMap<String, Vec<u64>>,
    /// Deleted committed models, ascending.
    deleted: Vec<u64>,
}

/// What [`IndexWriter::add_model`] staged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelAdded {
    pub model_id: u64,
    pub first_entry: u64,
    pub logits: u32,
    pub constant_logits: u32,
}

/// What a commit published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitSummary {
    pub sequence: u64,
    pub entries_added: u64,
    pub models_added: u64,
    pub models_deleted: u64,
    pub entry_count: u64,
    pub model_count: u64,
    pub bytes_written: u64,
}

/// The single writer of an index. Holds the writer lock (for files) until dropped. Staged models
/// become visible to readers only at [`IndexWriter::commit`], all together.
pub struct IndexWriter<S: Storage = FileStorage> {
    storage: S,
    header: StaticHeader,
    commit: CommitRecord,
    active_slot: usize,
    pending: Pending,
    collab: CollabOptions,
    ann: AnnOptions,
    /// Built on first use; dropped at each commit.
    catalog: Option<Catalog>,
}

impl IndexWriter<FileStorage> {
    /// Opens the index at `path` for appending, taking the writer lock.
    pub fn open(path: &Path, wait: LockWait) -> Result<Self> {
        let storage = FileStorage::open_locked(path, wait)?;
        remove_stale_compactions(storage.path());
        Self::from_storage(storage)
    }
}

impl<S: Storage> IndexWriter<S> {
    /// Opens a writer over any storage (tests use [`crate::storage::FaultyStorage`]).
    pub fn from_storage(storage: S) -> Result<Self> {
        let len = storage.size().map_err(|e| Error::Storage {
            op: "stat",
            source: e,
        })?;
        if len < HEADER_USED_LEN as u64 {
            let mut head = vec![0u8; len.min(8) as usize];
            storage
                .read_exact_at(&mut head, 0)
                .map_err(|e| Error::Storage {
                    op: "read header",
                    source: e,
                })?;
            return Err(short_header_error(&head, len));
        }
        let mut page = vec![0u8; HEADER_USED_LEN];
        storage
            .read_exact_at(&mut page, 0)
            .map_err(|e| Error::Storage {
                op: "read header",
                source: e,
            })?;
        let header = StaticHeader::decode(&page)?;
        let (_, active_slot, commit) = choose_commit(&page)?;
        if commit.committed_len > len {
            return Err(Error::Truncated {
                what: format!("commit {}", commit.sequence),
                needed: commit.committed_len,
                len,
            });
        }
        // The directory we are about to link to must be intact, and lie after the header page:
        // the next append truncates the file to the committed length and writes after it.
        if commit.committed_len < HEADER_PAGE_LEN {
            return Err(Error::corrupt("the current commit points outside the file"));
        }
        // A writer validates at least what a reader does: every directory of the chain, every
        // section's bounds and every count, not only the newest directory that the next segment
        // links to. Data appended after a state that readers refuse could never be read.
        let bytes = storage.committed_view(commit.committed_len).map_err(|e| Error::Storage {
            op: "map for validation",
            source: e,
        })?;
        RawIndex::with_header_page(&page, bytes)?;
        Ok(IndexWriter {
            storage,
            pending: Pending::new(header.probe_set.num_probes as usize),
            header,
            commit,
            active_slot,
            collab: CollabOptions::default(),
            ann: AnnOptions::default(),
            catalog: None,
        })
    }

    pub fn probe_set(&self) -> ProbeSetId {
        self.header.probe_set
    }

    pub fn dtype(&self) -> Dtype {
        self.header.dtype
    }

    /// Entries committed plus staged.
    pub fn entry_count(&self) -> u64 {
        self.commit.entry_count + self.pending.entries as u64
    }

    /// Models committed plus staged.
    pub fn model_count(&self) -> u64 {
        self.commit.model_count + self.pending.meta.models.len() as u64
    }

    /// The current commit record.
    pub fn commit_record(&self) -> &CommitRecord {
        &self.commit
    }

    pub fn storage(&self) -> &S {
        &self.storage
    }

    pub fn into_storage(self) -> S {
        self.storage
    }

    /// Validates and z-normalizes one model's logits and stages its entries (and, with
    /// [`ExistingName::Replace`], the deletion of the live models of its name).
    pub fn add_model(&mut self, input: ModelInput<'_>, opts: AppendOptions) -> Result<ModelAdded> {
        self.check_input(&input, opts, self.header.probe_set.num_probes as usize)?;
        let l = input.logits.logits();
        let (desc, stats) = normalize_logits(&input.name, &input.logits, opts.keep_constant)?;
        let replaced = self.name_check(&input.name, opts.existing_name)?;
        let constant = stats.iter().filter(|s| s.constant).count() as u32;
        let added = ModelAdded {
            model_id: self.model_count(),
            first_entry: self.entry_count(),
            logits: l as u32,
            constant_logits: constant,
        };
        self.pending.meta.deleted.extend(replaced);
        self.pending.push_model(input, &desc, l);
        Ok(added)
    }

    /// The committed state's names and deletions, read on first use.
    fn catalog(&mut self) -> Result<&Catalog> {
        if self.catalog.is_none() {
            let mut page = vec![0u8; HEADER_USED_LEN];
            self.storage
                .read_exact_at(&mut page, 0)
                .map_err(|e| Error::Storage {
                    op: "read header",
                    source: e,
                })?;
            let view = self
                .storage
                .committed_view(self.commit.committed_len)
                .map_err(|e| Error::Storage {
                    op: "map for reading names",
                    source: e,
                })?;
            let raw = RawIndex::with_header_page(&page, view)?;
            if raw.sequence() != self.commit.sequence {
                return Err(Error::corrupt("the commit changed under the writer lock"));
            }
            let mut catalog = Catalog {
                deleted: raw.deleted_models().to_vec(),
                ..Catalog::default()
            };
            for id in 0..raw.model_count() {
                if !raw.is_model_deleted(id) {
                    catalog.names.entry(raw.model(id)?.name).or_default().push(id);
                }
            }
            self.catalog = Some(catalog);
        }
        Ok(self.catalog.as_ref().expect("just built"))
    }

    /// The live committed models named `name`, less those staged for deletion.
    fn live_named(&mut self, name: &str) -> Result<Vec<u64>> {
        let staged = self.pending.meta.deleted.clone();
        let ids = self.catalog()?.names.get(name).cloned().unwrap_or_default();
        Ok(ids.into_iter().filter(|id| !staged.contains(id)).collect())
    }

    /// Applies `policy` to a new model named `name`: the live models it replaces (none unless
    /// [`ExistingName::Replace`]), or an error.
    fn name_check(&mut self, name: &str, policy: ExistingName) -> Result<Vec<u64>> {
        if policy == ExistingName::Keep {
            return Ok(Vec::new());
        }
        if self.pending.meta.models.iter().any(|m| m.name == name) {
            return Err(Error::DuplicateName {
                name: name.to_string(),
                live_model: None,
            });
        }
        let live = self.live_named(name)?;
        match policy {
            ExistingName::Refuse if !live.is_empty() => Err(Error::DuplicateName {
                name: name.to_string(),
                live_model: Some(live[0]),
            }),
            ExistingName::Replace => Ok(live),
            _ => Ok(Vec::new()),
        }
    }

    /// Stages the deletion of committed model `id`: from the commit on, no search or lookup
    /// returns its entries, and compaction drops them.
    pub fn delete_model(&mut self, id: u64) -> Result<()> {
        if id >= self.commit.model_count {
            return Err(Error::UnknownModel {
                model: format!("id {id}"),
                detail: format!("the index has {} committed models", self.commit.model_count),
            });
        }
        if self.pending.meta.deleted.contains(&id) || self.catalog()?.deleted.binary_search(&id).is_ok()
        {
            return Err(Error::UnknownModel {
                model: format!("id {id}"),
                detail: "it is deleted already".into(),
            });
        }
        self.pending.meta.deleted.push(id);
        Ok(())
    }

    /// Stages the deletion of every live committed model named `name`; returns their ids. No
    /// live model of that name is an error, and nothing is staged.
    pub fn delete_models_named(&mut self, name: &str) -> Result<Vec<u64>> {
        let ids = self.live_named(name)?;
        if ids.is_empty() {
            return Err(Error::UnknownModel {
                model: format!("{name:?}"),
                detail: "no live model has that name".into(),
            });
        }
        self.pending.meta.deleted.extend(&ids);
        Ok(ids)
    }

    /// Checks what every staged model must satisfy; its logits must have `rows` rows.
    fn check_input(&self, input: &ModelInput<'_>, opts: AppendOptions, rows: usize) -> Result<()> {
        if let Some(id) = opts.probe_set
            && id != self.header.probe_set
        {
            return Err(Error::ProbeSetMismatch {
                expected: self.header.probe_set.to_string(),
                actual: id.to_string(),
            });
        }
        if input.name.is_empty() {
            return Err(Error::InvalidInput("a model needs a non-empty name".into()));
        }
        if input.logits.probes() != rows {
            return Err(Error::ProbeCountMismatch {
                what: format!("the logit matrix of model {:?}", input.name),
                expected: rows as u64,
                actual: input.logits.probes() as u64,
            });
        }
        let l = input.logits.logits();
        if u32::try_from(l).is_err() {
            return Err(Error::InvalidInput(format!(
                "model {:?} has {l} logits; at most {} are supported",
                input.name,
                u32::MAX
            )));
        }
        if let Some(labels) = &input.labels
            && labels.len() != l
        {
            return Err(Error::InvalidInput(format!(
                "model {:?} has {l} logits but {} labels were given",
                input.name,
                labels.len()
            )));
        }
        Ok(())
    }

    /// Stages a model that was run on some of the probes only (collaborative probing): row `i`
    /// of `input.logits` is its output for probe `observed[i]` (strictly increasing). Its other
    /// entries are completed at commit from low-rank probe factors: the index's stored factors
    /// when it has them, else factors fitted with `collab` on everything staged in this commit
    /// (which must then hold at least `collab.rank` logits), stored for later appends.
    pub fn add_partial_model(
        &mut self,
        input: ModelInput<'_>,
        observed: &[u32],
        opts: AppendOptions,
        collab: CollabOptions,
    ) -> Result<ModelAdded> {
        let p = self.header.probe_set.num_probes as usize;
        // The row count is checked against `observed` by `Observations::from_logits`.
        self.check_input(&input, opts, input.logits.probes())?;
        let (obs, stats) =
            Observations::from_logits(&input.name, &input.logits, observed, p, opts.keep_constant)?;
        let replaced = self.name_check(&input.name, opts.existing_name)?;
        self.pending.meta.deleted.extend(replaced);
        let added = ModelAdded {
            model_id: self.model_count(),
            first_entry: self.entry_count(),
            logits: obs.logits as u32,
            constant_logits: stats.iter().filter(|s| s.constant).count() as u32,
        };
        self.collab = collab;
        self.pending.push_partial(input, obs);
        Ok(added)
    }

    /// Finds the newest section of `kind` by walking the directory chain through the storage.
    fn stored_section(&self, kind: SectionKind) -> Result<Option<SectionEntry>> {
        let mut next = (self.commit.segment_count > 0).then_some(self.commit.directory);
        let mut upper = self.commit.committed_len;
        while let Some(ext) = next {
            let dir = read_directory(&self.storage, &ext, upper, "segment")?;
            if let Some(s) = dir.sections.iter().find(|s| s.kind == kind as u32) {
                return Ok(Some(*s));
            }
            upper = ext.offset;
            next = dir.prev;
        }
        Ok(None)
    }

    /// The index's stored probe factors and their λ, if any: the factors the next commit
    /// completes partially probed models with.
    pub fn stored_factors(&self) -> Result<Option<(ProbeFactors, f32)>> {
        let Some(sec) = self.stored_section(SectionKind::ProbeFactors)? else {
            return Ok(None);
        };
        if sec.len > self.commit.committed_len {
            return Err(Error::corrupt("the probe factor section is out of place"));
        }
        let mut bytes = vec![0u8; sec.len as usize];
        self.storage
            .read_exact_at(&mut bytes, sec.offset)
            .map_err(|e| Error::Storage {
                op: "read probe factors",
                source: e,
            })?;
        let got = crc32fast::hash(&bytes);
        if got != sec.crc {
            return Err(Error::ChecksumMismatch {
                section: "probe factors".into(),
                expected: sec.crc,
                got,
            });
        }
        probe_factors::decode(&bytes, self.header.probe_set.num_probes as usize, sec.param).map(Some)
    }

    /// Completes staged partial models before a commit, fitting factors if the index has none.
    fn complete_partials(&mut self) -> Result<()> {
        if self.pending.partials.is_empty() {
            return Ok(());
        }
        if let Some((factors, lambda)) = self.stored_factors()? {
            return self.pending.complete_partials(&factors, lambda);
        }
        let p = self.header.probe_set.num_probes as usize;
        let factors = ProbeFactors::fit(p, &self.pending.observations(), &self.collab)?;
        self.pending
            .complete_partials(&factors, self.collab.lambda)?;
        self.pending.meta.probe_factors = Some((factors, self.collab.lambda));
        Ok(())
    }

    /// Stages probe names; they replace earlier ones at the next commit.
    pub fn set_probe_names(&mut self, names: Vec<String>) -> Result<()> {
        self.pending.set_probe_names(names)
    }

    /// Stages probe image embeddings (row-major `[num_probes, dim]`); rows are stored at unit
    /// length. They replace earlier ones at the next commit.
    pub fn set_probe_embeddings(&mut self, embeddings: &[f32], dim: usize) -> Result<()> {
        self.pending.set_probe_embeddings(embeddings, dim)
    }

    /// True when something is staged.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// How commits build the ANN graph of their segment (default: [`AnnOptions::default`]).
    pub fn set_ann_options(&mut self, ann: AnnOptions) -> Result<()> {
        ann.check()?;
        self.ann = ann;
        Ok(())
    }

    /// Writes everything staged as one segment and publishes it. Nothing staged: no change.
    pub fn commit(&mut self) -> Result<CommitSummary> {
        if let Err(e) = self.complete_partials() {
            self.pending = Pending::new(self.header.probe_set.num_probes as usize);
            return Err(e);
        }
        let pending = std::mem::replace(
            &mut self.pending,
            Pending::new(self.header.probe_set.num_probes as usize),
        );
        if pending.is_empty() {
            return Ok(CommitSummary {
                sequence: self.commit.sequence,
                entries_added: 0,
                models_added: 0,
                models_deleted: 0,
                entry_count: self.commit.entry_count,
                model_count: self.commit.model_count,
                bytes_written: 0,
            });
        }
        let before = self.commit;
        // Reclaim a torn tail left by an interrupted append.
        self.storage
            .set_len(before.committed_len)
            .map_err(|e| Error::Storage {
                op: "truncate torn tail",
                source: e,
            })?;
        let commit = match write_segment(
            &mut self.storage,
            &self.header,
            &before,
            &pending.as_content(),
            &self.ann,
        ) {
            Ok(commit) => commit,
            Err(e) => {
                // Nothing points at the partial segment yet: give its space back now (on a full
                // disk it is all the space there is) rather than at the next append. Best effort:
                // the next append truncates to the committed length anyway.
                let _ = self.storage.set_len(before.committed_len);
                return Err(e);
            }
        };
        let slot = 1 - self.active_slot;
        self.catalog = None;
        publish_commit(&mut self.storage, slot, &commit)?;
        self.commit = commit;
        self.active_slot = slot;
        Ok(CommitSummary {
            sequence: commit.sequence,
            entries_added: commit.entry_count - before.entry_count,
            models_added: commit.model_count - before.model_count,
            models_deleted: pending.meta.deleted.len() as u64,
            entry_count: commit.entry_count,
            model_count: commit.model_count,
            bytes_written: commit.committed_len - before.committed_len,
        })
    }
}

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
    // Compaction rewrites every section under fresh checksums: damage it copied would no longer
    // be found. So it checks everything it is about to copy first, as `verify` does.
    let report = raw.verify();
    if let Some(first) = report.problems.first() {
        return Err(Error::Damaged {
            path: path.to_path_buf(),
            first: first.to_string(),
            problems: report.problems.len(),
        });
    }
    // The new file takes the old one's permissions, so compaction changes nobody's access.
    let permissions = locked
        .file()
        .metadata()
        .map_err(|e| Error::io("stat", path, e))?
        .permissions();
    let tmp = tempfile::Builder::new()
        .prefix(&compaction_prefix(path))
        .permissions(permissions)
        .tempfile_in(&dir)
        .map_err(|e| Error::io("create a temporary file in", &dir, e))?;
    let file = tmp
        .as_file()
        .try_clone()
        .map_err(|e| Error::io("clone handle of", tmp.path(), e))?;
    let mut storage = FileStorage::new_unshared(file, tmp.path().to_path_buf());
    let mut meta = snapshot_meta(raw)?;
    let completed = match &opts.refactorize {
        Some(collab) => refactorize(raw, &mut meta, collab)?,
        None => Vec::new(),
    };
    // Deleted models are left out: the live ones are renumbered from 0, in order.
    let kept: Vec<Range<usize>> = meta
        .models
        .iter()
        .map(|m| m.first_entry as usize..(m.first_entry + u64::from(m.logit_count)) as usize)
        .collect();
    let mut next = 0u64;
    for m in &mut meta.models {
        m.first_entry = next;
        next += u64::from(m.logit_count);
    }
    let live_entries = next;
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

// ---------------------------------------------------------------------------------------------
// Segment content and its encoding.

/// Where the descriptor rows of a segment come from.
trait RowSource {
    /// Fills `out` (length = entries of the segment) with probe row `p`.
    fn fill_row(&self, p: usize, out: &mut [f32]) -> Result<()>;
}

/// Everything one segment holds, ready to encode.
struct SegmentContent<'a> {
    entries: u64,
    rows: Option<&'a dyn RowSource>,
    meta: &'a SegmentMeta,
}

/// What a segment holds besides its descriptor rows.
#[derive(Default)]
struct SegmentMeta {
    models: Vec<ModelSpec>,
    /// One label per entry (`None` where a model gave none).
    labels: Vec<Option<String>>,
    any_label: bool,
    probe_names: Option<Vec<String>>,
    probe_embeddings: Option<(Vec<f32>, usize)>,
    /// Per model, the probes it was run on (`None`: all of them).
    observed: Vec<Option<Vec<u32>>>,
    probe_factors: Option<(ProbeFactors, f32)>,
    /// Committed models this segment deletes (tombstones).
    deleted: Vec<u64>,
}

impl SegmentMeta {
    /// The labels to store: none at all when no entry has one.
    fn stored_labels(&self) -> &[Option<String>] {
        if self.any_label { &self.labels } else { &[] }
    }

    fn as_content<'a>(&'a self, entries: u64, rows: &'a dyn RowSource) -> SegmentContent<'a> {
        SegmentContent {
            entries,
            rows: (entries > 0).then_some(rows),
            meta: self,
        }
    }
}

/// Staged appends, probe-major: `rows[p]` holds the staged entries' values for probe `p`.
struct Pending {
    probes: usize,
    /// Empty until the first model is staged: the probe count comes from the file header, and
    /// opening a writer must not allocate by it.
    rows: Vec<Vec<f32>>,
    entries: usize,
    /// Partially observed models: their first column and observations, completed at commit.
    partials: Vec<(usize, Observations)>,
    meta: SegmentMeta,
}

impl Pending {
    fn new(probes: usize) -> Self {
        Pending {
            probes,
            rows: Vec::new(),
            entries: 0,
            partials: Vec::new(),
            meta: SegmentMeta::default(),
        }
    }

    fn is_empty(&self) -> bool {
        let m = &self.meta;
        m.models.is_empty()
            && m.deleted.is_empty()
            && m.probe_names.is_none()
            && m.probe_embeddings.is_none()
            && m.probe_factors.is_none()
    }

    /// Stages a partially observed model: its columns are reserved now (so entry ids are fixed)
    /// and filled at commit, once probe factors are known.
    fn push_partial(&mut self, input: ModelInput<'_>, obs: Observations) {
        let first = self.entries;
        let zeros = vec![0f32; self.probes * obs.logits];
        let observed = obs.observed.clone();
        self.push_model(input, &zeros, obs.logits);
        *self.meta.observed.last_mut().expect("just pushed") = Some(observed);
        self.partials.push((first, obs));
    }

    /// Completes the staged partial models with `factors`.
    fn complete_partials(&mut self, factors: &ProbeFactors, lambda: f32) -> Result<()> {
        for (first, obs) in std::mem::take(&mut self.partials) {
            let desc = factors.impute(&obs, lambda)?;
            for (p, row) in self.rows.iter_mut().enumerate() {
                for j in 0..obs.logits {
                    row[first + j] = desc[j * self.probes + p];
                }
            }
        }
        Ok(())
    }

    /// Staged models as observations for fitting factors: partial ones as observed, complete
    /// ones with all their probes.
    fn observations(&self) -> Vec<Observations> {
        let mut out: Vec<Observations> = self.partials.iter().map(|(_, o)| o.clone()).collect();
        for (model, observed) in self.meta.models.iter().zip(&self.meta.observed) {
            if observed.is_none() {
                let (a, l) = (model.first_entry as usize, model.logit_count as usize);
                let mut desc = Vec::with_capacity(l * self.probes);
                for j in a..a + l {
                    desc.extend(self.rows.iter().map(|row| row[j]));
                }
                out.push(Observations::complete(self.probes, desc));
            }
        }
        out
    }

    /// `desc` is entry-major: `l` runs of `num_probes` values.
    fn push_model(&mut self, input: ModelInput<'_>, desc: &[f32], l: usize) {
        let p = self.probes;
        if self.rows.is_empty() {
            self.rows = vec![Vec::new(); p];
        }
        for (r, row) in self.rows.iter_mut().enumerate() {
            row.extend((0..l).map(|j| desc[j * p + r]));
        }
        self.meta.models.push(ModelSpec {
            first_entry: self.entries as u64,
            logit_count: l as u32,
            name: input.name,
            source: input.source,
            meta: input.meta,
        });
        match input.labels {
            Some(labels) => {
                self.meta.any_label = true;
                self.meta.labels.extend(labels.into_iter().map(Some));
            }
            None => self.meta.labels.extend(std::iter::repeat_n(None, l)),
        }
        self.meta.observed.push(None);
        self.entries += l;
    }

    fn set_probe_names(&mut self, names: Vec<String>) -> Result<()> {
        if names.len() != self.probes {
            return Err(Error::ProbeCountMismatch {
                what: "the probe name list".into(),
                expected: self.probes as u64,
                actual: names.len() as u64,
            });
        }
        self.meta.probe_names = Some(names);
        Ok(())
    }

    fn set_probe_embeddings(&mut self, emb: &[f32], dim: usize) -> Result<()> {
        let p = self.probes;
        if dim == 0 || !emb.len().is_multiple_of(dim) {
            return Err(Error::InvalidInput(format!(
                "probe embeddings: {} values do not form rows of dimension {dim}",
                emb.len()
            )));
        }
        if emb.len() / dim != p {
            return Err(Error::ProbeCountMismatch {
                what: "the probe embedding matrix".into(),
                expected: p as u64,
                actual: (emb.len() / dim) as u64,
            });
        }
        let mut out = emb.to_vec();
        for (r, row) in out.chunks_exact_mut(dim).enumerate() {
            if let Some((c, &x)) = row.iter().enumerate().find(|(_, x)| !x.is_finite()) {
                return Err(Error::NonFinite {
                    what: format!("probe embeddings, column {c}"),
                    row: r,
                    value: x,
                });
            }
            let norm = row
                .iter()
                .map(|&x| f64::from(x).powi(2))
                .sum::<f64>()
                .sqrt();
            if norm == 0.0 {
                return Err(Error::InvalidInput(format!(
                    "probe embeddings: row {r} is all zeros"
                )));
            }
            row.iter_mut()
                .for_each(|x| *x = (f64::from(*x) / norm) as f32);
        }
        self.meta.probe_embeddings = Some((out, dim));
        Ok(())
    }

    fn as_content(&self) -> SegmentContent<'_> {
        self.meta.as_content(self.entries as u64, self)
    }
}

impl RowSource for Pending {
    fn fill_row(&self, p: usize, out: &mut [f32]) -> Result<()> {
        out.copy_from_slice(&self.rows[p]);
        Ok(())
    }
}

/// The descriptor rows of a snapshot, with some models' columns replaced, and only the columns
/// of the models kept.
struct SnapshotRows<'a, D: AsRef<[u8]>> {
    raw: &'a RawIndex<D>,
    /// (first entry, logits, entry-major descriptors) of models whose columns are replaced.
    replaced: &'a [(u64, usize, Vec<f32>)],
    /// The entries to keep, in order (`None`: all of them).
    kept: Option<&'a [Range<usize>]>,
}

impl<D: AsRef<[u8]>> RowSource for SnapshotRows<'_, D> {
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
    fn fill_all(&self, p: usize, out: &mut [f32]) -> Result<()> {
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
fn refactorize<D: AsRef<[u8]>>(
    raw: &RawIndex<D>,
    meta: &mut SegmentMeta,
    collab: &CollabOptions,
) -> Result<Vec<(u64, usize, Vec<f32>)>> {
    let p = raw.num_probes();
    let mut observations = Vec::with_capacity(meta.models.len());
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
    let factors = ProbeFactors::fit(p, &observations, collab)?;
    let completed = partial
        .into_iter()
        .map(|(first, i)| {
            let obs = &observations[i];
            Ok((first, obs.logits, factors.impute(obs, collab.lambda)?))
        })
        .collect::<Result<Vec<_>>>()?;
    meta.probe_factors = Some((factors, collab.lambda));
    Ok(completed)
}

/// The metadata of a snapshot's live models, for compaction (their `first_entry` still the
/// snapshot's); descriptor rows are read by [`SnapshotRows`].
fn snapshot_meta<D: AsRef<[u8]>>(raw: &RawIndex<D>) -> Result<SegmentMeta> {
    let mut meta = SegmentMeta {
        probe_names: raw.probe_names()?,
        probe_embeddings: raw.probe_embeddings()?.map(|(e, d)| (e.to_vec(), d)),
        probe_factors: raw.probe_factors()?,
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

/// Appends `content` as a new segment at the committed end of `prev` and syncs it.
/// Returns the commit record that publishes it (not yet written).
fn write_segment<S: Storage>(
    storage: &mut S,
    header: &StaticHeader,
    prev: &CommitRecord,
    content: &SegmentContent<'_>,
    ann: &AnnOptions,
) -> Result<CommitRecord> {
    let p = header.probe_set.num_probes as usize;
    // The writer links to the last directory only and does not walk the chain, so the counters of
    // a damaged commit record reach here unchecked: refuse rather than wrap (a wrapped sequence
    // would make the older commit slot current, losing this commit).
    let limits = || {
        Error::corrupt(format!(
            "commit {} has counters at their limits; the index is damaged",
            prev.sequence
        ))
    };
    let sequence = prev.sequence.checked_add(1).ok_or_else(limits)?;
    let segment_count = prev.segment_count.checked_add(1).ok_or_else(limits)?;
    let entry_count = prev
        .entry_count
        .checked_add(content.entries)
        .ok_or_else(limits)?;
    let model_count = (prev.model_count)
        .checked_add(content.meta.models.len() as u64)
        .ok_or_else(limits)?;
    let mut w = SegmentWriter {
        storage,
        cursor: align_up(prev.committed_len, ALIGN)
            .ok_or_else(|| Error::corrupt("file length overflows"))?,
        sections: Vec::new(),
    };

    if let Some(rows) = content.rows {
        let n = content.entries as usize;
        let stride = descriptors::stride(content.entries) as usize;
        w.descriptors(rows, p, n, stride, header.dtype)?;
        if ann.wants_graph(n, p) {
            let graphs = crate::ann::build_graphs(p, n, &mut |r, out| rows.fill_row(r, out), ann)?;
            // One graph keeps the AnnGraph kind; the parts of a larger segment carry their
            // first entry, and readers that predate them skip them and scan.
            let kind = if graphs.len() == 1 {
                SectionKind::AnnGraph
            } else {
                SectionKind::AnnGraphPart
            };
            for (first, graph) in &graphs {
                w.section(kind, &graph.encode()?, *first as u64)?;
            }
        }
    }

    let mut strings = StringPool::default();
    let meta = content.meta;
    if !meta.models.is_empty() {
        let (table, records) = models::encode(&meta.models, &mut strings)?;
        w.section(SectionKind::Models, &table, 0)?;
        let stored_labels = meta.stored_labels();
        if !stored_labels.is_empty() {
            let bytes = labels::encode(stored_labels, &mut strings)?;
            w.section(SectionKind::EntryLabels, &bytes, 0)?;
        }
        if !records.is_empty() {
            w.section(SectionKind::ModelMeta, &records, 0)?;
        }
        if meta.observed.iter().any(Option::is_some) {
            let (bitmaps, per_model) = observed::encode(&meta.observed, header.probe_set.num_probes);
            w.section(SectionKind::ObservedProbes, &bitmaps, per_model)?;
        }
    }
    if let Some(names) = &meta.probe_names {
        let refs = probe_names::encode(names, &mut strings)?;
        w.section(SectionKind::ProbeNames, &refs, 0)?;
    }
    if !strings.bytes().is_empty() {
        w.section(SectionKind::Strings, strings.bytes(), 0)?;
    }
    if let Some((emb, dim)) = &meta.probe_embeddings {
        w.section(
            SectionKind::ProbeEmbeddings,
            probe_embeddings::encode(emb),
            *dim as u64,
        )?;
    }
    if let Some((factors, lambda)) = &meta.probe_factors {
        w.section(
            SectionKind::ProbeFactors,
            &probe_factors::encode(factors, *lambda),
            factors.rank as u64,
        )?;
    }
    if !meta.deleted.is_empty() {
        let (bytes, count) = deleted::encode(&meta.deleted, prev.model_count)?;
        w.section(SectionKind::DeletedModels, &bytes, count)?;
    }

    let prev_dir = (prev.segment_count > 0).then_some(prev.directory);
    let dir = SegmentDirectory {
        number: prev.segment_count,
        first_entry: prev.entry_count,
        entry_count: content.entries,
        first_model: prev.model_count,
        model_count: content.meta.models.len() as u64,
        prev: prev_dir,
        sections: std::mem::take(&mut w.sections),
    };
    let bytes = dir.encode();
    let offset = w.align()?;
    w.write(&bytes)?;
    let committed_len = w.cursor;
    storage_sync(w.storage, "sync segment")?;
    Ok(CommitRecord {
        sequence,
        committed_len,
        directory: Extent {
            offset,
            len: bytes.len() as u64,
            crc: directory::checksum(&bytes),
        },
        segment_count,
        entry_count,
        model_count,
    })
}

/// Reads and decodes the directory at `ext`, which must lie after the header page and end at or
/// before `upper`.
fn read_directory<S: Storage>(
    storage: &S,
    ext: &Extent,
    upper: u64,
    label: &str,
) -> Result<SegmentDirectory> {
    directory::check_reference(ext, upper, label)?;
    let mut bytes = vec![0u8; ext.len as usize];
    storage
        .read_exact_at(&mut bytes, ext.offset)
        .map_err(|e| Error::Storage {
            op: "read directory",
            source: e,
        })?;
    SegmentDirectory::decode(&bytes, ext, label)
}

/// Writes `commit` into `slot` and syncs: the moment the commit becomes durable.
fn publish_commit<S: Storage>(storage: &mut S, slot: usize, commit: &CommitRecord) -> Result<()> {
    storage
        .write_all_at(&commit.encode(), header::slot_offset(slot))
        .map_err(|e| Error::Storage {
            op: "write commit record",
            source: e,
        })?;
    storage_sync(storage, "sync commit record")
}

fn storage_sync<S: Storage>(storage: &mut S, op: &'static str) -> Result<()> {
    storage.sync().map_err(|e| Error::Storage { op, source: e })
}

struct SegmentWriter<'s, S: Storage> {
    storage: &'s mut S,
    cursor: u64,
    sections: Vec<SectionEntry>,
}

impl<S: Storage> SegmentWriter<'_, S> {
    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.storage
            .write_all_at(bytes, self.cursor)
            .map_err(|e| Error::Storage {
                op: "write segment",
                source: e,
            })?;
        self.cursor += bytes.len() as u64;
        Ok(())
    }

    fn align(&mut self) -> Result<u64> {
        self.cursor =
            align_up(self.cursor, ALIGN).ok_or_else(|| Error::corrupt("offset overflow"))?;
        Ok(self.cursor)
    }

    fn section(&mut self, kind: SectionKind, bytes: &[u8], param: u64) -> Result<()> {
        let offset = self.align()?;
        self.write(bytes)?;
        self.sections.push(SectionEntry {
            kind: kind as u32,
            crc: crc32fast::hash(bytes),
            offset,
            len: bytes.len() as u64,
            param,
        });
        Ok(())
    }

    /// Streams the probe-major descriptor matrix, a few MiB at a time.
    fn descriptors(
        &mut self,
        rows: &dyn RowSource,
        p: usize,
        n: usize,
        stride: usize,
        dtype: Dtype,
    ) -> Result<()> {
        let offset = self.align()?;
        let mut crc = crc32fast::Hasher::new();
        let row_bytes = stride * dtype.size() as usize;
        let rows_per_write = (4 << 20) / row_bytes.max(1) + 1;
        let mut buf: Vec<u8> = Vec::with_capacity(rows_per_write.min(p) * row_bytes);
        let mut row = vec![0f32; n];
        let mut scratch = Vec::new();
        for r in 0..p {
            rows.fill_row(r, &mut row)?;
            descriptors::encode_row(&row, stride, dtype, &mut scratch, &mut buf);
            if buf.len() >= rows_per_write * row_bytes || r + 1 == p {
                crc.update(&buf);
                self.write(&buf)?;
                buf.clear();
            }
        }
        self.sections.push(SectionEntry {
            kind: SectionKind::Descriptors as u32,
            crc: crc.finalize(),
            offset,
            len: (p * row_bytes) as u64,
            param: stride as u64,
        });
        Ok(())
    }
}

/// The name prefix of the temporary file that a compaction of `path` writes beside it:
/// `.NAME.compact-` followed by random characters.
fn compaction_prefix(path: &Path) -> String {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    format!(".{name}.compact-")
}

/// Removes what killed compactions of `path` left beside it. Only a writer holding the lock of
/// `path` may call this: a compaction holds that lock from before it creates its temporary file
/// until after it renamed it into place, so every such file found under the lock is stale.
/// Best effort: a file that cannot be removed stays, as it would without this.
fn remove_stale_compactions(path: &Path) {
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

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Makes a rename in `dir` durable.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("sync directory", dir, e))
}

impl<S: Storage> std::fmt::Debug for IndexWriter<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexWriter")
            .field("header", &self.header)
            .field("commit", &self.commit)
            .field("pending_models", &self.pending.meta.models.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reader::Index;
    use crate::search::{Metric, Query, SearchParams};
    use crate::synth::{SynthConfig, SynthZoo};

    fn zoo(models: usize, probes: usize) -> SynthZoo {
        SynthZoo::generate(SynthConfig {
            probes,
            concepts: 40,
            models,
            ..Default::default()
        })
    }

    fn append_zoo(path: &Path, z: &SynthZoo, range: std::ops::Range<usize>) {
        let mut w = IndexWriter::open(path, LockWait::Fail).unwrap();
        for m in &z.models[range] {
            let l = m.concepts.len();
            w.add_model(
                ModelInput {
                    name: m.name.clone(),
                    source: "synthetic".into(),
                    meta: vec![("seed".into(), "1".into())],
                    labels: Some(m.concepts.iter().map(|c| format!("concept-{c}")).collect()),
                    logits: LogitMatrix::new(&m.logits, z.config.probes, l).unwrap(),
                },
                AppendOptions::default(),
            )
            .unwrap();
        }
        w.commit().unwrap();
    }

    #[test]
    fn create_append_search_compact_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.plog");
        let z = zoo(12, 100);
        create(&path, &CreateOptions::new(100)).unwrap();
        assert!(matches!(
            create(&path, &CreateOptions::new(100)),
            Err(Error::AlreadyExists { .. })
        ));
        append_zoo(&path, &z, 0..5);
        append_zoo(&path, &z, 5..12);
        let idx = Index::open(&path).unwrap();
        let total: usize = z.models.iter().map(|m| m.concepts.len()).sum();
        assert_eq!(idx.entry_count() as usize, total);
        assert_eq!(idx.model_count(), 12);
        assert_eq!(idx.segment_count(), 3);
        let m7 = idx.model(7).unwrap();
        assert_eq!(m7.name, z.models[7].name);
        assert_eq!(m7.meta, vec![("seed".to_string(), "1".to_string())]);
        let e = m7.first_entry + 1;
        let info = idx.entry(e).unwrap();
        assert_eq!((info.model_id, info.logit), (7, 1));
        assert_eq!(
            info.label.unwrap(),
            format!("concept-{}", z.models[7].concepts[1])
        );
        let hits = idx
            .search(&Query::Entry(e), &SearchParams::default())
            .unwrap();
        assert_eq!(hits[0].entry, Some(e));
        assert!(hits[0].score.abs() < 1e-6);
        let hits = idx
            .search(
                &Query::Entry(e),
                &SearchParams {
                    exclude_same_model: true,
                    grouping: crate::Grouping::PerModel,
                    ..Default::default()
                },
            )
            .unwrap();
        assert!(hits.iter().all(|h| h.model_id != 7));
        let models: std::collections::HashSet<_> = hits.iter().map(|h| h.model_id).collect();
        assert_eq!(models.len(), hits.len());
        for (metric, grouping) in [
            (Metric::Full, crate::Grouping::Entries),
            (Metric::Blend, crate::Grouping::ModelMean),
        ] {
            let hits = idx
                .search(
                    &Query::Entry(e),
                    &SearchParams {
                        metric,
                        grouping,
                        ..Default::default()
                    },
                )
                .unwrap();
            assert!(!hits.is_empty());
        }
        assert!(idx.verify().is_ok(), "{:?}", idx.verify());
        let before = idx
            .search(&Query::Entry(e), &SearchParams::default())
            .unwrap();
        let summary = compact(&path, LockWait::Fail).unwrap();
        assert_eq!(summary.segments_before, 3);
        // The old snapshot still reads; a fresh open sees one segment with the same results.
        assert_eq!(
            idx.search(&Query::Entry(e), &SearchParams::default())
                .unwrap(),
            before
        );
        let fresh = Index::open(&path).unwrap();
        assert_eq!(fresh.segment_count(), 1);
        assert_eq!(
            fresh
                .search(&Query::Entry(e), &SearchParams::default())
                .unwrap(),
            before
        );
        assert!(fresh.verify().is_ok());
    }
}

#[cfg(test)]
mod edge_tests {
    use super::*;
    use crate::reader::Index;

    #[test]
    fn empty_probe_names_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.plog");
        let mut opts = CreateOptions::new(2);
        opts.probe_names = Some(vec![String::new(), String::new()]);
        create(&path, &opts).unwrap();
        let idx = Index::open(&path).unwrap();
        assert_eq!(
            idx.probe_names().unwrap(),
            Some(vec![String::new(), String::new()])
        );
        assert!(idx.verify().is_ok());
    }

    #[test]
    fn compaction_keeps_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.plog");
        create(&path, &CreateOptions::new(4)).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o644 & !umask()
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        compact(&path, LockWait::Fail).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o640
        );
    }

    #[test]
    fn huge_top_returns_every_entry_without_huge_allocation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.plog");
        create(&path, &CreateOptions::new(3)).unwrap();
        let mut w = IndexWriter::open(&path, LockWait::Fail).unwrap();
        let logits = [1.0, 2.0, 3.0, 1.0, 2.0, 1.0];
        w.add_model(
            ModelInput {
                name: "m".into(),
                source: String::new(),
                meta: vec![],
                labels: None,
                logits: LogitMatrix::new(&logits, 3, 2).unwrap(),
            },
            AppendOptions::default(),
        )
        .unwrap();
        w.commit().unwrap();
        let idx = Index::open(&path).unwrap();
        let params = crate::SearchParams {
            top: usize::MAX,
            ..Default::default()
        };
        let hits = idx.search(&crate::Query::Entry(0), &params).unwrap();
        assert_eq!(hits.len(), 2);
    }

    fn umask() -> u32 {
        // Read the process umask from a file created with mode 0o777.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m");
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o777)
            .open(&p)
            .unwrap();
        !std::fs::metadata(&p).unwrap().permissions().mode() & 0o777
    }
    use std::os::unix::fs::OpenOptionsExt;
}
