//! Writers held to the readers' standard: compaction refuses damage instead of re-checksumming it,
//! writers resolve symlinks, validate what open validates, read only regular files, refuse
//! values a z-normalized descriptor cannot hold, and leave no stale temporary files or partial
//! segments behind.

use std::io;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use probelog::collab::CollabOptions;
use probelog::testkit::FaultyStorage;
use probelog::testkit::fuzzing::fix_checksums;
use probelog::testkit::layout::*;
use probelog::{
    AppendOptions, CompactOptions, CreateOptions, Dtype, Error, Index, IndexWriter, LockWait,
    LogitMatrix, ModelInput, Storage, compact, compact_with,
};

use crate::common;

const PROBES: usize = 24;

/// An index with a section of every kind that compaction copies: probe names and embeddings,
/// labels, metadata, sources, and a partially probed model (probe factors, observed bitmaps).
fn rich_index(dir: &Path, dtype: Dtype) -> std::path::PathBuf {
    let path = dir.join("rich.plog");
    common::create_with_probe_details(&path, PROBES, dtype);
    let mut rng = common::rng(7);
    let full: Vec<_> = (0..3)
        .map(|i| common::labeled_model(&mut rng, &format!("full{i}"), PROBES, 3))
        .collect();
    common::append(&path, &full);
    let mut w = IndexWriter::open(&path, LockWait::Fail).unwrap();
    let observed: Vec<u32> = (0..PROBES as u32).step_by(2).collect();
    let partial = common::random_logits(&mut rng, observed.len(), 2);
    w.add_partial_model(
        ModelInput {
            name: "partial".into(),
            source: "src:partial".into(),
            meta: vec![("kind".into(), "partial".into())],
            labels: Some(vec!["a".into(), "b".into()]),
            logits: LogitMatrix::new(&partial, observed.len(), 2).unwrap(),
        },
        &observed,
        AppendOptions::default(),
        CollabOptions {
            rank: 2,
            ..CollabOptions::default()
        },
    )
    .unwrap();
    w.commit().unwrap();
    path
}

/// `(name, offset, len)` of every section of an index, as `section_extents` gives them.
type SectionExtents = Vec<(String, u64, u64)>;

/// A rich f32 index in a new folder: the folder, the index's path, its bytes and its sections.
fn rich_f32_fixture() -> (
    tempfile::TempDir,
    std::path::PathBuf,
    Vec<u8>,
    SectionExtents,
) {
    let dir = common::tempdir();
    let path = rich_index(dir.path(), Dtype::F32);
    let good = std::fs::read(&path).unwrap();
    let extents = common::open_image(&good).unwrap().section_extents();
    (dir, path, good, extents)
}

#[test]
fn compaction_refuses_every_damaged_section_by_name() {
    let (_dir, path, good, extents) = rich_f32_fixture();
    let kinds: std::collections::BTreeSet<String> = extents
        .iter()
        .map(|(name, _, _)| name.split(' ').skip(2).collect::<Vec<_>>().join(" "))
        .collect();
    for kind in [
        "descriptors",
        "models",
        "entry labels",
        "model metadata",
        "strings",
        "probe names",
        "probe embeddings",
        "probe factors",
        "observed probes",
    ] {
        assert!(
            kinds.contains(kind),
            "the fixture lacks a {kind} section: {kinds:?}"
        );
    }
    for (name, offset, len) in &extents {
        if name.ends_with("directory") {
            continue; // a damaged directory fails open, before compaction reads anything
        }
        let mut bad = good.clone();
        bad[(offset + len / 2) as usize] ^= 0x40;
        std::fs::write(&path, &bad).unwrap();
        let err = compact(&path, LockWait::Fail).expect_err(name);
        assert!(
            matches!(&err, Error::Damaged { first, .. } if first.starts_with(name.as_str())),
            "{name}: {err}"
        );
        assert!(err.is_corruption());
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bad,
            "{name}: the file changed"
        );
    }
    std::fs::write(&path, &good).unwrap();
    compact(&path, LockWait::Fail).unwrap();
    assert!(Index::open(&path).unwrap().verify().is_ok());
}

