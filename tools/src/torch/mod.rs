//! Probing TorchScript models through libtorch (crate `tch`).
//!
//! Device names, input specifications, [`Prober`] and [`embed_text`] exist in every build so
//! that the command line is the same; without the `torch` feature (libtorch from
//! tools/setup-libtorch.sh), [`Prober::new`] and [`embed_text`] say how to get it.

#[cfg(feature = "torch")]
pub mod classifier;
#[cfg(feature = "torch")]
pub mod clip;
pub mod device;
#[cfg(feature = "torch")]
mod memory;

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
        memory::keep_freed_memory();
        Ok(Prober { set, device })
    }

    /// Without libtorch: an error that says how to build with it.
    #[cfg(not(feature = "torch"))]
    pub fn new(_set: ProbeSet, _device: DeviceArg) -> Result<Self> {
        Err(no_libtorch())
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

    /// Loads the TorchScript file `model` and runs it on every probe, or on the probes `subset`
    /// (rows of the result in that order); `tick` after each batch.
    pub fn probe(
        &self,
        model: &Path,
        spec: &InputSpec,
        subset: Option<&[u32]>,
        tick: &dyn Fn(),
    ) -> Result<Probed> {
        #[cfg(feature = "torch")]
        {
            let classifier = classifier::Classifier::load(model, self.device)?;
            match subset {
                None => classifier.probe(&self.set, spec, tick),
                Some(indices) => classifier.probe(&self.set.subset(indices)?, spec, tick),
            }
        }
        #[cfg(not(feature = "torch"))]
        {
            let _ = (model, spec, subset, tick);
            match self.never {}
        }
    }
}

impl Prober {
    /// Loads the TorchScript image encoder `model` and embeds every probe: `[P, d]`, checked like
    /// a classifier's logits (two dimensions, the same d for every batch, finite values).
    pub fn embed(&self, model: &Path, spec: &InputSpec, tick: &dyn Fn()) -> Result<Probed> {
        #[cfg(feature = "torch")]
        return classifier::Classifier::load(model, self.device)?.run(
            &self.set,
            spec,
            tick,
            &classifier::EMBEDDINGS,
        );
        #[cfg(not(feature = "torch"))]
        {
            let _ = (model, spec, tick);
            match self.never {}
        }
    }
}

/// The error of a build without libtorch.
#[cfg(not(feature = "torch"))]
fn no_libtorch() -> anyhow::Error {
    anyhow::anyhow!(
        "running TorchScript models needs libtorch, and this probelog-tool was built without \
         it: run tools/setup-libtorch.sh, then build with `cargo build -p probelog-tool \
         --features torch` (`--features cuda` on a CUDA machine)"
    )
}

/// Whether a text encoder is given the attention mask as a second input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum MaskArg {
    /// Token ids alone; the mask too when the module says it is missing a second argument.
    #[default]
    Auto,
    /// Always ids and mask.
    Always,
    /// Only the ids.
    Never,
}

/// How a text query is turned into an embedding.
#[derive(Debug, Clone)]
pub struct TextSpec<'a> {
    /// TorchScript text encoder: int64 ids `[N, T]` (and the int64 mask `[N, T]`) -> `[N, d]`.
    pub encoder: &'a Path,
    /// Hugging Face `tokenizer.json`.
    pub tokenizer: &'a Path,
    /// T: token sequences are padded or truncated to it.
    pub context_length: usize,
    pub mask: MaskArg,
    pub device: DeviceArg,
}

impl<'a> TextSpec<'a> {
    /// A text encoder given by the flags `--clip-text` and `--tokenizer`, both regular files.
    pub fn from_flags(
        encoder: &'a Path,
        tokenizer: &'a Path,
        context_length: usize,
        mask: MaskArg,
        device: DeviceArg,
    ) -> anyhow::Result<TextSpec<'a>> {
        crate::input::require_regular(encoder, "--clip-text")?;
        crate::input::require_regular(tokenizer, "--tokenizer")?;
        Ok(TextSpec {
            encoder,
            tokenizer,
            context_length,
            mask,
            device,
        })
    }
}

/// Default context length (CLIP's).
pub const DEFAULT_CONTEXT_LENGTH: usize = 77;

/// A text's embedding and how it was computed.
#[derive(Debug, Clone)]
pub struct TextEmbedding {
    pub values: Vec<f32>,
    /// Tokens before padding (after truncation).
    pub tokens: usize,
    /// Whether the encoder was given the attention mask.
    pub with_mask: bool,
    /// The device, as libtorch names it.
    pub device: String,
}

/// Tokenizes `text` and runs the text encoder on it.
pub fn embed_text(text: &str, spec: &TextSpec<'_>) -> Result<TextEmbedding> {
    #[cfg(feature = "torch")]
    return clip::embed_text(text, spec);
    #[cfg(not(feature = "torch"))]
    {
        let _ = (text, spec);
        Err(no_libtorch())
    }
}

/// Clap parser of `--mean`/`--std`: three comma-separated finite numbers.
pub fn parse_rgb(s: &str) -> Result<[f32; 3], String> {
    let quoted = |s: &str| crate::output::excerpt(&format!("{s:?}"));
    let values: Vec<f32> = s
        .split(',')
        .map(|v| v.trim().parse::<f32>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("expected three numbers R,G,B, got {}", quoted(s)))?;
    let rgb: [f32; 3] = values
        .try_into()
        .map_err(|_| format!("expected three numbers R,G,B, got {}", quoted(s)))?;
    if rgb.iter().any(|v| !v.is_finite()) {
        return Err(format!("expected finite numbers, got {}", quoted(s)));
    }
    Ok(rgb)
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
