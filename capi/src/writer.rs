//! Creating an index and appending models under the writer lock.

use std::ffi::{c_char, c_int};
use std::ptr;
use std::sync::Mutex;

use probelog::{
    AppendOptions, CreateOptions, ExistingName, IndexWriter, LockWait, LogitMatrix, ModelAdded,
    ModelInput,
};

use crate::args::{
    code_arg, code_choice, free_handle, opt_str_arg, path_arg, slice_arg, str_arg,
    write_optional_out, write_out,
};
use crate::error::{CallResult, Failure, PROBELOG_ERR_PANIC, ProbelogStatus, guard};

/// `probelog_writer_open` flag: fail at once with PROBELOG_ERR_LOCKED when another writer holds
/// the index, instead of waiting for it (`--no-wait`).
pub const PROBELOG_NO_WAIT: u32 = 1;

/// `ProbelogModel.existing_name`: refuse a model whose name a live model has already, with
/// PROBELOG_ERR_DUPLICATE_NAME (the default, and the value of a zero-initialised field).
pub const PROBELOG_NAME_REFUSE: u32 = 0;
/// `ProbelogModel.existing_name`: a new version. The live models of that name are deleted by the
/// same commit that adds this one, so readers see the old version or the new, never both or
/// neither (`append --replace`).
pub const PROBELOG_NAME_REPLACE: u32 = 1;
/// `ProbelogModel.existing_name`: keep both, two models of one name
/// (`append --keep-duplicate-names`).
pub const PROBELOG_NAME_KEEP: u32 = 2;

/// The writer of one index: holds its writer lock (an advisory `flock`) from
/// `probelog_writer_open` to `probelog_writer_close`. Opaque. Models staged with
/// `probelog_writer_add_model` become visible to readers together, at `probelog_writer_commit`.
/// May be shared between threads; its calls are serialized.
pub struct ProbelogWriter {
    writer: Mutex<IndexWriter>,
}

opaque_handle!(ProbelogWriter);

/// One model to append: its raw logits over the probes, a name, and optional labels and
/// metadata. All strings are NUL-terminated UTF-8.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ProbelogModel {
    /// The name results report for this model. Required.
    pub name: *const c_char,
    /// Where the model came from (a path, a hub id); NULL for none.
    pub source: *const c_char,
    /// Row-major `[num_probes][num_logits]`: row p holds the model's outputs for probe p (the
    /// layout of a forward pass over the probe set).
    pub logits: *const f32,
    /// P: must be the index's probe count.
    pub num_probes: u32,
    /// L: the model's number of logits (classes), at least 1.
    pub num_logits: u32,
    /// NULL, or `num_logits` labels: the class of each logit.
    pub labels: *const *const c_char,
    /// NULL, or `meta_count` keys of metadata pairs.
    pub meta_keys: *const *const c_char,
    /// NULL, or `meta_count` values, one per key.
    pub meta_values: *const *const c_char,
    /// Number of metadata pairs.
    pub meta_count: usize,
    /// Non-zero: store logits that are constant over the probes as all-zero descriptors instead of
    /// refusing the model (`--keep-constant`).
    pub keep_constant: c_int,
    /// What happens when a live model already has this name: PROBELOG_NAME_REFUSE (0, the
    /// default: PROBELOG_ERR_DUPLICATE_NAME), PROBELOG_NAME_REPLACE (a new version: the live
    /// models of that name are deleted by the same commit) or PROBELOG_NAME_KEEP (keep both).
    pub existing_name: u32,
}

/// What `probelog_writer_add_model` staged.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct ProbelogModelAdded {
    /// The new model's id.
    pub model_id: u64,
    /// The entry id of its logit 0; its logits are the entries first_entry .. first_entry + logits - 1.
    pub first_entry: u64,
    /// Its number of logits.
    pub logits: u32,
    /// How many of them were constant and stored as zeros (only with keep_constant).
    pub constant_logits: u32,
}

