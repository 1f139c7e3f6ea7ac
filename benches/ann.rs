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

#[path = "ann_pca.rs"]
mod pca;
#[path = "ann_sketch.rs"]
mod sketch;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pca::{FitOptions, Projection};
use probelog::search::ScanPlan;
use probelog::testkit::synth::{SynthConfig, SynthGenerator, append_synthetic};
use probelog::{
    AnnOptions, CreateOptions, DEFAULT_K, Dtype, Index, IndexWriter, LockWait, Metric, SearchMode,
    SearchParams, create,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sketch::{Sketch, SketchL2, dot};

fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}: cannot parse {v}"))
        })
}

/// The value after `name`, if it was given.
fn opt_arg<T: std::str::FromStr>(name: &str) -> Option<T> {
    let args: Vec<String> = std::env::args().collect();
    let i = args.iter().position(|a| a == name)?;
    let v = args.get(i + 1)?;
    Some(
        v.parse()
            .unwrap_or_else(|_| panic!("{name}: cannot parse {v}")),
    )
}

/// `--candidates C1,C2,...`, or `default`.
fn candidates_arg(default: &str) -> Vec<usize> {
    arg("--candidates", default.to_string())
        .split(',')
        .map(|c| c.parse().unwrap())
        .collect()
}

fn flag(name: &str) -> bool {
    std::env::args().any(|a| a == name)
}

fn synth_config(probes: usize, entries: usize) -> SynthConfig {
    SynthConfig {
        probes,
        // Concept clusters shared by many models: ~1 concept per 100 logits.
        concepts: (entries / 100).clamp(100, 10_000),
        models: usize::MAX,
        seed: 7,
        latent_firing: flag("--latent-firing"),
        ..Default::default()
    }
}

/// Graph options: the defaults, changed by `--graph-min-entries`, `--keep`, `--seeds`, `--degree`,
/// `--ef-construction`.
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

// ---- vectors --------------------------------------------------------------------------------

fn vectors() {
    let entries: usize = arg("--entries", 100_000);
    let probes: usize = arg("--probes", 1000);
    let queries: usize = arg("--queries", 150);
    let k = DEFAULT_K;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vectors.plog");
    let t = Instant::now();
    build(
        &path,
        probes,
        entries,
        usize::MAX,
        Dtype::F32,
        AnnOptions::disabled(),
    );
    let index = Index::open(&path).unwrap();
    let n = index.entry_count() as usize;
    eprintln!("built {n} entries x {probes} probes in {:.1?}", t.elapsed());
    let last = index.segment_count() as usize - 1;
    let rows = index.segment_rows(last).unwrap().unwrap();
    let entry_model: Vec<u64> = (0..n as u64)
        .map(|e| index.model_of_entry(e).unwrap())
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let qs: Vec<u64> = (0..queries)
        .map(|_| rng.random_range(0..n as u64))
        .collect();
    let params = SearchParams {
        top: 10,
        k: Some(k),
        mode: SearchMode::Exact,
        // The graphs serve the top-k discrepancy: the truth is its exact ranking.
        metric: Metric::TopK,
        ..Default::default()
    };
    let truth: Vec<Vec<u64>> = qs
        .iter()
        .map(|&e| {
            let q = index.descriptor(e).unwrap();
            let hits = index.search_descriptor(&q, Some(entry_model[e as usize]), &params);
            hits.unwrap().iter().map(|s| s.id).collect()
        })
        .collect();
    let cs = [10usize, 20, 50, 100, 200, 500, 1000];
    println!(
        "zoo: {n} entries, {probes} probes, latent firing {}; k = {k}",
        flag("--latent-firing")
    );
    println!("representation           build   recall@10 within the first C, C = {cs:?}");
    let mut fill = |p: usize, out: &mut [f32]| {
        rows.read_row(p, 0..n, out);
        Ok(())
    };
    let t = Instant::now();
    let (lists, _) = probelog::ann::top_lists_and_seeds(probes, n, 64, 1, &mut fill).unwrap();
    let lists_s = t.elapsed().as_secs_f64();
    let reps: [(&str, usize, usize); 7] = [
        ("pca-l2", 32, 0),
        ("pca-l2", 64, 0),
        ("sketch-ip", 128, 32),
        ("sketch-ip", 128, 64),
        ("sketch-l2", 128, 32),
        ("lists", 0, 32),
        ("lists", 0, 64),
    ];
    for (rep, dims, keep) in reps {
        let t = Instant::now();
        let (u, proj, sketch) = if rep.starts_with("pca") {
            let fit = FitOptions {
                dims,
                ..Default::default()
            };
            let proj = Projection::fit(&rows, probes, &fit);
            (proj.project_rows(&rows), Some(proj), None)
        } else if rep.starts_with("sketch") {
            let s = Sketch::new(probes, dims, 0x5eed);
            (s.of_lists(&lists, 64, keep), None, Some(s))
        } else {
            (Vec::new(), None, None)
        };
        let build_s = t.elapsed().as_secs_f64()
            + if sketch.is_some() || proj.is_none() {
                lists_s
            } else {
                0.0
            };
        let mut recall = vec![0f64; cs.len()];
        for (qi, &e) in qs.iter().enumerate() {
            let q = index.descriptor(e).unwrap();
            let kp: Vec<u32> = top_k_probes(&q, k).iter().map(|&p| p as u32).collect();
            let qu: Vec<f32> = match (&proj, &sketch) {
                (Some(p), _) => p.project(&q),
                (_, Some(s)) => s.query_vector(&q, &kp),
                _ => Vec::new(),
            };
            let vals: Vec<f32> = kp.iter().map(|&p| q[p as usize]).collect();
            let lq = probelog::ann::ListQuery::new(probes, &kp, &vals);
            let mut scored: Vec<(f32, usize)> = (0..n)
                .filter(|&x| entry_model[x] != entry_model[e as usize])
                .map(|x| {
                    if rep == "lists" {
                        return (lq.score(&lists[x * 64..x * 64 + keep]), x);
                    }
                    let ux = &u[x * dims..(x + 1) * dims];
                    let s = if rep.ends_with("ip") {
                        -ux.iter().zip(&qu).map(|(a, b)| a * b).sum::<f32>()
                    } else {
                        ux.iter().zip(&qu).map(|(a, b)| (a - b) * (a - b)).sum()
                    };
                    (s, x)
                })
                .collect();
            scored.sort_by(|a, b| a.0.total_cmp(&b.0));
            for (ci, &c) in cs.iter().enumerate() {
                let cand: std::collections::HashSet<u64> =
                    scored.iter().take(c).map(|s| s.1 as u64).collect();
                let hit = truth[qi].iter().filter(|t| cand.contains(t)).count();
                recall[ci] += hit as f64 / truth[qi].len() as f64;
            }
        }
        let r: Vec<String> = recall
            .iter()
            .map(|r| format!("{:.3}", r / queries as f64))
            .collect();
        println!(
            "{rep:<10} d={dims:<4} keep={keep:<3} {build_s:>5.1}s  {}",
            r.join("  ")
        );
    }
}

