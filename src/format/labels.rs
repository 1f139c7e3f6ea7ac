//! The EntryLabels section (kind 3): one string reference per entry of the segment, its class
//! label (or "no string").

use super::SegmentCounts;
use super::strings::{STRING_REF_LEN, StrRef, StringPool};
use crate::error::Result;

/// Encodes one label per entry; the strings go to `strings`.
pub fn encode(labels: &[Option<String>], strings: &mut StringPool) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(labels.len() * STRING_REF_LEN);
    for l in labels {
        strings.add_ref(l.as_deref(), &mut out)?;
    }
    Ok(out)
}

/// The label reference of entry `e` of the segment.
pub fn label(section: &[u8], e: usize) -> StrRef {
    StrRef::at(section, e)
}

/// The length rule: one reference per entry.
pub fn required_len(c: &SegmentCounts) -> Option<u64> {
    c.entries.checked_mul(STRING_REF_LEN as u64)
}
