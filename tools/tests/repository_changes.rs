//! A repository that changes, tried from the command line as a new user would: delete two models
//! and replace one in a 10-model index; no search returns the deleted ones before or after
//! compaction, which reclaims their bytes; `--where` returns only matching models with a full
//! top N; `--explain` names the probes.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use common::{fails, ok, ok_json, s};
use ndarray::Array2;
use serde_json::Value;

const PROBES: usize = 16;

/// Logits `[P, 3]` of model `m`: each logit fires on its own two probes.
fn logits(m: usize, shift: f32) -> Array2<f32> {
    Array2::from_shape_fn((PROBES, 3), |(p, j)| {
        let hot = (m * 3 + j) % PROBES;
        if p == hot || p == (hot + 5) % PROBES {
            4.0 + shift
        } else {
            ((p * 7 + j * 3 + m) % 5) as f32 * 0.1
        }
    })
}

struct Hub {
    dir: tempfile::TempDir,
}

impl Hub {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn idx(&self) -> String {
        s(&self.path("hub.plog")).to_string()
    }

    /// Ten models (m0..m9) with `family` a/b and `license` mit/gpl, appended from a manifest.
    fn new() -> Self {
        let hub = Hub {
            dir: tempfile::tempdir().unwrap(),
        };
        let names: String = (0..PROBES).map(|p| format!("probe-{p}\n")).collect();
        fs::write(hub.path("probes.txt"), names).unwrap();
        ok(&[
            "create",
            &hub.idx(),
            "--num-probes",
            &PROBES.to_string(),
            "--probe-names",
            s(&hub.path("probes.txt")),
        ]);
        let mut manifest = String::new();
        for m in 0..10 {
            ndarray_npy::write_npy(hub.path(&format!("m{m}.npy")), &logits(m, 0.0)).unwrap();
            fs::write(hub.path(&format!("m{m}.txt")), format!("c{m}a\nc{m}b\nc{m}c\n")).unwrap();
            manifest += &format!(
                "[[model]]\nlogits = \"m{m}.npy\"\nname = \"m{m}\"\nlabels = \"m{m}.txt\"\n\
                 meta = {{ family = \"{}\", license = \"{}\" }}\n",
                if m % 2 == 0 { "a" } else { "b" },
                if m < 5 { "mit" } else { "gpl" }
            );
        }
        fs::write(hub.path("models.toml"), manifest).unwrap();
        ok(&["append", &hub.idx(), "--manifest", s(&hub.path("models.toml"))]);
        hub
    }

    fn search(&self, extra: &[&str]) -> Value {
        let idx = self.idx();
        let mut args = vec!["search", idx.as_str()];
        args.extend_from_slice(extra);
        ok_json(&args)
    }
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn models_in(r: &Value) -> BTreeSet<String> {
    r["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["model"].as_str().unwrap().to_string())
        .collect()
}

/// Every kind of search this test makes, by entry and by vector: the models they return.
fn everything_found(hub: &Hub, entry: u64, vector: &Path) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let e = entry.to_string();
    for extra in [
        vec!["--entry", &e, "--top", "100"],
        vec!["--entry", &e, "--top", "100", "--per-model"],
        vec!["--entry", &e, "--top", "100", "--metric", "model"],
        vec!["--entry", &e, "--top", "100", "--metric", "topk", "--mode", "hnsw"],
        vec!["--query-logits", s(vector), "--top", "100", "--metric", "full"],
    ] {
        found.extend(models_in(&hub.search(&extra)));
    }
    found
}

#[test]
fn delete_replace_filter_and_explain_as_a_new_user_would() {
    let hub = Hub::new();
    let vector = hub.path("query.npy");
    ndarray_npy::write_npy(&vector, &logits(4, 0.0).column(1).to_owned()).unwrap();
    let all: BTreeSet<String> = (0..10).map(|m| format!("m{m}")).collect();
    assert_eq!(everything_found(&hub, 0, &vector), all);

    // Delete two (by name and by id), and replace one with a new version.
    let before = fs::read(hub.path("hub.plog")).unwrap();
    let e = fails(&["delete", &hub.idx(), "--model", "m3", "--model", "nope"]);
    assert!(e.contains("nope") && e.contains("no live model"), "{e}");
    assert_eq!(fs::read(hub.path("hub.plog")).unwrap(), before, "a failed delete wrote");
    let r = ok_json(&["delete", &hub.idx(), "--model", "m3", "--model-id", "7"]);
    assert_eq!(r["deleted"], serde_json::json!([3, 7]));
    let e = fails(&["delete", &hub.idx(), "--model", "m3"]);
    assert!(e.contains("no live model"), "{e}");
    ndarray_npy::write_npy(hub.path("m5v2.npy"), &logits(5, 1.0)).unwrap();
    let v2 = s(&hub.path("m5v2.npy")).to_string();
    let idx = hub.idx();
    let append_v2 = |extra: &'static [&'static str]| -> Vec<String> {
        let mut args: Vec<String> = [
            "append", &idx, "--logits", &v2, "--name", "m5", "--meta", "family=b", "--meta",
            "license=mit",
        ]
        .map(String::from)
        .to_vec();
        args.extend(extra.iter().map(|a| a.to_string()));
        args
    };
    let e = fails(&strs(&append_v2(&[])));
    assert!(e.contains("m5") && e.contains("--replace"), "{e}");
    ok(&strs(&append_v2(&["--replace"])));

