//! Full integrity check: every checksum, every reference, every padding byte of the committed state.

use crate::descriptor::{first_impossible_value, max_descriptor_magnitude};
use crate::format::{Dtype, HEADER_PAGE_LEN, SlotState, StaticHeader, directory, header, observed};
use crate::reader::RawIndex;

/// One integrity failure, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where: "header", "segment 2 descriptors", ...
    pub section: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.section, self.message)
    }
}

/// What [`RawIndex::verify`] found.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    pub sequence: u64,
    pub segments: u32,
    pub entries: u64,
    pub models: u64,
    pub sections_checked: usize,
    pub bytes_checked: u64,
    /// Damage: the index is not intact.
    pub problems: Vec<Problem>,
    /// States that a crash leaves behind legitimately (a torn commit slot, a torn tail).
    pub warnings: Vec<String>,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

impl<D: AsRef<[u8]>> RawIndex<D> {
    /// Checks the committed state completely. Never panics on damaged input.
    pub fn verify(&self) -> VerifyReport {
        self.verify_with_progress(&mut |_, _| {})
    }

    /// [`RawIndex::verify`], calling `progress(bytes_done, bytes_total)` as it goes.
    pub fn verify_with_progress(&self, progress: &mut dyn FnMut(u64, u64)) -> VerifyReport {
        let commit = *self.commit();
        let mut r = VerifyReport {
            sequence: commit.sequence,
            segments: commit.segment_count,
            entries: commit.entry_count,
            models: commit.model_count,
            ..Default::default()
        };
        let data = self.data();
        let mut problem = |section: &str, message: String| {
            r.problems.push(Problem {
                section: section.to_string(),
                message,
            })
        };

        // Header page.
        if let Err(e) = StaticHeader::decode(data) {
            problem("header", e.to_string());
        }
        if !header::page_padding_is_zero(data) {
            problem(
                "header page padding",
                "bytes that must be zero are not".into(),
            );
        }
        let (slots, active) = self.slots();
        let other = 1 - active;
        if let SlotState::Damaged { expected, got } = slots[other] {
            r.warnings.push(format!(
                "commit slot {other} fails its checksum (stored {expected:#010x}, computed {got:#010x}): torn by a crash during a commit, or damaged; the index is at commit {} from slot {active}",
                commit.sequence
            ));
        }
        if data.len() as u64 > commit.committed_len {
            r.warnings.push(format!(
                "{} bytes after the committed end are not part of the index (left by an interrupted append; the next append reclaims them)",
                data.len() as u64 - commit.committed_len
            ));
        }

        // Sections, directories and the gaps between them.
        let total = commit.committed_len - HEADER_PAGE_LEN;
        let mut done = 0u64;
        let mut extents: Vec<(u64, u64)> = Vec::new();
        for (i, seg) in self.segments.iter().enumerate() {
            let d = seg.extent;
            let dir_bytes = &data[d.offset as usize..(d.offset + d.len) as usize];
            let got = directory::checksum(dir_bytes);
            if got != d.crc {
                problem(
                    &format!("segment {i} directory"),
                    format!(
                        "checksum mismatch: stored {:#010x}, computed {got:#010x}",
                        d.crc
                    ),
                );
            }
            extents.push((d.offset, d.len));
            for s in &seg.dir.sections {
                let name = format!("segment {i} {}", s.kind_name());
                let bytes = self.section_bytes(s);
                let mut h = crc32fast::Hasher::new();
                for chunk in bytes.chunks(8 << 20) {
                    h.update(chunk);
                    done += chunk.len() as u64;
                    progress(done, total);
                }
                let got = h.finalize();
                if got != s.crc {
                    problem(
                        &name,
                        format!(
                            "checksum mismatch: stored {:#010x}, computed {got:#010x}",
                            s.crc
                        ),
                    );
                }
                r.sections_checked += 1;
                r.bytes_checked += s.len;
                extents.push((s.offset, s.len));
            }
            if let Some(msg) = self.check_segment_contents(i) {
                problem(&format!("segment {i} metadata"), msg);
            }
        }
        extents.sort_unstable();
        let mut at = HEADER_PAGE_LEN;
        for (off, len) in extents {
            if off > at && data[at as usize..off as usize].iter().any(|&b| b != 0) {
                problem(
                    "padding between sections",
                    format!("bytes {at}..{off} must be zero"),
                );
            }
            at = at.max(off + len);
        }
        if let Err(e) = self.probe_factors() {
            problem("probe factors", e.to_string());
        }
        if let Some(s) = self.embedded_probe_set_segment()
            && let Err(e) = self.embedded_probe_set()
        {
            problem(&format!("segment {s} embedded probe set"), e.to_string());
        }
        if let Some(msg) = self.check_observed_bitmaps() {
            problem("observed probes", msg);
        }
        for i in 0..self.segments.len() {
            if let Err(e) = self.check_segment_graphs(i) {
                problem(&format!("segment {i} ANN graph"), e.to_string());
            }
        }
        if let Err(e) = self.check_descriptors_finite() {
            problem(&e.0, e.1);
        }
        progress(total, total);
        r
    }

