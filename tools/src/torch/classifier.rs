//! Runs a TorchScript image model on every probe of a probe set and collects its outputs: a
//! classifier's logits, or an image encoder's embeddings (`probes embed`).
//!
//! The interface such a model must follow: input float32 `[N, 3, S, S]`, RGB in `[0, 1]` (then
//! `(x - mean) / std` per channel when given), output `[N, K]` (`[N, L]` logits, `[N, d]`
//! embeddings). The outputs come back as `[P, K]` float32 on the CPU, in probe order, checked:
//! two dimensions, the same `K` for every batch, every value finite.

use std::ops::Range;
use std::path::Path;
use std::sync::mpsc;
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use tch::{CModule, Device, Kind, Tensor};

use super::{InputSpec, Probed, torch_message};
use crate::pset::{ProbeSet, ProbeSetFiles};

/// What a model's `[N, K]` output is, for the error messages.
#[derive(Debug, Clone, Copy)]
pub struct OutputKind {
    /// The model, as the messages name it: "the model".
    pub subject: &'static str,
    /// What it must return, with `K` named: "a classifier must return [N, L] logits".
    pub contract: &'static str,
    /// `K`'s letter in the contract: "L".
    pub width: &'static str,
    /// One output column, and several: "logit", "logits".
    pub one: &'static str,
    pub many: &'static str,
}

/// A classifier's logits (`append --model`).
pub const LOGITS: OutputKind = OutputKind {
    subject: "the model",
    contract: "a classifier must return [N, L] logits",
    width: "L",
    one: "logit",
    many: "logits",
};

/// An image encoder's embeddings (`probes embed`).
pub const EMBEDDINGS: OutputKind = OutputKind {
    subject: "the image encoder",
    contract: "an image encoder must return [N, d] embeddings",
    width: "d",
    one: "dimension",
    many: "embedding dimensions",
};

/// A loaded TorchScript image model (a classifier or an image encoder).
#[derive(Debug)]
pub struct Classifier {
    module: CModule,
    device: Device,
}

impl Classifier {
    /// Loads a TorchScript file onto `device`, in eval mode.
    pub fn load(path: &Path, device: Device) -> Result<Self> {
        // Callers name the model and its path; the messages say what went wrong.
        ensure!(path.is_file(), "no such file");
        let mut module = CModule::load_on_device(path, device).map_err(|e| {
            anyhow::anyhow!("cannot load TorchScript module: {}", torch_message(&e))
        })?;
        module.set_eval();
        Ok(Classifier { module, device })
    }

    /// Runs the classifier on every probe, `spec.batch` at a time; `tick` is called after each
    /// batch.
    pub fn probe(&self, set: &ProbeSet, spec: &InputSpec, tick: &dyn Fn()) -> Result<Probed> {
        self.run(set, spec, tick, &LOGITS)
    }

    /// Runs the model on every probe, `spec.batch` at a time, and checks its `[N, K]` outputs;
    /// `tick` is called after each batch.
    pub fn run(
        &self,
        set: &ProbeSet,
        spec: &InputSpec,
        tick: &dyn Fn(),
        kind: &OutputKind,
    ) -> Result<Probed> {
        ensure!(spec.batch > 0, "the batch size must be at least 1");
        if let Some(std) = spec.std {
            ensure!(
                std.iter().all(|s| s.is_finite() && *s != 0.0),
                "--std values must be finite and non-zero, got {std:?}"
            );
        }
        let size = spec.size.unwrap_or(set.size());
        let p = set.len();
        let start = Instant::now();
        let batches: Vec<Range<usize>> = (0..p)
            .step_by(spec.batch)
            .map(|first| first..(first + spec.batch).min(p))
            .collect();
        let mut outputs = ModelOutputs::new(p);
        std::thread::scope(|scope| {
            // The next batch's pixels are read, resized and scaled on a second thread while the
            // model runs on this one (docs/benchmarks.md, "Probing throughput").
            let (ready_tx, ready_rx) = mpsc::sync_channel::<Vec<f32>>(1);
            let loading = batches.clone();
            scope.spawn(move || {
                for range in loading {
                    // A closed channel: the model failed and this thread has nothing to do.
                    if ready_tx.send(input_values(set, range, size, spec)).is_err() {
                        return;
                    }
                }
            });
            for (range, values) in batches.into_iter().zip(ready_rx) {
                let out = self.forward(&values, range.clone(), size, kind)?;
                outputs.push(&out, range, set, kind)?;
                tick();
            }
            Ok::<(), anyhow::Error>(())
        })?;
        Ok(Probed {
            num_logits: outputs.width.unwrap_or(0),
            logits: outputs.values,
            probes: p,
            elapsed: start.elapsed(),
        })
    }

