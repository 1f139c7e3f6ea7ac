//! The descriptor values a writer has staged, probe-major, in blocks of entries.
//!
//! A block holds `width` entries for every probe (`values[p * width + j]`), so staging a model
//! writes each probe's z-normalized values next to the previous model's and never moves what was
//! staged: one growing vector per probe was reallocated and copied as it grew. The commit reads
//! the rows back as they are stored, so its encoding pass touches 4 bytes per value and nothing
//! else (docs/benchmarks.md, "Build").

use crate::descriptor::{LogitMatrix, LogitStats, normalize_row};

/// Values per block: 4 Mi f32 (16 MiB), whatever the probe count.
const BLOCK_VALUES: usize = 4 << 20;

pub(super) struct StagedRows {
    probes: usize,
    /// Entries per block: `BLOCK_VALUES / probes`, at least 1.
    width: usize,
    /// Full blocks, then the one being filled; empty until the first entry.
    blocks: Vec<Vec<f32>>,
    entries: usize,
}

impl StagedRows {
    pub(super) fn new(probes: usize) -> Self {
        StagedRows {
            probes,
            width: (BLOCK_VALUES / probes.max(1)).max(1),
            blocks: Vec::new(),
            entries: 0,
        }
    }

    pub(super) fn entries(&self) -> usize {
        self.entries
    }

    /// Stages `logits` z-normalized with `stats`, one logit per new entry.
    pub(super) fn push_normalized(&mut self, logits: &LogitMatrix<'_>, stats: &[LogitStats]) {
        self.push_columns(stats.len(), |r, cols, out| {
            normalize_row(&logits.row(r)[cols.clone()], &stats[cols], out);
        });
    }

    /// Stages `l` new entries of zeros (filled later with [`StagedRows::set`]).
    pub(super) fn push_zeros(&mut self, l: usize) {
        // Blocks start zeroed.
        self.push_columns(l, |_, _, _| {});
    }

    /// Appends `l` entries: `fill(r, cols, out)` writes the values of probe `r` for the new
    /// columns `cols` (a range within `0..l`) into `out`, a block's slice of that length.
    fn push_columns(
        &mut self,
        l: usize,
        mut fill: impl FnMut(usize, std::ops::Range<usize>, &mut [f32]),
    ) {
        let (p, width) = (self.probes, self.width);
        let mut done = 0;
        while done < l {
            let col = self.entries % width;
            if col == 0 {
                self.blocks.push(vec![0f32; p * width]);
            }
            let n = (width - col).min(l - done);
            let block = self.blocks.last_mut().expect("a block was pushed");
            for r in 0..p {
                let at = r * width + col;
                fill(r, done..done + n, &mut block[at..at + n]);
            }
            done += n;
            self.entries += n;
        }
    }

    /// The value of probe `p` for staged entry `entry`.
    pub(super) fn get(&self, p: usize, entry: usize) -> f32 {
        let (b, j) = (entry / self.width, entry % self.width);
        self.blocks[b][p * self.width + j]
    }

    /// Sets the value of probe `p` for staged entry `entry`.
    pub(super) fn set(&mut self, p: usize, entry: usize, value: f32) {
        let (b, j) = (entry / self.width, entry % self.width);
        self.blocks[b][p * self.width + j] = value;
    }

    /// Copies probe `p`'s values of every staged entry into `out` (length [`Self::entries`]).
    pub(super) fn fill_row(&self, p: usize, out: &mut [f32]) {
        let width = self.width;
        for (b, block) in self.blocks.iter().enumerate() {
            let first = b * width;
            let n = width.min(self.entries - first);
            out[first..first + n].copy_from_slice(&block[p * width..p * width + n]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows staged across several blocks (a 3-probe set with tiny blocks) read back as one
    /// probe-major matrix, models straddling blocks included.
    #[test]
    fn models_straddling_blocks_read_back_in_order() {
        let probes = 3;
        let mut staged = StagedRows::new(probes);
        staged.width = 4;
        let mut want: Vec<Vec<f32>> = vec![Vec::new(); probes];
        for (m, l) in [3usize, 6, 1, 5].into_iter().enumerate() {
            // Row-major [probes, l] with values that differ per probe and logit.
            let data: Vec<f32> = (0..probes * l)
                .map(|i| (m * 100 + i) as f32 + (i / l) as f32 * 0.5 * (i % l) as f32)
                .collect();
            let logits = LogitMatrix::new(&data, probes, l).unwrap();
            let stats = crate::descriptor::logit_stats("m", &logits, false).unwrap();
            staged.push_normalized(&logits, &stats);
            for (r, row) in want.iter_mut().enumerate() {
                let mut out = vec![0f32; l];
                normalize_row(logits.row(r), &stats, &mut out);
                row.extend(out);
            }
        }
        staged.push_zeros(2);
        want.iter_mut().for_each(|row| row.extend([0.0, 0.0]));
        assert_eq!(staged.entries(), 17);
        assert_eq!(staged.blocks.len(), 5);
        for (r, row) in want.iter().enumerate() {
            let mut got = vec![f32::NAN; staged.entries()];
            staged.fill_row(r, &mut got);
            assert_eq!(&got, row, "probe {r}");
            for (j, &v) in row.iter().enumerate() {
                assert_eq!(staged.get(r, j), v, "probe {r}, entry {j}");
            }
        }
        staged.set(2, 16, 7.5);
        assert_eq!(staged.get(2, 16), 7.5);
        assert_eq!(staged.get(1, 16), 0.0);
    }
}
