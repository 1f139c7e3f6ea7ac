//! The HNSW search of a [`GraphView`], over the mapped bytes in place: the walk from the entry
//! point's descent and from the seeds of the query's highest probes, every link checked as it is
//! read.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::error::{Error, Result};

use super::super::lists::ListQuery;
use super::{GraphView, SEED_PREFETCH_AHEAD, SEED_PROBES};

impl<'a> GraphView<'a> {
    /// The `take` nodes whose lists score best against `q` among all the nodes the HNSW walk
    /// scored: the walk starts from the entry point's descent and from the seeds of the query's
    /// [`SEED_PROBES`] highest probes, and keeps the `ef` best nodes as it goes (its breadth).
    /// With `take > ef` the rerank gets more candidates than the walk keeps, at no cost to the
    /// walk: every node it scores is a candidate.
    pub fn search_query(&self, q: &ListQuery, ef: usize, take: usize) -> Result<Vec<(f32, u32)>> {
        self.search_query_filtered(q, |_| true, ef, take)
    }

    /// [`GraphView::search_query`] that returns only nodes `allowed` keeps. The walk still steps
    /// through the others, and keeps `ef` allowed nodes as it goes, so a filter does not cut the
    /// results short while allowed nodes are reachable.
    pub fn search_query_filtered(
        &self,
        q: &ListQuery,
        allowed: impl Fn(u32) -> bool,
        ef: usize,
        take: usize,
    ) -> Result<Vec<(f32, u32)>> {
        let probes = &q.probes()[..q.probes().len().min(SEED_PROBES)];
        let mut seeds = Vec::with_capacity(probes.len() * self.header.seeds as usize);
        for &p in probes {
            if p >= self.header.probes {
                return Err(Error::InvalidInput(format!(
                    "query probe {p} is past the graph's {} probes",
                    self.header.probes
                )));
            }
            seeds.extend_from_slice(self.probe_seeds(p as usize));
        }
        self.walk::<true>(
            |node| q.score(self.list(node as usize)),
            allowed,
            &seeds,
            ef,
            take,
        )
    }

