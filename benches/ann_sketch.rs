//! A random sketch of each entry's top list: the dense compact vector the HNSW graph was first
//! built over. The product now builds and walks its graph over the top lists themselves; this is
//! kept for the comparisons of `benches/ann.rs` (`vectors`, `graphs`).
//!
//! An entry's top list (its `keep` highest probes and values) is projected by a seeded random
//! ±1/√dims matrix; a query is projected the same way from its own top-k probes, and the inner
//! product of the two estimates the overlap of their strong responses.

use hnsw_rs::anndists::dist::Distance;
use probelog::ann::unpack_item;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub struct Sketch {
    dims: usize,
    /// Row-major `[probes, dims]`.
    basis: Vec<f32>,
}

impl Sketch {
    pub fn new(probes: usize, dims: usize, seed: u64) -> Sketch {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let v = 1.0 / (dims as f32).sqrt();
        let basis = (0..probes * dims)
            .map(|_| if rng.random::<bool>() { v } else { -v })
            .collect();
        Sketch { dims, basis }
    }

    /// Sketches of packed top lists of `keep` items each (the first `use_items` of each used),
    /// row-major `[n, dims]`.
    pub fn of_lists(&self, lists: &[u32], keep: usize, use_items: usize) -> Vec<f32> {
        let d = self.dims;
        let mut out = vec![0f32; lists.len() / keep * d];
        for (list, v) in lists.chunks_exact(keep).zip(out.chunks_exact_mut(d)) {
            for &item in &list[..use_items.min(keep)] {
                let (p, x) = unpack_item(item);
                axpy(v, x, &self.basis[p as usize * d..(p as usize + 1) * d]);
            }
        }
        out
    }

    /// The query-side vector: the sketch of the query restricted to its top probes.
    pub fn query_vector(&self, q: &[f32], top: &[u32]) -> Vec<f32> {
        let d = self.dims;
        let mut out = vec![0f32; d];
        for &p in top {
            let p = p as usize;
            axpy(&mut out, q[p], &self.basis[p * d..(p + 1) * d]);
        }
        out
    }
}

fn axpy(acc: &mut [f32], a: f32, x: &[f32]) {
    for (s, &v) in acc.iter_mut().zip(x) {
        *s += a * v;
    }
}

/// `Σ f(a[i], b[i])`, summed in eight lanes so that it vectorizes (a sum in order may not be
/// reordered by the compiler).
#[inline]
fn lane_sum(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut s = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(&x, &y)| f(x, y))
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            s[i] += f(x[i], y[i]);
        }
    }
    s.iter().sum::<f32>() + tail
}

/// Inner product.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    lane_sum(a, b, |x, y| x * y)
}

/// Euclidean distance between sketches.
#[derive(Debug, Clone, Copy, Default)]
pub struct SketchL2;

impl Distance<f32> for SketchL2 {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        lane_sum(a, b, |x, y| (x - y) * (x - y)).sqrt()
    }
}
