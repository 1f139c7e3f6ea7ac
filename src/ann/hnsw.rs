//! The HNSW builder of the graphs: Malkov and Yashunin's insertion (a level drawn per node, a
//! greedy descent through the upper layers, a beam search of `ef_construction` on each layer at
//! or below the node's level, the neighbour-selection heuristic, reverse links shrunk to the
//! nearest), the same algorithm `hnsw_rs` runs, over flat arrays: node ids are `u32`, the visited
//! set is an epoch-stamped array per thread, each node's links sit behind their own lock with
//! their distances, and nothing is reference counted. Nodes are inserted in parallel (rayon) after
//! the first; the graph differs from run to run only by the order the threads take (with one
//! thread it is the same every run). A node's links on every layer are chosen before any is
//! written, and its reverse links are added after, so no other node links to it before its own
//! rows are set.

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

/// The built graph: levels, links per node and layer, and the entry point (a node of the highest
/// level).
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
    g.connect_layer_0(&mut Scratch::new(n, dist.scratch(), dist.scratch()));
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
    // The entry the insertions descended from last (a node of the highest level; of two drawn
    // above the graph's top at once, the other has no links above the old top).
    let entry_point = g.entry.read().expect("entry lock").0;
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
            // Acquire: a node read here has its own rows written (see `insert_prepared`).
            let len = (row[0].load(Ordering::Acquire) as usize).min(m0);
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
        let mut nb = Vec::new();
        let (ep_d, ep, top) = self.descend(level, scratch, &mut nb);
        // Every layer's links are chosen before any is written: `v` becomes reachable only by
        // the reverse links, which come after all of its own rows are set. Written layer by
        // layer instead, `v` would be reachable on a layer above while its rows below are still
        // empty; another thread could then link back to `v` there, and `v`'s own write would
        // overwrite that link, leaving the other node without the in-link it counted on (a node
        // unreachable on layer 0).
        let mut entries = vec![(ep_d, ep)];
        let mut plan: Vec<Vec<(f32, u32)>> = Vec::with_capacity(level.min(top) as usize + 1);
        for layer in (0..=level.min(top) as usize).rev() {
            let found = self.search_layer(&entries, layer, scratch, &mut nb);
            plan.push(self.select(&found, self.degree(layer), &mut scratch.other));
            entries = found;
        }
        plan.reverse();
        {
            let mut node = self.nodes[v as usize]
                .lock()
                .expect("a build thread panicked");
            for (layer, chosen) in plan.iter().enumerate() {
                if layer == 0 {
                    debug_assert!(
                        self.zero_ids[v as usize * (2 * self.max_degree + 1)]
                            .load(Ordering::Relaxed)
                            == 0,
                        "{v} linked before inserted"
                    );
                    self.write_zero(v, chosen);
                } else {
                    debug_assert!(node.layers[layer].is_empty(), "{v} linked before inserted");
                    node.layers[layer].clone_from(chosen);
                }
            }
        }
        for (layer, chosen) in plan.iter().enumerate() {
            for &(d, u) in chosen {
                self.link_back(u, v, d, layer);
            }
        }
        if level > top {
            let mut entry = self.entry.write().expect("entry lock");
            if level > entry.1 {
                *entry = (v, level);
            }
        }
    }

    /// The greedy descent from the entry point to the prepared node through the layers above
    /// `level`: the node reached, its distance, and the top layer at the start.
    fn descend(
        &self,
        level: u8,
        scratch: &Scratch<B::Prepared>,
        nb: &mut Vec<u32>,
    ) -> (f32, u32, u8) {
        let (mut ep, top) = *self.entry.read().expect("entry lock");
        let mut ep_d = self.dist.dist_prepared(&scratch.node, ep);
        for layer in (level as usize + 1..=top as usize).rev() {
            loop {
                let mut moved = false;
                self.neighbours(ep, layer, nb);
                for &u in nb.iter() {
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
        (ep_d, ep, top)
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

    /// Makes every node reachable on layer 0 from the entry point (run alone, after the
    /// insertions). A reverse link past the degree drops the farthest, which can be a node's last
    /// in-link (most often among points at equal distances). Each node the entry does not reach
    /// gets an in-link from the nearest reached node a search for it finds, in place of that
    /// node's farthest link outside the breadth-first tree of the reached nodes, so that no
    /// reached node is lost.
    fn connect_layer_0(&self, scratch: &mut Scratch<B::Prepared>) {
        let n = self.levels.len();
        let entry = self.entry.read().expect("entry lock").0;
        // The node each reached node was first reached from (the entry's is itself).
        let mut parent = vec![u32::MAX; n];
        let mut order = Vec::with_capacity(n);
        let (mut nb, mut row) = (Vec::new(), Vec::new());
        parent[entry as usize] = entry;
        self.reach(entry, &mut parent, &mut order, &mut nb);
        for v in 0..n as u32 {
            if order.len() == n {
                break;
            }
            if parent[v as usize] != u32::MAX {
                continue;
            }
            self.dist.prepare(v, &mut scratch.node);
            let (ep_d, ep, _) = self.descend(0, scratch, &mut nb);
            let found = self.search_layer(&[(ep_d, ep)], 0, scratch, &mut nb);
            self.dist.release(v, &mut scratch.node);
            let mut from = found
                .into_iter()
                .filter(|&(_, u)| parent[u as usize] != u32::MAX)
                .find(|&(d, u)| self.attach(u, v, d, &parent, &mut row))
                .map(|(_, u)| u);
            if from.is_none() {
                // Some reached node has a free slot or a link outside the tree: the tree's links
                // are one fewer than the reached nodes, which have `2 * max_degree` slots each.
                from = order
                    .iter()
                    .copied()
                    .find(|&u| self.attach(u, v, self.dist.dist(u, v), &parent, &mut row));
            }
            let from = from.expect("a reached node has room for one more link");
            parent[v as usize] = from;
            self.reach(v, &mut parent, &mut order, &mut nb);
        }
    }

    /// Adds `start` to the reached nodes and walks on from it breadth first.
    fn reach(&self, start: u32, parent: &mut [u32], order: &mut Vec<u32>, nb: &mut Vec<u32>) {
        let mut i = order.len();
        order.push(start);
        while let Some(&x) = order.get(i) {
            i += 1;
            self.neighbours(x, 0, nb);
            for &u in nb.iter() {
                if parent[u as usize] == u32::MAX {
                    parent[u as usize] = x;
                    order.push(u);
                }
            }
        }
    }

    /// Links `u` to `v` (at `d`) on layer 0, if `u` has a free slot or a link that is not the
    /// one its target was first reached by (which then goes, the farthest such).
    fn attach(&self, u: u32, v: u32, d: f32, parent: &[u32], row: &mut Vec<(f32, u32)>) -> bool {
        self.read_zero(u, row);
        if row.len() >= 2 * self.max_degree {
            match row.iter().rposition(|&(_, t)| parent[t as usize] != u) {
                Some(i) => {
                    row.remove(i);
                }
                None => return false,
            }
        }
        let at = row.partition_point(|&(dw, w)| (dw, w) < (d, v));
        row.insert(at, (d, v));
        self.write_zero(u, row);
        true
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

    /// Points on a small integer grid under the L1 distance: many points share a place and many
    /// distances tie, which the selection heuristic prunes hardest.
    struct Grid(Vec<(i32, i32)>);

    impl Grid {
        /// `n` random points of the `side` x `side` grid (repeats allowed).
        fn random(rng: &mut ChaCha8Rng, n: usize, side: i32) -> Grid {
            Grid(
                (0..n)
                    .map(|_| (rng.random_range(0..side), rng.random_range(0..side)))
                    .collect(),
            )
        }
    }

    impl BuildDistance for Grid {
        type Prepared = (i32, i32);
        fn scratch(&self) -> (i32, i32) {
            (i32::MIN, i32::MIN)
        }
        fn prepare(&self, v: u32, q: &mut (i32, i32)) {
            *q = self.0[v as usize];
        }
        fn release(&self, _: u32, q: &mut (i32, i32)) {
            *q = (i32::MIN, i32::MIN);
        }
        fn dist_prepared(&self, q: &(i32, i32), u: u32) -> f32 {
            let p = self.0[u as usize];
            ((q.0 - p.0).abs() + (q.1 - p.1).abs()) as f32
        }
        fn dist(&self, a: u32, b: u32) -> f32 {
            self.dist_prepared(&self.0[a as usize], b)
        }
    }

    /// The nodes reachable from the entry point by layer-0 links.
    fn reached_on_layer_0(g: &Built) -> usize {
        let mut seen = vec![false; g.links.len()];
        let mut queue = vec![g.entry_point];
        seen[g.entry_point as usize] = true;
        let mut count = 1;
        while let Some(v) = queue.pop() {
            for &u in &g.links[v as usize][0] {
                if !std::mem::replace(&mut seen[u as usize], true) {
                    count += 1;
                    queue.push(u);
                }
            }
        }
        count
    }

    fn build_on(threads: usize, f: impl FnOnce() -> Built + Send) -> Built {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(f)
    }

    /// Built by several threads, every node is reachable on layer 0 from the entry point, run
    /// after run (each run interleaves the insertions differently).
    #[test]
    fn parallel_builds_leave_every_node_reachable_on_layer_0() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let n = 3000;
        let grid = Grid::random(&mut rng, n, 30);
        let line = Line((0..n).map(|_| rng.random_range(0.0..1000.0)).collect());
        for run in 0..6 {
            let threads = 2 + run % 3;
            let (m, ef) = if run % 2 == 0 { (4, 16) } else { (16, 100) };
            let g = build_on(threads, || build(n, &grid, m, ef, 6, run as u64));
            assert_eq!(
                reached_on_layer_0(&g),
                n,
                "grid, run {run}, {threads} threads"
            );
            let g = build_on(threads, || build(n, &line, m, ef, 6, run as u64));
            assert_eq!(
                reached_on_layer_0(&g),
                n,
                "line, run {run}, {threads} threads"
            );
        }
    }

    /// One thread inserts in id order, so the graph is the same every run; several threads give
    /// graphs that differ by the interleaving (not checked: it may happen to match).
    #[test]
    fn a_one_thread_build_is_deterministic() {
        let mut rng = ChaCha8Rng::seed_from_u64(12);
        let n = 2000;
        let grid = Grid::random(&mut rng, n, 40);
        let a = build_on(1, || build(n, &grid, 8, 40, 6, 5));
        let b = build_on(1, || build(n, &grid, 8, 40, 6, 5));
        assert_eq!(a.levels, b.levels);
        assert_eq!(a.links, b.links);
        assert_eq!(a.entry_point, b.entry_point);
        assert_eq!(reached_on_layer_0(&a), n);
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
