//! What the graph stores of each entry: its highest probes ("top lists"), and per probe the
//! entries with the highest values there ("seeds"); and how a query scores a node by its list.
//!
//! The asymmetric top-k discrepancy only reads the query's `k` highest probes, and the entries it
//! ranks first are the ones that respond strongly there. So an entry is summarized by its `keep`
//! highest probes and their values: a node's score is the top-k L1 of the query against that
//! sparse vector (an entry's value off its list counts as 0, the mean of a z-normalized
//! descriptor). `benches/ann.rs vectors` measured this summary against a random sketch of the same
//! lists and PCA projections of the whole descriptor (README, "HNSW candidate stage").

use half::f16;
use rayon::prelude::*;

use crate::error::Result;

/// Entries per work unit of the streaming pass.
const BLOCK: usize = 4096;

/// Packs one list item: the probe in bits 0..16, the value's f16 bits in bits 16..32.
#[inline]
pub fn pack_item(probe: u32, value: f32) -> u32 {
    debug_assert!(probe <= u32::from(u16::MAX));
    probe | (u32::from(f16::from_f32(value).to_bits()) << 16)
}

/// The probe and value of a packed list item.
#[inline]
pub fn unpack_item(item: u32) -> (u32, f32) {
    (item & 0xffff, f16::from_bits((item >> 16) as u16).to_f32())
}

/// One pass over the probe-major rows of `n` entries (`fill_row(p, out)` writes probe `p`'s
/// row): each entry's `keep` highest probes, packed, highest value first (ties: lower probe
/// first), row-major `[n, keep]`; and for each probe the `seeds` entries with the highest values
/// there (ties: lower entry first), row-major `[probes, seeds]`.
pub fn top_lists_and_seeds(
    probes: usize,
    n: usize,
    keep: usize,
    seeds: usize,
    fill_row: &mut dyn FnMut(usize, &mut [f32]) -> Result<()>,
) -> Result<(Vec<u32>, Vec<u32>)> {
    let keep = keep.clamp(1, probes.max(1));
    let seeds = seeds.clamp(1, n.max(1));
    let mut top = TopProbes {
        m: keep,
        values: vec![f32::NEG_INFINITY; n * keep],
        probes: vec![0u32; n * keep],
        min_at: vec![0u32; n],
    };
    let mut seed_table = Vec::with_capacity(probes * seeds);
    let mut row = vec![0f32; n];
    let mut order: Vec<u32> = Vec::with_capacity(n);
    let by_value =
        |row: &[f32], a: u32, b: u32| row[b as usize].total_cmp(&row[a as usize]).then(a.cmp(&b));
    for p in 0..probes {
        fill_row(p, &mut row)?;
        top.offer(p as u32, &row);
        order.clear();
        order.extend(0..n as u32);
        if seeds < n {
            order.select_nth_unstable_by(seeds - 1, |&a, &b| by_value(&row, a, b));
        }
        order.truncate(seeds);
        order.sort_unstable_by(|&a, &b| by_value(&row, a, b));
        seed_table.extend_from_slice(&order);
    }
    let mut lists = vec![0u32; n * keep];
    lists
        .par_chunks_mut(BLOCK * keep)
        .enumerate()
        .for_each(|(b, chunk)| {
            let mut items: Vec<(u32, f32)> = Vec::with_capacity(keep);
            for (i, out) in chunk.chunks_exact_mut(keep).enumerate() {
                let e = b * BLOCK + i;
                items.clear();
                items.extend((e * keep..(e + 1) * keep).map(|j| (top.probes[j], top.values[j])));
                items.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                for (o, &(p, v)) in out.iter_mut().zip(&items) {
                    *o = pack_item(p, v);
                }
            }
        });
    Ok((lists, seed_table))
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

/// A query made ready to score graph nodes by their top lists: the top-k L1 of the query's `k`
/// highest probes against a node's sparse vector, as a sum (the rerank recomputes exact scores).
#[derive(Debug, Clone)]
pub struct ListQuery {
    /// Per probe of the index, then one more slot: the query's value if the probe is one of its
    /// top probes, else NaN. Item probes past the index read the last slot (NaN).
    table: Vec<f32>,
    /// The score of a node whose list misses every query probe: the sum of `|q_p|`.
    base: f32,
    probes: Vec<u32>,
    /// Whether [`ListQuery::score`] may use the AVX2 kernel (checked once here, not per node).
    simd: bool,
}

/// Items scored side by side: one lane each, the sums reduced in a fixed order (see
/// [`ListQuery::score`]), so the vector kernel and the portable path agree bit for bit.
const LANES: usize = 8;

impl ListQuery {
    /// `top` are the query's top probes (each `< probes`), highest first (the walk seeds from the
    /// first [`super::graph::SEED_PROBES`]), `values` its values there.
    pub fn new(probes: usize, top: &[u32], values: &[f32]) -> ListQuery {
        let mut table = vec![f32::NAN; probes + 1];
        for (&p, &v) in top.iter().zip(values) {
            table[p as usize] = v;
        }
        ListQuery {
            table,
            base: values.iter().map(|v| v.abs()).sum(),
            probes: top.to_vec(),
            simd: avx2::available(),
        }
    }

    /// The query's top probes.
    pub fn probes(&self) -> &[u32] {
        &self.probes
    }

    /// The score of a node with packed list `list`: `base` plus, for each item on a query probe,
    /// `|q - x| - |q|`. Items naming a probe past the index are ignored (a damaged list scores
    /// badly; it never reads out of bounds).
    ///
    /// The terms are summed in [`LANES`] lanes (item `i` into lane `i % LANES`, whole groups of
    /// `LANES` items only), the lanes reduced as `((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 +
    /// l7))`, and the items past the last whole group added one by one after that.
    #[inline]
    pub fn score(&self, list: &[u32]) -> f32 {
        if self.simd {
            // SAFETY: `simd` is true only where `avx2::available()` said the CPU has AVX2 and
            // F16C.
            unsafe { avx2::score(&self.table, self.base, list) }
        } else {
            self.score_portable(list)
        }
    }

    /// [`ListQuery::score`] without the vector kernel (the same arithmetic in the same order).
    pub fn score_portable(&self, list: &[u32]) -> f32 {
        let groups = list.len() / LANES * LANES;
        let mut lane = [0f32; LANES];
        for chunk in list[..groups].chunks_exact(LANES) {
            for (acc, &item) in lane.iter_mut().zip(chunk) {
                *acc += term(&self.table, item);
            }
        }
        let mut s = self.base + reduce_lanes(lane);
        for &item in &list[groups..] {
            s += term(&self.table, item);
        }
        s
    }
}

/// One item's term against the query `table` (non-empty; its last slot NaN): `|q - x| - |q|` on
/// a query probe, else 0. Probes past the table read its last slot.
#[inline]
fn term(table: &[f32], item: u32) -> f32 {
    let q = table[((item & 0xffff) as usize).min(table.len() - 1)];
    if q.is_nan() {
        0.0
    } else {
        let (_, x) = unpack_item(item);
        (q - x).abs() - q.abs()
    }
}

/// The fixed reduction of the lane sums.
#[inline]
fn reduce_lanes(l: [f32; LANES]) -> f32 {
    ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]))
}