impl From<ModelAdded> for ProbelogModelAdded {
    fn from(added: ModelAdded) -> Self {
        ProbelogModelAdded {
            model_id: added.model_id,
            first_entry: added.first_entry,
            logits: added.logits,
            constant_logits: added.constant_logits,
        }
    }
}

/// What `probelog_writer_commit` published.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct ProbelogCommitInfo {
    /// The commit's sequence number.
    pub sequence: u64,
    /// Entries (logits) this commit added.
    pub entries_added: u64,
    /// Models this commit added.
    pub models_added: u64,
    /// Entries in the index after the commit.
    pub entry_count: u64,
    /// Models in the index after the commit.
    pub model_count: u64,
    /// Bytes this commit wrote.
    pub bytes_written: u64,
    /// Models this commit deleted (`probelog_writer_delete_model`,
    /// `probelog_writer_delete_models_named`, PROBELOG_NAME_REPLACE). `entry_count` and
    /// `model_count` still count them; `ProbelogIndexInfo` has the live counts.
    pub models_deleted: u64,
}

/// Creates a new, empty index file at `path` for `num_probes` probes (f32 storage, no probe
/// names or embeddings; `probelog-tool create` offers those). An existing file is never
/// overwritten: PROBELOG_ERR_EXISTS.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn probelog_create(path: *const c_char, num_probes: u32) -> ProbelogStatus {
    guard(|| {
        // SAFETY: the caller promises `path` is NULL or NUL-terminated.
        let path = unsafe { path_arg(path, "path") }?;
        probelog::create(path, &CreateOptions::new(num_probes))?;
        Ok(())
    })
}

/// Opens the index at `path` for appending and takes its writer lock: waits for another writer
/// to finish, or with `flags` = PROBELOG_NO_WAIT fails with PROBELOG_ERR_LOCKED. `*out` receives
/// the writer (NULL on failure). Readers are never blocked.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string; `out` is NULL or valid for writing a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn probelog_writer_open(
    path: *const c_char,
    flags: u32,
    out: *mut *mut ProbelogWriter,
) -> ProbelogStatus {
    guard(|| {
        // SAFETY: the caller promises `out` is NULL or writable.
        unsafe { write_out(out, ptr::null_mut(), "out") }?;
        // SAFETY: the caller promises `path` is NULL or NUL-terminated.
        let path = unsafe { path_arg(path, "path") }?;
        if flags & !PROBELOG_NO_WAIT != 0 {
            return Err(Failure::invalid(format!(
                "unknown flags {flags:#x}: the only flag is PROBELOG_NO_WAIT (1)"
            )));
        }
        let wait = if flags & PROBELOG_NO_WAIT != 0 {
            LockWait::Fail
        } else {
            LockWait::Wait
        };
        let writer = IndexWriter::open(path, wait)?;
        let handle = Box::into_raw(Box::new(ProbelogWriter {
            writer: Mutex::new(writer),
        }));
        // SAFETY: checked writable above.
        unsafe { write_out(out, handle, "out") }
    })
}

/// An array of `n` strings, or `None` for a NULL array.
///
/// # Safety
/// `p` is NULL or points to `n` pointers, each NULL or NUL-terminated.
pub(crate) unsafe fn strings_arg(
    p: *const *const c_char,
    n: usize,
    what: &str,
) -> CallResult<Option<Vec<String>>> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: the caller promises `n` pointers at `p`.
    let ptrs = unsafe { slice_arg(p, n, what) }?;
    ptrs.iter()
        .enumerate()
        // SAFETY: the caller promises each is NULL or NUL-terminated.
        .map(|(i, &s)| unsafe { str_arg(s, &format!("{what}[{i}]")) }.map(str::to_owned))
        .collect::<CallResult<Vec<_>>>()
        .map(Some)
}

