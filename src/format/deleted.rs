//! The DeletedModels section (kind 12): tombstones. The ids of the models a commit deleted, u64
//! each, strictly increasing, each below the segment's `first_model`; `param` is their count.

use super::{SectionEntry, SegmentCounts};
use crate::error::{Error, Result};

const ID_LEN: u64 = 8;

/// Encodes the deletions of a commit made after `model_count` models: sorted, each id once.
/// Returns the bytes and the section's `param`.
pub fn encode(ids: &[u64], model_count: u64) -> Result<(Vec<u8>, u64)> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    if ids.last().is_some_and(|&m| m >= model_count) {
        return Err(Error::InvalidInput(
            "only committed models can be deleted".into(),
        ));
    }
    let bytes: Vec<u8> = ids.iter().flat_map(|id| id.to_le_bytes()).collect();
    Ok((bytes, ids.len() as u64))
}

/// Adds the tombstones of segment `i` (whose first model is `first_model`) to `deleted`, the
/// ascending ids deleted by the segments before it. They must increase, lie below the segment's
/// first model, and not be deleted already.
pub fn merge(section: &[u8], i: usize, first_model: u64, deleted: &mut Vec<u64>) -> Result<()> {
    let mut ids: Vec<u64> = section
        .chunks_exact(ID_LEN as usize)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
        .collect();
    let increasing = ids.windows(2).all(|w| w[0] < w[1]);
    if !increasing || ids.last().is_some_and(|&m| m >= first_model) {
        return Err(Error::corrupt(format!(
            "segment {i}: deleted model ids are not increasing ids of earlier models"
        )));
    }
    if let Some(m) = ids.iter().find(|m| deleted.binary_search(m).is_ok()) {
        return Err(Error::corrupt(format!(
            "segment {i}: model {m} is deleted a second time"
        )));
    }
    deleted.append(&mut ids);
    deleted.sort_unstable();
    Ok(())
}

/// The length rule: `param` ids, from 1 to the number of models before the segment.
pub fn required_len(s: &SectionEntry, c: &SegmentCounts) -> Result<Option<u64>, String> {
    if s.param == 0 || s.param > c.models_before {
        return Err(format!(
            "{} deleted models, of {} before the segment",
            s.param, c.models_before
        ));
    }
    Ok(s.param.checked_mul(ID_LEN))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tombstones_are_sorted_once_and_merged_once() {
        let (bytes, count) = encode(&[5, 1, 5, 3], 6).unwrap();
        assert_eq!(count, 3);
        assert!(encode(&[6], 6).is_err());
        let mut deleted = vec![0];
        merge(&bytes, 1, 6, &mut deleted).unwrap();
        assert_eq!(deleted, [0, 1, 3, 5]);
        assert!(merge(&bytes, 2, 9, &mut deleted).is_err(), "deleted twice");
        let (later, _) = encode(&[7], 8).unwrap();
        assert!(
            merge(&later, 3, 7, &mut deleted).is_err(),
            "not an earlier model"
        );
    }
}