// ---- scale ----------------------------------------------------------------------------------

struct ModeStats {
    name: String,
    latencies: Vec<Duration>,
    recall: f64,
}

/// What the studies search with: the top 10 by the top-k discrepancy (the one the graphs serve),
/// the query's own model left out, in `mode`.
fn entry_params(mode: SearchMode) -> SearchParams<'static> {
    SearchParams {
        top: 10,
        exclude_same_model: true,
        metric: Metric::TopK,
        mode,
        ..Default::default()
    }
}

/// The query entries every study uses: `queries` entries of `0..n` drawn with a fixed seed, so
/// that the modes and studies answer the same queries. `--query-seed S` (default 11) draws
/// another sample of the same size.
fn query_entries(n: u64, queries: usize) -> Vec<u64> {
    let mut rng = ChaCha8Rng::seed_from_u64(arg("--query-seed", 11));
    (0..queries).map(|_| rng.random_range(0..n)).collect()
}

/// `--evict`: drops `path` from the page cache first (posix_fadvise DONTNEED), so that this
/// process faults the file in itself, as 2 MiB pages where the kernel gives them (see
/// `probelog::OpenOptions`), instead of reusing whatever page sizes an earlier writer or reader
/// left in the cache.
fn evict_if_asked(path: &Path) {
    if flag("--evict") && path.exists() {
        evict(path);
    }
}

fn evict(path: &Path) {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path).unwrap();
    // SAFETY: a plain syscall on a file descriptor this function owns for the duration.
    let rc = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(rc, 0, "posix_fadvise");
    println!("evicted {} from the page cache", path.display());
}

