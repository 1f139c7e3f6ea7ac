//! Helpers shared by the integration tests: building indexes, opening images, child processes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use probelog::testkit::FaultyStorage;
use probelog::{
    AlignedBytes, AppendOptions, CreateOptions, Dtype, IndexWriter, LockWait, LogitMatrix,
    ModelInput, RawIndex, Storage, create,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Environment variable that tells a re-executed test binary which child role to play.
pub const ROLE_VAR: &str = "PROBELOG_IT_ROLE";

/// One model to append, owned.
#[derive(Debug, Clone)]
pub struct TestModel {
    pub name: String,
    pub source: String,
    pub meta: Vec<(String, String)>,
    pub labels: Option<Vec<String>>,
    /// Row-major `[probes, logits]`.
    pub logits: Vec<f32>,
    pub probes: usize,
    pub n: usize,
}

impl TestModel {
    /// Raw responses of logit `j` over the probes.
    pub fn column(&self, j: usize) -> Vec<f32> {
        (0..self.probes)
            .map(|p| self.logits[p * self.n + j])
            .collect()
    }
}

pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// Uniform-ish noise with a few strong responses: random logits that are never constant.
pub fn random_logits(rng: &mut ChaCha8Rng, probes: usize, n: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..probes * n)
        .map(|_| rng.random_range(-3.0f32..3.0))
        .collect();
    for j in 0..n {
        // Make sure no column is (nearly) constant.
        v[j] = 10.0 + rng.random_range(0.0f32..1.0);
        v[(probes - 1) * n + j] = -10.0 - rng.random_range(0.0f32..1.0);
    }
    v
}

/// A model with random logits whose labels encode the model name (`"<name>/<logit>"`).
pub fn labeled_model(rng: &mut ChaCha8Rng, name: &str, probes: usize, n: usize) -> TestModel {
    TestModel {
        name: name.to_string(),
        source: format!("src:{name}"),
        meta: vec![("name".into(), name.to_string())],
        labels: Some((0..n).map(|j| format!("{name}/{j}")).collect()),
        logits: random_logits(rng, probes, n),
        probes,
        n,
    }
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temporary directory")
}

/// Creates an empty index at `dir/name`.
pub fn create_index(dir: &Path, name: &str, probes: usize, dtype: Dtype) -> PathBuf {
    let path = dir.join(name);
    let mut opts = CreateOptions::new(probes as u32);
    opts.dtype = dtype;
    create(&path, &opts).expect("create index");
    path
}

/// Creates an index at `dir/name` holding `models`, appended in one commit.
pub fn index_with(
    dir: &Path,
    name: &str,
    probes: usize,
    dtype: Dtype,
    models: &[TestModel],
) -> PathBuf {
    let path = create_index(dir, name, probes, dtype);
    append(&path, models);
    path
}

/// Creates an empty index at `path` of `probes` probes in `dtype`, with probe names (`probe 0`,
/// `probe 1`, ...) and 4-dimensional probe embeddings.
pub fn create_with_probe_details(path: &Path, probes: usize, dtype: Dtype) {
    let mut opts = CreateOptions::new(probes as u32);
    opts.dtype = dtype;
    opts.probe_names = Some((0..probes).map(|p| format!("probe {p}")).collect());
    opts.probe_embeddings = Some(((0..probes * 4).map(|i| (i % 7) as f32 - 3.0).collect(), 4));
    create(path, &opts).expect("create index");
}

/// Stages `models` on any writer.
pub fn add_models<S: Storage>(w: &mut IndexWriter<S>, models: &[TestModel]) {
    for m in models {
        w.add_model(
            ModelInput {
                name: m.name.clone(),
                source: m.source.clone(),
                meta: m.meta.clone(),
                labels: m.labels.clone(),
                logits: LogitMatrix::new(&m.logits, m.probes, m.n).expect("logit shape"),
            },
            AppendOptions::default(),
        )
        .expect("add model");
    }
}

/// Appends `models` to the file at `path` as one commit.
pub fn append(path: &Path, models: &[TestModel]) {
    let mut w = IndexWriter::open(path, LockWait::Wait).expect("open writer");
    add_models(&mut w, models);
    w.commit().expect("commit");
}

