//! End-to-end tests of the `probelog-tool` binary (real processes, real files). The commands around
//! an index: create (probe names, fingerprints), info, verify, compact, export, demo, damaged files
//! and usage errors.

mod common;
use common::fixture::*;
use common::*;

use std::fs;

use ndarray::Array2;
use ndarray_npy::ReadNpyExt;
use serde_json::Value;

#[test]
fn create_with_probe_names_and_fingerprints() {
    let dir = tempfile::tempdir().unwrap();
    let names = dir.path().join("probes.txt");
    let list: Vec<String> = (0..P).map(|p| format!("img_{p:03}.jpg\n")).collect();
    fs::write(&names, list.concat()).unwrap();
    let index = dir.path().join("named.plog");
    ok(&[
        "create",
        s(&index),
        "--num-probes",
        &P.to_string(),
        "--probe-names",
        s(&names),
    ]);
    let info = model_info(s(&index));
    assert_eq!(info["probe_names"], true);
    let fingerprint = info["fingerprint"].as_str().unwrap().to_string();
    assert_eq!(fingerprint.len(), 64);

    let e = fails(&[
        "create",
        s(&dir.path().join("x.plog")),
        "--num-probes",
        "49",
        "--probe-names",
        s(&names),
    ]);
    assert!(e.contains("50 probe names") && e.contains("49"), "{e}");
    let e = fails(&["create", s(&index), "--num-probes", "50"]);
    assert!(e.contains("exists already"), "{e}");

    let given = "ab".repeat(32);
    let other = dir.path().join("fp.plog");
    ok(&[
        "create",
        s(&other),
        "--num-probes",
        "50",
        "--probe-fingerprint",
        &given,
        "--dtype",
        "f16",
    ]);
    let info = model_info(s(&other));
    assert_eq!(info["fingerprint"], given.as_str());
    assert_eq!(info["dtype"], "f16");

    let f = Fixture { dir, index };
    let (npy, _, _) = f.model_files("m", &[1, 2], 1);
    let e = fails(&f.append_logits(&npy, "m", &["--probe-fingerprint", &given]));
    assert!(e.contains("probe set mismatch"), "{e}");
    ok(&f.append_logits(&npy, "m", &["--probe-fingerprint", &fingerprint]));
    // f16 indexes search too.
    ok(&["append", s(&other), "--logits", s(&npy), "--name", "m"]);
    let r = ok_json(&["search", s(&other), "--entry", "1", "--top", "1"]);
    assert!(r["results"][0]["score"].as_f64().unwrap() < 1e-3);

    let out = run(&[
        "create",
        s(&f.path("y.plog")),
        "--num-probes",
        "5",
        "--probe-fingerprint",
        "xyz",
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a malformed fingerprint is a usage error"
    );
}

#[test]
fn info_reports_the_index() {
    let f = Fixture::new().with_models();
    let info = model_info(f.idx());
    assert_eq!(info["num_probes"], P as u64);
    assert_eq!(info["dtype"], "f32");
    assert_eq!(info["entry_count"], 12);
    assert_eq!(info["model_count"], 3);
    assert_eq!(info["segment_count"], 4);
    assert_eq!(info["sequence"], 4);
    assert_eq!(info["file_size"], fs::metadata(&f.index).unwrap().len());
    assert_eq!(info["committed_len"], info["file_size"]);
    assert_eq!(info["probe_names"], false);
    assert!(info["probe_embedding_dim"].is_null());
    let models = info["models"].as_array().unwrap();
    assert_eq!(models.len(), 3);
    assert_eq!(models[1]["name"], "beta");
    assert_eq!(models[1]["logits"], 3);
    assert_eq!(models[1]["first_entry"], 4);
    assert_eq!(models[1]["source"], "test");
    assert_eq!(models[1]["meta"]["seed"], "1");
    assert_eq!(info["default_metric"], "blend");
    assert_eq!(info["auto_mode"], "exact");
    let human = ok(&["info", f.idx()]);
    assert!(
        human.contains("gamma") && human.contains("entries:") && !human.contains("more"),
        "{human}"
    );
    assert!(
        human.contains("search metric:    blend by default (k = 16, weight 8); --metric topk"),
        "{human}"
    );
}

#[test]
fn info_lists_at_most_20_models_in_human_form() {
    let f = Fixture::new();
    f.model_files("m", &[1, 2], 1);
    let lines: String = (0..23)
        .map(|i| format!("[[model]]\nlogits = \"m.npy\"\nname = \"m{i}\"\n"))
        .collect();
    fs::write(f.path("all.toml"), lines).unwrap();
    ok(&["append", f.idx(), "--manifest", s(&f.path("all.toml"))]);
    let human = ok(&["info", f.idx()]);
    let listed: Vec<&str> = human
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|name| name.starts_with('m') && name[1..].parse::<u32>().is_ok())
        .collect();
    assert_eq!(listed.len(), 20, "{human}");
    assert_eq!(listed[19], "m19");
    assert!(human.trim_end().ends_with("... 3 more"), "{human}");
    assert_eq!(model_info(f.idx())["models"].as_array().unwrap().len(), 23);
}

