//! Readers and writers in separate processes: readers see whole commits only, the writer lock
//! excludes a second writer, and a writer that waits across a compaction appends to the new file.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use probelog::{Dtype, Error, Index, IndexWriter, LockWait, Query, SearchParams, compact};

use crate::common::{self, TestModel};

const PROBES: usize = 48;
const WRITER_COMMITS: usize = 60;
const MODELS_PER_COMMIT: usize = 2;
const LOGITS_PER_MODEL: usize = 3;
const READERS: usize = 4;

/// The planted model: its logit 0 is the query every reader runs; nothing else comes close.
fn planted() -> TestModel {
    let mut m = common::labeled_model(&mut common::rng(1), "planted", PROBES, LOGITS_PER_MODEL);
    for p in 0..PROBES {
        // A spike pattern on probes 0..8 that random logits do not share.
        m.logits[p * LOGITS_PER_MODEL] = if p < 8 {
            20.0 + p as f32
        } else {
            (p % 3) as f32
        };
    }
    m
}

/// Models of commit `c` of the writer: names `w<c>-<i>`, labels `<name>/<logit>`.
fn writer_models(c: usize) -> Vec<TestModel> {
    let mut rng = common::rng(1000 + c as u64);
    (0..MODELS_PER_COMMIT)
        .map(|i| common::labeled_model(&mut rng, &format!("w{c}-{i}"), PROBES, LOGITS_PER_MODEL))
        .collect()
}

const ENTRIES_PER_COMMIT: u64 = (MODELS_PER_COMMIT * LOGITS_PER_MODEL) as u64;

