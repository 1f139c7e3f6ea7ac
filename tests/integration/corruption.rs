//! Damaged files: every flipped byte of the committed state is detected and located, truncation is
//! an error, hostile directory chains fail fast, and nothing panics.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use probelog::testkit::FaultyStorage;
use probelog::testkit::fuzzing::{exercise, fix_checksums};
use probelog::testkit::layout::*;
use probelog::{Dtype, Error, Index, IndexWriter, LockWait, Metric, Query, SearchParams};
use rand::Rng;

use crate::common;

const PROBES: usize = 16;

/// A small valid index: probe names and embeddings in segment 0, then three appends with labels,
/// metadata and sources. Returns its bytes.
fn small_index(dtype: Dtype) -> Vec<u8> {
    let dir = common::tempdir();
    let path = dir.path().join("small.plog");
    common::create_with_probe_details(&path, PROBES, dtype);
    let mut rng = common::rng(99);
    for (c, counts) in [[2usize, 3].as_slice(), &[4], &[1, 2]].iter().enumerate() {
        let models: Vec<_> = counts
            .iter()
            .enumerate()
            .map(|(i, &n)| common::labeled_model(&mut rng, &format!("c{c}m{i}"), PROBES, n))
            .collect();
        common::append(&path, &models);
    }
    std::fs::read(&path).unwrap()
}

/// What damage at one offset must produce.
#[derive(Debug, Clone, PartialEq)]
enum Expect {
    OpenError,
    SlotWarning(usize),
    Problem(String),
}

fn expectation(offset: u64, extents: &[(String, u64, u64)]) -> Expect {
    if offset < STATIC_HEADER_LEN as u64 {
        return Expect::OpenError;
    }
    for (slot, &o) in SLOT_OFFSETS.iter().enumerate() {
        if (o as u64..(o + SLOT_LEN) as u64).contains(&offset) {
            return Expect::SlotWarning(slot);
        }
    }
    if offset < HEADER_PAGE_LEN {
        return Expect::Problem("header page padding".into());
    }
    for (name, o, l) in extents {
        if (*o..o + l).contains(&offset) {
            return if name.ends_with("directory") {
                Expect::OpenError
            } else {
                Expect::Problem(name.clone())
            };
        }
    }
    Expect::Problem("padding between sections".into())
}

/// Opens, verifies and searches a damaged image; checks that the damage was detected as `want`.
fn check_damaged(img: &[u8], want: &Expect) -> Result<(), String> {
    let idx = match common::open_image(img) {
        Err(e) => {
            if !e.is_corruption() {
                return Err(format!("open failed with a non-corruption error: {e}"));
            }
            // A damaged commit slot must not make the index unreadable: the other slot holds the
            // previous commit.
            return if *want == Expect::OpenError {
                Ok(())
            } else {
                Err(format!("expected {want:?}, open failed: {e}"))
            };
        }
        Ok(idx) => idx,
    };
    let report = idx.verify();
    // Reads and searches may fail on damaged data, but must not panic.
    for e in [0, idx.entry_count().saturating_sub(1)] {
        let _ = idx.entry(e);
        for (metric, grouping) in [
            (Metric::TopK, probelog::Grouping::Entries),
            (Metric::Full, probelog::Grouping::Entries),
            (Metric::Blend, probelog::Grouping::ModelMean),
        ] {
            let p = SearchParams {
                metric,
                grouping,
                ..Default::default()
            };
            let _ = idx.search(&Query::Entry(e), &p);
        }
    }
    let _ = idx.probe_names();
    let v: Vec<f32> = (0..idx.num_probes()).map(|i| (i % 5) as f32).collect();
    let _ = idx.search(&Query::Vector(&v), &SearchParams::default());
    let _ = idx.search(
        &Query::TextEmbedding(&[1.0, 2.0, 3.0, 4.0]),
        &SearchParams::default(),
    );
    let detected = match want {
        Expect::OpenError => false,
        Expect::SlotWarning(slot) => {
            let needle = format!("commit slot {slot} fails its checksum");
            report.warnings.iter().any(|w| w.contains(&needle))
        }
        Expect::Problem(section) => report.problems.iter().any(|p| &p.section == section),
    };
    if detected {
        Ok(())
    } else {
        Err(format!(
            "expected {want:?}; open succeeded and verify reported {report:?}"
        ))
    }
}

