//! The header page: the static header (written once by `create`) and the two commit slots
//! (format-spec.md §4 and §5). Field offsets are chained: each is its predecessor's plus its size.

use super::bytes::{get_u16, get_u32, get_u64, put_u16, put_u32, put_u64};
use super::{
    Dtype, Extent, FORMAT_VERSION, HEADER_PAGE_LEN, MAGIC, MAX_PROBES, MIN_PROBES, ProbeSetId,
};
use crate::error::{Error, Result};

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
const _: () = assert!(H_RESERVED + 68 == H_CRC);

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

/// The header page of a new file: the static header, both commit slots empty, zero padding.
pub fn encode_page(header: &StaticHeader) -> Vec<u8> {
    let mut page = vec![0u8; HEADER_PAGE_LEN as usize];
    page[..STATIC_HEADER_LEN].copy_from_slice(&header.encode());
    page
}

/// Whether the padding of the header page (after the commit slots, up to the first segment) is
/// all zero. `data` holds at least the header page.
pub fn page_padding_is_zero(data: &[u8]) -> bool {
    data[HEADER_USED_LEN..HEADER_PAGE_LEN as usize]
        .iter()
        .all(|&b| b == 0)
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

/// The file offset of commit slot `slot` (0 or 1).
pub fn slot_offset(slot: usize) -> u64 {
    SLOT_OFFSETS[slot] as u64
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
}
