//! Building a segment's ANN graph: the top lists and seeds of its entries from the descriptor
//! rows, an HNSW graph over the lists built by [`super::hnsw`] with the list distance of
//! [`super::build_dist`] ([`ListDist`]'s, read straight from the lists), and the conversion of
//! that graph into the section layout of [`super::graph`]. [`graph_of`] reads an `hnsw_rs` graph
//! the same way, for the benchmarks that compare the two builders.

use hnsw_rs::anndists::dist::Distance;

use crate::descriptor::first_impossible_value;
use crate::error::{Error, Result};

use super::graph::{GraphParts, MAX_GRAPH_PROBES, MAX_KEEP, MAX_LEVEL, MAX_SEEDS};
use super::lists::{top_lists_and_seeds, unpack_item};

/// How appends and compaction build ANN graphs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnnOptions {
    /// Build a graph for segments of at least this many entries; smaller segments are scanned
    /// exactly in every search mode. `usize::MAX` turns graph building off.
    pub min_entries: usize,
    /// Items in each entry's top list; `None`: [`default_keep`] of the probe count.
    pub keep: Option<usize>,
    /// Each entry's own top probes that the build distance ([`ListDist`]) compares (at most
    /// `keep` are used).
    pub build_k: usize,
    /// Seed nodes stored per probe.
    pub seeds: usize,
    /// HNSW links per node on the upper layers (layer 0 gets twice as many).
    pub max_degree: usize,
    /// HNSW candidate list size while inserting.
    pub ef_construction: usize,
    /// Most entries one graph covers. A segment with more gets [`graph_ranges`]: several graphs
    /// over consecutive ranges of near-equal size, which a search walks in parallel.
    pub max_graph_entries: usize,
}

impl Default for AnnOptions {
    fn default() -> Self {
        AnnOptions {
            min_entries: 20_000,
            keep: None,
            build_k: crate::search::DEFAULT_K,
            seeds: DEFAULT_SEEDS,
            max_degree: 16,
            ef_construction: 100,
            max_graph_entries: DEFAULT_MAX_GRAPH_ENTRIES,
        }
    }
}

impl AnnOptions {
    /// Options that never build a graph.
    pub fn disabled() -> Self {
        AnnOptions {
            min_entries: usize::MAX,
            ..Default::default()
        }
    }

    /// The top-list length for an index of `probes` probes.
    pub fn keep_for(&self, probes: usize) -> usize {
        self.keep
            .unwrap_or_else(|| default_keep(probes))
            .min(probes)
    }

    /// Whether a segment of `entries` entries of an index of `probes` probes gets a graph.
    pub fn wants_graph(&self, entries: usize, probes: usize) -> bool {
        entries >= self.min_entries.max(2) && probes <= MAX_GRAPH_PROBES as usize
    }

    pub fn check(&self) -> Result<()> {
        if self
            .keep
            .is_some_and(|keep| !(1..=MAX_KEEP as usize).contains(&keep))
            || !(1..=MAX_KEEP as usize).contains(&self.build_k)
            || !(1..=MAX_SEEDS as usize).contains(&self.seeds)
        {
            return Err(Error::InvalidParameter(format!(
                "ANN list length and build k must be 1..={MAX_KEEP} and seeds 1..={MAX_SEEDS}, \
                 not {}, {} and {}",
                self.keep
                    .map_or_else(|| "the default".to_string(), |k| k.to_string()),
                self.build_k,
                self.seeds
            )));
        }
        if self.max_graph_entries < 2 {
            return Err(Error::InvalidParameter(format!(
                "an ANN graph must be allowed at least 2 entries, not {}",
                self.max_graph_entries
            )));
        }
        if !(2..=128).contains(&self.max_degree) || self.ef_construction == 0 {
            return Err(Error::InvalidParameter(format!(
                "ANN degree must be 2..=128 and ef_construction positive (got {} and {})",
                self.max_degree, self.ef_construction
            )));
        }
        Ok(())
    }
}

