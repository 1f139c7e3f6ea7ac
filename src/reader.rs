//! Reading an index: [`RawIndex`] over any byte container, and [`Index`], a memory-mapped file.
//!
//! Opening checks the header, picks the current commit record and walks the segment directories,
//! checking each section's bounds, alignment and size against its counts. That costs time in
//! proportion to the number of segments, not to the number of entries. Section checksums are read
//! only by [`RawIndex::verify`]; the per-model tables are checked the first time a segment's models
//! are used.

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use memmap2::Mmap;

use crate::error::{Error, Result};
use crate::format::descriptors;
use crate::format::directory::{self, Extent, SectionEntry, SegmentDirectory};
use crate::format::models::{self, ModelTable};
use crate::format::strings::{StrError, StrRef};
use crate::format::*;
use crate::format::{deleted, labels, observed, probe_embeddings, probe_factors, probe_names};
pub use crate::format::descriptors::{DescriptorRows, RowData};

/// A validated view of one segment.
#[derive(Debug)]
pub(crate) struct Segment {
    pub dir: SegmentDirectory,
    pub extent: Extent,
    pub descriptors: Option<SectionEntry>,
    pub models: Option<SectionEntry>,
    pub labels: Option<SectionEntry>,
    pub meta: Option<SectionEntry>,
    pub strings: Option<SectionEntry>,
    pub probe_names: Option<SectionEntry>,
    pub probe_embeddings: Option<SectionEntry>,
    pub probe_factors: Option<SectionEntry>,
    pub observed: Option<SectionEntry>,
    pub deleted: Option<SectionEntry>,
    /// The segment's ANN graphs in entry order: one AnnGraph section, or the AnnGraphPart
    /// sections whose ranges tile the segment (checked at open).
    pub ann_graphs: Vec<SectionEntry>,
    models_checked: OnceLock<Result<(), String>>,
}

/// Metadata of one model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    pub id: u64,
    pub name: String,
    pub source: String,
    pub meta: Vec<(String, String)>,
    pub first_entry: u64,
    pub logit_count: u32,
}

impl ModelInfo {
    /// The global ids of the model's entries.
    pub fn entry_range(&self) -> Range<u64> {
        self.first_entry..self.first_entry + u64::from(self.logit_count)
    }
}

/// Metadata of one entry (one logit of one model).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryInfo {
    pub id: u64,
    pub model_id: u64,
    pub model: String,
    pub logit: u32,
    pub label: Option<String>,
}

/// An index over any byte container `D` (an mmap, a `Vec`, a slice). The container's first byte
/// must be 64-byte aligned; [`AlignedBytes`] gives such a buffer.
pub struct RawIndex<D> {
    data: D,
    header: StaticHeader,
    slots: [SlotState; 2],
    active_slot: usize,
    commit: CommitRecord,
    pub(crate) segments: Vec<Segment>,
    probe_names: Option<usize>,
    probe_embeddings: Option<usize>,
    probe_factors: Option<usize>,
    /// Ids of the deleted models, ascending (the tombstones of every segment).
    pub(crate) deleted: Vec<u64>,
}

impl<D: AsRef<[u8]>> RawIndex<D> {
    /// Opens an index held entirely in `data`.
    pub fn new(data: D) -> Result<Self> {
        let bytes = data.as_ref();
        let page_len = bytes.len().min(HEADER_USED_LEN);
        let page = bytes[..page_len].to_vec();
        Self::with_header_page(&page, data)
    }

    /// Opens an index whose header page (its first 256 bytes: the static header and the commit
    /// slots) was read separately: the commit slots of a live file change in place, so they are
    /// read with a copy, not through a shared mapping.
    pub fn with_header_page(page: &[u8], data: D) -> Result<Self> {
        let bytes = data.as_ref();
        if !(bytes.as_ptr() as usize).is_multiple_of(ALIGN as usize) {
            return Err(Error::InvalidParameter(
                "index bytes must start at a 64-byte aligned address (use AlignedBytes)".into(),
            ));
        }
        let header = StaticHeader::decode(page)?;
        let (slots, active_slot, commit) = choose_commit(page)?;
        let len = bytes.len() as u64;
        if commit.committed_len > len {
            return Err(Error::Truncated {
                what: format!("commit {}", commit.sequence),
                needed: commit.committed_len,
                len,
            });
        }
        let mut raw = RawIndex {
            data,
            header,
            slots,
            active_slot,
            commit,
            segments: Vec::new(),
            probe_names: None,
            probe_embeddings: None,
            probe_factors: None,
            deleted: Vec::new(),
        };
        raw.load_segments()?;
        Ok(raw)
    }

