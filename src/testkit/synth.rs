//! A synthetic model zoo with the structure that makes logit search hard: concepts shared by many
//! models, each concept firing strongly on a few probes, per-model response patterns common to all
//! logits of a model, per-model scale and shift, and noise. Tests, benchmarks and the choice of the
//! default `k` use it; real hubs are evaluated separately.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Parameters of [`SynthZoo::generate`].
#[derive(Debug, Clone, Copy)]
pub struct SynthConfig {
    pub probes: usize,
    pub concepts: usize,
    pub models: usize,
    pub min_logits: usize,
    pub max_logits: usize,
    /// Fraction of probes on which a concept fires.
    pub concept_density: f64,
    /// Where a concept fires: on random probes (`false`), or on the probes where its latent
    /// component is highest (`true`), as when probes showing the concept look alike. Only the
    /// latter has the low-rank structure that collaborative probing relies on.
    pub latent_firing: bool,
    /// Rank of the shared low-level response structure of probes.
    pub latent_rank: usize,
    /// Strength of the per-model pattern added to all logits of a model.
    pub model_pattern: f32,
    /// Standard deviation of independent noise.
    pub noise: f32,
    pub seed: u64,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            probes: 1000,
            concepts: 100,
            models: 100,
            min_logits: 5,
            max_logits: 20,
            concept_density: 0.02,
            latent_firing: false,
            latent_rank: 16,
            model_pattern: 1.0,
            noise: 0.5,
            seed: 1,
        }
    }
}

/// One synthetic model: the concepts its logits detect and its raw logits `[probes, logits]`.
#[derive(Debug, Clone)]
pub struct SynthModel {
    pub name: String,
    pub concepts: Vec<usize>,
    pub logits: Vec<f32>,
}

/// A generated zoo.
#[derive(Debug, Clone)]
pub struct SynthZoo {
    pub config: SynthConfig,
    pub models: Vec<SynthModel>,
}

/// One draw of a standard normal variable (Box-Muller); the draw collaborative probing starts from.
pub fn standard_normal(rng: &mut ChaCha8Rng) -> f32 {
    crate::collab::standard_normal(rng)
}

impl SynthZoo {
    pub fn generate(config: SynthConfig) -> SynthZoo {
        let mut g = SynthGenerator::new(config);
        let models = (0..config.models).map(|_| g.next_model()).collect();
        SynthZoo { config, models }
    }
}

/// Generates the models of a [`SynthZoo`] one at a time, so that zoos larger than memory can be
/// streamed into an index. `SynthZoo::generate` collects the same models.
#[derive(Debug, Clone)]
pub struct SynthGenerator {
    config: SynthConfig,
    rng: ChaCha8Rng,
    latent: Vec<f32>,
    profiles: Vec<Vec<f32>>,
    next: usize,
}

impl SynthGenerator {
    pub fn new(config: SynthConfig) -> SynthGenerator {
        let c = config;
        assert!(c.concepts >= c.max_logits && c.min_logits >= 1 && c.min_logits <= c.max_logits);
        let mut rng = ChaCha8Rng::seed_from_u64(c.seed);
        let latent: Vec<f32> = (0..c.probes * c.latent_rank)
            .map(|_| standard_normal(&mut rng))
            .collect();
        // Concept profile over probes: a weak latent component plus strong firing on a few probes.
        let profiles: Vec<Vec<f32>> = (0..c.concepts)
            .map(|_| {
                let w: Vec<f32> = (0..c.latent_rank)
                    .map(|_| standard_normal(&mut rng) * 0.3)
                    .collect();
                let base: Vec<f32> = (0..c.probes)
                    .map(|p| {
                        (0..c.latent_rank)
                            .map(|j| latent[p * c.latent_rank + j] * w[j])
                            .sum()
                    })
                    .collect();
                // In latent mode a concept fires where its latent component is highest.
                let threshold = c.latent_firing.then(|| {
                    let mut sorted = base.clone();
                    sorted.sort_by(|a, b| b.total_cmp(a));
                    let n = ((c.probes as f64 * c.concept_density).ceil() as usize).max(1);
                    sorted[n.min(c.probes) - 1]
                });
                base.iter()
                    .map(|&b| {
                        let fires = match threshold {
                            Some(t) => b >= t,
                            None => rng.random_bool(c.concept_density),
                        };
                        b + if fires {
                            3.0 + standard_normal(&mut rng).abs()
                        } else {
                            0.0
                        }
                    })
                    .collect()
            })
            .collect();
        SynthGenerator {
            config,
            rng,
            latent,
            profiles,
            next: 0,
        }
    }