fn flip_and_check(img: &[u8], offset: u64, mask: u8, extents: &[(String, u64, u64)]) {
    let want = expectation(offset, extents);
    let mut bad = img.to_vec();
    bad[offset as usize] ^= mask;
    let outcome = catch_unwind(AssertUnwindSafe(|| check_damaged(&bad, &want)));
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(msg)) => panic!("byte {offset} ^ {mask:#04x}: {msg}"),
        Err(_) => panic!("byte {offset} ^ {mask:#04x}: panicked (expected {want:?})"),
    }
}

/// Flips every byte of the committed state outside the header page padding (and a sample of that
/// padding) of an f32 and an f16 index: open fails, or verify names the damaged section (or warns
/// about the damaged commit slot). Nothing panics.
#[test]
fn every_flipped_byte_is_detected_and_located() {
    for dtype in [Dtype::F32, Dtype::F16] {
        let img = small_index(dtype);
        let idx = common::open_image(&img).unwrap();
        let report = idx.verify();
        assert!(report.is_ok() && report.warnings.is_empty(), "{report:?}");
        let extents = idx.section_extents();
        assert_eq!(idx.commit().committed_len, img.len() as u64);
        // The extents cover what they should: four segments, with their directories.
        assert_eq!(
            extents
                .iter()
                .filter(|e| e.0.ends_with("directory"))
                .count(),
            4
        );
        assert!(extents.iter().any(|e| e.0 == "segment 3 descriptors"));
        assert!(extents.iter().any(|e| e.0 == "segment 0 probe embeddings"));
        let mut rng = common::rng(3);
        for offset in 0..img.len() as u64 {
            let in_padding = (HEADER_USED_LEN as u64..HEADER_PAGE_LEN).contains(&offset);
            if in_padding && offset % 61 != 0 {
                continue;
            }
            flip_and_check(&img, offset, 0xff, &extents);
            // A one-bit flip too, at a random bit, on a sample.
            if offset % 4 == 0 {
                flip_and_check(&img, offset, 1 << rng.random_range(0..8), &extents);
            }
        }
    }
}

/// The full fuzz harness (open, verify, reads, searches, an append) on a random sample of damaged
/// images: multi-byte damage, bytes set to extreme values, and damage with checksums recomputed
/// so that only the structural checks stand between the damage and the reader.
#[test]
fn damaged_images_never_panic_the_full_harness() {
    let img = small_index(Dtype::F32);
    let mut rng = common::rng(11);
    for i in 0..600 {
        let mut bad = img.clone();
        let n = rng.random_range(1..6);
        for _ in 0..n {
            let o = rng.random_range(STATIC_HEADER_LEN..bad.len());
            bad[o] = match rng.random_range(0..4) {
                0 => 0,
                1 => 0xff,
                2 => bad[o] ^ (1 << rng.random_range(0..8)),
                _ => rng.random(),
            };
        }
        if i % 2 == 0 {
            fix_checksums(&mut bad);
        }
        let outcome = catch_unwind(AssertUnwindSafe(|| exercise(&bad)));
        assert!(outcome.is_ok(), "case {i} panicked");
    }
}

