//! The ANN graph section: its byte layout, the O(1) checks made when it is first used, the full
//! checks `verify` makes and its encoding here; the HNSW search that runs over the mapped bytes in
//! place in `walk`.
//!
//! Layout (all little-endian; every part starts at a multiple of 64 bytes from the section start;
//! see format-spec.md, "ANN graph"):
//!
//! ```text
//! header    64 bytes: version, probes, keep, seeds, nodes, max_level, degree0, degree,
//!           entry_point, upper_nodes, ef_construction (u32 each), then zeros
//! lists     u32 [nodes, keep]            each entry's `keep` highest probes, highest first:
//!                                        probe in bits 0..16, f16 value in bits 16..32
//! seeds     u32 [probes, seeds]          per probe, the nodes with the highest values there
//! levels    u8  [nodes]                  top layer of each node
//! upper     u32 [nodes]                  row in `links` of a node with level >= 1, else u32::MAX
//! layer0    u32 [nodes, 1 + degree0]     neighbour count, then neighbour ids (rest zero)
//! links     u32 [upper_nodes, max_level, 1 + degree]   layers 1..=max_level, same shape
//! ```
//!
//! Nothing read from the file is trusted: neighbour ids, counts, levels and rows are checked as
//! the search reads them, and a violation is an [`Error::Corrupt`], never a panic. The search
//! visits each node at most once per layer-0 walk and moves only to strictly closer nodes on the
//! upper layers, so a hostile graph cannot make it loop.

use crate::error::{Error, Result};
use crate::format::bytes::{get_u32, put_u32};
use crate::format::{SectionEntry, SectionKind};
use crate::prefetch::prefetch_read;

use super::lists::unpack_item;

mod walk;

pub const GRAPH_VERSION: u32 = 2;
pub const GRAPH_HEADER_LEN: usize = 64;
/// Highest layer a graph may have (layer numbers are 0..=MAX_LEVEL).
pub const MAX_LEVEL: u32 = 16;
/// Most neighbour slots per node and layer.
pub const MAX_DEGREE: u32 = 512;
/// Most probes an index with graphs may have (list items hold a 16-bit probe number).
pub const MAX_GRAPH_PROBES: u32 = 1 << 16;
/// Most list items per entry.
pub const MAX_KEEP: u32 = 1024;
/// Most seeds per probe.
pub const MAX_SEEDS: u32 = 1024;
/// `upper` value of a node that lives on layer 0 only.
pub const NO_UPPER: u32 = u32::MAX;
/// The walk starts from the seeds of this many of the query's highest probes (its first top-k
/// probes). Measured at 1M synthetic entries on 400 queries (`cargo bench --bench ann --
/// scale`, README): with the walk keeping C/2 nodes and the rerank taking the best C it scored,
/// at C = 100, 4 probes gave recall 0.950 in 0.21 ms, 6 probes 0.950 in 0.24 ms, 8 probes 0.951
/// in 0.29 ms (separate runs); 4 and 5 side by side over C = 80 to 150, the same recall, 5
/// about 10% slower.
pub const SEED_PROBES: usize = 4;
/// How many seeds ahead of the one being scored the walk starts loading lists. Measured at 1M
/// (`cargo bench --bench ann -- seedcost`, 1,024 seeds a query, one run): scoring them took
/// 0.27 ms without prefetching, 0.16 ms with every list asked for first (the prefetches
/// themselves stall), 0.062-0.064 ms with 8 to 32 ahead, 0.070 ms with 128 ahead; the compute
/// alone, 0.041 ms.
pub const SEED_PREFETCH_AHEAD: usize = 16;
const PART_ALIGN: usize = 64;

/// The header fields of a graph section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GraphHeader {
    pub probes: u32,
    /// Items in each entry's top list.
    pub keep: u32,
    /// Seed nodes per probe.
    pub seeds: u32,
    pub nodes: u32,
    pub max_level: u32,
    pub degree0: u32,
    pub degree: u32,
    pub entry_point: u32,
    pub upper_nodes: u32,
    pub ef_construction: u32,
}

/// Byte offsets of the parts of a graph section, and its total length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    lists: usize,
    seeds: usize,
    levels: usize,
    upper: usize,
    layer0: usize,
    links: usize,
    end: usize,
}

