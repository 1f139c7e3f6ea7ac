//! The Strings section (kind 5) and the string references into it: the UTF-8 bytes of one
//! segment's names, labels and metadata, referred to by (offset, length) pairs.

use super::SectionEntry;
use super::bytes::get_u32;
use crate::error::{Error, Result};

/// A string reference: u32 offset into the segment's STRINGS section, u32 byte length.
pub const STRING_REF_LEN: usize = 8;
/// The offset value of a string reference that means "no string".
pub const NO_STRING: u32 = u32::MAX;

/// A decoded string reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StrRef {
    pub offset: u32,
    pub len: u32,
}

/// Why a string reference does not resolve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrError {
    OutOfBounds,
    NotUtf8,
}

impl StrRef {
    /// The reference that means "no string".
    pub const NONE: StrRef = StrRef {
        offset: NO_STRING,
        len: 0,
    };

    /// Reads the reference at the start of `b`, which holds at least [`STRING_REF_LEN`] bytes.
    pub fn decode(b: &[u8]) -> Self {
        StrRef {
            offset: get_u32(b, 0),
            len: get_u32(b, 4),
        }
    }

    /// The reference number `i` of a table of references.
    pub fn at(table: &[u8], i: usize) -> Self {
        Self::decode(&table[i * STRING_REF_LEN..(i + 1) * STRING_REF_LEN])
    }

    pub fn encode_into(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.len.to_le_bytes());
    }

    /// Checks the reference against a Strings section of `strings_len` bytes (the model table's
    /// check at first use).
    pub fn check(self, strings_len: u64) -> std::result::Result<(), String> {
        let (off, len) = (self.offset, self.len);
        if off == NO_STRING {
            return Ok(());
        }
        if u64::from(off) + u64::from(len) > strings_len {
            return Err(format!(
                "refers to bytes {off}..{off}+{len} of {strings_len}"
            ));
        }
        Ok(())
    }

    /// The string the reference names in `strings` (the segment's Strings section, empty when it
    /// has none), or `None` for "no string".
    pub fn resolve(self, strings: &[u8]) -> std::result::Result<Option<&str>, StrError> {
        if self.offset == NO_STRING {
            return Ok(None);
        }
        let bytes = strings
            .get(self.offset as usize..self.offset as usize + self.len as usize)
            .ok_or(StrError::OutOfBounds)?;
        std::str::from_utf8(bytes)
            .map(Some)
            .map_err(|_| StrError::NotUtf8)
    }
}

/// The references of a table of string references, in order.
pub fn refs(table: &[u8]) -> impl Iterator<Item = StrRef> + '_ {
    table.chunks_exact(STRING_REF_LEN).map(StrRef::decode)
}

/// A segment's Strings section while it is written: every string is appended once per reference.
#[derive(Debug, Default)]
pub struct StringPool(Vec<u8>);

impl StringPool {
    pub fn add(&mut self, s: &str) -> Result<StrRef> {
        let off = u32::try_from(self.0.len()).ok();
        let len = u32::try_from(s.len()).ok();
        match (off, len) {
            (Some(off), Some(len)) if off.checked_add(len).is_some_and(|e| e < NO_STRING) => {
                self.0.extend_from_slice(s.as_bytes());
                Ok(StrRef { offset: off, len })
            }
            _ => Err(Error::InvalidInput(
                "more than 4 GiB of names, labels and metadata in one append; append in smaller batches".into(),
            )),
        }
    }

    /// Adds `s` (or nothing, for `None`) and appends its reference to `out`.
    pub fn add_ref(&mut self, s: Option<&str>, out: &mut Vec<u8>) -> Result<()> {
        let r = match s {
            Some(s) => self.add(s)?,
            None => StrRef::NONE,
        };
        r.encode_into(out);
        Ok(())
    }

    /// The section's bytes (empty: the segment has no Strings section).
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// The length rule: any length; references are checked against it.
pub fn required_len(s: &SectionEntry) -> Option<u64> {
    Some(s.len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooled_strings_resolve_and_bad_references_do_not() {
        let mut pool = StringPool::default();
        let mut table = Vec::new();
        pool.add_ref(Some("dog"), &mut table).unwrap();
        pool.add_ref(None, &mut table).unwrap();
        pool.add_ref(Some("cat"), &mut table).unwrap();
        let refs: Vec<StrRef> = refs(&table).collect();
        assert_eq!(refs[1], StrRef::NONE);
        let text: Vec<_> = refs
            .iter()
            .map(|r| r.resolve(pool.bytes()).unwrap())
            .collect();
        assert_eq!(text, [Some("dog"), None, Some("cat")]);
        assert_eq!(StrRef::at(&table, 2), refs[2]);
        let past = StrRef { offset: 4, len: 3 };
        assert_eq!(past.resolve(pool.bytes()), Err(StrError::OutOfBounds));
        assert!(past.check(pool.bytes().len() as u64).is_err());
        assert!(StrRef::NONE.check(0).is_ok());
        let bad = StrRef { offset: 0, len: 2 };
        assert_eq!(bad.resolve(&[0xff, 0xfe]), Err(StrError::NotUtf8));
    }
}
