//! The approximate candidate stage: an HNSW graph over compact sketches of the descriptors,
//! stored in the index file and searched in place, whose candidates the exact asymmetric top-k
//! discrepancy then reranks.

pub mod build;
pub mod graph;
pub mod sketch;

pub use build::{AnnOptions, build_graph};
pub use graph::{GraphParts, GraphView};
pub use sketch::Sketch;
