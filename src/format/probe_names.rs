//! The ProbeNames section (kind 6): one string reference per probe, the probe's name. The latest
//! segment that has one sets the names.

use super::SegmentCounts;
use super::strings::{STRING_REF_LEN, StrRef, StringPool};
use crate::error::Result;

/// Encodes the names, in probe order; the strings go to `strings`.
pub fn encode(names: &[String], strings: &mut StringPool) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(names.len() * STRING_REF_LEN);
    for n in names {
        strings.add_ref(Some(n), &mut out)?;
    }
    Ok(out)
}

/// The name references, in probe order.
pub fn refs(section: &[u8]) -> impl Iterator<Item = StrRef> + '_ {
    super::strings::refs(section)
}

/// The length rule: one reference per probe.
pub fn required_len(c: &SegmentCounts) -> Option<u64> {
    u64::from(c.probes).checked_mul(STRING_REF_LEN as u64)
}
