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
use crate::output::{Progress, excerpt, no_progress, outln, print_json, progress};
use crate::paths::{Role, refuse_outputs_over_inputs};
use crate::pset::ProbeSet;
use crate::torch::device::DeviceArg;
use crate::torch::{DEFAULT_BATCH, InputSpec, Prober, parse_rgb};

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
    /// Fail at once if another writer holds the index instead of waiting for it.
    #[arg(long)]
    pub no_wait: bool,
    /// Print the summary as a JSON object.
    #[arg(long)]
    pub json: bool,
}

/// One model to append, with its inputs not loaded yet.
#[derive(Debug, Clone)]
struct ModelSpec {
    name: String,
    source: String,
    input: ModelSource,
    labels: Option<PathBuf>,
    meta: Vec<(String, String)>,
    /// `replace = true` in its manifest entry.
    replace: bool,
}

/// Where a model's logits come from.
#[derive(Debug, Clone)]
enum ModelSource {
    /// A `[P, L]` `.npy` file.
    Logits(PathBuf),
    /// A TorchScript classifier run on the probe set.
    TorchScript(PathBuf, InputSpec),
}

/// Input settings given on the command line or in a manifest table; unset ones fall back to
/// the command line's, then to the defaults.
#[derive(Debug, Clone, Copy, Default)]
struct InputOverrides {
    size: Option<u32>,
    mean: Option<[f32; 3]>,
    std: Option<[f32; 3]>,
    batch: Option<u32>,
}

impl InputOverrides {
    fn over(self, base: InputOverrides) -> InputSpec {
        InputSpec {
            size: self.size.or(base.size),
            mean: self.mean.or(base.mean),
            std: self.std.or(base.std),
            batch: self
                .batch
                .or(base.batch)
                .map_or(DEFAULT_BATCH, |b| b as usize),
        }
    }
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

