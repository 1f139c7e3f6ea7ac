//! Hostile command lines for `probelog-research eval` (issue 24, "writers as safe as readers"; moved
//! here with `eval` from probelog-tool's hostile tests): a report that would overwrite an input, a
//! FIFO as the index, an index of another probe set, parameters out of range, a long argument
//! echoed back. Every case ends in a clean error (exit code 1, or 2 for a flag value clap refuses;
//! one `error:` line on stderr; no panic) and leaves the index byte for byte as it was.

mod common;
use common::*;

use std::fs;
use std::path::PathBuf;

use tempfile::TempDir;

/// Probes of the test indexes.
const P: usize = 20;

/// A directory for labelled indexes and their inputs.
struct Fixture {
    dir: TempDir,
}

impl Fixture {
    fn new() -> Self {
        Fixture {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `<name>.npy` (`l` distinct, varying logits) and `<name>.labels` (`c0`, `c1`, ...).
    fn model_files(&self, name: &str, l: usize, seed: usize) -> (PathBuf, PathBuf) {
        let npy = self.path(&format!("{name}.npy"));
        let logits: Vec<f32> = (0..P * l)
            .map(|i| ((i / l * (i % l + 3) + seed * 5) % 13) as f32 + 0.1 * (i % l) as f32)
            .collect();
        write_npy(&npy, &logits, P, l);
        let labels = self.path(&format!("{name}.labels"));
        fs::write(
            &labels,
            (0..l).map(|j| format!("c{j}\n")).collect::<String>(),
        )
        .unwrap();
        (npy, labels)
    }
}

#[test]
fn eval_refuses_a_report_that_names_an_input() {
    let f = Fixture::new();
    let a = labelled_index(&f, "a.plog", &"aa".repeat(32));
    let before = fs::read(&a).unwrap();
    let e = fails(&["eval", s(&a), "--report", s(&a)]);
    assert!(e.contains("--report") && e.contains("would destroy"), "{e}");
    let link = f.path("link.json");
    std::os::unix::fs::symlink(&a, &link).unwrap();
    let e = fails(&["eval", s(&a), "--report", s(&link)]);
    assert!(e.contains("--report"), "{e}");
    assert!(fs::read(&a).unwrap() == before);
}

#[test]
fn eval_refuses_a_fifo_as_its_index() {
    let f = Fixture::new();
    let fifo = f.path("fifo");
    mkfifo(&fifo);
    let e = fails_bounded(&["eval", s(&fifo)]);
    assert!(e.contains("FIFO") && e.contains("regular file"), "{e}");
}

#[test]
fn eval_cuts_an_echoed_argument_to_an_excerpt() {
    let f = Fixture::new();
    let a = labelled_index(&f, "a.plog", &"aa".repeat(32));
    let collab = format!("{}=x.plog", "9".repeat(40_000));
    refused_with_an_excerpt(&["eval", s(&a), "--collab", &collab]);
}

/// Writes an index of `P` probes (identified by `fingerprint`) with two query and two gallery
/// models, every logit labelled; returns its path.
fn labelled_index(f: &Fixture, name: &str, fingerprint: &str) -> PathBuf {
    let index = f.path(name);
    product(&[
        "create",
        s(&index),
        "--num-probes",
        &P.to_string(),
        "--probe-fingerprint",
        fingerprint,
    ]);
    let mut manifest = String::new();
    for m in 0..4 {
        let (npy, labels) = f.model_files(&format!("e{m}"), 3, m + 10);
        let split = if m < 2 { "query" } else { "gallery" };
        manifest.push_str(&format!(
            "[[model]]\nlogits = {:?}\nlabels = {:?}\nmeta = {{ split = \"{split}\" }}\n\n",
            s(&npy),
            s(&labels)
        ));
    }
    let path = f.path(&format!("{name}.toml"));
    fs::write(&path, manifest).unwrap();
    product(&["append", s(&index), "--manifest", s(&path)]);
    index
}

#[test]
fn eval_collab_refuses_an_index_of_another_probe_set() {
    let f = Fixture::new();
    let a = labelled_index(&f, "a.plog", &"aa".repeat(32));
    let b = labelled_index(&f, "b.plog", &"bb".repeat(32));
    let before = fs::read(&a).unwrap();
    let e = fails(&["eval", s(&a), "--collab", &format!("0.5={}", s(&b))]);
    assert!(
        e.contains("probe set") && e.contains(&"bb".repeat(4)) && e.contains(&"aa".repeat(4)),
        "{e}"
    );
    // The same probe set is compared.
    let same = f.path("a2.plog");
    fs::copy(&a, &same).unwrap();
    let r = ok_json(&["eval", s(&a), "--collab", &format!("0.5={}", s(&same))]);
    assert!(!r["collab"].as_array().unwrap().is_empty());
    assert!(fs::read(&a).unwrap() == before);

    // Gallery models are matched by name: two of one name are refused, not mixed up.
    product(&[
        "append",
        s(&same),
        "--logits",
        s(&f.path("e2.npy")),
        "--name",
        "e2",
        "--labels",
        s(&f.path("e2.labels")),
        "--meta",
        "split=gallery",
        "--keep-duplicate-names",
    ]);
    let e = fails(&["eval", s(&same), "--collab", &format!("0.5={}", s(&same))]);
    assert!(e.contains("\"e2\"") && e.contains("more than one"), "{e}");
}

#[test]
fn eval_refuses_out_of_range_parameters_with_clear_messages() {
    let f = Fixture::new();
    // eval refuses what it used to clamp or drop.
    let a = labelled_index(&f, "a.plog", &"aa".repeat(32));
    let before = fs::read(&a).unwrap();
    let too_many = (P + 1).to_string();
    let p = P.to_string();
    for (args, needle) in [
        (vec!["--k", too_many.as_str()], "--k"),
        (vec!["--k-sweep", "--ks", "0,4"], "--ks"),
        (vec!["--k-sweep", "--ks", &format!("4,{too_many}")], "--ks"),
        (
            vec!["--probe-curve", "--probe-counts", "1"],
            "--probe-counts",
        ),
        (
            vec!["--probe-curve", "--probe-counts", &p],
            "--probe-counts",
        ),
        (vec!["--subset-seeds", "0"], "--subset-seeds"),
        (
            vec!["--variants", "--variant", "topk+rms:3e38"],
            "blend weight",
        ),
        (
            vec!["--variants", "--variant", "topk+all:-1"],
            "blend weight",
        ),
        (vec!["--candidate", "topk+all:nan"], "blend weight"),
        (vec!["--candidate", &format!("topk@{too_many}")], "probes"),
    ] {
        let mut all = vec!["eval", s(&a)];
        all.extend(args.iter().copied());
        let e = fails(&all);
        assert!(e.contains(needle), "{all:?}: {e}");
    }
    assert!(fs::read(&a).unwrap() == before);
}
