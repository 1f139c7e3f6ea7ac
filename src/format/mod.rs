//! The on-disk layout (`format-spec.md`): one codec per structure. Each submodule owns one
//! structure or section kind: its field offsets (chained, so that a field's offset is its
//! predecessor's plus its size), its encoding (used by the writer), its decoding or in-place view
//! and its length rule and structural checks (used at open and by verify). The reader, the writer
//! and verify call these codecs and never index a record's bytes themselves; the offsets are
//! private to the crate (the test kit re-exports the few that corruption tests patch, under
//! `testkit::layout`).
//!
//! All integers are little-endian and fixed-width. Nothing host-sized or host-endian is stored.

use crate::error::{Error, Result};

pub(crate) mod bytes;
pub(crate) mod deleted;
pub(crate) mod descriptors;
pub(crate) mod directory;
pub(crate) mod embedded_probes;
pub(crate) mod header;
pub(crate) mod labels;
pub(crate) mod models;
pub(crate) mod observed;
pub(crate) mod probe_embeddings;
pub(crate) mod probe_factors;
pub(crate) mod probe_names;
pub(crate) mod strings;

pub use directory::{Extent, MAX_SECTIONS, SectionEntry, SegmentDirectory};
pub use header::{CommitRecord, SlotState, StaticHeader};
pub(crate) use header::{HEADER_USED_LEN, choose_commit, short_header_error};

/// First eight bytes of every index file.
pub const MAGIC: [u8; 8] = *b"PROBELOG";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Every section starts at a multiple of this many bytes.
pub const ALIGN: u64 = 64;
/// The header page: static header, two commit slots, zero padding. Segments start after it.
pub const HEADER_PAGE_LEN: u64 = 4096;

/// Section kinds. Kinds with bit 31 set are optional: a reader that does not know them skips them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum SectionKind {
    /// Probe-major descriptor matrix: `num_probes` rows of `param` (the stride) elements.
    Descriptors = 1,
    /// One 48-byte record per model of the segment.
    Models = 2,
    /// One string reference per entry of the segment: its class label.
    EntryLabels = 3,
    /// Key=value records referenced by models.
    ModelMeta = 4,
    /// UTF-8 bytes referenced by string references of the same segment.
    Strings = 5,
    /// One string reference per probe: the probe's name. Latest segment wins.
    ProbeNames = 6,
    /// f32 row-major [num_probes, param] probe image embeddings, rows of unit length. Latest wins.
    ProbeEmbeddings = 7,
    /// Collaborative probing: a 64-byte header (u32 rank, f32 lambda, zeros) then f32 row-major
    /// [num_probes, rank] low-rank probe factors. `param` is the rank. Latest segment wins.
    ProbeFactors = 8,
    /// Collaborative probing: per model of the segment, a bitmap of `param` bytes; bit `p % 8` of
    /// byte `p / 8` is set when the model was run on probe `p`.
    ObservedProbes = 9,
    /// The segment's ANN graph: top probe lists of its entries, seeds per probe and HNSW links
    /// (layout in `ann::graph`). Optional: a reader that does not know it searches exactly.
    AnnGraph = 10 | OPTIONAL_KIND_BIT,
    /// One of several ANN graphs of a segment, each over a consecutive range of its entries
    /// (`param`: the range's first entry within the segment). Same layout as [`AnnGraph`]; a
    /// segment has either one AnnGraph or a set of these. Optional, so a reader that does not know
    /// it searches exactly.
    ///
    /// [`AnnGraph`]: SectionKind::AnnGraph
    AnnGraphPart = 11 | OPTIONAL_KIND_BIT,
    /// Tombstones: the ids of models deleted by this commit, u64 each, strictly increasing, each
    /// below the segment's `first_model` and live until this segment. `param` is their count.
    /// Required (not optional): a reader that skipped it would return deleted models.
    DeletedModels = 12,
    /// The index's probe set file (`.pset`), byte for byte; its identity is the header's. At
    /// most one per file. Optional: a reader that does not know it searches all the same.
    EmbeddedProbeSet = 12 | OPTIONAL_KIND_BIT,
}

impl SectionKind {
    pub fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            1 => SectionKind::Descriptors,
            2 => SectionKind::Models,
            3 => SectionKind::EntryLabels,
            4 => SectionKind::ModelMeta,
            5 => SectionKind::Strings,
            6 => SectionKind::ProbeNames,
            7 => SectionKind::ProbeEmbeddings,
            8 => SectionKind::ProbeFactors,
            9 => SectionKind::ObservedProbes,
            12 => SectionKind::DeletedModels,
            x if x == SectionKind::AnnGraph as u32 => SectionKind::AnnGraph,
            x if x == SectionKind::AnnGraphPart as u32 => SectionKind::AnnGraphPart,
            x if x == SectionKind::EmbeddedProbeSet as u32 => SectionKind::EmbeddedProbeSet,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            SectionKind::Descriptors => "descriptors",
            SectionKind::Models => "models",
            SectionKind::EntryLabels => "entry labels",
            SectionKind::ModelMeta => "model metadata",
            SectionKind::Strings => "strings",
            SectionKind::ProbeNames => "probe names",
            SectionKind::ProbeEmbeddings => "probe embeddings",
            SectionKind::ProbeFactors => "probe factors",
            SectionKind::ObservedProbes => "observed probes",
            SectionKind::AnnGraph => "ANN graph",
            SectionKind::AnnGraphPart => "ANN graph part",
            SectionKind::DeletedModels => "deleted models",
            SectionKind::EmbeddedProbeSet => "embedded probe set",
        }
    }
}

