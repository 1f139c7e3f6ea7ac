//! Building at the speed of the field: append, graph build and FAISS, side by side in one run on
//! the same synthetic descriptors.
//!
//! `cargo bench --bench build [-- --entries N --probes P --queries Q --tmp DIR --json --check
//! --probe | --probe-ratio R]` (defaults: 100,000 entries x 1,000 probes, 200 queries, the
//! system temporary folder):
//!
//! - **append**: a child process appends the synthetic models without graphs into one segment;
//!   the writer's time (`add_model` + `commit`, model generation excluded) gives MB/s of index
//!   file, set against the disk's sequential write bandwidth measured in the same folder in the
//!   same run (a file of the same size written in 8 MiB blocks, then fsync; the median of one
//!   write before the appends, one between and one after). The child's peak RSS (VmHWM) beside the segment size.
//! - **graphs**: a second child appends the same models with the default `AnnOptions` (graphs
//!   on); the graph build time is its writer time less the first child's.
//! - **FAISS**: `IndexHNSWFlat` (M = 16, efConstruction = 100, the same thread count) over a 64-d
//!   PCA of the same descriptors, run by `benches/build_faiss.py` in the environment of
//!   `tools/setup-bench.sh`.
//! - **recall**: recall@10 against exact mode of hnsw mode (candidate counts swept) and of FAISS +
//!   rerank (efSearch swept), p50 per query; the pair reported is hnsw at the default candidate
//!   count beside the FAISS point of nearest p50.
//! - **probing**: with `--probe`, `cargo bench -p probelog-tool --features torch --bench
//!   probe_throughput` runs and its ratio to Python torch is read; `--probe-ratio R` passes a
//!   ratio measured separately.
//!
//! `--check` exits 1 when a target is missed: graph build <= 2x FAISS with hnsw recall at the
//! matched p50 >= FAISS recall there, append >= 50% of the write bandwidth, probing ratio >= 1.0
//! (a ratio that was not measured is a miss).

#[path = "common.rs"]
mod common;
#[path = "build_faiss.rs"]
mod faiss;
#[allow(dead_code)]
#[path = "ann_pca.rs"]
mod pca;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{arg, exact_entries, flag, opt_arg, synth_config};
use probelog::testkit::synth::SynthGenerator;
use probelog::{
    AnnOptions, CreateOptions, Dtype, Index, IndexWriter, LockWait, Metric, SearchMode,
    SearchParams, create,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Candidate counts of the hnsw sweep; the default one is reported against FAISS.
const CANDIDATES: [usize; 5] = [25, 50, 100, 200, 400];
/// efSearch values of the FAISS sweep.
const EF_SEARCH: &str = "16,32,64,128,256,512";
/// Targets of `--check`.
const MAX_BUILD_RATIO: f64 = 2.0;
const MIN_WRITE_SHARE: f64 = 0.5;
const MIN_PROBE_RATIO: f64 = 1.0;

/// This process's peak resident set (VmHWM), KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The child: creates `path` and appends `entries` synthetic logits in one commit, timing only
/// the writer's calls. Prints one JSON line.
fn child_append(path: &Path, entries: usize, probes: usize, graphs: bool) {
    let mut opts = CreateOptions::new(probes as u32);
    opts.dtype = Dtype::F16;
    create(path, &opts).unwrap();
    let mut w = IndexWriter::open(path, LockWait::Fail).unwrap();
    w.set_ann_options(if graphs {
        AnnOptions::default()
    } else {
        AnnOptions::disabled()
    })
    .unwrap();
    let mut g = SynthGenerator::new(synth_config(probes, entries));
    let rss_before = peak_rss_kib();
    let (mut done, mut writer) = (0usize, Duration::ZERO);
    while done < entries {
        let model = g.next_model().first_logits(entries - done);
        let n = model.concepts.len();
        let input = probelog::ModelInput {
            name: model.name,
            source: String::new(),
            meta: Vec::new(),
            labels: Some(model.concepts.iter().map(usize::to_string).collect()),
            logits: probelog::LogitMatrix::new(&model.logits, probes, n).unwrap(),
        };
        let t = Instant::now();
        w.add_model(input, Default::default()).unwrap();
        writer += t.elapsed();
        done += n;
    }
    let t = Instant::now();
    w.commit().unwrap();
    let commit = t.elapsed();
    writer += commit;
    drop(w);
    let bytes = std::fs::metadata(path).unwrap().len();
    println!(
        "{{\"bytes\": {bytes}, \"writer_s\": {}, \"commit_s\": {}, \"peak_rss_kib\": {}, \"rss_before_kib\": {rss_before}}}",
        writer.as_secs_f64(),
        commit.as_secs_f64(),
        peak_rss_kib()
    );
}

/// What one child reported.
#[derive(Debug, Clone, Copy)]
struct AppendRun {
    bytes: u64,
    writer_s: f64,
    commit_s: f64,
    peak_rss_kib: u64,
    rss_before_kib: u64,
}

fn run_child(path: &Path, entries: usize, probes: usize, graphs: bool) -> AppendRun {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args(["--child-append", path.to_str().unwrap()])
        .args(["--entries", &entries.to_string()])
        .args(["--probes", &probes.to_string()])
        .args(if graphs { &["--graphs"][..] } else { &[] })
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "the append child failed");
    let line = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(line.trim()).expect("the child's JSON");
    AppendRun {
        bytes: v["bytes"].as_u64().unwrap(),
        writer_s: v["writer_s"].as_f64().unwrap(),
        commit_s: v["commit_s"].as_f64().unwrap(),
        peak_rss_kib: v["peak_rss_kib"].as_u64().unwrap(),
        rss_before_kib: v["rss_before_kib"].as_u64().unwrap(),
    }
}