fn scale() {
    let entries: usize = arg("--entries", 1_000_000);
    let probes: usize = arg("--probes", 1000);
    let chunk: usize = arg("--chunk", 250_000);
    let queries: usize = arg("--queries", 200);
    let candidates = candidates_arg("50,100,200,400");
    let dir = tempfile::tempdir_in(arg("--tmp", std::env::temp_dir())).unwrap();
    let path: PathBuf = opt_arg("--index").unwrap_or_else(|| dir.path().join("scale.plog"));
    println!("== ann scale: {entries} entries x {probes} probes, f16, appends of {chunk}");
    if !path.exists() {
        let t = Instant::now();
        let commits = build(&path, probes, entries, chunk, Dtype::F16, ann_options());
        println!(
            "build: {:.1} s for {} appends (each builds its segment's graph; slowest append {:.1} s)",
            t.elapsed().as_secs_f64(),
            commits.len(),
            commits.iter().max().unwrap().as_secs_f64()
        );
    } else {
        println!("reusing {}", path.display());
    }
    if flag("--compact") {
        let t = Instant::now();
        probelog::compact_with(
            &path,
            LockWait::Fail,
            probelog::CompactOptions {
                ann: ann_options(),
                ..Default::default()
            },
        )
        .unwrap();
        println!(
            "compact (one graph over all entries): {:.1} s",
            t.elapsed().as_secs_f64()
        );
    }
    evict_if_asked(&path);
    let index = Index::open(&path).unwrap();
    let n = index.entry_count();
    let file_len = std::fs::metadata(&path).unwrap().len();
    let graph_bytes: u64 = index
        .section_extents()
        .iter()
        .filter(|(name, _, _)| name.contains("ANN graph"))
        .map(|(_, _, len)| len)
        .sum();
    println!(
        "index: {n} entries in {} segments, {:.1} MiB ({:.1} MiB of it ANN graphs, covering {} entries)",
        index.segment_count(),
        file_len as f64 / (1 << 20) as f64,
        graph_bytes as f64 / (1 << 20) as f64,
        index.graph_entries()
    );

    // Queries: random entries, their own model excluded.
    let qs = query_entries(n, queries);
    let base = entry_params(SearchMode::Auto);
    let exact = entry_params(SearchMode::Exact);
    let hnsw: Vec<SearchParams> = candidates
        .iter()
        .map(|&c| SearchParams {
            mode: SearchMode::Hnsw,
            candidates: Some(c),
            ..base
        })
        .collect();
    // Warm the page cache and the thread pool.
    for &e in qs.iter().take(5) {
        index.search(&probelog::Query::Entry(e), &exact).unwrap();
    }
    let mut stats: Vec<ModeStats> = std::iter::once("exact".to_string())
        .chain(candidates.iter().map(|c| format!("hnsw C={c}")))
        .map(|name| ModeStats {
            name,
            latencies: Vec::new(),
            recall: 0.0,
        })
        .collect();
    // Each mode runs a block of queries back to back, as a server answering in that mode
    // would (an exact scan streams 32 MB through the caches; an hnsw query right after one would
    // pay for refilling them, one right after another hnsw query does not). The blocks rotate
    // through the modes, so every mode sees the same machine drift.
    let block: usize = arg("--block", 20);
    let modes: Vec<&SearchParams> = std::iter::once(&exact).chain(hnsw.iter()).collect();
    let mut truths: Vec<Vec<Option<u64>>> = qs
        .iter()
        .map(|&e| {
            index
                .search(&probelog::Query::Entry(e), &exact)
                .unwrap()
                .iter()
                .map(|h| h.entry)
                .collect()
        })
        .collect();
    for (b, chunk) in qs.chunks(block).enumerate() {
        let from = b * block;
        for m in 0..modes.len() {
            let m = (m + b) % modes.len();
            for (j, &e) in chunk.iter().enumerate() {
                let t = Instant::now();
                let got = index.search(&probelog::Query::Entry(e), modes[m]).unwrap();
                stats[m].latencies.push(t.elapsed());
                let truth = &truths[from + j];
                let hit = got.iter().filter(|h| truth.contains(&h.entry)).count();
                stats[m].recall += hit as f64 / truth.len() as f64;
            }
        }
    }
    let truths = std::mem::take(&mut truths);
    let exact_p50 = median(&mut stats[0].latencies.clone());
    println!("mode          recall@10   p50 ms   p99 ms   p50 speed-up vs exact");
    for s in &mut stats {
        let p50 = median(&mut s.latencies);
        let p99 = percentile(&mut s.latencies, 0.99);
        println!(
            "{:<12} {:>9.3} {:>8.3} {:>8.3} {:>10.1}x",
            s.name,
            s.recall / queries as f64,
            ms(p50),
            ms(p99),
            exact_p50.as_secs_f64() / p50.as_secs_f64()
        );
    }

    // Open + first query, warm page cache, against a bare mmap of the file.
    let default_hnsw = entry_params(SearchMode::Hnsw);
    let mut open_first = Vec::new();
    let mut bare = Vec::new();
    for i in 0..20 {
        let t = Instant::now();
        let idx = Index::open(&path).unwrap();
        idx.search(&probelog::Query::Entry(qs[i % qs.len()]), &default_hnsw)
            .unwrap();
        open_first.push(t.elapsed());
        drop(idx);
        let t = Instant::now();
        let f = std::fs::File::open(&path).unwrap();
        // SAFETY: read-only map of a file nobody writes during the benchmark; dropped at once.
        let m = unsafe { memmap2::Mmap::map(&f) }.unwrap();
        std::hint::black_box(m.len());
        drop(m);
        bare.push(t.elapsed());
    }
    println!(
        "open + first hnsw query: p50 {:.2} ms (bare open+mmap of the file: {:.3} ms)",
        ms(median(&mut open_first)),
        ms(median(&mut bare))
    );

    if let Some(out) = opt_arg::<PathBuf>("--export") {
        export_for_faiss(&index, &qs, &truths, &out);
    }

    // `--profile-rounds N --profile-mode exact|hnsw`: N more rounds of one mode's queries
    // alone (default candidates), so that `perf record` sees that mode's query path only.
    let rounds: usize = arg("--profile-rounds", 0);
    if rounds > 0 {
        let params = match opt_arg::<String>("--profile-mode").as_deref() {
            Some("exact") => exact,
            _ => default_hnsw,
        };
        let t = Instant::now();
        for _ in 0..rounds {
            for &e in &qs {
                std::hint::black_box(index.search(&probelog::Query::Entry(e), &params).unwrap());
            }
        }
        println!(
            "profile: {} {} queries, mean {:.3} ms",
            rounds * qs.len(),
            params.mode.name(),
            ms(t.elapsed()) / (rounds * qs.len()) as f64
        );
    }
}

