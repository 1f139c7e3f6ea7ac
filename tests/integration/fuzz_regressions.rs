//! Replays the fuzz seed corpus and every saved fuzz crash through the fuzz target's own harness,
//! `probelog::testkit::fuzzing::open_search_verify`.

use std::path::{Path, PathBuf};

use probelog::testkit::fuzzing::{base_images, open_search_verify};

/// Every file in `fuzz/regressions/`, with what it broke. The replay test refuses files that are
/// not listed here, so that each regression says what it guards against.
const REGRESSIONS: &[(&str, &str)] = &[
    (
        "reader-chain-longer-than-commit",
        "a commit record listing fewer segments than its directory chain holds made \
         `RawIndex::new` compute the next segment's label as `segment_count - 1 - chain.len()` \
         before checking the chain length: subtraction overflow (a panic with debug assertions). \
         Fixed in src/reader.rs by checking the length first.",
    ),
    (
        "verify-garbage-after-newest-directory",
        "a commit record whose committed length lies past the end of its newest directory (here: \
         it points at the previous directory but keeps the newer length) verified clean: verify \
         checked the gaps up to the newest directory only, not from there to the committed \
         length. The next append then turned those bytes into a gap between sections, and the \
         index verified with problems after an append. Fixed in src/reader.rs: open now requires \
         the committed length to equal the end of the newest directory.",
    ),
    (
        "writer-huge-probe-count-allocation",
        "made by hand in the harness input format (raw image, checksums recomputed): a header \
         claiming 2^30 probes, which the reader refuses (the descriptor sections do not match) \
         but `IndexWriter::from_storage` accepted, allocating one staging row per probe up front \
         (24 GiB): an allocation failure aborts the process. Fixed in src/writer.rs: staging rows \
         are allocated when the first model is added (whose logits have one row per probe).",
    ),
    (
        "writer-sequence-exhausted",
        "a valid index whose current commit has sequence u64::MAX: the writer computed \
         `sequence + 1` unchecked, which panics with debug assertions and in release wraps to 0, \
         so the older commit slot would win and the append be silently lost (the same for the \
         segment, entry and model counters of a damaged record). Fixed in src/writer.rs: checked \
         arithmetic, the append is refused as corrupt; the harness expects that refusal.",
    ),
];

fn fuzz_dir(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz").join(sub)
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != ".gitkeep"))
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

fn replay(path: &Path) {
    let data = std::fs::read(path).unwrap();
    let outcome = std::panic::catch_unwind(|| open_search_verify(&data));
    assert!(
        outcome.is_ok(),
        "{} panics the fuzz harness",
        path.display()
    );
}

/// The seed corpus runs through the harness without a panic.
#[test]
fn seed_corpus_replays_cleanly() {
    let corpus = files(&fuzz_dir("corpus/open_search_verify"));
    assert!(corpus.len() >= 5, "the seed corpus is missing");
    for f in &corpus {
        replay(f);
    }
}

/// Every crash the fuzzer found (and that was fixed) stays fixed.
#[test]
fn fuzz_regressions_stay_fixed() {
    for f in files(&fuzz_dir("regressions")) {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        assert!(
            REGRESSIONS.iter().any(|(n, _)| *n == name),
            "{name} is not listed in REGRESSIONS with what it broke"
        );
        replay(&f);
    }
    for (name, _) in REGRESSIONS {
        assert!(
            fuzz_dir("regressions").join(name).is_file(),
            "{name} is missing"
        );
    }
}

/// The base images of the harness are valid, clean indexes (otherwise the fuzzer would explore
/// damage on top of damage).
#[test]
fn harness_base_images_are_clean() {
    for img in base_images() {
        let idx = crate::common::open_image(img).unwrap();
        let report = idx.verify();
        assert!(report.is_ok() && report.warnings.is_empty(), "{report:?}");
        assert!(idx.entry_count() > 0 && idx.segment_count() == 3);
    }
}

/// Writes the seed corpus (run with PROBELOG_WRITE_SEED_CORPUS=1 and `--ignored`): whole valid
/// images, and small edits of each mode of the harness input.
#[test]
#[ignore = "writes fuzz/corpus/open_search_verify; run by hand"]
fn write_seed_corpus() {
    if std::env::var("PROBELOG_WRITE_SEED_CORPUS").is_err() {
        return;
    }
    let dir = fuzz_dir("corpus/open_search_verify");
    std::fs::create_dir_all(&dir).unwrap();
    let mut seeds: Vec<(String, Vec<u8>)> = Vec::new();
    for (b, img) in base_images().iter().enumerate() {
        let mut raw = vec![0u8];
        raw.extend_from_slice(img);
        seeds.push((format!("raw-base{b}"), raw));
        let sel = (b as u8) << 2;
        // Untouched base image (XOR with nothing), with and without recomputed checksums.
        seeds.push((format!("base{b}"), vec![1 | sel, 0, 0]));
        seeds.push((format!("base{b}-fixed"), vec![1 | sel | 8, 0, 0]));
        // A flipped byte in the commit slots.
        seeds.push((format!("xor-slot-base{b}"), vec![1 | sel, 8, 0, 0x40]));
        // Truncated after the header page.
        seeds.push((format!("cut-base{b}"), vec![2 | sel, 0x40, 0x0f, 1, 2, 3]));
        // Overwritten directory bytes, checksums fixed.
        let tail = (img.len() - 128 - 100) as u16;
        let mut over = vec![3 | sel | 8];
        over.extend_from_slice(&tail.to_le_bytes());
        over.extend_from_slice(&[0xff, 0, 0, 0, 7, 0, 0, 0]);
        seeds.push((format!("overwrite-dir-base{b}"), over));
    }
    for (name, data) in seeds {
        std::fs::write(dir.join(name), data).unwrap();
    }
}
