//! The per-query part of a scan ([`ScanPlan`]: which probe rows to read, in which order, with
//! which query values) and its kernels, portable and F16C; the reference definitions of the
//! discrepancies that tests compare the kernels with.

use std::ops::Range;

use crate::descriptor::top_probes;
use crate::reader::{DescriptorRows, RowData};

use super::params::{DEFAULT_BLEND_WEIGHT, Metric};

/// The per-query part of a scan: which probe rows to read, in which order, with which query values.
#[derive(Debug, Clone)]
pub struct ScanPlan {
    probes: Vec<u32>,
    values: Vec<f32>,
    metric: Metric,
    /// Blend: how many of `probes` (the first ones) are the query's top-k; the rest (every
    /// probe, in order) are summed apart, squared.
    top: usize,
    /// Blend: the weight of the all-probe term and the probe count P.
    weight: f32,
    all: usize,
}

/// How many candidates ahead of the one being summed the rerank starts loading its scattered
/// values (`cargo bench --bench ann -- stages`, the rerank lines).
pub const RERANK_PREFETCH_AHEAD: usize = 4;

impl ScanPlan {
    /// `q` is a z-normalized descriptor. Top-k reads the `k` highest probes of `q`, highest
    /// first; the full metric reads every probe in order; the blend reads the top-k probes, then
    /// every probe in order. [`Metric::Blend`] weighs with [`DEFAULT_BLEND_WEIGHT`].
    pub fn new(q: &[f32], k: usize, metric: Metric) -> Self {
        Self::with_blend_weight(q, k, metric, DEFAULT_BLEND_WEIGHT)
    }

    /// As [`ScanPlan::new`], with the weight `w` of [`Metric::Blend`]'s all-probe term (finite,
    /// at least 0; other metrics ignore it). With `w = 0` the other probes are not read at all.
    pub fn with_blend_weight(q: &[f32], k: usize, metric: Metric, blend_weight: f32) -> Self {
        let mut probes: Vec<u32> = match metric {
            Metric::TopK | Metric::Blend => top_probes(q, k),
            Metric::Full => (0..q.len() as u32).collect(),
        };
        let top = probes.len();
        if metric == Metric::Blend && blend_weight != 0.0 {
            probes.extend(0..q.len() as u32);
        }
        let values = probes.iter().map(|&p| q[p as usize]).collect();
        ScanPlan {
            probes,
            values,
            metric,
            top,
            weight: blend_weight,
            all: q.len(),
        }
    }

    /// The top-k plan, over `all` probes, of a query whose `k` highest probes (highest first,
    /// ties by lower probe) and its values there are already known.
    pub fn from_top(probes: Vec<u32>, values: Vec<f32>, all: usize) -> Self {
        let top = probes.len();
        ScanPlan {
            probes,
            values,
            metric: Metric::TopK,
            top,
            weight: DEFAULT_BLEND_WEIGHT,
            all,
        }
    }

    pub fn probes(&self) -> &[u32] {
        &self.probes
    }

    /// The query's values at [`ScanPlan::probes`].
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// The query's top-k probes (highest first) and its values there: what the graphs' walk
    /// scores a node by, for the top-k metric and for the blend alike.
    pub fn top_part(&self) -> (&[u32], &[f32]) {
        (&self.probes[..self.top], &self.values[..self.top])
    }

    /// The blend from its two sums: `top` of the absolute differences over the top-k probes,
    /// `all` of the squared differences over every probe.
    #[inline]
    fn blend(&self, top: f32, all: f32) -> f32 {
        top / self.top as f32 + self.weight * (all / self.all as f32).sqrt()
    }