    /// Runs the model on one batch of input values (`[n, 3, size, size]`, scaled).
    fn forward(
        &self,
        values: &[f32],
        range: Range<usize>,
        size: u32,
        kind: &OutputKind,
    ) -> Result<Tensor> {
        let (n, s) = (range.len() as i64, i64::from(size));
        let input = Tensor::f_from_slice(values)
            .and_then(|t| t.f_view([n, 3, s, s]))
            .and_then(|t| t.f_to_device(self.device))
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot move the input to {:?}: {}",
                    self.device,
                    torch_message(&e)
                )
            })?;
        tch::no_grad(|| self.module.forward_ts(&[input])).map_err(|e| {
            anyhow::anyhow!(
                "{} failed on probes {}..{} (input float32 [{n}, 3, {size}, {size}]): {}",
                kind.subject,
                range.start,
                range.end,
                torch_message(&e)
            )
        })
    }
}

/// The checked `[N, K]` outputs of a model, batch after batch.
struct ModelOutputs {
    probes: usize,
    values: Vec<f32>,
    /// K, from the first batch.
    width: Option<usize>,
}

impl ModelOutputs {
    fn new(probes: usize) -> Self {
        ModelOutputs {
            probes,
            values: Vec::new(),
            width: None,
        }
    }

    /// Checks one batch's output (probes `range`) and keeps it.
    fn push(
        &mut self,
        out: &Tensor,
        range: Range<usize>,
        set: &ProbeSet,
        kind: &OutputKind,
    ) -> Result<()> {
        let n = range.len();
        let shape = out.size();
        if shape.len() != 2 || shape[0] != n as i64 {
            bail!(
                "{} returned shape {shape:?} for a batch of {n} probes; {}, here [{n}, {}]",
                kind.subject,
                kind.contract,
                kind.width
            );
        }
        let l = usize::try_from(shape[1]).unwrap_or(0);
        ensure!(
            l > 0,
            "{} returned no {} (shape {shape:?})",
            kind.subject,
            kind.many
        );
        match self.width {
            None => {
                self.width = Some(l);
                self.values.reserve(self.probes * l);
            }
            Some(before) if before != l => bail!(
                "{} returned {l} {} for probes {}..{} but {before} before; the number of {} \
                 must not depend on the input",
                kind.subject,
                kind.many,
                range.start,
                range.end,
                kind.many
            ),
            Some(_) => {}
        }
        let batch = to_host_f32(out)?;
        if let Some(i) = batch.iter().position(|v| !v.is_finite()) {
            let probe = range.start + i / l;
            bail!(
                "{} returned {} for {} {} on probe {probe} ({:?})",
                kind.subject,
                batch[i],
                kind.one,
                i % l,
                set.names()[probe]
            );
        }
        self.values.extend_from_slice(&batch);
        Ok(())
    }
}

/// Probes `range` as float32 `[n, 3, size, size]` values: RGB scaled to `[0, 1]`, then
/// `(x - mean) / std` per channel when given.
fn input_values(set: &ProbeSet, range: Range<usize>, size: u32, spec: &InputSpec) -> Vec<f32> {
    let pixels = set.pixels_at(range, size);
    let plane = (size as usize).pow(2);
    let (mean, std) = (spec.mean.unwrap_or([0.0; 3]), spec.std.unwrap_or([1.0; 3]));
    let mut values = Vec::with_capacity(pixels.len());
    for (i, channel) in pixels.chunks_exact(plane).enumerate() {
        let (m, s) = (mean[i % 3], std[i % 3]);
        values.extend(channel.iter().map(|&v| (f32::from(v) / 255.0 - m) / s));
    }
    values
}

/// Copies a tensor of any float kind and device to a flat `Vec<f32>` on the host.
fn to_host_f32(t: &Tensor) -> Result<Vec<f32>> {
    let host = t
        .f_to_device(Device::Cpu)
        .and_then(|t| t.f_to_kind(Kind::Float))
        .and_then(|t| t.f_contiguous())
        .map_err(|e| anyhow::anyhow!("cannot read the model's output: {}", torch_message(&e)))?;
    let n = host.numel();
    let mut out = vec![0f32; n];
    host.f_copy_data(&mut out, n)
        .map_err(|e| anyhow::anyhow!("cannot read the model's output: {}", torch_message(&e)))
        .context("copying the outputs to the host")?;
    Ok(out)
}