    let info = ok_json(&["info", &hub.idx()]);
    assert_eq!((info["model_count"].as_u64(), info["deleted_models"].as_u64()), (Some(11), Some(3)));
    assert_eq!(info["deleted_entries"].as_u64(), Some(9));
    let live: BTreeSet<String> = all.iter().filter(|m| *m != "m3" && *m != "m7").cloned().collect();
    assert_eq!(everything_found(&hub, 0, &vector), live);
    // An entry of a deleted model is no query.
    let e = fails(&["search", &hub.idx(), "--entry", "9"]);
    assert!(e.contains("deleted"), "{e}");

    // Filters: only matching models, and a full top N whenever N matching logits exist.
    let r = hub.search(&["--entry", "0", "--top", "9", "--where", "family=a", "--where", "license!=gpl"]);
    assert_eq!(models_in(&r), ["m0", "m2", "m4"].map(String::from).into());
    assert_eq!(r["results"].as_array().unwrap().len(), 9);
    assert_eq!(r["filter"], serde_json::json!(["family=a", "license!=gpl"]));
    let r = hub.search(&["--entry", "0", "--top", "6", "--model-name", "m?", "--where", "license=mit", "--per-model"]);
    // m5 is mit now (its new version), m3 is deleted.
    assert_eq!(models_in(&r), ["m0", "m1", "m2", "m4", "m5"].map(String::from).into());
    let r = hub.search(&["--entry", "0", "--top", "5", "--where", "family=none"]);
    assert!(r["results"].as_array().unwrap().is_empty());
    let e = fails(&["search", &hub.idx(), "--entry", "0", "--where", "nokey"]);
    assert!(e.contains("KEY=VALUE"), "{e}");

    // Explanations name the probes, in text and JSON.
    let r = hub.search(&["--entry", "0", "--top", "2", "--metric", "topk", "--k", "2", "--explain", "2"]);
    let first = &r["results"][0];
    let why = first["explain"].as_array().unwrap();
    assert_eq!(why.len(), 2);
    let named: BTreeSet<&str> = why.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert!(named.iter().all(|n| n.starts_with("probe-")), "{named:?}");
    let text = ok(&["search", &hub.idx(), "--entry", "0", "--top", "1", "--explain", "3"]);
    assert!(text.contains("the probes that decided its score") && text.contains("probe-"), "{text}");

    // Compaction drops the deleted models' bytes; nothing deleted comes back.
    let size = fs::metadata(hub.path("hub.plog")).unwrap().len();
    let r = ok_json(&["compact", &hub.idx()]);
    assert_eq!((r["model_count"].as_u64(), r["entry_count"].as_u64()), (Some(8), Some(24)));
    assert!(r["bytes_after"].as_u64().unwrap() < size);
    let info = ok_json(&["info", &hub.idx()]);
    assert_eq!(info["deleted_models"].as_u64(), Some(0));
    assert_eq!(everything_found(&hub, 0, &vector), live);
    ok(&["verify", &hub.idx()]);
    // Export writes the live entries only.
    ok(&["export", &hub.idx(), "--out", s(&hub.path("d.npy"))]);
    let d: Array2<f32> = ndarray_npy::read_npy(hub.path("d.npy")).unwrap();
    assert_eq!(d.dim(), (24, PROBES));
}

#[test]
fn export_before_compaction_leaves_deleted_models_out() {
    let hub = Hub::new();
    ok(&["delete", &hub.idx(), "--model", "m0", "--model", "m9"]);
    ok(&["export", &hub.idx(), "--out", s(&hub.path("d.npy"))]);
    let d: Array2<f32> = ndarray_npy::read_npy(hub.path("d.npy")).unwrap();
    assert_eq!(d.dim(), (24, PROBES));
    let side: Value = serde_json::from_str(&fs::read_to_string(hub.path("d.json")).unwrap()).unwrap();
    let entries = side["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 24);
    assert_eq!(entries[0]["entry"].as_u64(), Some(3), "row 0 is entry 3 (m1's first)");
    assert!(entries.iter().all(|e| e["model"] != "m0" && e["model"] != "m9"));
}
