//! The probe set file of an index through the C ABI (the functions of `probelog.h`, called from
//! Rust): `probelog_create_from_probe_set` with and without PROBELOG_EMBED_PROBES,
//! `probelog_index_probe_set` (size, then bytes, byte for byte), `probelog_index_write_probe_set`
//! (never over an existing file without PROBELOG_REPLACE_FILE, never over the index), and a
//! damaged copy refused by both.

use std::ffi::{CStr, CString};
use std::fs;
use std::path::{Path, PathBuf};
use std::ptr;

use probelog::probe_set::ProbeSet;
use probelog_c::*;

fn last_error() -> String {
    // SAFETY: never NULL; valid until the next status call on this thread, after the copy.
    unsafe { CStr::from_ptr(probelog_last_error()) }
        .to_string_lossy()
        .into_owned()
}

fn cstr(p: &Path) -> CString {
    CString::new(p.to_str().unwrap()).unwrap()
}

/// A probe set file of 5 probes of 4x4 pixels at `path`; returns its bytes.
fn write_pset(path: &Path) -> Vec<u8> {
    let names = (0..5).map(|i| format!("p{i}.png")).collect();
    let pixels = (0..5 * 48).map(|i| (i * 13 % 251) as u8).collect();
    let bytes = ProbeSet::new(4, names, pixels).unwrap().to_bytes();
    fs::write(path, &bytes).unwrap();
    bytes
}

/// A temporary directory with the probe set file `probes.pset` of [`write_pset`] and the index
/// `hub.plog` that `probelog_create_from_probe_set` made from it with `flags`.
struct Created {
    dir: tempfile::TempDir,
    pset: PathBuf,
    /// The probe set file's bytes.
    original: Vec<u8>,
    index: PathBuf,
}

fn created(flags: u32) -> Created {
    let dir = tempfile::tempdir().unwrap();
    let pset = dir.path().join("probes.pset");
    let original = write_pset(&pset);
    let index = dir.path().join("hub.plog");
    assert_eq!(create(&index, &pset, flags), PROBELOG_OK, "flags {flags}");
    Created {
        dir,
        pset,
        original,
        index,
    }
}

/// An index handle, closed on drop.
struct Idx(*mut ProbelogIndex);

impl Idx {
    fn open(path: &Path) -> Idx {
        let p = cstr(path);
        let mut h = ptr::null_mut();
        // SAFETY: a NUL-terminated path and a writable out pointer.
        assert_eq!(
            unsafe { probelog_index_open(p.as_ptr(), &mut h) },
            PROBELOG_OK
        );
        Idx(h)
    }

    /// The status of `probelog_index_probe_set` and the bytes it gave (`cap` of them asked).
    fn probe_set(&self, cap: Option<usize>) -> (ProbelogStatus, usize, Vec<u8>) {
        let mut len = usize::MAX;
        let mut buf = vec![0u8; cap.unwrap_or(0)];
        let ptr = if cap.is_some() {
            buf.as_mut_ptr()
        } else {
            ptr::null_mut()
        };
        // SAFETY: a live handle, `buf` holds `cap` bytes (or NULL), `len` is writable.
        let st = unsafe { probelog_index_probe_set(self.0, ptr, buf.len(), &mut len) };
        (st, len, buf)
    }

    fn write(&self, out: &Path, flags: u32) -> ProbelogStatus {
        let p = cstr(out);
        // SAFETY: a live handle and a NUL-terminated path.
        unsafe { probelog_index_write_probe_set(self.0, p.as_ptr(), flags) }
    }
}

impl Drop for Idx {
    fn drop(&mut self) {
        // SAFETY: a live handle, used no more.
        unsafe { probelog_index_close(self.0) }
    }
}

fn create(path: &Path, pset: &Path, flags: u32) -> ProbelogStatus {
    let (p, s) = (cstr(path), cstr(pset));
    // SAFETY: NUL-terminated strings.
    unsafe { probelog_create_from_probe_set(p.as_ptr(), s.as_ptr(), flags) }
}

