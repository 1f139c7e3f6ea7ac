//! The Rust side of `python/benches/bench.py`: the same searches on the same index through the
//! Rust API, timed the same way (median of repeated single queries; a batch run one query after
//! another, as `probelog-tool search` runs its exact scan).
//!
//!   cargo run --release -p probelog-python --example search_latency -- INDEX QUERIES.f32 REPEATS
//!
//! QUERIES.f32 holds raw little-endian float32 query vectors, `[n, P]` row-major. Prints one
//! JSON object: median microseconds per entry query, per vector query, and per query of the
//! sequential batch.

use std::path::Path;
use std::time::Instant;

use probelog::{Index, Query, SearchParams};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    assert!(args.len() == 4, "usage: search_latency INDEX QUERIES.f32 REPEATS");
    let index = Index::open(Path::new(&args[1])).expect("open");
    let bytes = std::fs::read(&args[2]).expect("queries");
    let repeats: usize = args[3].parse().expect("repeats");
    let p = index.num_probes();
    let queries: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let n = queries.len() / p;
    let params = SearchParams::default();
    let entries = index.entry_count();
    // Warm the map and the thread pool.
    for i in 0..n {
        index
            .search(&Query::Vector(&queries[i * p..(i + 1) * p]), &params)
            .unwrap();
    }
    let mut entry_us = Vec::new();
    let mut vector_us = Vec::new();
    for r in 0..repeats {
        for i in 0..n {
            let e = (i as u64 * 7919 + r as u64) % entries;
            let t = Instant::now();
            std::hint::black_box(index.search(&Query::Entry(e), &params).unwrap());
            entry_us.push(t.elapsed().as_secs_f64() * 1e6);
            let q = &queries[i * p..(i + 1) * p];
            let t = Instant::now();
            std::hint::black_box(index.search(&Query::Vector(q), &params).unwrap());
            vector_us.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    let mut batch_us = Vec::new();
    for _ in 0..repeats.max(3) {
        let t = Instant::now();
        for i in 0..n {
            let q = &queries[i * p..(i + 1) * p];
            std::hint::black_box(index.search(&Query::Vector(q), &params).unwrap());
        }
        batch_us.push(t.elapsed().as_secs_f64() * 1e6 / n as f64);
    }
    println!(
        "{{\"entry_us\": {:.2}, \"vector_us\": {:.2}, \"sequential_batch_us_per_query\": {:.2}, \"queries\": {n}, \"entries\": {entries}, \"probes\": {p}}}",
        median(entry_us),
        median(vector_us),
        median(batch_us)
    );
}
