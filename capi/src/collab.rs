//! Collaborative probing from C: the library chooses the probes of each round (a seeded random
//! subset, then the probes where the completion from it is highest) and calls the caller's
//! function to run the model on them; the commit completes the other probes from the index's
//! probe factors (`probelog::collab`, docs/probing.md).

use std::ffi::{c_int, c_void};

use probelog::collab::{self, CollabOptions, ModelDetails, ProbePlan, ProbeRows, Round};
use probelog::{AppendOptions, Error};

use crate::args::{opt_str_arg, str_arg, write_optional_out};
use crate::error::{CallResult, Failure, ProbelogStatus, guard};
use crate::writer::{
    ProbelogModel, ProbelogModelAdded, ProbelogWriter, existing_name_arg, lock_writer, meta_arg,
    strings_arg,
};

/// `ProbelogCollabParams.adaptive_share` of `probelog-tool append --probe-fraction`: the share of
/// each model's probe budget chosen from the completion of its random first round.
pub const PROBELOG_DEFAULT_ADAPTIVE_SHARE: f64 = 0.5;
const _: () = assert!(PROBELOG_DEFAULT_ADAPTIVE_SHARE == collab::DEFAULT_ADAPTIVE_SHARE);

/// Runs the model on `num_probes` probes: `probes` holds their indices in the index's probe set
/// (sorted, distinct); the function writes the model's `num_logits` outputs for each of them to
/// `out_logits`, row-major `[num_probes][num_logits]` (row i for `probes[i]`). Returns 0 on
/// success; any other value refuses the model (the call fails with
/// PROBELOG_ERR_INVALID_INPUT, naming the value). `ctx` is the caller's pointer, passed through.
/// It must not call functions on the writer it runs for.
pub type ProbelogProbeFn = Option<
    unsafe extern "C" fn(
        ctx: *mut c_void,
        probes: *const u32,
        num_probes: usize,
        out_logits: *mut f32,
        num_logits: usize,
    ) -> c_int,
>;

/// Settings of `probelog_writer_add_model_collab` (`append --probe-fraction`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ProbelogCollabParams {
    /// Fraction of the probes the model runs on, in (0, 1] (at least 2 probes).
    pub probe_fraction: f64,
    /// Share of that budget chosen adaptively, in [0, 1): PROBELOG_DEFAULT_ADAPTIVE_SHARE, or 0
    /// for a purely random subset.
    pub adaptive_share: f64,
    /// Seed of the random subset.
    pub seed: u64,
    /// Rank of the probe factors when the index has none yet and they are fitted for this model;
    /// 0 for the default (32).
    pub rank: u32,
    /// Ridge regularization of those factors, finite and > 0; 0 for the default (1).
    pub lambda: f32,
}

