//! Where an hnsw query's time goes: 2 MiB pages (`pages`), the stages of one query
//! (`stages`), the loading of the seeds' lists (`seedcost`).

use super::*;

/// What 2 MiB pages buy (`probelog::OpenOptions::huge_pages`): the same index in two files,
/// both dropped from the page cache, one opened with huge pages and the other without, then
/// faulted in by a warm-up pass (exact scans plus hnsw queries) and queried alternately with the
/// same hnsw queries: p50 of each, and how much of each map the kernel mapped with 2 MiB pages.
pub(super) fn pages() {
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

/// Where an hnsw query's time goes, stage by stage, one thread: preparing the entry query (its
/// descriptor gathered from the probe rows), the ScanPlan, each segment's walk and each
/// segment's exact rerank of its candidates. p50 per stage, over `--queries` random entries.
pub(super) fn stages() {
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

/// What scoring a query's seeds costs (the first graph's, 4 seed probes), by how their lists are
/// loaded: without prefetching, all asked for first, or a rolling distance ahead; and the
/// compute alone (8 lists in cache, scored 128 times each: as many scores).
pub(super) fn seedcost() {
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