    /// The next model (models are numbered from 0; the generator does not stop at
    /// `config.models`).
    pub fn next_model(&mut self) -> SynthModel {
        let c = self.config;
        let rng = &mut self.rng;
        let m = self.next;
        self.next += 1;
        let l = rng.random_range(c.min_logits..=c.max_logits);
        let concepts = rand::seq::index::sample(rng, c.concepts, l).into_vec();
        let w: Vec<f32> = (0..c.latent_rank).map(|_| standard_normal(rng)).collect();
        let pattern: Vec<f32> = (0..c.probes)
            .map(|p| {
                let s: f32 = (0..c.latent_rank)
                    .map(|j| self.latent[p * c.latent_rank + j] * w[j])
                    .sum();
                s * c.model_pattern / (c.latent_rank as f32).sqrt()
            })
            .collect();
        let scale = rng.random_range(0.5f32..3.0);
        let shift = rng.random_range(-5f32..5.0);
        let mut logits = vec![0f32; c.probes * l];
        for (j, &concept) in concepts.iter().enumerate() {
            let gain = rng.random_range(0.7f32..1.3);
            for p in 0..c.probes {
                let v =
                    self.profiles[concept][p] * gain + pattern[p] + c.noise * standard_normal(rng);
                logits[p * l + j] = v * scale + shift;
            }
        }
        SynthModel {
            name: format!("synth-{m:05}"),
            concepts,
            logits,
        }
    }
}

impl SynthModel {
    /// The model's first `logits` logits (all of them when it has fewer): raw logits
    /// `[probes, n]` and the concepts they detect.
    pub fn first_logits(&self, logits: usize) -> SynthModel {
        let all = self.concepts.len();
        let n = logits.min(all);
        SynthModel {
            name: self.name.clone(),
            concepts: self.concepts[..n].to_vec(),
            logits: self
                .logits
                .chunks_exact(all)
                .flat_map(|row| row[..n].to_vec())
                .collect(),
        }
    }
}

/// Appends models of `generator` through `writer` until `entries` logits were added (the last
/// model cut to fit), committing whenever `chunk` entries are staged and at the end. Each model
/// goes in under its own name with its concepts as labels, after `adjust(i, &mut input)` for the
/// `i`-th model (from 0). Returns each commit's time since the previous one (staging, graph
/// builds and the commit).
pub fn append_synthetic(
    writer: &mut crate::IndexWriter,
    generator: &mut SynthGenerator,
    entries: usize,
    chunk: usize,
    mut adjust: impl FnMut(usize, &mut crate::ModelInput<'_>),
) -> crate::Result<Vec<std::time::Duration>> {
    let probes = generator.config.probes;
    let (mut done, mut staged, mut commits) = (0usize, 0usize, Vec::new());
    let mut since = std::time::Instant::now();
    let mut i = 0;
    while done < entries {
        let model = generator.next_model().first_logits(entries - done);
        let n = model.concepts.len();
        let mut input = crate::ModelInput {
            name: model.name,
            source: String::new(),
            meta: Vec::new(),
            labels: Some(model.concepts.iter().map(usize::to_string).collect()),
            logits: crate::LogitMatrix::new(&model.logits, probes, n)?,
        };
        adjust(i, &mut input);
        writer.add_model(input, Default::default())?;
        (done, staged, i) = (done + n, staged + n, i + 1);
        if staged >= chunk || done >= entries {
            writer.commit()?;
            commits.push(since.elapsed());
            eprintln!("  committed {done} entries ({:.1?})", since.elapsed());
            staged = 0;
            since = std::time::Instant::now();
        }
    }
    Ok(commits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zoo_is_reproducible_and_shaped() {
        let cfg = SynthConfig {
            probes: 50,
            concepts: 30,
            models: 4,
            ..Default::default()
        };
        let a = SynthZoo::generate(cfg);
        let b = SynthZoo::generate(cfg);
        assert_eq!(a.models.len(), 4);
        for (x, y) in a.models.iter().zip(&b.models) {
            assert_eq!(x.logits, y.logits);
            assert_eq!(x.logits.len(), 50 * x.concepts.len());
            assert!(x.logits.iter().all(|v| v.is_finite()));
        }
    }
}