/// The default top-list length: one probe in 32, rounded up to a power of two, at least 32 (32
/// items for 1,000 probes, 64 for 2,000, 128 for 4,000). Measured: the list score's recall
/// depends on the share of the descriptor that the list holds. On the real hubs (2,000 probes),
/// recall@10 at C = 100 rose from 0.920-0.930 with 32 items to 0.965-0.971 with 64 (README,
/// "HNSW candidate stage").
pub fn default_keep(probes: usize) -> usize {
    probes
        .div_ceil(32)
        .next_power_of_two()
        .clamp(32, MAX_KEEP as usize)
}

/// Default [`AnnOptions::max_graph_entries`]: a segment of up to 600,000 entries gets one graph,
/// 1M entries two parts of 500,000. Measured at 1M synthetic entries (README, "HNSW candidate
/// stage"; 1,000 queries, query seed 12, 128 seeds per probe): two parts walked in parallel kept
/// 0.953 of the exact top 10 at C = 150, 7.1x to 8.4x faster than the scan; one graph had kept
/// 0.947 at 6.0x (an earlier session's run). Other part sizes were not measured.
pub const DEFAULT_MAX_GRAPH_ENTRIES: usize = 600_000;

/// Default [`AnnOptions::seeds`]. Measured on a 500k graph part (`cargo bench --bench ann --
/// graphs --stored-graph --no-sketch --walk-seeds N`, 200 queries, a walk that keeps C nodes):
/// recall@10 at C = 100 went from 0.950 with 128 seeds per probe to 0.956 with 256 and 0.966
/// with 512, and walk + rerank from 0.148 to 0.166 and 0.247 ms. At 1M in two parts (`scale`,
/// 1,000 queries), 256 seeds took recall at C = 100 from 0.946 to 0.960.
pub const DEFAULT_SEEDS: usize = 256;

/// The entry ranges of the graphs of a segment of `n` entries: `ceil(n / max_entries)`
/// consecutive ranges whose lengths differ by at most one, the longer ones first.
pub fn graph_ranges(n: usize, max_entries: usize) -> Vec<std::ops::Range<usize>> {
    let parts = n.div_ceil(max_entries.max(1)).max(1);
    let (base, extra) = (n / parts, n % parts);
    let mut start = 0;
    (0..parts)
        .map(|i| {
            let len = base + usize::from(i < extra);
            let r = start..start + len;
            start += len;
            r
        })
        .collect()
}

/// The graphs of a segment of `n` entries whose probe-major rows `fill_row(p, out)` produces
/// (each row `n` values): one per range of [`graph_ranges`], each with its first entry. The
/// ranges' HNSW graphs are built in parallel.
pub fn build_graphs(
    probes: usize,
    n: usize,
    fill_row: &mut dyn FnMut(usize, &mut [f32]) -> Result<()>,
    opts: &AnnOptions,
) -> Result<Vec<(usize, GraphParts)>> {
    opts.check()?;
    let ranges = graph_ranges(n, opts.max_graph_entries);
    for r in &ranges {
        check_shape(probes, r.len())?;
    }
    let lists = if let [only] = &ranges[..] {
        vec![range_lists(probes, only.len(), opts, fill_row)?]
    } else {
        let mut row = vec![0f32; n];
        let mut lists = Vec::with_capacity(ranges.len());
        for r in &ranges {
            // Each range reads every row once; a row is a copy from memory or the mapped file.
            lists.push(range_lists(probes, r.len(), opts, &mut |p, out| {
                fill_row(p, &mut row)?;
                out.copy_from_slice(&row[r.clone()]);
                Ok(())
            })?);
        }
        lists
    };
    use rayon::prelude::*;
    lists
        .into_par_iter()
        .zip(ranges)
        .map(|(l, r)| Ok((r.start, link_lists(probes, r.len(), l, opts)?)))
        .collect()
}

