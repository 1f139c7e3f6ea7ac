//! `append`: stage one model (flags) or every model of a TOML manifest, then publish them with one
//! commit. A model is given by its logits (`.npy`) or as a TorchScript classifier (`.pt`) that is
//! run on a probe set file (needs the `torch` feature). If any model is refused, nothing is
//! committed, unless `--skip-failed` leaves the refused ones out and commits the others.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use clap::ArgGroup;
use probelog::collab::{
    self, CollabOptions, DEFAULT_ADAPTIVE_SHARE, ModelDetails, ProbePlan, ProbeRows, Round,
    probe_batch,
};
use probelog::writer::ExistingName;
use probelog::{AppendOptions, IndexWriter, LogitMatrix, ModelAdded, ModelInput, ProbeSetId};
use serde::{Deserialize, Serialize};

use super::{LibResult, parse_fingerprint, parse_key_value, read_lines, with_writer_lock};
use crate::input::{self, check_printable};
use crate::npy;
use crate::output::{Progress, excerpt, no_progress, outln, print_summary, progress};
use crate::paths::{Role, refuse_outputs_over_inputs};
use crate::pset::ProbeSet;
use crate::torch::device::DeviceArg;
use crate::torch::{DEFAULT_BATCH, InputSpec, Prober, parse_rgb};

mod manifest;
mod rows;
mod summary;

pub use manifest::check_input_settings;
use manifest::*;
use rows::*;
use summary::*;