impl GraphHeader {
    pub fn encode(&self) -> [u8; GRAPH_HEADER_LEN] {
        let mut b = [0u8; GRAPH_HEADER_LEN];
        let fields = [
            GRAPH_VERSION,
            self.probes,
            self.keep,
            self.seeds,
            self.nodes,
            self.max_level,
            self.degree0,
            self.degree,
            self.entry_point,
            self.upper_nodes,
            self.ef_construction,
        ];
        for (i, v) in fields.into_iter().enumerate() {
            put_u32(&mut b, i * 4, v);
        }
        b
    }

    /// Decodes and range-checks a header against the segment it belongs to.
    pub fn decode(b: &[u8], probes: u32, nodes: u64) -> Result<GraphHeader> {
        if b.len() < GRAPH_HEADER_LEN {
            return Err(Error::corrupt(format!(
                "ANN graph section of {} bytes is shorter than its header",
                b.len()
            )));
        }
        let version = get_u32(b, 0);
        if version != GRAPH_VERSION {
            return Err(Error::corrupt(format!(
                "ANN graph version {version} is not supported (this build reads version {GRAPH_VERSION})"
            )));
        }
        let h = GraphHeader {
            probes: get_u32(b, 4),
            keep: get_u32(b, 8),
            seeds: get_u32(b, 12),
            nodes: get_u32(b, 16),
            max_level: get_u32(b, 20),
            degree0: get_u32(b, 24),
            degree: get_u32(b, 28),
            entry_point: get_u32(b, 32),
            upper_nodes: get_u32(b, 36),
            ef_construction: get_u32(b, 40),
        };
        let bad = |what: String| Err(Error::corrupt(format!("ANN graph: {what}")));
        if h.probes != probes {
            return bad(format!(
                "built for {} probes, the index has {probes}",
                h.probes
            ));
        }
        if u64::from(h.nodes) != nodes || h.nodes == 0 {
            return bad(format!(
                "has {} nodes for a range of {nodes} entries",
                h.nodes
            ));
        }
        if h.probes > MAX_GRAPH_PROBES {
            return bad(format!(
                "{} probes; graphs support at most {MAX_GRAPH_PROBES}",
                h.probes
            ));
        }
        if h.keep == 0 || h.keep > h.probes.min(MAX_KEEP) {
            return bad(format!("keeps {} of {} probes", h.keep, h.probes));
        }
        if h.seeds == 0 || h.seeds > h.nodes.min(MAX_SEEDS) {
            return bad(format!("{} seeds per probe for {} nodes", h.seeds, h.nodes));
        }
        if h.max_level > MAX_LEVEL {
            return bad(format!("{} layers is too many", h.max_level + 1));
        }
        if !(1..=MAX_DEGREE).contains(&h.degree0) || !(1..=MAX_DEGREE).contains(&h.degree) {
            return bad(format!(
                "degrees {} / {} are impossible",
                h.degree0, h.degree
            ));
        }
        if h.entry_point >= h.nodes || h.upper_nodes > h.nodes {
            return bad(format!(
                "entry point {} or {} upper-layer nodes out of range",
                h.entry_point, h.upper_nodes
            ));
        }
        if (h.max_level == 0) != (h.upper_nodes == 0) {
            return bad(format!(
                "{} upper-layer nodes on {} layers",
                h.upper_nodes,
                h.max_level + 1
            ));
        }
        Ok(h)
    }

    fn layout(&self) -> Option<Layout> {
        let align = |x: usize| x.checked_next_multiple_of(PART_ALIGN);
        let (p, n) = (self.probes as usize, self.nodes as usize);
        let lists = GRAPH_HEADER_LEN;
        let seeds = align(lists.checked_add(n.checked_mul(self.keep as usize)?.checked_mul(4)?)?)?;
        let levels =
            align(seeds.checked_add(p.checked_mul(self.seeds as usize)?.checked_mul(4)?)?)?;
        let upper = align(levels.checked_add(n)?)?;
        let layer0 = align(upper.checked_add(n.checked_mul(4)?)?)?;
        let row0 = (self.degree0 as usize + 1).checked_mul(4)?;
        let links = align(layer0.checked_add(n.checked_mul(row0)?)?)?;
        let row = (self.degree as usize + 1).checked_mul(4)?;
        let links_len = (self.upper_nodes as usize)
            .checked_mul(self.max_level as usize)?
            .checked_mul(row)?;
        let end = links.checked_add(links_len)?;
        Some(Layout {
            lists,
            seeds,
            levels,
            upper,
            layer0,
            links,
            end,
        })
    }

