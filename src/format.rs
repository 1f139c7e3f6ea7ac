//! The on-disk layout, field by field. Every offset here mirrors `format-spec.md`; constants are
//! chained so that a field's offset is its predecessor's offset plus its size.
//!
//! All integers are little-endian and fixed-width. Nothing host-sized or host-endian is stored.

use crate::error::{Error, Result};

/// First eight bytes of every index file.
pub const MAGIC: [u8; 8] = *b"PROBELOG";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Every section starts at a multiple of this many bytes.
pub const ALIGN: u64 = 64;
/// The header page: static header, two commit slots, zero padding. Segments start after it.
pub const HEADER_PAGE_LEN: u64 = 4096;

// Static header, bytes [0, 128).
pub const H_MAGIC: usize = 0;
pub const H_VERSION: usize = H_MAGIC + 8;
pub const H_HEADER_PAGE_LEN: usize = H_VERSION + 4;
pub const H_NUM_PROBES: usize = H_HEADER_PAGE_LEN + 4;
pub const H_DTYPE: usize = H_NUM_PROBES + 4;
pub const H_FLAGS: usize = H_DTYPE + 2;
pub const H_FINGERPRINT: usize = H_FLAGS + 2;
pub const H_RESERVED: usize = H_FINGERPRINT + 32;
pub const H_CRC: usize = 124;
pub const STATIC_HEADER_LEN: usize = H_CRC + 4;

// Commit slots: two 64-byte records after the static header.
pub const SLOT_LEN: usize = 64;
pub const SLOT_OFFSETS: [usize; 2] = [STATIC_HEADER_LEN, STATIC_HEADER_LEN + SLOT_LEN];
/// Bytes of the header page that carry information; the rest of the page is zero.
pub const HEADER_USED_LEN: usize = STATIC_HEADER_LEN + 2 * SLOT_LEN;

pub const C_SEQUENCE: usize = 0;
pub const C_COMMITTED_LEN: usize = C_SEQUENCE + 8;
pub const C_DIR_OFFSET: usize = C_COMMITTED_LEN + 8;
pub const C_DIR_LEN: usize = C_DIR_OFFSET + 8;
pub const C_DIR_CRC: usize = C_DIR_LEN + 4;
pub const C_SEGMENT_COUNT: usize = C_DIR_CRC + 4;
pub const C_RESERVED0: usize = C_SEGMENT_COUNT + 4;
pub const C_ENTRY_COUNT: usize = C_RESERVED0 + 4;
pub const C_MODEL_COUNT: usize = C_ENTRY_COUNT + 8;
pub const C_RESERVED1: usize = C_MODEL_COUNT + 8;
pub const C_CRC: usize = C_RESERVED1 + 4;
const _: () = assert!(C_CRC + 4 == SLOT_LEN);

// Segment directory.
pub const DIR_MAGIC: [u8; 8] = *b"PLSEGDIR";
pub const D_MAGIC: usize = 0;
pub const D_LEN: usize = D_MAGIC + 8;
pub const D_NUMBER: usize = D_LEN + 4;
pub const D_FIRST_ENTRY: usize = D_NUMBER + 4;
pub const D_ENTRY_COUNT: usize = D_FIRST_ENTRY + 8;
pub const D_FIRST_MODEL: usize = D_ENTRY_COUNT + 8;
pub const D_MODEL_COUNT: usize = D_FIRST_MODEL + 8;
pub const D_PREV_OFFSET: usize = D_MODEL_COUNT + 8;
pub const D_PREV_LEN: usize = D_PREV_OFFSET + 8;
pub const D_PREV_CRC: usize = D_PREV_LEN + 4;
pub const D_SECTION_COUNT: usize = D_PREV_CRC + 4;
pub const D_RESERVED: usize = D_SECTION_COUNT + 4;
pub const D_SECTIONS: usize = D_RESERVED + 4;
/// Size of one row of the section table.
pub const SECTION_ENTRY_LEN: usize = 32;
pub const S_KIND: usize = 0;
pub const S_CRC: usize = S_KIND + 4;
pub const S_OFFSET: usize = S_CRC + 4;
pub const S_LEN: usize = S_OFFSET + 8;
pub const S_PARAM: usize = S_LEN + 8;
const _: () = assert!(S_PARAM + 8 == SECTION_ENTRY_LEN);
/// The most sections one segment may list; bounds the directory size read from disk.
pub const MAX_SECTIONS: u32 = 64;

