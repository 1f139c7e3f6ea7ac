//! `scale`: an index of N synthetic logits built (or reused) and hnsw mode measured against
//! exact mode side by side: recall@10, latency, build time, size, open + first query.

use super::*;

pub(super) struct ModeStats {
    name: String,
    latencies: Vec<Duration>,
    recall: f64,
}

/// What the studies search with: the top 10 by the top-k discrepancy, or by the blend with
/// `--metric blend`, the query's own model left out, in `mode`.
pub(super) fn entry_params(mode: SearchMode) -> SearchParams<'static> {
    let metric = match opt_arg::<String>("--metric").as_deref() {
        None | Some("topk") => Metric::TopK,
        Some("blend") => Metric::Blend,
        Some(other) => panic!("--metric {other}: expected topk or blend"),
    };
    SearchParams {
        top: 10,
        exclude_same_model: true,
        metric,
        mode,
        ..Default::default()
    }
}

/// The query entries every study uses: `queries` entries of `0..n` drawn with a fixed seed, so
/// that the modes and studies answer the same queries. `--query-seed S` (default 11) draws
/// another sample of the same size.
pub(super) fn query_entries(n: u64, queries: usize) -> Vec<u64> {
    let mut rng = ChaCha8Rng::seed_from_u64(arg("--query-seed", 11));
    (0..queries).map(|_| rng.random_range(0..n)).collect()
}

/// `--evict`: drops `path` from the page cache first (posix_fadvise DONTNEED), so that this
/// process faults the file in itself, as 2 MiB pages where the kernel gives them (see
/// `probelog::OpenOptions`), instead of reusing whatever page sizes an earlier writer or reader
/// left in the cache.
pub(super) fn evict_if_asked(path: &Path) {
    if flag("--evict") && path.exists() {
        evict(path);
    }
}

pub(super) fn evict(path: &Path) {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path).unwrap();
    // SAFETY: a plain syscall on a file descriptor this function owns for the duration.
    let rc = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(rc, 0, "posix_fadvise");
    println!("evicted {} from the page cache", path.display());
}

pub(super) fn scale() {
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
    let mut truths = exact_entries(&index, &qs, &exact);
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
pub(super) fn export_for_faiss(index: &Index, qs: &[u64], truths: &[Vec<Option<u64>>], out: &Path) {
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
