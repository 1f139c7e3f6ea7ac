//! Reading an index: [`RawIndex`] over any byte container (opening, the checks made at open,
//! descriptors and graphs here; models, entries and probe-level sections in `models`), and
//! [`Index`], a memory-mapped file (in `index`).
//!
//! Opening checks the header, picks the current commit record and walks the segment directories,
//! checking each section's bounds, alignment and size against its counts. That costs time in
//! proportion to the number of segments, not to the number of entries. Section checksums are read
//! only by [`RawIndex::verify`]; the per-model tables are checked the first time a segment's models
//! are used.

use std::sync::OnceLock;

use crate::error::{Error, Result};
pub use crate::format::descriptors::{DescriptorRows, RowData};
use crate::format::directory::{self, Extent, SectionEntry, SegmentDirectory};
use crate::format::*;
use crate::format::{deleted, descriptors, embedded_probes};

mod embedded;
mod index;
mod models;

pub use index::{Index, OpenOptions};
pub(crate) use models::ModelRef;
pub use models::{EntryInfo, ModelInfo};

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
    pub embedded_probes: Option<SectionEntry>,
    /// The segment's ANN graphs in entry order: one AnnGraph section, or the AnnGraphPart
    /// sections whose ranges tile the segment (checked at open).
    pub ann_graphs: Vec<SectionEntry>,
    models_checked: OnceLock<Result<(), String>>,
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
    /// The segment that holds the embedded probe set (at most one does).
    embedded_probes: Option<usize>,
    /// Ids of the deleted models, ascending (the tombstones of every segment).
    pub(crate) deleted: Vec<u64>,
    /// The entries that recent filters keep, so that repeated searches with one filter do not
    /// read every model's metadata again.
    pub(crate) masks: crate::selection::MaskCache,
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
            embedded_probes: None,
            deleted: Vec::new(),
            masks: Default::default(),
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
            if let Some(sec) = &seg.embedded_probes {
                if let Some(first) = self.embedded_probes {
                    return Err(Error::corrupt(format!(
                        "segment {i}: a second embedded probe set (segment {first} holds one)"
                    )));
                }
                embedded_probes::check_stated(self.section_bytes(sec), self.header.probe_set)
                    .map_err(|what| Error::corrupt(format!("segment {i}: {what}")))?;
                self.embedded_probes = Some(i);
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
            deleted::merge(
                self.section_bytes(sec),
                i,
                seg.dir.first_model,
                &mut deleted,
            )?;
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
            embedded_probes: None,
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
                SectionKind::EmbeddedProbeSet => &mut seg.embedded_probes,
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

    /// The segment holding item `id` of a numbering that each segment's directory starts at
    /// `first(dir)`, and the item's position in it. An id from `count` on is an error that names
    /// the item (`what`, plural `whats`).
    fn segment_holding(
        &self,
        id: u64,
        count: u64,
        (what, whats): (&str, &str),
        first: impl Fn(&SegmentDirectory) -> u64,
    ) -> Result<(usize, usize)> {
        if id >= count {
            return Err(Error::InvalidParameter(format!(
                "{what} {id} does not exist (the index has {count} {whats})"
            )));
        }
        let s = self.segments.partition_point(|g| first(&g.dir) <= id) - 1;
        Ok((s, (id - first(&self.segments[s].dir)) as usize))
    }

    pub(crate) fn segment_of_entry(&self, entry: u64) -> Result<(usize, usize)> {
        let (s, local) =
            self.segment_holding(entry, self.entry_count(), ("entry", "entries"), |d| {
                d.first_entry
            })?;
        let seg = &self.segments[s];
        // Segments without entries share their first_entry with the next; skip them.
        debug_assert!(entry < seg.dir.first_entry + seg.dir.entry_count);
        Ok((s, local))
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