    /// The section length this header needs.
    pub fn section_len(&self) -> Option<usize> {
        self.layout().map(|l| l.end)
    }
}

/// A graph section borrowed from the index bytes.
#[derive(Debug, Clone, Copy)]
pub struct GraphView<'a> {
    pub header: GraphHeader,
    lists: &'a [u32],
    seeds: &'a [u32],
    levels: &'a [u8],
    upper: &'a [u32],
    layer0: &'a [u32],
    links: &'a [u32],
}

fn cast<'a, T: bytemuck::AnyBitPattern>(b: &'a [u8], what: &str) -> Result<&'a [T]> {
    bytemuck::try_cast_slice(b)
        .map_err(|_| Error::corrupt(format!("ANN graph: {what} part is misaligned")))
}

impl<'a> GraphView<'a> {
    /// Views `bytes` (a whole graph section, 64-byte aligned) as the graph of a segment with
    /// `nodes` entries in an index of `probes` probes. O(1): only the header and the length.
    pub fn new(bytes: &'a [u8], probes: u32, nodes: u64) -> Result<GraphView<'a>> {
        let header = GraphHeader::decode(bytes, probes, nodes)?;
        let l = header
            .layout()
            .ok_or_else(|| Error::corrupt("ANN graph: its counts overflow"))?;
        if l.end != bytes.len() {
            return Err(Error::corrupt(format!(
                "ANN graph section is {} bytes, its counts need {}",
                bytes.len(),
                l.end
            )));
        }
        let (p, n) = (header.probes as usize, header.nodes as usize);
        let (keep, seeds) = (header.keep as usize, header.seeds as usize);
        Ok(GraphView {
            header,
            lists: cast(&bytes[l.lists..l.lists + n * keep * 4], "lists")?,
            seeds: cast(&bytes[l.seeds..l.seeds + p * seeds * 4], "seeds")?,
            levels: &bytes[l.levels..l.levels + n],
            upper: cast(&bytes[l.upper..l.upper + n * 4], "upper")?,
            layer0: cast(&bytes[l.layer0..l.links.min(l.end)], "layer0")?,
            links: cast(&bytes[l.links..l.end], "links")?,
        })
    }

    pub fn nodes(&self) -> usize {
        self.header.nodes as usize
    }

    /// The packed top list of `node` (`node < nodes`, which callers have checked).
    pub fn list(&self, node: usize) -> &'a [u32] {
        let k = self.header.keep as usize;
        &self.lists[node * k..(node + 1) * k]
    }

    /// Asks the CPU to start loading the top list of `node`, which the walk is about to score:
    /// a cache miss otherwise. Out-of-range nodes are skipped.
    #[inline]
    fn prefetch_list(&self, node: u32) {
        let k = self.header.keep as usize;
        let at = node as usize * k;
        if at < self.lists.len() {
            let list = self.lists.as_ptr().wrapping_add(at);
            prefetch_read(list);
            if k > 16 {
                prefetch_read(list.wrapping_add(16));
            }
        }
    }

    /// Asks the CPU to start loading the layer-0 links of `node`, which the walk will expand
    /// later: it has just joined the frontier. Out-of-range nodes are skipped.
    #[inline]
    fn prefetch_links(&self, node: u32) {
        let row = self.header.degree0 as usize + 1;
        let at = node as usize * row;
        if at < self.layer0.len() {
            let links = self.layer0.as_ptr().wrapping_add(at);
            let mut off = 0;
            while off < row {
                prefetch_read(links.wrapping_add(off));
                off += 16;
            }
        }
    }

