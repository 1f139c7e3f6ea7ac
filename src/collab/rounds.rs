//! The collaborative-probing policy: which probes each model of a batch runs, in two rounds, and
//! how the results are staged. The caller supplies the models' forward passes through a
//! [`Prober`]; the policy decides the probes, asks for them, and stages each model with
//! [`IndexWriter::add_partial_model`], whose missing entries the commit completes.
//!
//! Round 1 runs every model on a seeded random subset of `plan.random` probes (model `i` of the
//! batch uses `seed + i`). Round 2, when `plan.adaptive > 0`, completes each model from its
//! first round, with the index's stored factors or, without them, factors fitted on every first
//! round of the batch, and runs it on the `plan.adaptive` unobserved probes where that completion
//! is highest (see [`adaptive_probes`]). A model is staged on the union of its two rounds.

use super::{
    CollabOptions, Observations, ProbeFactors, adaptive_probes, adaptive_split, sample_probe_count,
};
use crate::descriptor::LogitMatrix;
use crate::error::{Error, Result};
use crate::storage::Storage;
use crate::writer::{AppendOptions, ExistingName, IndexWriter, ModelAdded, ModelInput};

/// How each model's probe budget is spent: `random` probes of a seeded subset, then `adaptive`
/// probes chosen from the completion of the first round. `options` fit the factors when the
/// index has none.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbePlan {
    pub random: usize,
    pub adaptive: usize,
    /// Model `i` of a batch draws its random subset with `seed + i`.
    pub seed: u64,
    pub options: CollabOptions,
}

impl ProbePlan {
    /// The plan for `fraction` (in (0, 1]) of `probes` probes, `adaptive_share` (in [0, 1)) of
    /// them chosen adaptively (see [`adaptive_split`]).
    pub fn new(
        probes: usize,
        fraction: f64,
        adaptive_share: f64,
        seed: u64,
        options: CollabOptions,
    ) -> Result<Self> {
        let (random, adaptive) = adaptive_split(probes, fraction, adaptive_share)?;
        Ok(ProbePlan {
            random,
            adaptive,
            seed,
            options,
        })
    }

    /// The first round's probes of model `position` of a batch over `probes` probes: sorted.
    pub fn first_round(&self, probes: usize, position: usize) -> Vec<u32> {
        sample_probe_count(probes, self.random, self.seed + position as u64)
    }
}

/// Which round a [`Prober`] is asked to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Round {
    /// The seeded random subset.
    Random,
    /// The probes the first round's completion ranks highest.
    Adaptive,
}

/// A model's raw logits on the probes it was asked for: row `i` (of `logits` values) is its
/// output for the `i`-th probe of the request, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeRows {
    pub data: Vec<f32>,
    pub rows: usize,
    pub logits: usize,
}

impl ProbeRows {
    /// The rows of `probes` from a model's outputs on every probe (`all`, row-major, `logits`
    /// values per probe): a prober over precomputed outputs, as in tests and replays.
    pub fn select(all: &[f32], logits: usize, probes: &[u32]) -> ProbeRows {
        let data = probes
            .iter()
            .flat_map(|&q| &all[q as usize * logits..(q as usize + 1) * logits])
            .copied()
            .collect();
        ProbeRows {
            data,
            rows: probes.len(),
            logits,
        }
    }
}

/// What is stored with a model besides its name and logits, asked for once its rounds are done.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelDetails {
    pub source: String,
    pub meta: Vec<(String, String)>,
    pub labels: Option<Vec<String>>,
    /// Overrides the batch's [`AppendOptions::existing_name`] for this model.
    pub existing_name: Option<ExistingName>,
}

/// A model the policy staged: its position in the batch, what the writer reported, and the
/// probes it was run on (sorted), which the commit keeps and completes the others of.
#[derive(Debug, Clone, PartialEq)]
pub struct Staged {
    pub model: usize,
    pub added: ModelAdded,
    pub observed: Vec<u32>,
}

/// The caller's side of collaborative probing: runs the models.
///
/// Models are named by their position in the batch (from 0). The policy calls
/// [`run`](Prober::run) once per model and round, with sorted, distinct probe indices, and
/// [`details`](Prober::details) just before staging a model. A failure of either, of the model's
/// logits (a NaN, a wrong shape) or of the writer (a duplicate name) goes to
/// [`refused`](Prober::refused), which leaves the model out or ends the batch.
pub trait Prober {
    /// The caller's error; the policy's own failures convert into it.
    type Error: From<Error>;

    /// Runs model `model` on `probes`: `probes.len()` rows of logits.
    fn run(&mut self, model: usize, round: Round, probes: &[u32])
    -> Result<ProbeRows, Self::Error>;

    /// Model `model`'s source, metadata and labels.
    fn details(&mut self, model: usize) -> Result<ModelDetails, Self::Error> {
        let _ = model;
        Ok(ModelDetails::default())
    }