/// Cut anywhere short of its committed length, an index is refused with `NotAnIndex` (under 8
/// bytes) or `Truncated`, in memory, as a file, and by the writer; bytes past the committed length
/// (a torn tail) are ignored.
#[test]
fn truncation_is_an_error() {
    let img = small_index(Dtype::F32);
    let idx = common::open_image(&img).unwrap();
    let mut lengths: Vec<usize> = (0..300).chain((300..img.len()).step_by(7)).collect();
    for (_, o, l) in idx.section_extents() {
        for x in [o, o + l] {
            lengths.extend([x as usize - 1, x as usize, x as usize + 1]);
        }
    }
    lengths.retain(|&l| l < img.len());
    for len in lengths {
        let cut = &img[..len];
        let err = common::open_image(cut).unwrap_err();
        if len < 8 {
            assert!(matches!(err, Error::NotAnIndex), "length {len}: {err}");
        } else {
            assert!(
                matches!(err, Error::Truncated { .. }),
                "length {len}: {err}"
            );
        }
        let w = IndexWriter::from_storage(FaultyStorage::new(cut.to_vec()));
        assert!(
            w.is_err(),
            "length {len}: the writer accepts a truncated index"
        );
    }
    let dir = common::tempdir();
    let path = dir.path().join("cut.plog");
    for len in [0, 7, 100, 255, 4096, 5000, img.len() - 1] {
        std::fs::write(&path, &img[..len]).unwrap();
        let err = Index::open(&path).unwrap_err();
        assert!(err.is_corruption(), "file of {len} bytes: {err}");
        let err = IndexWriter::open(&path, LockWait::Fail).unwrap_err();
        assert!(err.is_corruption(), "writer, file of {len} bytes: {err}");
    }
    // A torn tail after the committed end is ignored by readers and reclaimed by the writer.
    let mut tail = img.clone();
    tail.extend_from_slice(&[0xAB; 1000]);
    let idx = common::open_image(&tail).unwrap();
    let report = idx.verify();
    assert!(report.is_ok() && report.warnings.len() == 1, "{report:?}");
    let mut w = IndexWriter::from_storage(FaultyStorage::new(tail)).unwrap();
    common::add_models(
        &mut w,
        &[common::labeled_model(&mut common::rng(1), "x", PROBES, 2)],
    );
    w.commit().unwrap();
    let after = w.into_storage().current().to_vec();
    let report = common::open_image(&after).unwrap().verify();
    assert!(report.is_ok() && report.warnings.is_empty(), "{report:?}");
}

/// Offsets of the current commit slot and the directories of a valid image, newest first.
fn layout(img: &[u8]) -> (usize, Vec<(usize, usize)>) {
    let idx = common::open_image(img).unwrap();
    let (_, active) = idx.slots();
    let mut dirs: Vec<(usize, usize)> = idx
        .section_extents()
        .into_iter()
        .filter(|e| e.0.ends_with("directory"))
        .map(|(_, o, l)| (o as usize, l as usize))
        .collect();
    dirs.reverse();
    (SLOT_OFFSETS[active], dirs)
}

