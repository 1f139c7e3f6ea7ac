//! Helpers of the C ABI and SQLite tests: the built libraries, the `probelog-tool` binary, a C
//! compiler, small indexes made by the CLI, and the CLI's search results.
#![allow(dead_code)] // each test binary uses its own subset

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;

/// The directory of this profile's outputs (`target/debug`): the test binary is in its `deps/`.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>")
        .to_path_buf()
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The capi crate's directory.
pub fn capi_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `libprobelog_c.a` or `libprobelog_c.so` of this build. Cargo builds every crate type of the
/// library into `deps/` before it runs the library's integration tests; only `cargo build`
/// copies them to the profile dir, so a copy there may be older: the newer file wins.
pub fn library(ext: &str) -> PathBuf {
    let name = format!("libprobelog_c.{ext}");
    [profile_dir(), profile_dir().join("deps")]
        .into_iter()
        .map(|dir| dir.join(&name))
        .filter_map(|p| Some((fs::metadata(&p).ok()?.modified().ok()?, p)))
        .max()
        .map(|(_, p)| p)
        .unwrap_or_else(|| {
            panic!(
                "{name} is not in {}: build the crate first (cargo build -p probelog-capi)",
                profile_dir().display()
            )
        })
}

/// The `probelog-tool` binary, built for this profile: `PROBELOG_TOOL` when set, else a
/// `cargo build -p probelog-tool` into this target directory (a no-op when it is up to date,
/// as under `cargo test --workspace`; cargo releases the build lock before it runs tests).
pub fn tool_path() -> &'static Path {
    static TOOL: OnceLock<PathBuf> = OnceLock::new();
    TOOL.get_or_init(|| {
        if let Some(p) = std::env::var_os("PROBELOG_TOOL") {
            return PathBuf::from(p);
        }
        let profile = profile_dir();
        let target = profile.parent().expect("target dir");
        let mut cmd = Command::new(env!("CARGO"));
        cmd.current_dir(repo_root())
            .args(["build", "--locked", "-p", "probelog-tool", "--target-dir"])
            .arg(target);
        if profile.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let out = cmd.output().expect("cargo runs");
        assert!(
            out.status.success(),
            "building probelog-tool failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let bin = profile.join("probelog-tool");
        assert!(bin.is_file(), "{} was not built", bin.display());
        bin
    })
}

