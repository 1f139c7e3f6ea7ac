//! Checked conversions of the raw arguments that C passes in: NULL pointers, UTF-8, alignment and
//! lengths become [`Failure`]s with a message naming the argument.

use std::ffi::{CStr, c_char};
use std::path::Path;

use crate::error::{CallResult, Failure, PROBELOG_ERR_INVALID_UTF8, quiet};

/// A NUL-terminated UTF-8 string argument.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that stays valid and unchanged for `'a`.
pub(crate) unsafe fn str_arg<'a>(p: *const c_char, what: &str) -> CallResult<&'a str> {
    if p.is_null() {
        return Err(Failure::null(what));
    }
    // SAFETY: not NULL, and the caller promises a NUL-terminated string valid for 'a.
    let c = unsafe { CStr::from_ptr(p) };
    c.to_str().map_err(|e| {
        Failure::new(
            PROBELOG_ERR_INVALID_UTF8,
            format!(
                "{what} is not valid UTF-8 (invalid byte at offset {}): {}",
                e.valid_up_to(),
                String::from_utf8_lossy(c.to_bytes())
            ),
        )
    })
}

/// A string argument that may be NULL (`None`).
///
/// # Safety
/// As [`str_arg`].
pub(crate) unsafe fn opt_str_arg<'a>(p: *const c_char, what: &str) -> CallResult<Option<&'a str>> {
    if p.is_null() {
        Ok(None)
    } else {
        // SAFETY: forwarded from the caller.
        unsafe { str_arg(p, what) }.map(Some)
    }
}

/// A path argument: a NUL-terminated UTF-8 string.
///
/// # Safety
/// As [`str_arg`].
pub(crate) unsafe fn path_arg<'a>(p: *const c_char, what: &str) -> CallResult<&'a Path> {
    // SAFETY: forwarded from the caller.
    unsafe { str_arg(p, what) }.map(Path::new)
}

/// An array argument of `len` elements. NULL is refused unless `len` is 0.
///
/// # Safety
/// `p` is NULL or points to `len` initialized values of `T` that stay valid and unchanged for
/// `'a`.
pub(crate) unsafe fn slice_arg<'a, T>(p: *const T, len: usize, what: &str) -> CallResult<&'a [T]> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(Failure::null(what));
    }
    if !p.is_aligned() {
        return Err(Failure::invalid(format!(
            "{what} is not aligned to {} bytes",
            std::mem::align_of::<T>()
        )));
    }
    if len
        .checked_mul(std::mem::size_of::<T>())
        .is_none_or(|b| b > isize::MAX as usize)
    {
        return Err(Failure::invalid(format!(
            "{what}: length {len} is too large"
        )));
    }
    // SAFETY: not NULL, aligned, the byte size fits in isize, and the caller promises `len`
    // initialized values valid for 'a.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// Writes `value` through an out pointer.
///
/// # Safety
/// `out` is NULL or valid for a write of `T` (it need not be initialized).
pub(crate) unsafe fn write_out<T>(out: *mut T, value: T, what: &str) -> CallResult {
    if out.is_null() {
        return Err(Failure::null(what));
    }
    if !out.is_aligned() {
        return Err(Failure::invalid(format!("{what} is misaligned")));
    }
    // SAFETY: not NULL, aligned, and the caller promises it is valid for a write; `write` does
    // not drop the old (possibly uninitialized) value.
    unsafe { out.write(value) };
    Ok(())
}

/// Writes `value()` through an out pointer that may be NULL, in which case nothing is computed
/// or written.
///
/// # Safety
/// As [`write_out`].
pub(crate) unsafe fn write_optional_out<T>(
    out: *mut T,
    value: impl FnOnce() -> T,
    what: &str,
) -> CallResult {
    if out.is_null() {
        return Ok(());
    }
    // SAFETY: forwarded from the caller.
    unsafe { write_out(out, value(), what) }
}

/// Frees a handle that `Box::into_raw` made (an index, results, a writer); NULL is ignored, and
/// a panic in its destructor stays on this side of the boundary.
///
/// # Safety
/// `handle` is NULL or a live handle of type `T` that no other thread is using and that is not
/// used again.
pub(crate) unsafe fn free_handle<T>(handle: *mut T) {
    quiet((), || {
        if !handle.is_null() {
            // SAFETY: the caller hands over a live handle made by Box::into_raw, used no more.
            drop(unsafe { Box::from_raw(handle) });
        }
    })
}

/// One choice of [`code_arg`]: `code_choice!(PROBELOG_MODE_HNSW => SearchMode::Hnsw)` is the
/// constant, its name and the value it stands for.
macro_rules! code_choice {
    ($code:ident => $value:expr) => {
        ($code, stringify!($code), $value)
    };
}
pub(crate) use code_choice;

/// A `u32` code argument (PROBELOG_METRIC_*, PROBELOG_MODE_*, PROBELOG_NAME_*): the value that
/// `choices` ([`code_choice!`]) pair with it. An unknown code is an error that lists the choices as `NAME (code)`,
/// in their order.
pub(crate) fn code_arg<T: Copy>(
    code: u32,
    what: &str,
    choices: &[(u32, &str, T)],
) -> CallResult<T> {
    if let Some(&(_, _, value)) = choices.iter().find(|(c, _, _)| *c == code) {
        return Ok(value);
    }
    let listed: Vec<String> = choices
        .iter()
        .map(|(c, name, _)| format!("{name} ({c})"))
        .collect();
    let (last, others) = listed.split_last().expect("at least one choice");
    Err(Failure::invalid(format!(
        "unknown {what} {code}: use {} or {last}",
        others.join(", ")
    )))
}