/// A model's metadata: `meta_count` keys and values (none when the count is 0).
///
/// # Safety
/// `meta_keys` and `meta_values` are NULL or point to `meta_count` pointers each, every one NULL
/// or NUL-terminated.
pub(crate) unsafe fn meta_arg(m: &ProbelogModel) -> CallResult<Vec<(String, String)>> {
    if m.meta_count == 0 {
        return Ok(Vec::new());
    }
    // SAFETY: the caller promises meta_count pointers in each array, or NULL.
    let keys = unsafe { strings_arg(m.meta_keys, m.meta_count, "model->meta_keys") }?
        .ok_or_else(|| Failure::null("model->meta_keys"))?;
    // SAFETY: as above.
    let vals = unsafe { strings_arg(m.meta_values, m.meta_count, "model->meta_values") }?
        .ok_or_else(|| Failure::null("model->meta_values"))?;
    Ok(keys.into_iter().zip(vals).collect())
}

/// `ProbelogModel.existing_name`: what to do with a live model of the same name.
pub(crate) fn existing_name_arg(code: u32) -> CallResult<ExistingName> {
    code_arg(
        code,
        "model->existing_name",
        &[
            code_choice!(PROBELOG_NAME_REFUSE => ExistingName::Refuse),
            code_choice!(PROBELOG_NAME_REPLACE => ExistingName::Replace),
            code_choice!(PROBELOG_NAME_KEEP => ExistingName::Keep),
        ],
    )
}

/// The writer behind a pointer. A writer that panicked (poisoned) is refused: its staged state
/// may be half-changed.
///
/// # Safety
/// `p` is NULL or a live writer handle.
pub(crate) unsafe fn lock_writer<'a>(
    p: *const ProbelogWriter,
) -> CallResult<std::sync::MutexGuard<'a, IndexWriter>> {
    // SAFETY: the caller promises a live handle or NULL.
    let handle = unsafe { p.as_ref() }.ok_or_else(|| Failure::null("writer"))?;
    handle.writer.lock().map_err(|_| {
        Failure::new(
            PROBELOG_ERR_PANIC,
            "this writer failed with an internal error earlier and cannot be used: close it",
        )
    })
}

/// Stages one model. Its logits are z-normalized per logit and checked: the probe count must be
/// the index's, NaN and infinities are refused, constant logits are refused unless
/// keep_constant, the label count must be num_logits, and a name that a live model (or a model
/// staged in this commit) has is refused with PROBELOG_ERR_DUPLICATE_NAME unless existing_name
/// says otherwise. With PROBELOG_NAME_REPLACE the live models of that name are staged for
/// deletion with it. A refused model leaves the writer as it was. `out` may be NULL.
///
/// # Safety
/// `writer` is NULL or a live writer; `model` is NULL or points to a `ProbelogModel` whose
/// pointers are as its fields document; `out` is NULL or valid for writing a
/// `ProbelogModelAdded`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn probelog_writer_add_model(
    writer: *mut ProbelogWriter,
    model: *const ProbelogModel,
    out: *mut ProbelogModelAdded,
) -> ProbelogStatus {
    guard(|| {
        // SAFETY: the caller promises a live handle or NULL.
        let mut w = unsafe { lock_writer(writer) }?;
        // SAFETY: the caller promises NULL or a valid ProbelogModel.
        let m = unsafe { model.as_ref() }.ok_or_else(|| Failure::null("model"))?;
        // SAFETY: the caller promises each string field is NULL or NUL-terminated.
        let name = unsafe { str_arg(m.name, "model->name") }?;
        // SAFETY: as above.
        let source = unsafe { opt_str_arg(m.source, "model->source") }?.unwrap_or_default();
        let (p, l) = (m.num_probes as usize, m.num_logits as usize);
        let n = p
            .checked_mul(l)
            .ok_or_else(|| Failure::invalid("num_probes * num_logits overflows"))?;
        if m.logits.is_null() {
            return Err(Failure::null("model->logits"));
        }
        // SAFETY: the caller promises num_probes * num_logits floats at `logits`.
        let values = unsafe { slice_arg(m.logits, n, "model->logits") }?;
        // SAFETY: the caller promises num_logits label pointers, or NULL.
        let labels = unsafe { strings_arg(m.labels, l, "model->labels") }?;
        // SAFETY: the caller promises meta_count pointers in each metadata array, or NULL.
        let meta = unsafe { meta_arg(m) }?;
        let input = ModelInput {
            name: name.to_owned(),
            source: source.to_owned(),
            meta,
            labels,
            logits: LogitMatrix::new(values, p, l)?,
        };
        let existing_name = existing_name_arg(m.existing_name)?;
        let opts = AppendOptions {
            keep_constant: m.keep_constant != 0,
            existing_name,
            ..AppendOptions::default()
        };
        let added = w.add_model(input, opts)?;
        // SAFETY: the caller promises `out` is NULL or writable.
        unsafe { write_optional_out(out, || ProbelogModelAdded::from(added), "out") }
    })
}

