//! Runs a TorchScript image model on every probe of a probe set and collects its outputs: a
//! classifier's logits, or an image encoder's embeddings (`probes embed`).
//!
//! The interface such a model must follow: input float32 `[N, 3, S, S]`, RGB in `[0, 1]` (then
//! `(x - mean) / std` per channel when given), output `[N, K]` (`[N, L]` logits, `[N, d]`
//! embeddings). The outputs come back as `[P, K]` float32 on the CPU, in probe order, checked:
//! two dimensions, the same `K` for every batch, every value finite.

use std::path::Path;
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
        let mut logits: Vec<f32> = Vec::new();
        let mut num_logits = None;
        for first in (0..p).step_by(spec.batch) {
            let range = first..(first + spec.batch).min(p);
            let n = range.len();
            let input = self.input(set, range.clone(), size, spec)?;
            let out = tch::no_grad(|| self.module.forward_ts(&[input])).map_err(|e| {
                anyhow::anyhow!(
                    "{} failed on probes {}..{} (input float32 [{n}, 3, {size}, {size}]): {}",
                    kind.subject,
                    range.start,
                    range.end,
                    torch_message(&e)
                )
            })?;
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
            match num_logits {
                None => {
                    num_logits = Some(l);
                    logits.reserve(p * l);
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
            let batch = to_host_f32(&out)?;
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
            logits.extend_from_slice(&batch);
            tick();
        }
        Ok(Probed {
            logits,
            probes: p,
            num_logits: num_logits.unwrap_or(0),
            elapsed: start.elapsed(),
        })
    }

    /// Probes `range` as float32 `[n, 3, size, size]` on the model's device.
    fn input(
        &self,
        set: &ProbeSet,
        range: std::ops::Range<usize>,
        size: u32,
        spec: &InputSpec,
    ) -> Result<Tensor> {
        let n = range.len() as i64;
        let s = i64::from(size);
        let pixels = set.pixels_at(range, size);
        let mut x = Tensor::f_from_slice(&pixels)
            .and_then(|t| t.f_view([n, 3, s, s]))
            .and_then(|t| t.f_to_kind(Kind::Float))
            .map_err(|e| anyhow::anyhow!("cannot build the input tensor: {}", torch_message(&e)))?
            / 255.0;
        if let Some(mean) = spec.mean {
            x -= Tensor::from_slice(&mean).view([1, 3, 1, 1]);
        }
        if let Some(std) = spec.std {
            x /= Tensor::from_slice(&std).view([1, 3, 1, 1]);
        }
        x.f_to_device(self.device).map_err(|e| {
            anyhow::anyhow!(
                "cannot move the input to {:?}: {}",
                self.device,
                torch_message(&e)
            )
        })
    }
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
