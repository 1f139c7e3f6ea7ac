//! The alternative graph vector that `ann vectors` compares with the product's sketch: a PCA
//! projection of the z-normalized descriptors.
//!
//! The basis is fitted on a seeded sample of the segment's entries by subspace iteration (the
//! dominant `dims`-dimensional subspace of the centred sample; the order and rotation of the basis
//! vectors inside it do not matter, because every use of the projection — L2 distances between
//! compact vectors, and low-rank reconstructions of a query's top-k probes — is invariant to them).

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use probelog::reader::DescriptorRows;
use probelog::testkit::synth::standard_normal;

/// Entries projected per work unit.
const PROJECT_BLOCK: usize = 256;

/// A probe-space mean and an orthonormal basis of `dims` directions.
#[derive(Debug, Clone, PartialEq)]
pub struct Projection {
    probes: usize,
    dims: usize,
    /// Mean descriptor of the fitting sample, `[probes]`.
    mean: Vec<f32>,
    /// Row-major `[probes, dims]`; the columns are orthonormal.
    basis: Vec<f32>,
}

/// How [`Projection::fit`] samples and iterates.
#[derive(Debug, Clone, Copy)]
pub struct FitOptions {
    pub dims: usize,
    /// Entries sampled for the fit (all of them when the segment is smaller).
    pub sample: usize,
    pub iterations: usize,
    pub seed: u64,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            dims: 32,
            sample: 20_000,
            iterations: 8,
            seed: 0x5eed,
        }
    }
}

impl Projection {
    /// Fits the dominant subspace of the descriptors in `rows` (`probes` rows).
    pub fn fit(rows: &DescriptorRows<'_>, probes: usize, opts: &FitOptions) -> Projection {
        let n = rows.entries();
        let dims = opts.dims.min(probes).max(1);
        let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
        let mut picked: Vec<usize> = if n <= opts.sample {
            (0..n).collect()
        } else {
            rand::seq::index::sample(&mut rng, n, opts.sample).into_vec()
        };
        picked.sort_unstable();
        let s = picked.len();

        // The sample, row-major [s, probes], centred.
        let mut x = vec![0f32; s * probes];
        let mut mean = vec![0f32; probes];
        for (p, m) in mean.iter_mut().enumerate() {
            let mut sum = 0f64;
            for (i, &e) in picked.iter().enumerate() {
                let v = rows.value(p, e);
                x[i * probes + p] = v;
                sum += f64::from(v);
            }
            *m = if s == 0 { 0.0 } else { (sum / s as f64) as f32 };
        }
        x.par_chunks_mut(probes).for_each(|row| {
            for (v, m) in row.iter_mut().zip(&mean) {
                *v -= m;
            }
        });

        let mut basis: Vec<f32> = (0..probes * dims)
            .map(|_| standard_normal(&mut rng))
            .collect();
        orthonormalize_columns(&mut basis, probes, dims);
        for _ in 0..opts.iterations {
            // y = x · basis   [s, dims]
            let y: Vec<f32> = x
                .par_chunks(probes)
                .flat_map_iter(|row| {
                    let mut acc = vec![0f32; dims];
                    for (p, &v) in row.iter().enumerate() {
                        axpy(&mut acc, v, &basis[p * dims..(p + 1) * dims]);
                    }
                    acc
                })
                .collect();
            // z = xᵀ · y   [probes, dims], summed over chunks of sample rows.
            let chunk = s.div_ceil(rayon::current_num_threads().max(1)).max(1);
            let z = x
                .par_chunks(chunk * probes)
                .zip(y.par_chunks(chunk * dims))
                .map(|(xs, ys)| {
                    let mut z = vec![0f32; probes * dims];
                    for (row, yrow) in xs.chunks(probes).zip(ys.chunks(dims)) {
                        for (p, &v) in row.iter().enumerate() {
                            axpy(&mut z[p * dims..(p + 1) * dims], v, yrow);
                        }
                    }
                    z
                })
                .reduce(
                    || vec![0f32; probes * dims],
                    |mut a, b| {
                        a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
                        a
                    },
                );
            basis = z;
            orthonormalize_columns(&mut basis, probes, dims);
        }
        Projection {
            probes,
            dims,
            mean,
            basis,
        }
    }

    /// Compact vectors of every entry in `rows`, row-major `[entries, dims]`.
    pub fn project_rows(&self, rows: &DescriptorRows<'_>) -> Vec<f32> {
        let n = rows.entries();
        let d = self.dims;
        let mut out = vec![0f32; n * d];
        out.par_chunks_mut(PROJECT_BLOCK * d)
            .enumerate()
            .for_each(|(b, block)| {
                let start = b * PROJECT_BLOCK;
                let len = block.len() / d;
                let mut row = vec![0f32; len];
                for p in 0..self.probes {
                    rows.read_row(p, start..start + len, &mut row);
                    let w = &self.basis[p * d..(p + 1) * d];
                    let m = self.mean[p];
                    for (e, &v) in row.iter().enumerate() {
                        axpy(&mut block[e * d..(e + 1) * d], v - m, w);
                    }
                }
            });
        out
    }

    /// The compact vector of one descriptor.
    pub fn project(&self, x: &[f32]) -> Vec<f32> {
        let d = self.dims;
        let mut out = vec![0f32; d];
        for (p, &v) in x.iter().enumerate().take(self.probes) {
            axpy(&mut out, v - self.mean[p], &self.basis[p * d..(p + 1) * d]);
        }
        out
    }
}

/// `acc += a * x`.
#[inline]
fn axpy(acc: &mut [f32], a: f32, x: &[f32]) {
    for (s, &v) in acc.iter_mut().zip(x) {
        *s += a * v;
    }
}

/// Modified Gram-Schmidt on the columns of a row-major `[rows, cols]` matrix. A column that
/// vanishes (rank deficiency) is replaced by a unit vector orthogonal to the others.
fn orthonormalize_columns(m: &mut [f32], rows: usize, cols: usize) {
    let col_dot = |m: &[f32], a: usize, b: usize| -> f64 {
        (0..rows)
            .map(|r| f64::from(m[r * cols + a]) * f64::from(m[r * cols + b]))
            .sum()
    };
    for j in 0..cols {
        for _pass in 0..2 {
            for i in 0..j {
                let d = col_dot(m, i, j) as f32;
                for r in 0..rows {
                    m[r * cols + j] -= d * m[r * cols + i];
                }
            }
        }
        let mut norm = col_dot(m, j, j).sqrt();
        if norm < 1e-6 {
            // Replace by the first coordinate axis that is not yet spanned.
            for axis in 0..rows {
                for r in 0..rows {
                    m[r * cols + j] = if r == axis { 1.0 } else { 0.0 };
                }
                for i in 0..j {
                    let d = col_dot(m, i, j) as f32;
                    for r in 0..rows {
                        m[r * cols + j] -= d * m[r * cols + i];
                    }
                }
                norm = col_dot(m, j, j).sqrt();
                if norm > 1e-3 {
                    break;
                }
            }
        }
        let inv = (1.0 / norm.max(1e-12)) as f32;
        for r in 0..rows {
            m[r * cols + j] *= inv;
        }
    }
}
