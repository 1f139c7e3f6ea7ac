//! `vectors`: which compact representation keeps the exact top-k ranking's top 10 among the
//! first C candidates.

use super::*;

pub(super) fn vectors() {
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
