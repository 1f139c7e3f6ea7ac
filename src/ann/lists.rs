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
    /// Per probe of the index: the query's value if it is one of its top probes, else NaN.
    table: Vec<f32>,
    /// The score of a node whose list misses every query probe: the sum of `|q_p|`.
    base: f32,
    probes: Vec<u32>,
}

impl ListQuery {
    /// `top` are the query's top probes (each `< probes`), highest first (the walk seeds from the
    /// first [`super::graph::SEED_PROBES`]), `values` its values there.
    pub fn new(probes: usize, top: &[u32], values: &[f32]) -> ListQuery {
        let mut table = vec![f32::NAN; probes];
        for (&p, &v) in top.iter().zip(values) {
            table[p as usize] = v;
        }
        ListQuery {
            table,
            base: values.iter().map(|v| v.abs()).sum(),
            probes: top.to_vec(),
        }
    }

    /// The query's top probes.
    pub fn probes(&self) -> &[u32] {
        &self.probes
    }

    /// The score of a node with packed list `list`. Items naming a probe past the index's are
    /// ignored (a damaged list scores badly; it never reads out of bounds).
    #[inline]
    pub fn score(&self, list: &[u32]) -> f32 {
        let mut s = self.base;
        for &item in list {
            if let Some(&q) = self.table.get((item & 0xffff) as usize)
                && !q.is_nan()
            {
                let (_, x) = unpack_item(item);
                s += (q - x).abs() - q.abs();
            }
        }
        s
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
    }
}
