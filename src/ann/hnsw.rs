//! The HNSW builder of the graphs: Malkov and Yashunin's insertion (a level drawn per node, a
//! greedy descent through the upper layers, a beam search of `ef_construction` on each layer at
//! or below the node's level, the neighbour-selection heuristic, reverse links shrunk to the
//! nearest), the same algorithm `hnsw_rs` runs, over flat arrays: node ids are `u32`, the visited
//! set is an epoch-stamped array per thread, each node's links sit behind their own lock with
//! their distances, and nothing is reference counted. Nodes are inserted in parallel (rayon) after
//! the first; the graph differs from run to run only by the order the threads take.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, RwLock};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// A distance between two points of the build, with a fast path from one prepared point (the
/// node being inserted, or the candidate the selection heuristic checks) to many others.
pub trait BuildDistance: Sync {
    /// A point made ready for [`BuildDistance::dist_prepared`] (per-thread scratch).
    type Prepared: Send;
    /// Empty scratch, reused for many points.
    fn scratch(&self) -> Self::Prepared;
    /// Makes `q` ready for distances from `v`.
    fn prepare(&self, v: u32, q: &mut Self::Prepared);
    /// Undoes [`BuildDistance::prepare`] of `v`, leaving `q` empty again.
    fn release(&self, v: u32, q: &mut Self::Prepared);
    /// The distance from the prepared point to `u`.
    fn dist_prepared(&self, q: &Self::Prepared, u: u32) -> f32;
    /// The distance between `a` and `b`, neither prepared.
    fn dist(&self, a: u32, b: u32) -> f32;
    /// Asks for `u`'s data to be brought into the cache (a hint; the default does nothing).
    fn prefetch(&self, _u: u32) {}
}

/// An `f32` distance ordered totally, for the heaps.
#[derive(Debug, Clone, Copy, PartialEq)]
struct D(f32);

impl Eq for D {}

impl PartialOrd for D {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for D {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// A node's links on the layers above 0, each with its distance to the node, nearest first
/// (`layers[0]` stays empty: layer 0 lives in [`Graph`]'s flat rows). Its lock also orders the
/// writers of the node's layer-0 row.
#[derive(Debug, Default)]
struct Links {
    layers: Vec<Vec<(f32, u32)>>,
}

/// Per-thread search state: the visited stamps and the prepared points (the inserted node, a
/// candidate of the selection).
struct Scratch<Q> {
    visited: Vec<u32>,
    epoch: u32,
    node: Q,
    other: Q,
}

impl<Q> Scratch<Q> {
    fn new(n: usize, node: Q, other: Q) -> Scratch<Q> {
        Scratch {
            visited: vec![0; n],
            epoch: 0,
            node,
            other,
        }
    }

    /// Starts a new search: every node unvisited.
    fn clear(&mut self) {
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.visited.fill(0);
            self.epoch = 1;
        }
    }