    /// The seed nodes of `probe` (`probe < probes`, which callers have checked).
    pub fn probe_seeds(&self, probe: usize) -> &'a [u32] {
        let s = self.header.seeds as usize;
        &self.seeds[probe * s..(probe + 1) * s]
    }

    /// Every check `verify` makes: link counts and ids, levels against the upper-layer rows, an
    /// entry point on the top layer, list probes in range with finite values, seeds in range. Returns the first
    /// problem found.
    pub fn check_all(&self) -> Result<()> {
        let h = &self.header;
        for (i, &item) in self.lists.iter().enumerate() {
            let (p, v) = unpack_item(item);
            if p >= h.probes || !v.is_finite() {
                return Err(Error::corrupt(format!(
                    "ANN graph: node {} lists probe {p} with value {v}",
                    i / h.keep as usize
                )));
            }
        }
        if let Some(bad) = self.seeds.iter().find(|&&x| x >= h.nodes) {
            return Err(Error::corrupt(format!(
                "ANN graph: seed node {bad} out of range"
            )));
        }
        if u32::from(self.levels[h.entry_point as usize]) != h.max_level {
            return Err(Error::corrupt(
                "ANN graph: the entry point is not on the top layer",
            ));
        }
        let mut rows_seen = vec![false; h.upper_nodes as usize];
        for node in 0..h.nodes {
            let level = u32::from(self.levels[node as usize]);
            let slot = self.upper[node as usize];
            if level > h.max_level {
                return Err(Error::corrupt(format!(
                    "ANN graph: node {node} has level {level}, above the graph's {}",
                    h.max_level
                )));
            }
            if (level == 0) != (slot == NO_UPPER) {
                return Err(Error::corrupt(format!(
                    "ANN graph: node {node} of level {level} has upper-layer row {slot}"
                )));
            }
            if level > 0 {
                let seen = rows_seen.get_mut(slot as usize).ok_or_else(|| {
                    Error::corrupt(format!("ANN graph: node {node} has upper row {slot}"))
                })?;
                if std::mem::replace(seen, true) {
                    return Err(Error::corrupt(format!(
                        "ANN graph: two nodes share upper-layer row {slot}"
                    )));
                }
            }
            for layer in 0..=level {
                self.neighbours(node, layer)?;
            }
        }
        Ok(())
    }

    /// Checks the top lists against the stored descriptors of the graph's nodes, which is what an
    /// f16 index's search takes from them (the rerank's values, an entry query's top probes):
    /// every item holds the stored value of its probe, once, and no probe off a node's list has
    /// a value above the list's lowest. `read_row(p, nodes, out)` reads the stored values of
    /// probe `p` for a range of the graph's nodes. One pass over the rows, blocks of nodes in
    /// parallel. Run after [`GraphView::check_all`], which checks the items' probes.
    pub fn check_lists_against(
        &self,
        read_row: impl Fn(usize, std::ops::Range<usize>, &mut [f32]) + Sync,
    ) -> Result<()> {
        use rayon::prelude::*;
        const NODES: usize = 4096;
        let n = self.nodes();
        (0..n.div_ceil(NODES)).into_par_iter().try_for_each(|b| {
            let block = b * NODES..((b + 1) * NODES).min(n);
            let lowest: Vec<f32> = block
                .clone()
                .map(|node| {
                    self.list(node)
                        .iter()
                        .map(|&i| unpack_item(i).1)
                        .fold(f32::INFINITY, f32::min)
                })
                .collect();
            // How many of each node's items the rows have matched.
            let mut matched = vec![0usize; block.len()];
            let mut row = vec![0f32; block.len()];
            for p in 0..self.header.probes {
                read_row(p as usize, block.clone(), &mut row);
                for (i, (&v, &low)) in row.iter().zip(&lowest).enumerate() {
                    // Every listed value is at least the lowest: only those rows can be listed.
                    // (A NaN is reported as such by verify's descriptor check.)
                    if v.is_nan() || v < low {
                        continue;
                    }
                    let node = block.start + i;
                    match self.list(node).iter().find(|&&it| unpack_item(it).0 == p) {
                        Some(&it) if unpack_item(it).1.to_bits() == v.to_bits() => matched[i] += 1,
                        Some(&it) => {
                            return Err(Error::corrupt(format!(
                                "ANN graph: node {node} lists probe {p} at {}, its descriptor \
                                 holds {v}",
                                unpack_item(it).1
                            )));
                        }
                        None if v > low => {
                            return Err(Error::corrupt(format!(
                                "ANN graph: probe {p} of node {node} ({v}) is above its list's \
                                 lowest value ({low}) but not on the list"
                            )));
                        }
                        None => {}
                    }
                }
            }
            match matched
                .iter()
                .zip(block.clone())
                .find(|&(&m, node)| m != self.list(node).len())
            {
                Some((_, node)) => Err(Error::corrupt(format!(
                    "ANN graph: the list of node {node} holds a value its descriptor does not \
                     (or a probe twice)"
                ))),
                None => Ok(()),
            }
        })
    }
}