    fn bytes(&self) -> &[u8] {
        self.data.as_ref()
    }

    /// Walks the directory chain from the current commit back to segment 0.
    fn load_segments(&mut self) -> Result<()> {
        let c = self.commit;
        if c.committed_len < HEADER_PAGE_LEN {
            return Err(Error::corrupt(format!(
                "committed length {} is inside the header page",
                c.committed_len
            )));
        }
        if c.segment_count == 0 {
            return Err(Error::corrupt("the current commit lists no segments"));
        }
        // Each directory takes at least this many bytes, which bounds how many can exist.
        let min_dir = SegmentDirectory::encoded_len(0) as u64;
        if u64::from(c.segment_count) > (c.committed_len - HEADER_PAGE_LEN) / min_dir {
            return Err(Error::corrupt(format!(
                "{} segments cannot fit in {} bytes",
                c.segment_count, c.committed_len
            )));
        }
        // The writer ends every commit with the newest directory: nothing committed lies after it.
        if c.directory.offset.checked_add(c.directory.len) != Some(c.committed_len) {
            return Err(Error::corrupt(format!(
                "the committed length {} is not the end of the newest directory (offset {}, {} bytes)",
                c.committed_len, c.directory.offset, c.directory.len
            )));
        }
        let mut chain = Vec::with_capacity(c.segment_count as usize);
        let mut next = Some(c.directory);
        let mut upper = c.committed_len; // each directory ends at or before this
        while let Some(ext) = next {
            if chain.len() == c.segment_count as usize {
                return Err(Error::corrupt(format!(
                    "the directory chain is longer than the {} segments the commit lists",
                    c.segment_count
                )));
            }
            let label = format!("segment {}", c.segment_count as usize - 1 - chain.len());
            directory::check_reference(&ext, upper, &label)?;
            let bytes = &self.bytes()[ext.offset as usize..(ext.offset + ext.len) as usize];
            let dir = SegmentDirectory::decode(bytes, &ext, &label)?;
            next = dir.prev;
            upper = ext.offset;
            chain.push((dir, ext));
        }
        if chain.len() != c.segment_count as usize {
            return Err(Error::corrupt(format!(
                "the directory chain has {} segments, the commit lists {}",
                chain.len(),
                c.segment_count
            )));
        }
        chain.reverse();
        let mut entries = 0u64;
        let mut models = 0u64;
        let mut lower = HEADER_PAGE_LEN;
        for (i, (dir, ext)) in chain.into_iter().enumerate() {
            let seg = self.check_segment(i, dir, ext, lower, entries, models)?;
            entries += seg.dir.entry_count;
            models += seg.dir.model_count;
            lower = ext.offset + ext.len;
            if seg.probe_names.is_some() {
                self.probe_names = Some(i);
            }
            if seg.probe_embeddings.is_some() {
                self.probe_embeddings = Some(i);
            }
            if seg.probe_factors.is_some() {
                self.probe_factors = Some(i);
            }
            self.segments.push(seg);
        }
        if entries != c.entry_count || models != c.model_count {
            return Err(Error::corrupt(format!(
                "segments hold {entries} entries and {models} models, the commit says {} and {}",
                c.entry_count, c.model_count
            )));
        }
        self.deleted = self.load_tombstones()?;
        Ok(())
    }

