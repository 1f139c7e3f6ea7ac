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
    /// Whether the CPU has AVX2, asked once per scratch rather than once per distance.
    #[cfg(target_arch = "x86_64")]
    simd: bool,
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

/// Probes an item can name: its low 16 bits.
const ITEM_PROBES: usize = 1 << 16;

/// One item's term of [`TopLists::dist_prepared`]: an item on a probe of the prepared node's list
/// adds `|u - v|` weighted by how many of the two hold it in their top (`top` is 1 when the item
/// is one of its own node's top), less `v`'s own top term there (which `base` counted as
/// unmatched); any other item adds `|u|` when it is one of `u`'s top.
#[inline]
fn term(q: &DenseList, x: u32, top: f32) -> f32 {
    let (p, val) = item(x);
    let (d, w) = (q.value[p], q.top[p]);
    (val - d).abs() * (top + w) - w * d.abs()
}

/// [`TopLists::dist_prepared`] in plain Rust, for `list`, the other node's items.
fn dist_prepared_portable(q: &DenseList, list: &[u32], build_k: usize) -> f32 {
    let (own, rest) = list.split_at(build_k);
    // Four running sums, so that the additions do not wait on each other.
    let mut acc = [0f32; 4];
    for (i, &x) in own.iter().enumerate() {
        acc[i % 4] += term(q, x, 1.0);
    }
    for (i, &x) in rest.iter().enumerate() {
        acc[i % 4] += term(q, x, 0.0);
    }
    q.base + (acc[0] + acc[2]) + (acc[1] + acc[3])
}

/// [`TopLists::dist_prepared`] eight items at a time: the items' f16 values widened and their
/// prepared values gathered in vector registers (the portable loop is most of a graph build's
/// time, docs/benchmarks.md "Build"). Sums in another order than the portable loop, so the two
/// differ in the last bits.
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dist_prepared_avx2(q: &DenseList, list: &[u32], build_k: usize) -> f32 {
    use std::arch::x86_64::*;
    let vectors = list.len() / 8;
    let probe_bits = _mm256_set1_epi32(0xffff);
    let sign_bit = _mm256_set1_epi32(0x8000);
    let magnitude_bits = _mm256_set1_epi32(0x7fff);
    let exponent_bias = _mm256_set1_epi32(0x3800_0000);
    let abs_bits = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
    let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    let own_items = _mm256_set1_epi32(build_k as i32);
    let one = _mm256_set1_ps(1.0);
    let mut acc = _mm256_setzero_ps();
    for c in 0..vectors {
        // SAFETY: `c * 8 + 8 <= list.len()`; an unaligned load.
        let x = unsafe { _mm256_loadu_si256(list.as_ptr().add(c * 8).cast()) };
        let probe = _mm256_and_si256(x, probe_bits);
        let h = _mm256_srli_epi32::<16>(x);
        let sign = _mm256_slli_epi32::<16>(_mm256_and_si256(h, sign_bit));
        let magnitude = _mm256_add_epi32(
            _mm256_slli_epi32::<13>(_mm256_and_si256(h, magnitude_bits)),
            exponent_bias,
        );
        let val = _mm256_castsi256_ps(_mm256_or_si256(sign, magnitude));
        // SAFETY: every probe index is below 2^16 (masked above), and both tables hold
        // ITEM_PROBES = 2^16 values.
        let (d, w) = unsafe {
            (
                _mm256_i32gather_ps::<4>(q.value.as_ptr(), probe),
                _mm256_i32gather_ps::<4>(q.top.as_ptr(), probe),
            )
        };
        let position = _mm256_add_epi32(lane, _mm256_set1_epi32((c * 8) as i32));
        let top = _mm256_and_ps(
            _mm256_castsi256_ps(_mm256_cmpgt_epi32(own_items, position)),
            one,
        );
        let diff = _mm256_and_ps(_mm256_sub_ps(val, d), abs_bits);
        let t = _mm256_sub_ps(
            _mm256_mul_ps(diff, _mm256_add_ps(top, w)),
            _mm256_mul_ps(w, _mm256_and_ps(d, abs_bits)),
        );
        acc = _mm256_add_ps(acc, t);
    }
    let mut lanes = [0f32; 8];
    // SAFETY: `lanes` holds 8 f32; an unaligned store.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc) };
    let mut sum = q.base
        + ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5]))
        + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]));
    for (i, &x) in list.iter().enumerate().skip(vectors * 8) {
        sum += term(q, x, if i < build_k { 1.0 } else { 0.0 });
    }
    sum
}

impl BuildDistance for TopLists<'_> {
    type Prepared = DenseList;

    fn scratch(&self) -> DenseList {
        // One slot for every probe an item can name, whatever `probes` is: every read of the
        // tables, gathers included, is in bounds by construction.
        DenseList {
            value: vec![0.0; ITEM_PROBES],
            top: vec![0.0; ITEM_PROBES],
            base: 0.0,
            #[cfg(target_arch = "x86_64")]
            simd: std::arch::is_x86_feature_detected!("avx2"),
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
        #[cfg(target_arch = "x86_64")]
        if q.simd {
            // SAFETY: `simd` is true only where the CPU said it has AVX2 (`scratch`).
            return unsafe { dist_prepared_avx2(q, self.list(u), self.build_k) };
        }
        dist_prepared_portable(q, self.list(u), self.build_k)
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
        };
        let mut q = d.scratch();
        for a in 0..n as u32 {
            d.prepare(a, &mut q);
            for b in 0..n as u32 {
                let want = ListDist.eval(&packed[a as usize], &packed[b as usize]);
                let tol = 1e-3 * want.max(1.0);
                let fast = d.dist_prepared(&q, b);
                assert!((fast - want).abs() <= tol, "{a} {b}: {fast} vs {want}");
                let portable = dist_prepared_portable(&q, d.list(b), build_k);
                assert!(
                    (portable - want).abs() <= tol,
                    "{a} {b}: {portable} vs {want}"
                );
                let plain = d.dist(a, b);
                assert!((plain - want).abs() <= tol, "{a} {b}: {plain} vs {want}");
            }
            d.release(a, &mut q);
            assert!(q.value.iter().chain(&q.top).all(|&x| x == 0.0));
        }
    }
}
