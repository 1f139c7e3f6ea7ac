//! A segment's content and its encoding: every section through its codec in `crate::format`,
//! then the directory, then the commit record that publishes it.

use std::sync::mpsc;

use crate::ann::AnnOptions;
use crate::collab::ProbeFactors;
use crate::error::{Error, Result};
use crate::format::directory::{self, Extent, SectionEntry, SegmentDirectory};
use crate::format::models::{self, ModelSpec};
use crate::format::strings::StringPool;
use crate::format::*;
use crate::format::{
    deleted, descriptors, header, labels, observed, probe_embeddings, probe_factors, probe_names,
};
use crate::storage::Storage;

/// Where the descriptor rows of a segment come from (read from the thread that encodes them).
pub(super) trait RowSource: Sync {
    /// Fills `out` (length = entries of the segment) with probe row `p`.
    fn fill_row(&self, p: usize, out: &mut [f32]) -> Result<()>;
}

/// Everything one segment holds, ready to encode.
pub(super) struct SegmentContent<'a> {
    pub(super) entries: u64,
    pub(super) rows: Option<&'a dyn RowSource>,
    pub(super) meta: &'a SegmentMeta,
}

/// What a segment holds besides its descriptor rows.
#[derive(Default)]
pub(super) struct SegmentMeta {
    pub(super) models: Vec<ModelSpec>,
    /// One label per entry (`None` where a model gave none).
    pub(super) labels: Vec<Option<String>>,
    pub(super) any_label: bool,
    pub(super) probe_names: Option<Vec<String>>,
    pub(super) probe_embeddings: Option<(Vec<f32>, usize)>,
    /// Per model, the probes it was run on (`None`: all of them).
    pub(super) observed: Vec<Option<Vec<u32>>>,
    pub(super) probe_factors: Option<(ProbeFactors, f32)>,
    /// Committed models this segment deletes (tombstones).
    pub(super) deleted: Vec<u64>,
    /// A probe set file's bytes to embed (checked against the index's identity when staged).
    pub(super) embedded_probes: Option<Vec<u8>>,
}

impl SegmentMeta {
    /// The labels to store: none at all when no entry has one.
    pub(super) fn stored_labels(&self) -> &[Option<String>] {
        if self.any_label { &self.labels } else { &[] }
    }

    pub(super) fn as_content<'a>(
        &'a self,
        entries: u64,
        rows: &'a dyn RowSource,
    ) -> SegmentContent<'a> {
        SegmentContent {
            entries,
            rows: (entries > 0).then_some(rows),
            meta: self,
        }
    }
}

/// Appends `content` as a new segment at the committed end of `prev` and syncs it.
/// Returns the commit record that publishes it (not yet written).
pub(super) fn write_segment<S: Storage>(
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
            let (bitmaps, per_model) =
                observed::encode(&meta.observed, header.probe_set.num_probes);
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
    if let Some(bytes) = &meta.embedded_probes {
        w.section(SectionKind::EmbeddedProbeSet, bytes, 0)?;
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
pub(super) fn read_directory<S: Storage>(
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
pub(super) fn publish_commit<S: Storage>(
    storage: &mut S,
    slot: usize,
    commit: &CommitRecord,
) -> Result<()> {
    storage
        .write_all_at(&commit.encode(), header::slot_offset(slot))
        .map_err(|e| Error::Storage {
            op: "write commit record",
            source: e,
        })?;
    storage_sync(storage, "sync commit record")
}

pub(super) fn storage_sync<S: Storage>(storage: &mut S, op: &'static str) -> Result<()> {
    storage.sync().map_err(|e| Error::Storage { op, source: e })
}

pub(super) struct SegmentWriter<'s, S: Storage> {
    pub(super) storage: &'s mut S,
    pub(super) cursor: u64,
    pub(super) sections: Vec<SectionEntry>,
}

impl<S: Storage> SegmentWriter<'_, S> {
    pub(super) fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.storage
            .write_all_at(bytes, self.cursor)
            .map_err(|e| Error::Storage {
                op: "write segment",
                source: e,
            })?;
        self.cursor += bytes.len() as u64;
        Ok(())
    }

    pub(super) fn align(&mut self) -> Result<u64> {
        self.cursor =
            align_up(self.cursor, ALIGN).ok_or_else(|| Error::corrupt("offset overflow"))?;
        Ok(self.cursor)
    }

    pub(super) fn section(&mut self, kind: SectionKind, bytes: &[u8], param: u64) -> Result<()> {
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

    /// Streams the probe-major descriptor matrix, a few MiB at a time: a second thread reads and
    /// encodes the next rows while this one writes the last ones and starts their writeback.
    pub(super) fn descriptors(
        &mut self,
        rows: &dyn RowSource,
        p: usize,
        n: usize,
        stride: usize,
        dtype: Dtype,
    ) -> Result<()> {
        let offset = self.align()?;
        let row_bytes = stride * dtype.size() as usize;
        let rows_per_write = (4 << 20) / row_bytes.max(1) + 1;
        let mut crc = crc32fast::Hasher::new();
        // Encoded batches one way, emptied buffers back for reuse.
        let (encoded_tx, encoded_rx) = mpsc::sync_channel::<Result<Vec<u8>>>(1);
        let (reuse_tx, reuse_rx) = mpsc::sync_channel::<Vec<u8>>(2);
        std::thread::scope(|scope| {
            scope.spawn(move || {
                let mut row = vec![0f32; n];
                let mut scratch = Vec::new();
                for first in (0..p).step_by(rows_per_write) {
                    let mut buf = reuse_rx.try_recv().unwrap_or_default();
                    buf.clear();
                    let batch = (first..(first + rows_per_write).min(p))
                        .try_for_each(|r| {
                            rows.fill_row(r, &mut row)?;
                            descriptors::encode_row(&row, stride, dtype, &mut scratch, &mut buf);
                            Ok(())
                        })
                        .map(|()| buf);
                    let failed = batch.is_err();
                    // A closed channel: the writer stopped on an error of its own.
                    if encoded_tx.send(batch).is_err() || failed {
                        return;
                    }
                }
            });
            // Returning early drops the receiver, which stops the encoding thread.
            for batch in encoded_rx {
                let buf = batch?;
                crc.update(&buf);
                let at = self.cursor;
                self.write(&buf)?;
                // The section is the bulk of a segment: its disk time overlaps the encoding of
                // the rows that follow instead of waiting for the commit's sync.
                self.storage.start_writeback(at, buf.len() as u64);
                let _ = reuse_tx.try_send(buf);
            }
            Ok::<(), Error>(())
        })?;
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
