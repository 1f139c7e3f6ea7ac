//! Indexes that ship with their probe set: the `.pset` bytes embedded at create or attached
//! later come back byte for byte, only the index's own probe set is accepted and only once,
//! open refuses a second copy or one of another identity, verify names a damaged one,
//! compaction keeps it, and an attach cut at any storage operation leaves the old or new state.

use std::path::{Path, PathBuf};

use probelog::format::SectionKind;
use probelog::probe_set::ProbeSet;
use probelog::testkit::layout::{D_SECTIONS, S_KIND, SECTION_ENTRY_LEN, get_u32, put_u32};
use probelog::testkit::{FaultyStorage, fuzzing::fix_checksums};
use probelog::{CreateOptions, Error, Index, IndexWriter, LockWait, compact};

use crate::common;

const PROBES: usize = 12;
const EMBEDDED: u32 = SectionKind::EmbeddedProbeSet as u32;

/// A probe set of `PROBES` 3x3 images; `seed` changes the pixels (and so the fingerprint).
fn probe_set(seed: u8) -> ProbeSet {
    let names = (0..PROBES).map(|i| format!("img{i}.png")).collect();
    let pixels = (0..PROBES * 27)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect();
    ProbeSet::new(3, names, pixels).unwrap()
}

fn create(dir: &Path, name: &str, set: &ProbeSet, embed: bool) -> PathBuf {
    let path = dir.join(name);
    probelog::create(&path, &CreateOptions::for_probe_set(set, embed)).unwrap();
    path
}

/// A new index `a.plog` over `probe_set(0)` in a new folder, the set embedded or not.
fn new_index(embed: bool) -> (tempfile::TempDir, ProbeSet, PathBuf) {
    let dir = common::tempdir();
    let set = probe_set(0);
    let path = create(dir.path(), "a.plog", &set, embed);
    (dir, set, path)
}

fn models(n: usize) -> Vec<common::TestModel> {
    let mut rng = common::rng(5);
    (0..n)
        .map(|i| common::labeled_model(&mut rng, &format!("m{i}"), PROBES, 3))
        .collect()
}

#[test]
fn embedded_at_create_comes_back_byte_for_byte() {
    let (dir, set, path) = new_index(true);
    common::append(&path, &models(2));
    let index = Index::open(&path).unwrap();
    assert_eq!(index.embedded_probe_set_bytes(), Some(&set.to_bytes()[..]));
    assert_eq!(index.embedded_probe_set().unwrap(), Some(set.clone()));
    assert_eq!(index.probe_set(), set.id());
    assert!(index.verify().is_ok(), "{:?}", index.verify().problems);
    // Without embedding, nothing is stored.
    let plain = create(dir.path(), "b.plog", &set, false);
    let plain = Index::open(&plain).unwrap();
    assert!(plain.embedded_probe_set_bytes().is_none());
    assert_eq!(plain.embedded_probe_set().unwrap(), None);
}

#[test]
fn create_refuses_a_probe_set_of_another_identity() {
    let dir = common::tempdir();
    let mut opts = CreateOptions::for_probe_set(&probe_set(0), false);
    opts.embedded_probe_set = Some(probe_set(1).to_bytes());
    let e = probelog::create(&dir.path().join("x.plog"), &opts).unwrap_err();
    assert!(matches!(e, Error::ProbeSetMismatch { .. }), "{e}");
    assert!(!dir.path().join("x.plog").exists());
    let mut opts = CreateOptions::new(PROBES as u32);
    opts.embedded_probe_set = Some(b"not a probe set".to_vec());
    let e = probelog::create(&dir.path().join("y.plog"), &opts).unwrap_err();
    assert!(e.to_string().contains("not a probe set file"), "{e}");
}