    /// Marks `v` visited; whether it was not before.
    #[inline]
    fn visit(&mut self, v: u32) -> bool {
        let slot = &mut self.visited[v as usize];
        let fresh = *slot != self.epoch;
        *slot = self.epoch;
        fresh
    }
}

/// The built graph: levels, links per node and layer, and the entry point (the first node of the
/// highest level).
#[derive(Debug)]
pub struct Built {
    pub levels: Vec<u8>,
    pub links: Vec<Vec<Vec<u32>>>,
    pub entry_point: u32,
}

/// Builds the HNSW graph of `n` points under `dist`: `max_degree` links per node on the upper
/// layers, twice that on layer 0, beam `ef_construction`, at most `max_level` (levels drawn with
/// scale `1 / ln(max_degree)` from a generator seeded with `seed`).
pub fn build<B: BuildDistance>(
    n: usize,
    dist: &B,
    max_degree: usize,
    ef_construction: usize,
    max_level: u8,
    seed: u64,
) -> Built {
    assert!(n > 0 && n < u32::MAX as usize, "1..2^32-1 points");
    let scale = 1.0 / (max_degree.max(2) as f64).ln();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let levels: Vec<u8> = (0..n)
        .map(|_| {
            let u: f64 = rng.random_range(f64::EPSILON..1.0);
            ((-u.ln() * scale) as u64).min(u64::from(max_level)) as u8
        })
        .collect();
    let nodes: Vec<Mutex<Links>> = levels
        .iter()
        .map(|&l| {
            Mutex::new(Links {
                layers: vec![Vec::new(); l as usize + 1],
            })
        })
        .collect();
    let m0 = 2 * max_degree;
    let g = Graph {
        dist,
        levels: &levels,
        nodes,
        zero_ids: (0..n * (m0 + 1)).map(|_| AtomicU32::new(0)).collect(),
        zero_dists: (0..n * m0).map(|_| AtomicU32::new(0)).collect(),
        entry: RwLock::new((0, levels[0])),
        max_degree,
        ef: ef_construction.max(1),
    };
    (1..n as u32).into_par_iter().for_each_init(
        || Scratch::new(n, dist.scratch(), dist.scratch()),
        |scratch, v| g.insert(v, scratch),
    );
    let mut zero = Vec::new();
    let links: Vec<Vec<Vec<u32>>> = (0..n as u32)
        .map(|v| {
            g.neighbours(v, 0, &mut zero);
            let mut layers: Vec<Vec<u32>> = g.nodes[v as usize]
                .lock()
                .expect("a build thread panicked")
                .layers
                .iter()
                .map(|l| l.iter().map(|&(_, u)| u).collect())
                .collect();
            layers[0].clone_from(&zero);
            layers
        })
        .collect();
    let top = *levels.iter().max().expect("n > 0");
    let entry_point = levels.iter().position(|&l| l == top).expect("max exists") as u32;
    Built {
        levels,
        links,
        entry_point,
    }
}

struct Graph<'a, B: BuildDistance> {
    dist: &'a B,
    levels: &'a [u8],
    nodes: Vec<Mutex<Links>>,
    /// Layer 0, read without locks: per node a row of `2 * max_degree + 1` slots, the link count
    /// then the links, nearest first. A reader racing a writer may see a row half rewritten (a
    /// link twice or one missing), which only changes which nodes a search visits.
    zero_ids: Vec<AtomicU32>,
    /// The layer-0 links' distances (f32 bits), `2 * max_degree` per node.
    zero_dists: Vec<AtomicU32>,
    /// The entry point and its level.
    entry: RwLock<(u32, u8)>,
    max_degree: usize,
    ef: usize,
}