    /// The ids of the deleted models, from the tombstones of every segment: each one increasing,
    /// below its segment's first model, and not deleted before. Reads only the tombstones, whose
    /// size is the number of deletions.
    fn load_tombstones(&self) -> Result<Vec<u64>> {
        let mut deleted: Vec<u64> = Vec::new();
        for (i, seg) in self.segments.iter().enumerate() {
            let Some(sec) = &seg.deleted else { continue };
            deleted::merge(self.section_bytes(sec), i, seg.dir.first_model, &mut deleted)?;
        }
        Ok(deleted)
    }

    /// Checks one directory against its neighbours and its sections against their counts.
    fn check_segment(
        &self,
        i: usize,
        dir: SegmentDirectory,
        extent: Extent,
        lower: u64,
        entries_before: u64,
        models_before: u64,
    ) -> Result<Segment> {
        let label = format!("segment {i}");
        if dir.number as usize != i
            || dir.first_entry != entries_before
            || dir.first_model != models_before
        {
            return Err(Error::corrupt(format!(
                "{label}: directory numbering (segment {}, first entry {}, first model {}) does not follow its predecessor",
                dir.number, dir.first_entry, dir.first_model
            )));
        }
        if (dir.entry_count == 0) != (dir.model_count == 0) || dir.model_count > dir.entry_count {
            return Err(Error::corrupt(format!(
                "{label}: {} models cannot hold {} entries",
                dir.model_count, dir.entry_count
            )));
        }
        let mut seg = Segment {
            dir,
            extent,
            descriptors: None,
            models: None,
            labels: None,
            meta: None,
            strings: None,
            probe_names: None,
            probe_embeddings: None,
            probe_factors: None,
            observed: None,
            deleted: None,
            ann_graphs: Vec::new(),
            models_checked: OnceLock::new(),
        };
        let counts = SegmentCounts {
            probes: self.header.probe_set.num_probes,
            dtype: self.header.dtype,
            entries: seg.dir.entry_count,
            models: seg.dir.model_count,
            models_before,
        };
        for s in seg.dir.sections.clone() {
            let name = s.kind_name();
            if s.offset % ALIGN != 0
                || s.offset < lower
                || s.offset
                    .checked_add(s.len)
                    .is_none_or(|end| end > extent.offset)
            {
                return Err(Error::corrupt(format!(
                    "{label}: {name} section (offset {}, {} bytes) lies outside its segment",
                    s.offset, s.len
                )));
            }
            let Some(kind) = SectionKind::from_u32(s.kind) else {
                if s.kind & OPTIONAL_KIND_BIT != 0 {
                    continue;
                }
                return Err(Error::corrupt(format!(
                    "{label}: unknown section kind {:#x} (written by a newer version?)",
                    s.kind
                )));
            };
            let want_len = required_len(kind, &s, &counts)
                .map_err(|what| Error::corrupt(format!("{label}: {what}")))?;
            if want_len != Some(s.len) {
                return Err(Error::corrupt(format!(
                    "{label}: {name} section is {} bytes, its counts need {}",
                    s.len,
                    want_len.map_or("more than 2^64".to_string(), |x| x.to_string())
                )));
            }
            let slot = match kind {
                SectionKind::Descriptors => &mut seg.descriptors,
                SectionKind::Models => &mut seg.models,
                SectionKind::EntryLabels => &mut seg.labels,
                SectionKind::ModelMeta => &mut seg.meta,
                SectionKind::Strings => &mut seg.strings,
                SectionKind::ProbeNames => &mut seg.probe_names,
                SectionKind::ProbeEmbeddings => &mut seg.probe_embeddings,
                SectionKind::ProbeFactors => &mut seg.probe_factors,
                SectionKind::ObservedProbes => &mut seg.observed,
                SectionKind::DeletedModels => &mut seg.deleted,
                SectionKind::AnnGraph | SectionKind::AnnGraphPart => {
                    seg.ann_graphs.push(s);
                    continue;
                }
            };
            if slot.replace(s).is_some() {
                return Err(Error::corrupt(format!("{label}: two {name} sections")));
            }
        }
        let has_entries = seg.dir.entry_count > 0;
        if seg.descriptors.is_some() != has_entries || seg.models.is_some() != has_entries {
            return Err(Error::corrupt(format!(
                "{label}: {} entries but descriptor/model sections {}",
                seg.dir.entry_count,
                if has_entries { "missing" } else { "present" }
            )));
        }
        crate::ann::graph::check_ranges(&label, &mut seg.ann_graphs, seg.dir.entry_count)?;
        // A segment whose strings are all empty has no strings section: every string reference
        // must then be empty, which the reference checks (against a length of 0) enforce.
        Ok(seg)
    }