// Model record (section MODELS).
pub const MODEL_RECORD_LEN: usize = 48;
pub const M_FIRST_ENTRY: usize = 0;
pub const M_LOGIT_COUNT: usize = M_FIRST_ENTRY + 8;
pub const M_META_COUNT: usize = M_LOGIT_COUNT + 4;
pub const M_NAME: usize = M_META_COUNT + 4;
pub const M_SOURCE: usize = M_NAME + 8;
pub const M_META_FIRST: usize = M_SOURCE + 8;
pub const M_RESERVED: usize = M_META_FIRST + 8;
const _: () = assert!(M_RESERVED + 8 == MODEL_RECORD_LEN);

/// A string reference: u32 offset into the segment's STRINGS section, u32 byte length.
pub const STRING_REF_LEN: usize = 8;
/// The offset value of a string reference that means "no string".
pub const NO_STRING: u32 = u32::MAX;
/// A key=value record of section MODEL_META: two string references.
pub const META_RECORD_LEN: usize = 2 * STRING_REF_LEN;

/// Descriptor rows are padded to a multiple of this many elements (64 bytes of f16).
pub const STRIDE_MULTIPLE: u64 = 32;

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
}

/// Bytes before the factor matrix in a ProbeFactors section.
pub const FACTORS_HEADER_LEN: usize = 64;

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

/// The static part of the header, written once by `create`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaticHeader {
    pub probe_set: ProbeSetId,
    pub dtype: Dtype,
}

impl StaticHeader {
    pub fn encode(&self) -> [u8; STATIC_HEADER_LEN] {
        let mut b = [0u8; STATIC_HEADER_LEN];
        b[H_MAGIC..H_MAGIC + 8].copy_from_slice(&MAGIC);
        put_u32(&mut b, H_VERSION, FORMAT_VERSION);
        put_u32(&mut b, H_HEADER_PAGE_LEN, HEADER_PAGE_LEN as u32);
        put_u32(&mut b, H_NUM_PROBES, self.probe_set.num_probes);
        put_u16(&mut b, H_DTYPE, self.dtype.code());
        put_u16(&mut b, H_FLAGS, 0);
        b[H_FINGERPRINT..H_FINGERPRINT + 32].copy_from_slice(&self.probe_set.fingerprint);
        let crc = crc32fast::hash(&b[..H_CRC]);
        put_u32(&mut b, H_CRC, crc);
        b
    }

    /// Decodes and checks the static header: magic, version, checksum, field ranges.
    pub fn decode(b: &[u8]) -> Result<Self> {
        if b.len() < 8 || b[H_MAGIC..H_MAGIC + 8] != MAGIC {
            return Err(Error::NotAnIndex);
        }
        if b.len() < HEADER_USED_LEN {
            return Err(Error::Truncated {
                what: "the header".into(),
                needed: HEADER_USED_LEN as u64,
                len: b.len() as u64,
            });
        }
        let version = get_u32(b, H_VERSION);
        if version != FORMAT_VERSION {
            return Err(Error::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let stored = get_u32(b, H_CRC);
        let got = crc32fast::hash(&b[..H_CRC]);
        if stored != got {
            return Err(Error::ChecksumMismatch {
                section: "header".into(),
                expected: stored,
                got,
            });
        }
        let page = get_u32(b, H_HEADER_PAGE_LEN);
        if u64::from(page) != HEADER_PAGE_LEN {
            return Err(Error::corrupt(format!(
                "header page length is {page}, expected {HEADER_PAGE_LEN}"
            )));
        }
        let num_probes = get_u32(b, H_NUM_PROBES);
        if !(MIN_PROBES..=MAX_PROBES).contains(&num_probes) {
            return Err(Error::corrupt(format!(
                "probe count is {num_probes}; an index has {MIN_PROBES} to {MAX_PROBES} probes"
            )));
        }
        let dtype = Dtype::from_code(get_u16(b, H_DTYPE)).ok_or_else(|| {
            Error::corrupt(format!(
                "unknown descriptor type code {}",
                get_u16(b, H_DTYPE)
            ))
        })?;
        let flags = get_u16(b, H_FLAGS);
        if flags != 0 {
            return Err(Error::corrupt(format!(
                "unknown header flags {flags:#06x} (written by a newer version?)"
            )));
        }
        let mut fingerprint = [0u8; 32];
        fingerprint.copy_from_slice(&b[H_FINGERPRINT..H_FINGERPRINT + 32]);
        Ok(StaticHeader {
            probe_set: ProbeSetId {
                num_probes,
                fingerprint,
            },
            dtype,
        })
    }
}

/// The error for a file of `len` bytes, too short to hold the header page. `head` holds its first
/// bytes (at most 8 are looked at): with the magic it is a truncated index, else not an index.
pub fn short_header_error(head: &[u8], len: u64) -> Error {
    if head.len() < 8 || head[..8] != MAGIC {
        Error::NotAnIndex
    } else {
        Error::Truncated {
            what: "the header".into(),
            needed: HEADER_USED_LEN as u64,
            len,
        }
    }
}

/// A checksummed reference to a byte range: used for the link from one directory to the previous.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub offset: u64,
    pub len: u64,
    pub crc: u32,
}

/// One commit record. The record with the highest sequence whose checksum holds is current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitRecord {
    pub sequence: u64,
    /// End of committed data; everything after it is a torn tail, ignored and later overwritten.
    pub committed_len: u64,
    pub directory: Extent,
    pub segment_count: u32,
    pub entry_count: u64,
    pub model_count: u64,
}

