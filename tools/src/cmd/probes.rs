//! `probes`: build a probe set file (`.pset`) from a directory of images, describe one, store
//! an image encoder's embeddings of the probes in an index (for text queries), or store the
//! probe set itself in an index and get it back (`attach`, `extract`, in `embedded`).

use std::path::PathBuf;

use anyhow::{Result, ensure};
use probelog::IndexWriter;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::{LibResult, open_index, read_lines, with_writer_lock};

mod embedded;
use crate::input;
use crate::output::{outln, print_summary, progress};
use crate::paths::{Role, refuse_outputs_over_inputs};
use crate::pset::{self, ProbeSet, ProbeSetFiles};
use crate::torch::device::DeviceArg;
use crate::torch::{DEFAULT_BATCH, InputSpec, Prober, parse_rgb};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Decode, resize and center-crop images into a probe set file, in a fixed order.
    Build(BuildArgs),
    /// Show a probe set file's size, fingerprint and names.
    Info(InfoArgs),
    /// Run a TorchScript image encoder (CLIP's image tower) on the probes and store the
    /// embeddings in an index, for `search --text` (needs libtorch: the `torch` feature).
    Embed(EmbedArgs),
    /// Store the index's probe set file in the index, so that the index ships on its own.
    Attach(embedded::AttachArgs),
    /// Write the probe set embedded in an index out as a .pset file, byte for byte.
    Extract(embedded::ExtractArgs),
}

#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// Directory of images (.png, .jpg, .jpeg, .webp; searched recursively). Probes are named
    /// by their path relative to it and ordered by name, unless --list gives the order.
    #[arg(long, value_name = "DIR")]
    pub images: PathBuf,
    /// The probe set file to write (replaced atomically if it exists); it may not be one of the
    /// inputs (--list, an image).
    #[arg(long, value_name = "FILE.pset")]
    pub out: PathBuf,
    /// Side of the square probes: the shorter image side is resized to it, then the center is
    /// cropped.
    #[arg(long, value_name = "S", default_value_t = 224,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(pset::MAX_SIZE)))]
    pub size: u32,
    /// Text file of image paths relative to DIR, one per line: exactly these, in this order (one
    /// final newline is allowed, blank lines and control characters are not).
    #[arg(long, value_name = "FILE")]
    pub list: Option<PathBuf>,
    /// Keep a random sample of N images (kept in their order).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub sample: Option<u32>,
    /// Seed of --sample.
    #[arg(long, value_name = "SEED", default_value_t = 0, requires = "sample")]
    pub seed: u64,
    /// Print the summary as a JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    /// The probe set file.
    pub pset: PathBuf,
    /// Print every probe name too.
    #[arg(long)]
    pub names: bool,
    /// Print a JSON object (it always holds the names).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct EmbedArgs {
    /// The index; it must have been created with this probe set.
    pub index: PathBuf,
    /// TorchScript image encoder: float32 [N, 3, S, S] RGB in [0, 1] (then --mean/--std) ->
    /// [N, d] embeddings.
    #[arg(long, value_name = "FILE.pt")]
    pub clip_image: PathBuf,
    /// The index's probe set file [default: the one embedded in the index].
    #[arg(long, value_name = "FILE.pset")]
    pub probes: Option<PathBuf>,
    /// Side of the encoder's input; the probes are resized to it [default: the probe set's].
    #[arg(long, value_name = "S",
          value_parser = clap::value_parser!(u32).range(1..=i64::from(pset::MAX_SIZE)))]
    pub input_size: Option<u32>,
    /// Per-channel mean subtracted after scaling to [0, 1] (CLIP: 0.48145466,0.4578275,0.40821073).
    #[arg(long, value_name = "R,G,B", value_parser = parse_rgb)]
    pub mean: Option<[f32; 3]>,
    /// Per-channel standard deviation divided by (CLIP: 0.26862954,0.26130258,0.27577711).
    #[arg(long, value_name = "R,G,B", value_parser = parse_rgb)]
    pub std: Option<[f32; 3]>,
    /// Probes per forward pass.
    #[arg(long, value_name = "B", default_value_t = DEFAULT_BATCH as u32,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub batch: u32,
    /// auto (CUDA device 0 when there is one, else the CPU), cpu, cuda or cuda:INDEX.
    #[arg(long, value_name = "DEVICE", default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
    #[command(flatten)]
    pub lock: crate::cmd::LockArgs,
    /// Print the summary as a JSON object.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> Result<()> {
    match args.command {
        Command::Build(a) => build(a),
        Command::Info(a) => info(a),
        Command::Embed(a) => embed(a),
        Command::Attach(a) => embedded::attach(a),
        Command::Extract(a) => embedded::extract(a),
    }
}

#[derive(Debug, Serialize)]
struct Summary<'a> {
    path: String,
    probes: usize,
    size: u32,
    fingerprint: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    names: Option<&'a [String]>,
}

impl<'a> Summary<'a> {
    fn new(path: &std::path::Path, set: &'a ProbeSet, names: bool) -> Self {
        Summary {
            path: path.display().to_string(),
            probes: set.len(),
            size: set.size(),
            fingerprint: set.id().fingerprint_hex(),
            names: names.then_some(set.names()),
        }
    }

