//! End-to-end tests of the `probelog-tool` binary (real processes, real files). Appending from the
//! command line: manifests in one commit, the input checks (probe count, NaN, constant logits,
//! labels, .npy files) and the writer lock.

mod common;
use common::fixture::*;
use common::*;

use std::fs;
use std::io::{BufRead, BufReader};
use std::process::Stdio;

use ndarray::Array2;
use ndarray_npy::WriteNpyExt;
use probelog::{IndexWriter, LockWait};
use serde_json::Value;

#[test]
fn manifest_appends_every_model_in_one_commit() {
    let f = Fixture::new();
    f.model_files("one", &[1, 2], 1);
    f.model_files("two", &[2, 3, 4], 2);
    fs::create_dir(f.path("sub")).unwrap();
    let three = concept_logits(&[5], 3);
    write_npy(&f.path("sub/three.npy"), &three, P, 1);
    let manifest = f.path("models.toml");
    fs::write(
        &manifest,
        r#"
[[model]]
logits = "one.npy"
name = "first"
source = "hub:one"
labels = "one.labels"
meta = { arch = "resnet", zeta = "1", alpha = "2" }

[[model]]
logits = "two.npy"
labels = "two.labels"

[[model]]
logits = "sub/three.npy"
"#,
    )
    .unwrap();
    let r = ok_json(&["append", f.idx(), "--manifest", s(&manifest)]);
    assert_eq!(r["models_added"], 3);
    assert_eq!(r["entries_added"], 6);
    assert_eq!(r["sequence"], 2, "one commit for the whole manifest");
    let info = model_info(f.idx());
    assert_eq!(info["segment_count"], 2);
    let models = info["models"].as_array().unwrap();
    let names: Vec<&str> = models.iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["first", "two", "three"],
        "the name defaults to the file stem"
    );
    assert_eq!(models[0]["source"], "hub:one");
    let meta: Vec<(&String, &Value)> = models[0]["meta"].as_object().unwrap().iter().collect();
    assert_eq!(meta.len(), 3);
    assert_eq!(models[0]["meta"]["arch"], "resnet");
    let r = ok_json(&["search", f.idx(), "--entry", "3"]);
    assert_eq!(r["query"]["label"], "concept-3");
}

#[test]
fn manifest_with_one_bad_model_commits_nothing() {
    let f = Fixture::new().with_models();
    let before = model_info(f.idx());
    f.model_files("good", &[1, 2], 7);
    let mut bad = concept_logits(&[3, 4], 8);
    bad[5 * 2 + 1] = f32::NAN;
    write_npy(&f.path("bad.npy"), &bad, P, 2);
    let manifest = f.path("models.toml");
    let e = append_manifest_fails(
        f.idx(),
        &manifest,
        "[[model]]\nlogits = \"good.npy\"\n\n[[model]]\nlogits = \"bad.npy\"\nname = \"broken\"\n",
        &[],
    );
    assert!(
        e.contains("\"broken\"") && e.contains("nothing was committed"),
        "{e}"
    );
    assert!(e.contains("logit 1") && e.contains("NaN"), "{e}");
    let after = model_info(f.idx());
    assert_eq!(after["sequence"], before["sequence"]);
    assert_eq!(after["model_count"], 3);
    assert_eq!(after["entry_count"], before["entry_count"]);

    for (case, text, wants) in [
        (
            "a meta value that is not a string",
            "[[model]]\nlogits = \"good.npy\"\nmeta = { n = 3 }\n",
            &["must be a string"][..],
        ),
        (
            "an unknown key",
            "[[model]]\nlogits = \"good.npy\"\ncolour = \"red\"\n",
            &["line 3", "colour"],
        ),
        ("no models", "# nothing\n", &["no models"]),
    ] {
        let e = append_manifest_fails(f.idx(), &manifest, text, &[]);
        assert!(wants.iter().all(|w| e.contains(w)), "{case}: {e}");
    }
}

#[test]
fn wrong_probe_count_names_both_counts() {
    let f = Fixture::new();
    let path = f.path("short.npy");
    write_npy(&path, &vec![1.0; 47 * 2], 47, 2);
    let e = fails(&f.append_logits(&path, "short", &[]));
    assert!(
        e.contains("47") && e.contains("50") && e.contains("short"),
        "{e}"
    );

    // [logits, probes] instead of [probes, logits].
    let logits = concept_logits(&[1, 2, 3], 1);
    let mut transposed = vec![0f32; logits.len()];
    for p in 0..P {
        for j in 0..3 {
            transposed[j * P + p] = logits[p * 3 + j];
        }
    }
    write_npy(&path, &transposed, 3, P);
    let e = fails(&f.append_logits(&path, "t", &[]));
    assert!(e.contains("transposed") && e.contains("[3, 50]"), "{e}");
    assert_eq!(model_info(f.idx())["model_count"], 0);
}