impl<B: BuildDistance> Graph<'_, B> {
    fn degree(&self, layer: usize) -> usize {
        if layer == 0 {
            2 * self.max_degree
        } else {
            self.max_degree
        }
    }

    /// The ids of `v`'s links on `layer` (a copy; above layer 0 taken under its lock).
    fn neighbours(&self, v: u32, layer: usize, out: &mut Vec<u32>) {
        out.clear();
        if layer == 0 {
            let m0 = 2 * self.max_degree;
            let row = &self.zero_ids[v as usize * (m0 + 1)..(v as usize + 1) * (m0 + 1)];
            let len = (row[0].load(Ordering::Relaxed) as usize).min(m0);
            out.extend(row[1..=len].iter().map(|x| x.load(Ordering::Relaxed)));
            return;
        }
        let node = self.nodes[v as usize]
            .lock()
            .expect("a build thread panicked");
        if let Some(l) = node.layers.get(layer) {
            out.extend(l.iter().map(|&(_, u)| u));
        }
    }

    fn insert(&self, v: u32, scratch: &mut Scratch<B::Prepared>) {
        self.dist.prepare(v, &mut scratch.node);
        self.insert_prepared(v, scratch);
        self.dist.release(v, &mut scratch.node);
    }

    fn insert_prepared(&self, v: u32, scratch: &mut Scratch<B::Prepared>) {
        let level = self.levels[v as usize];
        let (mut ep, top) = *self.entry.read().expect("entry lock");
        let mut ep_d = self.dist.dist_prepared(&scratch.node, ep);
        let mut nb = Vec::new();
        // Greedy descent through the layers above the node's level.
        for layer in (level as usize + 1..=top as usize).rev() {
            loop {
                let mut moved = false;
                self.neighbours(ep, layer, &mut nb);
                for &u in &nb {
                    let d = self.dist.dist_prepared(&scratch.node, u);
                    if d < ep_d {
                        (ep, ep_d, moved) = (u, d, true);
                    }
                }
                if !moved {
                    break;
                }
            }
        }
        let mut entries = vec![(ep_d, ep)];
        for layer in (0..=level.min(top) as usize).rev() {
            let found = self.search_layer(&entries, layer, scratch, &mut nb);
            let chosen = self.select(&found, self.degree(layer), &mut scratch.other);
            {
                let mut node = self.nodes[v as usize]
                    .lock()
                    .expect("a build thread panicked");
                if layer == 0 {
                    self.write_zero(v, &chosen);
                } else {
                    node.layers[layer].clone_from(&chosen);
                }
            }
            for &(d, u) in &chosen {
                self.link_back(u, v, d, layer);
            }
            entries = found;
        }
        if level > top {
            let mut entry = self.entry.write().expect("entry lock");
            if level > entry.1 {
                *entry = (v, level);
            }
        }
    }

    /// The `ef` nearest nodes to `v` on `layer` reachable from `entries`, nearest first.
    fn search_layer(
        &self,
        entries: &[(f32, u32)],
        layer: usize,
        scratch: &mut Scratch<B::Prepared>,
        nb: &mut Vec<u32>,
    ) -> Vec<(f32, u32)> {
        scratch.clear();
        let mut candidates: BinaryHeap<Reverse<(D, u32)>> = BinaryHeap::new();
        let mut best: BinaryHeap<(D, u32)> = BinaryHeap::new();
        for &(d, u) in entries {
            if scratch.visit(u) {
                candidates.push(Reverse((D(d), u)));
                best.push((D(d), u));
            }
        }
        while best.len() > self.ef {
            best.pop();
        }
        while let Some(Reverse((D(d), c))) = candidates.pop() {
            if best.len() >= self.ef && d > best.peek().expect("non-empty").0.0 {
                break;
            }
            self.neighbours(c, layer, nb);
            // The unvisited neighbours' data is requested before the first distance, so that
            // the loads overlap.
            nb.retain(|&u| scratch.visit(u));
            for &u in nb.iter() {
                self.dist.prefetch(u);
            }
            for &u in nb.iter() {
                let du = self.dist.dist_prepared(&scratch.node, u);
                if best.len() < self.ef || du < best.peek().expect("non-empty").0.0 {
                    candidates.push(Reverse((D(du), u)));
                    best.push((D(du), u));
                    if best.len() > self.ef {
                        best.pop();
                    }
                }
            }
        }
        let mut out: Vec<(f32, u32)> = best.into_iter().map(|(D(d), u)| (d, u)).collect();
        out.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        out
    }

    /// The neighbour-selection heuristic: nearest first, a candidate kept unless a kept one is at
    /// most as far from it as the new node is.
    fn select(&self, sorted: &[(f32, u32)], m: usize, q: &mut B::Prepared) -> Vec<(f32, u32)> {
        if sorted.len() <= m {
            return sorted.to_vec();
        }
        let mut out: Vec<(f32, u32)> = Vec::with_capacity(m);
        for &(d, u) in sorted {
            if out.len() >= m {
                break;
            }
            let keep = match out.len() {
                0 => true,
                1 => self.dist.dist(u, out[0].1) > d,
                _ => {
                    self.dist.prepare(u, q);
                    let keep = out.iter().all(|&(_, w)| self.dist.dist_prepared(q, w) > d);
                    self.dist.release(u, q);
                    keep
                }
            };
            if keep {
                out.push((d, u));
            }
        }
        out
    }

    /// Adds `v` (at `d`) to `u`'s links on `layer`, dropping the farthest link past the degree.
    fn link_back(&self, u: u32, v: u32, d: f32, layer: usize) {
        let m = self.degree(layer);
        let mut node = self.nodes[u as usize]
            .lock()
            .expect("a build thread panicked");
        let mut row = Vec::new();
        let links = if layer == 0 {
            self.read_zero(u, &mut row);
            &mut row
        } else {
            &mut node.layers[layer]
        };
        if links.iter().any(|&(_, w)| w == v) {
            return;
        }
        let at = links.partition_point(|&(dw, w)| (dw, w) < (d, v));
        if at >= m {
            return;
        }
        links.insert(at, (d, v));
        links.truncate(m);
        if layer == 0 {
            self.write_zero(u, &row);
        }
    }

    /// `v`'s layer-0 links with their distances (call with `v`'s lock held).
    fn read_zero(&self, v: u32, out: &mut Vec<(f32, u32)>) {
        let m0 = 2 * self.max_degree;
        let ids = &self.zero_ids[v as usize * (m0 + 1)..(v as usize + 1) * (m0 + 1)];
        let dists = &self.zero_dists[v as usize * m0..(v as usize + 1) * m0];
        let len = (ids[0].load(Ordering::Relaxed) as usize).min(m0);
        out.clear();
        out.extend((0..len).map(|i| {
            (
                f32::from_bits(dists[i].load(Ordering::Relaxed)),
                ids[i + 1].load(Ordering::Relaxed),
            )
        }));
    }

    /// Sets `v`'s layer-0 links (call with `v`'s lock held; at most `2 * max_degree`).
    fn write_zero(&self, v: u32, links: &[(f32, u32)]) {
        let m0 = 2 * self.max_degree;
        let ids = &self.zero_ids[v as usize * (m0 + 1)..(v as usize + 1) * (m0 + 1)];
        let dists = &self.zero_dists[v as usize * m0..(v as usize + 1) * m0];
        let len = links.len().min(m0);
        for (i, &(d, u)) in links[..len].iter().enumerate() {
            dists[i].store(d.to_bits(), Ordering::Relaxed);
            ids[i + 1].store(u, Ordering::Relaxed);
        }
        ids[0].store(len as u32, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Line(Vec<f32>);

    impl BuildDistance for Line {
        type Prepared = f32;
        fn scratch(&self) -> f32 {
            f32::NAN
        }
        fn prepare(&self, v: u32, q: &mut f32) {
            *q = self.0[v as usize];
        }
        fn release(&self, _: u32, q: &mut f32) {
            *q = f32::NAN;
        }
        fn dist_prepared(&self, q: &f32, u: u32) -> f32 {
            (q - self.0[u as usize]).abs()
        }
        fn dist(&self, a: u32, b: u32) -> f32 {
            (self.0[a as usize] - self.0[b as usize]).abs()
        }
    }

    #[test]
    fn links_nearest_points_and_stays_within_degree() {
        let n = 2000;
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let pts = Line((0..n).map(|_| rng.random_range(0.0..1000.0)).collect());
        let g = build(n, &pts, 8, 40, 6, 1);
        assert_eq!(g.levels.len(), n);
        assert_eq!(g.links.len(), n);
        assert_eq!(
            g.levels[g.entry_point as usize],
            *g.levels.iter().max().unwrap()
        );
        let mut near = 0;
        for v in 0..n {
            assert_eq!(g.links[v].len(), g.levels[v] as usize + 1);
            for (layer, l) in g.links[v].iter().enumerate() {
                assert!(l.len() <= if layer == 0 { 16 } else { 8 });
                assert!(l.iter().all(|&u| u as usize != v && (u as usize) < n));
            }
            // The nearest other point is among the layer-0 links of most nodes.
            let nearest = (0..n)
                .filter(|&u| u != v)
                .min_by(|&a, &b| {
                    pts.dist(v as u32, a as u32)
                        .total_cmp(&pts.dist(v as u32, b as u32))
                })
                .unwrap();
            near += usize::from(g.links[v][0].contains(&(nearest as u32)));
        }
        assert!(
            near > n * 9 / 10,
            "{near} of {n} nodes link their nearest point"
        );
    }
}
