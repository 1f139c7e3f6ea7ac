//! `probes`: build a probe set file (`.pset`) from a directory of images, or describe one.

use std::path::PathBuf;

use anyhow::{Result, ensure};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::read_lines;
use crate::output::{outln, print_json, progress};
use crate::pset::{self, ProbeSet};

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
}

#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// Directory of images (.png, .jpg, .jpeg, .webp; searched recursively). Probes are named
    /// by their path relative to it and ordered by name, unless --list gives the order.
    #[arg(long, value_name = "DIR")]
    pub images: PathBuf,
    /// The probe set file to write (replaced atomically if it exists).
    #[arg(long, value_name = "FILE.pset")]
    pub out: PathBuf,
    /// Side of the square probes: the shorter image side is resized to it, then the center is
    /// cropped.
    #[arg(long, value_name = "S", default_value_t = 224,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(pset::MAX_SIZE)))]
    pub size: u32,
    /// Text file of image paths relative to DIR, one per line: exactly these, in this order.
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

pub fn run(args: Args) -> Result<()> {
    match args.command {
        Command::Build(a) => build(a),
        Command::Info(a) => info(a),
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
        Some(list) => read_lines(list)?
            .into_iter()
            .filter(|l| !l.trim().is_empty())
            .collect(),
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
    let bar = progress(names.len() as u64, "images");
    let set = pset::build(&args.images, names, args.size, &|| bar.inc(1))?;
    drop(bar);
    set.write(&args.out)?;
    let summary = Summary::new(&args.out, &set, false);
    if args.json {
        print_json(&summary)
    } else {
        outln!("wrote {}", summary.line())?;
        Ok(())
    }
}

fn info(args: InfoArgs) -> Result<()> {
    let set = ProbeSet::read(&args.pset)?;
    let summary = Summary::new(&args.pset, &set, args.names || args.json);
    if args.json {
        return print_json(&summary);
    }
    outln!("{}", summary.line())?;
    if args.names {
        for name in set.names() {
            outln!("{name}")?;
        }
    }
    Ok(())
}