/// A graph in memory, ready to encode: what the builder produces.
#[derive(Debug, Clone)]
pub struct GraphParts {
    pub probes: u32,
    /// Items per top list.
    pub keep: u32,
    /// Packed top lists, row-major `[nodes, keep]`.
    pub lists: Vec<u32>,
    /// Seeds per probe.
    pub seeds_per_probe: u32,
    /// Row-major `[probes, seeds_per_probe]`.
    pub seeds: Vec<u32>,
    pub levels: Vec<u8>,
    /// Per node, per layer `0..=level`, its neighbour ids.
    pub links: Vec<Vec<Vec<u32>>>,
    pub entry_point: u32,
    pub ef_construction: u32,
}

impl GraphParts {
    /// Encodes the section. Neighbour lists longer than the slots are an error.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let n = self.levels.len();
        let p = self.probes as usize;
        let (keep, per) = (self.keep as usize, self.seeds_per_probe as usize);
        let invalid = |what: String| Err(Error::InvalidInput(format!("ANN graph: {what}")));
        if n == 0
            || self.lists.len() != n * keep
            || self.seeds.len() != p * per
            || self.links.len() != n
        {
            return invalid(format!(
                "{n} nodes with {} list items and {} seeds",
                self.lists.len(),
                self.seeds.len()
            ));
        }
        let max_level = u32::from(*self.levels.iter().max().expect("n > 0"));
        let max_len = |layer0: bool| {
            self.links
                .iter()
                .flat_map(|l| {
                    l.iter()
                        .enumerate()
                        .filter(move |(i, _)| (*i == 0) == layer0)
                })
                .map(|(_, v)| v.len())
                .max()
                .unwrap_or(0)
                .max(1)
        };
        let upper_nodes = self.levels.iter().filter(|&&l| l > 0).count();
        let h = GraphHeader {
            probes: self.probes,
            keep: self.keep,
            seeds: self.seeds_per_probe,
            nodes: u32::try_from(n).map_err(|_| {
                Error::InvalidInput("an ANN graph holds at most 2^32-1 nodes".into())
            })?,
            max_level,
            degree0: max_len(true) as u32,
            degree: max_len(false) as u32,
            entry_point: self.entry_point,
            upper_nodes: upper_nodes as u32,
            ef_construction: self.ef_construction,
        };
        if h.probes > MAX_GRAPH_PROBES
            || h.keep == 0
            || h.keep > h.probes.min(MAX_KEEP)
            || h.seeds == 0
            || h.seeds > h.nodes.min(MAX_SEEDS)
        {
            return invalid(format!(
                "{} probes, {} items per list, {} seeds per probe beyond the format's limits",
                h.probes, h.keep, h.seeds
            ));
        }
        if let Some(bad) = self.seeds.iter().find(|&&x| x as usize >= n) {
            return invalid(format!("seed node {bad} out of range"));
        }
        if let Some(&bad) = self.lists.iter().find(|&&i| unpack_item(i).0 >= h.probes) {
            return invalid(format!("list probe {} out of range", unpack_item(bad).0));
        }
        if h.max_level > MAX_LEVEL || h.degree0 > MAX_DEGREE || h.degree > MAX_DEGREE {
            return invalid(format!(
                "{} layers or degrees {}/{} beyond the format's limits",
                h.max_level + 1,
                h.degree0,
                h.degree
            ));
        }
        if u32::from(self.levels[h.entry_point as usize]) != max_level {
            return invalid("the entry point is not on the top layer".into());
        }
        let l = h.layout().expect("sizes of an in-memory graph fit");
        let mut b = vec![0u8; l.end];
        b[..GRAPH_HEADER_LEN].copy_from_slice(&h.encode());
        let put_u32s = |b: &mut [u8], at: usize, v: &[u32]| {
            b[at..at + v.len() * 4].copy_from_slice(bytemuck::cast_slice(v));
        };
        put_u32s(&mut b, l.lists, &self.lists);
        put_u32s(&mut b, l.seeds, &self.seeds);
        b[l.levels..l.levels + n].copy_from_slice(&self.levels);
        let row0 = h.degree0 as usize + 1;
        let row = h.degree as usize + 1;
        let mut slot = 0u32;
        for (node, layers) in self.links.iter().enumerate() {
            let level = self.levels[node] as usize;
            if layers.len() != level + 1 {
                return invalid(format!(
                    "node {node} of level {level} has {} layers of links",
                    layers.len()
                ));
            }
            let write_list = |b: &mut [u8], at: usize, ids: &[u32]| {
                put_u32(b, at, ids.len() as u32);
                for (i, &id) in ids.iter().enumerate() {
                    put_u32(b, at + 4 + i * 4, id);
                }
            };
            if let Some(bad) = layers.iter().flatten().find(|&&x| x as usize >= n) {
                return invalid(format!("node {node} links to {bad}"));
            }
            write_list(&mut b, l.layer0 + node * row0 * 4, &layers[0]);
            let upper_at = l.upper + node * 4;
            if level == 0 {
                put_u32(&mut b, upper_at, NO_UPPER);
            } else {
                put_u32(&mut b, upper_at, slot);
                for (layer, ids) in layers.iter().enumerate().skip(1) {
                    let at = l.links + (slot as usize * h.max_level as usize + layer - 1) * row * 4;
                    write_list(&mut b, at, ids);
                }
                slot += 1;
            }
        }
        Ok(b)
    }
}

