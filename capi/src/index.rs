//! A read-only index handle: open, describe, refresh, read a stored descriptor, close.

use std::ffi::{c_char, c_int};
use std::ptr;
use std::sync::{PoisonError, RwLock, RwLockReadGuard};

use probelog::Index;

use crate::args::{free_handle, path_arg, write_out};
use crate::error::{CallResult, Failure, ProbelogStatus, guard};

/// An index opened read-only (a memory map of one committed snapshot). Opaque. May be shared
/// between threads: searches run concurrently, `probelog_index_refresh` waits for them.
pub struct ProbelogIndex {
    index: RwLock<Index>,
}

opaque_handle!(ProbelogIndex);

impl ProbelogIndex {
    /// The snapshot, for reading. A panic in an earlier call cannot leave a half-changed index
    /// behind (refresh replaces it whole), so a poisoned lock is still good to read.
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Counts and sizes of an index snapshot.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct ProbelogIndexInfo {
    /// P: values per query vector, and per column of logits.
    pub num_probes: u32,
    /// d: values per text embedding; 0 when the index holds no probe embeddings (no text search).
    pub embedding_dim: u32,
    /// Entries (logits) in the snapshot, those of deleted models included; entry ids run from 0
    /// to entry_count - 1.
    pub entry_count: u64,
    /// Models in the snapshot, deleted ones included; model ids run from 0 to model_count - 1.
    pub model_count: u64,
    /// The sequence number of the snapshot's commit; it grows with every commit.
    pub sequence: u64,
    /// Entries of the models that are not deleted: the entries a search can return.
    pub live_entry_count: u64,
    /// Models that are not deleted.
    pub live_model_count: u64,
    /// Entries of the deleted models (never returned; compaction drops them).
    pub deleted_entry_count: u64,
    /// Deleted models (`probelog_writer_delete_model`, `probelog_writer_delete_models_named`,
    /// PROBELOG_NAME_REPLACE).
    pub deleted_model_count: u64,
}

/// The handle behind a pointer that C passed in.
///
/// # Safety
/// `p` is NULL or a handle from `probelog_index_open` that has not been closed.
pub(crate) unsafe fn index_arg<'a>(p: *const ProbelogIndex) -> CallResult<&'a ProbelogIndex> {
    // SAFETY: the caller promises a live handle or NULL; a live handle is a valid Box allocation.
    unsafe { p.as_ref() }.ok_or_else(|| Failure::null("index"))
}

/// Opens the index file at `path` read-only and stores a new handle in `*out` (NULL on failure).
/// Opening costs the same for any number of entries; the handle sees the snapshot committed at
/// this moment until `probelog_index_refresh`.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string; `out` is NULL or valid for writing a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn probelog_index_open(
    path: *const c_char,
    out: *mut *mut ProbelogIndex,
) -> ProbelogStatus {
    guard(|| {
        // SAFETY: the caller promises `out` is NULL or writable.
        unsafe { write_out(out, ptr::null_mut(), "out") }?;
        // SAFETY: the caller promises `path` is NULL or NUL-terminated.
        let path = unsafe { path_arg(path, "path") }?;
        let index = Index::open(path)?;
        let handle = Box::into_raw(Box::new(ProbelogIndex {
            index: RwLock::new(index),
        }));
        // SAFETY: checked writable above.
        unsafe { write_out(out, handle, "out") }
    })
}

/// Closes an index handle; NULL is ignored. Results read from it stay valid (they own their
/// strings).
///
/// # Safety
/// `index` is NULL or a handle from `probelog_index_open` that no other thread is using and that
/// is not used again.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn probelog_index_close(index: *mut ProbelogIndex) {
    // SAFETY: forwarded from the caller.
    unsafe { free_handle(index) }
}

/// Fills `*out` with the counts of the handle's snapshot, live and deleted.
///
/// # Safety
/// `index` is NULL or a live handle; `out` is NULL or valid for writing a `ProbelogIndexInfo`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn probelog_index_info(
    index: *const ProbelogIndex,
    out: *mut ProbelogIndexInfo,
) -> ProbelogStatus {
    guard(|| {
        // SAFETY: the caller promises a live handle or NULL.
        let handle = unsafe { index_arg(index) }?;
        let index = handle.read();
        let embedding_dim = match index.probe_embeddings()? {
            Some((_, d)) => u32::try_from(d)
                .map_err(|_| Failure::invalid("the probe embeddings' dimension exceeds 32 bits"))?,
            None => 0,
        };
        let info = ProbelogIndexInfo {
            num_probes: u32::try_from(index.num_probes())
                .map_err(|_| Failure::invalid("the probe count exceeds 32 bits"))?,
            embedding_dim,
            entry_count: index.entry_count(),
            model_count: index.model_count(),
            sequence: index.sequence(),
            live_entry_count: index.live_entry_count()?,
            live_model_count: index.live_model_count(),
            deleted_entry_count: index.deleted_entry_count()?,
            deleted_model_count: index.deleted_models().len() as u64,
        };
        // SAFETY: the caller promises `out` is NULL or writable.
        unsafe { write_out(out, info, "out") }
    })
}

/// Moves the handle to the newest commit of its file (or to the file that compaction renamed
/// into place). `*changed` (when `changed` is not NULL) is set to 1 if the snapshot changed,
/// else 0. Waits for searches on this handle that are running.
///
/// # Safety
/// `index` is NULL or a live handle; `changed` is NULL or valid for writing an int.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn probelog_index_refresh(
    index: *const ProbelogIndex,
    changed: *mut c_int,
) -> ProbelogStatus {
    guard(|| {
        // SAFETY: the caller promises a live handle or NULL.
        let handle = unsafe { index_arg(index) }?;
        let mut guard = handle.index.write().unwrap_or_else(PoisonError::into_inner);
        let did = guard.refresh()?;
        drop(guard);
        if !changed.is_null() {
            // SAFETY: not NULL, and the caller promises it is writable.
            unsafe { write_out(changed, c_int::from(did), "changed") }?;
        }
        Ok(())
    })
}

/// Copies the stored (z-normalized) descriptor of `entry` into `out`, which holds `len` floats;
/// `len` must be the probe count. Such a descriptor is a valid query vector. An entry of a
/// deleted model is PROBELOG_ERR_DELETED.
///
/// # Safety
/// `index` is NULL or a live handle; `out` is NULL or valid for writing `len` floats.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn probelog_index_descriptor(
    index: *const ProbelogIndex,
    entry: u64,
    out: *mut f32,
    len: usize,
) -> ProbelogStatus {
    guard(|| {
        // SAFETY: the caller promises a live handle or NULL.
        let handle = unsafe { index_arg(index) }?;
        let index = handle.read();
        let p = index.num_probes();
        if len != p {
            return Err(Failure::new(
                crate::PROBELOG_ERR_WRONG_LENGTH,
                format!("the output buffer holds {len} floats, the index has {p} probes"),
            ));
        }
        if out.is_null() {
            return Err(Failure::null("out"));
        }
        if !out.is_aligned() {
            return Err(Failure::invalid("out is not aligned to 4 bytes"));
        }
        let d = index.descriptor(entry)?;
        // SAFETY: `out` is non-NULL and aligned, and the caller promises room for `len` = P
        // floats; `d` holds P floats and cannot overlap memory the caller owns.
        unsafe { ptr::copy_nonoverlapping(d.as_ptr(), out, p) };
        Ok(())
    })
}