/// Child: appends `WRITER_COMMITS` commits, then exits.
#[test]
#[ignore = "child process of readers_and_writer_in_separate_processes"]
fn child_append_commits() {
    let Some(path) = common::child_index("writer") else {
        return;
    };
    // Start appending only once every reader has its first snapshot.
    let ready = PathBuf::from(common::env("PLOG_READY"));
    for i in 0..READERS {
        common::wait_for_file(&ready.join(i.to_string()), Duration::from_secs(60));
    }
    for c in 0..WRITER_COMMITS {
        let mut w = IndexWriter::open(&path, LockWait::Wait).unwrap();
        common::add_models(&mut w, &writer_models(c));
        let s = w.commit().unwrap();
        assert_eq!(s.entries_added, ENTRIES_PER_COMMIT);
        drop(w);
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Child: searches in a loop until the parent says the writer is done, checking every snapshot.
#[test]
#[ignore = "child process of readers_and_writer_in_separate_processes"]
fn child_search_loop() {
    let Some(path) = common::child_index("reader") else {
        return;
    };
    let done = PathBuf::from(common::env("PLOG_DONE"));
    let initial: u64 = common::env("PLOG_INITIAL").parse().unwrap();
    let final_count: u64 = common::env("PLOG_FINAL").parse().unwrap();
    let planted = planted();
    let query = planted.column(0);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut idx = Index::open(&path).unwrap();
    let mut last = (idx.entry_count(), idx.sequence());
    assert_eq!(
        last.0, initial,
        "the writer started before this reader was ready"
    );
    let ready = PathBuf::from(common::env("PLOG_READY")).join(common::env("PLOG_READER"));
    common::touch(&ready);
    let mut iterations = 0u64;
    let mut snapshots_seen = 1u64;
    loop {
        let finished = done.exists();
        if idx.refresh().unwrap() {
            snapshots_seen += 1;
        }
        let now = (idx.entry_count(), idx.sequence());
        assert!(
            now.0 >= last.0 && now.1 >= last.1,
            "went back from {last:?} to {now:?}"
        );
        assert_eq!(
            (now.0 - initial) % ENTRIES_PER_COMMIT,
            0,
            "a partial commit is visible"
        );
        assert_eq!(idx.model_count() * LOGITS_PER_MODEL as u64, now.0);
        last = now;
        check_snapshot(&idx, &query, iterations.is_multiple_of(16));
        iterations += 1;
        if finished {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the writer did not finish in time"
        );
    }
    // The done marker is written after the writer exited: the last refresh saw everything.
    assert_eq!(idx.entry_count(), final_count);
    assert!(idx.verify().is_ok());
    // At least the first and the last state; usually many in between.
    assert!(snapshots_seen >= 2);
    println!("reader: {iterations} iterations, {snapshots_seen} snapshots");
}

/// One reader-side check of a snapshot.
fn check_snapshot(idx: &Index, query: &[f32], verify: bool) {
    if verify {
        let report = idx.verify();
        assert!(report.is_ok(), "{:?}", report.problems);
    }
    let hits = idx
        .search(
            &Query::Vector(query),
            &SearchParams {
                top: 5,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(
        hits[0].entry,
        Some(0),
        "the planted logit is not the best match: {hits:?}"
    );
    assert_eq!(hits[0].score, 0.0);
    assert_eq!(hits[0].model, "planted");
    for h in &hits {
        let e = h.entry.unwrap();
        assert!(e < idx.entry_count());
        assert_eq!(h.label, Some(format!("{}/{}", h.model, h.logit.unwrap())));
        let m = idx.model(h.model_id).unwrap();
        assert_eq!(m.meta, vec![("name".to_string(), h.model.clone())]);
        assert_eq!(m.first_entry + u64::from(h.logit.unwrap()), e);
    }
    // The newest entry, excluding its own model, per model.
    let newest = idx.entry_count() - 1;
    let params = SearchParams {
        top: 4,
        grouping: probelog::Grouping::PerModel,
        exclude_same_model: true,
        ..Default::default()
    };
    let own = idx.entry(newest).unwrap().model_id;
    let hits = idx.search(&Query::Entry(newest), &params).unwrap();
    assert!(hits.iter().all(|h| h.model_id != own));
    assert!(
        hits.windows(2)
            .all(|w| w[0].model_id != w[1].model_id && w[0].score <= w[1].score)
    );
}

/// Four reader processes search while a writer process appends 30 commits: no errors, entry counts
/// never decrease, only whole commits are visible, the planted best match stays rank 1, metadata
/// of every hit is what the writer appended, and the final state has every entry.
#[test]
fn readers_and_writer_in_separate_processes() {
    let dir = common::tempdir();
    let path = common::index_with(dir.path(), "shared.plog", PROBES, Dtype::F32, &[planted()]);
    let initial = LOGITS_PER_MODEL as u64;
    let final_count = initial + WRITER_COMMITS as u64 * ENTRIES_PER_COMMIT;
    let done = dir.path().join("writer-done");
    let ready = dir.path().join("ready");
    std::fs::create_dir(&ready).unwrap();
    let env = vec![
        ("PLOG_PATH", path.display().to_string()),
        ("PLOG_DONE", done.display().to_string()),
        ("PLOG_READY", ready.display().to_string()),
        ("PLOG_INITIAL", initial.to_string()),
        ("PLOG_FINAL", final_count.to_string()),
    ];
    let readers: Vec<_> = (0..READERS)
        .map(|i| {
            let mut env = env.clone();
            env.push(("PLOG_READER", i.to_string()));
            common::spawn_child("concurrency::child_search_loop", "reader", &env, false)
        })
        .collect();
    let writer = common::spawn_child("concurrency::child_append_commits", "writer", &env, false);
    common::expect_success(writer, "writer process");
    common::touch(&done);
    let mut snapshots = 0;
    for (i, r) in readers.into_iter().enumerate() {
        let out = common::expect_success(r, &format!("reader process {i}"));
        // "reader: <n> iterations, <m> snapshots" (libtest may print it after the test name)
        let summary = out
            .split_once("reader: ")
            .unwrap_or_else(|| panic!("reader {i} printed no summary:\n{out}"))
            .1;
        snapshots += summary.split(' ').nth(2).unwrap().parse::<u64>().unwrap();
    }
    // Each reader sees the first and the last state; together they saw states in between.
    assert!(
        snapshots > 2 * READERS as u64,
        "readers saw no intermediate commit"
    );
    let idx = Index::open(&path).unwrap();
    assert_eq!(idx.entry_count(), final_count);
    assert_eq!(idx.segment_count() as usize, 2 + WRITER_COMMITS);
    assert!(idx.verify().is_ok());
}

/// Child: takes the writer lock, signals, waits for permission, optionally appends, exits.
#[test]
#[ignore = "child process of the lock tests"]
fn child_hold_lock() {
    let Some(path) = common::child_index("holder") else {
        return;
    };
    let locked = PathBuf::from(common::env("PLOG_LOCKED"));
    let release = PathBuf::from(common::env("PLOG_RELEASE"));
    let mut w = IndexWriter::open(&path, LockWait::Fail).unwrap();
    common::touch(&locked);
    common::wait_for_file(&release, Duration::from_secs(60));
    common::add_models(&mut w, &[holder_model()]);
    w.commit().unwrap();
    if std::env::var("PLOG_COMPACT_UNDER_LOCK").is_ok() {
        // What `compact` does, with the lock held all along: write a compacted copy beside the
        // file, rename it into place, then release the lock. Whoever waits on the lock wakes up
        // holding a lock on the replaced file.
        let copy = path.with_extension("copy");
        std::fs::copy(&path, &copy).unwrap();
        compact(&copy, LockWait::Fail).unwrap();
        std::fs::rename(&copy, &path).unwrap();
    }
    drop(w);
}

fn holder_model() -> TestModel {
    common::labeled_model(&mut common::rng(77), "holder", PROBES, LOGITS_PER_MODEL)
}

fn waiter_model(name: &str) -> TestModel {
    common::labeled_model(&mut common::rng(78), name, PROBES, LOGITS_PER_MODEL)
}

struct Holder {
    child: std::process::Child,
    release: PathBuf,
}

fn start_holder(dir: &Path, path: &Path, compact_under_lock: bool) -> Holder {
    let locked = dir.join("locked");
    let release = dir.join("release");
    let mut env = vec![
        ("PLOG_PATH", path.display().to_string()),
        ("PLOG_LOCKED", locked.display().to_string()),
        ("PLOG_RELEASE", release.display().to_string()),
    ];
    if compact_under_lock {
        env.push(("PLOG_COMPACT_UNDER_LOCK", "1".into()));
    }
    let child = common::spawn_child("concurrency::child_hold_lock", "holder", &env, false);
    common::wait_for_file(&locked, Duration::from_secs(60));
    Holder { child, release }
}

/// Appends the model "waiter" from a thread that waits for the writer lock, which `holder`
/// holds: checks that the thread is still blocked after a while, then lets the holder go and
/// returns the waiter's commit.
fn wait_behind(holder: Holder, path: &Path) -> probelog::CommitSummary {
    let finished = Arc::new(AtomicBool::new(false));
    let (flag, p) = (finished.clone(), path.to_path_buf());
    let waiter = std::thread::spawn(move || {
        // Opens the file now (the inode the path names at this moment), then blocks on its lock.
        let mut w = IndexWriter::open(&p, LockWait::Wait).unwrap();
        common::add_models(&mut w, &[waiter_model("waiter")]);
        let summary = w.commit().unwrap();
        flag.store(true, Ordering::SeqCst);
        summary
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !finished.load(Ordering::SeqCst),
        "a waiting writer got the lock while it was held"
    );
    common::touch(&holder.release);
    common::expect_success(holder.child, "lock holder");
    waiter.join().unwrap()
}

/// While another process holds the writer lock, `LockWait::Fail` gets `Error::Locked` (for
/// appends and for compaction) and `LockWait::Wait` blocks; once the holder exits, the waiting
/// writer proceeds and both appends are in the index.
#[test]
fn second_writer_is_locked_out_or_waits() {
    let dir = common::tempdir();
    let path = common::index_with(dir.path(), "locked.plog", PROBES, Dtype::F32, &[planted()]);
    let holder = start_holder(dir.path(), &path, false);
    assert!(matches!(
        IndexWriter::open(&path, LockWait::Fail),
        Err(Error::Locked { .. })
    ));
    assert!(matches!(
        compact(&path, LockWait::Fail),
        Err(Error::Locked { .. })
    ));
    // Readers are not blocked by the writer lock.
    assert_eq!(
        Index::open(&path).unwrap().entry_count(),
        LOGITS_PER_MODEL as u64
    );

    let summary = wait_behind(holder, &path);
    assert_eq!(summary.entry_count, 3 * LOGITS_PER_MODEL as u64);

    let idx = Index::open(&path).unwrap();
    let names: Vec<String> = (0..3).map(|m| idx.model(m).unwrap().name).collect();
    assert_eq!(names, ["planted", "holder", "waiter"]);
    assert!(idx.verify().is_ok());
}

/// A writer that started waiting for the lock before the file was compacted (renamed over) ends
/// up appending to the new file: nothing it appends is lost, and the old file is not touched.
#[test]
fn writer_waiting_across_compaction_appends_to_new_file() {
    let dir = common::tempdir();
    let path = common::index_with(
        dir.path(),
        "compacted.plog",
        PROBES,
        Dtype::F32,
        &[planted()],
    );
    common::append(&path, &[waiter_model("second")]);
    let old = dir.path().join("old-inode.plog");
    std::fs::hard_link(&path, &old).unwrap();

    let holder = start_holder(dir.path(), &path, true);
    // The waiter opens the file (the old inode) before the holder compacts it.
    let summary = wait_behind(holder, &path);
    assert_eq!(summary.entry_count, 4 * LOGITS_PER_MODEL as u64);

    let idx = Index::open(&path).unwrap();
    assert_eq!(idx.entry_count(), 4 * LOGITS_PER_MODEL as u64);
    // One compacted segment plus the waiter's append.
    assert_eq!(idx.segment_count(), 2);
    let names: Vec<String> = (0..4).map(|m| idx.model(m).unwrap().name).collect();
    assert_eq!(names, ["planted", "second", "holder", "waiter"]);
    assert!(idx.verify().is_ok());
    // The old inode holds the holder's commit and nothing after it.
    let old_idx = Index::open(&old).unwrap();
    assert_eq!(old_idx.entry_count(), 3 * LOGITS_PER_MODEL as u64);
    assert_eq!(old_idx.segment_count(), 4);
}

/// The real `compact` and a writer both wait on a held lock; whichever wins, no entry is lost and
/// the result verifies.
#[test]
fn compaction_racing_a_waiting_writer_loses_nothing() {
    for round in 0..3 {
        let dir = common::tempdir();
        let path = common::index_with(dir.path(), "race.plog", PROBES, Dtype::F32, &[planted()]);
        let holder = start_holder(dir.path(), &path, false);
        let p = path.clone();
        let writer = std::thread::spawn(move || {
            let mut w = IndexWriter::open(&p, LockWait::Wait).unwrap();
            common::add_models(&mut w, &[waiter_model("waiter")]);
            w.commit().unwrap()
        });
        let p = path.clone();
        let compactor = std::thread::spawn(move || compact(&p, LockWait::Wait).unwrap());
        std::thread::sleep(Duration::from_millis(100));
        common::touch(&holder.release);
        common::expect_success(holder.child, "lock holder");
        writer.join().unwrap();
        compactor.join().unwrap();
        let idx = Index::open(&path).unwrap();
        assert_eq!(
            idx.entry_count(),
            3 * LOGITS_PER_MODEL as u64,
            "round {round}"
        );
        let mut names: Vec<String> = (0..3).map(|m| idx.model(m).unwrap().name).collect();
        names.sort();
        assert_eq!(names, ["holder", "planted", "waiter"], "round {round}");
        assert!(idx.verify().is_ok(), "round {round}");
    }
}

/// A reader's snapshot survives compaction of its file (it maps the old inode), `refresh` moves it
/// to the compacted file, and results are the same before and after.
#[test]
fn reader_snapshot_survives_compaction_and_refresh_follows() {
    let dir = common::tempdir();
    let path = common::index_with(dir.path(), "refresh.plog", PROBES, Dtype::F32, &[planted()]);
    for c in 0..3 {
        common::append(&path, &writer_models(c));
    }
    let mut idx = Index::open(&path).unwrap();
    let query = planted().column(0);
    let params = SearchParams {
        top: 8,
        ..Default::default()
    };
    let before = idx.search(&Query::Vector(&query), &params).unwrap();
    assert!(!idx.refresh().unwrap(), "nothing changed yet");
    compact(&path, LockWait::Fail).unwrap();
    assert_eq!(idx.segment_count(), 5);
    assert_eq!(idx.search(&Query::Vector(&query), &params).unwrap(), before);
    assert!(idx.refresh().unwrap(), "refresh sees the compacted file");
    assert_eq!(idx.segment_count(), 1);
    assert_eq!(idx.search(&Query::Vector(&query), &params).unwrap(), before);
    common::append(&path, &writer_models(9));
    assert!(idx.refresh().unwrap());
    assert_eq!(idx.entry_count(), (1 + 4 * MODELS_PER_COMMIT as u64) * 3);
    assert!(idx.verify().is_ok());
}
