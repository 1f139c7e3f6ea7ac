//! The probe set embedded in an index (format-spec.md, "EmbeddedProbeSet"): the `.pset` file's
//! bytes as stored, and the probe set they hold.

use crate::error::Result;
use crate::format::embedded_probes;
use crate::probe_set::ProbeSet;

use super::RawIndex;

impl<D: AsRef<[u8]>> RawIndex<D> {
    /// The embedded probe set file's bytes, exactly as they were embedded, or `None` when the
    /// index holds none. Open checked that they state the index's probe-set identity, not yet
    /// that their content matches it: [`RawIndex::embedded_probe_set`] and verify do.
    pub fn embedded_probe_set_bytes(&self) -> Option<&[u8]> {
        let s = self.embedded_probes?;
        let sec = self.segments[s].embedded_probes.expect("recorded at open");
        Some(self.section_bytes(&sec))
    }

    /// The embedded probe set, parsed and checked completely (its fingerprint recomputed over
    /// its content, so this costs a pass over its pixels), or `None` when the index holds none.
    /// Its identity is the index's ([`RawIndex::probe_set`]).
    pub fn embedded_probe_set(&self) -> Result<Option<ProbeSet>> {
        self.embedded_probe_set_bytes()
            .map(|bytes| embedded_probes::decode(bytes, self.probe_set()))
            .transpose()
    }

    /// The segment that holds the embedded probe set.
    pub(crate) fn embedded_probe_set_segment(&self) -> Option<usize> {
        self.embedded_probes
    }
}