/// What a commit slot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotState {
    /// All zero: never written.
    Empty,
    /// Checksum fails: torn by a crash during a commit, or damaged.
    Damaged {
        expected: u32,
        got: u32,
    },
    Valid(CommitRecord),
}

impl CommitRecord {
    pub fn encode(&self) -> [u8; SLOT_LEN] {
        let mut b = [0u8; SLOT_LEN];
        put_u64(&mut b, C_SEQUENCE, self.sequence);
        put_u64(&mut b, C_COMMITTED_LEN, self.committed_len);
        put_u64(&mut b, C_DIR_OFFSET, self.directory.offset);
        put_u32(&mut b, C_DIR_LEN, self.directory.len as u32);
        put_u32(&mut b, C_DIR_CRC, self.directory.crc);
        put_u32(&mut b, C_SEGMENT_COUNT, self.segment_count);
        put_u64(&mut b, C_ENTRY_COUNT, self.entry_count);
        put_u64(&mut b, C_MODEL_COUNT, self.model_count);
        let crc = crc32fast::hash(&b[..C_CRC]);
        put_u32(&mut b, C_CRC, crc);
        b
    }

    pub fn decode_slot(b: &[u8]) -> SlotState {
        debug_assert_eq!(b.len(), SLOT_LEN);
        if b.iter().all(|&x| x == 0) {
            return SlotState::Empty;
        }
        let expected = get_u32(b, C_CRC);
        let got = crc32fast::hash(&b[..C_CRC]);
        if expected != got {
            return SlotState::Damaged { expected, got };
        }
        SlotState::Valid(CommitRecord {
            sequence: get_u64(b, C_SEQUENCE),
            committed_len: get_u64(b, C_COMMITTED_LEN),
            directory: Extent {
                offset: get_u64(b, C_DIR_OFFSET),
                len: u64::from(get_u32(b, C_DIR_LEN)),
                crc: get_u32(b, C_DIR_CRC),
            },
            segment_count: get_u32(b, C_SEGMENT_COUNT),
            entry_count: get_u64(b, C_ENTRY_COUNT),
            model_count: get_u64(b, C_MODEL_COUNT),
        })
    }
}

/// Reads both commit slots of a header page and picks the current commit.
/// Returns the states of both slots and the index of the chosen one.
pub fn choose_commit(header_page: &[u8]) -> Result<([SlotState; 2], usize, CommitRecord)> {
    let states = SLOT_OFFSETS.map(|o| CommitRecord::decode_slot(&header_page[o..o + SLOT_LEN]));
    let mut best: Option<(usize, CommitRecord)> = None;
    for (i, s) in states.iter().enumerate() {
        if let SlotState::Valid(c) = s
            && best.is_none_or(|(_, b)| c.sequence > b.sequence)
        {
            best = Some((i, *c));
        }
    }
    match best {
        Some((i, c)) => Ok((states, i, c)),
        None => Err(Error::corrupt(
            "neither commit slot holds a valid commit record; the index cannot be opened",
        )),
    }
}

/// One row of a segment's section table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SectionEntry {
    pub kind: u32,
    pub crc: u32,
    pub offset: u64,
    pub len: u64,
    pub param: u64,
}

impl SectionEntry {
    pub fn kind_name(&self) -> String {
        match SectionKind::from_u32(self.kind) {
            Some(k) => k.name().to_string(),
            None => format!("section kind {:#x}", self.kind),
        }
    }
}

/// A segment directory: what one append added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentDirectory {
    pub number: u32,
    pub first_entry: u64,
    pub entry_count: u64,
    pub first_model: u64,
    pub model_count: u64,
    pub prev: Option<Extent>,
    pub sections: Vec<SectionEntry>,
}

