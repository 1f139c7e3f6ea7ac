//! The EmbeddedProbeSet section (kind `0x8000000C`): the index's probe set file (`.pset`,
//! format-spec.md appendix A) stored byte for byte, so that the index alone is enough to probe
//! new models and extracting it gives the original file back. `param` is 0. A file holds at most
//! one, and its probe count and fingerprint (the file's trailer) are the header's probe-set
//! identity.

use super::{ProbeSetId, SectionEntry};
use crate::error::{Error, Result};
use crate::probe_set::{self, HEADER_LEN, ProbeSet, TRAILER_LEN};

/// The shortest section: a probe set file's header and trailer.
const MIN_LEN: u64 = (HEADER_LEN + TRAILER_LEN) as u64;

/// The length rule: the section's own length, at least a probe set file's header and trailer,
/// with `param` 0 (the exact length is the one its header describes, checked at open by
/// [`check_stated`]).
pub fn required_len(s: &SectionEntry) -> std::result::Result<Option<u64>, String> {
    if s.param != 0 {
        return Err(format!(
            "embedded probe set has parameter {}, not 0",
            s.param
        ));
    }
    if s.len < MIN_LEN {
        return Err(format!(
            "embedded probe set of {} bytes is shorter than a probe set file ({MIN_LEN})",
            s.len
        ));
    }
    Ok(Some(s.len))
}

/// The check made at open, O(1): the bytes' header describes exactly the section, and the probe
/// count and fingerprint they state are the index's. The content is checked against the
/// fingerprint by [`decode`] (on use, and by verify).
pub fn check_stated(bytes: &[u8], index: ProbeSetId) -> std::result::Result<(), String> {
    let stated = probe_set::stated_id(bytes).map_err(|e| format!("embedded probe set: {e}"))?;
    if stated != index {
        return Err(format!(
            "the embedded probe set ({stated}) is not the index's ({index})"
        ));
    }
    Ok(())
}

/// Parses and checks the section completely: the probe set file's every rule, its fingerprint
/// against its content, and its identity against the index's.
pub fn decode(bytes: &[u8], index: ProbeSetId) -> Result<ProbeSet> {
    check_stated(bytes, index).map_err(Error::corrupt)?;
    ProbeSet::from_bytes(bytes).map_err(|e| match e {
        Error::InvalidInput(m) => Error::corrupt(format!("embedded probe set: {m}")),
        other => other,
    })
}

/// The check made before the bytes of a probe set file are embedded in an index of identity
/// `index`: a valid file whose identity is the index's. Returns the parsed set.
pub fn check_for_index(bytes: &[u8], index: ProbeSetId) -> Result<ProbeSet> {
    let set = ProbeSet::from_bytes(bytes)?;
    if set.id() != index {
        return Err(Error::ProbeSetMismatch {
            expected: index.to_string(),
            actual: set.id().to_string(),
        });
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::SectionKind;

    fn sample() -> ProbeSet {
        let names = vec!["a.png".to_string(), "b.png".to_string()];
        ProbeSet::new(2, names, (0..24).collect()).unwrap()
    }

    #[test]
    fn identity_is_checked_cheaply_and_content_fully() {
        let set = sample();
        let bytes = set.to_bytes();
        let id = set.id();
        check_stated(&bytes, id).unwrap();
        assert_eq!(decode(&bytes, id).unwrap(), set);
        assert!(check_for_index(&bytes, id).is_ok());
        let other = ProbeSetId::anonymous(2);
        assert!(
            check_stated(&bytes, other)
                .unwrap_err()
                .contains("not the index's")
        );
        assert!(matches!(
            check_for_index(&bytes, other),
            Err(Error::ProbeSetMismatch { .. })
        ));
        let mut damaged = bytes.clone();
        let pixel = damaged.len() - TRAILER_LEN - 1;
        damaged[pixel] ^= 1;
        check_stated(&damaged, id).unwrap();
        let e = decode(&damaged, id).unwrap_err().to_string();
        assert!(e.contains("fingerprint"), "{e}");
        assert!(check_stated(&bytes[..bytes.len() - 1], id).is_err());
    }

    #[test]
    fn length_rule() {
        let row = |len, param| SectionEntry {
            kind: SectionKind::EmbeddedProbeSet as u32,
            crc: 0,
            offset: 4096,
            len,
            param,
        };
        assert_eq!(required_len(&row(200, 0)), Ok(Some(200)));
        assert!(required_len(&row(95, 0)).is_err());
        assert!(required_len(&row(200, 1)).is_err());
    }
}
