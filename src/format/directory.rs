//! The segment directory: a segment's header and its section table (format-spec.md §6).

use super::bytes::{get_u32, get_u64, put_u32, put_u64};
use super::{ALIGN, HEADER_PAGE_LEN, SectionKind};
use crate::error::{Error, Result};

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

/// A checksummed reference to a byte range: used for the link from one directory to the previous.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub offset: u64,
    pub len: u64,
    pub crc: u32,
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

/// The checksum a directory's trailer and its referrer record: over all its bytes but the last 4.
pub fn checksum(bytes: &[u8]) -> u32 {
    crc32fast::hash(&bytes[..bytes.len() - 4])
}

/// Checks a reference to a directory before its bytes are read: at most [`MAX_SECTIONS`] rows
/// long, after the header page, 64-aligned, and ending at or before `upper`.
pub fn check_reference(ext: &Extent, upper: u64, label: &str) -> Result<()> {
    if ext.len > SegmentDirectory::encoded_len(MAX_SECTIONS as usize) as u64
        || ext.offset < HEADER_PAGE_LEN
        || !ext.offset.is_multiple_of(ALIGN)
        || ext
            .offset
            .checked_add(ext.len)
            .is_none_or(|end| end > upper)
    {
        return Err(Error::corrupt(format!(
            "{label}: directory reference (offset {}, {} bytes) is out of place",
            ext.offset, ext.len
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
