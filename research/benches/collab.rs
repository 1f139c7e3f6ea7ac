//! Collaborative probing against its baselines, on synthetic zoos.
//!
//! `cargo bench -p probelog-research --bench collab` (add `-- --quick` for a smaller run; `--models N`, `--concepts
//! N`, `--rank R` and `--lambda L` change the zoo and the fit).
//!
//! For each fraction f of the probes, three ways to describe every model:
//! - full: every model runs every probe (the reference);
//! - fixed subset: every model runs the same random f*P probes, and descriptors live on those;
//! - collaborative: every model runs its own random f*P probes, and the missing entries are
//!   completed from low-rank probe factors fitted jointly over all models (ALS);
//! - adaptive (what `append --probe-fraction` does by default): every model runs a random
//!   half of its f*P probes, factors are fitted on those, then it runs the rest of its budget
//!   on the probes where its completion is highest (`collab::adaptive_probes`), and it is
//!   completed from factors fitted on both rounds.
//!
//! Accuracy is top-1 logit-to-logit retrieval with the query's own model excluded: a hit when the
//! best entry detects the query's concept. Forward passes per model are f*P in both subset cases.

use probelog::collab::{
    CollabOptions, DEFAULT_ADAPTIVE_SHARE, Observations, ProbeFactors, adaptive_probes,
    adaptive_split, sample_probe_count, sample_probes,
};
use probelog::testkit::synth::{SynthConfig, SynthZoo};
use probelog::{
    AppendOptions, CreateOptions, Index, IndexWriter, LockWait, LogitMatrix, ModelInput, create,
};

#[path = "common.rs"]
mod common;

/// Builds an index over `probes` probes from entry-major descriptors (or raw logit columns).
fn build(path: &std::path::Path, probes: usize, models: &[(Vec<f32>, Vec<usize>)]) -> Index {
    create(path, &CreateOptions::new(probes as u32)).unwrap();
    let mut w = IndexWriter::open(path, LockWait::Fail).unwrap();
    for (i, (desc, concepts)) in models.iter().enumerate() {
        // Entry-major [L][P] -> row-major [P][L] logits.
        let l = concepts.len();
        let mut logits = vec![0f32; probes * l];
        for j in 0..l {
            for p in 0..probes {
                logits[p * l + j] = desc[j * probes + p];
            }
        }
        let input = ModelInput {
            name: format!("m{i}"),
            source: String::new(),
            meta: vec![],
            labels: Some(concepts.iter().map(|c| c.to_string()).collect()),
            logits: LogitMatrix::new(&logits, probes, l).unwrap(),
        };
        let opts = AppendOptions {
            keep_constant: true,
            ..Default::default()
        };
        w.add_model(input, opts).unwrap();
    }
    w.commit().unwrap();
    Index::open(path).unwrap()
}

/// Top-1 accuracy over the first `queries` models, measured with the paper's top-k discrepancy
/// (README, collaborative probing).
fn accuracy(index: &Index, queries: u64) -> f64 {
    common::top1_accuracy(index, queries, probelog::Metric::TopK, None)
}

/// Entry-major raw logits of one synthetic model, restricted to `probes` (sorted).
fn columns(zoo: &SynthZoo, m: usize, probes: &[u32]) -> Vec<f32> {
    let model = &zoo.models[m];
    let (p, l) = (zoo.config.probes, model.concepts.len());
    let _ = p;
    let mut out = Vec::with_capacity(l * probes.len());
    for j in 0..l {
        out.extend(probes.iter().map(|&q| model.logits[q as usize * l + j]));
    }
    out
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .map(|v| v.parse::<f64>().expect("a number"))
    };
    let mut opts = CollabOptions::default();
    if let Some(r) = value("--rank") {
        opts.rank = r as usize;
    }
    if let Some(l) = value("--lambda") {
        opts.lambda = l as f32;
    }
    for latent_firing in [true, false] {
        let cfg = SynthConfig {
            probes: if quick { 500 } else { 1000 },
            concepts: value("--concepts").map_or(100, |c| c as usize),
            models: value("--models").map_or(if quick { 150 } else { 300 }, |m| m as usize),
            concept_density: 0.02,
            latent_firing,
            seed: 11,
            ..Default::default()
        };
        run(cfg, &opts);
    }
}