/// Runs `probelog-tool` with `args`; it must succeed. Returns stdout.
pub fn tool_ok(args: &[&str]) -> String {
    let out = Command::new(tool_path())
        .args(args)
        .output()
        .expect("probelog-tool runs");
    assert!(
        out.status.success(),
        "probelog-tool {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Runs `probelog-tool ARGS --json`; returns the document.
pub fn tool_json(args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let text = tool_ok(&all);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {text}"))
}

/// A path as an argument.
pub fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// The C compiler: `$CC`, else `cc`.
pub fn cc() -> String {
    std::env::var("CC").unwrap_or_else(|_| "cc".into())
}

/// How a C program links probelog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// `libprobelog_c.a` and the system libraries Rust's std needs.
    Static,
    /// `-lprobelog_c` from the profile dir, found at run time through an rpath.
    Shared,
}

/// The system libraries a Rust staticlib needs on Linux (`--print native-static-libs`).
pub const STATIC_SYSTEM_LIBS: &[&str] = &[
    "-lpthread",
    "-ldl",
    "-lm",
    "-lrt",
    "-lutil",
    "-lgcc_s",
    "-lc",
];

/// Compiles `sources` into `out` (an executable, or a shared object with `-shared` among
/// `extra`), with the probelog header on the include path and probelog linked as `link` says.
pub fn compile_c(sources: &[PathBuf], out: &Path, link: Link, extra: &[&str]) {
    let mut cmd = Command::new(cc());
    cmd.args([
        "-std=c11",
        "-D_POSIX_C_SOURCE=200809L",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-g",
        "-O1",
    ])
    .arg("-I")
    .arg(capi_dir().join("include"))
    .args(extra)
    .args(sources)
    .arg("-o")
    .arg(out);
    match link {
        Link::Static => {
            cmd.arg(library("a")).args(STATIC_SYSTEM_LIBS);
        }
        Link::Shared => {
            let so = library("so");
            let dir = so.parent().unwrap();
            cmd.arg("-L")
                .arg(dir)
                .arg("-lprobelog_c")
                .arg(format!("-Wl,-rpath,{}", dir.display()))
                // DT_RPATH, not DT_RUNPATH: searched before LD_LIBRARY_PATH, where cargo test
                // puts the profile dir and its possibly older copy of the library.
                .arg("-Wl,--disable-new-dtags")
                .args(["-lpthread", "-lm"]);
        }
    }
    let o = cmd
        .output()
        .unwrap_or_else(|e| panic!("{} runs: {e}", cc()));
    assert!(
        o.status.success(),
        "compiling {sources:?} failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The dynamic section's NEEDED entries of an ELF file, through `readelf` when there is one.
pub fn needed_libraries(path: &Path) -> Option<String> {
    let out = Command::new("readelf").arg("-d").arg(path).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a program; returns its output (the caller checks the status).
pub fn run(program: &Path, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{} runs: {e}", program.display()))
}

/// A deterministic generator (xorshift64*), so that the fixtures are the same on every run.
#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    /// Uniform in [-1, 1).
    pub fn next_f32(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    pub fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.next_f32()).collect()
    }
}

/// Writes a float32 `.npy` of `shape` (C order).
pub fn write_npy(path: &Path, shape: &[usize], data: &[f32]) {
    assert_eq!(shape.iter().product::<usize>(), data.len());
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let shape_text = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_text}, }}");
    // Magic (6) + version (2) + header length (2) + header + newline, padded to 64 bytes.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend(data.iter().flat_map(|x| x.to_le_bytes()));
    fs::write(path, bytes).unwrap();
}

/// Writes raw little-endian float32 values.
pub fn write_f32(path: &Path, data: &[f32]) {
    fs::write(path, f32_bytes(data)).unwrap();
}

