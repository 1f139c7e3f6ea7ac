//! `export`: the z-normalized descriptors as an entry-major float32 `[entries, probes]` .npy, and a
//! JSON sidecar naming each row. Both are written beside their targets and renamed into place.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use indicatif::ProgressBar;
use probelog::Index;
use serde::Serialize;
use tempfile::NamedTempFile;

use super::{LibResult, open_index};
use crate::npy::MatrixWriter;
use crate::output::{outln, pairs_as_object, progress};
use crate::paths::refuse_outputs_over_inputs;

/// Entries transposed at a time.
const BLOCK: usize = 1024;
/// Bytes of descriptor values one transposed block holds at most.
const BLOCK_BYTES: usize = 16 << 20;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The index to export.
    pub index: PathBuf,
    /// Where to write the descriptors; the sidecar goes to the same path with a .json extension.
    /// Neither may be the index (nor a link to it).
    #[arg(long, value_name = "FILE.npy")]
    pub out: PathBuf,
}

#[derive(Debug, Serialize)]
struct Sidecar {
    probe_set: ProbeSet,
    entries: Vec<EntryRow>,
    models: Vec<ModelRow>,
}

#[derive(Debug, Serialize)]
struct ProbeSet {
    num_probes: usize,
    fingerprint: String,
    names: Option<Vec<String>>,
    embedding_dim: Option<usize>,
}

#[derive(Debug, Serialize)]
struct EntryRow {
    entry: u64,
    model_id: u64,
    model: String,
    logit: u32,
    label: Option<String>,
}

#[derive(Debug, Serialize)]
struct ModelRow {
    id: u64,
    name: String,
    source: String,
    #[serde(serialize_with = "pairs_as_object")]
    meta: Vec<(String, String)>,
    first_entry: u64,
    logits: u32,
}

pub fn run(args: Args) -> Result<()> {
    let sidecar_path = args.out.with_extension("json");
    ensure!(
        sidecar_path != args.out,
        "--out {} ends in .json, the extension of the sidecar; name the descriptors FILE.npy",
        args.out.display()
    );
    refuse_outputs_over_inputs(
        &[("--out", &args.out), ("the sidecar", &sidecar_path)],
        &[("the index", &args.index)],
    )?;
    let index = open_index(&args.index)?;
    let sidecar = sidecar(&index)?;

    // Deleted models are not exported: the rows are the live entries, in id order, and the
    // sidecar gives each row's entry id.
    let live = index.live_entry_count().at(&args.index)?;
    let bar = progress(index.entry_count(), "entries");
    let mut npy = temp_beside(&args.out)?;
    write_descriptors(&index, BufWriter::new(npy.as_file_mut()), &bar)
        .with_context(|| format!("cannot write {}", npy.path().display()))?;
    bar.finish_and_clear();
    let mut json = temp_beside(&sidecar_path)?;
    write_json(json.as_file_mut(), &sidecar)
        .with_context(|| format!("cannot write {}", json.path().display()))?;
    persist(npy, &args.out)?;
    persist(json, &sidecar_path)?;
    outln!(
        "exported {} descriptors over {} probes to {} (float32 [{}, {}]) and {}",
        live,
        index.num_probes(),
        args.out.display(),
        live,
        index.num_probes(),
        sidecar_path.display()
    )?;
    Ok(())
}

fn sidecar(index: &Index) -> Result<Sidecar> {
    let path = index.path();
    let mut entries = Vec::with_capacity(index.entry_count() as usize);
    let mut models = Vec::with_capacity(index.model_count() as usize);
    for id in (0..index.model_count()).filter(|&id| !index.is_model_deleted(id)) {
        let m = index.model(id).at(path)?;
        for logit in 0..m.logit_count {
            let entry = m.first_entry + u64::from(logit);
            entries.push(EntryRow {
                entry,
                model_id: id,
                model: m.name.clone(),
                logit,
                label: index.entry_label(entry).at(path)?,
            });
        }
        models.push(ModelRow {
            id,
            name: m.name,
            source: m.source,
            meta: m.meta,
            first_entry: m.first_entry,
            logits: m.logit_count,
        });
    }
    Ok(Sidecar {
        probe_set: ProbeSet {
            num_probes: index.num_probes(),
            fingerprint: index.probe_set().fingerprint_hex(),
            names: index.probe_names().at(path)?,
            embedding_dim: index.probe_embeddings().at(path)?.map(|(_, dim)| dim),
        },
        entries,
        models,
    })
}

/// Transposes the probe-major segments into entry-major rows, a block of entries at a time.
fn write_descriptors(index: &Index, out: impl Write, bar: &ProgressBar) -> Result<()> {
    let p = index.num_probes();
    let path = index.path();
    let live = index.live_entry_count().at(path)?;
    let mask = index.entry_mask(None, None).at(path)?;
    let mut w = MatrixWriter::new(out, live as usize, p)?;
    // Entries per transposed block: at most BLOCK, and at most BLOCK_BYTES of values whatever
    // the probe count (up to 2^20), so memory stays bounded; nothing for an empty index.
    let block_len = (BLOCK_BYTES / (4 * p)).clamp(1, BLOCK);
    let buffered = if live == 0 { 0 } else { block_len };
    let mut row = vec![0f32; buffered];
    let mut block = vec![0f32; buffered * p];
    let starts = index.segment_entry_starts();
    for (s, &segment_start) in starts
        .iter()
        .take(index.segment_count() as usize)
        .enumerate()
    {
        let Some(rows) = index.segment_rows(s).at(path)? else {
            continue;
        };
        for start in (0..rows.entries()).step_by(block_len) {
            let n = block_len.min(rows.entries() - start);
            let first = segment_start + start as u64;
            // The block's live entries (all of them without deletions).
            let kept: Vec<usize> = (0..n)
                .filter(|&j| mask.as_ref().is_none_or(|m| m.contains(first + j as u64)))
                .collect();
            for probe in 0..p {
                rows.read_row(probe, start..start + n, &mut row[..n]);
                for (i, &j) in kept.iter().enumerate() {
                    block[i * p + probe] = row[j];
                }
            }
            w.write_rows(&block[..kept.len() * p])?;
            bar.inc(n as u64);
        }
    }
    w.finish()?.flush()?;
    Ok(())
}

fn write_json(file: &mut File, sidecar: &Sidecar) -> Result<()> {
    let mut out = BufWriter::new(file);
    serde_json::to_writer_pretty(&mut out, sidecar)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

/// A temporary file in the directory of `target`, so that a rename can replace it atomically.
fn temp_beside(target: &Path) -> Result<NamedTempFile> {
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    tempfile::Builder::new()
        .prefix(".probelog-export-")
        // Like any new file (the umask applies), not private as temporary files are by default.
        .permissions(fs::Permissions::from_mode(0o666))
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))
}

fn persist(tmp: NamedTempFile, target: &Path) -> Result<()> {
    tmp.as_file()
        .sync_all()
        .with_context(|| format!("cannot sync {}", tmp.path().display()))?;
    tmp.persist(target)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot move the export into place at {}", target.display()))?;
    Ok(())
}