    /// Model `model` failed with `error`: `Ok` leaves it out and goes on with the others, `Err`
    /// ends the batch with that error (the default).
    fn refused(&mut self, model: usize, error: Self::Error) -> Result<(), Self::Error> {
        let _ = model;
        Err(error)
    }

    /// Model `model` starts `round` (for progress displays).
    fn started(&mut self, model: usize, round: Round) {
        let _ = (model, round);
    }

    /// Model `model` is staged or refused (for progress displays).
    fn finished(&mut self, model: usize) {
        let _ = model;
    }
}

/// Probes the models `names` (the batch, in order) as `plan` says, through `prober`, and stages
/// each one in `writer` as a partially probed model; `opts` apply to every model (a model's
/// [`ModelDetails::existing_name`] overrides its `existing_name`). Returns the staged models in
/// the order they were staged. Nothing is committed: [`IndexWriter::commit`] completes and
/// publishes them, with the factors that an index without any fits on this commit's models.
///
/// Fails without staging more when the factors of round 2 cannot be read or fitted, or when
/// `prober.refused` ends the batch; models staged before stay staged.
pub fn probe_batch<S: Storage, P: Prober>(
    writer: &mut IndexWriter<S>,
    names: &[String],
    opts: AppendOptions,
    plan: &ProbePlan,
    prober: &mut P,
) -> Result<Vec<Staged>, P::Error> {
    let p = writer.probe_set().num_probes as usize;
    let mut staged = Vec::with_capacity(names.len());
    if plan.adaptive == 0 {
        for (i, name) in names.iter().enumerate() {
            prober.started(i, Round::Random);
            let observed = plan.first_round(p, i);
            let done = run_checked(prober, name, i, Round::Random, &observed)
                .and_then(|rows| stage(writer, prober, name, i, opts, plan, rows, observed));
            outcome(prober, i, done, &mut staged)?;
        }
        return Ok(staged);
    }
    // Round 1: every model on its own random subset.
    let mut first = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        prober.started(i, Round::Random);
        let observed = plan.first_round(p, i);
        let run = run_checked(prober, name, i, Round::Random, &observed).and_then(|rows| {
            let logits = LogitMatrix::new(&rows.data, rows.rows, rows.logits)?;
            let (obs, _) =
                Observations::from_logits(name, &logits, &observed, p, opts.keep_constant)?;
            Ok((rows, obs))
        });
        match run {
            Ok((rows, obs)) => first.push((i, observed, rows, obs)),
            Err(e) => {
                prober.refused(i, e)?;
                prober.finished(i);
            }
        }
    }
    if first.is_empty() {
        return Ok(staged);
    }
    // Round 2: the factors that choose its probes are the index's, else fitted on round 1.
    let (factors, lambda) = match writer.stored_factors()? {
        Some(stored) => stored,
        None => {
            let observations: Vec<Observations> = first.iter().map(|f| f.3.clone()).collect();
            let fitted = ProbeFactors::fit(p, &observations, &plan.options)?;
            (fitted, plan.options.lambda)
        }
    };
    for (i, observed, rows, obs) in first {
        let name = &names[i];
        prober.started(i, Round::Adaptive);
        let done = factors
            .impute(&obs, lambda)
            .and_then(|predicted| {
                adaptive_probes(&predicted, obs.logits, p, &observed, plan.adaptive)
            })
            .map_err(P::Error::from)
            .and_then(|extra| {
                let more = run_checked(prober, name, i, Round::Adaptive, &extra)?;
                let (union, merged) = merge_rows(&observed, rows, &extra, more)?;
                stage(writer, prober, name, i, opts, plan, merged, union)
            });
        outcome(prober, i, done, &mut staged)?;
    }
    Ok(staged)
}

/// One model of a batch of one, with a closure as its prober: the bindings' entry point. Without
/// stored factors the second round's factors are fitted on this model's first round alone (it
/// needs at least `plan.options.rank` logits then).
pub fn probe_model<S: Storage>(
    writer: &mut IndexWriter<S>,
    name: &str,
    details: ModelDetails,
    opts: AppendOptions,
    plan: &ProbePlan,
    run: impl FnMut(Round, &[u32]) -> Result<ProbeRows>,
) -> Result<Staged> {
    struct One<F> {
        run: F,
        details: Option<ModelDetails>,
    }
    impl<F: FnMut(Round, &[u32]) -> Result<ProbeRows>> Prober for One<F> {
        type Error = Error;
        fn run(&mut self, _: usize, round: Round, probes: &[u32]) -> Result<ProbeRows> {
            (self.run)(round, probes)
        }
        fn details(&mut self, _: usize) -> Result<ModelDetails> {
            Ok(self.details.take().unwrap_or_default())
        }
    }
    let mut one = One {
        run,
        details: Some(details),
    };
    let staged = probe_batch(writer, &[name.to_owned()], opts, plan, &mut one)?;
    staged
        .into_iter()
        .next()
        .ok_or_else(|| Error::InvalidInput(format!("model {name:?} was not staged")))
}