/// Sequential write bandwidth of the folder `dir`: `bytes` written in 8 MiB blocks, then fsync.
/// MB/s (10^6 bytes).
fn write_bandwidth(dir: &Path, bytes: u64) -> f64 {
    let path = dir.join("bandwidth.tmp");
    let block: Vec<u8> = (0..8usize << 20).map(|i| (i * 31 + 7) as u8).collect();
    let t = Instant::now();
    let mut f = std::fs::File::create(&path).unwrap();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        f.write_all(&block[..n]).unwrap();
        left -= n as u64;
    }
    f.sync_all().unwrap();
    let s = t.elapsed().as_secs_f64();
    drop(f);
    std::fs::remove_file(&path).unwrap();
    bytes as f64 / 1e6 / s
}

/// The one segment of the index that holds entries (the appends commit once).
fn data_segment(index: &Index) -> usize {
    let with_rows: Vec<usize> = (0..index.segment_count() as usize)
        .filter(|&s| index.segment_rows(s).unwrap().is_some())
        .collect();
    assert_eq!(with_rows.len(), 1, "one segment with entries");
    with_rows[0]
}

/// One point of the hnsw sweep.
struct HnswPoint {
    candidates: usize,
    recall: f64,
    p50_ms: f64,
}

fn params(mode: SearchMode, candidates: Option<usize>) -> SearchParams<'static> {
    SearchParams {
        top: 10,
        exclude_same_model: true,
        metric: Metric::TopK,
        mode,
        candidates,
        ..Default::default()
    }
}

fn p50_ms(v: &mut [Duration]) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1e3
}

