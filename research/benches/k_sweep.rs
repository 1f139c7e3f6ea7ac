//! Retrieval accuracy against k, on synthetic zoos: the measurement behind `DEFAULT_K`.
//!
//! `cargo bench -p probelog-research --bench k_sweep` (add `-- --quick` for a smaller run).
//!
//! For each zoo, every logit of the first `queries` models is a query; the gallery is every other
//! model (`exclude_same_model`). A query counts as a top-1 hit when the best entry detects the
//! same concept. Zoos vary in probe count and in how many probes a concept fires on, so the chosen
//! k is not an artefact of one generator setting. The full-query Euclidean baseline is measured
//! beside each sweep.

use probelog::search::Metric;
use probelog::testkit::synth::{SynthConfig, SynthZoo};
use probelog::{
    AppendOptions, CreateOptions, Index, IndexWriter, LockWait, LogitMatrix, ModelInput, create,
};

#[path = "common.rs"]
mod common;

fn build(path: &std::path::Path, zoo: &SynthZoo) {
    create(path, &CreateOptions::new(zoo.config.probes as u32)).unwrap();
    let mut w = IndexWriter::open(path, LockWait::Fail).unwrap();
    for m in &zoo.models {
        w.add_model(
            ModelInput {
                name: m.name.clone(),
                source: String::new(),
                meta: vec![],
                labels: Some(m.concepts.iter().map(|c| c.to_string()).collect()),
                logits: LogitMatrix::new(&m.logits, zoo.config.probes, m.concepts.len()).unwrap(),
            },
            AppendOptions::default(),
        )
        .unwrap();
    }
    w.commit().unwrap();
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let dir = tempfile::tempdir().unwrap();
    let (models, queries) = if quick { (150, 30) } else { (400, 100) };
    let mut table = Vec::new();
    for &probes in &[1000usize, 4000] {
        for &density in &[0.005, 0.02, 0.08] {
            let zoo = SynthZoo::generate(SynthConfig {
                probes,
                concepts: 200,
                models,
                concept_density: density,
                seed: 42,
                ..Default::default()
            });
            let path = dir.path().join(format!("k-{probes}-{density}.plog"));
            build(&path, &zoo);
            let index = Index::open(&path).unwrap();
            let ks: Vec<usize> = [4, 8, 16, 32, 64, 128, 256, 512, 1024, probes]
                .into_iter()
                .filter(|&k| k <= probes)
                .collect();
            let full = common::top1_accuracy(&index, queries, Metric::Full, Some(probes));
            let accs: Vec<f64> = ks
                .iter()
                .map(|&k| common::top1_accuracy(&index, queries, Metric::TopK, Some(k)))
                .collect();
            println!(
                "P={probes:5} density={density:5}: full-query Euclidean top-1 {:.3}",
                full
            );
            for (k, a) in ks.iter().zip(&accs) {
                println!("    k={k:5} top-1 {a:.3}");
            }
            table.push((probes, density, ks, accs, full));
        }
    }
    // Which k is best on average across zoos, and how far each k is from each zoo's best.
    println!("\nmean top-1 over zoos, and worst shortfall from the per-zoo best k:");
    for k in [4usize, 8, 16, 32, 64, 128, 256, 512] {
        let mut sum = 0.0;
        let mut worst: f64 = 0.0;
        for (_, _, ks, accs, _) in &table {
            let best = accs.iter().cloned().fold(0.0, f64::max);
            let i = ks.iter().position(|&x| x == k).unwrap();
            sum += accs[i];
            worst = worst.max(best - accs[i]);
        }
        println!(
            "    k={k:4}: mean {:.3}, worst shortfall {:.3}",
            sum / table.len() as f64,
            worst
        );
    }
}
