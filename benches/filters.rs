//! A repository that changes, measured: filtered search against unfiltered search, and deletes
//! with compaction against index size, each side by side with its baseline in one run.
//!
//! - `cargo bench --bench filters -- search [--entries N] [--probes P] [--queries Q]
//!   [--index PATH]`: builds (or reuses) an f16 index of N synthetic logits with a graph per
//!   segment, whose models carry metadata that keeps 100%, 10% and 1% of them
//!   (`all=yes`, `tenth=yes`, `hundredth=yes`). For exact search (the default blend, and topk)
//!   and hnsw search (topk), p50 latency with each filter against no filter, the queries taking
//!   turns; and recall@10 of hnsw search with each filter against exact topk search with the
//!   same filter.
//! - `cargo bench --bench filters -- deletes [--sizes 20000,50000,100000] [--probes P]`: for
//!   each size, an index without graphs; the time to delete a tenth of its models (one commit),
//!   and to compact it (which drops their bytes), with the bytes before and after.

use std::path::Path;
use std::time::{Duration, Instant};

use probelog::testkit::synth::{SynthConfig, SynthGenerator, append_synthetic};
use probelog::{
    AnnOptions, CompactOptions, CreateOptions, Dtype, Index, IndexWriter, LockWait, Metric,
    ModelFilter, Query, SearchMode, SearchParams, compact_with, create,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn text_arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// Appends synthetic models until the index holds `entries` logits, in commits of `chunk`
/// entries; model `i` has metadata `all=yes`, and `tenth=yes` / `hundredth=yes` when `i` is a
/// multiple of 10 / 100.
fn build(path: &Path, probes: usize, entries: usize, chunk: usize, ann: AnnOptions) {
    let mut opts = CreateOptions::new(probes as u32);
    opts.dtype = Dtype::F16;
    create(path, &opts).unwrap();
    let mut g = SynthGenerator::new(SynthConfig {
        probes,
        concepts: 1000,
        models: entries / 12 + 1,
        ..SynthConfig::default()
    });
    let mut w = IndexWriter::open(path, LockWait::Fail).unwrap();
    w.set_ann_options(ann).unwrap();
    append_synthetic(&mut w, &mut g, entries, chunk, |i, input| {
        input.name = format!("model-{i}");
        input.labels = None;
        input.meta.push(("all".into(), "yes".into()));
        if i % 10 == 0 {
            input.meta.push(("tenth".into(), "yes".into()));
        }
        if i % 100 == 0 {
            input.meta.push(("hundredth".into(), "yes".into()));
        }
    })
    .unwrap();
}

fn p50(v: &mut [Duration]) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1e3
}

