//! Building a segment's ANN graph: compact vectors from the descriptor rows, an HNSW graph over
//! them built by `hnsw_rs`, and the conversion of that graph into the section layout of
//! [`super::graph`].

use hnsw_rs::anndists::dist::Distance;
use hnsw_rs::hnsw::Hnsw;

use crate::error::{Error, Result};

use super::graph::{GraphParts, MAX_LEVEL};
use super::sketch::Sketch;

/// How appends and compaction build ANN graphs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnnOptions {
    /// Build a graph for segments of at least this many entries; smaller segments are scanned
    /// exactly in every search mode. `usize::MAX` turns graph building off.
    pub min_entries: usize,
    /// Dimensions of the sketches.
    pub dims: usize,
    /// Top probes per entry that a sketch keeps.
    pub keep: usize,
    /// HNSW links per node on the upper layers (layer 0 gets twice as many).
    pub max_degree: usize,
    /// HNSW candidate list size while inserting.
    pub ef_construction: usize,
    /// Seed of the sketch matrix.
    pub seed: u64,
}

impl Default for AnnOptions {
    fn default() -> Self {
        AnnOptions {
            min_entries: 20_000,
            dims: 128,
            keep: 32,
            max_degree: 16,
            ef_construction: 100,
            seed: 0x5eed,
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

    pub fn wants_graph(&self, entries: usize) -> bool {
        entries >= self.min_entries.max(2)
    }

    pub fn check(&self) -> Result<()> {
        if self.dims == 0 || self.dims > super::graph::MAX_DIMS as usize || self.keep == 0 {
            return Err(Error::InvalidParameter(format!(
                "ANN dimensions must be 1..={} and keep positive, not {} and {}",
                super::graph::MAX_DIMS,
                self.dims,
                self.keep
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

/// Builds the graph of a segment of `n` entries whose probe-major rows `fill_row(p, out)`
/// produces (each row `n` values).
pub fn build_graph(
    probes: usize,
    n: usize,
    fill_row: &mut dyn FnMut(usize, &mut [f32]) -> Result<()>,
    opts: &AnnOptions,
) -> Result<GraphParts> {
    opts.check()?;
    if n == 0 || n > u32::MAX as usize - 1 {
        return Err(Error::InvalidInput(format!(
            "an ANN graph needs 1..2^32-1 entries, not {n}"
        )));
    }
    let sketch = Sketch::new(probes, opts.dims, opts.keep, opts.seed);
    let vectors = sketch.sketch_rows(n, fill_row)?;
    let d = sketch.dims();
    let hnsw: Hnsw<f32, SketchL2> = Hnsw::new(
        opts.max_degree,
        n,
        MAX_LEVEL as usize,
        opts.ef_construction,
        SketchL2,
    );
    let data: Vec<(&[f32], usize)> = vectors.chunks_exact(d).zip(0..n).collect();
    hnsw.parallel_insert_slice(&data);

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
    Ok(GraphParts {
        sketch,
        vectors,
        levels,
        links,
        entry_point,
        ef_construction: opts.ef_construction as u32,
    })
}

/// Euclidean distance between sketches, summed in eight lanes so that it vectorizes (the
/// `anndists` scalar version sums in order, which the compiler may not reorder).
#[derive(Debug, Clone, Copy, Default)]
pub struct SketchL2;

impl Distance<f32> for SketchL2 {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        let mut s = [0f32; 8];
        let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
        let tail: f32 = ca
            .remainder()
            .iter()
            .zip(cb.remainder())
            .map(|(x, y)| (x - y) * (x - y))
            .sum();
        for (x, y) in ca.zip(cb) {
            for i in 0..8 {
                let d = x[i] - y[i];
                s[i] += d * d;
            }
        }
        (s.iter().sum::<f32>() + tail).sqrt()
    }
}
