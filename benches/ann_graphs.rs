//! `graphs`: which graph and which walk, against exact search.

use super::*;

/// The largest segment of an index: its number, its rows, and the id of its first entry.
pub(super) fn largest_segment(index: &Index) -> (usize, probelog::reader::DescriptorRows<'_>, u64) {
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
pub(super) fn aligned(bytes: Vec<u8>) -> (Vec<u64>, usize) {
    let mut w = vec![0u64; bytes.len().div_ceil(8)];
    bytemuck::cast_slice_mut::<u64, u8>(&mut w)[..bytes.len()].copy_from_slice(&bytes);
    (w, bytes.len())
}

pub(super) fn graphs() {
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