/// Stages one model probed on part of the probe set (collaborative probing): `run` is called
/// once with a seeded random subset of the probes and, with `adaptive_share > 0`, once more with
/// the probes where the completion from the first answers is highest. The model is stored with
/// its answers on those probes; the commit completes the others from the index's probe factors,
/// or from factors fitted on the commit's partially probed models when the index has none (the
/// second round's probes are then chosen with factors fitted on this model's first round, which
/// needs at least `rank` logits).
///
/// `model` describes the model as for `probelog_writer_add_model`, except that its logits come
/// from `run`: `model->logits` must be NULL and `model->num_probes` 0; `model->num_logits` is
/// the width of each row `run` writes. Refusals are `probelog_writer_add_model`'s; a refused
/// model leaves the writer as it was. `out` may be NULL.
///
/// # Safety
/// `writer` is NULL or a live writer; `model` is NULL or a valid `ProbelogModel` (strings and
/// arrays as documented there); `params` is NULL or valid; `run` is safe to call with `ctx` as
/// documented at `ProbelogProbeFn`; `out` is NULL or valid for writing a `ProbelogModelAdded`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn probelog_writer_add_model_collab(
    writer: *mut ProbelogWriter,
    model: *const ProbelogModel,
    params: *const ProbelogCollabParams,
    run: ProbelogProbeFn,
    ctx: *mut c_void,
    out: *mut ProbelogModelAdded,
) -> ProbelogStatus {
    guard(|| {
        // SAFETY: the caller promises a live handle or NULL.
        let mut w = unsafe { lock_writer(writer) }?;
        // SAFETY: the caller promises NULL or a valid ProbelogModel.
        let m = unsafe { model.as_ref() }.ok_or_else(|| Failure::null("model"))?;
        // SAFETY: the caller promises NULL or valid params.
        let params = unsafe { params.as_ref() }.ok_or_else(|| Failure::null("params"))?;
        let run = run.ok_or_else(|| Failure::null("run"))?;
        if !m.logits.is_null() || m.num_probes != 0 {
            return Err(Failure::invalid(
                "model->logits must be NULL and model->num_probes 0: the logits come from run",
            ));
        }
        // SAFETY: the caller promises a NUL-terminated name.
        let name = unsafe { str_arg(m.name, "model->name") }?;
        // SAFETY: the caller promises each string field is NULL or NUL-terminated.
        let source = unsafe { opt_str_arg(m.source, "model->source") }?.unwrap_or_default();
        let logits = m.num_logits as usize;
        // SAFETY: the caller promises num_logits label pointers, or NULL.
        let labels = unsafe { strings_arg(m.labels, logits, "model->labels") }?;
        // SAFETY: the caller promises meta_count pointers in each metadata array, or NULL.
        let meta = unsafe { meta_arg(m) }?;
        let existing_name = existing_name_arg(m.existing_name)?;
        let plan = plan(params, w.probe_set().num_probes as usize)?;
        let opts = AppendOptions {
            keep_constant: m.keep_constant != 0,
            existing_name,
            ..AppendOptions::default()
        };
        let details = ModelDetails {
            source: source.to_owned(),
            meta,
            labels,
            existing_name: None,
        };
        let staged = collab::probe_model(&mut w, name, details, opts, &plan, |round, probes| {
            let mut data = vec![0f32; probes.len() * logits];
            // SAFETY: the caller promises `run` may be called with `ctx`; `probes` and `data`
            // hold `probes.len()` and `probes.len() * logits` elements for the call's duration.
            let rc = unsafe {
                run(
                    ctx,
                    probes.as_ptr(),
                    probes.len(),
                    data.as_mut_ptr(),
                    logits,
                )
            };
            if rc != 0 {
                let round = match round {
                    Round::Random => "random",
                    Round::Adaptive => "adaptive",
                };
                return Err(Error::InvalidInput(format!(
                    "model {name:?}: the probe function returned {rc} in the {round} round"
                )));
            }
            Ok(ProbeRows {
                data,
                rows: probes.len(),
                logits,
            })
        })?;
        // SAFETY: the caller promises `out` is NULL or writable.
        unsafe { write_optional_out(out, || ProbelogModelAdded::from(staged.added), "out") }
    })
}

/// The plan of `params` over `probes` probes; zero rank and lambda take the defaults.
fn plan(params: &ProbelogCollabParams, probes: usize) -> CallResult<ProbePlan> {
    let defaults = CollabOptions::default();
    let lambda = if params.lambda == 0.0 {
        defaults.lambda
    } else {
        params.lambda
    };
    if !(lambda.is_finite() && lambda > 0.0) {
        return Err(Failure::invalid(format!(
            "params->lambda must be a finite number > 0 (or 0 for the default), got {lambda}"
        )));
    }
    let options = CollabOptions {
        rank: if params.rank == 0 {
            defaults.rank
        } else {
            params.rank as usize
        },
        lambda,
        seed: params.seed,
        ..defaults
    };
    Ok(ProbePlan::new(
        probes,
        params.probe_fraction,
        params.adaptive_share,
        params.seed,
        options,
    )?)
}
