//! Helpers shared by the command-line test binaries: run `probelog-tool`, expect success (with or
//! without `--json`) or a one-line failure.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

/// The `probelog-tool` binary of this build.
pub fn tool() -> Command {
    Command::new(env!("CARGO_BIN_EXE_probelog-tool"))
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
