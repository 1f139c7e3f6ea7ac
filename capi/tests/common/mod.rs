//! Helpers of the C ABI and SQLite tests: the built libraries, the `probelog-tool` binary, a C
//! compiler, small indexes made by the CLI, and the CLI's search results.
#![allow(dead_code)] // each test binary uses its own subset

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;

mod hub;
mod sqlite;
mod zoo;

// Each test binary uses its own subset of these.
#[allow(unused_imports)]
pub use {hub::*, sqlite::*, zoo::*};

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
        output_ok(&mut cmd, "building probelog-tool");
        let bin = profile.join("probelog-tool");
        assert!(bin.is_file(), "{} was not built", bin.display());
        bin
    })
}

/// Runs `cmd` to its end; it must start and succeed, else the test fails naming `what`, with
/// the command's stderr. Returns its output.
pub fn output_ok(cmd: &mut Command, what: &str) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what} did not start: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `probelog-tool` with `args`; it must succeed. Returns stdout.
pub fn tool_ok(args: &[&str]) -> String {
    let out = output_ok(
        Command::new(tool_path()).args(args),
        &format!("probelog-tool {args:?}"),
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

/// Runs `probelog-tool search INDEX FLAGS --json`; returns the report.
pub fn tool_search(index: &Path, flags: &[&str]) -> Value {
    let mut args = vec!["search", s(index)];
    args.extend(flags);
    tool_json(&args)
}

/// The CLI flags of the hnsw search that tests run alike through the C ABI, SQL and the CLI:
/// the top 5 by the topk metric, 20 candidates per graph.
pub const HNSW_TOP5_FLAGS: &[&str] = &[
    "--top",
    "5",
    "--metric",
    "topk",
    "--mode",
    "hnsw",
    "--candidates",
    "20",
];

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
    output_ok(&mut cmd, &format!("compiling {sources:?} with {}", cc()));
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

    /// A query vector over `probes` probes, raised by 2.5 on the probes of concept 3 (those `p`
    /// with `p % concepts == 3`), as the fixtures raise each logit on its concept's probes.
    pub fn concept_query(&mut self, probes: usize, concepts: usize) -> Vec<f32> {
        let mut query = self.vec(probes);
        for p in (0..probes).filter(|p| p % concepts == 3) {
            query[p] += 2.5;
        }
        query
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