/// Little-endian float32 bytes: the blob form of a query in SQL.
pub fn f32_bytes(data: &[f32]) -> Vec<u8> {
    data.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A small hub made by `probelog-tool`: probe embeddings (text search), labelled models, two
/// commits (two segments).
#[derive(Debug)]
pub struct Hub {
    pub dir: tempfile::TempDir,
    pub index: PathBuf,
    pub probes: usize,
    pub dim: usize,
    pub models: usize,
    /// A raw query vector over the probes, also as `.npy` and raw `.f32`.
    pub query: Vec<f32>,
    pub query_npy: PathBuf,
    pub query_f32: PathBuf,
    /// A text embedding, also as `.npy` and raw `.f32`.
    pub text: Vec<f32>,
    pub text_npy: PathBuf,
    pub text_f32: PathBuf,
}

pub const PROBES: usize = 48;
pub const DIM: usize = 8;

impl Hub {
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Builds the hub: 14 models of 3 to 7 logits, each logit firing on a few probes of one of
    /// 10 concepts, appended in two manifests (two commits). No ANN graphs.
    pub fn new() -> Hub {
        Hub::build(false)
    }

    /// The same hub whose first segment has an ANN graph (`append --graph-min-entries 2`) and
    /// whose second has none (`--no-graph`), so that hnsw mode both walks a graph and scans.
    pub fn with_graph() -> Hub {
        Hub::build(true)
    }

    fn build(graph: bool) -> Hub {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut rng = Rng::new(7);
        // Probe embeddings [P, d]; concept c's probes lean towards axis c % d.
        let emb = rng.vec(PROBES * DIM);
        write_npy(&d.join("emb.npy"), &[PROBES, DIM], &emb);
        let index = d.join("hub.plog");
        tool_ok(&[
            "create",
            s(&index),
            "--num-probes",
            &PROBES.to_string(),
            "--probe-embeddings",
            s(&d.join("emb.npy")),
        ]);
        let models = 14;
        let mut manifests = [String::new(), String::new()];
        for m in 0..models {
            let l = 3 + m % 5;
            let mut logits = rng.vec(PROBES * l);
            let mut labels = String::new();
            for j in 0..l {
                let concept = (m * 3 + j * 7) % 10;
                for p in (0..PROBES).filter(|p| p % 10 == concept) {
                    logits[p * l + j] += 2.5;
                }
                labels.push_str(&format!("concept-{concept}\n"));
            }
            write_npy(&d.join(format!("m{m}.npy")), &[PROBES, l], &logits);
            // Model 5 has no labels: its hits carry none.
            let labels_line = if m == 5 {
                String::new()
            } else {
                fs::write(d.join(format!("m{m}.txt")), labels).unwrap();
                format!("labels = \"m{m}.txt\"\n")
            };
            manifests[m % 2].push_str(&format!(
                "[[model]]\nlogits = \"m{m}.npy\"\nname = \"model-{m:02}\"\n{labels_line}\n"
            ));
        }
        for (i, text) in manifests.iter().enumerate() {
            let path = d.join(format!("models{i}.toml"));
            fs::write(&path, text).unwrap();
            let mut args = vec!["append", s(&index), "--manifest", s(&path)];
            if graph {
                args.extend(if i == 0 {
                    &["--graph-min-entries", "2"][..]
                } else {
                    &["--no-graph"][..]
                });
            }
            tool_ok(&args);
        }
        let mut query = rng.vec(PROBES);
        for p in (0..PROBES).filter(|p| p % 10 == 3) {
            query[p] += 2.5;
        }
        let text = rng.vec(DIM);
        let hub = Hub {
            query_npy: d.join("query.npy"),
            query_f32: d.join("query.f32"),
            text_npy: d.join("text.npy"),
            text_f32: d.join("text.f32"),
            index,
            probes: PROBES,
            dim: DIM,
            models,
            query,
            text,
            dir,
        };
        write_npy(&hub.query_npy, &[PROBES], &hub.query);
        write_f32(&hub.query_f32, &hub.query);
        write_npy(&hub.text_npy, &[DIM], &hub.text);
        write_f32(&hub.text_f32, &hub.text);
        hub
    }
}

/// One search, as the CLI's flags.
#[derive(Debug, Clone)]
pub struct Search {
    /// "entry", "vector" or "text".
    pub kind: &'static str,
    pub entry: u64,
    pub top: u32,
    pub k: u32,
    pub exclude_same_model: bool,
    pub per_model: bool,
    /// "blend", "topk", "full" or "model".
    pub metric: &'static str,
    /// `--blend-weight` of the blend metric; 0 for the default.
    pub blend_weight: f32,
    /// "auto", "exact" or "hnsw".
    pub mode: &'static str,
    /// Candidates per graph in hnsw mode; 0 for the default.
    pub candidates: u32,
}

impl Search {
    pub fn new(kind: &'static str) -> Self {
        Search {
            kind,
            entry: 0,
            top: 10,
            k: 0,
            exclude_same_model: false,
            per_model: false,
            metric: "blend",
            blend_weight: 0.0,
            mode: "auto",
            candidates: 0,
        }
    }

    pub fn metric_code(&self) -> u32 {
        match self.metric {
            "topk" => 0,
            "full" => 1,
            "model" => 2,
            "blend" => 3,
            m => panic!("metric {m}"),
        }
    }

    /// PROBELOG_MODE_* of `mode` (also of a report's resolved "mode").
    pub fn mode_code(&self) -> u32 {
        mode_code(self.mode)
    }

    /// The CLI's `--json` report of this search on `hub`.
    pub fn cli(&self, hub: &Hub) -> Value {
        let mut args: Vec<String> = vec!["search".into(), s(&hub.index).into()];
        match self.kind {
            "entry" => args.extend(["--entry".into(), self.entry.to_string()]),
            "vector" => args.extend(["--query-logits".into(), s(&hub.query_npy).into()]),
            "text" => args.extend(["--text-embedding".into(), s(&hub.text_npy).into()]),
            k => panic!("kind {k}"),
        }
        args.extend(["--top".into(), self.top.to_string()]);
        if self.k != 0 {
            args.extend(["--k".into(), self.k.to_string()]);
        }
        if self.exclude_same_model {
            args.push("--exclude-same-model".into());
        }
        if self.per_model {
            args.push("--per-model".into());
        }
        args.extend(["--metric".into(), self.metric.into()]);
        if self.blend_weight != 0.0 {
            args.extend(["--blend-weight".into(), self.blend_weight.to_string()]);
        }
        args.extend(["--mode".into(), self.mode.into()]);
        if self.candidates != 0 {
            args.extend(["--candidates".into(), self.candidates.to_string()]);
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        tool_json(&refs)
    }
}

/// A spread of searches over every query kind, parameter and metric (the blend, the default,
/// unless named).
pub fn searches() -> Vec<Search> {
    let mut v = Vec::new();
    let e = |entry: u64| Search {
        entry,
        ..Search::new("entry")
    };
    v.push(e(0));
    v.push(Search {
        top: 6,
        metric: "topk",
        ..e(0)
    });
    v.push(Search {
        top: 5,
        k: 5,
        blend_weight: 0.75,
        ..e(7)
    });
    v.push(Search {
        top: 7,
        k: 8,
        exclude_same_model: true,
        metric: "topk",
        ..e(5)
    });
    v.push(Search {
        top: 4,
        per_model: true,
        metric: "topk",
        ..e(3)
    });
    v.push(Search {
        top: 6,
        metric: "topk",
        ..Search::new("vector")
    });
    v.push(Search {
        top: 6,
        blend_weight: 3.5,
        per_model: true,
        ..Search::new("vector")
    });
    v.push(Search {
        top: 4,
        k: 6,
        metric: "topk",
        ..Search::new("text")
    });
    v.push(Search {
        top: 7,
        k: 8,
        exclude_same_model: true,
        ..e(5)
    });
    v.push(Search {
        top: 4,
        per_model: true,
        ..e(3)
    });
    v.push(Search {
        top: 5,
        metric: "full",
        ..e(12)
    });
    v.push(Search {
        top: 3,
        metric: "model",
        ..e(2)
    });
    v.push(Search { top: 1000, ..e(40) });
    v.push(Search {
        top: 6,
        ..Search::new("vector")
    });
    v.push(Search {
        top: 5,
        per_model: true,
        k: 4,
        ..Search::new("vector")
    });
    v.push(Search {
        top: 8,
        metric: "full",
        ..Search::new("vector")
    });
    v.push(Search {
        top: 5,
        ..Search::new("text")
    });
    v.push(Search {
        top: 4,
        per_model: true,
        k: 6,
        ..Search::new("text")
    });
    v.push(Search {
        metric: "model",
        ..Search::new("text")
    });
    v
}

/// PROBELOG_MODE_AUTO, _EXACT or _HNSW of a mode's name.
pub fn mode_code(mode: &str) -> u32 {
    match mode {
        "auto" => 0,
        "exact" => 1,
        "hnsw" => 2,
        m => panic!("mode {m}"),
    }
}

/// Searches in each mode for [`Hub::with_graph`]: hnsw with few candidates (so that the graph
/// matters) over every query kind and option, the default candidates, and exact and auto with
/// candidates that they ignore. On a hub this small, auto resolves to exact.
pub fn mode_searches() -> Vec<Search> {
    // The graphs serve the paper's top-k discrepancy only.
    let hnsw = |kind, candidates| Search {
        mode: "hnsw",
        metric: "topk",
        candidates,
        ..Search::new(kind)
    };
    vec![
        Search {
            top: 5,
            ..hnsw("vector", 3)
        },
        Search {
            top: 6,
            k: 4,
            per_model: true,
            ..hnsw("vector", 2)
        },
        Search {
            entry: 5,
            top: 7,
            k: 8,
            exclude_same_model: true,
            ..hnsw("entry", 4)
        },
        Search {
            entry: 3,
            top: 4,
            per_model: true,
            ..hnsw("entry", 1)
        },
        Search {
            entry: 40,
            top: 1000,
            ..hnsw("entry", 1)
        },
        // The default candidates (100): every node of the small graph.
        Search {
            entry: 0,
            ..hnsw("entry", 0)
        },
        Search {
            top: 4,
            ..hnsw("text", 3)
        },
        Search {
            top: 5,
            mode: "exact",
            ..hnsw("vector", 3)
        },
        Search {
            top: 5,
            mode: "auto",
            ..hnsw("vector", 3)
        },
        // The default metric, the blend, runs exactly in auto mode.
        Search {
            top: 5,
            mode: "auto",
            candidates: 3,
            ..Search::new("vector")
        },
        Search {
            top: 3,
            metric: "model",
            mode: "auto",
            ..Search::new("text")
        },
    ]
}

/// One result row of a CLI report: (rank, entry or -1, model id, model, logit or -1, label,
/// score).
pub type Row = (u64, i64, u64, String, i64, Option<String>, f32);

/// The results of a CLI `--json` report as rows.
pub fn cli_rows(report: &Value) -> Vec<Row> {
    json_rows(report["results"].as_array().expect("results"))
}

/// Result objects (the CLI's `--json` results, `sqlite3 -json` rows) as rows.
pub fn json_rows(objects: &[Value]) -> Vec<Row> {
    objects
        .iter()
        .map(|r| {
            (
                r["rank"].as_u64().unwrap(),
                r["entry"].as_i64().unwrap_or(-1),
                r["model_id"].as_u64().unwrap(),
                r["model"].as_str().unwrap().to_string(),
                r["logit"].as_i64().unwrap_or(-1),
                r["label"].as_str().map(str::to_string),
                r["score"].as_f64().unwrap() as f32,
            )
        })
        .collect()
}

/// The directory of `sqlite3ext.h`: the headers of the SQLite that rusqlite bundles
/// (libsqlite3-sys, a dev-dependency), so that building the extension needs no libsqlite3-dev.
pub fn sqlite_include_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // Only the host's packages: those are the ones the build has downloaded.
        let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
        let version = Command::new(rustc).arg("-vV").output().expect("rustc runs");
        let host = String::from_utf8_lossy(&version.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
            .expect("rustc -vV names the host");
        let out = Command::new(env!("CARGO"))
            .current_dir(repo_root())
            .args(["metadata", "--format-version", "1", "--locked"])
            .args(["--filter-platform", &host])
            .output()
            .expect("cargo metadata runs");
        assert!(
            out.status.success(),
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let meta: Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
        let manifest = meta["packages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "libsqlite3-sys")
            .and_then(|p| p["manifest_path"].as_str())
            .expect("libsqlite3-sys is a dependency");
        let dir = Path::new(manifest).parent().unwrap().join("sqlite3");
        assert!(dir.join("sqlite3ext.h").is_file(), "{}", dir.display());
        dir
    })
    .clone()
}

/// Builds the SQLite extension `sqlite/probelog_sqlite.c` with `libprobelog_c.a` into
/// `dir/probelog.so`, as docs/embedding.md says (plus -Werror).
pub fn build_extension(dir: &Path) -> PathBuf {
    let so = dir.join("probelog.so");
    let include = sqlite_include_dir();
    compile_c(
        &[capi_dir().join("sqlite/probelog_sqlite.c")],
        &so,
        Link::Static,
        &[
            "-shared",
            "-fPIC",
            "-fvisibility=hidden",
            "-Wl,--exclude-libs,ALL",
            "-I",
            s(&include),
        ],
    );
    so
}

/// Hex digits of bytes: an SQL blob literal is `X'<hex>'`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A small hub for deletes, filters and explanations, made by `probelog-tool`: 10 models `m-0`
/// to `m-9` of 3 labelled logits, with metadata `family` (`a` for even models, `b` for odd
/// ones) and `license` (`gpl` for models 0 to 2, `mit` for 3 to 8, none for 9), probe names
/// (`probe-0`, ...) and probe embeddings, in one commit.
#[derive(Debug)]
pub struct Zoo {
    pub dir: tempfile::TempDir,
    pub index: PathBuf,
    pub probes: usize,
    pub dim: usize,
    pub models: usize,
    pub logits: usize,
    /// A raw query vector over the probes, also as `.npy`.
    pub query: Vec<f32>,
    pub query_npy: PathBuf,
    /// A text embedding, also as `.npy`.
    pub text: Vec<f32>,
    pub text_npy: PathBuf,
}

impl Zoo {
    /// The zoo; with `graph`, its one segment has an ANN graph (`--graph-min-entries 2`).
    pub fn new(graph: bool) -> Zoo {
        let (probes, dim, models, l) = (32, 4, 10, 3);
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut rng = Rng::new(31);
        write_npy(&d.join("emb.npy"), &[probes, dim], &rng.vec(probes * dim));
        let names: String = (0..probes).map(|p| format!("probe-{p}\n")).collect();
        fs::write(d.join("probes.txt"), names).unwrap();
        let index = d.join("zoo.plog");
        tool_ok(&[
            "create",
            s(&index),
            "--num-probes",
            &probes.to_string(),
            "--probe-names",
            s(&d.join("probes.txt")),
            "--probe-embeddings",
            s(&d.join("emb.npy")),
        ]);
        let mut manifest = String::new();
        for m in 0..models {
            let mut logits = rng.vec(probes * l);
            let mut labels = String::new();
            for j in 0..l {
                let concept = (m + j * 3) % 8;
                for p in (0..probes).filter(|p| p % 8 == concept) {
                    logits[p * l + j] += 2.5;
                }
                labels.push_str(&format!("concept-{concept}\n"));
            }
            write_npy(&d.join(format!("m{m}.npy")), &[probes, l], &logits);
            fs::write(d.join(format!("m{m}.txt")), labels).unwrap();
            let family = if m % 2 == 0 { "a" } else { "b" };
            let license = match m {
                0..=2 => "license = \"gpl\", ",
                9 => "",
                _ => "license = \"mit\", ",
            };
            manifest.push_str(&format!(
                "[[model]]\nlogits = \"m{m}.npy\"\nname = \"m-{m}\"\nlabels = \"m{m}.txt\"\n\
                 meta = {{ {license}family = \"{family}\" }}\n\n"
            ));
        }
        fs::write(d.join("models.toml"), manifest).unwrap();
        let manifest_path = d.join("models.toml");
        let mut args = vec!["append", s(&index), "--manifest", s(&manifest_path)];
        if graph {
            args.extend(["--graph-min-entries", "2"]);
        }
        tool_ok(&args);
        let mut query = rng.vec(probes);
        for p in (0..probes).filter(|p| p % 8 == 3) {
            query[p] += 2.5;
        }
        let text = rng.vec(dim);
        let zoo = Zoo {
            query_npy: d.join("query.npy"),
            text_npy: d.join("text.npy"),
            index,
            probes,
            dim,
            models,
            logits: l,
            query,
            text,
            dir,
        };
        write_npy(&zoo.query_npy, &[probes], &zoo.query);
        write_npy(&zoo.text_npy, &[dim], &zoo.text);
        zoo
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}
