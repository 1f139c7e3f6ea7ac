//! The C ABI of probelog: open an index read-only, search it by entry, by query vector or by text
//! embedding (filtered by model metadata and name, with explanations), read the results, append
//! and delete models under the writer lock.
//!
//! The header `include/probelog.h` is generated from this crate by cbindgen (`cbindgen.toml`);
//! the test `tests/header.rs` fails when the committed header is stale and rewrites it when run
//! with `PROBELOG_BLESS=1`. The guide is `docs/embedding.md` at the repository root.
//!
//! Conventions, stated once for every function:
//! - Functions that can fail return a [`ProbelogStatus`]: [`PROBELOG_OK`] (0) or one of the
//!   `PROBELOG_ERR_*` codes. Each of them also sets this thread's last error message, which
//!   [`probelog_last_error`] returns: the message when the call failed, "" when it succeeded.
//! - Handles ([`ProbelogIndex`], [`ProbelogResults`], [`ProbelogWriter`]) are opaque. Each is
//!   released by its own function (`probelog_index_close`, `probelog_results_free`,
//!   `probelog_writer_close`), which accepts NULL.
//! - No panic crosses the boundary: every exported function catches panics and turns them into
//!   [`PROBELOG_ERR_PANIC`].
//! - Strings are NUL-terminated UTF-8; paths must be UTF-8 too.
//! - Thread safety: every handle may be shared between threads. Searches on one
//!   [`ProbelogIndex`] run concurrently (a refresh waits for them); calls on one
//!   [`ProbelogWriter`] are serialized. Searches use probelog's rayon thread pool.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]
#![warn(missing_debug_implementations)]

/// Gives an opaque handle type its `Debug` (the type's name only: the contents are private) and
/// checks at compile time that it is `Send + Sync`, since sharing a handle between threads is part
/// of the documented contract.
macro_rules! opaque_handle {
    ($handle:ident) => {
        impl std::fmt::Debug for $handle {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($handle)).finish_non_exhaustive()
            }
        }

        const _: () = {
            const fn shared<T: Send + Sync>() {}
            shared::<$handle>();
        };
    };
}

mod args;
mod error;
mod index;
mod probes;
mod search;
mod writer;
// After `writer`, so that the header declares its types after the ones it uses.
mod collab;

pub use collab::*;
pub use error::*;
pub use index::*;
pub use probes::*;
pub use search::*;
pub use writer::*;

/// The version of this ABI. From the first release on, it changes whenever a function, a struct
/// layout or a constant of `probelog.h` changes incompatibly; compare it with
/// `probelog_abi_version` at run time. Version 1 has not been released yet and still changes in
/// place: `ProbelogSearchParams` gained `mode` and `candidates`, then `blend_weight`, then
/// `where_conditions`, `where_count`, `model_name` and `explain` (with `ProbelogProbeShare` and
/// `probelog_results_explain_len` / `_get`); `ProbelogModel` gained `existing_name`
/// (PROBELOG_NAME_*), `ProbelogCommitInfo` `models_deleted`, `ProbelogIndexInfo` the live and
/// deleted counts; `probelog_writer_delete_model`, `probelog_writer_delete_models_named`,
/// PROBELOG_ERR_DUPLICATE_NAME and PROBELOG_ERR_DELETED were added; so were
/// `probelog_create_from_probe_set`, `probelog_index_probe_set` and
/// `probelog_index_write_probe_set` (the embedded probe set), and
/// `probelog_writer_add_model_collab` with `ProbelogCollabParams` and `ProbelogProbeFn`
/// (collaborative probing); all within version 1.
pub const PROBELOG_ABI_VERSION: u32 = 1;

/// The ABI version of the loaded library; equal to `PROBELOG_ABI_VERSION` of the header it was
/// built with.
#[unsafe(no_mangle)]
pub extern "C" fn probelog_abi_version() -> u32 {
    error::quiet(0, || PROBELOG_ABI_VERSION)
}

/// The version of the probelog library, e.g. "0.1.0": a static NUL-terminated string.
#[unsafe(no_mangle)]
pub extern "C" fn probelog_version() -> *const std::ffi::c_char {
    const VERSION: &std::ffi::CStr = match std::ffi::CStr::from_bytes_with_nul(
        concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes(),
    ) {
        Ok(v) => v,
        Err(_) => panic!("the package version has no NUL byte"),
    };
    error::quiet(std::ptr::null(), || VERSION.as_ptr())
}