/// Builds one graph over all `n` entries of a segment whose probe-major rows `fill_row(p, out)`
/// produces (each row `n` values), whatever [`AnnOptions::max_graph_entries`] says.
pub fn build_graph(
    probes: usize,
    n: usize,
    fill_row: &mut dyn FnMut(usize, &mut [f32]) -> Result<()>,
    opts: &AnnOptions,
) -> Result<GraphParts> {
    opts.check()?;
    check_shape(probes, n)?;
    let lists = range_lists(probes, n, opts, fill_row)?;
    link_lists(probes, n, lists, opts)
}

fn check_shape(probes: usize, n: usize) -> Result<()> {
    if n == 0 || n > u32::MAX as usize - 1 {
        return Err(Error::InvalidInput(format!(
            "an ANN graph needs 1..2^32-1 entries, not {n}"
        )));
    }
    if probes == 0 || probes > MAX_GRAPH_PROBES as usize {
        return Err(Error::InvalidInput(format!(
            "an ANN graph needs 1..={MAX_GRAPH_PROBES} probes, not {probes}"
        )));
    }
    Ok(())
}

/// The top lists and seeds of `n` entries: `(lists, seeds)`, as [`top_lists_and_seeds`] with the
/// options' list length and seeds.
fn range_lists(
    probes: usize,
    n: usize,
    opts: &AnnOptions,
    fill_row: &mut dyn FnMut(usize, &mut [f32]) -> Result<()>,
) -> Result<(Vec<u32>, Vec<u32>)> {
    let (keep, seeds) = (opts.keep_for(probes), opts.seeds.min(n));
    // The graph's distances sum differences of these values; hnsw_rs asserts on what overflows.
    // Values a z-normalized descriptor cannot hold never reach it.
    top_lists_and_seeds(probes, n, keep, seeds, &mut |p, out| {
        fill_row(p, out)?;
        match first_impossible_value(out, probes) {
            None => Ok(()),
            Some((e, v)) => Err(Error::InvalidInput(format!(
                "probe {p}, entry {e}: value {v} is impossible in a z-normalized descriptor; no graph is built over it"
            ))),
        }
    })
}

/// The HNSW graph over the top lists of `n` entries.
fn link_lists(
    probes: usize,
    n: usize,
    (lists, seeds): (Vec<u32>, Vec<u32>),
    opts: &AnnOptions,
) -> Result<GraphParts> {
    let keep = opts.keep_for(probes);
    let seeds_per_probe = opts.seeds.min(n);
    let build_k = opts.build_k.min(keep);
    let dist = super::build_dist::TopLists {
        lists: &lists,
        keep,
        build_k,
    };
    let built = super::hnsw::build(
        n,
        &dist,
        opts.max_degree,
        opts.ef_construction,
        MAX_LEVEL as u8,
        BUILD_SEED,
    );
    let (levels, links, entry_point) = (built.levels, built.links, built.entry_point);
    Ok(GraphParts {
        probes: probes as u32,
        keep: keep as u32,
        lists,
        seeds_per_probe: seeds_per_probe as u32,
        seeds,
        levels,
        links,
        entry_point,
        ef_construction: opts.ef_construction as u32,
    })
}

/// Seed of the level draws of [`super::hnsw::build`].
const BUILD_SEED: u64 = 397;

