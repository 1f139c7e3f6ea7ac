//! Loading or running one model on the probes (`.npy` rows, TorchScript through libtorch),
//! staging it, and the command's side of collaborative probing: the prober that the core policy
//! (`probelog::collab::probe_batch`) calls for each round.

use super::*;

/// Images per second over every model probed.
#[derive(Debug, Default)]
pub(super) struct Throughput {
    pub(super) models: usize,
    pub(super) images: usize,
    pub(super) elapsed: std::time::Duration,
}

impl Throughput {
    /// One line on stderr (stdout stays the summary).
    pub(super) fn report(&self, device: &str) {
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
pub(super) fn read_rows(
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
                    Ok(ProbeRows::select(&m.data, m.cols, observed))
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
pub(super) fn details(spec: &ModelSpec) -> Result<ModelDetails> {
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
pub(super) fn stage_rows(
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
pub(super) struct CliError(pub(super) anyhow::Error);

impl From<probelog::Error> for CliError {
    fn from(e: probelog::Error) -> Self {
        CliError(Err::<(), _>(e).plain().unwrap_err())
    }
}

/// The command's side of `--probe-fraction`: loads or runs each model on the probes the policy
/// asks for, reads its labels when it is staged, leaves refused models out under --skip-failed
/// and moves the bar.
pub(super) struct CliProber<'a> {
    pub(super) specs: &'a [ModelSpec],
    pub(super) p: usize,
    pub(super) prober: Option<&'a Prober>,
    pub(super) bar: &'a Progress,
    pub(super) probing: &'a mut Throughput,
    pub(super) refuse: &'a mut dyn FnMut(usize, anyhow::Error) -> Result<()>,
    pub(super) tick: &'a dyn Fn(&ModelSpec),
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