    /// Model tables, string references and UTF-8 of one segment.
    fn check_segment_contents(&self, s: usize) -> Option<String> {
        if let Err(e) = self.model_table(s) {
            return Some(e.to_string());
        }
        let seg = &self.segments[s];
        for m in seg.dir.first_model..seg.dir.first_model + seg.dir.model_count {
            if let Err(e) = self.model(m) {
                return Some(e.to_string());
            }
        }
        if seg.labels.is_some() {
            for e in seg.dir.first_entry..seg.dir.first_entry + seg.dir.entry_count {
                if let Err(err) = self.entry_label(e) {
                    return Some(err.to_string());
                }
            }
        }
        if seg.probe_names.is_some()
            && let Err(e) = self.probe_names()
        {
            return Some(e.to_string());
        }
        None
    }

    /// Bits past the probe count must be zero in every observed-probe bitmap.
    fn check_observed_bitmaps(&self) -> Option<String> {
        let p = self.num_probes();
        for (i, seg) in self.segments.iter().enumerate() {
            let Some(sec) = &seg.observed else { continue };
            if let Some(m) =
                observed::first_with_bits_past(self.section_bytes(sec), sec.param as usize, p)
            {
                return Some(format!(
                    "segment {i}, model {m}: bits past probe {p} are set"
                ));
            }
        }
        None
    }

    /// Every graph of segment `s`: its links, levels and items, and in an f16 index its lists
    /// against the stored descriptors (which the search takes values from).
    fn check_segment_graphs(&self, s: usize) -> crate::Result<()> {
        // Damaged descriptors are a problem of their own, reported apart.
        let rows = self.segment_rows(s).ok().flatten();
        for g in self.segment_graphs(s)? {
            g.view.check_all()?;
            if let Some(rows) = rows.filter(|_| self.dtype() == Dtype::F16) {
                g.view.check_lists_against(|p, nodes, out| {
                    rows.read_row(p, g.first + nodes.start..g.first + nodes.end, out)
                })?;
            }
        }
        Ok(())
    }

    fn check_descriptors_finite(&self) -> Result<(), (String, String)> {
        for s in 0..self.segments.len() {
            let rows = self
                .segment_rows(s)
                .map_err(|e| (format!("segment {s} descriptors"), e.to_string()))?;
            let Some(rows) = rows else { continue };
            let mut buf = vec![0f32; rows.entries()];
            let probes = self.num_probes();
            for p in 0..probes {
                rows.read_row(p, 0..rows.entries(), &mut buf);
                if let Some((e, v)) = first_impossible_value(&buf, probes) {
                    return Err((
                        format!("segment {s} descriptors"),
                        format!(
                            "probe {p}, entry {e}: value {v} is impossible in a z-normalized descriptor (|value| <= {})",
                            max_descriptor_magnitude(probes)
                        ),
                    ));
                }
            }
        }
        if let Ok(Some((emb, _))) = self.probe_embeddings()
            && emb.iter().any(|x| !x.is_finite())
        {
            return Err(("probe embeddings".into(), "a value is not finite".into()));
        }
        Ok(())
    }
}