fn run(cfg: SynthConfig, opts: &CollabOptions) {
    let dir = tempfile::tempdir().unwrap();
    let zoo = SynthZoo::generate(cfg);
    let p = cfg.probes;
    let queries = 60;
    let all: Vec<u32> = (0..p as u32).collect();
    let full: Vec<(Vec<f32>, Vec<usize>)> = (0..zoo.models.len())
        .map(|m| (columns(&zoo, m, &all), zoo.models[m].concepts.clone()))
        .collect();
    let full_acc = accuracy(&build(&dir.path().join("full.plog"), p, &full), queries);
    println!(
        "\nsynthetic zoo: {} models, {} probes, {} concepts, concepts fire on {} probes; top-1, {queries} query models",
        cfg.models,
        p,
        cfg.concepts,
        if cfg.latent_firing {
            "latent-aligned"
        } else {
            "random"
        }
    );
    println!("full probing ({p} probes per model): {full_acc:.3}");
    for fraction in [0.1, 0.2, 1.0 / 3.0, 0.5] {
        let fixed_probes = sample_probes(p, fraction, 99).unwrap();
        let fixed: Vec<(Vec<f32>, Vec<usize>)> = (0..zoo.models.len())
            .map(|m| {
                (
                    columns(&zoo, m, &fixed_probes),
                    zoo.models[m].concepts.clone(),
                )
            })
            .collect();
        let path = dir.path().join(format!("fixed-{fraction}.plog"));
        let fixed_acc = accuracy(&build(&path, fixed_probes.len(), &fixed), queries);

        let observe = |m: usize, observed: &[u32]| {
            let raw = columns(&zoo, m, observed);
            let l = zoo.models[m].concepts.len();
            // Entry-major -> row-major for the logit matrix.
            let mut rows = vec![0f32; raw.len()];
            for j in 0..l {
                for i in 0..observed.len() {
                    rows[i * l + j] = raw[j * observed.len() + i];
                }
            }
            let mat = LogitMatrix::new(&rows, observed.len(), l).unwrap();
            Observations::from_logits("m", &mat, observed, p, true)
                .unwrap()
                .0
        };
        let complete = |observations: &[Observations], name: &str| {
            let t = std::time::Instant::now();
            let factors = ProbeFactors::fit(p, observations, opts).unwrap();
            let fit_s = t.elapsed().as_secs_f64();
            let completed: Vec<(Vec<f32>, Vec<usize>)> = observations
                .iter()
                .enumerate()
                .map(|(m, o)| {
                    (
                        factors.impute(o, opts.lambda).unwrap(),
                        zoo.models[m].concepts.clone(),
                    )
                })
                .collect();
            let path = dir.path().join(format!("{name}-{fraction}.plog"));
            (accuracy(&build(&path, p, &completed), queries), fit_s)
        };
        let observations: Vec<Observations> = (0..zoo.models.len())
            .map(|m| observe(m, &sample_probes(p, fraction, 1000 + m as u64).unwrap()))
            .collect();
        let (collab_acc, fit_s) = complete(&observations, "collab");

        // The same budget over two rounds: random, then where the completion is highest.
        let (random, adaptive) = adaptive_split(p, fraction, DEFAULT_ADAPTIVE_SHARE).unwrap();
        let first: Vec<Observations> = (0..zoo.models.len())
            .map(|m| observe(m, &sample_probe_count(p, random, 1000 + m as u64)))
            .collect();
        let first_factors = ProbeFactors::fit(p, &first, opts).unwrap();
        let both: Vec<Observations> = first
            .iter()
            .enumerate()
            .map(|(m, o)| {
                let predicted = first_factors.impute(o, opts.lambda).unwrap();
                let extra =
                    adaptive_probes(&predicted, o.logits, p, &o.observed, adaptive).unwrap();
                let mut union = [o.observed.clone(), extra].concat();
                union.sort_unstable();
                observe(m, &union)
            })
            .collect();
        let (adaptive_acc, _) = complete(&both, "adaptive");
        println!(
            "{:5.1}% of probes ({:4} per model): fixed subset {fixed_acc:.3}, collaborative {collab_acc:.3}, adaptive {adaptive_acc:.3} (rank {}, lambda {}, fit {fit_s:.1} s)",
            fraction * 100.0,
            fixed_probes.len(),
            opts.rank,
            opts.lambda
        );
    }
}