/// Commits what `stage` adds to a writer over `base`, cutting the storage at operation 0, 1, 2,
/// ... in turn until a commit completes; hands `check` each cut's number and every image the cut
/// can leave (the storage's current bytes, then four crash images). `what` names the commit in
/// the panic when none completes within 200 operations.
pub fn commit_cut_at_every_op(
    base: &[u8],
    what: &str,
    stage: impl Fn(&mut IndexWriter<FaultyStorage>),
    mut check: impl FnMut(u64, Vec<u8>),
) {
    for n in 0.. {
        assert!(n < 200, "the {what} never completes");
        let mut w =
            IndexWriter::from_storage(FaultyStorage::new(base.to_vec()).fail_at_op(n)).unwrap();
        stage(&mut w);
        let done = w.commit();
        let storage = w.into_storage();
        check(n, storage.current().to_vec());
        for seed in 0..4 {
            check(n, storage.crash_image(seed));
        }
        if done.is_ok() {
            break;
        }
    }
}

/// Opens an in-memory image.
pub fn open_image(bytes: &[u8]) -> probelog::Result<RawIndex<AlignedBytes>> {
    RawIndex::new(AlignedBytes::from_slice(bytes))
}

/// `(name, offset, len)` of the first section of the index image `bytes` whose name ends with
/// `name_end` (a kind such as `"probe factors"`, or a whole name such as `"segment 1
/// descriptors"`); panics when there is none.
pub fn section_ending(bytes: &[u8], name_end: &str) -> (String, u64, u64) {
    open_image(bytes)
        .expect("open image")
        .section_extents()
        .into_iter()
        .find(|(name, _, _)| name.ends_with(name_end))
        .unwrap_or_else(|| panic!("no section named ... {name_end}"))
}

/// Spawns this test binary to run the ignored child test `test` with role `role`.
pub fn spawn_child(test: &str, role: &str, env: &[(&str, String)], quiet: bool) -> Child {
    let exe = std::env::current_exe().expect("path of the test binary");
    let mut cmd = Command::new(exe);
    cmd.args([
        test,
        "--exact",
        "--nocapture",
        "--include-ignored",
        "--test-threads=1",
    ])
    .env(ROLE_VAR, role)
    .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    if quiet {
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
    } else {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    }
    cmd.spawn().expect("spawn child test process")
}

/// Waits for a child spawned with output piped, asserts that it exited 0, returns its stdout.
pub fn expect_success(child: Child, what: &str) -> String {
    let out = child.wait_with_output().expect("wait for child");
    assert!(
        out.status.success(),
        "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The role this process was started for, if it is a child.
pub fn role() -> Option<String> {
    std::env::var(ROLE_VAR).ok()
}

/// The index path (`PLOG_PATH`) when this process is a child started in `role`; `None` in a
/// plain test run, where the child test does nothing.
pub fn child_index(role: &str) -> Option<std::path::PathBuf> {
    (self::role().as_deref() == Some(role)).then(|| env("PLOG_PATH").into())
}

pub fn env(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| panic!("child needs {key}"))
}

/// Polls until `path` exists; panics after `timeout`.
pub fn wait_for_file(path: &Path, timeout: Duration) {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < timeout,
            "timed out waiting for {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Creates an empty marker file.
pub fn touch(path: &Path) {
    std::fs::write(path, b"").expect("write marker file");
}

/// Searches of `top` results under each metric and grouping (the blend, per model, top-k with
/// `k`, full-query, model mean): what two ways of answering must agree on.
pub fn param_variants(top: usize, k: usize) -> Vec<probelog::SearchParams<'static>> {
    use probelog::{Grouping, Metric, SearchParams};
    let base = SearchParams {
        top,
        ..Default::default()
    };
    vec![
        base,
        SearchParams {
            grouping: Grouping::PerModel,
            ..base
        },
        SearchParams {
            metric: Metric::TopK,
            k: Some(k),
            ..base
        },
        SearchParams {
            metric: Metric::Full,
            ..base
        },
        SearchParams {
            grouping: Grouping::ModelMean,
            ..base
        },
    ]
}