#[test]
fn compaction_through_a_symlink_rewrites_its_target() {
    let dir = common::tempdir();
    let target = rich_index(dir.path(), Dtype::F16);
    let link = dir.path().join("link.plog");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let before = Index::open(&target).unwrap();
    assert!(before.segment_count() > 1);
    compact(&link, LockWait::Fail).unwrap();
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink(),
        "the link was replaced by a file"
    );
    let after = Index::open(&target).unwrap();
    assert_eq!(after.segment_count(), 1, "the target was not compacted");
    assert_eq!(after.entry_count(), before.entry_count());
    // Both paths name the one file, so a writer through either sees what the other wrote.
    let mut rng = common::rng(3);
    common::append(
        &link,
        &[common::labeled_model(&mut rng, "via-link", PROBES, 2)],
    );
    assert_eq!(
        Index::open(&target).unwrap().entry_count(),
        before.entry_count() + 2
    );
}

#[test]
fn a_writer_refuses_what_readers_refuse() {
    let (_dir, path, good, extents) = rich_f32_fixture();
    // Damage the oldest directory: the newest one, which the next segment links to, is intact.
    let (_, offset, _) = extents
        .iter()
        .find(|(name, _, _)| name == "segment 0 directory")
        .unwrap();
    let mut bad = good.clone();
    bad[*offset as usize + 8] ^= 1;
    std::fs::write(&path, &bad).unwrap();
    assert!(
        Index::open(&path).is_err(),
        "readers must refuse the fixture"
    );
    let err = IndexWriter::open(&path, LockWait::Fail).unwrap_err();
    assert!(err.is_corruption(), "{err}");
    assert!(IndexWriter::from_storage(FaultyStorage::new(bad.clone())).is_err());
    assert_eq!(std::fs::read(&path).unwrap(), bad);
}

/// Sets one stored descriptor value of segment `s` (probe 0, entry 0) and recomputes every
/// checksum, as a hostile file would.
fn set_first_value(img: &mut [u8], segment: usize, bits: &[u8]) {
    let (_, offset, _) = common::section_ending(img, &format!("segment {segment} descriptors"));
    img[offset as usize..offset as usize + bits.len()].copy_from_slice(bits);
    fix_checksums(img);
}

#[test]
fn values_a_descriptor_cannot_hold_are_refused_everywhere() {
    for (dtype, bits) in [
        (Dtype::F32, 1e30f32.to_le_bytes().to_vec()),
        (
            Dtype::F16,
            half::f16::from_f32(60000.0).to_le_bytes().to_vec(),
        ),
    ] {
        let dir = common::tempdir();
        let path = rich_index(dir.path(), dtype);
        let mut img = std::fs::read(&path).unwrap();
        set_first_value(&mut img, 1, &bits);
        std::fs::write(&path, &img).unwrap();
        let report = Index::open(&path).unwrap().verify();
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.section == "segment 1 descriptors" && p.message.contains("impossible")),
            "{dtype:?}: {:?}",
            report.problems
        );
        // Compaction with a graph over every entry: refused before any graph is built.
        let opts = CompactOptions {
            ann: probelog::AnnOptions {
                min_entries: 1,
                ..Default::default()
            },
            ..Default::default()
        };
        let err = compact_with(&path, LockWait::Fail, opts).unwrap_err();
        assert!(matches!(err, Error::Damaged { .. }), "{dtype:?}: {err}");
        assert_eq!(std::fs::read(&path).unwrap(), img);
    }
    // The graph builder refuses such values itself, whoever calls it.
    let rows = [0.5f32, 1e30, -0.5, 0.0];
    let err = probelog::ann::build_graph(
        2,
        2,
        &mut |p, out| {
            out.copy_from_slice(&rows[p * 2..p * 2 + 2]);
            Ok(())
        },
        &probelog::AnnOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("impossible"), "{err}");
}

#[test]
fn probe_counts_outside_the_format_are_refused_at_create_and_open() {
    let dir = common::tempdir();
    for probes in [0, 1, MAX_PROBES + 1, u32::MAX] {
        let path = dir.path().join(format!("p{probes}.plog"));
        let err = probelog::create(&path, &CreateOptions::new(probes)).unwrap_err();
        assert!(matches!(err, Error::InvalidParameter(_)), "{probes}: {err}");
        assert!(!path.exists());
    }
    let path = common::create_index(dir.path(), "max.plog", MAX_PROBES as usize, Dtype::F16);
    assert_eq!(
        Index::open(&path).unwrap().num_probes(),
        MAX_PROBES as usize
    );
    // A header claiming more is refused before anything is sized by it.
    let mut img = std::fs::read(&path).unwrap();
    put_u32(&mut img, H_NUM_PROBES, MAX_PROBES + 1);
    fix_checksums(&mut img);
    assert!(common::open_image(&img).unwrap_err().is_corruption());
    assert!(IndexWriter::from_storage(FaultyStorage::new(img)).is_err());
}

