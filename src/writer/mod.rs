//! Creating, appending to and compacting an index file: the [`IndexWriter`] and its commit here,
//! [`create`] and [`compact`] in their own modules, a segment's encoding in `segment`.
//!
//! The commit protocol (format-spec.md, "Commit protocol"): an append writes a new segment after
//! the committed end of the file, syncs it, then writes a commit record into the commit slot that
//! is not current and syncs again. A crash before the second sync completes leaves the previous
//! record current; the bytes after its committed end are a torn tail, ignored by readers and
//! overwritten by the next append.

use std::path::Path;

use crate::ann::AnnOptions;
use crate::collab::{CollabOptions, Observations, ProbeFactors};
use crate::descriptor::{LogitMatrix, logit_stats};
use crate::error::{Error, Result};
use crate::format::directory::SectionEntry;
use crate::format::probe_factors;
use crate::format::*;
use crate::reader::RawIndex;
use crate::storage::{FileStorage, LockWait, Storage};

mod compact;
mod create;
mod merge;
mod pending;
mod segment;
mod staged;
#[cfg(test)]
mod tests;

use compact::remove_stale_compactions;
pub use compact::{CompactOptions, CompactSummary, compact, compact_with};
pub use create::{CreateOptions, create};
pub use merge::{MergeOptions, MergeSummary, MergedFactors, merge, merge_into_storage};
use pending::Pending;
use segment::{publish_commit, read_directory, write_segment};

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
            let head = read_head(&storage, len.min(8) as usize)?;
            return Err(short_header_error(&head, len));
        }
        let page = read_head(&storage, HEADER_USED_LEN)?;
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
        let bytes = storage
            .committed_view(commit.committed_len)
            .map_err(|e| Error::Storage {
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
        self.commit.entry_count + self.pending.entries() as u64
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
        let stats = logit_stats(&input.name, &input.logits, opts.keep_constant)?;
        let replaced = self.name_check(&input.name, opts.existing_name)?;
        let constant = stats.iter().filter(|s| s.constant).count() as u32;
        let added = ModelAdded {
            model_id: self.model_count(),
            first_entry: self.entry_count(),
            logits: l as u32,
            constant_logits: constant,
        };
        self.pending.meta.deleted.extend(replaced);
        self.pending.push_model(input, &stats);
        Ok(added)
    }

    /// The committed state's names and deletions, read on first use.
    fn catalog(&mut self) -> Result<&Catalog> {
        if self.catalog.is_none() {
            let page = read_head(&self.storage, HEADER_USED_LEN)?;
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
                    catalog
                        .names
                        .entry(raw.model(id)?.name)
                        .or_default()
                        .push(id);
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
        if self.pending.has_model_named(name) {
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
        if self.pending.meta.deleted.contains(&id)
            || self.catalog()?.deleted.binary_search(&id).is_ok()
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
        probe_factors::decode(&bytes, self.header.probe_set.num_probes as usize, sec.param)
            .map(Some)
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

    /// Stages a probe set file's bytes (`.pset`) to be stored in the index verbatim at the next
    /// commit, so that the index alone is enough to probe models. Refused unless they are a
    /// valid probe set file whose identity is the index's, and when the index holds an embedded
    /// probe set already (it holds at most one, and any other valid one would be the same file).
    pub fn embed_probe_set(&mut self, bytes: Vec<u8>) -> Result<()> {
        if self.pending.meta.embedded_probes.is_some()
            || self
                .stored_section(SectionKind::EmbeddedProbeSet)?
                .is_some()
        {
            return Err(Error::InvalidInput(
                "the index holds an embedded probe set already".into(),
            ));
        }
        self.pending
            .set_embedded_probe_set(bytes, self.header.probe_set)
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

/// The first `len` bytes of `storage` (the header page is read this way, never through a map).
fn read_head<S: Storage>(storage: &S, len: usize) -> Result<Vec<u8>> {
    let mut head = vec![0u8; len];
    storage
        .read_exact_at(&mut head, 0)
        .map_err(|e| Error::Storage {
            op: "read header",
            source: e,
        })?;
    Ok(head)
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