impl SegmentDirectory {
    pub fn encoded_len(section_count: usize) -> usize {
        D_SECTIONS + section_count * SECTION_ENTRY_LEN + 4
    }

    pub fn encode(&self) -> Vec<u8> {
        let len = Self::encoded_len(self.sections.len());
        let mut b = vec![0u8; len];
        b[D_MAGIC..D_MAGIC + 8].copy_from_slice(&DIR_MAGIC);
        put_u32(&mut b, D_LEN, len as u32);
        put_u32(&mut b, D_NUMBER, self.number);
        put_u64(&mut b, D_FIRST_ENTRY, self.first_entry);
        put_u64(&mut b, D_ENTRY_COUNT, self.entry_count);
        put_u64(&mut b, D_FIRST_MODEL, self.first_model);
        put_u64(&mut b, D_MODEL_COUNT, self.model_count);
        let prev = self.prev.unwrap_or(Extent {
            offset: 0,
            len: 0,
            crc: 0,
        });
        put_u64(&mut b, D_PREV_OFFSET, prev.offset);
        put_u32(&mut b, D_PREV_LEN, prev.len as u32);
        put_u32(&mut b, D_PREV_CRC, prev.crc);
        put_u32(&mut b, D_SECTION_COUNT, self.sections.len() as u32);
        for (i, s) in self.sections.iter().enumerate() {
            let o = D_SECTIONS + i * SECTION_ENTRY_LEN;
            put_u32(&mut b, o + S_KIND, s.kind);
            put_u32(&mut b, o + S_CRC, s.crc);
            put_u64(&mut b, o + S_OFFSET, s.offset);
            put_u64(&mut b, o + S_LEN, s.len);
            put_u64(&mut b, o + S_PARAM, s.param);
        }
        let crc = crc32fast::hash(&b[..len - 4]);
        put_u32(&mut b, len - 4, crc);
        b
    }

    /// Decodes a directory whose bytes were located through `extent`. Checks magic, length,
    /// checksum (against both its trailer and the referring extent) and the section count.
    pub fn decode(b: &[u8], extent: &Extent, label: &str) -> Result<Self> {
        if b.len() < D_SECTIONS + 4 || b[D_MAGIC..D_MAGIC + 8] != DIR_MAGIC {
            return Err(Error::corrupt(format!(
                "{label}: no segment directory at offset {}",
                extent.offset
            )));
        }
        let len = get_u32(b, D_LEN) as usize;
        if len != b.len() {
            return Err(Error::corrupt(format!(
                "{label}: directory says it is {len} bytes, its reference says {}",
                b.len()
            )));
        }
        let stored = get_u32(b, len - 4);
        let got = crc32fast::hash(&b[..len - 4]);
        if stored != got || stored != extent.crc {
            return Err(Error::ChecksumMismatch {
                section: format!("{label} directory"),
                expected: if stored != got { stored } else { extent.crc },
                got,
            });
        }
        let count = get_u32(b, D_SECTION_COUNT);
        if count > MAX_SECTIONS || Self::encoded_len(count as usize) != len {
            return Err(Error::corrupt(format!(
                "{label}: section count {count} does not fit a directory of {len} bytes"
            )));
        }
        let prev_offset = get_u64(b, D_PREV_OFFSET);
        let prev = if prev_offset == 0 {
            None
        } else {
            Some(Extent {
                offset: prev_offset,
                len: u64::from(get_u32(b, D_PREV_LEN)),
                crc: get_u32(b, D_PREV_CRC),
            })
        };
        let sections = (0..count as usize)
            .map(|i| {
                let o = D_SECTIONS + i * SECTION_ENTRY_LEN;
                SectionEntry {
                    kind: get_u32(b, o + S_KIND),
                    crc: get_u32(b, o + S_CRC),
                    offset: get_u64(b, o + S_OFFSET),
                    len: get_u64(b, o + S_LEN),
                    param: get_u64(b, o + S_PARAM),
                }
            })
            .collect();
        Ok(SegmentDirectory {
            number: get_u32(b, D_NUMBER),
            first_entry: get_u64(b, D_FIRST_ENTRY),
            entry_count: get_u64(b, D_ENTRY_COUNT),
            first_model: get_u64(b, D_FIRST_MODEL),
            model_count: get_u64(b, D_MODEL_COUNT),
            prev,
            sections,
        })
    }
}