/// Runs `f` on another thread and fails the test if it takes more than 10 s (a blocked open).
fn within_10s<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| panic!("{what} blocked"))
}

#[test]
fn only_regular_files_are_opened() {
    let dir = common::tempdir();
    let fifo = dir.path().join("fifo.plog");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    for path in [fifo, "/dev/zero".into(), dir.path().to_path_buf()] {
        let p = path.clone();
        let err = within_10s("Index::open", move || Index::open(&p).unwrap_err());
        assert!(
            matches!(err, Error::NotRegularFile { .. }),
            "{}: {err}",
            path.display()
        );
        let p = path.clone();
        let err = within_10s("IndexWriter::open", move || {
            IndexWriter::open(&p, LockWait::Fail).unwrap_err()
        });
        assert!(
            matches!(err, Error::NotRegularFile { .. } | Error::Io { .. }),
            "{}: {err}",
            path.display()
        );
        let p = path.clone();
        let err = within_10s("compact", move || compact(&p, LockWait::Fail).unwrap_err());
        assert!(!err.to_string().is_empty());
    }
}

#[test]
fn the_next_writer_removes_what_killed_compactions_left() {
    let dir = common::tempdir();
    let path = common::create_index(dir.path(), "idx.plog", PROBES, Dtype::F32);
    let stale = dir.path().join(".idx.plog.compact-k1ll3d");
    let other = dir.path().join(".other.plog.compact-k1ll3d");
    let unrelated = dir.path().join(".idx.plog.compact-");
    for p in [&stale, &other, &unrelated] {
        std::fs::write(p, vec![0u8; 1 << 16]).unwrap();
    }
    drop(IndexWriter::open(&path, LockWait::Fail).unwrap());
    assert!(
        !stale.exists(),
        "a stale compaction file of this index survived"
    );
    assert!(other.exists(), "another index's file was removed");
    assert!(
        unrelated.exists(),
        "a name without the random part was removed"
    );
    std::fs::write(&stale, b"again").unwrap();
    compact(&path, LockWait::Fail).unwrap();
    assert!(!stale.exists());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(".idx.plog.compact-") && n.len() > ".idx.plog.compact-".len())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// A storage whose disk holds `capacity` bytes: writes past it fail with ENOSPC, truncation works.
struct FullDisk {
    inner: FaultyStorage,
    capacity: u64,
}

impl Storage for FullDisk {
    fn size(&self) -> io::Result<u64> {
        self.inner.size()
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_exact_at(buf, offset)
    }
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        if offset + buf.len() as u64 > self.capacity {
            let fits = self.capacity.saturating_sub(offset) as usize;
            self.inner
                .write_all_at(&buf[..fits.min(buf.len())], offset)?;
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        self.inner.write_all_at(buf, offset)
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn sync(&mut self) -> io::Result<()> {
        self.inner.sync()
    }
}

#[test]
fn a_failed_append_gives_its_space_back() {
    let dir = common::tempdir();
    let path = rich_index(dir.path(), Dtype::F32);
    let img = std::fs::read(&path).unwrap();
    let committed = img.len() as u64;
    let mut w = IndexWriter::from_storage(FullDisk {
        inner: FaultyStorage::new(img.clone()),
        capacity: committed + 3000,
    })
    .unwrap();
    let mut rng = common::rng(5);
    common::add_models(
        &mut w,
        &[common::labeled_model(&mut rng, "big", PROBES, 200)],
    );
    let err = w.commit().unwrap_err();
    assert!(err.to_string().contains("No space left"), "{err}");
    let storage = w.into_storage();
    assert_eq!(
        storage.size().unwrap(),
        committed,
        "the partial segment kept its space"
    );
    assert_eq!(storage.inner.current(), &img[..]);
}
