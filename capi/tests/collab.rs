//! Collaborative probing through the C ABI (`probelog_writer_add_model_collab`, called from Rust
//! with an `extern "C"` probe function): the function is asked for the probes the core policy
//! chooses, and the index it writes is, bit for bit, the one `probelog::collab::probe_model`
//! writes; failures of the callback and bad arguments are refused with a message.

use std::ffi::{CStr, CString, c_int, c_void};
use std::path::Path;
use std::ptr;

use probelog::collab::{CollabOptions, ModelDetails, ProbePlan, ProbeRows, Round, probe_model};
use probelog::{AppendOptions, Index, IndexWriter, LockWait};
use probelog_c::*;

const PROBES: usize = 60;
const LOGITS: usize = 6;

/// Raw logits `[PROBES, LOGITS]` of a smooth, low-rank model.
fn model_logits() -> Vec<f32> {
    (0..PROBES * LOGITS)
        .map(|i| {
            let (p, j) = ((i / LOGITS) as f32, (i % LOGITS) as f32);
            (0.3 * p * (j + 1.0)).sin() + 0.5 * (0.11 * p + j).cos() + 0.1 * j
        })
        .collect()
}

/// The probe function's context: the model's logits, the calls made, a status to return.
struct Ctx {
    logits: Vec<f32>,
    calls: Vec<Vec<u32>>,
    fail_with: c_int,
}

unsafe extern "C" fn run_model(
    ctx: *mut c_void,
    probes: *const u32,
    num_probes: usize,
    out: *mut f32,
    num_logits: usize,
) -> c_int {
    // SAFETY: the test passes a live `Ctx` as `ctx`.
    let ctx = unsafe { &mut *ctx.cast::<Ctx>() };
    // SAFETY: the library passes `num_probes` probe indices.
    let probes = unsafe { std::slice::from_raw_parts(probes, num_probes) };
    // SAFETY: the library passes room for `num_probes * num_logits` floats.
    let out = unsafe { std::slice::from_raw_parts_mut(out, num_probes * num_logits) };
    ctx.calls.push(probes.to_vec());
    if ctx.fail_with != 0 {
        return ctx.fail_with;
    }
    for (row, &q) in out.chunks_exact_mut(num_logits).zip(probes) {
        let q = q as usize;
        row.copy_from_slice(&ctx.logits[q * LOGITS..(q + 1) * LOGITS]);
    }
    0
}

fn last_error() -> String {
    // SAFETY: never NULL; copied before the next call on this thread.
    unsafe { CStr::from_ptr(probelog_last_error()) }
        .to_string_lossy()
        .into_owned()
}

fn create(path: &Path) -> *mut ProbelogWriter {
    let p = CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a NUL-terminated path.
    assert_eq!(
        unsafe { probelog_create(p.as_ptr(), PROBES as u32) },
        PROBELOG_OK
    );
    let mut w = ptr::null_mut();
    // SAFETY: a NUL-terminated path and a writable out pointer.
    assert_eq!(
        unsafe { probelog_writer_open(p.as_ptr(), 0, &mut w) },
        PROBELOG_OK,
        "{}",
        last_error()
    );
    w
}

fn params() -> ProbelogCollabParams {
    ProbelogCollabParams {
        probe_fraction: 0.4,
        adaptive_share: PROBELOG_DEFAULT_ADAPTIVE_SHARE,
        seed: 5,
        rank: 4,
        lambda: 0.5,
    }
}

/// A `ProbelogModel` whose logits come from the probe function.
fn model(name: &CStr, labels: &[*const std::ffi::c_char]) -> ProbelogModel {
    ProbelogModel {
        name: name.as_ptr(),
        source: ptr::null(),
        logits: ptr::null(),
        num_probes: 0,
        num_logits: LOGITS as u32,
        labels: if labels.is_empty() {
            ptr::null()
        } else {
            labels.as_ptr()
        },
        meta_keys: ptr::null(),
        meta_values: ptr::null(),
        meta_count: 0,
        keep_constant: 0,
        existing_name: PROBELOG_NAME_REFUSE,
    }
}