    pub(crate) fn section_bytes(&self, s: &SectionEntry) -> &[u8] {
        // Bounds were checked at open against the committed length, which fits in `data`.
        &self.bytes()[s.offset as usize..(s.offset + s.len) as usize]
    }

    // ---- Index-level facts --------------------------------------------------------------------

    pub fn probe_set(&self) -> ProbeSetId {
        self.header.probe_set
    }
    pub fn num_probes(&self) -> usize {
        self.header.probe_set.num_probes as usize
    }
    pub fn dtype(&self) -> Dtype {
        self.header.dtype
    }
    pub fn entry_count(&self) -> u64 {
        self.commit.entry_count
    }
    pub fn model_count(&self) -> u64 {
        self.commit.model_count
    }
    pub fn segment_count(&self) -> u32 {
        self.commit.segment_count
    }
    /// Sequence number of the commit this snapshot shows.
    pub fn sequence(&self) -> u64 {
        self.commit.sequence
    }
    pub fn commit(&self) -> &CommitRecord {
        &self.commit
    }
    pub fn slots(&self) -> ([SlotState; 2], usize) {
        (self.slots, self.active_slot)
    }
    /// Bytes in the container, committed or not.
    pub fn data_len(&self) -> u64 {
        self.bytes().len() as u64
    }
    pub(crate) fn data(&self) -> &[u8] {
        self.bytes()
    }

    /// Where the committed state lies: `(name, offset, len)` of every segment directory
    /// (`"segment 2 directory"`) and every section (`"segment 2 descriptors"`), in segment order.
    /// The names are the ones [`RawIndex::verify`] uses in its problems.
    pub fn section_extents(&self) -> Vec<(String, u64, u64)> {
        let mut out = Vec::new();
        for (i, seg) in self.segments.iter().enumerate() {
            for s in &seg.dir.sections {
                out.push((format!("segment {i} {}", s.kind_name()), s.offset, s.len));
            }
            out.push((
                format!("segment {i} directory"),
                seg.extent.offset,
                seg.extent.len,
            ));
        }
        out
    }

    // ---- Descriptors --------------------------------------------------------------------------