/// The list score with AVX2 and F16C: eight items at a time, the query values gathered from the
/// table, the f16 values converted in registers.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::LANES;

    pub fn available() -> bool {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("f16c")
    }

    /// [`super::ListQuery::score`] for `table` (non-empty; its last slot NaN) and `base`.
    ///
    /// # Safety
    /// The CPU must support AVX2 and F16C.
    #[target_feature(enable = "avx2,f16c")]
    pub unsafe fn score(table: &[f32], base: f32, list: &[u32]) -> f32 {
        let last = table.len() as u32 - 1;
        let groups = list.len() / LANES * LANES;
        let low16 = _mm256_set1_epi32(0xffff);
        let last_v = _mm256_set1_epi32(last as i32);
        let sign = _mm256_set1_ps(-0.0);
        let mut acc = _mm256_setzero_ps();
        for i in (0..groups).step_by(LANES) {
            // SAFETY: i + 8 <= groups <= list.len(), so the unaligned load reads inside `list`.
            // Every gathered index is at most `last` (the min below), inside `table`.
            unsafe {
                let items = _mm256_loadu_si256(list.as_ptr().add(i).cast());
                let idx = _mm256_min_epu32(_mm256_and_si256(items, low16), last_v);
                let q = _mm256_i32gather_ps::<4>(table.as_ptr(), idx);
                // The f16 bits sit in the high half of each item: narrow to eight u16 in the
                // low 128 bits, then convert.
                let h = _mm256_srli_epi32::<16>(items);
                let packed = _mm256_permute4x64_epi64::<0b1000>(_mm256_packus_epi32(h, h));
                let x = _mm256_cvtph_ps(_mm256_castsi256_si128(packed));
                let d = _mm256_sub_ps(
                    _mm256_andnot_ps(sign, _mm256_sub_ps(q, x)),
                    _mm256_andnot_ps(sign, q),
                );
                let on_query = _mm256_cmp_ps::<_CMP_ORD_Q>(q, q);
                acc = _mm256_add_ps(acc, _mm256_and_ps(d, on_query));
            }
        }
        let mut lane = [0f32; LANES];
        // SAFETY: `lane` holds eight f32; the unaligned store has no alignment requirement.
        unsafe { _mm256_storeu_ps(lane.as_mut_ptr(), acc) };
        let mut s = base + super::reduce_lanes(lane);
        for &item in &list[groups..] {
            s += super::term(table, item);
        }
        s
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod avx2 {
    pub fn available() -> bool {
        false
    }
    /// # Safety
    /// Never called: `available()` is false on this architecture.
    pub unsafe fn score(_: &[f32], _: f32, _: &[u32]) -> f32 {
        unreachable!("no AVX2 kernel on this architecture")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_seeds_match_a_sort() {
        let (probes, n) = (37usize, 300usize);
        let value = |p: usize, e: usize| (((p * 7919 + e * 104729) % 1009) as f32 - 504.0) / 100.0;
        let (lists, seeds) = top_lists_and_seeds(probes, n, 5, 4, &mut |p, out| {
            for (e, o) in out.iter_mut().enumerate() {
                *o = value(p, e);
            }
            Ok(())
        })
        .unwrap();
        for e in 0..n {
            let mut want: Vec<u32> = (0..probes as u32).collect();
            want.sort_by(|&a, &b| {
                value(b as usize, e)
                    .total_cmp(&value(a as usize, e))
                    .then(a.cmp(&b))
            });
            let got: Vec<u32> = lists[e * 5..(e + 1) * 5]
                .iter()
                .map(|&i| unpack_item(i).0)
                .collect();
            assert_eq!(got, want[..5], "entry {e}");
            let (p0, v0) = unpack_item(lists[e * 5]);
            assert!((v0 - value(p0 as usize, e)).abs() < 1e-2);
        }
        for p in 0..probes {
            let mut want: Vec<u32> = (0..n as u32).collect();
            want.sort_by(|&a, &b| {
                value(p, b as usize)
                    .total_cmp(&value(p, a as usize))
                    .then(a.cmp(&b))
            });
            assert_eq!(seeds[p * 4..(p + 1) * 4], want[..4], "probe {p}");
        }
    }

    #[test]
    fn list_score_is_top_k_l1_on_the_sparse_vector() {
        let probes = 10;
        let q = ListQuery::new(probes, &[3, 7], &[2.0, 1.5]);
        // Holds probe 3 (value 1.0) and probe 5; probe 7 is off the list, so counts as 0.
        let list = [pack_item(3, 1.0), pack_item(5, 4.0)];
        assert_eq!(q.score(&list), (2.0f32 - 1.0).abs() + 1.5);
        // A probe number past the index is ignored, not read.
        assert_eq!(q.score(&[pack_item(60000, 1.0)]), 3.5);
        assert_eq!(q.score_portable(&list), q.score(&list));
    }

    #[test]
    fn vector_kernel_matches_portable_path_bit_for_bit() {
        let probes = 1000usize;
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let top: Vec<u32> = (0..16).map(|i| (i * 61 + 7) as u32).collect();
        let values: Vec<f32> = (0..16).map(|i| 4.0 - i as f32 * 0.17).collect();
        let q = ListQuery::new(probes, &top, &values);
        for len in [0usize, 1, 7, 8, 9, 31, 32, 33, 64, 100] {
            for _ in 0..50 {
                let list: Vec<u32> = (0..len)
                    .map(|_| {
                        let r = next();
                        // Mostly query probes, some others, a few past the index.
                        let p = match r % 5 {
                            0 | 1 => top[(r >> 8) as usize % top.len()],
                            2 => 60_000 + (r >> 8) as u32 % 5000,
                            _ => (r >> 8) as u32 % probes as u32,
                        };
                        pack_item(p, ((r >> 20) % 1000) as f32 / 150.0 - 2.0)
                    })
                    .collect();
                let (a, b) = (q.score(&list), q.score_portable(&list));
                assert_eq!(a.to_bits(), b.to_bits(), "list of {len}: {a} vs {b}");
            }
        }
    }
}