    /// Scores the listed entries of one segment into `out`, with the same operations in the same
    /// order as [`ScanPlan::score_into`], so the scores are bit-identical to a scan's.
    pub fn score_entries(&self, rows: &DescriptorRows<'_>, entries: &[usize], out: &mut [f32]) {
        let out = &mut out[..entries.len()];
        if self.metric != Metric::TopK {
            // Every probe of every entry: row by row, so that the scattered reads of one row
            // (one page) are issued together and overlap. Each entry's sums still run over the
            // probes in plan order.
            let (tp, rp) = self.probes.split_at(self.top);
            let (tv, rv) = self.values.split_at(self.top);
            let squared = self.metric == Metric::Full;
            out.fill(0.0);
            accumulate_entries(rows, entries, tp, tv, squared, out);
            if self.metric == Metric::Full {
                out.iter_mut().for_each(|x| *x = x.sqrt());
                return;
            }
            let mut all = vec![0f32; entries.len()];
            accumulate_entries(rows, entries, rp, rv, true, &mut all);
            for (x, &y) in out.iter_mut().zip(&all) {
                *x = self.blend(*x, y);
            }
            return;
        }
        // The k values of each entry are scattered over k rows: start every load first, so that
        // they overlap.
        for &e in entries {
            self.probes
                .iter()
                .for_each(|&p| rows.prefetch(p as usize, e));
        }
        for (o, &e) in out.iter_mut().zip(entries) {
            let mut acc = 0f32;
            for (&p, &q) in self.probes.iter().zip(&self.values) {
                acc += (q - rows.value(p as usize, e)).abs();
            }
            *o = acc / self.probes.len() as f32;
        }
    }

    /// [`ScanPlan::score_entries`] for candidates whose graph lists are at hand: `lists[i]` is
    /// the top list of `entries[i]`. In an f16 index a list's values are the stored ones, so a
    /// top-k plan takes every value it needs that the list holds from there, and reads only the
    /// others from the scattered rows: the same values, summed in the same order, so the scores
    /// are bit-identical to [`ScanPlan::score_entries`]. Other plans and f32 rows (whose lists
    /// hold rounded values) read every value from the rows.
    pub fn score_entries_listed(
        &self,
        rows: &DescriptorRows<'_>,
        entries: &[usize],
        lists: &[&[u32]],
        out: &mut [f32],
    ) {
        let k = self.probes.len();
        let f16_rows = matches!(rows.data(), crate::reader::RowData::F16(_));
        if self.metric != Metric::TopK || !f16_rows || k >= usize::from(u16::MAX) {
            return self.score_entries(rows, entries, out);
        }
        // Where each probe stands in the plan; every other probe (and any past the index, which
        // a damaged list may name) maps to slot k, which nothing reads. No branch per item.
        let stride = k + 1;
        let mut slot = vec![k as u16; self.all + 1];
        for (i, &p) in self.probes.iter().enumerate() {
            slot[p as usize] = i as u16;
        }
        // Per candidate, the f16 bits of its values on the plan's probes that its list holds;
        // NOT_LISTED for the rest.
        const NOT_LISTED: u32 = u32::MAX;
        let mut known = vec![NOT_LISTED; entries.len() * stride];
        for (c, list) in lists.iter().enumerate().take(entries.len()) {
            let dst = &mut known[c * stride..(c + 1) * stride];
            for &item in *list {
                dst[usize::from(slot[((item & 0xffff) as usize).min(self.all)])] = item >> 16;
            }
        }
        // The values still to read are scattered over the rows: loads started a few candidates
        // ahead overlap with the sums.
        let prefetch = |c: usize| {
            if let Some(&e) = entries.get(c) {
                for (s, &p) in self.probes.iter().enumerate() {
                    if known[c * stride + s] == NOT_LISTED {
                        rows.prefetch(p as usize, e);
                    }
                }
            }
        };
        (0..RERANK_PREFETCH_AHEAD).for_each(prefetch);
        for (c, (o, &e)) in out.iter_mut().zip(entries).enumerate() {
            prefetch(c + RERANK_PREFETCH_AHEAD);
            let mut acc = 0f32;
            for (s, (&p, &q)) in self.probes.iter().zip(&self.values).enumerate() {
                let bits = known[c * stride + s];
                let x = if bits == NOT_LISTED {
                    rows.value(p as usize, e)
                } else {
                    half::f16::from_bits(bits as u16).to_f32()
                };
                acc += (q - x).abs();
            }
            *o = acc / k as f32;
        }
    }

