//! `append`: stage one model (flags) or every model of a TOML manifest, then publish them with one
//! commit. If any model is refused, nothing is committed.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use clap::ArgGroup;
use probelog::{AppendOptions, IndexWriter, LogitMatrix, ModelAdded, ModelInput, ProbeSetId};
use serde::{Deserialize, Serialize};

use super::{LibResult, parse_fingerprint, parse_key_value, read_lines, with_writer_lock};
use crate::npy;
use crate::output::{no_progress, outln, print_json, progress};

#[derive(Debug, clap::Args)]
#[command(group(ArgGroup::new("input").required(true).args(["logits", "manifest"])))]
pub struct Args {
    /// The index to append to.
    pub index: PathBuf,
    /// float32/float64 .npy of shape [P, L]: the model's L logits on each of the P probes.
    #[arg(long, value_name = "FILE.npy", requires = "name")]
    pub logits: Option<PathBuf>,
    /// Name of the model, reported in search results.
    #[arg(long, conflicts_with = "manifest")]
    pub name: Option<String>,
    /// Where the model came from (a path, a hub id).
    #[arg(long, value_name = "S", conflicts_with = "manifest")]
    pub source: Option<String>,
    /// Text file with one class label per logit (L lines).
    #[arg(long, value_name = "FILE", conflicts_with = "manifest")]
    pub labels: Option<PathBuf>,
    /// A metadata pair stored with the model; repeat for more.
    #[arg(long = "meta", value_name = "KEY=VALUE", value_parser = parse_key_value, conflicts_with = "manifest")]
    pub meta: Vec<(String, String)>,
    /// TOML file of [[model]] tables (keys: logits, name, source, labels, meta), all appended in
    /// one commit. Paths are relative to the manifest's directory.
    #[arg(long, value_name = "FILE.toml", conflicts_with = "logits")]
    pub manifest: Option<PathBuf>,
    /// Store logits that are constant over the probes as all-zero descriptors instead of refusing
    /// the model.
    #[arg(long)]
    pub keep_constant: bool,
    /// Fingerprint (64 hex digits) of the probe set the logits were computed on; refused unless it
    /// is the index's.
    #[arg(long, value_name = "HEX64", value_parser = parse_fingerprint)]
    pub probe_fingerprint: Option<[u8; 32]>,
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
    logits: PathBuf,
    labels: Option<PathBuf>,
    meta: Vec<(String, String)>,
}

pub fn run(args: Args) -> Result<()> {
    let specs = match (&args.manifest, &args.logits) {
        (Some(manifest), _) => read_manifest(manifest)?,
        (None, Some(logits)) => vec![ModelSpec {
            name: args.name.clone().unwrap_or_default(),
            source: args.source.clone().unwrap_or_default(),
            logits: logits.clone(),
            labels: args.labels.clone(),
            meta: args.meta.clone(),
        }],
        (None, None) => {
            bail!("give the model with --logits FILE.npy --name NAME, or --manifest FILE.toml")
        }
    };
    for spec in &specs {
        check_meta_keys(spec)?;
    }

    let mut writer = with_writer_lock(&args.index, args.no_wait, |wait| {
        IndexWriter::open(&args.index, wait)
    })?;
    let opts = AppendOptions {
        keep_constant: args.keep_constant,
        probe_set: args.probe_fingerprint.map(|fingerprint| ProbeSetId {
            num_probes: writer.probe_set().num_probes,
            fingerprint,
        }),
    };
    let bar = match &args.manifest {
        Some(_) => progress(specs.len() as u64, "models"),
        None => no_progress(),
    };
    let mut added = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        bar.set_message(spec.name.clone());
        let staged = stage(&mut writer, spec, opts);
        let staged = match &args.manifest {
            Some(manifest) => staged.with_context(|| {
                format!(
                    "model {:?} ({} of {} in {}) was refused, nothing was committed",
                    spec.name,
                    i + 1,
                    specs.len(),
                    manifest.display()
                )
            })?,
            None => staged?,
        };
        added.push((spec.name.clone(), staged));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let commit = writer.commit().at(&args.index)?;

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
    };
    if args.json {
        print_json(&summary)
    } else {
        outln!("{}", summary.line())?;
        Ok(())
    }
}

/// Loads one model's inputs and stages it.
fn stage(writer: &mut IndexWriter, spec: &ModelSpec, opts: AppendOptions) -> Result<ModelAdded> {
    let p = writer.probe_set().num_probes as usize;
    let m = npy::read_matrix(&spec.logits, "[probes, logits]")?;
    if m.rows != p && m.cols == p {
        bail!(
            "{}: shape [{}, {}] looks transposed: logits must be [probes, logits], i.e. [{p}, {}] for this index",
            spec.logits.display(),
            m.rows,
            m.cols,
            m.rows
        );
    }
    let labels = spec.labels.as_deref().map(read_lines).transpose()?;
    let input = ModelInput {
        name: spec.name.clone(),
        source: spec.source.clone(),
        meta: spec.meta.clone(),
        labels,
        logits: LogitMatrix::new(&m.data, m.rows, m.cols).plain()?,
    };
    writer.add_model(input, opts).plain()
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
    logits: PathBuf,
    name: Option<String>,
    #[serde(default)]
    source: String,
    labels: Option<PathBuf>,
    #[serde(default)]
    meta: toml::Table,
}

fn read_manifest(path: &Path) -> Result<Vec<ModelSpec>> {
    let text =
        fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let manifest: Manifest = toml::from_str(&text).map_err(|e| {
        // The TOML error renders over several lines; keep its message and locate it ourselves.
        let at = e.span().map_or(String::new(), |span| {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: ")
        });
        anyhow::anyhow!("{}: {at}{}", path.display(), e.message().trim())
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
            let name = match m.name {
                Some(name) => name,
                None => m
                    .logits
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .with_context(|| {
                        format!(
                            "{}: model {} has no name and its logits path {} has no file name",
                            path.display(),
                            i + 1,
                            m.logits.display()
                        )
                    })?,
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
                logits: base.join(m.logits),
                labels: m.labels.map(|l| base.join(l)),
                meta,
                name,
            })
        })
        .collect()
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
        format!(
            "appended {} {} ({} entries) to {} at commit {}; it now holds {} models, {} entries{note}",
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