/// Publishes every staged model and deletion in one atomic, crash-safe commit; readers see them from now on
/// (`probelog_index_refresh`). `out` may be NULL. The writer stays open for more models.
///
/// # Safety
/// `writer` is NULL or a live writer; `out` is NULL or valid for writing a `ProbelogCommitInfo`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn probelog_writer_commit(
    writer: *mut ProbelogWriter,
    out: *mut ProbelogCommitInfo,
) -> ProbelogStatus {
    guard(|| {
        // SAFETY: the caller promises a live handle or NULL.
        let mut w = unsafe { lock_writer(writer) }?;
        let s = w.commit()?;
        let info = || ProbelogCommitInfo {
            sequence: s.sequence,
            entries_added: s.entries_added,
            models_added: s.models_added,
            entry_count: s.entry_count,
            model_count: s.model_count,
            bytes_written: s.bytes_written,
            models_deleted: s.models_deleted,
        };
        // SAFETY: the caller promises `out` is NULL or writable.
        unsafe { write_optional_out(out, info, "out") }
    })
}

/// Stages the deletion of the committed model `model_id` (`probelog-tool delete --model-id`):
/// from the commit on, no search or lookup returns its entries (`probelog_index_descriptor`
/// gives PROBELOG_ERR_DELETED), and compaction drops them. An id that no committed model has, or
/// a model deleted already (or staged for deletion), is PROBELOG_ERR_INVALID_ARGUMENT, and
/// nothing is staged.
///
/// # Safety
/// `writer` is NULL or a live writer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn probelog_writer_delete_model(
    writer: *mut ProbelogWriter,
    model_id: u64,
) -> ProbelogStatus {
    guard(|| {
        // SAFETY: the caller promises a live handle or NULL.
        let mut w = unsafe { lock_writer(writer) }?;
        w.delete_model(model_id)?;
        Ok(())
    })
}

/// Stages the deletion of every live committed model named `name` (`probelog-tool delete
/// --model`); `*deleted_count_out` (when not NULL) receives how many. A name that no live
/// committed model has is PROBELOG_ERR_INVALID_ARGUMENT, and nothing is staged (the out value is
/// then 0).
///
/// # Safety
/// `writer` is NULL or a live writer; `name` is NULL or a NUL-terminated string;
/// `deleted_count_out` is NULL or valid for writing a `uint64_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn probelog_writer_delete_models_named(
    writer: *mut ProbelogWriter,
    name: *const c_char,
    deleted_count_out: *mut u64,
) -> ProbelogStatus {
    guard(|| {
        // SAFETY: the caller promises `deleted_count_out` is NULL or writable.
        unsafe { write_optional_out(deleted_count_out, || 0, "deleted_count_out") }?;
        // SAFETY: the caller promises a live handle or NULL.
        let mut w = unsafe { lock_writer(writer) }?;
        // SAFETY: the caller promises NULL or a NUL-terminated string.
        let name = unsafe { str_arg(name, "name") }?;
        let ids = w.delete_models_named(name)?;
        // SAFETY: as above.
        unsafe { write_optional_out(deleted_count_out, || ids.len() as u64, "deleted_count_out") }
    })
}

/// Releases the writer lock and frees the writer; models staged since the last commit are
/// discarded. NULL is ignored.
///
/// # Safety
/// `writer` is NULL or a live writer that no other thread is using and that is not used again.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn probelog_writer_close(writer: *mut ProbelogWriter) {
    // SAFETY: forwarded from the caller.
    unsafe { free_handle(writer) }
}
