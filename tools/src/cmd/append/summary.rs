//! What `append` prints: the summary line or JSON object, the skipped models, the shard.

use super::*;

/// `skipped 2 of 5 models: "a" (model 1 of m.toml: why); "b" (model 4 of m.toml: why)`: each
/// failure names the manifest and the table it came from, not only the model.
pub(super) fn skipped_line(skipped: &[Skipped], total: usize, manifest: Option<&Path>) -> String {
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

#[derive(Debug, Serialize)]
pub(super) struct Skipped {
    pub(super) name: String,
    pub(super) error: String,
    /// Its position in the manifest (from 1), for the message.
    #[serde(skip)]
    pub(super) entry: usize,
}

#[derive(Debug, Serialize)]
pub(super) struct Summary {
    pub(super) index: String,
    pub(super) sequence: u64,
    pub(super) models_added: u64,
    pub(super) entries_added: u64,
    pub(super) model_count: u64,
    pub(super) entry_count: u64,
    pub(super) bytes_written: u64,
    pub(super) models: Vec<AddedModel>,
    /// Models left out by --skip-failed.
    pub(super) skipped: Vec<Skipped>,
    /// With --shard: the slice of the manifest appended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) shard: Option<ShardReport>,
}

/// The `shard` object of the summary: which slice, and its models' positions in the manifest
/// (from 0, `end_model` excluded).
#[derive(Debug, Serialize)]
pub(super) struct ShardReport {
    pub(super) index: u64,
    pub(super) count: u64,
    pub(super) first_model: usize,
    pub(super) end_model: usize,
    pub(super) manifest_models: usize,
}

impl ShardReport {
    pub(super) fn new(shard: Shard, total: usize) -> Self {
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
    pub(super) fn line(&self) -> String {
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
pub(super) fn report_empty_shard(
    index: &Path,
    manifest: &Path,
    shard: Shard,
    total: usize,
    json: bool,
) -> Result<()> {
    let opened = crate::cmd::open_index(index)?;
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
    print_summary(json, &summary, |summary| {
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
        )
    })
}

#[derive(Debug, Serialize)]
pub(super) struct AddedModel {
    pub(super) id: u64,
    pub(super) name: String,
    pub(super) first_entry: u64,
    pub(super) logits: u32,
    pub(super) constant_logits: u32,
}

impl Summary {
    pub(super) fn line(&self) -> String {
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