    /// Scores entries `r` of one segment into `out`.
    pub fn score_into(&self, rows: &DescriptorRows<'_>, r: Range<usize>, out: &mut [f32]) {
        // f16 rows that F16C cannot read are converted into this buffer.
        let mut converted = Vec::new();
        match self.metric {
            Metric::Blend => {
                let (tp, rp) = self.probes.split_at(self.top);
                let (tv, rv) = self.values.split_at(self.top);
                accumulate_rows(rows, r.clone(), tp, tv, false, out, &mut converted);
                if rp.is_empty() {
                    out.iter_mut().for_each(|x| *x = self.blend(*x, 0.0));
                } else {
                    let mut all = vec![0f32; out.len()];
                    accumulate_rows(rows, r, rp, rv, true, &mut all, &mut converted);
                    for (x, &y) in out.iter_mut().zip(&all) {
                        *x = self.blend(*x, y);
                    }
                }
            }
            Metric::TopK => {
                accumulate_rows(
                    rows,
                    r,
                    &self.probes,
                    &self.values,
                    false,
                    out,
                    &mut converted,
                );
                let k = self.probes.len() as f32;
                out.iter_mut().for_each(|x| *x /= k);
            }
            _ => {
                let squared = self.metric == Metric::Full;
                accumulate_rows(
                    rows,
                    r,
                    &self.probes,
                    &self.values,
                    squared,
                    out,
                    &mut converted,
                );
                out.iter_mut().for_each(|x| *x = x.sqrt());
            }
        }
    }
}

/// `acc[i]` += the sum over `probes` (in order, left to right) of `|q - d|` (or its square when
/// `squared`) for entry `entries[i]`, one probe row at a time.
fn accumulate_entries(
    rows: &DescriptorRows<'_>,
    entries: &[usize],
    probes: &[u32],
    values: &[f32],
    squared: bool,
    acc: &mut [f32],
) {
    for (&p, &q) in probes.iter().zip(values) {
        for (a, &e) in acc.iter_mut().zip(entries) {
            let d = q - rows.value(p as usize, e);
            *a += if squared { d * d } else { d.abs() };
        }
    }
}

/// `out[i]` = the sum over `probes` (in order, left to right) of `|q - d|` (or its square when
/// `squared`) for entry `r.start + i`: four rows at a time, then the remainder one by one.
fn accumulate_rows(
    rows: &DescriptorRows<'_>,
    r: Range<usize>,
    probes: &[u32],
    values: &[f32],
    squared: bool,
    out: &mut [f32],
    converted: &mut Vec<f32>,
) {
    out.fill(0.0);
    let len = r.len();
    let quads = probes.chunks_exact(4).zip(values.chunks_exact(4));
    for (ps, qs) in quads {
        let q = [qs[0], qs[1], qs[2], qs[3]];
        match rows.data() {
            RowData::F32(_) => {
                let rs = std::array::from_fn(|i| {
                    rows.row_f32(ps[i] as usize, r.clone()).expect("f32 rows")
                });
                accumulate4(out, rs, q, squared);
            }
            RowData::F16(_) if f16c::available() => {
                let rs = std::array::from_fn(|i| {
                    rows.row_f16_bits(ps[i] as usize, r.clone())
                        .expect("f16 rows")
                });
                // SAFETY: `available()` confirmed AVX and F16C on this CPU.
                unsafe { f16c::accumulate4(out, rs, q, squared) };
            }
            RowData::F16(_) => {
                converted.resize(4 * len, 0.0);
                for (i, dst) in converted.chunks_exact_mut(len.max(1)).enumerate() {
                    rows.read_row(ps[i] as usize, r.clone(), &mut dst[..len]);
                }
                let rs = std::array::from_fn(|i| &converted[i * len..(i + 1) * len]);
                accumulate4(out, rs, q, squared);
            }
        }
    }
    let start = probes.len() - probes.len() % 4;
    for j in start..probes.len() {
        let p = probes[j] as usize;
        match rows.row_f32(p, r.clone()) {
            Some(row) => accumulate1(out, row, values[j], squared),
            None => {
                converted.resize(len, 0.0);
                rows.read_row(p, r.clone(), &mut converted[..len]);
                accumulate1(out, &converted[..len], values[j], squared);
            }
        }
    }
}

