//! The ProbeFactors section (kind 8) of collaborative probing: a 64-byte header (u32 rank, f32
//! lambda, zeros), then the f32 row-major `[num_probes, rank]` low-rank probe factors. `param`
//! is the rank. The latest segment that has one wins.

use super::bytes::get_u32;
use super::{SectionEntry, SegmentCounts};
use crate::collab::ProbeFactors;
use crate::error::{Error, Result};

/// Bytes before the factor matrix.
pub const FACTORS_HEADER_LEN: usize = 64;
const F_RANK: usize = 0;
const F_LAMBDA: usize = F_RANK + 4;

/// The section's bytes (format-spec.md §7): header, then the matrix.
pub fn encode(factors: &ProbeFactors, lambda: f32) -> Vec<u8> {
    let mut out = vec![0u8; FACTORS_HEADER_LEN];
    out[F_RANK..F_RANK + 4].copy_from_slice(&(factors.rank as u32).to_le_bytes());
    out[F_LAMBDA..F_LAMBDA + 4].copy_from_slice(&lambda.to_le_bytes());
    out.extend_from_slice(bytemuck::cast_slice(&factors.values));
    out
}

/// Decodes the section of an index of `probes` probes, whose table row says `rank`. Returns the
/// factors and their regularization.
pub fn decode(bytes: &[u8], probes: usize, rank: u64) -> Result<(ProbeFactors, f32)> {
    if bytes.len() < FACTORS_HEADER_LEN {
        return Err(Error::corrupt(
            "probe factor section shorter than its header",
        ));
    }
    let stored_rank = get_u32(bytes, F_RANK);
    let lambda = f32::from_le_bytes(bytes[F_LAMBDA..F_LAMBDA + 4].try_into().expect("4 bytes"));
    if u64::from(stored_rank) != rank || !(lambda.is_finite() && lambda > 0.0) {
        return Err(Error::corrupt(format!(
            "probe factor header (rank {stored_rank}, lambda {lambda}) is inconsistent"
        )));
    }
    let values: Vec<f32> = bytes[FACTORS_HEADER_LEN..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect();
    let factors = ProbeFactors::new(probes, stored_rank as usize, values)
        .map_err(|e| Error::corrupt(e.to_string()))?;
    Ok((factors, lambda))
}

/// The length rule: the header and a `[num_probes, rank]` matrix, for a rank from 1 to the probe
/// count.
pub fn required_len(s: &SectionEntry, c: &SegmentCounts) -> Result<Option<u64>, String> {
    let p = u64::from(c.probes);
    if s.param == 0 || s.param > p {
        return Err(format!("probe factor rank {} is impossible", s.param));
    }
    Ok(p.checked_mul(s.param)
        .and_then(|x| x.checked_mul(4))
        .and_then(|x| x.checked_add(FACTORS_HEADER_LEN as u64)))
}