#[derive(Debug, clap::Args)]
#[command(group(ArgGroup::new("input").required(true).args(["logits", "manifest", "model"])))]
pub struct Args {
    /// The index to append to.
    pub index: PathBuf,
    #[command(flatten)]
    pub graph: super::GraphArgs,
    /// float32/float64 .npy of shape [P, L]: the model's L logits on each of the P probes.
    #[arg(long, value_name = "FILE.npy", requires = "name")]
    pub logits: Option<PathBuf>,
    /// Name of the model, reported in search results; no control characters (newlines, tabs).
    /// Names may repeat: results tell models apart by id.
    #[arg(long, conflicts_with = "manifest")]
    pub name: Option<String>,
    /// Where the model came from (a path, a hub id).
    #[arg(long, value_name = "S", conflicts_with = "manifest")]
    pub source: Option<String>,
    /// Text file with one class label per logit (L lines; one final newline is allowed, a blank
    /// line or a control character is an error naming its line).
    #[arg(long, value_name = "FILE", conflicts_with = "manifest")]
    pub labels: Option<PathBuf>,
    /// A metadata pair stored with the model; repeat for more.
    #[arg(long = "meta", value_name = "KEY=VALUE", value_parser = parse_key_value, conflicts_with = "manifest")]
    pub meta: Vec<(String, String)>,
    /// TorchScript classifier to run on the probes of --probes (input float32 [N, 3, S, S] RGB
    /// in [0, 1], output [N, L] logits). Name: the file stem unless --name. Needs the `torch`
    /// feature.
    #[arg(long, value_name = "FILE.pt", conflicts_with_all = ["logits", "manifest"])]
    pub model: Option<PathBuf>,
    /// TOML file of [[model]] tables (keys: logits or model, name, source, labels, meta, and for
    /// a model input_size, mean, std, batch), all appended in one commit. Relative paths resolve
    /// against the manifest's directory (they may lead out of it, as ../x.npy); absolute paths are
    /// used as they are. Names may repeat (models are told apart by id) but hold no control
    /// characters.
    #[arg(long, value_name = "FILE.toml", conflicts_with = "logits")]
    pub manifest: Option<PathBuf>,
    /// Probe set file the index was created with (`create --probes`): the probes --model runs
    /// on. Appends are refused unless it is the index's probe set.
    #[arg(long, value_name = "FILE.pset", conflicts_with = "probe_fingerprint")]
    pub probes: Option<PathBuf>,
    /// Side of the model's square input, when it is not the probe set's: the stored probes are
    /// resized to it (bilinear).
    #[arg(long, value_name = "S", value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub input_size: Option<u32>,
    /// Per-channel mean subtracted after scaling pixels to [0, 1] (e.g. 0.485,0.456,0.406).
    #[arg(long, value_name = "R,G,B", value_parser = parse_rgb)]
    pub mean: Option<[f32; 3]>,
    /// Per-channel standard deviation divided by after --mean (e.g. 0.229,0.224,0.225).
    #[arg(long, value_name = "R,G,B", value_parser = parse_rgb)]
    pub std: Option<[f32; 3]>,
    /// Probes per forward pass.
    #[arg(long, value_name = "B", value_parser = clap::value_parser!(u32).range(1..))]
    pub batch: Option<u32>,
    /// Where to run models: auto (CUDA when libtorch sees a device, else the CPU), cpu, cuda,
    /// cuda:INDEX.
    #[arg(long, value_name = "DEVICE", default_value = "auto")]
    pub device: DeviceArg,
    /// In a manifest, leave out the models that fail (to load, to run, or are refused by the
    /// index), commit the others, name the failures and exit with status 1.
    #[arg(long, requires = "manifest")]
    pub skip_failed: bool,
    /// Append only slice I (from 0) of N of the manifest: its models
    /// [floor(I*len/N), floor((I+1)*len/N)) in manifest order, so that N jobs (a job array) each
    /// fill an index of their own and `merge` of those indexes in shard order holds the models in
    /// the order of one sequential append. An empty slice (N over the model count) appends nothing.
    #[arg(long, value_name = "I/N", value_parser = parse_shard)]
    pub shard: Option<Shard>,
    /// Store logits that are constant over the probes as all-zero descriptors instead of refusing
    /// the model.
    #[arg(long)]
    pub keep_constant: bool,
    /// A new version: delete the live model of the same name in the same commit (readers see the
    /// old model or the new, never both or neither). Without it a name that a live model has is
    /// refused. A manifest entry may say `replace = true` itself.
    #[arg(long, conflicts_with = "keep_duplicate_names")]
    pub replace: bool,
    /// Keep a new model whose name a live model has already, as a second model of that name.
    #[arg(long)]
    pub keep_duplicate_names: bool,
    /// Fingerprint (64 hex digits) of the probe set the logits were computed on; refused unless it
    /// is the index's.
    #[arg(long, value_name = "HEX64", value_parser = parse_fingerprint)]
    pub probe_fingerprint: Option<[u8; 32]>,
    /// Collaborative probing: run each model (--model) on only this fraction of the probes and
    /// complete the rest from low-rank probe factors stored in the index (fitted on this commit
    /// when the index has none yet). The probes are a seeded random subset per model, then (see
    /// --adaptive-share) the probes where its completion from that subset is highest. With
    /// --logits the file still holds all P rows and only the chosen rows are used.
    #[arg(long, value_name = "F")]
    pub probe_fraction: Option<f64>,
    /// Share of --probe-fraction's budget run in a second, adaptive round: after every model ran
    /// its random subset, each runs the probes where its completion predicts its logits highest
    /// (the logits taking turns). 0 keeps the paper's purely random subsets.
    #[arg(
        long,
        value_name = "S",
        default_value_t = DEFAULT_ADAPTIVE_SHARE,
        requires = "probe_fraction"
    )]
    pub adaptive_share: f64,
    /// Seed of the probe subsets: model i of the manifest (from 0) uses seed + i; with --shard, i
    /// is still the model's position in the whole manifest.
    #[arg(
        long,
        value_name = "S",
        default_value_t = 0,
        requires = "probe_fraction"
    )]
    pub seed: u64,
    /// Rank of the probe factors, when this commit fits them.
    #[arg(long, value_name = "R", default_value_t = CollabOptions::default().rank, requires = "probe_fraction")]
    pub rank: usize,
    /// Ridge regularization of the low-rank completion, when this commit fits the factors (a
    /// finite number > 0).
    #[arg(long, value_name = "L", default_value_t = CollabOptions::default().lambda, value_parser = super::parse_lambda, requires = "probe_fraction")]
    pub lambda: f32,
    #[command(flatten)]
    pub lock: crate::cmd::LockArgs,
    /// Print the summary as a JSON object.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> Result<()> {
    let cli_input = InputOverrides {
        size: args.input_size,
        mean: args.mean,
        std: args.std,
        batch: args.batch,
    };
    let specs = match (&args.manifest, &args.logits, &args.model) {
        (Some(manifest), _, _) => read_manifest(manifest, cli_input)?,
        (None, Some(logits), _) => vec![ModelSpec {
            name: args.name.clone().unwrap_or_default(),
            source: args.source.clone().unwrap_or_default(),
            input: ModelSource::Logits(logits.clone()),
            labels: args.labels.clone(),
            meta: args.meta.clone(),
            replace: false,
        }],
        (None, None, Some(model)) => vec![ModelSpec {
            name: match &args.name {
                Some(name) => name.clone(),
                None => file_stem(model)?,
            },
            source: args.source.clone().unwrap_or_default(),
            input: ModelSource::TorchScript(
                model.clone(),
                cli_input.over(InputOverrides::default()),
            ),
            labels: args.labels.clone(),
            meta: args.meta.clone(),
            replace: false,
        }],
        (None, None, None) => bail!(
            "give the model with --logits FILE.npy --name NAME, --model FILE.pt --probes \
             FILE.pset, or --manifest FILE.toml"
        ),
    };
    for spec in &specs {
        check_meta_keys(spec)?;
    }
    // The manifest's length, and the position in it of the first model appended here.
    let (total, offset) = (
        specs.len(),
        args.shard.map_or(0, |x| x.range(specs.len()).start),
    );
    let specs = match args.shard {
        Some(shard) => {
            let manifest = args.manifest.as_deref().with_context(|| {
                format!(
                    "--shard {shard} slices a manifest: give the models with --manifest FILE.toml"
                )
            })?;
            let range = shard.range(total);
            if range.is_empty() {
                return report_empty_shard(&args.index, manifest, shard, total, args.json);
            }
            specs[range].to_vec()
        }
        None => specs,
    };
    if args.manifest.is_none() {
        check_printable(&specs[0].name, "--name")?;
    }
    refuse_inputs_that_are_the_index(&args, &specs)?;
    let probes_models = specs
        .iter()
        .any(|s| matches!(s.input, ModelSource::TorchScript(..)));
    // --probes, else the probe set embedded in the index (refused when the two differ).
    let pset = crate::pset::resolve(&args.index, args.probes.as_deref(), probes_models)?;
    let prober = match pset {
        Some((_, set)) if probes_models => Some(Prober::new(set, args.device)?),
        Some(_) => None,
        None if probes_models => bail!(
            "running a TorchScript model needs the probe set: add --probes FILE.pset (the one \
             given to `create --probes`), or store it in the index with `probes attach`"
        ),
        None => None,
    };

    let mut writer = with_writer_lock(&args.index, args.lock.no_wait, |wait| {
        IndexWriter::open(&args.index, wait)
    })?;
    writer
        .set_ann_options(args.graph.options())
        .at(&args.index)?;
    let index_set = writer.probe_set();
    let given_set = match (&args.probes, &prober) {
        (Some(path), Some(prober)) => Some((path, prober.set().id())),
        (Some(path), None) => Some((path, ProbeSet::read(path)?.id())),
        _ => None,
    };
    if let Some((path, id)) = given_set {
        ensure!(
            id == index_set,
            "{}: this probe set ({id}) is not the one {} was created with ({index_set}); models \
             must be probed with the index's own probe set",
            path.display(),
            args.index.display()
        );
    }
    let opts = AppendOptions {
        keep_constant: args.keep_constant,
        existing_name: if args.replace {
            ExistingName::Replace
        } else if args.keep_duplicate_names {
            ExistingName::Keep
        } else {
            ExistingName::Refuse
        },
        probe_set: given_set
            .map(|(_, id)| id)
            .or(args.probe_fingerprint.map(|fingerprint| ProbeSetId {
                num_probes: index_set.num_probes,
                fingerprint,
            })),
    };
    let plan = match args.probe_fraction {
        // Checks the fraction and the share before anything is staged. Model i of the manifest
        // (with --shard too) draws its random subset with seed + i.
        Some(fraction) => Some(
            ProbePlan::new(
                index_set.num_probes as usize,
                fraction,
                args.adaptive_share,
                args.seed + offset as u64,
                CollabOptions {
                    rank: args.rank,
                    lambda: args.lambda,
                    seed: args.seed,
                    ..CollabOptions::default()
                },
            )
            .plain()?,
        ),
        None => None,
    };
    let bar = progress_for(&specs, prober.as_ref(), plan, args.manifest.is_some());
    let mut probing = Throughput::default();
    let mut added = Vec::with_capacity(specs.len());
    let mut skipped = Vec::new();
    // A refused model: left out under --skip-failed, else the end of the command.
    let refuse =
        |i: usize, spec: &ModelSpec, e: anyhow::Error, skipped: &mut Vec<Skipped>| match &args
            .manifest
        {
            Some(_) if args.skip_failed => {
                skipped.push(Skipped {
                    name: spec.name.clone(),
                    error: format!("{e:#}"),
                    entry: offset + i + 1,
                });
                Ok(())
            }
            Some(manifest) => Err(e.context(format!(
                "model {:?} ({} of {} in {}) was refused, nothing was committed",
                spec.name,
                offset + i + 1,
                total,
                manifest.display()
            ))),
            None => Err(e),
        };
    // Models given as logits move the bar once each; probed models move it by batches.
    let tick = |spec: &ModelSpec| {
        if !matches!(spec.input, ModelSource::TorchScript(..)) {
            bar.inc(1);
        }
    };
    let p = index_set.num_probes as usize;
    match plan {
        // Collaborative probing: the library's policy picks each round's probes.
        Some(plan) => {
            let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
            let mut refuse_model = |i: usize, e| refuse(i, &specs[i], e, &mut skipped);
            let mut collab = CliProber {
                specs: &specs,
                p,
                prober: prober.as_ref(),
                bar: &bar,
                probing: &mut probing,
                refuse: &mut refuse_model,
                tick: &tick,
            };
            let staged =
                probe_batch(&mut writer, &names, opts, &plan, &mut collab).map_err(|e| e.0)?;
            added.extend(
                staged
                    .into_iter()
                    .map(|s| (specs[s.model].name.clone(), s.added)),
            );
        }
        None => {
            for (i, spec) in specs.iter().enumerate() {
                bar.set_message(spec.name.clone());
                let staged = read_rows(spec, p, prober.as_ref(), None, &bar, &mut probing, false)
                    .and_then(|rows| stage_rows(&mut writer, spec, opts, rows));
                match staged {
                    Ok(a) => added.push((spec.name.clone(), a)),
                    Err(e) => refuse(i, spec, e, &mut skipped)?,
                }
                tick(spec);
            }
        }
    }
    drop(bar);
    if added.is_empty() {
        bail!(
            "{}; nothing was committed",
            skipped_line(&skipped, specs.len(), args.manifest.as_deref())
        );
    }
    let commit = writer.commit().at(&args.index)?;
    if let Some(prober) = &prober {
        probing.report(&prober.device_name());
    }

    let summary = Summary {
        index: args.index.display().to_string(),
        sequence: commit.sequence,
        models_added: commit.models_added,
        entries_added: commit.entries_added,
        model_count: commit.model_count,
        entry_count: commit.entry_count,
        bytes_written: commit.bytes_written,
        models: added
            .into_iter()
            .map(|(name, a)| AddedModel {
                id: a.model_id,
                name,
                first_entry: a.first_entry,
                logits: a.logits,
                constant_logits: a.constant_logits,
            })
            .collect(),
        skipped,
        shard: args.shard.map(|shard| ShardReport::new(shard, total)),
    };
    print_summary(args.json, &summary, |summary| outln!("{}", summary.line()))?;
    ensure!(
        summary.skipped.is_empty(),
        "{}; the other models were committed",
        skipped_line(&summary.skipped, specs.len(), args.manifest.as_deref())
    );
    Ok(())
}

