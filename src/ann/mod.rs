//! The approximate candidate stage: an HNSW graph over each entry's highest probes, stored in the
//! index file and searched in place, whose candidates the exact asymmetric top-k discrepancy then
//! reranks.

pub mod build;
mod build_dist;
pub mod graph;
pub mod hnsw;
pub mod lists;

pub use build::{
    AnnOptions, DEFAULT_MAX_GRAPH_ENTRIES, DEFAULT_SEEDS, ListDist, build_graph, build_graphs,
    default_keep, graph_of, graph_ranges, pack_for_distance,
};
pub use graph::{GraphParts, GraphView};
pub use lists::{ListQuery, pack_item, top_lists_and_seeds, unpack_item};