/// Recall@10 against `truth` and p50 of hnsw mode at each candidate count; the counts take turns
/// by blocks of 20 queries.
fn hnsw_sweep(index: &Index, qs: &[u64], truth: &[Vec<u64>]) -> Vec<HnswPoint> {
    let modes: Vec<SearchParams> = CANDIDATES
        .iter()
        .map(|&c| params(SearchMode::Hnsw, Some(c)))
        .collect();
    let mut lat = vec![Vec::new(); modes.len()];
    let mut hits = vec![0f64; modes.len()];
    for &e in qs.iter().take(10) {
        index.search(&probelog::Query::Entry(e), &modes[2]).unwrap();
    }
    for (b, chunk) in qs.chunks(20).enumerate() {
        for m in 0..modes.len() {
            let m = (m + b) % modes.len();
            for (j, &e) in chunk.iter().enumerate() {
                let t = Instant::now();
                let got = index.search(&probelog::Query::Entry(e), &modes[m]).unwrap();
                lat[m].push(t.elapsed());
                let truth = &truth[b * 20 + j];
                let hit = got
                    .iter()
                    .filter(|h| h.entry.is_some_and(|x| truth.contains(&x)))
                    .count();
                hits[m] += hit as f64 / truth.len() as f64;
            }
        }
    }
    CANDIDATES
        .iter()
        .zip(lat.iter_mut().zip(hits))
        .map(|(&candidates, (l, h))| HnswPoint {
            candidates,
            recall: h / qs.len() as f64,
            p50_ms: p50_ms(l),
        })
        .collect()
}

/// The probing ratio: `--probe-ratio R`, or with `--probe` the ratio to Python torch that
/// `probe_throughput` prints.
fn probe_ratio() -> Result<f64, String> {
    if let Some(r) = opt_arg::<f64>("--probe-ratio") {
        return Ok(r);
    }
    if !flag("--probe") {
        return Err("not measured (--probe runs tools/benches/probe_throughput.rs)".into());
    }
    let out = Command::new(env!("CARGO"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "bench",
            "-p",
            "probelog-tool",
            "--features",
            "torch",
            "--bench",
            "probe_throughput",
            "--",
            "--rounds",
            "3",
        ])
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    print!("{text}");
    text.lines()
        .filter(|l| l.contains("probelog-tool append --model"))
        .find_map(|l| {
            let (_, tail) = l.rsplit_once(", ")?;
            tail.strip_suffix("x Python torch)")?.trim().parse().ok()
        })
        .ok_or_else(|| "probe_throughput printed no ratio to Python torch".into())
}

fn main() {
    if let Some(path) = opt_arg::<PathBuf>("--child-append") {
        child_append(
            &path,
            arg("--entries", 100_000),
            arg("--probes", 1000),
            flag("--graphs"),
        );
        return;
    }
    let entries: usize = arg("--entries", 100_000);
    let probes: usize = arg("--probes", 1000);
    let queries: usize = arg("--queries", 200);
    let threads = rayon::current_num_threads();
    let dir = tempfile::tempdir_in(arg("--tmp", std::env::temp_dir())).unwrap();
    eprintln!("== build: {entries} entries x {probes} probes, f16, {threads} threads");

    // (a) Append without graphs, between two measurements of the disk.
    let plain = dir.path().join("plain.plog");
    let size_guess = (entries * probes * 2) as u64;
    let disk_before = write_bandwidth(dir.path(), size_guess);
    let append = run_child(&plain, entries, probes, false);
    let disk_after = write_bandwidth(dir.path(), append.bytes);
    let append_mbs = append.bytes as f64 / 1e6 / append.writer_s;
    std::fs::remove_file(&plain).unwrap();

    // (b) The same models with graphs.
    let graphed = dir.path().join("graphs.plog");
    let with_graphs = run_child(&graphed, entries, probes, true);
    // The page cache and the other writers on the disk move this figure by 2x or more from one
    // write to the next: the median of three, before, between and after the appends.
    let disk_last = write_bandwidth(dir.path(), append.bytes);
    let mut disks = [disk_before, disk_after, disk_last];
    disks.sort_by(f64::total_cmp);
    let disk = disks[1];
    let graph_s = with_graphs.writer_s - append.writer_s;
    let index = Index::open(&graphed).unwrap();
    let parts = index.segment_graphs(data_segment(&index)).unwrap().len();

    // (d) Recall: the exact answers, then the hnsw sweep.
    let n = index.entry_count();
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let qs: Vec<u64> = (0..queries).map(|_| rng.random_range(0..n)).collect();
    let exact = params(SearchMode::Exact, None);
    let truth: Vec<Vec<u64>> = exact_entries(&index, &qs, &exact)
        .into_iter()
        .map(|hits| hits.into_iter().flatten().collect())
        .collect();
    let sweep = hnsw_sweep(&index, &qs, &truth);

    // (c) FAISS over the PCA of the same descriptors.
    let faiss_run = match faiss::python() {
        None => Err("no Python with faiss (run tools/setup-bench.sh)".to_string()),
        Some(py) => {
            let export = dir.path().join("faiss");
            faiss::export(&index, &qs, &truth, &export);
            faiss::run(&py, &export, threads, EF_SEARCH)
        }
    };
    drop(index);
    let probe = probe_ratio();

    report(&Report {
        entries,
        probes,
        threads,
        disk,
        disks,
        append,
        append_mbs,
        with_graphs,
        graph_s,
        parts,
        sweep,
        faiss: faiss_run,
        probe,
    });
}

