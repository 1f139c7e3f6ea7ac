//! The ProbeEmbeddings section (kind 7): f32 row-major `[num_probes, dim]` probe image
//! embeddings, rows of unit length; `param` is `dim`. The latest segment that has one wins.

use super::{SectionEntry, SegmentCounts};

/// The section's bytes.
pub fn encode(embeddings: &[f32]) -> &[u8] {
    bytemuck::cast_slice(embeddings)
}

/// The values in place, or `None` when the bytes are not 4-aligned.
pub fn view(section: &[u8]) -> Option<&[f32]> {
    bytemuck::try_cast_slice(section).ok()
}

/// The length rule: `num_probes * dim` f32 values, for a dimension from 1 to `u32::MAX`.
pub fn required_len(s: &SectionEntry, c: &SegmentCounts) -> Result<Option<u64>, String> {
    if s.param == 0 || s.param > u64::from(u32::MAX) {
        return Err(format!(
            "probe embedding dimension {} is impossible",
            s.param
        ));
    }
    Ok(u64::from(c.probes)
        .checked_mul(s.param)
        .and_then(|x| x.checked_mul(4)))
}
