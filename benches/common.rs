//! What the `scan` and `merge` benchmarks share: staging random models and the median of timed
//! rounds. Each includes it with `#[path = "common.rs"] mod common;`.

use std::time::Duration;

use probelog::{AppendOptions, IndexWriter, LogitMatrix, ModelInput};
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
