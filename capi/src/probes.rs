//! The probe set file (`.pset`) of an index: create an index from one, optionally stored in the
//! index (format-spec.md, "EmbeddedProbeSet"), and read a stored one back, as bytes or as a file,
//! so that an index ships without side files.

use std::ffi::c_char;

use probelog::CreateOptions;
use probelog::probe_set::ProbeSet;

use crate::args::{path_arg, write_out};
use crate::error::{
    Failure, PROBELOG_ERR_INVALID_INPUT, PROBELOG_ERR_WRONG_LENGTH, ProbelogStatus, guard,
};
use crate::index::{ProbelogIndex, index_arg};

/// Flag of `probelog_create_from_probe_set`: store the probe set file in the new index too, byte
/// for byte.
pub const PROBELOG_EMBED_PROBES: u32 = 1;
/// Flag of `probelog_index_write_probe_set`: replace `out_path` if it exists.
pub const PROBELOG_REPLACE_FILE: u32 = 1;

/// Creates a new, empty index file at `path` for the probe set file `pset_path` (from
/// `probelog-tool probes build`): the index takes its probe count, names and fingerprint, f32
/// storage. With `flags` = PROBELOG_EMBED_PROBES the file is stored in the index as well, so
/// that the index alone is enough to probe models. An existing `path` is never overwritten:
/// PROBELOG_ERR_EXISTS.
///
/// # Safety
/// `path` and `pset_path` are NULL or NUL-terminated strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn probelog_create_from_probe_set(
    path: *const c_char,
    pset_path: *const c_char,
    flags: u32,
) -> ProbelogStatus {
    guard(|| {
        // SAFETY: the caller promises `path` is NULL or NUL-terminated.
        let path = unsafe { path_arg(path, "path") }?;
        // SAFETY: the caller promises `pset_path` is NULL or NUL-terminated.
        let pset_path = unsafe { path_arg(pset_path, "pset_path") }?;
        if flags & !PROBELOG_EMBED_PROBES != 0 {
            return Err(Failure::invalid(format!(
                "unknown flags {flags:#x}: the only flag is PROBELOG_EMBED_PROBES (1)"
            )));
        }
        let set = ProbeSet::read(pset_path)?;
        let embed = flags & PROBELOG_EMBED_PROBES != 0;
        probelog::create(path, &CreateOptions::for_probe_set(&set, embed))?;
        Ok(())
    })
}

/// The probe set file stored in the index (`probelog-tool create --embed-probes`, `probes
/// attach`), byte for byte. `*len` receives its size in bytes, 0 when the index holds none.
/// With `buf` NULL only the size is given; otherwise the bytes are checked completely (their
/// fingerprint recomputed: PROBELOG_ERR_CORRUPT when damaged) and copied into `buf`, which must
/// hold `cap >= *len` bytes (else PROBELOG_ERR_WRONG_LENGTH, nothing copied).
///
/// # Safety
/// `index` is NULL or a live handle; `buf` is NULL or valid for writing `cap` bytes; `len` is
/// NULL or valid for writing a `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn probelog_index_probe_set(
    index: *const ProbelogIndex,
    buf: *mut u8,
    cap: usize,
    len: *mut usize,
) -> ProbelogStatus {
    guard(|| {
        // SAFETY: the caller promises a live handle or NULL.
        let handle = unsafe { index_arg(index) }?;
        let index = handle.read();
        let bytes = index.embedded_probe_set_bytes().unwrap_or_default();
        // SAFETY: the caller promises `len` is NULL or writable.
        unsafe { write_out(len, bytes.len(), "len") }?;
        if buf.is_null() || bytes.is_empty() {
            return Ok(());
        }
        if cap < bytes.len() {
            return Err(Failure::new(
                PROBELOG_ERR_WRONG_LENGTH,
                format!("the probe set is {} bytes; buf holds {cap}", bytes.len()),
            ));
        }
        index.embedded_probe_set()?;
        // SAFETY: `buf` is not NULL and the caller promises `cap >= bytes.len()` writable bytes;
        // the index's map and the caller's buffer cannot overlap (the map is read-only).
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf, bytes.len()) };
        Ok(())
    })
}

/// Writes the probe set file stored in the index to `out_path`, byte for byte, after checking it
/// completely (a damaged copy is never written: PROBELOG_ERR_CORRUPT). The file is written
/// beside `out_path`, synced and renamed into place. An existing `out_path` is refused
/// (PROBELOG_ERR_EXISTS) unless `flags` = PROBELOG_REPLACE_FILE; the index file itself, by any
/// path, always is. An index that holds no probe set: PROBELOG_ERR_INVALID_INPUT.
///
/// # Safety
/// `index` is NULL or a live handle; `out_path` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn probelog_index_write_probe_set(
    index: *const ProbelogIndex,
    out_path: *const c_char,
    flags: u32,
) -> ProbelogStatus {
    guard(|| {
        // SAFETY: the caller promises a live handle or NULL.
        let handle = unsafe { index_arg(index) }?;
        // SAFETY: the caller promises `out_path` is NULL or NUL-terminated.
        let out = unsafe { path_arg(out_path, "out_path") }?;
        if flags & !PROBELOG_REPLACE_FILE != 0 {
            return Err(Failure::invalid(format!(
                "unknown flags {flags:#x}: the only flag is PROBELOG_REPLACE_FILE (1)"
            )));
        }
        let index = handle.read();
        if index.embedded_probe_set_bytes().is_none() {
            return Err(Failure::new(
                PROBELOG_ERR_INVALID_INPUT,
                format!("{} holds no embedded probe set", index.path().display()),
            ));
        }
        index.write_embedded_probe_set(out, flags & PROBELOG_REPLACE_FILE != 0)?;
        Ok(())
    })
}
