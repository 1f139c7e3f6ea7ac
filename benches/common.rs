//! What the benchmarks share: their flags, the synthetic zoo they index, staging random models,
//! exact answers and the median of timed rounds. Each includes it with
//! `#[path = "common.rs"] mod common;` and uses what it needs.
#![allow(dead_code)]

use std::time::Duration;

use probelog::testkit::synth::SynthConfig;
use probelog::{AppendOptions, Index, IndexWriter, LogitMatrix, ModelInput, Query, SearchParams};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Stages `entries` logits of uniform random values in [-4, 4) over `probes` probes, drawn from
/// `rng`: models of `logits_per_model` logits (the last one may have fewer), the `m`-th named
/// `name(m)`. The caller commits.
pub fn add_random_models(
    w: &mut IndexWriter,
    rng: &mut ChaCha8Rng,
    probes: usize,
    entries: usize,
    logits_per_model: usize,
    name: impl Fn(usize) -> String,
) {
    let mut logits = vec![0f32; probes * logits_per_model];
    let mut added = 0;
    let mut m = 0;
    while added < entries {
        let l = logits_per_model.min(entries - added);
        let buf = &mut logits[..probes * l];
        buf.iter_mut()
            .for_each(|x| *x = rng.random_range(-4.0f32..4.0));
        w.add_model(
            ModelInput {
                name: name(m),
                source: String::new(),
                meta: vec![],
                labels: None,
                logits: LogitMatrix::new(buf, probes, l).unwrap(),
            },
            AppendOptions::default(),
        )
        .unwrap();
        added += l;
        m += 1;
    }
}

/// The median of timed rounds (the upper one of an even count).
pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The value after `name` on the command line, or `default`; a value that does not parse panics
/// with the flag's name.
pub fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    opt_arg(name).unwrap_or(default)
}

/// The value after `name`, if it was given.
pub fn opt_arg<T: std::str::FromStr>(name: &str) -> Option<T> {
    let args: Vec<String> = std::env::args().collect();
    let i = args.iter().position(|a| a == name)?;
    let v = args.get(i + 1)?;
    Some(
        v.parse()
            .unwrap_or_else(|_| panic!("{name}: cannot parse {v}")),
    )
}

/// Whether `name` is on the command line.
pub fn flag(name: &str) -> bool {
    std::env::args().any(|a| a == name)
}

/// The synthetic zoo of the ANN and build benchmarks: concept clusters shared by many models,
/// about one concept per 100 logits; `--latent-firing` switches the zoo's firing model.
pub fn synth_config(probes: usize, entries: usize) -> SynthConfig {
    SynthConfig {
        probes,
        concepts: (entries / 100).clamp(100, 10_000),
        models: usize::MAX,
        seed: 7,
        latent_firing: flag("--latent-firing"),
        ..Default::default()
    }
}

/// The entries `index` returns for each of the entry queries `queries` under `params`, in rank
/// order (the ground truth of a recall measurement when `params` is exact).
pub fn exact_entries(
    index: &Index,
    queries: &[u64],
    params: &SearchParams,
) -> Vec<Vec<Option<u64>>> {
    queries
        .iter()
        .map(|&e| {
            index
                .search(&Query::Entry(e), params)
                .unwrap()
                .iter()
                .map(|h| h.entry)
                .collect()
        })
        .collect()
}