/// A bar over probing batches when models are run, else over models of a manifest.
fn progress_for(
    specs: &[ModelSpec],
    prober: Option<&Prober>,
    plan: Option<ProbePlan>,
    manifest: bool,
) -> Progress {
    let batches: u64 = specs
        .iter()
        .map(|s| match (&s.input, prober) {
            (ModelSource::TorchScript(_, spec), Some(p)) => {
                // Each round runs in batches of its own.
                let batches = |n: usize| n.div_ceil(spec.batch) as u64;
                plan.map_or(batches(p.set().len()), |x| {
                    batches(x.random) + batches(x.adaptive)
                })
            }
            _ => 1,
        })
        .sum();
    match (prober, manifest) {
        (Some(_), _) => progress(batches, "batches"),
        (None, true) => progress(specs.len() as u64, "models"),
        (None, false) => no_progress(),
    }
}

/// Refuses an input file (manifest, logits, labels, model, probe set) that is the index being
/// appended to: reading it as, say, labels is a mistake in the command line.
fn refuse_inputs_that_are_the_index(args: &Args, specs: &[ModelSpec]) -> Result<()> {
    let mut inputs: Vec<Role<'_>> = Vec::new();
    if let Some(m) = &args.manifest {
        inputs.push(("--manifest", m));
    }
    if let Some(p) = &args.probes {
        inputs.push(("--probes", p));
    }
    for spec in specs {
        match &spec.input {
            ModelSource::Logits(p) => inputs.push(("the logits", p)),
            ModelSource::TorchScript(p, _) => inputs.push(("the model", p)),
        }
        if let Some(l) = &spec.labels {
            inputs.push(("the labels", l));
        }
    }
    refuse_outputs_over_inputs(&[("the index", &args.index)], &inputs)
}