#[test]
fn attached_later_once_and_only_the_index_own() {
    let (dir, set, path) = new_index(false);
    common::append(&path, &models(2));
    let mut w = IndexWriter::open(&path, LockWait::Fail).unwrap();
    let e = w.embed_probe_set(probe_set(1).to_bytes()).unwrap_err();
    assert!(matches!(e, Error::ProbeSetMismatch { .. }), "{e}");
    assert!(!w.has_pending(), "a refused set stages nothing");
    w.embed_probe_set(set.to_bytes()).unwrap();
    let e = w.embed_probe_set(set.to_bytes()).unwrap_err();
    assert!(e.to_string().contains("already"), "{e}");
    let summary = w.commit().unwrap();
    assert_eq!(summary.entries_added, 0);
    drop(w);
    let index = Index::open(&path).unwrap();
    assert_eq!(index.embedded_probe_set().unwrap(), Some(set.clone()));
    assert_eq!(index.model_count(), 2);
    let mut w = IndexWriter::open(&path, LockWait::Fail).unwrap();
    let e = w.embed_probe_set(set.to_bytes()).unwrap_err();
    assert!(e.to_string().contains("already"), "{e}");
    // An index whose identity is not a probe set file's cannot hold one.
    let anon = common::create_index(dir.path(), "anon.plog", PROBES, probelog::Dtype::F32);
    let mut w = IndexWriter::open(&anon, LockWait::Fail).unwrap();
    assert!(matches!(
        w.embed_probe_set(set.to_bytes()),
        Err(Error::ProbeSetMismatch { .. })
    ));
}

/// The offset in `bytes` of the first row of the newest directory's section table whose kind is
/// `kind`.
fn newest_directory_row(bytes: &[u8], kind: u32) -> Option<usize> {
    let raw = common::open_image(bytes).unwrap();
    let (_, dir_off, dir_len) = raw
        .section_extents()
        .into_iter()
        .rfind(|(name, _, _)| name.ends_with("directory"))
        .unwrap();
    let rows = (dir_len as usize - D_SECTIONS - 4) / SECTION_ENTRY_LEN;
    (0..rows)
        .map(|i| dir_off as usize + D_SECTIONS + i * SECTION_ENTRY_LEN)
        .find(|&r| get_u32(bytes, r + S_KIND) == kind)
}

/// The row of the section table of the newest directory whose kind is the embedded probe set,
/// and the section's offset and length.
fn embedded_row(bytes: &[u8]) -> (usize, usize, usize) {
    let (_, off, len) = common::section_ending(bytes, "embedded probe set");
    let row = newest_directory_row(bytes, EMBEDDED).expect("its row");
    (row, off as usize, len as usize)
}

#[test]
fn verify_names_a_damaged_embedded_probe_set() {
    let (_dir, _, path) = new_index(true);
    let clean = std::fs::read(&path).unwrap();
    let (_, off, len) = embedded_row(&clean);
    // A pixel byte: open still works (it reads the header and trailer only), verify names the
    // section twice over (checksum and fingerprint), and the full read refuses it.
    let mut img = clean.clone();
    img[off + len - 40] ^= 0x55;
    let raw = common::open_image(&img).unwrap();
    let problems = raw.verify().problems;
    assert!(
        problems
            .iter()
            .any(|p| p.section == "segment 0 embedded probe set"
                && p.message.contains("checksum mismatch")),
        "{problems:?}"
    );
    assert!(raw.embedded_probe_set().is_err());
    // With its checksum made to match, the fingerprint still catches it.
    fix_checksums(&mut img);
    let raw = common::open_image(&img).unwrap();
    let problems = raw.verify().problems;
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].section, "segment 0 embedded probe set");
    assert!(problems[0].message.contains("fingerprint"), "{problems:?}");
    // A trailer that is not the index's fingerprint: open refuses the file.
    let mut img = clean.clone();
    img[off + len - 1] ^= 1;
    fix_checksums(&mut img);
    let e = common::open_image(&img).unwrap_err().to_string();
    assert!(e.contains("not the index's"), "{e}");
    // Compaction refuses to copy a damaged one.
    let mut img = clean;
    img[off + len - 40] ^= 0x55;
    std::fs::write(&path, &img).unwrap();
    let e = compact(&path, LockWait::Fail).unwrap_err();
    assert!(e.to_string().contains("embedded probe set"), "{e}");
}