/// Runs one round and checks the shape of what came back.
fn run_checked<P: Prober>(
    prober: &mut P,
    name: &str,
    model: usize,
    round: Round,
    probes: &[u32],
) -> Result<ProbeRows, P::Error> {
    let rows = prober.run(model, round, probes)?;
    if rows.rows != probes.len() || rows.rows.checked_mul(rows.logits) != Some(rows.data.len()) {
        return Err(Error::InvalidInput(format!(
            "model {name:?}: asked for {} probes, the prober returned {} values as {} rows of {} \
             logits",
            probes.len(),
            rows.data.len(),
            rows.rows,
            rows.logits
        ))
        .into());
    }
    Ok(rows)
}

/// Records a model's outcome: staged, or handed to `prober.refused`; then `finished`.
fn outcome<P: Prober>(
    prober: &mut P,
    model: usize,
    done: Result<Staged, P::Error>,
    staged: &mut Vec<Staged>,
) -> Result<(), P::Error> {
    match done {
        Ok(s) => staged.push(s),
        Err(e) => prober.refused(model, e)?,
    }
    prober.finished(model);
    Ok(())
}

/// Stages one model observed on `observed` (sorted) with its logits there.
#[allow(clippy::too_many_arguments)]
fn stage<S: Storage, P: Prober>(
    writer: &mut IndexWriter<S>,
    prober: &mut P,
    name: &str,
    model: usize,
    opts: AppendOptions,
    plan: &ProbePlan,
    rows: ProbeRows,
    observed: Vec<u32>,
) -> Result<Staged, P::Error> {
    let details = prober.details(model)?;
    let input = ModelInput {
        name: name.to_owned(),
        source: details.source,
        meta: details.meta,
        labels: details.labels,
        logits: LogitMatrix::new(&rows.data, rows.rows, rows.logits)?,
    };
    let opts = AppendOptions {
        existing_name: details.existing_name.unwrap_or(opts.existing_name),
        ..opts
    };
    let added = writer.add_partial_model(input, &observed, opts, plan.options)?;
    Ok(Staged {
        model,
        added,
        observed,
    })
}

/// Merges two rounds of a model's logits: rows of the sorted, disjoint probe lists `a` and `b`
/// into the rows of their sorted union. Returns the union and its rows.
fn merge_rows(a: &[u32], ra: ProbeRows, b: &[u32], rb: ProbeRows) -> Result<(Vec<u32>, ProbeRows)> {
    if ra.logits != rb.logits {
        return Err(Error::InvalidInput(format!(
            "the model gave {} logits in the first round and {} in the second",
            ra.logits, rb.logits
        )));
    }
    let cols = ra.logits;
    let (mut union, mut data) = (Vec::with_capacity(a.len() + b.len()), Vec::new());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let from_a = j == b.len() || (i < a.len() && a[i] < b[j]);
        let (q, row) = if from_a {
            i += 1;
            (a[i - 1], &ra.data[(i - 1) * cols..i * cols])
        } else {
            j += 1;
            (b[j - 1], &rb.data[(j - 1) * cols..j * cols])
        };
        union.push(q);
        data.extend_from_slice(row);
    }
    let rows = union.len();
    Ok((
        union,
        ProbeRows {
            data,
            rows,
            logits: cols,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(data: &[f32], logits: usize) -> ProbeRows {
        ProbeRows {
            data: data.to_vec(),
            rows: data.len() / logits,
            logits,
        }
    }

    #[test]
    fn merged_rounds_follow_the_probe_order() {
        let (union, merged) = merge_rows(
            &[1, 4],
            rows(&[1., 10., 4., 40.], 2),
            &[0, 2],
            rows(&[0., 0., 2., 20.], 2),
        )
        .unwrap();
        assert_eq!(union, [0, 1, 2, 4]);
        assert_eq!(merged.data, [0., 0., 1., 10., 2., 20., 4., 40.]);
        assert_eq!(merged.rows, 4);
        let e = merge_rows(&[1], rows(&[1., 2.], 2), &[0], rows(&[1.], 1)).unwrap_err();
        assert!(
            e.to_string().contains("2 logits in the first round and 1"),
            "{e}"
        );
    }

    #[test]
    fn plans_check_their_settings() {
        let plan = ProbePlan::new(100, 0.5, 0.5, 7, CollabOptions::default()).unwrap();
        assert_eq!((plan.random, plan.adaptive), (25, 25));
        assert_eq!(plan.first_round(100, 3), sample_probe_count(100, 25, 10));
        assert!(ProbePlan::new(100, 0.0, 0.5, 0, CollabOptions::default()).is_err());
        assert!(ProbePlan::new(100, 0.5, 1.0, 0, CollabOptions::default()).is_err());
    }
}