#[inline]
fn accumulate4(out: &mut [f32], rs: [&[f32]; 4], q: [f32; 4], squared: bool) {
    let n = out.len();
    let (r0, r1, r2, r3) = (&rs[0][..n], &rs[1][..n], &rs[2][..n], &rs[3][..n]);
    if squared {
        for i in 0..n {
            let (d0, d1, d2, d3) = (q[0] - r0[i], q[1] - r1[i], q[2] - r2[i], q[3] - r3[i]);
            out[i] = (((out[i] + d0 * d0) + d1 * d1) + d2 * d2) + d3 * d3;
        }
    } else {
        for i in 0..n {
            let (d0, d1, d2, d3) = (q[0] - r0[i], q[1] - r1[i], q[2] - r2[i], q[3] - r3[i]);
            out[i] = (((out[i] + d0.abs()) + d1.abs()) + d2.abs()) + d3.abs();
        }
    }
}

#[inline]
fn accumulate1(out: &mut [f32], row: &[f32], q: f32, squared: bool) {
    let row = &row[..out.len()];
    if squared {
        for (o, &x) in out.iter_mut().zip(row) {
            let d = q - x;
            *o += d * d;
        }
    } else {
        for (o, &x) in out.iter_mut().zip(row) {
            *o += (q - x).abs();
        }
    }
}

/// The f16 kernel: converts with F16C in registers instead of through a buffer. Same operations in
/// the same order as [`accumulate4`], so results are bit-identical to the portable path.
#[cfg(target_arch = "x86_64")]
mod f16c {
    use std::arch::x86_64::*;

    pub fn available() -> bool {
        std::arch::is_x86_feature_detected!("avx") && std::arch::is_x86_feature_detected!("f16c")
    }