/// Levels, links per layer and the entry point of a built `hnsw_rs` graph over points `0..n`.
#[allow(clippy::type_complexity)]
pub fn graph_of<T: Clone + Send + Sync, D: Distance<T> + Send + Sync>(
    hnsw: &hnsw_rs::hnsw::Hnsw<T, D>,
    n: usize,
) -> Result<(Vec<u8>, Vec<Vec<Vec<u32>>>, u32)> {
    let mut levels = vec![0u8; n];
    let mut links: Vec<Vec<Vec<u32>>> = vec![Vec::new(); n];
    let mut seen = 0usize;
    for point in hnsw.get_point_indexation() {
        let id = point.get_origin_id();
        let level = point.get_point_id().0;
        let neighbourhood = point.get_neighborhood_id();
        if id >= n || u32::from(level) > MAX_LEVEL || !links[id].is_empty() {
            return Err(Error::InvalidInput(format!(
                "hnsw_rs returned an unexpected point (id {id}, level {level})"
            )));
        }
        levels[id] = level;
        links[id] = (0..=level as usize)
            .map(|layer| {
                neighbourhood
                    .get(layer)
                    .map(|v| v.iter().map(|nb| nb.get_origin_id() as u32).collect())
                    .unwrap_or_default()
            })
            .collect();
        seen += 1;
    }
    if seen != n {
        return Err(Error::InvalidInput(format!(
            "hnsw_rs indexed {seen} of {n} points"
        )));
    }
    let top = *levels.iter().max().expect("n > 0");
    let entry_point = levels.iter().position(|&l| l == top).expect("max exists") as u32;
    Ok((levels, links, entry_point))
}

/// A packed top list (highest first) in the form [`ListDist`] reads: one `u64` per item, sorted
/// by probe; bits 63..48 the probe, bit 32 set for the first `build_k` items (the entry's own top
/// probes), bits 31..0 the value's f32 bits.
pub fn pack_for_distance(list: &[u32], build_k: usize) -> Vec<u64> {
    let mut out: Vec<u64> = list
        .iter()
        .enumerate()
        .map(|(i, &item)| {
            let (p, v) = unpack_item(item);
            (u64::from(p) << 48) | (u64::from(i < build_k) << 32) | u64::from(v.to_bits())
        })
        .collect();
    out.sort_unstable();
    out
}

/// Symmetric top-k L1 between two packed lists: each side's own top-k probes, compared with the
/// other side's value there (0, the z-normalized mean, where the other list does not hold it).
#[derive(Debug, Clone, Copy, Default)]
pub struct ListDist;

impl Distance<u64> for ListDist {
    fn eval(&self, a: &[u64], b: &[u64]) -> f32 {
        let v = |x: u64| f32::from_bits(x as u32);
        let top = |x: u64| (x >> 32) & 1 == 1;
        let (mut i, mut j, mut s) = (0, 0, 0f32);
        while i < a.len() && j < b.len() {
            let (x, y) = (a[i], b[j]);
            match (x >> 48).cmp(&(y >> 48)) {
                std::cmp::Ordering::Equal => {
                    let w = u32::from(top(x)) + u32::from(top(y));
                    s += (v(x) - v(y)).abs() * w as f32;
                    i += 1;
                    j += 1;
                }
                std::cmp::Ordering::Less => {
                    if top(x) {
                        s += v(x).abs();
                    }
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    if top(y) {
                        s += v(y).abs();
                    }
                    j += 1;
                }
            }
        }
        for &x in &a[i..] {
            if top(x) {
                s += v(x).abs();
            }
        }
        for &y in &b[j..] {
            if top(y) {
                s += v(y).abs();
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn default_keep_is_one_probe_in_32_as_a_power_of_two() {
        assert_eq!(default_keep(10), 32);
        assert_eq!(default_keep(1000), 32);
        assert_eq!(default_keep(1024), 32);
        assert_eq!(default_keep(1025), 64);
        assert_eq!(default_keep(2000), 64);
        assert_eq!(default_keep(4000), 128);
        assert_eq!(default_keep(65_536), MAX_KEEP as usize);
        let opts = AnnOptions::default();
        assert_eq!(opts.keep_for(2000), 64);
        // Never more items than probes, whatever was asked.
        assert_eq!(opts.keep_for(10), 10);
        let fixed = AnnOptions {
            keep: Some(48),
            ..opts
        };
        assert_eq!(fixed.keep_for(4000), 48);
        assert!(fixed.check().is_ok());
        assert!(
            AnnOptions {
                keep: Some(0),
                ..opts
            }
            .check()
            .is_err()
        );
    }
}
