//! The models of an `append`: from the command line or a TOML manifest (`--manifest`), checked
//! before anything is loaded, and the `--shard I/N` slice of a manifest.

use super::*;

/// One model to append, with its inputs not loaded yet.
#[derive(Debug, Clone)]
pub(super) struct ModelSpec {
    pub(super) name: String,
    pub(super) source: String,
    pub(super) input: ModelSource,
    pub(super) labels: Option<PathBuf>,
    pub(super) meta: Vec<(String, String)>,
    /// `replace = true` in its manifest entry.
    pub(super) replace: bool,
}

/// Where a model's logits come from.
#[derive(Debug, Clone)]
pub(super) enum ModelSource {
    /// A `[P, L]` `.npy` file.
    Logits(PathBuf),
    /// A TorchScript classifier run on the probe set.
    TorchScript(PathBuf, InputSpec),
}

/// Input settings given on the command line or in a manifest table; unset ones fall back to
/// the command line's, then to the defaults.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct InputOverrides {
    pub(super) size: Option<u32>,
    pub(super) mean: Option<[f32; 3]>,
    pub(super) std: Option<[f32; 3]>,
    pub(super) batch: Option<u32>,
}

impl InputOverrides {
    pub(super) fn over(self, base: InputOverrides) -> InputSpec {
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

pub(super) fn check_meta_keys(spec: &ModelSpec) -> Result<()> {
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
pub(super) struct Manifest {
    #[serde(default)]
    pub(super) model: Vec<ManifestModel>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ManifestModel {
    /// Exactly one of `logits` and `model`.
    pub(super) logits: Option<PathBuf>,
    pub(super) model: Option<PathBuf>,
    pub(super) input_size: Option<u32>,
    pub(super) mean: Option<[f32; 3]>,
    pub(super) std: Option<[f32; 3]>,
    pub(super) batch: Option<u32>,
    pub(super) name: Option<String>,
    #[serde(default)]
    pub(super) source: String,
    pub(super) labels: Option<PathBuf>,
    #[serde(default)]
    pub(super) meta: toml::Table,
    /// Replace the live model of the same name (`append --replace` for this entry).
    #[serde(default)]
    pub(super) replace: bool,
}

pub(super) fn read_manifest(path: &Path, cli_input: InputOverrides) -> Result<Vec<ModelSpec>> {
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
pub fn check_input_settings(
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

/// A model's default name: its file's stem.
pub(super) fn file_stem(path: &Path) -> Result<String> {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .with_context(|| format!("{} has no file name to name the model by", path.display()))
}

/// `--shard I/N`: slice `index` (from 0) of `count` contiguous slices of a manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub(super) index: u64,
    pub(super) count: u64,
}

impl Shard {
    /// The models of this slice among `len`: `[floor(index*len/count), floor((index+1)*len/count))`.
    /// The slices of `0..count` are disjoint, in order, and cover `0..len`.
    pub(super) fn range(self, len: usize) -> std::ops::Range<usize> {
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
pub(super) fn parse_shard(s: &str) -> std::result::Result<Shard, String> {
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