#[test]
fn verify_detects_a_flipped_descriptor_byte() {
    let f = Fixture::new();
    let created_len = fs::metadata(&f.index).unwrap().len();
    f.append("alpha", &[1, 2, 3], 1);
    let out = ok(&["verify", f.idx()]);
    assert!(out.contains("OK"), "{out}");
    let report = ok_json(&["verify", f.idx()]);
    assert_eq!(report["ok"], true);
    assert!(report["problems"].as_array().unwrap().is_empty());

    // The appended segment starts with its descriptor section at the next 64-byte boundary.
    let at = created_len.next_multiple_of(64) as usize + 100;
    let mut bytes = fs::read(&f.index).unwrap();
    bytes[at] ^= 0x01;
    fs::write(&f.index, &bytes).unwrap();
    let out = run(&["verify", f.idx()]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("segment 1 descriptors: checksum mismatch"),
        "{stdout}"
    );
    assert!(
        stderr.starts_with("error: ") && stderr.contains("descriptors"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let out = run(&["verify", f.idx(), "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["problems"][0]["section"], "segment 1 descriptors");
}

#[test]
fn compact_keeps_search_results() {
    let f = Fixture::new().with_models();
    let queries: [&[&str]; 3] = [
        &["--entry", "0", "--top", "12"],
        &["--entry", "6", "--per-model", "--exclude-same-model"],
        &["--entry", "9", "--metric", "model"],
    ];
    let search = |q: &[&str]| {
        let mut args = vec!["search", f.idx()];
        args.extend_from_slice(q);
        ok_json(&args)["results"].clone()
    };
    let before: Vec<Value> = queries.iter().map(|q| search(q)).collect();
    let r = ok_json(&["compact", f.idx()]);
    assert_eq!(r["segments_before"], 4);
    assert_eq!(r["segments_after"], 1);
    assert_eq!(r["entry_count"], 12);
    assert!(r["bytes_after"].as_u64().unwrap() < r["bytes_before"].as_u64().unwrap());
    let after: Vec<Value> = queries.iter().map(|q| search(q)).collect();
    assert_eq!(before, after);
    assert_eq!(model_info(f.idx())["segment_count"], 1);
    ok(&["verify", f.idx()]);
    let human = ok(&["compact", f.idx()]);
    assert!(human.contains("1 segments -> 1"), "{human}");
}

#[test]
fn export_writes_normalized_rows_and_a_sidecar() {
    let f = Fixture::new();
    let mut inputs = Vec::new();
    for (name, concepts, seed) in [("alpha", &[1usize, 2, 3][..], 1), ("beta", &[4, 5][..], 2)] {
        let logits = f.append(name, concepts, seed);
        for j in 0..concepts.len() {
            inputs.push(znorm(&column(&logits, concepts.len(), j)));
        }
    }
    let out = f.path("export/desc.npy");
    fs::create_dir(f.path("export")).unwrap();
    ok(&["export", f.idx(), "--out", s(&out)]);
    let a = Array2::<f32>::read_npy(fs::File::open(&out).unwrap()).unwrap();
    assert_eq!(a.shape(), &[5, P]);
    for (i, want) in inputs.iter().enumerate() {
        for (p, &w) in want.iter().enumerate() {
            assert!(
                (a[[i, p]] - w).abs() < 1e-5,
                "entry {i}, probe {p}: {} vs {w}",
                a[[i, p]]
            );
        }
    }
    let sidecar: Value =
        serde_json::from_str(&fs::read_to_string(f.path("export/desc.json")).unwrap()).unwrap();
    assert_eq!(sidecar["probe_set"]["num_probes"], P as u64);
    let entries = sidecar["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 5);
    assert_eq!(entries[3]["entry"], 3);
    assert_eq!(entries[3]["model_id"], 1);
    assert_eq!(entries[3]["model"], "beta");
    assert_eq!(entries[3]["logit"], 0);
    assert_eq!(entries[3]["label"], "concept-4");
    let models = sidecar["models"].as_array().unwrap();
    assert_eq!(models[1]["name"], "beta");
    assert_eq!(models[1]["first_entry"], 3);
    assert_eq!(models[1]["logits"], 2);
    assert_eq!(models[1]["source"], "test");
    assert_eq!(models[1]["meta"]["seed"], "1");
    let leftovers: Vec<_> = fs::read_dir(f.path("export"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    let e = fails(&["export", f.idx(), "--out", s(&f.path("x.json"))]);
    assert!(e.contains(".json"), "{e}");
    let e = fails(&["export", f.idx(), "--out", s(&f.path("no/such/dir/x.npy"))]);
    assert!(e.contains("no/such/dir"), "{e}");
}

#[test]
fn truncated_or_foreign_index_is_a_clear_error() {
    let f = Fixture::new().with_models();
    let bytes = fs::read(&f.index).unwrap();
    fs::write(&f.index, &bytes[..bytes.len() - 300]).unwrap();
    for args in [
        &["search", f.idx(), "--entry", "0"][..],
        &["info", f.idx()],
        &["verify", f.idx()],
        &["export", f.idx(), "--out", s(&f.path("x.npy"))],
    ] {
        let e = fails(args);
        assert!(
            e.contains("truncated") && e.contains("hub.plog"),
            "{args:?}: {e}"
        );
    }
    fs::write(&f.index, &bytes[..100]).unwrap();
    let e = fails(&["info", f.idx()]);
    assert!(e.contains("truncated"), "{e}");
    fs::write(
        &f.index,
        b"just some text, long enough to not be a header at all",
    )
    .unwrap();
    let e = fails(&["info", f.idx()]);
    assert!(e.contains("not a probelog index"), "{e}");
    let e = fails(&["info", s(&f.path("missing.plog"))]);
    assert!(
        e.contains("missing.plog") && e.contains("No such file"),
        "{e}"
    );
}

#[test]
fn demo_builds_an_index_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let index = dir.path().join("demo.plog");
    let out = ok(&[
        "demo",
        s(&index),
        "--models",
        "40",
        "--probes",
        "256",
        "--seed",
        "3",
    ]);
    assert!(out.contains("40 synthetic models"), "{out}");
    assert!(out.contains("share the query's label concept-"), "{out}");
    let info = model_info(s(&index));
    assert_eq!(info["model_count"], 40);
    assert_eq!(info["num_probes"], 256);
    let r = ok_json(&[
        "search",
        s(&index),
        "--entry",
        "0",
        "--exclude-same-model",
        "--per-model",
        "--top",
        "3",
    ]);
    let label = r["query"]["label"].as_str().unwrap();
    assert!(label.starts_with("concept-"));
    assert_eq!(r["results"][0]["label"], label, "{r}");
    let e = fails(&["demo", s(&index)]);
    assert!(e.contains("exists already"), "{e}");
    ok(&["verify", s(&index)]);
}

#[test]
fn usage_errors_exit_with_2() {
    for args in [
        &["search"][..],
        &["search", "x.plog"],
        &[
            "search",
            "x.plog",
            "--entry",
            "1",
            "--text-embedding",
            "t.npy",
        ],
        &["search", "x.plog", "--entry", "1", "--top", "0"],
        &["search", "x.plog", "--entry", "1", "--metric", "cosine"],
        &["search", "x.plog", "--entry", "1", "--blend-weight=-1"],
        &["search", "x.plog", "--entry", "1", "--blend-weight", "nan"],
        &["search", "x.plog", "--entry", "1", "--blend-weight", "inf"],
        &["search", "x.plog", "--entry", "1", "--blend-weight", "two"],
        &["append", "x.plog"],
        &["append", "x.plog", "--logits", "a.npy"],
        &["append", "x.plog", "--manifest", "m.toml", "--name", "n"],
        &[
            "append", "x.plog", "--logits", "a.npy", "--name", "n", "--meta", "novalue",
        ],
        &["create", "x.plog"],
        &["create", "x.plog", "--num-probes", "0"],
        &["create", "x.plog", "--num-probes", "4", "--dtype", "f64"],
        &["demo", "x.plog", "--models", "1"],
        &["frobnicate"],
    ] {
        let out = run(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(run(&["--help"]).status.success());
    assert!(run(&["--version"]).status.success());
}