/// Bit 31 of a section kind: readers may skip the section if they do not know the kind.
pub const OPTIONAL_KIND_BIT: u32 = 1 << 31;

/// Element type of stored descriptors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F16,
}

impl Dtype {
    pub fn code(self) -> u16 {
        match self {
            Dtype::F32 => 1,
            Dtype::F16 => 2,
        }
    }
    pub fn from_code(c: u16) -> Option<Self> {
        match c {
            1 => Some(Dtype::F32),
            2 => Some(Dtype::F16),
            _ => None,
        }
    }
    pub fn size(self) -> u64 {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 => 2,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "f32",
            Dtype::F16 => "f16",
        }
    }
}

/// The fewest probes an index may have: a z-score over one probe is undefined.
pub const MIN_PROBES: u32 = 2;
/// The most probes an index may have (2^20). The paper's largest probe set has 8,000 probes;
/// the bound keeps every per-probe allocation of a reader or writer (a row of a staging buffer,
/// probe factors, a query) small before any other part of a file is validated.
pub const MAX_PROBES: u32 = 1 << 20;

/// Checks a probe count against [`MIN_PROBES`] and [`MAX_PROBES`].
pub fn check_probe_count(num_probes: u32) -> Result<()> {
    if (MIN_PROBES..=MAX_PROBES).contains(&num_probes) {
        Ok(())
    } else {
        Err(Error::InvalidParameter(format!(
            "an index needs {MIN_PROBES} to {MAX_PROBES} probes, not {num_probes}"
        )))
    }
}

/// The identity of a probe set: how many probes, and a 32-byte fingerprint of what they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProbeSetId {
    pub num_probes: u32,
    pub fingerprint: [u8; 32],
}

impl ProbeSetId {
    /// Identity of a probe set known only by its names (in order).
    pub fn from_names(names: &[String]) -> Self {
        let mut h = blake3::Hasher::new();
        h.update(b"probelog probe names v1\0");
        h.update(&(names.len() as u64).to_le_bytes());
        for n in names {
            h.update(&(n.len() as u64).to_le_bytes());
            h.update(n.as_bytes());
        }
        ProbeSetId {
            num_probes: names.len() as u32,
            fingerprint: *h.finalize().as_bytes(),
        }
    }

    /// Identity of a probe set known only by its size. Two such sets of equal size compare equal:
    /// give names or a fingerprint when the probes themselves should be told apart.
    pub fn anonymous(num_probes: u32) -> Self {
        let mut h = blake3::Hasher::new();
        h.update(b"probelog anonymous probe set v1\0");
        h.update(&u64::from(num_probes).to_le_bytes());
        ProbeSetId {
            num_probes,
            fingerprint: *h.finalize().as_bytes(),
        }
    }

    /// The fingerprint as 64 lowercase hex digits.
    pub fn fingerprint_hex(&self) -> String {
        self.fingerprint
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Parses 64 hex digits.
    pub fn parse_fingerprint(hex: &str) -> Result<[u8; 32]> {
        let hex = hex.trim();
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::InvalidInput(format!(
                "a probe-set fingerprint is 64 hex digits, got {hex:?}"
            )));
        }
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("checked hex digits");
        }
        Ok(out)
    }
}

impl std::fmt::Display for ProbeSetId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hex = self.fingerprint_hex();
        write!(f, "{} probes, fingerprint {}", self.num_probes, &hex[..16])
    }
}

/// What the length rules of a segment's sections are checked against.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SegmentCounts {
    pub probes: u32,
    pub dtype: Dtype,
    pub entries: u64,
    pub models: u64,
    /// Models of the segments before this one.
    pub models_before: u64,
}

/// The length a section of `kind`, listed as `s`, must have in a segment with counts `c`: `None`
/// when the counts overflow; an error message (without the segment's label) when its parameter
/// is impossible. Each section kind's codec owns its rule.
pub(crate) fn required_len(
    kind: SectionKind,
    s: &SectionEntry,
    c: &SegmentCounts,
) -> std::result::Result<Option<u64>, String> {
    match kind {
        SectionKind::Descriptors => descriptors::required_len(s, c),
        SectionKind::Models => Ok(models::required_len(c)),
        SectionKind::EntryLabels => Ok(labels::required_len(c)),
        SectionKind::ModelMeta => Ok(models::meta_required_len(s)),
        SectionKind::Strings => Ok(strings::required_len(s)),
        SectionKind::ProbeNames => Ok(probe_names::required_len(c)),
        SectionKind::ProbeEmbeddings => probe_embeddings::required_len(s, c),
        SectionKind::ProbeFactors => probe_factors::required_len(s, c),
        SectionKind::ObservedProbes => observed::required_len(s, c),
        SectionKind::AnnGraph | SectionKind::AnnGraphPart => Ok(crate::ann::graph::required_len(s)),
        SectionKind::DeletedModels => deleted::required_len(s, c),
        SectionKind::EmbeddedProbeSet => embedded_probes::required_len(s),
    }
}

/// Rounds `v` up to a multiple of `m` (a power of two), failing on overflow.
pub fn align_up(v: u64, m: u64) -> Option<u64> {
    debug_assert!(m.is_power_of_two());
    v.checked_add(m - 1).map(|x| x & !(m - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_hex_round_trip() {
        let id = ProbeSetId::anonymous(100);
        let parsed = ProbeSetId::parse_fingerprint(&id.fingerprint_hex()).unwrap();
        assert_eq!(parsed, id.fingerprint);
        assert!(ProbeSetId::parse_fingerprint("zz").is_err());
    }
}