    /// The descriptor matrix of segment `s`, or `None` for a segment without entries.
    pub fn segment_rows(&self, s: usize) -> Result<Option<DescriptorRows<'_>>> {
        let seg = self
            .segments
            .get(s)
            .ok_or_else(|| Error::InvalidParameter(format!("no segment {s}")))?;
        let Some(sec) = &seg.descriptors else {
            return Ok(None);
        };
        descriptors::view(
            self.section_bytes(sec),
            self.header.dtype,
            sec.param,
            seg.dir.entry_count,
        )
        .map(Some)
        .ok_or_else(|| Error::corrupt(format!("segment {s}: descriptors misaligned")))
    }

    /// The ANN graphs of segment `s`, in entry order, each with the first entry (within the
    /// segment) of the range it covers; empty when the segment has none. Checks each graph's
    /// header and length (O(1)); links are checked as a search reads them.
    pub fn segment_graphs(&self, s: usize) -> Result<Vec<GraphPart<'_>>> {
        let seg = self
            .segments
            .get(s)
            .ok_or_else(|| Error::InvalidParameter(format!("no segment {s}")))?;
        let ends = seg
            .ann_graphs
            .iter()
            .skip(1)
            .map(|g| g.param)
            .chain(std::iter::once(seg.dir.entry_count));
        seg.ann_graphs
            .iter()
            .zip(ends)
            .map(|(sec, end)| {
                let view = crate::ann::GraphView::new(
                    self.section_bytes(sec),
                    self.header.probe_set.num_probes,
                    end - sec.param,
                )
                .map_err(|e| match e {
                    Error::Corrupt { what } => Error::corrupt(format!("segment {s}: {what}")),
                    e => e,
                })?;
                Ok(GraphPart {
                    first: sec.param as usize,
                    view,
                })
            })
            .collect()
    }

    /// The graph of segment `s` whose range holds the segment's entry `e`, if any.
    pub fn graph_of_entry(&self, s: usize, e: usize) -> Result<Option<GraphPart<'_>>> {
        Ok(self
            .segment_graphs(s)?
            .into_iter()
            .find(|g| (g.first..g.first + g.view.nodes()).contains(&e)))
    }

    /// Entries of the index covered by an ANN graph.
    pub fn graph_entries(&self) -> u64 {
        self.segments
            .iter()
            .filter(|s| !s.ann_graphs.is_empty())
            .map(|s| s.dir.entry_count)
            .sum()
    }

    /// How many ANN graphs the index holds (a large segment may have several).
    pub fn graph_count(&self) -> usize {
        self.segments.iter().map(|s| s.ann_graphs.len()).sum()
    }

    /// First entry id of each segment, plus the entry count at the end.
    pub fn segment_entry_starts(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.segments.iter().map(|s| s.dir.first_entry).collect();
        v.push(self.entry_count());
        v
    }

    pub(crate) fn segment_of_entry(&self, entry: u64) -> Result<(usize, usize)> {
        if entry >= self.entry_count() {
            return Err(Error::InvalidParameter(format!(
                "entry {entry} does not exist (the index has {} entries)",
                self.entry_count()
            )));
        }
        let s = self
            .segments
            .partition_point(|g| g.dir.first_entry <= entry)
            - 1;
        let seg = &self.segments[s];
        // Segments without entries share their first_entry with the next; skip them.
        debug_assert!(entry < seg.dir.first_entry + seg.dir.entry_count);
        Ok((s, (entry - seg.dir.first_entry) as usize))
    }

    /// The stored (z-normalized) descriptor of `entry`, over all probes.
    /// An entry of a deleted model is an error ([`Error::Deleted`]).
    pub fn descriptor(&self, entry: u64) -> Result<Vec<f32>> {
        self.live_model_of_entry(entry)?;
        let (s, e) = self.segment_of_entry(entry)?;
        let rows = self
            .segment_rows(s)?
            .expect("segment with entries has descriptors");
        // One value from each probe row: start all the loads, then read.
        (0..self.num_probes()).for_each(|p| rows.prefetch(p, e));
        Ok((0..self.num_probes()).map(|p| rows.value(p, e)).collect())
    }

    // ---- Models and entries -------------------------------------------------------------------

    /// The model table of segment `s`, checked on first use: contiguous entry ranges that cover
    /// the segment, string and metadata references in bounds.
    pub(crate) fn model_table(&self, s: usize) -> Result<ModelTable<'_>> {
        let seg = &self.segments[s];
        let Some(sec) = &seg.models else {
            return Ok(ModelTable(&[]));
        };
        let table = ModelTable(self.section_bytes(sec));
        let checked = seg.models_checked.get_or_init(|| {
            table.check(
                s,
                seg.strings.map_or(0, |x| x.len),
                seg.meta.map_or(0, |x| models::meta_records(x.len)),
                seg.dir.entry_count,
            )
        });
        match checked {
            Ok(()) => Ok(table),
            Err(what) => Err(Error::corrupt(what.clone())),
        }
    }

    /// The string `r` of segment `s` names; `what` names it in errors.
    fn string(&self, s: usize, r: StrRef, what: &str) -> Result<Option<String>> {
        let strings = self.segments[s]
            .strings
            .map(|x| self.section_bytes(&x))
            .unwrap_or_default();
        match r.resolve(strings) {
            Ok(text) => Ok(text.map(str::to_string)),
            Err(StrError::OutOfBounds) => Err(Error::corrupt(format!(
                "segment {s}: {what} refers outside the strings section"
            ))),
            Err(StrError::NotUtf8) => Err(Error::corrupt(format!(
                "segment {s}: {what} is not UTF-8"
            ))),
        }
    }

    fn segment_of_model(&self, model: u64) -> Result<(usize, usize)> {
        if model >= self.model_count() {
            return Err(Error::InvalidParameter(format!(
                "model {model} does not exist (the index has {} models)",
                self.model_count()
            )));
        }
        let s = self
            .segments
            .partition_point(|g| g.dir.first_model <= model)
            - 1;
        Ok((s, (model - self.segments[s].dir.first_model) as usize))
    }

    /// Metadata of model `id` (0-based, in append order).
    pub fn model(&self, id: u64) -> Result<ModelInfo> {
        let (s, m) = self.segment_of_model(id)?;
        let r = self.model_table(s)?.get(m);
        let seg = &self.segments[s];
        let name = self.string(s, r.name, "model name")?.unwrap_or_default();
        let source = self
            .string(s, r.source, "model source")?
            .unwrap_or_default();
        let mut meta = Vec::new();
        if let Some(sec) = &seg.meta {
            let recs = self.section_bytes(sec);
            let first = r.meta_first as usize;
            for i in first..first + r.meta_count as usize {
                let (k, v) = models::meta_record(recs, i);
                let k = self.string(s, k, "metadata key")?.unwrap_or_default();
                let v = self.string(s, v, "metadata value")?.unwrap_or_default();
                meta.push((k, v));
            }
        }
        Ok(ModelInfo {
            id,
            name,
            source,
            meta,
            first_entry: seg.dir.first_entry + r.first_entry,
            logit_count: r.logit_count,
        })
    }

    /// Entry ranges of the models of segment `s`, local to the segment.
    pub(crate) fn model_ranges(&self, s: usize) -> Result<Vec<Range<usize>>> {
        Ok(self.model_table(s)?.records().map(|r| r.entries()).collect())
    }

    /// The model that owns `entry`, which must not be deleted.
    pub(crate) fn live_model_of_entry(&self, entry: u64) -> Result<u64> {
        let model = self.model_of_entry(entry)?;
        if self.is_model_deleted(model) {
            return Err(Error::Deleted { entry, model });
        }
        Ok(model)
    }

    /// The model that owns `entry`.
    pub fn model_of_entry(&self, entry: u64) -> Result<u64> {
        let (s, e) = self.segment_of_entry(entry)?;
        let table = self.model_table(s)?;
        let (mut lo, mut hi) = (0usize, table.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            if table.first_entry(mid) as usize <= e {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(self.segments[s].dir.first_model + (lo - 1) as u64)
    }

    /// The class label of `entry`, if one was given.
    pub fn entry_label(&self, entry: u64) -> Result<Option<String>> {
        let (s, e) = self.segment_of_entry(entry)?;
        match &self.segments[s].labels {
            None => Ok(None),
            Some(sec) => self.string(s, labels::label(self.section_bytes(sec), e), "entry label"),
        }
    }

    /// Metadata of `entry`. An entry of a deleted model is an error ([`Error::Deleted`]).
    pub fn entry(&self, entry: u64) -> Result<EntryInfo> {
        let model_id = self.live_model_of_entry(entry)?;
        let model = self.model(model_id)?;
        Ok(EntryInfo {
            id: entry,
            model_id,
            logit: (entry - model.first_entry) as u32,
            model: model.name,
            label: self.entry_label(entry)?,
        })
    }

    // ---- Probe-level sections -----------------------------------------------------------------

    /// Probe names, if the index has them (the latest segment that set them wins).
    pub fn probe_names(&self) -> Result<Option<Vec<String>>> {
        let Some(s) = self.probe_names else {
            return Ok(None);
        };
        let sec = self.segments[s].probe_names.expect("recorded at open");
        probe_names::refs(self.section_bytes(&sec))
            .map(|r| Ok(self.string(s, r, "probe name")?.unwrap_or_default()))
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// Probe image embeddings, row-major `[num_probes, dim]`, rows of unit length.
    pub fn probe_embeddings(&self) -> Result<Option<(&[f32], usize)>> {
        let Some(s) = self.probe_embeddings else {
            return Ok(None);
        };
        let sec = self.segments[s].probe_embeddings.expect("recorded at open");
        let values = probe_embeddings::view(self.section_bytes(&sec))
            .ok_or_else(|| Error::corrupt("probe embeddings misaligned"))?;
        Ok(Some((values, sec.param as usize)))
    }
}

impl<D: AsRef<[u8]>> RawIndex<D> {
    /// Collaborative probing's low-rank probe factors and their regularization, if the index has
    /// them (the latest segment that set them wins).
    pub fn probe_factors(&self) -> Result<Option<(crate::collab::ProbeFactors, f32)>> {
        let Some(s) = self.probe_factors else {
            return Ok(None);
        };
        let sec = self.segments[s].probe_factors.expect("recorded at open");
        probe_factors::decode(self.section_bytes(&sec), self.num_probes(), sec.param)
        .map(Some)
        .map_err(|e| Error::corrupt(format!("segment {s}: {e}")))
    }

    /// The probes model `id` was run on, or `None` when it was run on all of them.
    pub fn observed_probes(&self, id: u64) -> Result<Option<Vec<u32>>> {
        let (s, m) = self.segment_of_model(id)?;
        let Some(sec) = &self.segments[s].observed else {
            return Ok(None);
        };
        let observed = observed::decode(
            self.section_bytes(sec),
            sec.param as usize,
            m,
            self.num_probes(),
        );
        Ok((observed.len() < self.num_probes()).then_some(observed))
    }
}

/// One ANN graph of a segment: the graph over the segment's entries `first..first + nodes`
/// (node `i` is entry `first + i` of the segment).
#[derive(Debug, Clone, Copy)]
pub struct GraphPart<'a> {
    pub first: usize,
    pub view: crate::ann::GraphView<'a>,
}

/// A byte buffer whose first byte is 64-byte aligned, for opening an index from memory.
#[derive(Clone)]
pub struct AlignedBytes {
    blocks: Vec<Block>,
    len: usize,
}

#[derive(Clone, Copy, bytemuck::Zeroable, bytemuck::Pod)]
#[repr(C, align(64))]
struct Block([u8; 64]);

impl AlignedBytes {
    pub fn from_slice(bytes: &[u8]) -> Self {
        let mut blocks = vec![Block([0; 64]); bytes.len().div_ceil(64)];
        bytemuck::cast_slice_mut::<Block, u8>(&mut blocks)[..bytes.len()].copy_from_slice(bytes);
        AlignedBytes {
            blocks,
            len: bytes.len(),
        }
    }
}

impl AsRef<[u8]> for AlignedBytes {
    fn as_ref(&self) -> &[u8] {
        &bytemuck::cast_slice::<Block, u8>(&self.blocks)[..self.len]
    }
}

/// An index file opened read-only through a memory map. Any number of processes may hold one at
/// the same time as one writer appends: this snapshot stays as it was until [`Index::refresh`].
pub struct Index {
    raw: RawIndex<Mmap>,
    path: PathBuf,
    file_id: (u64, u64),
    options: OpenOptions,
}

/// How [`Index::open_with`] maps the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenOptions {
    /// Ask the kernel for 2 MiB pages for the map (Linux `madvise(MADV_HUGEPAGE)`; a hint,
    /// ignored where unsupported). Where transparent huge pages are enabled (`always` or
    /// `madvise`) and the filesystem caches files in large folios (ext4 and xfs on recent
    /// kernels), the parts of the file this process faults into the page cache arrive as 2 MiB
    /// pages, and every process that maps them later shares them. The HNSW walk and the rerank
    /// touch a few thousand random places of a large index per query, and with 4 KiB pages each
    /// of them is a TLB miss: at 1M entries hnsw queries took 7% to 17% less time with 2 MiB
    /// pages (`cargo bench --bench ann -- pages`; README, "HNSW candidate stage"). The cost: a
    /// cold-cache read of one byte brings in 2 MiB. Default: true.
    pub huge_pages: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions { huge_pages: true }
    }
}