#[test]
fn nan_logits_name_the_model_and_logit() {
    let f = Fixture::new();
    let mut logits = concept_logits(&[1, 2, 3], 1);
    logits[4 * 3 + 2] = f32::NAN;
    let path = f.path("nan.npy");
    write_npy(&path, &logits, P, 3);
    let e = fails(&f.append_logits(&path, "nanny", &[]));
    assert!(
        e.contains("nanny") && e.contains("logit 2") && e.contains("NaN"),
        "{e}"
    );
}

#[test]
fn constant_logit_needs_keep_constant() {
    let f = Fixture::new();
    let mut logits = concept_logits(&[1, 2], 1);
    for p in 0..P {
        logits[p * 2 + 1] = 4.25;
    }
    let path = f.path("flat.npy");
    write_npy(&path, &logits, P, 2);
    let e = fails(&f.append_logits(&path, "flat", &[]));
    assert!(
        e.contains("flat") && e.contains("logit 1") && e.contains("--keep-constant"),
        "{e}"
    );
    let r = ok_json(&f.append_logits(&path, "flat", &["--keep-constant"]));
    assert_eq!(r["entries_added"], 2);
    assert_eq!(r["models"][0]["constant_logits"], 1);
    let e = fails(&["search", f.idx(), "--entry", "1"]);
    assert!(e.contains("constant"), "{e}");
}

#[test]
fn labels_must_match_the_logit_count() {
    let f = Fixture::new();
    let (npy, labels, _) = f.model_files("m", &[1, 2, 3], 1);
    fs::write(&labels, "a\nb\n").unwrap();
    let e = fails(&f.append_logits(&npy, "m", &["--labels", s(&labels)]));
    assert!(e.contains("3 logits") && e.contains("2 labels"), "{e}");
    let missing = f.path("nope.labels");
    let e = fails(&f.append_logits(&npy, "m", &["--labels", s(&missing)]));
    assert!(e.contains("nope.labels"), "{e}");
}

#[test]
fn bad_npy_inputs_are_clear_errors() {
    let f = Fixture::new();
    let e = fails(&f.append_logits(&f.path("missing.npy"), "m", &[]));
    assert!(
        e.contains("missing.npy") && e.contains("No such file"),
        "{e}"
    );
    let text = f.path("text.npy");
    fs::write(&text, "not numpy").unwrap();
    let e = fails(&f.append_logits(&text, "m", &[]));
    assert!(e.contains("not a .npy file"), "{e}");
    let ints = f.path("ints.npy");
    Array2::<i64>::zeros((P, 2))
        .write_npy(fs::File::create(&ints).unwrap())
        .unwrap();
    let e = fails(&f.append_logits(&ints, "m", &[]));
    assert!(e.contains("<i8") && e.contains("float32"), "{e}");
    let cut = f.path("cut.npy");
    write_npy(&cut, &concept_logits(&[1, 2], 1), P, 2);
    let bytes = fs::read(&cut).unwrap();
    fs::write(&cut, &bytes[..bytes.len() - 9]).unwrap();
    let e = fails(&f.append_logits(&cut, "m", &[]));
    assert!(e.contains("truncated"), "{e}");
    let vec = f.path("vec.npy");
    write_npy_1d(&vec, &[1.0; P]);
    let e = fails(&f.append_logits(&vec, "m", &[]));
    assert!(e.contains("2-D") && e.contains("[50]"), "{e}");

    // float64 is converted.
    let f64s = f.path("f64.npy");
    let logits: Vec<f64> = concept_logits(&[1, 2], 1)
        .iter()
        .map(|&x| f64::from(x))
        .collect();
    Array2::from_shape_vec((P, 2), logits)
        .unwrap()
        .write_npy(fs::File::create(&f64s).unwrap())
        .unwrap();
    let r = ok_json(&f.append_logits(&f64s, "double", &[]));
    assert_eq!(r["entries_added"], 2);
}

#[test]
fn no_wait_fails_while_another_writer_holds_the_lock() {
    let f = Fixture::new();
    let (npy, _, _) = f.model_files("m", &[1, 2], 1);
    let held = IndexWriter::open(&f.index, LockWait::Fail).unwrap();
    let e = fails(&f.append_logits(&npy, "m", &["--no-wait"]));
    assert!(e.contains("locked"), "{e}");
    let e = fails(&["compact", f.idx(), "--no-wait"]);
    assert!(e.contains("locked"), "{e}");
    drop(held);
    ok(&f.append_logits(&npy, "m", &["--no-wait"]));
}

#[test]
fn append_waits_for_the_lock_by_default() {
    let f = Fixture::new();
    let (npy, _, _) = f.model_files("m", &[1, 2], 1);
    let held = IndexWriter::open(&f.index, LockWait::Fail).unwrap();
    let mut child = tool()
        .args(["append", f.idx(), "--logits", s(&npy), "--name", "m"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert_eq!(
        line.trim_end(),
        format!("waiting for the writer lock on {}...", f.idx())
    );
    drop(held);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("appended 1 model"));
    assert_eq!(model_info(f.idx())["model_count"], 1);
}
