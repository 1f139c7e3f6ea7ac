//! Small probe sets for unit tests of the probe set format and of what is built on it.

use crate::probe_set::ProbeSet;

/// `n` probe names: `p0.png`, `p1.png`, ...
pub fn probe_names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("p{i}.png")).collect()
}

/// Two 4x4 probes, `p0.png` and `p1.png`, with fixed pixels.
pub fn tiny_probe_set() -> ProbeSet {
    let pixels = (0..2 * 3 * 4 * 4).map(|i| (i * 7 % 256) as u8).collect();
    ProbeSet::new(4, probe_names(2), pixels).expect("a valid probe set")
}
