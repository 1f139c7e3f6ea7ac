//! Merge throughput against a plain file copy of the same bytes, measured in the same run.
//!
//! `cargo bench --bench merge -- [--sizes 12000,48000,192000] [--probes P] [--rounds R]
//! [--dir PATH]`: for each size, three f32 input indexes of a third of the entries each (models
//! of 50 logits, no graphs, in the page cache), then R rounds that each time `merge` of the three
//! into a new file (verify of every input, the copy of the live descriptors, fsync, rename) and
//! `std::fs::copy` of the three inputs followed by an fsync of each copy, taking turns. Reports
//! the medians, the merge's MB/s (bytes written) and its time over the copy's.

use std::path::{Path, PathBuf};
use std::time::Instant;

use probelog::{AnnOptions, CreateOptions, IndexWriter, LockWait, MergeOptions, create, merge};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

#[path = "common.rs"]
mod common;
use common::{add_random_models, median};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// An index of `entries` random logits over `probes` probes, in one commit.
fn build(path: &Path, probes: usize, entries: usize, seed: u64) {
    create(path, &CreateOptions::new(probes as u32)).unwrap();
    let mut w = IndexWriter::open(path, LockWait::Fail).unwrap();
    w.set_ann_options(AnnOptions::disabled()).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    add_random_models(&mut w, &mut rng, probes, entries, 50, |m| {
        format!("s{seed}-m{m}")
    });
    w.commit().unwrap();
}

fn main() {
    let sizes: Vec<usize> = arg("--sizes")
        .unwrap_or_else(|| "12000,48000,192000".into())
        .split(',')
        .map(|s| s.parse().expect("--sizes takes entry counts"))
        .collect();
    let probes: usize = arg("--probes").map_or(500, |s| s.parse().unwrap());
    let rounds: usize = arg("--rounds").map_or(5, |s| s.parse().unwrap());
    let tmp = match arg("--dir") {
        Some(d) => tempfile::tempdir_in(d).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let dir = tmp.path();
    println!(
        "merge of 3 f32 indexes ({probes} probes, no graphs) against std::fs::copy + fsync of the \
         same 3 files; medians of {rounds} rounds, taking turns"
    );
    println!(
        "{:>8} {:>9} {:>9} {:>10} {:>10} {:>10} {:>10} {:>7}",
        "entries", "MB in", "MB out", "merge ms", "merge MB/s", "copy ms", "copy MB/s", "ratio"
    );
    for &n in &sizes {
        let inputs: Vec<PathBuf> = (0..3)
            .map(|i| {
                let p = dir.join(format!("in{n}-{i}.plog"));
                build(&p, probes, n / 3, i as u64 + 1);
                p
            })
            .collect();
        let bytes_in: u64 = inputs
            .iter()
            .map(|p| std::fs::metadata(p).unwrap().len())
            .sum();
        let refs: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
        let out = dir.join("out.plog");
        let opts = MergeOptions {
            ann: AnnOptions::disabled(),
            ..Default::default()
        };
        let (mut merges, mut copies) = (Vec::new(), Vec::new());
        let mut bytes_out = 0;
        // One untimed round of each brings the inputs into the page cache.
        for round in 0..=rounds {
            let _ = std::fs::remove_file(&out);
            let t = Instant::now();
            let done = merge(&out, &refs, &opts).unwrap();
            let merge_time = t.elapsed();
            bytes_out = done.bytes_written;
            let t = Instant::now();
            for (i, p) in inputs.iter().enumerate() {
                let copy = dir.join(format!("copy-{i}"));
                std::fs::copy(p, &copy).unwrap();
                std::fs::File::open(&copy).unwrap().sync_all().unwrap();
            }
            let copy_time = t.elapsed();
            for i in 0..3 {
                std::fs::remove_file(dir.join(format!("copy-{i}"))).unwrap();
            }
            if round > 0 {
                merges.push(merge_time);
                copies.push(copy_time);
            }
        }
        let (m, c) = (median(merges), median(copies));
        let mb = |b: u64| b as f64 / 1e6;
        println!(
            "{:>8} {:>9.1} {:>9.1} {:>10.1} {:>10.0} {:>10.1} {:>10.0} {:>7.2}",
            n,
            mb(bytes_in),
            mb(bytes_out),
            m.as_secs_f64() * 1e3,
            mb(bytes_out) / m.as_secs_f64(),
            c.as_secs_f64() * 1e3,
            mb(bytes_in) / c.as_secs_f64(),
            m.as_secs_f64() / c.as_secs_f64()
        );
        let _ = std::fs::remove_file(&out);
        for p in &inputs {
            std::fs::remove_file(p).unwrap();
        }
    }
}