/// Hostile structures with valid checksums: cycles and forward links in the directory chain, huge
/// counts, lengths and offsets. Each is refused as corrupt, quickly, by the reader; the writer
/// refuses or appends without panicking; nothing allocates according to the hostile numbers.
#[test]
fn hostile_structures_fail_fast() {
    let img = small_index(Dtype::F32);
    let (slot, dirs) = layout(&img);
    let (last, last_len) = dirs[0];
    let (prev, prev_len) = dirs[1];
    type Patch = Box<dyn Fn(&mut Vec<u8>)>;
    let cases: Vec<(&str, Patch)> = vec![
        (
            "directory links to itself",
            Box::new(move |b| {
                put_u64(b, last + D_PREV_OFFSET, last as u64);
                put_u32(b, last + D_PREV_LEN, last_len as u32);
            }),
        ),
        (
            "older directory links forward to the newest",
            Box::new(move |b| {
                put_u64(b, prev + D_PREV_OFFSET, last as u64);
                put_u32(b, prev + D_PREV_LEN, last_len as u32);
            }),
        ),
        (
            "older directory links into the header page",
            Box::new(move |b| put_u64(b, prev + D_PREV_OFFSET, 64)),
        ),
        (
            "commit lists u32::MAX segments",
            Box::new(move |b| put_u32(b, slot + C_SEGMENT_COUNT, u32::MAX)),
        ),
        (
            "commit lists one segment too many",
            Box::new(move |b| {
                let n = get_u32(b, slot + C_SEGMENT_COUNT);
                put_u32(b, slot + C_SEGMENT_COUNT, n + 1);
            }),
        ),
        (
            "commit lists one segment too few (the chain goes on)",
            Box::new(move |b| {
                let n = get_u32(b, slot + C_SEGMENT_COUNT);
                put_u32(b, slot + C_SEGMENT_COUNT, n - 1);
            }),
        ),
        (
            "commit lists one segment of a longer chain",
            Box::new(move |b| put_u32(b, slot + C_SEGMENT_COUNT, 1)),
        ),
        (
            "commit lists u64::MAX entries and models",
            Box::new(move |b| {
                put_u64(b, slot + C_ENTRY_COUNT, u64::MAX);
                put_u64(b, slot + C_MODEL_COUNT, u64::MAX);
            }),
        ),
        (
            "commit sequence at u64::MAX",
            Box::new(move |b| {
                put_u64(b, slot + C_SEQUENCE, u64::MAX);
                // make the image fail to open, so the writer is the one under test
                put_u64(b, slot + C_ENTRY_COUNT, 1);
            }),
        ),
        (
            "commit directory of u32::MAX bytes",
            Box::new(move |b| put_u32(b, slot + C_DIR_LEN, u32::MAX)),
        ),
        (
            "commit directory offset near u64::MAX",
            Box::new(move |b| put_u64(b, slot + C_DIR_OFFSET, u64::MAX - 63)),
        ),
        (
            "committed length u64::MAX",
            Box::new(move |b| put_u64(b, slot + C_COMMITTED_LEN, u64::MAX)),
        ),
        (
            "directory claims 10^6 sections",
            Box::new(move |b| put_u32(b, last + D_SECTION_COUNT, 1_000_000)),
        ),
        (
            "directory claims u64::MAX entries",
            Box::new(move |b| put_u64(b, last + D_ENTRY_COUNT, u64::MAX)),
        ),
        (
            "section at offset u64::MAX - 63",
            Box::new(move |b| put_u64(b, last + D_SECTIONS + S_OFFSET, u64::MAX - 63)),
        ),
        (
            "section of u64::MAX bytes",
            Box::new(move |b| put_u64(b, last + D_SECTIONS + S_LEN, u64::MAX)),
        ),
        (
            "descriptor stride u64::MAX",
            Box::new(move |b| {
                for i in 0..get_u32(b, last + D_SECTION_COUNT) as usize {
                    let e = last + D_SECTIONS + i * SECTION_ENTRY_LEN;
                    if get_u32(b, e + S_KIND) == SectionKind::Descriptors as u32 {
                        put_u64(b, e + S_PARAM, u64::MAX - 31);
                    }
                }
            }),
        ),
        (
            "sections of an older segment overlap its predecessor",
            Box::new(move |b| put_u64(b, prev + D_SECTIONS + S_OFFSET, HEADER_PAGE_LEN)),
        ),
        (
            "unknown required section kind",
            Box::new(move |b| put_u32(b, last + D_SECTIONS + S_KIND, 0x77)),
        ),
        (
            "directory numbering skips",
            Box::new(move |b| put_u32(b, last + D_NUMBER, 9)),
        ),
        (
            "directory length field disagrees",
            Box::new(move |b| put_u32(b, prev + D_LEN, prev_len as u32 + 64)),
        ),
    ];
    for (what, patch) in cases {
        let mut bad = img.clone();
        patch(&mut bad);
        fix_checksums(&mut bad);
        let start = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let err = common::open_image(&bad).unwrap_err();
            assert!(
                matches!(err, Error::Corrupt { .. } | Error::Truncated { .. }),
                "{err}"
            );
            // The writer checks less than the reader (it links to the last directory only); it
            // must refuse or append, never panic or allocate by the hostile counts.
            if let Ok(mut w) = IndexWriter::from_storage(FaultyStorage::new(bad.clone())) {
                common::add_models(
                    &mut w,
                    &[common::labeled_model(&mut common::rng(2), "w", PROBES, 2)],
                );
                let _ = w.commit();
            }
            exercise(&bad);
        }));
        if let Err(e) = outcome {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("{what}: {msg}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{what}: took {:?}",
            start.elapsed()
        );
    }
}

/// A commit record that points at an older directory but keeps the newer committed length is
/// refused at open: every commit ends with its newest directory. Found by the fuzzer (see
/// fuzz_regressions.rs); verify used to accept it.
#[test]
fn commit_pointing_at_an_older_directory_is_refused() {
    let img = small_index(Dtype::F32);
    let idx = common::open_image(&img).unwrap();
    let (slots, active) = idx.slots();
    let (SlotState::Valid(current), SlotState::Valid(previous)) =
        (slots[active], slots[1 - active])
    else {
        panic!("both slots hold commits: {slots:?}");
    };
    let hybrid = CommitRecord {
        sequence: current.sequence,
        committed_len: current.committed_len,
        ..previous
    };
    let mut bad = img.clone();
    let o = SLOT_OFFSETS[active];
    bad[o..o + SLOT_LEN].copy_from_slice(&hybrid.encode());
    let err = common::open_image(&bad).unwrap_err();
    assert!(
        matches!(err, probelog::Error::Corrupt { .. })
            && err.to_string().contains("newest directory"),
        "{err}"
    );
}