#[test]
fn open_refuses_a_second_embedded_probe_set() {
    let (_dir, set, path) = new_index(true);
    // Segment 1 holds probe names (12 references, 96 bytes: the length of the shortest probe
    // set file); relabelled as an embedded probe set, it is a second copy.
    let mut w = IndexWriter::open(&path, LockWait::Fail).unwrap();
    w.set_probe_names(set.names().to_vec()).unwrap();
    w.commit().unwrap();
    drop(w);
    let mut img = std::fs::read(&path).unwrap();
    let names_row = newest_directory_row(&img, 6).expect("segment 1 probe names");
    put_u32(&mut img, names_row + S_KIND, EMBEDDED);
    fix_checksums(&mut img);
    let e = common::open_image(&img).unwrap_err().to_string();
    assert!(e.contains("segment 1: a second embedded probe set"), "{e}");
}

#[test]
fn compaction_keeps_the_embedded_probe_set() {
    let (_dir, set, path) = new_index(false);
    common::append(&path, &models(3));
    let mut w = IndexWriter::open(&path, LockWait::Fail).unwrap();
    w.embed_probe_set(set.to_bytes()).unwrap();
    w.delete_model(1).unwrap();
    w.commit().unwrap();
    drop(w);
    common::append(&path, &models(5)[3..]);
    let before = Index::open(&path).unwrap();
    assert_eq!(before.segment_count(), 4);
    drop(before);
    compact(&path, LockWait::Fail).unwrap();
    let index = Index::open(&path).unwrap();
    assert_eq!(index.segment_count(), 1);
    assert_eq!(index.live_model_count(), 4);
    assert_eq!(index.embedded_probe_set_bytes(), Some(&set.to_bytes()[..]));
    assert!(index.verify().is_ok(), "{:?}", index.verify().problems);
}

#[test]
fn an_attach_cut_at_any_operation_leaves_the_old_or_the_new_state() {
    let (_dir, set, path) = new_index(false);
    common::append(&path, &models(2));
    let base = std::fs::read(&path).unwrap();
    let (mut saw_old, mut saw_new) = (false, false);
    let stage = |w: &mut IndexWriter<FaultyStorage>| w.embed_probe_set(set.to_bytes()).unwrap();
    common::commit_cut_at_every_op(&base, "attach", stage, |n, img| {
        let idx = common::open_image(&img).unwrap();
        match idx.embedded_probe_set_bytes() {
            None => saw_old = true,
            Some(bytes) => {
                assert_eq!(bytes, &set.to_bytes()[..], "op {n}");
                saw_new = true;
            }
        }
        assert_eq!(idx.model_count(), 2);
        assert!(idx.verify().is_ok(), "op {n}: {:?}", idx.verify().problems);
    });
    assert!(saw_old && saw_new);
}

#[test]
fn written_out_byte_for_byte_never_over_the_index() {
    let (dir, set, path) = new_index(true);
    let index = Index::open(&path).unwrap();
    let out = dir.path().join("out.pset");
    assert_eq!(index.write_embedded_probe_set(&out, false).unwrap(), set);
    assert_eq!(std::fs::read(&out).unwrap(), set.to_bytes());
    std::fs::write(&out, b"kept").unwrap();
    assert!(matches!(
        index.write_embedded_probe_set(&out, false),
        Err(Error::AlreadyExists { .. })
    ));
    assert_eq!(std::fs::read(&out).unwrap(), b"kept");
    index.write_embedded_probe_set(&out, true).unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), set.to_bytes());
    let before = std::fs::read(&path).unwrap();
    let link = dir.path().join("link.plog");
    std::os::unix::fs::symlink(&path, &link).unwrap();
    for target in [&path, &link] {
        let e = index.write_embedded_probe_set(target, true).unwrap_err();
        assert!(e.to_string().contains("the index file itself"), "{e}");
    }
    assert_eq!(std::fs::read(&path).unwrap(), before);
    let plain = create(dir.path(), "b.plog", &set, false);
    let e = Index::open(&plain)
        .unwrap()
        .write_embedded_probe_set(&dir.path().join("none.pset"), false)
        .unwrap_err();
    assert!(e.to_string().contains("holds no embedded probe set"), "{e}");
    let leftovers = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            let e = e.as_ref().unwrap();
            e.file_name().to_string_lossy().starts_with(".pset-")
        })
        .count();
    assert_eq!(leftovers, 0);
}
