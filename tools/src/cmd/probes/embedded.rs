//! `probes attach` and `probes extract`: the probe set file stored in the index itself
//! (format-spec.md, "EmbeddedProbeSet"), so that an index ships without side files.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail, ensure};
use probelog::IndexWriter;
use serde::Serialize;

use super::super::{LibResult, open_index, with_writer_lock};
use crate::output::{human_bytes, outln, print_summary};
use crate::paths::refuse_outputs_over_inputs;
use crate::pset::ProbeSet;

#[derive(Debug, clap::Args)]
pub struct AttachArgs {
    /// The index; it must have been created with this probe set (`create --probes`) and hold
    /// none yet.
    pub index: PathBuf,
    /// The probe set file to store in it, byte for byte.
    #[arg(value_name = "FILE.pset")]
    pub pset: PathBuf,
    #[command(flatten)]
    pub lock: crate::cmd::LockArgs,
    /// Print the summary as a JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ExtractArgs {
    /// The index holding the probe set.
    pub index: PathBuf,
    /// The probe set file to write; never the index itself.
    #[arg(long, value_name = "FILE.pset")]
    pub out: PathBuf,
    /// Replace --out if it exists.
    #[arg(long)]
    pub force: bool,
    /// Print the summary as a JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct Summary {
    index: String,
    /// The probe set file written (extract) or read (attach).
    pset: String,
    probes: usize,
    size: u32,
    fingerprint: String,
    bytes: u64,
    /// The commit that stored it (attach).
    #[serde(skip_serializing_if = "Option::is_none")]
    sequence: Option<u64>,
}

impl Summary {
    fn new(index: &Path, pset: &Path, set: &ProbeSet, bytes: usize) -> Self {
        Summary {
            index: index.display().to_string(),
            pset: pset.display().to_string(),
            probes: set.len(),
            size: set.size(),
            fingerprint: set.id().fingerprint_hex(),
            bytes: bytes as u64,
            sequence: None,
        }
    }

    fn what(&self) -> String {
        format!(
            "{} probes of {s}x{s} RGB, fingerprint {}, {}",
            self.probes,
            self.fingerprint,
            human_bytes(self.bytes),
            s = self.size
        )
    }
}

pub fn attach(args: AttachArgs) -> Result<()> {
    refuse_outputs_over_inputs(
        &[("the index", &args.index)],
        &[("the probe set", &args.pset)],
    )?;
    let set = ProbeSet::read(&args.pset)?;
    let mut writer = with_writer_lock(&args.index, args.lock.no_wait, |wait| {
        IndexWriter::open(&args.index, wait)
    })?;
    let index_set = writer.probe_set();
    ensure!(
        set.id() == index_set,
        "{}: this probe set ({}) is not the one {} was created with ({index_set}); an index \
         holds its own probe set only",
        args.pset.display(),
        set.id(),
        args.index.display()
    );
    if open_index(&args.index)?
        .embedded_probe_set_bytes()
        .is_some()
    {
        bail!(
            "{} holds its probe set already (`probes extract` writes it out)",
            args.index.display()
        );
    }
    // `ProbeSet::read` accepts one encoding of each probe set only, so these are the file's bytes.
    let bytes = set.to_bytes();
    let len = bytes.len();
    writer.embed_probe_set(bytes).at(&args.index)?;
    let commit = writer.commit().at(&args.index)?;
    let mut summary = Summary::new(&args.index, &args.pset, &set, len);
    summary.sequence = Some(commit.sequence);
    print_summary(args.json, &summary, |summary| {
        outln!(
            "stored {} in {} ({}) at commit {}",
            summary.pset,
            summary.index,
            summary.what(),
            commit.sequence
        )
    })
}

pub fn extract(args: ExtractArgs) -> Result<()> {
    // Even with --force: the index is never replaced by its own probe set.
    refuse_outputs_over_inputs(&[("--out", &args.out)], &[("the index", &args.index)])?;
    if !args.force && std::fs::symlink_metadata(&args.out).is_ok() {
        bail!(
            "--out {} exists; pass --force to replace it",
            args.out.display()
        );
    }
    let index = open_index(&args.index)?;
    let Some(len) = index.embedded_probe_set_bytes().map(<[u8]>::len) else {
        bail!(
            "{} holds no probe set: `create --embed-probes` or `probes attach` stores one",
            args.index.display()
        );
    };
    // Checked completely first (the fingerprint over the pixels): a damaged copy is never
    // written out; then written beside --out, synced and renamed into place.
    let set = match index.write_embedded_probe_set(&args.out, args.force) {
        Err(probelog::Error::AlreadyExists { .. }) => bail!(
            "--out {} exists; pass --force to replace it",
            args.out.display()
        ),
        other => other.at(&args.index)?,
    };
    let summary = Summary::new(&args.index, &args.out, &set, len);
    print_summary(args.json, &summary, |summary| {
        outln!("wrote {} ({})", summary.pset, summary.what())
    })
}
