//! `create`: a new, empty index for a probe set.

use std::path::PathBuf;

use anyhow::{Result, bail, ensure};
use clap::ValueEnum;
use probelog::format::{MAX_PROBES, MIN_PROBES};
use probelog::{CreateOptions, Dtype, ProbeSetId};

use super::{LibResult, parse_fingerprint, read_lines};
use crate::npy;
use crate::output::{excerpt, human_bytes, outln};
use crate::paths::{Role, refuse_outputs_over_inputs};
use crate::pset::ProbeSet;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Path of the new index file; it must not exist yet.
    pub index: PathBuf,
    /// Number of probes (inputs) every model's logits are computed on: from 2 to 2^20.
    #[arg(long, value_name = "P", value_parser = parse_num_probes,
          required_unless_present = "probes")]
    pub num_probes: Option<u32>,
    /// Probe set file (from `probes build`): the index takes its probe count, names and
    /// fingerprint, and `append --model` refuses logits computed on any other probe set.
    #[arg(long, value_name = "FILE.pset",
          conflicts_with_all = ["num_probes", "probe_names", "probe_fingerprint"])]
    pub probes: Option<PathBuf>,
    /// Store the --probes file in the index too, byte for byte, so that the index alone is
    /// enough to probe models (`append --model` and `probes embed` then need no --probes, and
    /// `probes extract` gives the file back).
    #[arg(long, requires = "probes")]
    pub embed_probes: bool,
    /// Text file with one probe name per line, in probe order (P lines; one final newline is
    /// allowed, blank lines and control characters are not). Without --probe-fingerprint the
    /// probe set is identified by these names.
    #[arg(long, value_name = "FILE")]
    pub probe_names: Option<PathBuf>,
    /// float32/float64 .npy of shape [P, d]: image embeddings of the probes, for --text-embedding
    /// searches.
    #[arg(long, value_name = "FILE.npy")]
    pub probe_embeddings: Option<PathBuf>,
    /// Identity of the probe set as 64 hex digits; appends may name it to prove their logits
    /// come from the same probes. Default: derived from the probe names, else from P alone.
    #[arg(long, value_name = "HEX64", value_parser = parse_fingerprint)]
    pub probe_fingerprint: Option<[u8; 32]>,
    /// How descriptors are stored: f16 halves the file and costs a little precision.
    #[arg(long, value_enum, default_value_t = DtypeArg::F32)]
    pub dtype: DtypeArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DtypeArg {
    F32,
    F16,
}

impl From<DtypeArg> for Dtype {
    fn from(d: DtypeArg) -> Dtype {
        match d {
            DtypeArg::F32 => Dtype::F32,
            DtypeArg::F16 => Dtype::F16,
        }
    }
}

/// `--num-probes`: from [`MIN_PROBES`] to [`MAX_PROBES`], the probe counts an index can be
/// opened with.
fn parse_num_probes(s: &str) -> std::result::Result<u32, String> {
    let p: u32 = s
        .trim()
        .parse()
        .map_err(|_| format!("{} is not a probe count", excerpt(&format!("{s:?}"))))?;
    if p < MIN_PROBES {
        return Err(format!(
            "an index needs at least {MIN_PROBES} probes (descriptors are z-normalized over the \
             probes), got {p}"
        ));
    }
    if p > MAX_PROBES {
        return Err(format!(
            "an index holds at most {MAX_PROBES} probes, got {p}"
        ));
    }
    Ok(p)
}

pub fn run(args: Args) -> Result<()> {
    let inputs: Vec<Role<'_>> = [
        ("--probes", &args.probes),
        ("--probe-names", &args.probe_names),
        ("--probe-embeddings", &args.probe_embeddings),
    ]
    .into_iter()
    .filter_map(|(what, path)| path.as_deref().map(|p| (what, p)))
    .collect();
    refuse_outputs_over_inputs(&[("the new index", &args.index)], &inputs)?;
    ensure!(
        !args.embed_probes || args.probes.is_some(),
        "--embed-probes stores the probe set file in the index: give it with --probes FILE.pset"
    );
    let pset = args.probes.as_deref().map(ProbeSet::read).transpose()?;
    let num_probes = match (&pset, args.num_probes) {
        (Some(set), _) => set.id().num_probes,
        (None, Some(p)) => p,
        (None, None) => bail!("give --num-probes P or --probes FILE.pset"),
    };
    ensure!(
        (MIN_PROBES..=MAX_PROBES).contains(&num_probes),
        "{} gives {num_probes} probe{}; an index holds from {MIN_PROBES} (descriptors are \
         z-normalized over the probes) to {MAX_PROBES}",
        match &args.probes {
            Some(file) => format!("--probes {}", file.display()),
            None => "--num-probes".to_string(),
        },
        if num_probes == 1 { "" } else { "s" }
    );
    let p = num_probes as usize;
    let names = match &args.probe_names {
        Some(file) => {
            let names = read_lines(file, "--probe-names")?;
            ensure!(
                names.len() == p,
                "{} holds {} probe names (one per line), but --num-probes is {p}",
                file.display(),
                names.len()
            );
            Some(names)
        }
        None => None,
    };
    let embeddings = match &args.probe_embeddings {
        Some(file) => {
            let m = npy::read_matrix(file, "[probes, dim]")?;
            ensure!(
                m.rows == p,
                "{} has {} rows (shape [{}, {}]), but --num-probes is {p}: probe embeddings are [probes, dim]",
                file.display(),
                m.rows,
                m.rows,
                m.cols
            );
            ensure!(
                m.cols > 0,
                "{}: the embeddings have dimension 0",
                file.display()
            );
            Some((m.data, m.cols))
        }
        None => None,
    };
    let (probe_set, names) = match (&pset, args.probe_fingerprint, names) {
        (Some(set), _, _) => (set.id(), Some(set.names().to_vec())),
        (None, Some(fingerprint), names) => (
            ProbeSetId {
                num_probes,
                fingerprint,
            },
            names,
        ),
        (None, None, Some(names)) => (ProbeSetId::from_names(&names), Some(names)),
        (None, None, None) => (ProbeSetId::anonymous(num_probes), None),
    };
    let embedding_dim = embeddings.as_ref().map(|(_, d)| *d);
    let opts = CreateOptions {
        probe_set,
        dtype: args.dtype.into(),
        probe_names: names,
        probe_embeddings: embeddings,
        // `ProbeSet::read` accepts one encoding of each probe set only, so its bytes are the
        // file's bytes.
        embedded_probe_set: pset
            .as_ref()
            .filter(|_| args.embed_probes)
            .map(ProbeSet::to_bytes),
    };
    probelog::create(&args.index, &opts).at(&args.index)?;

    let mut extras = Vec::new();
    if opts.probe_names.is_some() {
        extras.push("probe names".to_string());
    }
    if let Some(d) = embedding_dim {
        extras.push(format!("probe embeddings (dim {d})"));
    }
    if let Some(bytes) = &opts.embedded_probe_set {
        extras.push(format!(
            "the probe set embedded ({})",
            human_bytes(bytes.len() as u64)
        ));
    }
    outln!(
        "created {}: {p} probes, dtype {}, fingerprint {}{}",
        args.index.display(),
        opts.dtype.name(),
        probe_set.fingerprint_hex(),
        if extras.is_empty() {
            String::new()
        } else {
            format!(", with {}", extras.join(" and "))
        }
    )?;
    Ok(())
}
