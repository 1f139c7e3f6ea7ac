//! The HNSW candidate stage, measured against exact search (top-k metric).
//!
//! - `cargo bench --bench ann -- vectors [--entries N] [--probes P] [--latent-firing]`: which
//!   compact representation keeps the exact top-k ranking's top 10 among the first C candidates
//!   (brute force in the compact space, so the graph's own losses are left out): PCA projections
//!   of the whole descriptor, random sketches of each entry's top probes, and the top lists
//!   themselves (what the product stores).
//! - `cargo bench --bench ann -- graphs [--entries N | --index PATH] [--no-sketch] [--cache DIR]`:
//!   which graph and which walk: links built over sketches against links built over the top lists
//!   (the product), walked by sketch or list score, with and without the per-probe seeds; recall@10
//!   against exact, walk time, nodes scored.
//! - `cargo bench --bench ann -- scale [--entries N] [--probes P] [--chunk N] [--compact]
//!   [--index PATH] [--export DIR] [--evict] [--block N]`: builds (or reuses) an f16 index of N
//!   synthetic logits by appends of `--chunk` entries (each append builds its segment's graph),
//!   optionally compacts it into one graph, then measures side by side: recall@10 of hnsw mode
//!   against exact mode for several candidate counts, p50/p99 latency of both, build time, index
//!   size, open + first query. Each mode answers blocks of `--block` queries (default 20) back to
//!   back, the modes taking turns block by block. With `--index` on an existing index (the
//!   evaluation hub, say) and `--compact --graph-min-entries 1`, it measures that index.
//!   `--evict` drops the file from the page cache first, so that this process faults it in (in
//!   2 MiB pages where the kernel gives them). `--export DIR` writes dense sketches of the top
//!   lists, query vectors, descriptors and exact answers for `benches/faiss_compare.py`.
//!   `--profile-rounds N [--profile-mode exact]` then repeats one mode's queries alone, for
//!   `perf record`.
//! - `cargo bench --bench ann -- stages --index PATH [--candidates C] [--evict]`: where an hnsw
//!   query's time goes on one thread: preparing the entry query from its descriptor, the walk,
//!   the exact rerank (taking turns: every value read with prefetching, without it, or only those
//!   the candidates' lists do not hold, as the product does), and the walk with the portable
//!   list score instead of the AVX2 one; `index.search` beside them on other queries.
//! - `cargo bench --bench ann -- seedcost --index PATH [--queries N]`: what scoring a query's
//!   seeds costs by how their lists are loaded (no prefetch, all first, rolling 8 to 128
//!   ahead), and the compute alone on lists in cache.
//! - `cargo bench --bench ann -- pages --index PATH --copy COPY`: what 2 MiB pages buy: the same
//!   index in two files, opened with and without `OpenOptions::huge_pages`, queried alternately.
//!
//! Graph options for the builds: `--keep`, `--seeds`, `--degree`, `--ef-construction`. Walk
//! options of `graphs`: `--stored-graph`, `--walk-seeds N`, `--seed-probes M`.

#[path = "common.rs"]
mod common;
#[path = "ann_costs.rs"]
mod costs;
#[path = "ann_graphs.rs"]
mod graphs;
#[path = "ann_pca.rs"]
mod pca;
#[path = "ann_scale.rs"]
mod scale;
#[path = "ann_sketch.rs"]
mod sketch;
#[path = "ann_vectors.rs"]
mod vectors;

// The query set-up that several modes share.
use scale::{entry_params, evict, evict_if_asked, query_entries};

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{arg, exact_entries, flag, opt_arg, synth_config};
use pca::{FitOptions, Projection};
use probelog::search::ScanPlan;
use probelog::testkit::synth::{SynthGenerator, append_synthetic};
use probelog::{
    AnnOptions, CreateOptions, DEFAULT_K, Dtype, Index, IndexWriter, LockWait, Metric, SearchMode,
    SearchParams, create,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sketch::{Sketch, SketchL2, dot};

/// `--candidates C1,C2,...`, or `default`.
fn candidates_arg(default: &str) -> Vec<usize> {
    arg("--candidates", default.to_string())
        .split(',')
        .map(|c| c.parse().unwrap())
        .collect()
}

fn ann_options() -> AnnOptions {
    let d = AnnOptions::default();
    AnnOptions {
        min_entries: arg("--graph-min-entries", d.min_entries),
        keep: opt_arg("--keep"),
        seeds: arg("--seeds", d.seeds),
        max_degree: arg("--degree", d.max_degree),
        ef_construction: arg("--ef-construction", d.ef_construction),
        ..d
    }
}

/// Appends synthetic models to `path` until it holds `entries` logits, committing every `chunk`
/// entries. Returns the time of each commit (graph build included).
fn build(
    path: &Path,
    probes: usize,
    entries: usize,
    chunk: usize,
    dtype: Dtype,
    ann: AnnOptions,
) -> Vec<Duration> {
    let mut opts = CreateOptions::new(probes as u32);
    opts.dtype = dtype;
    create(path, &opts).unwrap();
    let mut g = SynthGenerator::new(synth_config(probes, entries));
    let mut w = IndexWriter::open(path, LockWait::Fail).unwrap();
    w.set_ann_options(ann).unwrap();
    append_synthetic(&mut w, &mut g, entries, chunk, |_, _| {}).unwrap()
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn percentile(v: &mut [Duration], q: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * q).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn top_k_probes(q: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..q.len()).collect();
    idx.sort_by(|&a, &b| q[b].total_cmp(&q[a]).then(a.cmp(&b)));
    idx.truncate(k);
    idx
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args
        .iter()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .map(String::as_str)
    {
        Some("vectors") => vectors::vectors(),
        Some("scale") => scale::scale(),
        Some("graphs") => graphs::graphs(),
        Some("stages") => costs::stages(),
        Some("pages") => costs::pages(),
        Some("seedcost") => costs::seedcost(),
        _ => eprintln!(
            "usage: cargo bench --bench ann -- vectors|graphs|scale [options] (see the file's header)"
        ),
    }
}
