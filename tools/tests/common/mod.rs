//! Helpers shared by the command-line test binaries: run `probelog-tool` (or, in the research
//! crate's tests, `probelog-research`), expect success (with or without `--json`) or a one-line
//! failure.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod fixture;

/// The binary of this build under test: `probelog-tool`, or `probelog-research` in the research
/// crate's tests.
pub fn tool() -> Command {
    let bin = option_env!("CARGO_BIN_EXE_probelog-tool")
        .or(option_env!("CARGO_BIN_EXE_probelog-research"))
        .expect("built as a test of probelog-tool or probelog-research");
    Command::new(bin)
}

/// Runs `probelog-tool` with `args`.
pub fn run(args: &[&str]) -> Output {
    tool().args(args).output().expect("the binary runs")
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs a command that must succeed; returns its stdout.
pub fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?} failed with {:?}: {}",
        out.status.code(),
        stderr(&out)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Runs a command that must succeed with `--json`; returns the parsed document.
pub fn ok_json(args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let text = ok(&all);
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{args:?}: not one JSON value ({e}): {text}"))
}

/// Runs a command that must fail with exit code 1 and one `error:` line, without a panic;
/// returns that line.
pub fn fails(args: &[&str]) -> String {
    let out = run(args);
    let err = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{args:?} should fail with 1; stderr: {err}"
    );
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "{args:?} should print one error line, got: {err}"
    );
    assert!(lines[0].starts_with("error: "), "{err}");
    lines[0].to_string()
}

/// A path as a command-line argument.
pub fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// The arguments of `probes build --images IMAGES --out OUT`, then `extra` (`--size`, `--list`,
/// `--sample`, ...).
pub fn probes_build<'a>(images: &'a Path, out: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut argv = vec!["probes", "build", "--images", s(images), "--out", s(out)];
    argv.extend_from_slice(extra);
    argv
}

pub fn mkfifo(path: &Path) {
    let st = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo runs");
    assert!(st.success());
}

/// Runs the binary, killing it if it has not ended within 20 seconds (a FIFO that blocks).
pub fn run_bounded(args: &[&str]) -> Output {
    let mut child = tool()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(20) {
            child.kill().unwrap();
            panic!("{args:?} blocked for 20 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// As [`fails`], for commands that might block.
pub fn fails_bounded(args: &[&str]) -> String {
    let out = run_bounded(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "{args:?} should print one error line: {err}"
    );
    lines[0].to_string()
}

/// A command whose long argument clap refuses: exit code 2, and every line of the message short,
/// the argument cut to an excerpt (`…`).
pub fn refused_with_an_excerpt(args: &[&str]) {
    let out = run(args);
    let e = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{}", &e[..300.min(e.len())]);
    assert!(
        e.lines().all(|l| l.chars().count() < 400) && e.contains('…'),
        "{}",
        &e[..600.min(e.len())]
    );
}