#[test]
fn embedded_probe_set_comes_back_byte_for_byte() {
    let Created {
        dir,
        pset,
        original,
        index,
    } = created(PROBELOG_EMBED_PROBES);
    assert_eq!(
        create(&index, &pset, PROBELOG_EMBED_PROBES),
        PROBELOG_ERR_EXISTS
    );
    assert_eq!(
        create(&dir.path().join("x.plog"), &pset, 2),
        PROBELOG_ERR_INVALID_ARGUMENT
    );
    assert!(last_error().contains("PROBELOG_EMBED_PROBES"));

    let idx = Idx::open(&index);
    let mut info = ProbelogIndexInfo::default();
    // SAFETY: a live handle and a writable struct.
    assert_eq!(
        unsafe { probelog_index_info(idx.0, &mut info) },
        PROBELOG_OK
    );
    assert_eq!(info.num_probes, 5);
    let (st, len, _) = idx.probe_set(None);
    assert_eq!((st, len), (PROBELOG_OK, original.len()));
    let (st, _, _) = idx.probe_set(Some(len - 1));
    assert_eq!(st, PROBELOG_ERR_WRONG_LENGTH);
    let (st, _, bytes) = idx.probe_set(Some(len + 3));
    assert_eq!(st, PROBELOG_OK);
    assert_eq!(&bytes[..len], &original[..]);

    let out = dir.path().join("back.pset");
    assert_eq!(idx.write(&out, 0), PROBELOG_OK);
    assert_eq!(fs::read(&out).unwrap(), original);
    fs::write(&out, b"kept").unwrap();
    assert_eq!(idx.write(&out, 0), PROBELOG_ERR_EXISTS);
    assert_eq!(fs::read(&out).unwrap(), b"kept");
    assert_eq!(idx.write(&out, PROBELOG_REPLACE_FILE), PROBELOG_OK);
    assert_eq!(fs::read(&out).unwrap(), original);
    let before = fs::read(&index).unwrap();
    assert_eq!(
        idx.write(&index, PROBELOG_REPLACE_FILE),
        PROBELOG_ERR_INVALID_INPUT
    );
    assert!(
        last_error().contains("the index file itself"),
        "{}",
        last_error()
    );
    assert_eq!(fs::read(&index).unwrap(), before);
    assert_eq!(idx.write(&out, 4), PROBELOG_ERR_INVALID_ARGUMENT);

    // NULL arguments.
    // SAFETY: NULL pointers are refused, never read.
    unsafe {
        assert_eq!(
            probelog_index_probe_set(ptr::null(), ptr::null_mut(), 0, ptr::null_mut()),
            PROBELOG_ERR_NULL_POINTER
        );
        assert_eq!(
            probelog_index_probe_set(idx.0, ptr::null_mut(), 0, ptr::null_mut()),
            PROBELOG_ERR_NULL_POINTER
        );
        assert_eq!(
            probelog_index_write_probe_set(idx.0, ptr::null(), 0),
            PROBELOG_ERR_NULL_POINTER
        );
        assert_eq!(
            probelog_create_from_probe_set(ptr::null(), ptr::null(), 0),
            PROBELOG_ERR_NULL_POINTER
        );
    }
}

#[test]
fn without_embedding_there_is_nothing_to_read() {
    let Created { dir, index, .. } = created(0);
    let idx = Idx::open(&index);
    let (st, len, _) = idx.probe_set(Some(16));
    assert_eq!((st, len), (PROBELOG_OK, 0));
    let out = dir.path().join("none.pset");
    assert_eq!(idx.write(&out, 0), PROBELOG_ERR_INVALID_INPUT);
    assert!(last_error().contains("holds no embedded probe set"));
    assert!(!out.exists());
}

#[test]
fn a_damaged_copy_is_refused() {
    let Created {
        dir,
        original,
        index,
        ..
    } = created(PROBELOG_EMBED_PROBES);
    let mut bytes = fs::read(&index).unwrap();
    // The section is the file's bytes: find them and change a pixel.
    let at = bytes
        .windows(original.len())
        .position(|w| w == &original[..])
        .expect("the embedded copy");
    bytes[at + original.len() - 40] ^= 0x3c;
    fs::write(&index, &bytes).unwrap();
    let idx = Idx::open(&index);
    let (st, len, _) = idx.probe_set(Some(original.len()));
    assert_eq!((st, len), (PROBELOG_ERR_CORRUPT, original.len()));
    assert!(last_error().contains("fingerprint"), "{}", last_error());
    let out = dir.path().join("back.pset");
    assert_eq!(idx.write(&out, 0), PROBELOG_ERR_CORRUPT);
    assert!(!out.exists());
}