    /// For each `i`: `out[i] = (((out[i] + t0) + t1) + t2) + t3` with `tj = |q[j] - rs[j][i]|`,
    /// or its square when `squared`.
    ///
    /// # Safety
    /// The CPU must support AVX and F16C.
    #[target_feature(enable = "avx,f16c")]
    pub unsafe fn accumulate4(out: &mut [f32], rs: [&[u16]; 4], q: [f32; 4], squared: bool) {
        let n = out.len();
        assert!(
            rs.iter().all(|r| r.len() >= n),
            "rows shorter than the output"
        );
        let qv = q.map(|x| _mm256_set1_ps(x));
        let sign = _mm256_set1_ps(-0.0);
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= n and every row holds at least n values (asserted above), so the
            // eight-value loads from each row and the load and store of `out` stay in bounds; the
            // unaligned load and store intrinsics have no alignment requirement.
            unsafe {
                let mut acc = _mm256_loadu_ps(out.as_ptr().add(i));
                for j in 0..4 {
                    let x = _mm256_cvtph_ps(_mm_loadu_si128(rs[j].as_ptr().add(i).cast()));
                    let d = _mm256_sub_ps(qv[j], x);
                    let t = if squared {
                        _mm256_mul_ps(d, d)
                    } else {
                        _mm256_andnot_ps(sign, d)
                    };
                    acc = _mm256_add_ps(acc, t);
                }
                _mm256_storeu_ps(out.as_mut_ptr().add(i), acc);
            }
            i += 8;
        }
        for (k, o) in out.iter_mut().enumerate().skip(i) {
            for j in 0..4 {
                let d = q[j] - half::f16::from_bits(rs[j][k]).to_f32();
                *o += if squared { d * d } else { d.abs() };
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod f16c {
    pub fn available() -> bool {
        false
    }
    /// # Safety
    /// Never called: `available()` is false on this architecture.
    pub unsafe fn accumulate4(_: &mut [f32], _: [&[u16]; 4], _: [f32; 4], _: bool) {
        unreachable!("no F16C kernel on this architecture")
    }
}

/// The reference definition of the top-k discrepancy, one entry at a time, in the same summation
/// order as the scan. Tests compare the scan with it.
pub fn topk_discrepancy(q: &[f32], d: &[f32], k: usize) -> f32 {
    let probes = top_probes(q, k);
    let mut acc = 0f32;
    for &p in &probes {
        acc += (q[p as usize] - d[p as usize]).abs();
    }
    acc / probes.len() as f32
}

/// The reference definition of [`Metric::Blend`], one entry at a time, in the same summation order
/// as the scan: the top-k probes highest first, then every probe in order. Tests compare the scan
/// with it.
pub fn blend_discrepancy(q: &[f32], d: &[f32], k: usize, weight: f32) -> f32 {
    let probes = top_probes(q, k);
    let mut top = 0f32;
    for &p in &probes {
        top += (q[p as usize] - d[p as usize]).abs();
    }
    let mut all = 0f32;
    if weight != 0.0 {
        for (a, b) in q.iter().zip(d) {
            all += (a - b) * (a - b);
        }
    }
    top / probes.len() as f32 + weight * (all / q.len() as f32).sqrt()
}

/// The reference definition of the full-query Euclidean distance.
pub fn full_distance(q: &[f32], d: &[f32]) -> f32 {
    let mut acc = 0f32;
    for (a, b) in q.iter().zip(d) {
        acc += (a - b) * (a - b);
    }
    acc.sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::params::{MAX_BLEND_WEIGHT, check_blend_weight};

    #[test]
    fn f16c_kernel_matches_portable_path_bit_for_bit() {
        if !f16c::available() {
            return;
        }
        let n = 1003; // not a multiple of 8: exercises the tail
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let mut rnd = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 20_000) as f32 / 2_000.0 - 5.0
        };
        let rows: Vec<Vec<half::f16>> = (0..4)
            .map(|_| (0..n).map(|_| half::f16::from_f32(rnd())).collect())
            .collect();
        let q = [rnd(), rnd(), rnd(), rnd()];
        for squared in [false, true] {
            let start: Vec<f32> = (0..n).map(|_| rnd().abs()).collect();
            let mut fast = start.clone();
            let bits: Vec<&[u16]> = rows.iter().map(|r| bytemuck::cast_slice(r)).collect();
            // SAFETY: available() checked above.
            unsafe {
                f16c::accumulate4(&mut fast, [bits[0], bits[1], bits[2], bits[3]], q, squared)
            };
            let mut slow = start.clone();
            let conv: Vec<Vec<f32>> = rows
                .iter()
                .map(|r| r.iter().map(|h| h.to_f32()).collect())
                .collect();
            accumulate4(
                &mut slow,
                [&conv[0], &conv[1], &conv[2], &conv[3]],
                q,
                squared,
            );
            assert_eq!(fast, slow, "squared = {squared}");
        }
    }

    #[test]
    fn blend_weights_keep_scores_finite() {
        for w in [0.0, DEFAULT_BLEND_WEIGHT, MAX_BLEND_WEIGHT] {
            assert_eq!(check_blend_weight(w).unwrap(), w);
        }
        for w in [
            -1.0,
            f32::NAN,
            f32::INFINITY,
            3e38,
            MAX_BLEND_WEIGHT * 1.001,
        ] {
            assert!(check_blend_weight(w).is_err(), "{w}");
        }
        // At the bound, the score of z-normalized opposites is finite.
        let q = [1.0f32, -1.0, 1.0, -1.0];
        let d = [-1.0f32, 1.0, -1.0, 1.0];
        assert!(blend_discrepancy(&q, &d, 2, MAX_BLEND_WEIGHT).is_finite());
    }
}
