//! End-to-end tests of the `probelog-tool` binary (real processes, real files). `append --manifest
//! M --shard I/N`: N jobs each append one contiguous slice of a manifest to an index of their own,
//! and the slices, taken in shard order, are the manifest in order.

mod common;
use common::fixture::*;
use common::*;

use std::fs;
use std::path::{Path, PathBuf};

/// A manifest of `len` models (`m0`, `m1`, ...; concepts and seeds vary with the position).
fn manifest(f: &Fixture, len: usize) -> PathBuf {
    let mut text = String::new();
    for i in 0..len {
        let concepts = [i % 10, (i + 3) % 10, (i + 7) % 10];
        f.model_files(&format!("m{i}"), &concepts, i as u64 + 1);
        text.push_str(&format!(
            "[[model]]\nlogits = \"m{i}.npy\"\nlabels = \"m{i}.labels\"\n\n"
        ));
    }
    let path = f.path(&format!("m{len}.toml"));
    fs::write(&path, text).unwrap();
    path
}

/// Creates the shard index `<tag>-<i>.plog` and appends shard `i/n` of `m` to it (plus `extra`
/// flags); returns the index and the `--json` summary.
fn append_shard(
    f: &Fixture,
    m: &Path,
    tag: &str,
    i: usize,
    n: usize,
    extra: &[&str],
) -> (PathBuf, serde_json::Value) {
    let index = f.path(&format!("{tag}-{i}.plog"));
    ok(&["create", s(&index), "--num-probes", &P.to_string()]);
    let shard = format!("{i}/{n}");
    let args = [
        &["append", s(&index), "--manifest", s(m), "--shard", &shard][..],
        extra,
    ]
    .concat();
    let r = ok_json(&args);
    (index, r)
}

/// Each entry's descriptor, with its model's name, in index order.
fn contents(index: &Path) -> Vec<(String, Vec<u32>)> {
    let opened = probelog::Index::open(index).unwrap();
    let info = model_info(s(index));
    let mut out = Vec::new();
    for m in info["models"].as_array().unwrap() {
        let name = m["name"].as_str().unwrap().to_string();
        let first = m["first_entry"].as_u64().unwrap();
        for e in first..first + m["logits"].as_u64().unwrap() {
            let d = opened.descriptor(e).unwrap();
            out.push((name.clone(), d.iter().map(|v| v.to_bits()).collect()));
        }
    }
    out
}

#[test]
fn shards_in_order_are_the_manifest_in_order() {
    let f = Fixture::new();
    for len in [1usize, 4, 7] {
        let m = manifest(&f, len);
        let whole = f.path(&format!("whole-{len}.plog"));
        ok(&["create", s(&whole), "--num-probes", &P.to_string()]);
        ok(&["append", s(&whole), "--manifest", s(&m)]);
        let want = contents(&whole);
        for n in [1usize, 2, 3, 8] {
            let mut got = Vec::new();
            let mut next = 0;
            for i in 0..n {
                let (index, r) = append_shard(&f, &m, &format!("s{len}-{n}"), i, n, &[]);
                let (first, end) = (i * len / n, (i + 1) * len / n);
                assert_eq!(r["shard"]["index"], i as u64);
                assert_eq!(r["shard"]["count"], n as u64);
                assert_eq!(r["shard"]["first_model"], first as u64);
                assert_eq!(r["shard"]["end_model"], end as u64);
                assert_eq!(r["shard"]["manifest_models"], len as u64);
                assert_eq!(
                    r["models_added"],
                    (end - first) as u64,
                    "{len} models, {i}/{n}"
                );
                assert_eq!(first, next, "slices are contiguous");
                next = end;
                got.extend(contents(&index));
            }
            assert_eq!(next, len, "the slices cover the manifest");
            assert_eq!(got, want, "{len} models in {n} shards");
        }
    }
}

#[test]
fn shards_keep_the_manifest_positions_of_the_probe_subsets() {
    let f = Fixture::new();
    let m = manifest(&f, 5);
    let flags = [
        "--probe-fraction",
        "0.4",
        "--adaptive-share",
        "0",
        "--seed",
        "11",
        "--rank",
        "2",
    ];
    let whole = f.path("whole.plog");
    ok(&["create", s(&whole), "--num-probes", &P.to_string()]);
    ok(&[&["append", s(&whole), "--manifest", s(&m)][..], &flags].concat());
    let whole = probelog::Index::open(&whole).unwrap();
    let mut model = 0;
    for i in 0..2 {
        let (index, r) = append_shard(&f, &m, "collab", i, 2, &flags);
        let shard = probelog::Index::open(&index).unwrap();
        for id in 0..r["models_added"].as_u64().unwrap() {
            assert_eq!(
                shard.observed_probes(id).unwrap(),
                whole.observed_probes(model).unwrap(),
                "model {model} is probed on the subset of its manifest position"
            );
            model += 1;
        }
    }
    assert_eq!(model, 5);
}

#[test]
fn an_empty_shard_appends_nothing_and_says_so() {
    let f = Fixture::new();
    let m = manifest(&f, 2);
    let (index, r) = append_shard(&f, &m, "empty", 1, 5, &[]);
    assert_eq!(r["models_added"], 0);
    assert_eq!(r["shard"]["first_model"], 0);
    assert_eq!(r["shard"]["end_model"], 0);
    assert_eq!(model_info(s(&index))["model_count"], 0);
    let out = ok(&["append", s(&index), "--manifest", s(&m), "--shard", "3/5"]);
    assert!(out.contains("appended nothing"), "{out}");
    assert!(out.contains("shard 3/5: no models of 2"), "{out}");
    let out = ok(&["append", s(&index), "--manifest", s(&m), "--shard", "4/5"]);
    assert!(out.contains("shard 4/5: models 1 to 1 of 2"), "{out}");
    assert_eq!(model_info(s(&index))["model_count"], 1);
}

#[test]
fn bad_shards_are_refused_with_the_reason() {
    let f = Fixture::new();
    let m = manifest(&f, 3);
    for (shard, why) in [
        ("2/2", "must be below N (0 to 1)"),
        ("0/0", "at least 1"),
        ("1", "expected I/N"),
        ("a/2", "is not a whole number"),
        ("1/-2", "is not a whole number"),
    ] {
        let out = run(&[
            "append",
            f.idx(),
            "--manifest",
            s(&m),
            &format!("--shard={shard}"),
        ]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{shard}: {err}");
        let first = err.lines().next().unwrap();
        assert!(
            first.starts_with("error: ") && first.contains(why),
            "{shard}: {err}"
        );
    }
    let (npy, _, _) = f.model_files("one", &[1], 1);
    let e = fails(&f.append_logits(&npy, "one", &["--shard", "0/2"]));
    assert!(e.contains("--shard 0/2 slices a manifest"), "{e}");
    assert_eq!(model_info(f.idx())["model_count"], 0);
}