/// Writes what `benches/faiss_compare.py` needs: a dense sketch of every entry's top list, each
/// query's sketch and top-k probes, the descriptors (f16, entry-major)
/// and the exact answers.
fn export_for_faiss(index: &Index, qs: &[u64], truths: &[Vec<Option<u64>>], out: &Path) {
    std::fs::create_dir_all(out).unwrap();
    let n = index.entry_count() as usize;
    let p = index.num_probes();
    // The dense compact vector FAISS needs: a 128-d random sketch of each entry's top list (the
    // lists stored in the graphs, or computed the same way for a segment without one).
    let dims = 128;
    let sketch = Sketch::new(p, dims, 0x5eed);
    let keep = AnnOptions::default().keep_for(p);
    let mut sketches: Vec<f32> = Vec::new();
    for s in 0..index.segment_count() as usize {
        let Some(rows) = index.segment_rows(s).unwrap() else {
            continue;
        };
        let graphs = index.segment_graphs(s).unwrap();
        let lists = match graphs.is_empty() {
            // The parts tile the segment in entry order.
            false => graphs
                .iter()
                .flat_map(|g| (0..g.view.nodes()).flat_map(|v| g.view.list(v).iter().copied()))
                .collect(),
            true => {
                let mut fill = |pr: usize, o: &mut [f32]| {
                    rows.read_row(pr, 0..rows.entries(), o);
                    Ok(())
                };
                probelog::ann::top_lists_and_seeds(p, rows.entries(), keep, 1, &mut fill)
                    .unwrap()
                    .0
            }
        };
        let k = lists.len() / rows.entries();
        sketches.extend(sketch.of_lists(&lists, k, k));
    }
    assert_eq!(sketches.len(), n * dims, "every entry sketched");
    let write = |name: &str, bytes: &[u8]| {
        std::fs::File::create(out.join(name))
            .unwrap()
            .write_all(bytes)
            .unwrap()
    };
    write("sketches.f32", bytemuck::cast_slice(&sketches));
    let mut qvec = Vec::new();
    let mut qprobes: Vec<u32> = Vec::new();
    let mut qvals: Vec<f32> = Vec::new();
    let mut qmodel: Vec<u64> = Vec::new();
    for &e in qs {
        let q = index.descriptor(e).unwrap();
        let plan = ScanPlan::new(&q, DEFAULT_K, Metric::TopK);
        qvec.extend(sketch.query_vector(&q, plan.probes()));
        qprobes.extend_from_slice(plan.probes());
        qvals.extend(plan.probes().iter().map(|&pr| q[pr as usize]));
        let m = index.model(index.model_of_entry(e).unwrap()).unwrap();
        qmodel.extend([m.first_entry, m.first_entry + u64::from(m.logit_count)]);
    }
    write("queries.f32", bytemuck::cast_slice(&qvec));
    write("query_probes.u32", bytemuck::cast_slice(&qprobes));
    write("query_values.f32", bytemuck::cast_slice(&qvals));
    write("query_model_range.u64", bytemuck::cast_slice(&qmodel));
    let truth: Vec<u64> = truths
        .iter()
        .flat_map(|t| t.iter().map(|e| e.unwrap()))
        .collect();
    write("truth.u64", bytemuck::cast_slice(&truth));
    // Entry-major f16 descriptors for the numpy rerank, streamed segment by segment.
    let mut f =
        std::io::BufWriter::new(std::fs::File::create(out.join("descriptors.f16")).unwrap());
    for s in 0..index.segment_count() as usize {
        let Some(rows) = index.segment_rows(s).unwrap() else {
            continue;
        };
        let block = 4096;
        let mut buf = vec![0f32; block];
        for b in (0..rows.entries()).step_by(block) {
            let r = b..(b + block).min(rows.entries());
            let mut tile = vec![half::f16::ZERO; r.len() * p];
            for pr in 0..p {
                rows.read_row(pr, r.clone(), &mut buf[..r.len()]);
                for (i, &v) in buf[..r.len()].iter().enumerate() {
                    tile[i * p + pr] = half::f16::from_f32(v);
                }
            }
            f.write_all(bytemuck::cast_slice(&tile)).unwrap();
        }
    }
    f.flush().unwrap();
    write(
        "meta.json",
        format!(
            "{{\"entries\": {n}, \"probes\": {p}, \"dims\": {dims}, \"queries\": {}, \"k\": {DEFAULT_K}}}",
            qs.len()
        )
        .as_bytes(),
    );
    println!("exported to {}", out.display());
}

// ---- graphs ---------------------------------------------------------------------------------