/// The length rule of a graph section at open: any length. Its header gives the length, which is
/// checked when the graph is first used ([`GraphView::new`]).
pub(crate) fn required_len(s: &SectionEntry) -> Option<u64> {
    Some(s.len)
}

/// Checks the ranges of a segment's graph sections at open: none; one AnnGraph with param 0; or
/// AnnGraphPart sections (`param`: the first entry of the part's range) whose first entries
/// (sorted here) start at 0, rise strictly and stay below the segment's entry count, so that
/// their ranges tile it. Anything else is corrupt.
pub(crate) fn check_ranges(
    label: &str,
    graphs: &mut [SectionEntry],
    entry_count: u64,
) -> Result<()> {
    if graphs.is_empty() {
        return Ok(());
    }
    let bad = |what: String| Err(Error::corrupt(format!("{label}: {what}")));
    let whole = SectionKind::AnnGraph as u32;
    let parts = graphs.iter().filter(|g| g.kind != whole).count();
    if parts > 0 && parts < graphs.len() || parts == 0 && graphs.len() > 1 {
        return bad(format!(
            "{} ANN graph sections, {parts} of them parts: a segment has one graph or only parts",
            graphs.len()
        ));
    }
    if entry_count == 0 {
        return bad("an ANN graph in a segment without entries".into());
    }
    graphs.sort_by_key(|g| g.param);
    if graphs[0].param != 0 {
        return bad(format!(
            "its first ANN graph starts at entry {}, not 0",
            graphs[0].param
        ));
    }
    if let Some(w) = graphs.windows(2).find(|w| w[0].param >= w[1].param) {
        return bad(format!("two ANN graph parts start at entry {}", w[1].param));
    }
    let last = graphs[graphs.len() - 1].param;
    if last >= entry_count {
        return bad(format!(
            "an ANN graph part starts at entry {last}, past the segment's {} entries",
            entry_count
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ann::build::{AnnOptions, build_graph};
    use crate::ann::lists::{ListQuery, pack_item};

    fn value(p: usize, e: usize) -> f32 {
        (((p * 7919 + e * 104_729 + p * e) % 997) as f32 - 498.0) / 150.0
    }

    fn small_graph(n: usize, probes: usize) -> GraphParts {
        let opts = AnnOptions {
            min_entries: 1,
            keep: Some(6),
            seeds: 3,
            ..Default::default()
        };
        build_graph(
            probes,
            n,
            &mut |p, out| {
                for (e, o) in out.iter_mut().enumerate() {
                    *o = value(p, e);
                }
                Ok(())
            },
            &opts,
        )
        .unwrap()
    }

    /// The bytes in 8-byte aligned memory, as a mapping gives them.
    fn aligned(b: &[u8]) -> Vec<u64> {
        let mut w = vec![0u64; b.len().div_ceil(8)];
        bytemuck::cast_slice_mut::<u64, u8>(&mut w)[..b.len()].copy_from_slice(b);
        w
    }

    /// Runs `test` on a view of [`small_graph`]`(n, probes)`, encoded into aligned memory.
    fn with_small_view(n: usize, probes: usize, test: impl FnOnce(GraphView<'_>)) {
        let bytes = small_graph(n, probes).encode().unwrap();
        let words = aligned(&bytes);
        let view = GraphView::new(
            &bytemuck::cast_slice::<u64, u8>(&words)[..bytes.len()],
            probes as u32,
            n as u64,
        )
        .unwrap();
        test(view)
    }

    #[test]
    fn a_walk_with_room_for_every_node_returns_them_all_in_score_order() {
        let (n, probes) = (300, 40);
        with_small_view(n, probes, |view| {
            view.check_all().unwrap();
            let q = ListQuery::new(probes, &[4, 9, 17], &[2.5, 2.0, 1.5]);
            let got = view.search_query(&q, n, n).unwrap();
            let mut want: Vec<(f32, u32)> = (0..n as u32)
                .map(|v| (q.score(view.list(v as usize)), v))
                .collect();
            want.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            assert_eq!(
                got, want,
                "the graph is connected and the walk ranks by list score"
            );
            // Every node's list holds its highest probes, highest first.
            for v in 0..n {
                let items: Vec<(u32, f32)> = view.list(v).iter().map(|&i| unpack_item(i)).collect();
                assert!(items.windows(2).all(|w| w[0].1 >= w[1].1));
                let best = (0..probes).map(|p| value(p, v)).fold(f32::MIN, f32::max);
                assert!((items[0].1 - best).abs() < 1e-2);
            }
            // A query probe past the index is an error, not a read out of bounds.
            let bad = ListQuery::new(probes + 5, &[probes as u32 + 1], &[1.0]);
            assert!(view.search_query(&bad, 10, 10).is_err());
        });
    }

    /// With `take` above `ef` the walk is the same and returns more of what it scored: the `ef`
    /// nodes it keeps come first, then the next best it met, each once, closest first.
    #[test]
    fn a_walk_can_return_more_than_it_keeps() {
        let probes = 40;
        with_small_view(300, probes, |view| {
            let q = ListQuery::new(probes, &[4, 9, 17, 30], &[2.5, 2.0, 1.5, 1.2]);
            let kept = view.search_query(&q, 10, 10).unwrap();
            let wide = view.search_query(&q, 10, 40).unwrap();
            assert_eq!(kept.len(), 10);
            assert!(wide.len() > 10 && wide.len() <= 40, "{} nodes", wide.len());
            assert_eq!(wide[..10], kept[..], "the kept nodes are the best scored");
            assert!(wide.windows(2).all(|w| (w[0].0, w[0].1) < (w[1].0, w[1].1)));
            let mut nodes: Vec<u32> = wide.iter().map(|x| x.1).collect();
            nodes.sort_unstable();
            nodes.dedup();
            assert_eq!(nodes.len(), wide.len(), "each node once");
            for &(d, v) in &wide {
                assert_eq!(d, q.score(view.list(v as usize)));
            }
        });
    }

    #[test]
    fn encode_refuses_parts_that_point_outside_the_graph() {
        let (n, probes) = (50, 12);
        let good = small_graph(n, probes);
        let mut seeds = good.clone();
        seeds.seeds[0] = n as u32;
        assert!(matches!(seeds.encode(), Err(Error::InvalidInput(_))));
        let mut lists = good.clone();
        lists.lists[3] = pack_item(probes as u32, 1.0);
        assert!(matches!(lists.encode(), Err(Error::InvalidInput(_))));
        let mut short = good;
        short.lists.pop();
        assert!(matches!(short.encode(), Err(Error::InvalidInput(_))));
    }
}
