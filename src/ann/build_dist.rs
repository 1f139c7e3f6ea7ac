//! The distance the graph build runs on: [`super::ListDist`] (symmetric top-k L1 between two top
//! lists) read straight from the stored top lists (`u32` items, highest value first, so an
//! entry's own top `build_k` probes are its first `build_k` items), with the inserted node's list
//! scattered over the probes so that a distance is one pass over the other node's items.

use super::hnsw::BuildDistance;

/// The top lists of a build, `keep` items per node.
pub(super) struct TopLists<'a> {
    pub(super) lists: &'a [u32],
    pub(super) keep: usize,
    /// Items of each list that are the entry's own top probes (at most `keep`).
    pub(super) build_k: usize,
    pub(super) probes: usize,
}

/// A node prepared for distances from it: its list scattered over the probes.
#[derive(Debug)]
pub(super) struct DenseList {
    /// The node's value at each probe of its list, 0 elsewhere.
    value: Vec<f32>,
    /// 1 where the probe is one of the node's own top `build_k`, 0 elsewhere.
    top: Vec<f32>,
    /// The sum of `|value|` over the node's top probes.
    base: f32,
}

/// An item's probe and value. The value is the item's f16 widened by moving its bits (exact for
/// normal numbers; an f16 zero or subnormal, below 6.2e-5, reads as a number below 1e-4 of its
/// own size, which no build distance notices). Stored lists hold no infinities or NaNs.
#[inline]
fn item(x: u32) -> (usize, f32) {
    let h = x >> 16;
    let bits = ((h & 0x8000) << 16) | (((h & 0x7fff) << 13) + 0x3800_0000);
    ((x & 0xffff) as usize, f32::from_bits(bits))
}

impl TopLists<'_> {
    fn list(&self, v: u32) -> &[u32] {
        let (v, k) = (v as usize, self.keep);
        &self.lists[v * k..(v + 1) * k]
    }

    /// `u`'s value at probe `p` (0 off its list).
    fn value_at(&self, u: u32, p: usize) -> f32 {
        self.list(u)
            .iter()
            .map(|&x| item(x))
            .find(|&(q, _)| q == p)
            .map_or(0.0, |(_, v)| v)
    }

    /// The one-sided sum over `a`'s top probes of `|a - b|`.
    fn one_side(&self, a: u32, b: u32) -> f32 {
        self.list(a)[..self.build_k]
            .iter()
            .map(|&x| {
                let (p, v) = item(x);
                (v - self.value_at(b, p)).abs()
            })
            .sum()
    }
}

impl BuildDistance for TopLists<'_> {
    type Prepared = DenseList;

    fn scratch(&self) -> DenseList {
        DenseList {
            value: vec![0.0; self.probes],
            top: vec![0.0; self.probes],
            base: 0.0,
        }
    }

    fn prepare(&self, v: u32, q: &mut DenseList) {
        q.base = 0.0;
        for (i, &x) in self.list(v).iter().enumerate() {
            let (p, val) = item(x);
            let top = if i < self.build_k { 1.0 } else { 0.0 };
            q.value[p] = val;
            q.top[p] = top;
            q.base += top * val.abs();
        }
    }

    fn release(&self, v: u32, q: &mut DenseList) {
        for &x in self.list(v) {
            let p = (x & 0xffff) as usize;
            q.value[p] = 0.0;
            q.top[p] = 0.0;
        }
    }

    /// The distance from the prepared node `v` to `u`, by `u`'s items alone: an item on a probe
    /// of `v`'s list adds `|u - v|` weighted by how many of the two hold it in their top, less
    /// `v`'s own top term there (which `base` counted as unmatched); any other item adds `|u|`
    /// when it is one of `u`'s top.
    #[inline]
    fn dist_prepared(&self, q: &DenseList, u: u32) -> f32 {
        let term = |x: u32, top: f32| {
            let (p, val) = item(x);
            let (d, w) = (q.value[p], q.top[p]);
            (val - d).abs() * (top + w) - w * d.abs()
        };
        let (own, rest) = self.list(u).split_at(self.build_k);
        // Four running sums, so that the additions do not wait on each other.
        let mut acc = [0f32; 4];
        for (i, &x) in own.iter().enumerate() {
            acc[i % 4] += term(x, 1.0);
        }
        for (i, &x) in rest.iter().enumerate() {
            acc[i % 4] += term(x, 0.0);
        }
        q.base + (acc[0] + acc[2]) + (acc[1] + acc[3])
    }

    fn dist(&self, a: u32, b: u32) -> f32 {
        self.one_side(a, b) + self.one_side(b, a)
    }

    #[inline]
    fn prefetch(&self, u: u32) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            for line in self.list(u).chunks(16) {
                // SAFETY: a prefetch is a hint that never faults, and the pointer is into a live
                // slice.
                unsafe { _mm_prefetch::<_MM_HINT_T0>(line.as_ptr().cast::<i8>()) };
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = u;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ann::{ListDist, pack_for_distance, pack_item};
    use hnsw_rs::anndists::dist::Distance;
    use rand::{Rng, SeedableRng};

    #[test]
    fn build_distances_are_list_dist() {
        let (probes, keep, build_k, n) = (300usize, 32usize, 16usize, 60usize);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let lists: Vec<u32> = (0..n)
            .flat_map(|_| {
                let picked = rand::seq::index::sample(&mut rng, probes, keep).into_vec();
                let mut items: Vec<(u32, f32)> = picked
                    .into_iter()
                    .map(|p| (p as u32, rng.random_range(-3.0f32..6.0)))
                    .collect();
                items.sort_by(|a, b| b.1.total_cmp(&a.1));
                items
                    .into_iter()
                    .map(|(p, v)| pack_item(p, v))
                    .collect::<Vec<_>>()
            })
            .collect();
        let packed: Vec<Vec<u64>> = lists
            .chunks_exact(keep)
            .map(|l| pack_for_distance(l, build_k))
            .collect();
        let d = TopLists {
            lists: &lists,
            keep,
            build_k,
            probes,
        };
        let mut q = d.scratch();
        for a in 0..n as u32 {
            d.prepare(a, &mut q);
            for b in 0..n as u32 {
                let want = ListDist.eval(&packed[a as usize], &packed[b as usize]);
                let tol = 1e-3 * want.max(1.0);
                let fast = d.dist_prepared(&q, b);
                assert!((fast - want).abs() <= tol, "{a} {b}: {fast} vs {want}");
                let plain = d.dist(a, b);
                assert!((plain - want).abs() <= tol, "{a} {b}: {plain} vs {want}");
            }
            d.release(a, &mut q);
            assert!(q.value.iter().chain(&q.top).all(|&x| x == 0.0));
        }
    }
}