    let mut writer = with_writer_lock(&args.index, args.no_wait, |wait| {
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
    if args.json {
        print_json(&summary)?;
    } else {
        outln!("{}", summary.line())?;
    }
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

/// `skipped 2 of 5 models: "a" (model 1 of m.toml: why); "b" (model 4 of m.toml: why)`: each
/// failure names the manifest and the table it came from, not only the model.
fn skipped_line(skipped: &[Skipped], total: usize, manifest: Option<&Path>) -> String {
    let list: Vec<String> = skipped
        .iter()
        .map(|s| match manifest {
            Some(m) => format!(
                "{:?} (model {} of {}: {})",
                s.name,
                s.entry,
                m.display(),
                s.error
            ),
            None => format!("{:?} ({})", s.name, s.error),
        })
        .collect();
    format!(
        "skipped {} of {total} models: {}",
        skipped.len(),
        list.join("; ")
    )
}

/// Images per second over every model probed.
#[derive(Debug, Default)]
struct Throughput {
    models: usize,
    images: usize,
    elapsed: std::time::Duration,
}

impl Throughput {
    /// One line on stderr (stdout stays the summary).
    fn report(&self, device: &str) {
        if self.models == 0 {
            return;
        }
        let secs = self.elapsed.as_secs_f64();
        eprintln!(
            "probed {} {} on {device}: {} images in {secs:.2} s ({:.1} images/s)",
            self.models,
            if self.models == 1 { "model" } else { "models" },
            self.images,
            self.images as f64 / secs.max(1e-9)
        );
    }
}

/// Loads (or computes) one model's logits on the probes `observed` (all `p` when `None`), row
/// `i` for probe `observed[i]`. A second round of the same model passes `again` (its images count
/// in `probing`, the model does not).
fn read_rows(
    spec: &ModelSpec,
    p: usize,
    prober: Option<&Prober>,
    observed: Option<&[u32]>,
    bar: &Progress,
    probing: &mut Throughput,
    again: bool,
) -> Result<ProbeRows> {
    match &spec.input {
        ModelSource::Logits(path) => {
            let m = npy::read_matrix(path, "[probes, logits]")?;
            if m.rows != p && m.cols == p {
                bail!(
                    "{}: shape [{}, {}] looks transposed: logits must be [probes, logits], i.e. [{p}, {}] for this index",
                    path.display(),
                    m.rows,
                    m.cols,
                    m.rows
                );
            }
            match observed {
                None => Ok(ProbeRows {
                    data: m.data,
                    rows: m.rows,
                    logits: m.cols,
                }),
                Some(observed) => {
                    ensure!(
                        m.rows == p,
                        "model {:?}: --probe-fraction takes the logits on all {p} probes, got {} rows",
                        spec.name,
                        m.rows
                    );
                    let data = observed
                        .iter()
                        .flat_map(|&q| &m.data[q as usize * m.cols..(q as usize + 1) * m.cols])
                        .copied()
                        .collect();
                    Ok(ProbeRows {
                        data,
                        rows: observed.len(),
                        logits: m.cols,
                    })
                }
            }
        }
        ModelSource::TorchScript(path, input) => {
            let prober = prober.context("a TorchScript model needs --probes FILE.pset")?;
            input::require_regular(path, &format!("the model file of {:?}", spec.name))?;
            let out = prober
                .probe(path, input, observed, &|| bar.inc(1))
                .with_context(|| format!("model {:?} ({})", spec.name, path.display()))?;
            probing.models += usize::from(!again);
            probing.images += out.probes;
            probing.elapsed += out.elapsed;
            Ok(ProbeRows {
                data: out.logits,
                rows: out.probes,
                logits: out.num_logits,
            })
        }
    }
}

/// A model's source, metadata and labels (read from its labels file), as the writer stores them.
fn details(spec: &ModelSpec) -> Result<ModelDetails> {
    let labels = spec
        .labels
        .as_deref()
        .map(|path| read_lines(path, &format!("the labels of model {:?}", spec.name)))
        .transpose()?;
    Ok(ModelDetails {
        source: spec.source.clone(),
        meta: spec.meta.clone(),
        labels,
        existing_name: spec.replace.then_some(ExistingName::Replace),
    })
}

/// Stages one model probed on every probe.
fn stage_rows(
    writer: &mut IndexWriter,
    spec: &ModelSpec,
    opts: AppendOptions,
    rows: ProbeRows,
) -> Result<ModelAdded> {
    let details = details(spec)?;
    let input = ModelInput {
        name: spec.name.clone(),
        source: details.source,
        meta: details.meta,
        labels: details.labels,
        logits: LogitMatrix::new(&rows.data, rows.rows, rows.logits).plain()?,
    };
    let opts = AppendOptions {
        existing_name: details.existing_name.unwrap_or(opts.existing_name),
        ..opts
    };
    writer.add_model(input, opts).plain()
}

/// An error of the command in the library's collaborative-probing policy: library errors are
/// rendered as the command renders them elsewhere.
struct CliError(anyhow::Error);

impl From<probelog::Error> for CliError {
    fn from(e: probelog::Error) -> Self {
        CliError(Err::<(), _>(e).plain().unwrap_err())
    }
}

/// The command's side of `--probe-fraction`: loads or runs each model on the probes the policy
/// asks for, reads its labels when it is staged, leaves refused models out under --skip-failed
/// and moves the bar.
struct CliProber<'a> {
    specs: &'a [ModelSpec],
    p: usize,
    prober: Option<&'a Prober>,
    bar: &'a Progress,
    probing: &'a mut Throughput,
    refuse: &'a mut dyn FnMut(usize, anyhow::Error) -> Result<()>,
    tick: &'a dyn Fn(&ModelSpec),
}

impl collab::Prober for CliProber<'_> {
    type Error = CliError;

    fn run(&mut self, model: usize, round: Round, probes: &[u32]) -> Result<ProbeRows, CliError> {
        read_rows(
            &self.specs[model],
            self.p,
            self.prober,
            Some(probes),
            self.bar,
            self.probing,
            round == Round::Adaptive,
        )
        .map_err(CliError)
    }

    fn details(&mut self, model: usize) -> Result<ModelDetails, CliError> {
        details(&self.specs[model]).map_err(CliError)
    }

    fn refused(&mut self, model: usize, error: CliError) -> Result<(), CliError> {
        (self.refuse)(model, error.0).map_err(CliError)
    }

    fn started(&mut self, model: usize, _: Round) {
        self.bar.set_message(self.specs[model].name.clone());
    }

    fn finished(&mut self, model: usize) {
        (self.tick)(&self.specs[model]);
    }
}

fn check_meta_keys(spec: &ModelSpec) -> Result<()> {
    for (i, (k, _)) in spec.meta.iter().enumerate() {
        ensure!(
            !spec.meta[..i].iter().any(|(seen, _)| seen == k),
            "model {:?}: metadata key {k:?} is given twice",
            spec.name
        );
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    #[serde(default)]
    model: Vec<ManifestModel>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestModel {
    /// Exactly one of `logits` and `model`.
    logits: Option<PathBuf>,
    model: Option<PathBuf>,
    input_size: Option<u32>,
    mean: Option<[f32; 3]>,
    std: Option<[f32; 3]>,
    batch: Option<u32>,
    name: Option<String>,
    #[serde(default)]
    source: String,
    labels: Option<PathBuf>,
    #[serde(default)]
    meta: toml::Table,
    /// Replace the live model of the same name (`append --replace` for this entry).
    #[serde(default)]
    replace: bool,
}

fn read_manifest(path: &Path, cli_input: InputOverrides) -> Result<Vec<ModelSpec>> {
    let text = input::read_text(path, "--manifest")?;
    let manifest: Manifest = toml::from_str(&text).map_err(|e| {
        // The TOML error renders over several lines; keep its message and locate it ourselves.
        let at = e.span().map_or(String::new(), |span| {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: ")
        });
        anyhow::anyhow!("{}: {at}{}", path.display(), excerpt(e.message().trim()))
    })?;
    ensure!(
        !manifest.model.is_empty(),
        "{}: the manifest lists no models (expected [[model]] tables)",
        path.display()
    );
    let base = path.parent().unwrap_or(Path::new(""));
    manifest
        .model
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            let file = match (&m.logits, &m.model) {
                (Some(file), None) | (None, Some(file)) => file.clone(),
                _ => bail!(
                    "{}: model {} must give exactly one of `logits` (a .npy) and `model` (a .pt)",
                    path.display(),
                    i + 1
                ),
            };
            let name = match m.name.clone() {
                Some(name) => name,
                None => file_stem(&file)
                    .with_context(|| format!("{}: model {} has no name", path.display(), i + 1))?,
            };
            let entry = format!(
                "{}: model {} ({})",
                path.display(),
                i + 1,
                excerpt(&format!("{name:?}"))
            );
            check_printable(&name, &format!("{}: model {}: name", path.display(), i + 1))?;
            check_input_settings(m.mean, m.std, m.input_size, m.batch, &entry)?;
            let overrides = InputOverrides {
                size: m.input_size,
                mean: m.mean,
                std: m.std,
                batch: m.batch,
            };
            let input = match m.model {
                Some(model) => {
                    ModelSource::TorchScript(base.join(model), overrides.over(cli_input))
                }
                None => {
                    ensure!(
                        overrides.size.is_none()
                            && overrides.mean.is_none()
                            && overrides.std.is_none()
                            && overrides.batch.is_none(),
                        "{}: model {name:?}: input_size, mean, std and batch apply to `model` \
                         (TorchScript) entries only",
                        path.display()
                    );
                    ModelSource::Logits(base.join(file))
                }
            };
            let meta = m
                .meta
                .into_iter()
                .map(|(k, v)| match v {
                    toml::Value::String(s) => Ok((k, s)),
                    other => bail!(
                        "{}: model {name:?}: meta value {k:?} must be a string, got {}",
                        path.display(),
                        other.type_str()
                    ),
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(ModelSpec {
                source: m.source,
                input,
                labels: m.labels.map(|l| base.join(l)),
                meta,
                name,
                replace: m.replace,
            })
        })
        .collect()
}

/// Checks a manifest table's input settings (`entry` names the manifest file and the table):
/// TOML reads `nan` and `inf` as numbers, which would only fail much later, naming the model alone.
/// `eval --raw-manifest` reads the same tables.
pub(super) fn check_input_settings(
    mean: Option<[f32; 3]>,
    std: Option<[f32; 3]>,
    input_size: Option<u32>,
    batch: Option<u32>,
    entry: &str,
) -> Result<()> {
    for (key, rgb) in [("mean", mean), ("std", std)] {
        if let Some(rgb) = rgb {
            ensure!(
                rgb.iter().all(|v| v.is_finite()),
                "{entry}: {key} = {rgb:?} holds a value that is not a finite number"
            );
        }
    }
    if let Some(std) = std {
        ensure!(
            std.iter().all(|&v| v != 0.0),
            "{entry}: std = {std:?} holds a zero (the pixels are divided by it)"
        );
    }
    if let Some(size) = input_size {
        ensure!(
            (1..=4096).contains(&size),
            "{entry}: input_size = {size} is out of range 1..=4096"
        );
    }
    ensure!(
        batch != Some(0),
        "{entry}: batch = 0; it must be at least 1"
    );
    Ok(())
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

/// A model's default name: its file's stem.
fn file_stem(path: &Path) -> Result<String> {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .with_context(|| format!("{} has no file name to name the model by", path.display()))
}

#[derive(Debug, Serialize)]
struct Skipped {
    name: String,
    error: String,
    /// Its position in the manifest (from 1), for the message.
    #[serde(skip)]
    entry: usize,
}

#[derive(Debug, Serialize)]
struct Summary {
    index: String,
    sequence: u64,
    models_added: u64,
    entries_added: u64,
    model_count: u64,
    entry_count: u64,
    bytes_written: u64,
    models: Vec<AddedModel>,
    /// Models left out by --skip-failed.
    skipped: Vec<Skipped>,
    /// With --shard: the slice of the manifest appended.
    #[serde(skip_serializing_if = "Option::is_none")]
    shard: Option<ShardReport>,
}

/// `--shard I/N`: slice `index` (from 0) of `count` contiguous slices of a manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    index: u64,
    count: u64,
}

impl Shard {
    /// The models of this slice among `len`: `[floor(index*len/count), floor((index+1)*len/count))`.
    /// The slices of `0..count` are disjoint, in order, and cover `0..len`.
    fn range(self, len: usize) -> std::ops::Range<usize> {
        let at = |i: u64| (u128::from(i) * len as u128 / u128::from(self.count)) as usize;
        at(self.index)..at(self.index + 1)
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Parses `--shard I/N`: `0 <= I < N`.
fn parse_shard(s: &str) -> std::result::Result<Shard, String> {
    let (i, n) = s
        .split_once('/')
        .ok_or_else(|| format!("expected I/N (slice I, from 0, of N), as 0/4; got {s:?}"))?;
    let number = |v: &str, what: &str| {
        v.trim().parse::<u64>().map_err(|_| {
            format!(
                "expected I/N (slice I, from 0, of N), as 0/4; {what} {v:?} is not a whole number"
            )
        })
    };
    let (index, count) = (number(i, "I")?, number(n, "N")?);
    if count == 0 {
        return Err(format!("{s}: the shard count N must be at least 1"));
    }
    if index >= count {
        return Err(format!(
            "{s}: the shard index I must be below N (0 to {})",
            count - 1
        ));
    }
    Ok(Shard { index, count })
}

/// The `shard` object of the summary: which slice, and its models' positions in the manifest
/// (from 0, `end_model` excluded).
#[derive(Debug, Serialize)]
struct ShardReport {
    index: u64,
    count: u64,
    first_model: usize,
    end_model: usize,
    manifest_models: usize,
}

impl ShardReport {
    fn new(shard: Shard, total: usize) -> Self {
        let range = shard.range(total);
        ShardReport {
            index: shard.index,
            count: shard.count,
            first_model: range.start,
            end_model: range.end,
            manifest_models: total,
        }
    }

    /// `shard 1/4: models 3 to 5 of 12`, or `shard 5/8: no models of 4`.
    fn line(&self) -> String {
        if self.first_model == self.end_model {
            format!(
                "shard {}/{}: no models of {} (more shards than models)",
                self.index, self.count, self.manifest_models
            )
        } else {
            format!(
                "shard {}/{}: models {} to {} of {}, from 0",
                self.index,
                self.count,
                self.first_model,
                self.end_model - 1,
                self.manifest_models
            )
        }
    }
}

/// `--shard` whose slice holds no model: nothing is appended (the index is only checked), which
/// is not an error, so that every task of a job array may run the same command.
fn report_empty_shard(
    index: &Path,
    manifest: &Path,
    shard: Shard,
    total: usize,
    json: bool,
) -> Result<()> {
    let opened = super::open_index(index)?;
    let summary = Summary {
        index: index.display().to_string(),
        sequence: opened.sequence(),
        models_added: 0,
        entries_added: 0,
        model_count: opened.model_count(),
        entry_count: opened.entry_count(),
        bytes_written: 0,
        models: Vec::new(),
        skipped: Vec::new(),
        shard: Some(ShardReport::new(shard, total)),
    };
    if json {
        print_json(&summary)
    } else {
        outln!(
            "appended nothing to {}: {} in {}; it holds {} models",
            summary.index,
            summary
                .shard
                .as_ref()
                .map(ShardReport::line)
                .unwrap_or_default(),
            manifest.display(),
            summary.model_count
        )?;
        Ok(())
    }
}

#[derive(Debug, Serialize)]
struct AddedModel {
    id: u64,
    name: String,
    first_entry: u64,
    logits: u32,
    constant_logits: u32,
}

impl Summary {
    fn line(&self) -> String {
        let constant: u32 = self.models.iter().map(|m| m.constant_logits).sum();
        let note = if constant > 0 {
            format!("; {constant} constant logits stored as zero descriptors")
        } else {
            String::new()
        };
        let shard = self
            .shard
            .as_ref()
            .map_or(String::new(), |x| format!(" ({})", x.line()));
        format!(
            "appended {} {} ({} entries) to {} at commit {}{shard}; it now holds {} models, {} entries{note}",
            self.models_added,
            if self.models_added == 1 {
                "model"
            } else {
                "models"
            },
            self.entries_added,
            self.index,
            self.sequence,
            self.model_count,
            self.entry_count,
        )
    }
}