struct Report {
    entries: usize,
    probes: usize,
    threads: usize,
    disk: f64,
    /// The three measurements, sorted.
    disks: [f64; 3],
    append: AppendRun,
    append_mbs: f64,
    with_graphs: AppendRun,
    graph_s: f64,
    parts: usize,
    sweep: Vec<HnswPoint>,
    faiss: Result<faiss::FaissRun, String>,
    probe: Result<f64, String>,
}

fn report(r: &Report) {
    let default_point = r
        .sweep
        .iter()
        .find(|p| p.candidates == probelog::search::DEFAULT_CANDIDATES)
        .or(r.sweep.get(2))
        .unwrap();
    // The FAISS point of nearest p50 (log ratio) to hnsw at the default candidate count.
    let matched = r.faiss.as_ref().ok().and_then(|f| {
        f.points.iter().min_by(|a, b| {
            let d = |p: &faiss::FaissPoint| (p.p50_ms / default_point.p50_ms).ln().abs();
            d(a).total_cmp(&d(b))
        })
    });
    let share = r.append_mbs / r.disk;
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!(
        "build benchmark: {} entries x {} probes, f16, {} threads",
        r.entries, r.probes, r.threads
    );
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| disk sequential write (write + fsync) | {:.0} MB/s (median of {:.0}, {:.0}, {:.0}) |",
        r.disk, r.disks[0], r.disks[1], r.disks[2]
    );
    println!(
        "| append without graphs | {:.0} MB/s = {:.2} of the disk ({:.1} MB in {:.2} s, commit {:.2} s) |",
        r.append_mbs,
        share,
        r.append.bytes as f64 / 1e6,
        r.append.writer_s,
        r.append.commit_s
    );
    println!(
        "| append peak RSS | {:.0} MiB (before the first model {:.0} MiB; index file {:.0} MiB) |",
        mib(r.append.peak_rss_kib),
        mib(r.append.rss_before_kib),
        r.append.bytes as f64 / (1 << 20) as f64
    );
    println!(
        "| graph build ({} graph{}, AnnOptions defaults) | {:.1} s (append with graphs {:.1} s, peak RSS {:.0} MiB) |",
        r.parts,
        if r.parts == 1 { "" } else { "s in parallel" },
        r.graph_s,
        r.with_graphs.writer_s,
        mib(r.with_graphs.peak_rss_kib)
    );
    match &r.faiss {
        Ok(f) => println!(
            "| FAISS {} IndexHNSWFlat, 64-d PCA, M 16, efC 100 | {:.1} s; probelog / FAISS {:.2}x |",
            f.version,
            f.build_s,
            r.graph_s / f.build_s
        ),
        Err(e) => println!("| FAISS | {e} |"),
    }
    match &r.probe {
        Ok(x) => println!("| probing, append --model / Python torch | {x:.2}x |"),
        Err(e) => println!("| probing | {e} |"),
    }
    println!();
    println!("| hnsw C | recall@10 | p50 ms |");
    println!("|---|---|---|");
    for p in &r.sweep {
        println!("| {} | {:.3} | {:.3} |", p.candidates, p.recall, p.p50_ms);
    }
    if let Ok(f) = &r.faiss {
        println!();
        println!("| FAISS efSearch | recall@10 | p50 ms |");
        println!("|---|---|---|");
        for p in &f.points {
            println!("| {} | {:.3} | {:.3} |", p.ef_search, p.recall, p.p50_ms);
        }
    }
    if let Some(m) = matched {
        println!(
            "matched p50: hnsw C = {} recall {:.3} at {:.3} ms; FAISS efSearch {} recall {:.3} at {:.3} ms",
            default_point.candidates,
            default_point.recall,
            default_point.p50_ms,
            m.ef_search,
            m.recall,
            m.p50_ms
        );
    }

    let mut misses = Vec::new();
    match (&r.faiss, matched) {
        (Ok(f), Some(m)) => {
            if r.graph_s > MAX_BUILD_RATIO * f.build_s {
                misses.push(format!(
                    "graph build {:.1} s > {MAX_BUILD_RATIO}x FAISS {:.1} s",
                    r.graph_s, f.build_s
                ));
            }
            if default_point.recall < m.recall {
                misses.push(format!(
                    "hnsw recall {:.3} < FAISS {:.3} at matched p50",
                    default_point.recall, m.recall
                ));
            }
        }
        (Err(e), _) => misses.push(format!("FAISS: {e}")),
        _ => misses.push("FAISS reported no points".into()),
    }
    if share < MIN_WRITE_SHARE {
        misses.push(format!(
            "append {:.0} MB/s < {MIN_WRITE_SHARE} of the disk's {:.0} MB/s",
            r.append_mbs, r.disk
        ));
    }
    match &r.probe {
        Ok(x) if *x >= MIN_PROBE_RATIO => {}
        Ok(x) => misses.push(format!("probing ratio {x:.2} < {MIN_PROBE_RATIO}")),
        Err(e) => misses.push(format!("probing ratio {e}")),
    }
    for m in &misses {
        println!("missed: {m}");
    }
    if flag("--json") {
        let faiss = r.faiss.as_ref().ok();
        let json = serde_json::json!({
            "entries": r.entries,
            "probes": r.probes,
            "threads": r.threads,
            "disk_mb_s": r.disk,
            "append_mb_s": r.append_mbs,
            "append_share_of_disk": share,
            "append_bytes": r.append.bytes,
            "append_peak_rss_kib": r.append.peak_rss_kib,
            "graph_build_s": r.graph_s,
            "graph_parts": r.parts,
            "append_with_graphs_s": r.with_graphs.writer_s,
            "faiss_build_s": faiss.map(|f| f.build_s),
            "build_ratio": faiss.map(|f| r.graph_s / f.build_s),
            "hnsw": r.sweep.iter().map(|p| serde_json::json!({
                "candidates": p.candidates, "recall": p.recall, "p50_ms": p.p50_ms})).collect::<Vec<_>>(),
            "faiss": faiss.map(|f| f.points.iter().map(|p| serde_json::json!({
                "ef_search": p.ef_search, "recall": p.recall, "p50_ms": p.p50_ms})).collect::<Vec<_>>()),
            "probe_ratio": r.probe.as_ref().ok(),
            "missed": misses,
        });
        println!("{json}");
    }
    if flag("--check") && !misses.is_empty() {
        std::process::exit(1);
    }
}