/// Rounds `v` up to a multiple of `m` (a power of two), failing on overflow.
pub fn align_up(v: u64, m: u64) -> Option<u64> {
    debug_assert!(m.is_power_of_two());
    v.checked_add(m - 1).map(|x| x & !(m - 1))
}

/// Bytes of one model's bitmap in an ObservedProbes section.
pub fn observed_bitmap_len(num_probes: u32) -> u64 {
    u64::from(num_probes).div_ceil(8)
}

/// Row stride in elements of a descriptor matrix holding `entries` columns.
pub fn descriptor_stride(entries: u64) -> u64 {
    align_up(entries.max(1), STRIDE_MULTIPLE).expect("entry count far below u64::MAX")
}

pub fn put_u16(b: &mut [u8], o: usize, v: u16) {
    b[o..o + 2].copy_from_slice(&v.to_le_bytes());
}
pub fn put_u32(b: &mut [u8], o: usize, v: u32) {
    b[o..o + 4].copy_from_slice(&v.to_le_bytes());
}
pub fn put_u64(b: &mut [u8], o: usize, v: u64) {
    b[o..o + 8].copy_from_slice(&v.to_le_bytes());
}
/// Reads a u16 at `o`. Callers have checked that `b` holds `o + 2` bytes.
pub fn get_u16(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes(b[o..o + 2].try_into().expect("2 bytes"))
}
/// Reads a u32 at `o`. Callers have checked that `b` holds `o + 4` bytes.
pub fn get_u32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"))
}
/// Reads a u64 at `o`. Callers have checked that `b` holds `o + 8` bytes.
pub fn get_u64(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_checksum() {
        let h = StaticHeader {
            probe_set: ProbeSetId::from_names(&["a".into(), "b".into(), "c".into()]),
            dtype: Dtype::F16,
        };
        let mut page = vec![0u8; HEADER_USED_LEN];
        page[..STATIC_HEADER_LEN].copy_from_slice(&h.encode());
        assert_eq!(StaticHeader::decode(&page).unwrap(), h);
        page[H_NUM_PROBES] ^= 1;
        assert!(matches!(
            StaticHeader::decode(&page),
            Err(Error::ChecksumMismatch { .. })
        ));
        page[0] = b'X';
        assert!(matches!(
            StaticHeader::decode(&page),
            Err(Error::NotAnIndex)
        ));
    }

    #[test]
    fn newest_valid_slot_wins_and_torn_slot_is_skipped() {
        let mk = |seq| CommitRecord {
            sequence: seq,
            committed_len: 4096 + seq * 64,
            directory: Extent {
                offset: 4096,
                len: 80,
                crc: 7,
            },
            segment_count: 1,
            entry_count: seq,
            model_count: 1,
        };
        let mut page = vec![0u8; HEADER_USED_LEN];
        page[SLOT_OFFSETS[0]..SLOT_OFFSETS[0] + SLOT_LEN].copy_from_slice(&mk(4).encode());
        page[SLOT_OFFSETS[1]..SLOT_OFFSETS[1] + SLOT_LEN].copy_from_slice(&mk(5).encode());
        let (_, i, c) = choose_commit(&page).unwrap();
        assert_eq!((i, c.sequence), (1, 5));
        page[SLOT_OFFSETS[1] + 3] ^= 0x40;
        let (states, i, c) = choose_commit(&page).unwrap();
        assert_eq!((i, c.sequence), (0, 4));
        assert!(matches!(states[1], SlotState::Damaged { .. }));
    }

    #[test]
    fn directory_round_trip() {
        let d = SegmentDirectory {
            number: 3,
            first_entry: 10,
            entry_count: 5,
            first_model: 2,
            model_count: 1,
            prev: Some(Extent {
                offset: 8192,
                len: 104,
                crc: 99,
            }),
            sections: vec![SectionEntry {
                kind: SectionKind::Descriptors as u32,
                crc: 1,
                offset: 4096,
                len: 640,
                param: 32,
            }],
        };
        let bytes = d.encode();
        let ext = Extent {
            offset: 0,
            len: bytes.len() as u64,
            crc: crc32fast::hash(&bytes[..bytes.len() - 4]),
        };
        assert_eq!(
            SegmentDirectory::decode(&bytes, &ext, "segment 3").unwrap(),
            d
        );
    }

    #[test]
    fn fingerprint_hex_round_trip() {
        let id = ProbeSetId::anonymous(100);
        let parsed = ProbeSetId::parse_fingerprint(&id.fingerprint_hex()).unwrap();
        assert_eq!(parsed, id.fingerprint);
        assert!(ProbeSetId::parse_fingerprint("zz").is_err());
    }
}