    fn line(&self) -> String {
        format!(
            "{}: {} probes of {s}x{s} RGB, fingerprint {}",
            self.path,
            self.probes,
            self.fingerprint,
            s = self.size
        )
    }
}

fn build(args: BuildArgs) -> Result<()> {
    ensure!(
        args.images.is_dir(),
        "--images {} is not a directory",
        args.images.display()
    );
    let mut names = match &args.list {
        Some(list) => read_lines(list, "--list")?,
        None => pset::list_images(&args.images)?,
    };
    ensure!(
        !names.is_empty(),
        "no images (.png, .jpg, .jpeg, .webp) in {}",
        args.images.display()
    );
    if let Some(n) = args.sample {
        let n = n as usize;
        ensure!(
            n <= names.len(),
            "--sample {n} is more than the {} images available",
            names.len()
        );
        let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
        let mut keep = rand::seq::index::sample(&mut rng, names.len(), n).into_vec();
        keep.sort_unstable();
        names = keep
            .into_iter()
            .map(|i| std::mem::take(&mut names[i]))
            .collect();
    }
    let images: Vec<PathBuf> = names.iter().map(|n| args.images.join(n)).collect();
    let mut inputs: Vec<Role<'_>> = images.iter().map(|p| ("the image", p.as_path())).collect();
    if let Some(list) = &args.list {
        inputs.push(("--list", list));
    }
    refuse_outputs_over_inputs(&[("--out", &args.out)], &inputs)?;
    let bar = progress(names.len() as u64, "images");
    let set = pset::build(&args.images, names, args.size, &|| bar.inc(1))?;
    drop(bar);
    set.write(&args.out)?;
    let summary = Summary::new(&args.out, &set, false);
    print_summary(args.json, &summary, |summary| {
        outln!("wrote {}", summary.line())
    })
}

fn info(args: InfoArgs) -> Result<()> {
    let set = ProbeSet::read(&args.pset)?;
    let summary = Summary::new(&args.pset, &set, args.names || args.json);
    print_summary(args.json, &summary, |summary| {
        outln!("{}", summary.line())?;
        if args.names {
            for name in set.names() {
                outln!("{name}")?;
            }
        }
        Ok(())
    })
}

#[derive(Debug, Serialize)]
struct EmbedSummary {
    index: String,
    sequence: u64,
    probes: usize,
    dim: usize,
    /// The embeddings replaced earlier ones.
    replaced: bool,
    device: String,
    seconds: f64,
    images_per_second: f64,
}

fn embed(args: EmbedArgs) -> Result<()> {
    let mut inputs: Vec<Role<'_>> = vec![("--clip-image", &args.clip_image)];
    if let Some(probes) = &args.probes {
        inputs.push(("--probes", probes));
    }
    refuse_outputs_over_inputs(&[("the index", &args.index)], &inputs)?;
    input::require_regular(&args.clip_image, "--clip-image")?;
    let (origin, set) =
        pset::resolve(&args.index, args.probes.as_deref(), true)?.ok_or_else(|| {
            anyhow::anyhow!(
                "{} holds no probe set: give --probes FILE.pset (the one given to `create \
                 --probes`), or store it in the index with `probes attach`",
                args.index.display()
            )
        })?;
    let prober = Prober::new(set, args.device)?;
    let spec = InputSpec {
        size: args.input_size,
        mean: args.mean,
        std: args.std,
        batch: args.batch as usize,
    };
    let mut writer = with_writer_lock(&args.index, args.lock.no_wait, |wait| {
        IndexWriter::open(&args.index, wait)
    })?;
    let index_set = writer.probe_set();
    let id = prober.set().id();
    ensure!(
        id == index_set,
        "{origin}: this probe set ({id}) is not the one {} was created with ({index_set}); the \
         embeddings must be of the index's own probes",
        args.index.display()
    );
    let replaced = open_index(&args.index)?
        .probe_embeddings()
        .at(&args.index)?
        .is_some();
    let p = prober.set().len();
    let bar = progress(p.div_ceil(spec.batch) as u64, "batches");
    let embedded = prober
        .embed(&args.clip_image, &spec, &|| bar.inc(1))
        .map_err(|e| e.context(format!("--clip-image {}", args.clip_image.display())))?;
    drop(bar);
    writer
        .set_probe_embeddings(&embedded.logits, embedded.num_logits)
        .at(&args.index)?;
    let commit = writer.commit().at(&args.index)?;
    let secs = embedded.elapsed.as_secs_f64();
    let rate = p as f64 / secs.max(1e-9);
    let device = prober.device_name();
    eprintln!("embedded {p} images on {device} in {secs:.2} s ({rate:.1} images/s)");
    let summary = EmbedSummary {
        index: args.index.display().to_string(),
        sequence: commit.sequence,
        probes: p,
        dim: embedded.num_logits,
        replaced,
        device,
        seconds: secs,
        images_per_second: rate,
    };
    print_summary(args.json, &summary, |summary| {
        outln!(
            "{} the probe embeddings of {} ([{p}, {}]) at commit {}",
            if replaced { "replaced" } else { "stored" },
            summary.index,
            summary.dim,
            summary.sequence
        )
    })
}
