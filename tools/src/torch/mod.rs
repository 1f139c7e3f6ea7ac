//! Probing TorchScript models through libtorch (crate `tch`).
//!
//! Device names, input specifications and [`Prober`] exist in every build so that the command
//! line is the same; without the `torch` feature (libtorch from tools/setup-libtorch.sh),
//! [`Prober::new`] says how to get it.

#[cfg(feature = "torch")]
pub mod classifier;
pub mod device;

use std::path::Path;
use std::time::Duration;

use anyhow::Result;

use crate::pset::ProbeSet;
use device::DeviceArg;

/// How the probes are fed to a model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InputSpec {
    /// Side of the model's input; the stored probes are resized to it when it differs. `None`:
    /// the probe set's size.
    pub size: Option<u32>,
    /// Per-channel (R, G, B) normalization `(x - mean) / std` after scaling to `[0, 1]`.
    pub mean: Option<[f32; 3]>,
    pub std: Option<[f32; 3]>,
    /// Probes per forward pass.
    pub batch: usize,
}

/// Default probes per forward pass.
pub const DEFAULT_BATCH: usize = 64;

impl Default for InputSpec {
    fn default() -> Self {
        InputSpec {
            size: None,
            mean: None,
            std: None,
            batch: DEFAULT_BATCH,
        }
    }
}

/// A model's logits on a probe set.
#[derive(Debug, Clone)]
pub struct Probed {
    /// `[P, L]`, row-major.
    pub logits: Vec<f32>,
    pub probes: usize,
    pub num_logits: usize,
    /// Time spent preparing inputs and running the model (not loading it).
    pub elapsed: Duration,
}

/// Runs TorchScript classifiers on one probe set, on one device.
#[derive(Debug)]
pub struct Prober {
    set: ProbeSet,
    #[cfg(feature = "torch")]
    device: tch::Device,
    #[cfg(not(feature = "torch"))]
    never: std::convert::Infallible,
}

impl Prober {
    /// Chooses the device (saying on stderr when `auto` falls back to the CPU).
    #[cfg(feature = "torch")]
    pub fn new(set: ProbeSet, device: DeviceArg) -> Result<Self> {
        let device = device::resolve(device)?;
        Ok(Prober { set, device })
    }

    /// Without libtorch: an error that says how to build with it.
    #[cfg(not(feature = "torch"))]
    pub fn new(_set: ProbeSet, _device: DeviceArg) -> Result<Self> {
        Err(anyhow::anyhow!(
            "probing TorchScript models needs libtorch, and this probelog-tool was built \
             without it: run tools/setup-libtorch.sh, then build with `cargo build -p \
             probelog-tool --features torch` (`--features cuda` on a CUDA machine)"
        ))
    }

    pub fn set(&self) -> &ProbeSet {
        &self.set
    }

    /// The device, as libtorch names it (`cpu`, `cuda:0`).
    pub fn device_name(&self) -> String {
        #[cfg(feature = "torch")]
        return match self.device {
            tch::Device::Cuda(i) => format!("cuda:{i}"),
            _ => "cpu".to_string(),
        };
        #[cfg(not(feature = "torch"))]
        match self.never {}
    }

    /// Loads the TorchScript file `model` and runs it on every probe; `tick` after each batch.
    pub fn probe(&self, model: &Path, spec: &InputSpec, tick: &dyn Fn()) -> Result<Probed> {
        #[cfg(feature = "torch")]
        return classifier::Classifier::load(model, self.device)?.probe(&self.set, spec, tick);
        #[cfg(not(feature = "torch"))]
        {
            let _ = (model, spec, tick);
            match self.never {}
        }
    }
}

/// The first line of a libtorch error: its message, without the C++ backtrace that follows.
#[cfg(feature = "torch")]
pub fn torch_message(e: &tch::TchError) -> String {
    let text = e.to_string();
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("unknown libtorch error")
        .to_string()
}