/// Asks for huge pages for `map`. Advisory: an error (no THP in this kernel, say) changes
/// nothing but the page size, so it is ignored.
fn advise_huge_pages(map: &Mmap) {
    #[cfg(target_os = "linux")]
    let _ = map.advise(memmap2::Advice::HugePage);
    #[cfg(not(target_os = "linux"))]
    let _ = map;
}

impl Index {
    /// Opens `path` read-only with the default [`OpenOptions`]. Costs the same for any number
    /// of entries.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, OpenOptions::default())
    }

    /// Opens `path` read-only.
    pub fn open_with(path: &Path, options: OpenOptions) -> Result<Self> {
        let file = crate::storage::open_regular_file(path, false)?;
        Self::from_file_with(&file, path, options)
    }

    /// Opens an already open file; `path` is used in messages and by [`Index::refresh`].
    pub fn from_file(file: &File, path: &Path) -> Result<Self> {
        Self::from_file_with(file, path, OpenOptions::default())
    }

    /// [`Index::from_file`] with `options`.
    pub fn from_file_with(file: &File, path: &Path, options: OpenOptions) -> Result<Self> {
        let meta = file.metadata().map_err(|e| Error::io("stat", path, e))?;
        if !meta.is_file() {
            return Err(Error::NotRegularFile {
                path: path.to_path_buf(),
            });
        }
        let len = meta.len();
        if len < HEADER_USED_LEN as u64 {
            let mut head = vec![0u8; len as usize];
            file.read_exact_at(&mut head, 0)
                .map_err(|e| Error::io("read", path, e))?;
            return Err(short_header_error(&head, len));
        }
        let mut page = vec![0u8; HEADER_USED_LEN];
        file.read_exact_at(&mut page, 0)
            .map_err(|e| Error::io("read header of", path, e))?;
        // SAFETY: the map is read-only (shared with other processes' maps of the same file). Writers never modify bytes
        // below a committed length once committed (they only append after it, and compaction
        // renames a new file into place instead of rewriting this one), and never shrink the
        // file below the committed length this snapshot uses; the commit slots, which do change
        // in place, are read above with a copy and never through the map. Another program that
        // rewrites or truncates the file breaks this contract; probelog's own tools never do.
        let map = unsafe { Mmap::map(file) }.map_err(|e| Error::io("map", path, e))?;
        if options.huge_pages {
            advise_huge_pages(&map);
        }
        let raw = RawIndex::with_header_page(&page, map)?;
        Ok(Index {
            raw,
            path: path.to_path_buf(),
            file_id: (meta.dev(), meta.ino()),
            options,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn raw(&self) -> &RawIndex<Mmap> {
        &self.raw
    }

    /// Reopens the file if a writer committed since this snapshot was taken (or compaction
    /// replaced it). Returns whether the snapshot changed.
    pub fn refresh(&mut self) -> Result<bool> {
        let meta = std::fs::metadata(&self.path).map_err(|e| Error::io("stat", &self.path, e))?;
        if (meta.dev(), meta.ino()) == self.file_id {
            let file = crate::storage::open_regular_file(&self.path, false)?;
            let mut page = vec![0u8; HEADER_USED_LEN];
            file.read_exact_at(&mut page, 0)
                .map_err(|e| Error::io("read header of", &self.path, e))?;
            let (_, _, c) = choose_commit(&page)?;
            if c.sequence == self.raw.sequence() {
                return Ok(false);
            }
        }
        *self = Index::open_with(&self.path, self.options)?;
        Ok(true)
    }
}

impl std::ops::Deref for Index {
    type Target = RawIndex<Mmap>;
    fn deref(&self) -> &Self::Target {
        &self.raw
    }
}

impl<D> std::fmt::Debug for RawIndex<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawIndex")
            .field("probe_set", &self.header.probe_set)
            .field("dtype", &self.header.dtype)
            .field("commit", &self.commit)
            .field("segments", &self.segments.len())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for AlignedBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlignedBytes")
            .field("len", &self.len)
            .finish()
    }
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("path", &self.path)
            .field("raw", &self.raw)
            .finish()
    }
}