    /// The neighbours of `node` on `layer`, checked.
    pub fn neighbours(&self, node: u32, layer: u32) -> Result<&'a [u32]> {
        let n = self.header.nodes;
        if node >= n {
            return Err(Error::corrupt(format!(
                "ANN graph: node {node} out of range"
            )));
        }
        let (list, degree) = if layer == 0 {
            let row = self.header.degree0 as usize + 1;
            (
                &self.layer0[node as usize * row..(node as usize + 1) * row],
                self.header.degree0,
            )
        } else {
            let level = u32::from(self.levels[node as usize]);
            if level > self.header.max_level {
                return Err(Error::corrupt(format!(
                    "ANN graph: node {node} has level {level}, above the graph's {}",
                    self.header.max_level
                )));
            }
            if layer > level {
                return Ok(&[]);
            }
            let slot = self.upper[node as usize];
            if slot >= self.header.upper_nodes {
                return Err(Error::corrupt(format!(
                    "ANN graph: node {node} on layer {layer} has no upper-layer row"
                )));
            }
            let row = self.header.degree as usize + 1;
            let at = (slot as usize * self.header.max_level as usize + (layer as usize - 1)) * row;
            (&self.links[at..at + row], self.header.degree)
        };
        let count = list[0];
        if count > degree {
            return Err(Error::corrupt(format!(
                "ANN graph: node {node} lists {count} neighbours on layer {layer}, the slots hold {degree}"
            )));
        }
        let ids = &list[1..1 + count as usize];
        if let Some(bad) = ids.iter().find(|&&x| x >= n) {
            return Err(Error::corrupt(format!(
                "ANN graph: node {node} links to node {bad}, past the {n} nodes"
            )));
        }
        Ok(ids)
    }

    /// HNSW search: greedy descent through the upper layers, then a best-first walk of layer 0
    /// keeping the `ef` closest nodes. `dist` scores a node (`node < nodes` is checked before
    /// the call; lower is closer; NaN counts as infinitely far). Returns up to `ef`
    /// `(distance, node)` pairs, closest first.
    pub fn search_nodes(&self, dist: impl FnMut(u32) -> f32, ef: usize) -> Result<Vec<(f32, u32)>> {
        self.search_seeded(dist, &[], ef)
    }

    /// [`GraphView::search_nodes`] whose layer-0 walk also starts from `seeds` (node numbers;
    /// those out of range are an error).
    pub fn search_seeded(
        &self,
        dist: impl FnMut(u32) -> f32,
        seeds: &[u32],
        ef: usize,
    ) -> Result<Vec<(f32, u32)>> {
        self.walk::<true>(dist, |_| true, seeds, ef, ef)
    }

    /// [`GraphView::search_seeded`] without prefetching, for the benchmark that measures what
    /// prefetching buys.
    #[doc(hidden)]
    pub fn search_seeded_without_prefetch(
        &self,
        dist: impl FnMut(u32) -> f32,
        seeds: &[u32],
        ef: usize,
    ) -> Result<Vec<(f32, u32)>> {
        self.walk::<false>(dist, |_| true, seeds, ef, ef)
    }

    /// The walk: keeps the `ef` best nodes (which decide where it goes and when it stops) and
    /// returns the `take` best of all nodes it scored, closest first.
    fn walk<const PREFETCH: bool>(
        &self,
        mut dist: impl FnMut(u32) -> f32,
        allowed: impl Fn(u32) -> bool,
        seeds: &[u32],
        ef: usize,
        take: usize,
    ) -> Result<Vec<(f32, u32)>> {
        // Every node the layer-0 walk scored (each once), when more are wanted than it keeps.
        let wide = take > ef.max(1);
        let mut scored: Vec<(f32, u32)> = Vec::new();
        let mut score = |node: u32| {
            let d = dist(node);
            if d.is_nan() { f32::INFINITY } else { d }
        };
        let mut ep = self.header.entry_point;
        let mut ep_d = score(ep);
        for layer in (1..=self.header.max_level).rev() {
            // Strict improvement only: every move lowers ep_d, so the walk ends.
            loop {
                let mut moved = false;
                for &nb in self.neighbours(ep, layer)? {
                    let d = score(nb);
                    if d < ep_d {
                        ep = nb;
                        ep_d = d;
                        moved = true;
                    }
                }
                if !moved {
                    break;
                }
            }
        }
        let ef = ef.max(1);
        let mut visited = VisitedSet::new(self.nodes());
        visited.insert(ep);
        let mut frontier = BinaryHeap::new(); // closest first
        let mut best = BinaryHeap::new(); // farthest of the kept on top
        frontier.push(std::cmp::Reverse(Dist(ep_d, ep)));
        if allowed(ep) {
            best.push(Dist(ep_d, ep));
            if wide {
                scored.push((ep_d, ep));
            }
        }
        // A node the filter leaves out is walked through but never kept: it joins the frontier
        // on the terms of an allowed one, and `best` only holds allowed nodes.
        let step = |best: &mut BinaryHeap<Dist>,
                    frontier: &mut BinaryHeap<std::cmp::Reverse<Dist>>,
                    scored: &mut Vec<(f32, u32)>,
                    node: Dist| {
            if allowed(node.1) {
                if wide {
                    scored.push((node.0, node.1));
                }
                keep_if_close(best, frontier, ef, node)
            } else if best.len() < ef || node.0 < best.peek().map_or(f32::INFINITY, |b| b.0) {
                frontier.push(std::cmp::Reverse(node));
                true
            } else {
                false
            }
        };
        // Seed lists are scattered: loads started a few seeds ahead overlap with the scoring
        // (all at once, most would be evicted or dropped before they are read).
        if PREFETCH {
            seeds
                .iter()
                .take(SEED_PREFETCH_AHEAD)
                .for_each(|&s| self.prefetch_list(s));
        }
        for (i, &s) in seeds.iter().enumerate() {
            if PREFETCH && let Some(&ahead) = seeds.get(i + SEED_PREFETCH_AHEAD) {
                self.prefetch_list(ahead);
            }
            if s >= self.header.nodes {
                return Err(Error::corrupt(format!(
                    "ANN graph: seed node {s} out of range"
                )));
            }
            if visited.insert(s) {
                let d = score(s);
                if step(&mut best, &mut frontier, &mut scored, Dist(d, s)) && PREFETCH {
                    self.prefetch_links(s);
                }
            }
        }
        // The not yet visited neighbours of the node being expanded.
        let mut fresh: Vec<u32> = Vec::with_capacity(self.header.degree0 as usize);
        while let Some(std::cmp::Reverse(Dist(d, node))) = frontier.pop() {
            if best.len() >= ef && d > best.peek().map_or(f32::INFINITY, |b: &Dist| b.0) {
                break;
            }
            fresh.clear();
            fresh.extend(
                self.neighbours(node, 0)?
                    .iter()
                    .copied()
                    .filter(|&nb| visited.insert(nb)),
            );
            if PREFETCH {
                fresh.iter().for_each(|&nb| self.prefetch_list(nb));
            }
            for &nb in &fresh {
                let nd = score(nb);
                if step(&mut best, &mut frontier, &mut scored, Dist(nd, nb)) && PREFETCH {
                    self.prefetch_links(nb);
                }
            }
        }
        let order = |a: &(f32, u32), b: &(f32, u32)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
        let mut out: Vec<(f32, u32)> = if wide {
            if take < scored.len() {
                scored.select_nth_unstable_by(take - 1, order);
                scored.truncate(take);
            }
            scored
        } else {
            best.into_iter().map(|Dist(d, n)| (d, n)).collect()
        };
        out.sort_by(order);
        Ok(out)
    }
}

/// The walk's step for a scored node: while fewer than `ef` are kept, or when it is closer than
/// the farthest kept, it joins `best` (the farthest dropped past `ef`) and the `frontier`.
/// Returns whether it joined.
#[inline]
fn keep_if_close(
    best: &mut BinaryHeap<Dist>,
    frontier: &mut BinaryHeap<std::cmp::Reverse<Dist>>,
    ef: usize,
    node: Dist,
) -> bool {
    if best.len() >= ef && node.0 >= best.peek().map_or(f32::INFINITY, |b| b.0) {
        return false;
    }
    frontier.push(std::cmp::Reverse(node));
    best.push(node);
    if best.len() > ef {
        best.pop();
    }
    true
}

/// A distance and a node, ordered by distance (then node), NaN-free by construction.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Dist(f32, u32);
impl Eq for Dist {}
impl PartialOrd for Dist {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Dist {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0).then(self.1.cmp(&other.1))
    }
}

/// One bit per node.
struct VisitedSet(Vec<u64>);
impl VisitedSet {
    fn new(n: usize) -> Self {
        VisitedSet(vec![0; n.div_ceil(64)])
    }
    /// Marks `i`; true when it was not marked before.
    fn insert(&mut self, i: u32) -> bool {
        let (w, b) = (i as usize / 64, i % 64);
        let fresh = self.0[w] & (1 << b) == 0;
        self.0[w] |= 1 << b;
        fresh
    }
}