fn search_bench() {
    let entries: usize = arg("--entries", 100_000);
    let probes: usize = arg("--probes", 512);
    let queries: usize = arg("--queries", 200);
    let dir = tempfile::tempdir().unwrap();
    let path = match text_arg("--index") {
        Some(p) if Path::new(&p).exists() => p.into(),
        given => {
            let path = given.map_or_else(|| dir.path().join("filters.plog"), Into::into);
            let t = Instant::now();
            // Two segments, each with its graph.
            let ann = AnnOptions {
                min_entries: 1,
                ..AnnOptions::default()
            };
            build(&path, probes, entries, entries / 2 + 1, ann);
            eprintln!("built {entries} entries in {:.1?}", t.elapsed());
            path
        }
    };
    let idx = Index::open(&path).unwrap();
    let n = idx.entry_count();
    let filters: Vec<(&str, ModelFilter)> = [
        ("100%", "all=yes"),
        ("10%", "tenth=yes"),
        ("1%", "hundredth=yes"),
    ]
    .into_iter()
    .map(|(name, cond)| {
        let mut f = ModelFilter::default();
        f.add_where(cond).unwrap();
        (name, f)
    })
    .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let qs: Vec<u64> = (0..queries).map(|_| rng.random_range(0..n)).collect();
    println!(
        "filtered search, {n} entries x {probes} probes (f16, {} graphs), {queries} entry queries",
        idx.graph_count()
    );
    for (label, metric, mode) in [
        (
            "exact, blend (the default)",
            Metric::Blend,
            SearchMode::Exact,
        ),
        ("exact, topk", Metric::TopK, SearchMode::Exact),
        ("hnsw, topk", Metric::TopK, SearchMode::Hnsw),
    ] {
        let params = |filter| SearchParams {
            metric,
            mode,
            filter,
            ..SearchParams::default()
        };
        let mut base = Vec::new();
        let mut with: Vec<Vec<Duration>> = vec![Vec::new(); filters.len()];
        for (i, &q) in qs.iter().enumerate() {
            // The variants take turns going first, so that none always finds the caches warm.
            for turn in 0..=filters.len() {
                let v = (turn + i) % (filters.len() + 1);
                let filter = (v > 0).then(|| &filters[v - 1].1);
                let t = Instant::now();
                let hits = idx.search(&Query::Entry(q), &params(filter)).unwrap();
                let took = t.elapsed();
                assert_eq!(hits.len(), 10, "a filter left fewer than 10 hits");
                match v {
                    0 => base.push(took),
                    _ => with[v - 1].push(took),
                }
            }
        }
        let b = p50(&mut base);
        print!("  {label}: p50 {b:.3} ms without a filter");
        for ((name, _), mut times) in filters.iter().zip(with) {
            let t = p50(&mut times);
            print!("; {name} {t:.3} ms ({:.2}x)", t / b);
        }
        println!();
    }
    // Recall@10 of hnsw search against exact search, each with the same filter.
    print!("  recall@10 of hnsw against exact topk:");
    let recall = |filter: Option<&ModelFilter>| {
        let mut found = 0usize;
        for &q in &qs {
            let run = |mode| {
                let p = SearchParams {
                    metric: Metric::TopK,
                    mode,
                    filter,
                    ..SearchParams::default()
                };
                idx.search(&Query::Entry(q), &p)
                    .unwrap()
                    .iter()
                    .map(|h| h.entry.unwrap())
                    .collect::<Vec<_>>()
            };
            let exact = run(SearchMode::Exact);
            let hnsw = run(SearchMode::Hnsw);
            found += hnsw.iter().filter(|e| exact.contains(e)).count();
        }
        found as f64 / (qs.len() * 10) as f64
    };
    print!(" no filter {:.3}", recall(None));
    for (name, f) in &filters {
        print!("; {name} {:.3}", recall(Some(f)));
    }
    println!();
}

fn deletes_bench() {
    let sizes: Vec<usize> = text_arg("--sizes")
        .unwrap_or_else(|| "20000,50000,100000".into())
        .split(',')
        .map(|s| s.trim().parse().expect("--sizes: entry counts"))
        .collect();
    let probes: usize = arg("--probes", 512);
    println!("delete a tenth of the models, then compact; {probes} probes, f16, no graphs");
    for entries in sizes {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deletes.plog");
        build(
            &path,
            probes,
            entries,
            entries / 4 + 1,
            AnnOptions::disabled(),
        );
        let bytes_before = std::fs::metadata(&path).unwrap().len();
        let t = Instant::now();
        let mut w = IndexWriter::open(&path, LockWait::Fail).unwrap();
        let models = w.model_count();
        for id in (0..models).step_by(10) {
            w.delete_model(id).unwrap();
        }
        w.commit().unwrap();
        drop(w);
        let delete = t.elapsed();
        let t = Instant::now();
        let done = compact_with(
            &path,
            LockWait::Fail,
            CompactOptions {
                ann: AnnOptions::disabled(),
                ..CompactOptions::default()
            },
        )
        .unwrap();
        let compact = t.elapsed();
        let mb = bytes_before as f64 / 1e6;
        println!(
            "  {entries} entries, {models} models, {mb:.1} MB: delete {:.1} ms; compact {:.0} ms \
             ({:.1} MB/s of input) -> {:.1} MB, {} entries",
            delete.as_secs_f64() * 1e3,
            compact.as_secs_f64() * 1e3,
            mb / compact.as_secs_f64(),
            done.bytes_after as f64 / 1e6,
            done.entry_count
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "deletes") {
        deletes_bench();
    } else if args.iter().any(|a| a == "search") {
        search_bench();
    } else {
        eprintln!("usage: cargo bench --bench filters -- search|deletes [options]");
    }
}
