//! The compact, query-independent vector the HNSW graph is built over: a random sketch of each
//! descriptor's highest probes.
//!
//! The asymmetric top-k discrepancy rewards entries that respond strongly on the query's top
//! probes. So an entry keeps only its `keep` highest probes (value and position), and that sparse
//! vector is projected by a seeded random ±1/√dims matrix to `dims` dimensions. A query is
//! projected the same way from its own top-k probes; the inner product of the two sketches
//! estimates the overlap of the entry's strong responses with the query's, which is what the
//! exact rerank then measures. `benches/ann.rs vectors` compares this with PCA projections of the
//! whole descriptor (which rank by correlation, the paper's weak all-probe variant, and lost
//! the winners far more often).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::error::Result;

/// Entries per work unit of the streaming passes.
const BLOCK: usize = 4096;

/// A random sketch: `probes × dims` matrix and the number of top probes kept per entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Sketch {
    probes: usize,
    dims: usize,
    keep: usize,
    /// Row-major `[probes, dims]`.
    basis: Vec<f32>,
}

impl Sketch {
    /// A fresh seeded sketch.
    pub fn new(probes: usize, dims: usize, keep: usize, seed: u64) -> Sketch {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let v = 1.0 / (dims as f32).sqrt();
        let basis = (0..probes * dims)
            .map(|_| if rng.random::<bool>() { v } else { -v })
            .collect();
        Sketch {
            probes,
            dims,
            keep: keep.clamp(1, probes.max(1)),
            basis,
        }
    }

    /// A sketch from stored parts (the caller checked the lengths).
    pub(crate) fn from_parts(probes: usize, dims: usize, keep: usize, basis: Vec<f32>) -> Self {
        debug_assert_eq!(basis.len(), probes * dims);
        Sketch {
            probes,
            dims,
            keep,
            basis,
        }
    }

    pub fn probes(&self) -> usize {
        self.probes
    }
    pub fn dims(&self) -> usize {
        self.dims
    }
    pub fn keep(&self) -> usize {
        self.keep
    }
    /// Row-major `[probes, dims]`.
    pub fn basis(&self) -> &[f32] {
        &self.basis
    }

    /// Sketches of `n` entries whose probe-major rows `fill_row(p, out)` produces, row-major
    /// `[n, dims]`. One pass over the rows keeps each entry's `keep` highest values.
    pub fn sketch_rows(
        &self,
        n: usize,
        fill_row: &mut dyn FnMut(usize, &mut [f32]) -> Result<()>,
    ) -> Result<Vec<f32>> {
        let m = self.keep;
        let mut top = TopProbes {
            m,
            values: vec![f32::NEG_INFINITY; n * m],
            probes: vec![0u32; n * m],
            min_at: vec![0u32; n],
        };
        let mut row = vec![0f32; n];
        for p in 0..self.probes {
            fill_row(p, &mut row)?;
            top.offer(p as u32, &row);
        }
        let d = self.dims;
        let mut out = vec![0f32; n * d];
        out.par_chunks_mut(BLOCK * d)
            .enumerate()
            .for_each(|(b, chunk)| {
                for (i, v) in chunk.chunks_exact_mut(d).enumerate() {
                    let e = b * BLOCK + i;
                    for j in e * m..(e + 1) * m {
                        let p = top.probes[j] as usize;
                        axpy(v, top.values[j], &self.basis[p * d..(p + 1) * d]);
                    }
                }
            });
        Ok(out)
    }

    /// The sketch of one full descriptor.
    pub fn sketch_descriptor(&self, x: &[f32]) -> Vec<f32> {
        let mut order: Vec<usize> = (0..x.len().min(self.probes)).collect();
        order.sort_by(|&a, &b| x[b].total_cmp(&x[a]).then(a.cmp(&b)));
        self.weighted_sum(order.iter().take(self.keep).map(|&p| (p, x[p])))
    }

    /// The query-side vector: the sketch of the query restricted to its top probes.
    pub fn query_vector(&self, q: &[f32], top_probes: &[u32]) -> Vec<f32> {
        self.weighted_sum(top_probes.iter().map(|&p| (p as usize, q[p as usize])))
    }

    fn weighted_sum(&self, terms: impl Iterator<Item = (usize, f32)>) -> Vec<f32> {
        let d = self.dims;
        let mut out = vec![0f32; d];
        for (p, w) in terms {
            axpy(&mut out, w, &self.basis[p * d..(p + 1) * d]);
        }
        out
    }
}

/// Each entry's `m` highest values seen so far, unsorted, with the position of the smallest.
struct TopProbes {
    m: usize,
    values: Vec<f32>,
    probes: Vec<u32>,
    min_at: Vec<u32>,
}

impl TopProbes {
    /// Offers probe `p`'s row (one value per entry).
    fn offer(&mut self, p: u32, row: &[f32]) {
        let m = self.m;
        self.values
            .par_chunks_mut(BLOCK * m)
            .zip(self.probes.par_chunks_mut(BLOCK * m))
            .zip(self.min_at.par_chunks_mut(BLOCK))
            .zip(row.par_chunks(BLOCK))
            .for_each(|(((values, probes), min_at), row)| {
                for (e, &x) in row.iter().enumerate() {
                    let vals = &mut values[e * m..(e + 1) * m];
                    let at = min_at[e] as usize;
                    // NaN never enters (descriptors are finite; this keeps it so).
                    if x > vals[at] {
                        vals[at] = x;
                        probes[e * m + at] = p;
                        let mut low = 0;
                        for (i, &v) in vals.iter().enumerate().skip(1) {
                            if v < vals[low] {
                                low = i;
                            }
                        }
                        min_at[e] = low as u32;
                    }
                }
            });
    }
}

/// `acc += a * x`.
#[inline]
pub(crate) fn axpy(acc: &mut [f32], a: f32, x: &[f32]) {
    for (s, &v) in acc.iter_mut().zip(x) {
        *s += a * v;
    }
}

/// Inner product.
#[inline]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Four partial sums let the compiler vectorize without reassociation flags.
    let mut s = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            s[i] += x[i] * y[i];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    s.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaming_sketch_equals_per_descriptor_sketch() {
        let (p, n) = (50, 37);
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let rows: Vec<Vec<f32>> = (0..p)
            .map(|_| (0..n).map(|_| rng.random_range(-3f32..3.0)).collect())
            .collect();
        let s = Sketch::new(p, 16, 5, 1);
        let all = s
            .sketch_rows(n, &mut |r, out| {
                out.copy_from_slice(&rows[r]);
                Ok(())
            })
            .unwrap();
        for e in 0..n {
            let x: Vec<f32> = (0..p).map(|r| rows[r][e]).collect();
            let one = s.sketch_descriptor(&x);
            for (a, b) in all[e * 16..(e + 1) * 16].iter().zip(&one) {
                assert!((a - b).abs() < 1e-4, "entry {e}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn dot_matches_naive() {
        let a: Vec<f32> = (0..37).map(|i| i as f32 * 0.5).collect();
        let b: Vec<f32> = (0..37).map(|i| 1.0 - i as f32 * 0.25).collect();
        let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - naive).abs() < 1e-3);
    }
}