/// The largest segment of an index: its number, its rows, and the id of its first entry.
fn largest_segment(index: &Index) -> (usize, probelog::reader::DescriptorRows<'_>, u64) {
    let mut best = (0, None, 0u64);
    let mut first = 0u64;
    for s in 0..index.segment_count() as usize {
        if let Some(rows) = index.segment_rows(s).unwrap() {
            let n = rows.entries() as u64;
            if best
                .1
                .as_ref()
                .is_none_or(|b: &probelog::reader::DescriptorRows<'_>| b.entries() < rows.entries())
            {
                best = (s, Some(rows), first);
            }
            first += n;
        }
    }
    (best.0, best.1.expect("a segment with entries"), best.2)
}

/// A section's bytes in 8-byte aligned memory, as the file's mapping gives them.
fn aligned(bytes: Vec<u8>) -> (Vec<u64>, usize) {
    let mut w = vec![0u64; bytes.len().div_ceil(8)];
    bytemuck::cast_slice_mut::<u64, u8>(&mut w)[..bytes.len()].copy_from_slice(&bytes);
    (w, bytes.len())
}

fn graphs() {
    use hnsw_rs::hnsw::Hnsw;
    use probelog::ann::graph::SEED_PROBES;
    use probelog::ann::{
        GraphParts, GraphView, ListQuery, build_graph, graph_of, top_lists_and_seeds,
    };
    let entries: usize = arg("--entries", 100_000);
    let probes: usize = arg("--probes", 1000);
    let queries: usize = arg("--queries", 100);
    let candidates = candidates_arg("100,200,400");
    let dir = tempfile::tempdir_in(arg("--tmp", std::env::temp_dir())).unwrap();
    let path = match opt_arg::<PathBuf>("--index") {
        Some(path) => path,
        None => {
            let path = dir.path().join("graphs.plog");
            build(
                &path,
                probes,
                entries,
                usize::MAX,
                Dtype::F16,
                AnnOptions::disabled(),
            );
            path
        }
    };
    let index = Index::open(&path).unwrap();
    let probes = index.num_probes();
    let (seg, rows, first) = largest_segment(&index);
    let n = rows.entries();
    let opts = ann_options();
    let mut fill = |p: usize, out: &mut [f32]| {
        rows.read_row(p, 0..n, out);
        Ok(())
    };
    println!(
        "== ann graphs: {n} entries x {probes} probes; lists of {}, {} seeds per probe",
        opts.keep_for(probes),
        opts.seeds
    );

    // The product's graph: built over the top lists with ListDist (cached in `--cache DIR`).
    let cached = opt_arg::<PathBuf>("--cache").map(|dir| {
        dir.join(format!(
            "list-graph-{n}-{}-{}-{}-{}.bin",
            opts.keep_for(probes),
            opts.seeds,
            opts.max_degree,
            opts.ef_construction
        ))
    });
    // `--stored-graph`: walk the graph stored in the index instead of building one.
    let stored = flag("--stored-graph");
    let list_bytes = match cached.as_ref().and_then(|f| std::fs::read(f).ok()) {
        _ if stored => Vec::new(),
        Some(b) => {
            println!("list graph from the cache");
            b
        }
        None => {
            let t = Instant::now();
            let b = build_graph(probes, n, &mut fill, &opts)
                .unwrap()
                .encode()
                .unwrap();
            println!("build: list graph {:.1} s", t.elapsed().as_secs_f64());
            if let Some(f) = &cached {
                std::fs::write(f, &b).unwrap();
            }
            b
        }
    };
    let (lw, ll) = aligned(list_bytes);
    let lg = if stored {
        match index.segment_graphs(seg).unwrap()[..] {
            [only] => only.view,
            _ => panic!("--stored-graph: the segment has one graph"),
        }
    } else {
        GraphView::new(
            &bytemuck::cast_slice::<u64, u8>(&lw)[..ll],
            probes as u32,
            n as u64,
        )
        .unwrap()
    };
    // The earlier design: the same lists, but links built over 128-d random sketches of them.
    let with_sketch = !flag("--no-sketch");
    let sketch = Sketch::new(probes, 128, 0x5eed);
    let (vectors, sketch_bytes) = if with_sketch {
        let t = Instant::now();
        let (lists, seeds) =
            top_lists_and_seeds(probes, n, opts.keep_for(probes), opts.seeds, &mut fill).unwrap();
        let vectors = sketch.of_lists(&lists, opts.keep_for(probes), opts.keep_for(probes));
        let hnsw: Hnsw<f32, SketchL2> =
            Hnsw::new(opts.max_degree, n, 16, opts.ef_construction, SketchL2);
        let data: Vec<(&[f32], usize)> = vectors.chunks_exact(128).zip(0..n).collect();
        hnsw.parallel_insert_slice(&data);
        let (levels, links, entry_point) = graph_of(&hnsw, n).unwrap();
        drop(hnsw);
        println!("build: sketch graph {:.1} s", t.elapsed().as_secs_f64());
        let parts = GraphParts {
            probes: probes as u32,
            keep: opts.keep_for(probes) as u32,
            lists,
            seeds_per_probe: opts.seeds as u32,
            seeds,
            levels,
            links,
            entry_point,
            ef_construction: opts.ef_construction as u32,
        };
        (vectors, parts.encode().unwrap())
    } else {
        (Vec::new(), Vec::new())
    };
    let (sw, sl) = aligned(sketch_bytes);
    let sg = with_sketch.then(|| {
        GraphView::new(
            &bytemuck::cast_slice::<u64, u8>(&sw)[..sl],
            probes as u32,
            n as u64,
        )
        .unwrap()
    });

    // `--walk-seeds N`: walk from N seeds per probe instead of the graph's own.
    let ws: usize = arg("--walk-seeds", 0);
    let walk_seeds = if ws > 0 {
        top_lists_and_seeds(probes, n, 1, ws, &mut fill).unwrap().1
    } else {
        Vec::new()
    };
    // `--seed-probes M`: the product walk starts from the seeds of the query's M highest probes
    // (default: as the product does, `SEED_PROBES`).
    let seed_probes: usize = arg("--seed-probes", SEED_PROBES);
    let model: Vec<u64> = (0..n as u64)
        .map(|e| index.model_of_entry(first + e).unwrap())
        .collect();
    let qs: Vec<usize> = query_entries(n as u64, queries)
        .into_iter()
        .map(|e| e as usize)
        .collect();
    let names = [
        "no graph: best lists",
        "no graph: best lists, hybrid",
        "sketch graph, sketch walk",
        "sketch graph, list walk",
        "list graph, list walk",
        "list graph, list walk, seeds",
        "list graph, hybrid walk",
        "list graph, hybrid walk, seeds",
        "as 'list walk, seeds', no prefetch",
    ];
    let mut recall = vec![vec![0f64; candidates.len()]; names.len()];
    let mut scored = vec![vec![0usize; candidates.len()]; names.len()];
    let mut time = vec![vec![Duration::ZERO; candidates.len()]; names.len()];
    let mut poor = vec![vec![0usize; candidates.len()]; names.len()];
    let mut exact = vec![0f32; n];
    let exact_params = entry_params(SearchMode::Exact);
    let mut exact_times = Vec::new();
    for (qi, &e) in qs.iter().enumerate() {
        let q = index.descriptor(first + e as u64).unwrap();
        let t = Instant::now();
        std::hint::black_box(
            index
                .search(&probelog::Query::Entry(first + e as u64), &exact_params)
                .unwrap(),
        );
        exact_times.push(t.elapsed());
        let plan = ScanPlan::new(&q, DEFAULT_K, Metric::TopK);
        plan.score_into(&rows, 0..n, &mut exact);
        let others = |x: &usize| model[*x] != model[e];
        let mut order: Vec<usize> = (0..n).filter(others).collect();
        order.sort_by(|&a, &b| exact[a].total_cmp(&exact[b]).then(a.cmp(&b)));
        let truth = &order[..10];
        let lq = ListQuery::new(probes, plan.probes(), plan.values());
        // The seeds the product walk and its no-prefetch twin start from: those of the query's
        // `--seed-probes` highest probes, stored or (`--walk-seeds`) computed here.
        let walk_seed_list = || -> Vec<u32> {
            plan.probes()[..seed_probes.min(plan.probes().len())]
                .iter()
                .flat_map(|&p| match walk_seeds.is_empty() {
                    true => lg.probe_seeds(p as usize),
                    false => &walk_seeds[p as usize * ws..(p as usize + 1) * ws],
                })
                .copied()
                .collect()
        };
        let qv = sketch.query_vector(&q, plan.probes());
        for (ci, &c) in candidates.iter().enumerate() {
            // The product walk and its no-prefetch twin take turns going first, so that
            // neither always finds the cache warmed by the other.
            let mut order: Vec<usize> = (0..names.len()).collect();
            if qi % 2 == 1 {
                order.swap(5, 8);
            }
            for si in order {
                let mut count = 0usize;
                let t = Instant::now();
                // Hybrid: the query's top-k L1 on the list, plus the node's own top-k probes
                // against the query's (dense) values there: the build distance, query side exact.
                let hybrid = |list: &[u32]| {
                    let mut s = lq.score(list);
                    for &item in &list[..opts.build_k.min(list.len())] {
                        let (p, x) = probelog::ann::unpack_item(item);
                        s += (x - q[p as usize]).abs();
                    }
                    s
                };
                let brute = |f: &dyn Fn(&[u32]) -> f32| {
                    let mut all: Vec<(f32, u32)> =
                        (0..n as u32).map(|v| (f(lg.list(v as usize)), v)).collect();
                    all.select_nth_unstable_by(c, |a, b| a.0.total_cmp(&b.0));
                    all.truncate(c);
                    Ok(all)
                };
                let found = match si {
                    0 => brute(&|l| lq.score(l)),
                    1 => brute(&hybrid),
                    2 | 3 if sg.is_none() => continue,
                    2 => sg.unwrap().search_nodes(
                        |v| {
                            count += 1;
                            -dot(&vectors[v as usize * 128..(v as usize + 1) * 128], &qv)
                        },
                        c,
                    ),
                    3 => sg.unwrap().search_nodes(
                        |v| {
                            count += 1;
                            lq.score(sg.unwrap().list(v as usize))
                        },
                        c,
                    ),
                    4 => lg.search_nodes(
                        |v| {
                            count += 1;
                            lq.score(lg.list(v as usize))
                        },
                        c,
                    ),
                    // The product's walk and seeds, keeping C nodes as it goes.
                    5 if walk_seeds.is_empty() && seed_probes == SEED_PROBES => {
                        lg.search_query(&lq, c, c)
                    }
                    5 => lg.search_seeded(|v| lq.score(lg.list(v as usize)), &walk_seed_list(), c),
                    6 => lg.search_nodes(
                        |v| {
                            count += 1;
                            hybrid(lg.list(v as usize))
                        },
                        c,
                    ),
                    8 => lg.search_seeded_without_prefetch(
                        |v| lq.score(lg.list(v as usize)),
                        &walk_seed_list(),
                        c,
                    ),
                    _ => {
                        let seeds: Vec<u32> = plan
                            .probes()
                            .iter()
                            .flat_map(|&p| lg.probe_seeds(p as usize).iter().copied())
                            .collect();
                        lg.search_seeded(
                            |v| {
                                count += 1;
                                hybrid(lg.list(v as usize))
                            },
                            &seeds,
                            c,
                        )
                    }
                }
                .unwrap();
                if si >= 2 {
                    // The rerank of the candidates, as hnsw mode does it.
                    let cands: Vec<usize> = found.iter().map(|x| x.1 as usize).collect();
                    let mut out = vec![0f32; cands.len()];
                    plan.score_entries(&rows, &cands, &mut out);
                    std::hint::black_box(&out);
                }
                time[si][ci] += t.elapsed();
                scored[si][ci] += count;
                let mut got: Vec<usize> =
                    found.iter().map(|x| x.1 as usize).filter(others).collect();
                got.sort_by(|&a, &b| exact[a].total_cmp(&exact[b]).then(a.cmp(&b)));
                got.truncate(10);
                let r = got.iter().filter(|x| truth.contains(x)).count() as f64 / 10.0;
                recall[si][ci] += r;
                if r < 0.5 {
                    poor[si][ci] += 1;
                }
            }
        }
    }
    println!(
        "exact mode (index.search, all segments): p50 {:.3} ms",
        ms(median(&mut exact_times))
    );
    println!(
        "graph and walk                  C   recall@10   queries < 0.5   walk+rerank ms   nodes scored"
    );
    for (si, name) in names.iter().enumerate() {
        for (ci, &c) in candidates.iter().enumerate() {
            if (si == 2 || si == 3) && sg.is_none() {
                continue;
            }
            let scored = if si == 5 || si == 8 {
                "-".to_string()
            } else {
                (scored[si][ci] / queries).to_string()
            };
            println!(
                "{name:<30} {c:>4} {:>9.3} {:>15} {:>14.3} {scored:>14}",
                recall[si][ci] / queries as f64,
                poor[si][ci],
                ms(time[si][ci]) / queries as f64,
            );
        }
    }
}

// ---- pages ----------------------------------------------------------------------------------

/// What 2 MiB pages buy (`probelog::OpenOptions::huge_pages`): the same index in two files,
/// both dropped from the page cache, one opened with huge pages and the other without, then
/// faulted in by a warm-up pass (exact scans plus hnsw queries) and queried alternately with the
/// same hnsw queries: p50 of each, and how much of each map the kernel mapped with 2 MiB pages.
fn pages() {
    let huge: PathBuf = opt_arg("--index").expect("pages: --index PATH");
    let small: PathBuf = opt_arg("--copy").expect("pages: --copy PATH (a copy of the index)");
    let queries: usize = arg("--queries", 400);
    evict(&huge);
    evict(&small);
    let a = Index::open_with(&huge, probelog::OpenOptions { huge_pages: true }).unwrap();
    let b = Index::open_with(&small, probelog::OpenOptions { huge_pages: false }).unwrap();
    let n = a.entry_count();
    let qs = query_entries(n, queries);
    let hnsw = entry_params(SearchMode::Hnsw);
    let exact = entry_params(SearchMode::Exact);
    // Fault both files in: every descriptor row and every graph part.
    for idx in [&a, &b] {
        for &e in qs.iter().take(64) {
            idx.search(&probelog::Query::Entry(e), &exact).unwrap();
        }
        for s in 0..idx.segment_count() as usize {
            if let Some(rows) = idx.segment_rows(s).unwrap() {
                let mut row = vec![0f32; rows.entries()];
                for p in 0..idx.num_probes() {
                    rows.read_row(p, 0..rows.entries(), &mut row);
                }
            }
            for g in idx.segment_graphs(s).unwrap() {
                g.view.check_all().unwrap();
            }
        }
    }
    let pmd = |path: &Path| -> u64 {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap_or_default();
        let name = path.to_string_lossy().to_string();
        let mut inside = false;
        let mut kb = 0;
        for line in smaps.lines() {
            // A mapping's header line starts with its address range, "start-end" in hex.
            let header = line.split_whitespace().next().is_some_and(|t| {
                t.contains('-') && t.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
            });
            if header {
                inside = line.ends_with(&name);
            } else if inside && line.starts_with("FilePmdMapped:") {
                kb += line
                    .split_whitespace()
                    .nth(1)
                    .unwrap()
                    .parse::<u64>()
                    .unwrap();
            }
        }
        kb
    };
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    for (i, &e) in qs.iter().enumerate() {
        let q = probelog::Query::Entry(e);
        let run = |idx: &Index, t: &mut Vec<Duration>| {
            let t0 = Instant::now();
            std::hint::black_box(idx.search(&q, &hnsw).unwrap());
            t.push(t0.elapsed());
        };
        if i % 2 == 0 {
            run(&a, &mut ta);
            run(&b, &mut tb);
        } else {
            run(&b, &mut tb);
            run(&a, &mut ta);
        }
    }
    let (pa, pb) = (median(&mut ta), median(&mut tb));
    println!(
        "== ann pages: {n} entries, {queries} hnsw queries (C = {}), alternating",
        probelog::DEFAULT_CANDIDATES
    );
    println!(
        "huge pages:  p50 {:.3} ms, p99 {:.3} ms, {} MiB of the map in 2 MiB pages",
        ms(pa),
        ms(percentile(&mut ta, 0.99)),
        pmd(&huge) / 1024
    );
    println!(
        "4 KiB pages: p50 {:.3} ms, p99 {:.3} ms, {} MiB of the map in 2 MiB pages",
        ms(pb),
        ms(percentile(&mut tb, 0.99)),
        pmd(&small) / 1024
    );
    println!(
        "p50 ratio (4 KiB / huge): {:.2}x",
        pb.as_secs_f64() / pa.as_secs_f64()
    );
}

// ---- stages ---------------------------------------------------------------------------------

/// Where an hnsw query's time goes, stage by stage, one thread: preparing the entry query (its
/// descriptor gathered from the probe rows), the ScanPlan, each segment's walk and each
/// segment's exact rerank of its candidates. p50 per stage, over `--queries` random entries.
fn stages() {
    let path: PathBuf = opt_arg("--index").expect("stages: --index PATH");
    let queries: usize = arg("--queries", 200);
    let c: usize = arg("--candidates", probelog::DEFAULT_CANDIDATES);
    evict_if_asked(&path);
    let index = Index::open(&path).unwrap();
    let n = index.entry_count();
    let qs = query_entries(n, queries);
    let names = [
        "prepare (descriptor gathered)",
        "plan",
        "walk",
        "rerank",
        "walk, portable list score",
        "index.search",
        "rerank without prefetching",
        "rerank, list values kept",
    ];
    let params = SearchParams {
        candidates: Some(c),
        ..entry_params(SearchMode::Hnsw)
    };
    let mut t: Vec<Vec<Duration>> = vec![Vec::new(); names.len()];
    // Each query runs once, on caches no earlier run of it warmed: every other query through
    // index.search, the rest stage by stage, their rerank with and without prefetching taking
    // turns; the portable walk runs after the rerank.
    for (i, &e) in qs.iter().enumerate() {
        if i % 2 == 0 {
            let t0 = Instant::now();
            std::hint::black_box(index.search(&probelog::Query::Entry(e), &params).unwrap());
            t[5].push(t0.elapsed());
            continue;
        }
        let t0 = Instant::now();
        let q = index.prepare_query(&probelog::Query::Entry(e)).unwrap();
        let t1 = Instant::now();
        let plan = ScanPlan::new(&q.descriptor, DEFAULT_K, Metric::TopK);
        let lq = probelog::ann::ListQuery::new(index.num_probes(), plan.probes(), plan.values());
        let t2 = Instant::now();
        t[0].push(t1 - t0);
        t[1].push(t2 - t1);
        let units = (0..index.segment_count() as usize).flat_map(|s| {
            let rows = index.segment_rows(s).unwrap();
            let graphs = index.segment_graphs(s).unwrap();
            graphs.into_iter().filter_map(move |g| Some((rows?, g)))
        });
        for (rows, part) in units {
            let g = part.view;
            let a = Instant::now();
            let nodes = g
                .search_query(&lq, probelog::search::walk_breadth(c), c)
                .unwrap();
            let cands: Vec<usize> = nodes
                .iter()
                .map(|&(_, v)| part.first + v as usize)
                .collect();
            t[2].push(a.elapsed());
            let b = Instant::now();
            let mut out = vec![0f32; cands.len()];
            if (i / 2) % 3 == 0 {
                plan.score_entries(&rows, &cands, &mut out);
                t[3].push(b.elapsed());
            } else if (i / 2) % 3 == 1 {
                // The lists are in cache after the walk, as in the product's rerank.
                let lists: Vec<&[u32]> = nodes.iter().map(|&(_, v)| g.list(v as usize)).collect();
                plan.score_entries_listed(&rows, &cands, &lists, &mut out);
                t[7].push(b.elapsed());
                let mut reference = vec![0f32; cands.len()];
                plan.score_entries(&rows, &cands, &mut reference);
                assert_eq!(out, reference, "the listed rerank scores as the rows do");
            } else {
                // The same sums without the prefetch pass, as the rerank was before it.
                for (o, &e) in out.iter_mut().zip(&cands) {
                    let mut acc = 0f32;
                    for (&p, &q) in plan.probes().iter().zip(plan.values()) {
                        acc += (q - rows.value(p as usize, e)).abs();
                    }
                    *o = acc / plan.probes().len() as f32;
                }
                t[6].push(b.elapsed());
            }
            std::hint::black_box(&out);
            let b = Instant::now();
            let seeds: Vec<u32> = lq.probes()
                [..probelog::ann::graph::SEED_PROBES.min(lq.probes().len())]
                .iter()
                .flat_map(|&p| g.probe_seeds(p as usize).iter().copied())
                .collect();
            // The same walk (the same breadth; which C it returns costs nothing extra).
            let portable = g
                .search_seeded(
                    |v| lq.score_portable(g.list(v as usize)),
                    &seeds,
                    probelog::search::walk_breadth(c),
                )
                .unwrap();
            t[4].push(b.elapsed());
            assert!(portable.len() <= cands.len());
        }
    }
    println!(
        "== ann stages: {n} entries, {} segments, C = {c}, {queries} entry queries, one thread",
        index.segment_count()
    );
    for (name, v) in names.iter().zip(&mut t) {
        println!("{name:<30} p50 {:>7.3} ms", ms(median(v)));
    }
}

// ---- seedcost ---------------------------------------------------------------------------------

/// What scoring a query's seeds costs (the first graph's, 4 seed probes), by how their lists are
/// loaded: without prefetching, all asked for first, or a rolling distance ahead; and the
/// compute alone (8 lists in cache, scored 128 times each: as many scores).
fn seedcost() {
    let path: PathBuf = opt_arg("--index").expect("seedcost: --index PATH");
    let queries: usize = arg("--queries", 2000);
    let index = Index::open(&path).unwrap();
    let qs = query_entries(index.entry_count(), queries);
    let g = (0..index.segment_count() as usize)
        .flat_map(|s| index.segment_graphs(s).unwrap())
        .next()
        .expect("seedcost: the index has no graph")
        .view;
    let prefetch = |node: u32| {
        let list = g.list(node as usize);
        for line in list.chunks(16) {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: a prefetch is only a hint; `line` is inside the mapped file.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                    line.as_ptr().cast(),
                )
            };
        }
    };
    let names = [
        "no prefetch",
        "all asked for first",
        "rolling, 8 ahead",
        "rolling, 16 ahead",
        "rolling, 32 ahead",
        "rolling, 128 ahead",
        "compute alone (in cache)",
    ];
    let mut t: Vec<Vec<Duration>> = vec![Vec::new(); names.len()];
    let mut sink = 0f32;
    for (i, &e) in qs.iter().enumerate() {
        let q = index.prepare_query(&probelog::Query::Entry(e)).unwrap();
        let plan = ScanPlan::new(&q.descriptor, DEFAULT_K, Metric::TopK);
        let lq = probelog::ann::ListQuery::new(index.num_probes(), plan.probes(), plan.values());
        let seed_probes = &lq.probes()[..probelog::ann::graph::SEED_PROBES.min(lq.probes().len())];
        let seeds: Vec<u32> = seed_probes
            .iter()
            .flat_map(|&p| g.probe_seeds(p as usize).iter().copied())
            .collect();
        let v = i % names.len();
        let a = Instant::now();
        match v {
            0 => seeds
                .iter()
                .for_each(|&s| sink += lq.score(g.list(s as usize))),
            1 => {
                seeds.iter().for_each(|&s| prefetch(s));
                seeds
                    .iter()
                    .for_each(|&s| sink += lq.score(g.list(s as usize)));
            }
            2..=5 => {
                let ahead = [8, 16, 32, 128][v - 2];
                seeds.iter().take(ahead).for_each(|&s| prefetch(s));
                for (j, &s) in seeds.iter().enumerate() {
                    if let Some(&next) = seeds.get(j + ahead) {
                        prefetch(next);
                    }
                    sink += lq.score(g.list(s as usize));
                }
            }
            _ => {
                let hot = &seeds[..8.min(seeds.len())];
                for _ in 0..seeds.len() / hot.len() {
                    for &s in hot {
                        sink += lq.score(std::hint::black_box(g.list(s as usize)));
                    }
                }
            }
        }
        t[v].push(a.elapsed());
        std::hint::black_box(sink);
    }
    println!(
        "== ann seedcost: {} seeds a query, {queries} queries",
        probelog::ann::graph::SEED_PROBES * g.probe_seeds(0).len()
    );
    for (name, v) in names.iter().zip(&mut t) {
        println!("{name:<30} p50 {:>7.3} ms", ms(median(v)));
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args
        .iter()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .map(String::as_str)
    {
        Some("vectors") => vectors(),
        Some("scale") => scale(),
        Some("graphs") => graphs(),
        Some("stages") => stages(),
        Some("pages") => pages(),
        Some("seedcost") => seedcost(),
        _ => eprintln!(
            "usage: cargo bench --bench ann -- vectors|graphs|scale [options] (see the file's header)"
        ),
    }
}
