//! The ObservedProbes section (kind 9) of collaborative probing: per model of the segment, a
//! bitmap of `param` bytes; bit `p % 8` of byte `p / 8` is set when the model was run on probe
//! `p`.

use super::{SectionEntry, SegmentCounts};

/// Bytes of one model's bitmap.
pub fn bitmap_len(num_probes: u32) -> u64 {
    u64::from(num_probes).div_ceil(8)
}

/// Encodes one bitmap per model: the probes it was run on, `None` for all `num_probes` of them.
/// Returns the bytes and the section's `param` (the bytes of one bitmap).
pub fn encode(observed: &[Option<Vec<u32>>], num_probes: u32) -> (Vec<u8>, u64) {
    let per_model = bitmap_len(num_probes) as usize;
    let mut bitmaps = vec![0u8; per_model * observed.len()];
    for (m, obs) in observed.iter().enumerate() {
        let bitmap = &mut bitmaps[m * per_model..(m + 1) * per_model];
        match obs {
            Some(probes) => {
                for &q in probes {
                    bitmap[q as usize / 8] |= 1 << (q % 8);
                }
            }
            None => {
                for q in 0..num_probes as usize {
                    bitmap[q / 8] |= 1 << (q % 8);
                }
            }
        }
    }
    (bitmaps, per_model as u64)
}

/// The probes model `m` of the segment was run on; `len` is the section's `param`.
pub fn decode(section: &[u8], len: usize, m: usize, num_probes: usize) -> Vec<u32> {
    let bitmap = &section[m * len..(m + 1) * len];
    (0..num_probes as u32)
        .filter(|&p| bitmap[p as usize / 8] & (1 << (p % 8)) != 0)
        .collect()
}

/// The first model (of the segment) whose bitmap has a bit set past the probe count, for verify.
pub fn first_with_bits_past(section: &[u8], len: usize, num_probes: usize) -> Option<usize> {
    section
        .chunks_exact(len)
        .position(|bitmap| (num_probes..len * 8).any(|q| bitmap[q / 8] & (1 << (q % 8)) != 0))
}

/// The length rule: one bitmap of the right size per model.
pub fn required_len(s: &SectionEntry, c: &SegmentCounts) -> Result<Option<u64>, String> {
    if s.param != bitmap_len(c.probes) {
        return Err(format!(
            "observed-probe bitmaps of {} bytes do not fit {} probes",
            s.param, c.probes
        ));
    }
    Ok(c.models.checked_mul(s.param))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmaps_round_trip_and_stray_bits_are_found() {
        let (mut bytes, len) = encode(&[Some(vec![0, 3, 9]), None], 10);
        assert_eq!(len, 2);
        assert_eq!(decode(&bytes, 2, 0, 10), [0, 3, 9]);
        assert_eq!(decode(&bytes, 2, 1, 10), (0..10).collect::<Vec<_>>());
        assert_eq!(first_with_bits_past(&bytes, 2, 10), None);
        bytes[3] |= 0x80;
        assert_eq!(first_with_bits_past(&bytes, 2, 10), Some(1));
    }
}