#[test]
fn the_c_callback_answers_the_policys_rounds_as_the_core_api_does() {
    let dir = tempfile::tempdir().unwrap();
    let (c_path, core_path) = (dir.path().join("c.plog"), dir.path().join("core.plog"));
    let w = create(&c_path);
    let name = CString::new("probed").unwrap();
    let label_strings: Vec<CString> = (0..LOGITS)
        .map(|j| CString::new(format!("class-{j}")).unwrap())
        .collect();
    let labels: Vec<_> = label_strings.iter().map(|l| l.as_ptr()).collect();
    let mut ctx = Ctx {
        logits: model_logits(),
        calls: Vec::new(),
        fail_with: 0,
    };
    let mut added = ProbelogModelAdded::default();
    // SAFETY: a live writer, a valid model and params, a probe function and its live context.
    let st = unsafe {
        probelog_writer_add_model_collab(
            w,
            &model(&name, &labels),
            &params(),
            Some(run_model),
            (&raw mut ctx).cast(),
            &mut added,
        )
    };
    assert_eq!(st, PROBELOG_OK, "{}", last_error());
    assert_eq!((added.model_id, added.logits), (0, LOGITS as u32));
    // SAFETY: a live writer; NULL out is allowed.
    assert_eq!(
        unsafe { probelog_writer_commit(w, ptr::null_mut()) },
        PROBELOG_OK
    );
    // SAFETY: a live writer, closed once.
    unsafe { probelog_writer_close(w) };
    // Two rounds: 12 random probes, then 12 chosen from their completion.
    assert_eq!(ctx.calls.len(), 2);
    assert_eq!((ctx.calls[0].len(), ctx.calls[1].len()), (12, 12));

    // The same model through the core API.
    probelog::create(&core_path, &probelog::CreateOptions::new(PROBES as u32)).unwrap();
    let mut core = IndexWriter::open(&core_path, LockWait::Fail).unwrap();
    let p = params();
    let options = CollabOptions {
        rank: 4,
        lambda: 0.5,
        seed: 5,
        ..CollabOptions::default()
    };
    let plan = ProbePlan::new(PROBES, p.probe_fraction, p.adaptive_share, 5, options).unwrap();
    let mut asked = Vec::new();
    let details = ModelDetails {
        labels: Some((0..LOGITS).map(|j| format!("class-{j}")).collect()),
        ..ModelDetails::default()
    };
    let logits = model_logits();
    probe_model(
        &mut core,
        "probed",
        details,
        AppendOptions::default(),
        &plan,
        |round, probes| {
            asked.push((round, probes.to_vec()));
            Ok(ProbeRows::select(&logits, LOGITS, probes))
        },
    )
    .unwrap();
    core.commit().unwrap();
    drop(core);
    assert_eq!(asked[0], (Round::Random, ctx.calls[0].clone()));
    assert_eq!(asked[1], (Round::Adaptive, ctx.calls[1].clone()));
    let (a, b) = (
        Index::open(&c_path).unwrap(),
        Index::open(&core_path).unwrap(),
    );
    assert_eq!(a.observed_probes(0).unwrap(), b.observed_probes(0).unwrap());
    for e in 0..LOGITS as u64 {
        let bits = |i: &Index| -> Vec<u32> {
            i.descriptor(e)
                .unwrap()
                .iter()
                .map(|v| v.to_bits())
                .collect()
        };
        assert_eq!(bits(&a), bits(&b), "entry {e}");
    }
    assert_eq!(a.entry(0).unwrap().label.as_deref(), Some("class-0"));
}

#[test]
fn failures_are_refused_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let w = create(&dir.path().join("f.plog"));
    let name = CString::new("m").unwrap();
    let mut ctx = Ctx {
        logits: model_logits(),
        calls: Vec::new(),
        fail_with: 7,
    };
    let call =
        |m: &ProbelogModel, p: &ProbelogCollabParams, run: ProbelogProbeFn, ctx: &mut Ctx| {
            // SAFETY: a live writer, valid pointers, a probe function and its live context.
            unsafe {
                probelog_writer_add_model_collab(
                    w,
                    m,
                    p,
                    run,
                    (ctx as *mut Ctx).cast(),
                    ptr::null_mut(),
                )
            }
        };
    let st = call(&model(&name, &[]), &params(), Some(run_model), &mut ctx);
    assert_eq!(st, PROBELOG_ERR_INVALID_INPUT);
    assert!(
        last_error().contains("the probe function returned 7 in the random round"),
        "{}",
        last_error()
    );
    ctx.fail_with = 0;
    let mut with_logits = model(&name, &[]);
    let values = [0f32; PROBES * LOGITS];
    with_logits.logits = values.as_ptr();
    let st = call(&with_logits, &params(), Some(run_model), &mut ctx);
    assert_eq!(st, PROBELOG_ERR_INVALID_ARGUMENT);
    assert!(last_error().contains("must be NULL"), "{}", last_error());
    let st = call(&model(&name, &[]), &params(), None, &mut ctx);
    assert_eq!(st, PROBELOG_ERR_NULL_POINTER);
    for (fraction, share, lambda, what) in [
        (0.0, 0.5, 0.0, "probe fraction"),
        (0.5, 1.0, 0.0, "adaptive share"),
        (0.5, 0.5, f32::NAN, "lambda"),
    ] {
        let p = ProbelogCollabParams {
            probe_fraction: fraction,
            adaptive_share: share,
            lambda,
            ..params()
        };
        let st = call(&model(&name, &[]), &p, Some(run_model), &mut ctx);
        assert_eq!(st, PROBELOG_ERR_INVALID_ARGUMENT, "{what}");
        assert!(last_error().contains(what), "{what}: {}", last_error());
    }
    // Nothing was staged by the refused calls.
    let mut info = ProbelogCommitInfo::default();
    // SAFETY: a live writer and a writable out struct.
    assert_eq!(unsafe { probelog_writer_commit(w, &mut info) }, PROBELOG_OK);
    assert_eq!(info.models_added, 0);
    // SAFETY: a live writer, closed once.
    unsafe { probelog_writer_close(w) };
}
