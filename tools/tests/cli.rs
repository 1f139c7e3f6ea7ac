//! End-to-end tests of the `probelog-tool` binary: real processes, real files.

mod common;
use common::*;

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use ndarray::{Array1, Array2};
use ndarray_npy::{ReadNpyExt, WriteNpyExt};
use probelog::{IndexWriter, LockWait};
use serde_json::Value;
use tempfile::TempDir;

/// Probes of the test indexes.
const P: usize = 50;

/// A small deterministic noise source.
struct Noise(u64);

impl Noise {
    /// Uniform in [-0.5, 0.5).
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    }
}

/// Raw logits `[P, concepts.len()]`: concept `c` fires on the probes `p` with `p % 10 == c`.
fn concept_logits(concepts: &[usize], seed: u64) -> Vec<f32> {
    let mut noise = Noise(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let (scale, shift) = (1.0 + (seed % 3) as f32, seed as f32 - 2.0);
    let l = concepts.len();
    let mut v = vec![0f32; P * l];
    for p in 0..P {
        for (j, &c) in concepts.iter().enumerate() {
            let fired = if p % 10 == c { 3.0 } else { 0.0 };
            v[p * l + j] = (fired + 0.6 * noise.next()) * scale + shift;
        }
    }
    v
}

fn write_npy(path: &Path, data: &[f32], rows: usize, cols: usize) {
    let a = Array2::from_shape_vec((rows, cols), data.to_vec()).unwrap();
    a.write_npy(fs::File::create(path).unwrap()).unwrap();
}

fn write_npy_1d(path: &Path, data: &[f32]) {
    Array1::from_vec(data.to_vec())
        .write_npy(fs::File::create(path).unwrap())
        .unwrap();
}

/// Z-normalizes one column over the probes, as the index stores it.
fn znorm(v: &[f32]) -> Vec<f32> {
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    let std = (v
        .iter()
        .map(|&x| (f64::from(x) - mean).powi(2))
        .sum::<f64>()
        / n)
        .sqrt();
    v.iter()
        .map(|&x| ((f64::from(x) - mean) / std) as f32)
        .collect()
}

fn column(data: &[f32], cols: usize, j: usize) -> Vec<f32> {
    data.iter().skip(j).step_by(cols).copied().collect()
}

/// The concepts of the six models of [`Fixture::six_model_manifest`].
const SIX_MODELS: [&[usize]; 6] = [
    &[1, 2, 3],
    &[2, 4, 1],
    &[5, 1, 6],
    &[3, 7, 8],
    &[9, 0, 2],
    &[4, 6, 1],
];

struct Fixture {
    dir: TempDir,
    index: PathBuf,
}

impl Fixture {
    /// An empty index of `P` probes.
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let index = dir.path().join("hub.plog");
        ok(&["create", s(&index), "--num-probes", &P.to_string()]);
        Fixture { dir, index }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn idx(&self) -> &str {
        s(&self.index)
    }

    /// Writes `<name>.npy` and `<name>.labels` for a model detecting `concepts`.
    fn model_files(
        &self,
        name: &str,
        concepts: &[usize],
        seed: u64,
    ) -> (PathBuf, PathBuf, Vec<f32>) {
        let logits = concept_logits(concepts, seed);
        let npy = self.path(&format!("{name}.npy"));
        write_npy(&npy, &logits, P, concepts.len());
        let labels = self.path(&format!("{name}.labels"));
        let text: Vec<String> = concepts.iter().map(|c| format!("concept-{c}\n")).collect();
        fs::write(&labels, text.concat()).unwrap();
        (npy, labels, logits)
    }

    /// `m.toml`, a manifest of six models (`m0` to `m5`, concepts [`SIX_MODELS`], seeds 1 to 6);
    /// returns its path and each model's raw logits.
    fn six_model_manifest(&self) -> (PathBuf, Vec<Vec<f32>>) {
        let mut manifest = String::new();
        let mut raw = Vec::new();
        for (i, c) in SIX_MODELS.iter().enumerate() {
            raw.push(self.model_files(&format!("m{i}"), c, i as u64 + 1).2);
            manifest.push_str(&format!(
                "[[model]]\nlogits = \"m{i}.npy\"\nlabels = \"m{i}.labels\"\n\n"
            ));
        }
        let path = self.path("m.toml");
        fs::write(&path, manifest).unwrap();
        (path, raw)
    }

    /// Appends one model with labels; returns its raw logits.
    fn append(&self, name: &str, concepts: &[usize], seed: u64) -> Vec<f32> {
        let (npy, labels, logits) = self.model_files(name, concepts, seed);
        ok(&[
            "append",
            self.idx(),
            "--logits",
            s(&npy),
            "--name",
            name,
            "--labels",
            s(&labels),
            "--source",
            "test",
            "--meta",
            "seed=1",
        ]);
        logits
    }

    /// Three models sharing concepts 1 and 2.
    fn with_models(self) -> Self {
        self.append("alpha", &[1, 2, 3, 4], 1);
        self.append("beta", &[2, 5, 1], 2);
        self.append("gamma", &[6, 1, 7, 2, 8], 3);
        self
    }
}

fn model_info(index: &str) -> Value {
    ok_json(&["info", index])
}

#[test]
fn create_append_search_end_to_end() {
    let f = Fixture::new();
    let (npy, labels, _) = f.model_files("alpha", &[1, 2, 3], 1);
    let summary = ok_json(&[
        "append",
        f.idx(),
        "--logits",
        s(&npy),
        "--name",
        "alpha",
        "--labels",
        s(&labels),
    ]);
    assert_eq!(summary["models_added"], 1);
    assert_eq!(summary["entries_added"], 3);
    assert_eq!(summary["sequence"], 2);
    let line = ok(&[
        "append",
        f.idx(),
        "--logits",
        s(&npy),
        "--name",
        "alpha-again",
    ]);
    assert!(
        line.contains("appended 1 model (3 entries)") && line.contains("commit 3"),
        "{line}"
    );

    let r = ok_json(&["search", f.idx(), "--entry", "1", "--top", "4"]);
    assert_eq!(r["query"]["kind"], "entry");
    assert_eq!(r["query"]["entry"], 1);
    assert_eq!(r["query"]["model"], "alpha");
    assert_eq!(r["query"]["label"], "concept-2");
    // The default metric is the blend, with the default k and weight.
    assert_eq!(r["metric"], "blend");
    assert_eq!(r["k"], probelog::DEFAULT_K.min(P) as u64);
    assert_eq!(
        r["blend_weight"].as_f64(),
        Some(f64::from(probelog::DEFAULT_BLEND_WEIGHT))
    );
    let results = r["results"].as_array().unwrap();
    assert_eq!(results.len(), 4);
    let first = &results[0];
    for key in ["rank", "entry", "model", "logit", "label", "score"] {
        assert!(first.get(key).is_some(), "result lacks {key}: {first}");
    }
    assert_eq!(first["rank"], 1);
    assert_eq!(first["entry"], 1);
    assert_eq!(first["logit"], 1);
    assert!(first["score"].as_f64().unwrap().abs() < 1e-6);
    // The same logits appended again are the runner-up, without a label.
    assert_eq!(results[1]["entry"], 4);
    assert_eq!(results[1]["model"], "alpha-again");
    assert!(results[1]["label"].is_null());
    let scores: Vec<f64> = results
        .iter()
        .map(|h| h["score"].as_f64().unwrap())
        .collect();
    assert!(scores.windows(2).all(|w| w[0] <= w[1]), "{scores:?}");

    let r = ok_json(&["search", f.idx(), "--entry", "1", "--top", "4000000000"]);
    assert_eq!(
        r["results"].as_array().unwrap().len(),
        6,
        "every entry, and no huge allocation"
    );
    let r = ok_json(&["search", f.idx(), "--entry", "1", "--k", "7"]);
    assert_eq!(r["k"], 7);
    let r = ok_json(&[
        "search",
        f.idx(),
        "--entry",
        "1",
        "--metric",
        "topk",
        "--k",
        "7",
    ]);
    assert_eq!(
        (&r["metric"], &r["k"]),
        (&Value::from("topk"), &Value::from(7))
    );
    assert!(r["blend_weight"].is_null());
    let human = ok(&["search", f.idx(), "--entry", "1", "--top", "2"]);
    let header = human.lines().find(|l| l.starts_with("rank")).unwrap();
    for col in ["rank", "entry", "model", "logit", "label", "score"] {
        assert!(header.contains(col), "{human}");
    }
    assert!(human.contains("concept-2"), "{human}");
}

#[test]
fn query_logits_accept_vector_shapes() {
    let f = Fixture::new().with_models();
    let beta = concept_logits(&[2, 5, 1], 2);
    let col = column(&beta, 3, 1); // beta's logit 1, entry 5
    let shapes: [(&str, Option<(usize, usize)>); 3] =
        [("flat", None), ("col", Some((P, 1))), ("row", Some((1, P)))];
    for (name, shape) in shapes {
        let path = f.path(&format!("q-{name}.npy"));
        match shape {
            None => write_npy_1d(&path, &col),
            Some((r, c)) => write_npy(&path, &col, r, c),
        }
        let r = ok_json(&["search", f.idx(), "--query-logits", s(&path), "--top", "1"]);
        assert_eq!(r["query"]["kind"], "logits");
        assert_eq!(r["results"][0]["entry"], 5, "{name}: {r}");
        assert!(r["results"][0]["score"].as_f64().unwrap() < 1e-5);
    }
    let bad = f.path("q-bad.npy");
    write_npy(&bad, &[0.0; 2 * P], 2, P);
    let e = fails(&["search", f.idx(), "--query-logits", s(&bad)]);
    assert!(
        e.contains("must be a vector") && e.contains("[2, 50]"),
        "{e}"
    );
}

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
    fs::write(
        &manifest,
        "[[model]]\nlogits = \"good.npy\"\n\n[[model]]\nlogits = \"bad.npy\"\nname = \"broken\"\n",
    )
    .unwrap();
    let e = fails(&["append", f.idx(), "--manifest", s(&manifest)]);
    assert!(
        e.contains("\"broken\"") && e.contains("nothing was committed"),
        "{e}"
    );
    assert!(e.contains("logit 1") && e.contains("NaN"), "{e}");
    let after = model_info(f.idx());
    assert_eq!(after["sequence"], before["sequence"]);
    assert_eq!(after["model_count"], 3);
    assert_eq!(after["entry_count"], before["entry_count"]);

    fs::write(
        &manifest,
        "[[model]]\nlogits = \"good.npy\"\nmeta = { n = 3 }\n",
    )
    .unwrap();
    let e = fails(&["append", f.idx(), "--manifest", s(&manifest)]);
    assert!(e.contains("must be a string"), "{e}");
    fs::write(
        &manifest,
        "[[model]]\nlogits = \"good.npy\"\ncolour = \"red\"\n",
    )
    .unwrap();
    let e = fails(&["append", f.idx(), "--manifest", s(&manifest)]);
    assert!(e.contains("line 3") && e.contains("colour"), "{e}");
    fs::write(&manifest, "# nothing\n").unwrap();
    let e = fails(&["append", f.idx(), "--manifest", s(&manifest)]);
    assert!(e.contains("no models"), "{e}");
}

#[test]
fn per_model_and_exclude_same_model() {
    let f = Fixture::new().with_models();
    // alpha's logit 0 detects concept 1, which beta and gamma detect too.
    let r = ok_json(&[
        "search",
        f.idx(),
        "--entry",
        "0",
        "--exclude-same-model",
        "--per-model",
        "--top",
        "5",
    ]);
    let results = r["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "one hit per other model: {r}");
    let models: Vec<&str> = results
        .iter()
        .map(|h| h["model"].as_str().unwrap())
        .collect();
    assert!(
        models.contains(&"beta") && models.contains(&"gamma"),
        "{models:?}"
    );
    for h in results {
        assert_eq!(h["label"], "concept-1", "{r}");
    }
    assert_eq!(r["per_model"], true);
    assert_eq!(r["exclude_same_model"], true);

    let r = ok_json(&[
        "search",
        f.idx(),
        "--entry",
        "0",
        "--per-model",
        "--top",
        "10",
    ]);
    let ids: Vec<u64> = r["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["model_id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids.len(), 3, "{r}");
    assert_eq!(
        ids[0], 0,
        "the query's own model ranks first when not excluded"
    );

    let out = run(&[
        "search",
        f.idx(),
        "--query-logits",
        "q.npy",
        "--exclude-same-model",
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "excluding the model needs an entry query"
    );
}

#[test]
fn metrics_full_and_model() {
    let f = Fixture::new().with_models();
    let r = ok_json(&[
        "search",
        f.idx(),
        "--entry",
        "0",
        "--metric",
        "full",
        "--top",
        "3",
    ]);
    assert_eq!(r["metric"], "full");
    assert!(r["k"].is_null());
    assert_eq!(r["results"][0]["entry"], 0);
    assert!(r["results"][1]["entry"].is_u64());

    let r = ok_json(&["search", f.idx(), "--entry", "0", "--metric", "model"]);
    assert_eq!(r["metric"], "model");
    let results = r["results"].as_array().unwrap();
    assert_eq!(results.len(), 3, "one result per model");
    for h in results {
        assert!(h["entry"].is_null() && h["logit"].is_null(), "{h}");
        assert!(h["model"].is_string());
    }
    let human = ok(&["search", f.idx(), "--entry", "0", "--metric", "model"]);
    assert!(human.contains("metric model"), "{human}");

    let e = fails(&[
        "search",
        f.idx(),
        "--entry",
        "0",
        "--metric",
        "full",
        "--k",
        "5",
    ]);
    assert!(e.contains("--k"), "{e}");
    let e = fails(&["search", f.idx(), "--entry", "0", "--k", "51"]);
    assert!(e.contains("51") && e.contains("50"), "{e}");
    // Weight 0 ranks and scores as the paper's top-k; a weight shows in the output.
    let zero = ok_json(&["search", f.idx(), "--entry", "0", "--blend-weight", "0"]);
    let topk = ok_json(&["search", f.idx(), "--entry", "0", "--metric", "topk"]);
    assert_eq!(zero["results"], topk["results"]);
    assert_eq!(zero["blend_weight"].as_f64(), Some(0.0));
    let human = ok(&["search", f.idx(), "--entry", "0", "--blend-weight", "0.5"]);
    assert!(
        human.contains("metric blend (k = 16, weight 0.5)"),
        "{human}"
    );
    let e = fails(&[
        "search",
        f.idx(),
        "--entry",
        "0",
        "--metric",
        "topk",
        "--blend-weight",
        "1",
    ]);
    assert!(
        e.contains("--blend-weight only applies to --metric blend"),
        "{e}"
    );
    let e = fails(&["search", f.idx(), "--entry", "999"]);
    assert!(e.contains("entry 999 does not exist"), "{e}");
}

#[test]
fn wrong_probe_count_names_both_counts() {
    let f = Fixture::new();
    let path = f.path("short.npy");
    write_npy(&path, &vec![1.0; 47 * 2], 47, 2);
    let e = fails(&["append", f.idx(), "--logits", s(&path), "--name", "short"]);
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
    let e = fails(&["append", f.idx(), "--logits", s(&path), "--name", "t"]);
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
    let e = fails(&["append", f.idx(), "--logits", s(&path), "--name", "nanny"]);
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
    let e = fails(&["append", f.idx(), "--logits", s(&path), "--name", "flat"]);
    assert!(
        e.contains("flat") && e.contains("logit 1") && e.contains("--keep-constant"),
        "{e}"
    );
    let r = ok_json(&[
        "append",
        f.idx(),
        "--logits",
        s(&path),
        "--name",
        "flat",
        "--keep-constant",
    ]);
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
    let e = fails(&[
        "append",
        f.idx(),
        "--logits",
        s(&npy),
        "--name",
        "m",
        "--labels",
        s(&labels),
    ]);
    assert!(e.contains("3 logits") && e.contains("2 labels"), "{e}");
    let missing = f.path("nope.labels");
    let e = fails(&[
        "append",
        f.idx(),
        "--logits",
        s(&npy),
        "--name",
        "m",
        "--labels",
        s(&missing),
    ]);
    assert!(e.contains("nope.labels"), "{e}");
}

#[test]
fn bad_npy_inputs_are_clear_errors() {
    let f = Fixture::new();
    let e = fails(&[
        "append",
        f.idx(),
        "--logits",
        s(&f.path("missing.npy")),
        "--name",
        "m",
    ]);
    assert!(
        e.contains("missing.npy") && e.contains("No such file"),
        "{e}"
    );
    let text = f.path("text.npy");
    fs::write(&text, "not numpy").unwrap();
    let e = fails(&["append", f.idx(), "--logits", s(&text), "--name", "m"]);
    assert!(e.contains("not a .npy file"), "{e}");
    let ints = f.path("ints.npy");
    Array2::<i64>::zeros((P, 2))
        .write_npy(fs::File::create(&ints).unwrap())
        .unwrap();
    let e = fails(&["append", f.idx(), "--logits", s(&ints), "--name", "m"]);
    assert!(e.contains("<i8") && e.contains("float32"), "{e}");
    let cut = f.path("cut.npy");
    write_npy(&cut, &concept_logits(&[1, 2], 1), P, 2);
    let bytes = fs::read(&cut).unwrap();
    fs::write(&cut, &bytes[..bytes.len() - 9]).unwrap();
    let e = fails(&["append", f.idx(), "--logits", s(&cut), "--name", "m"]);
    assert!(e.contains("truncated"), "{e}");
    let vec = f.path("vec.npy");
    write_npy_1d(&vec, &[1.0; P]);
    let e = fails(&["append", f.idx(), "--logits", s(&vec), "--name", "m"]);
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
    let r = ok_json(&["append", f.idx(), "--logits", s(&f64s), "--name", "double"]);
    assert_eq!(r["entries_added"], 2);
}

/// Probe embeddings where the probes of concept 1 all point along axis 0 and the others along
/// axes 1..8; a text embedding along axis 0 then selects exactly the probes of concept 1.
fn concept_embeddings() -> Vec<f32> {
    const D: usize = 8;
    let mut e = vec![0f32; P * D];
    for p in 0..P {
        let axis = if p % 10 == 1 { 0 } else { 1 + p % 7 };
        e[p * D + axis] = 1.0;
    }
    e
}

#[test]
fn text_embedding_search() {
    let dir = tempfile::tempdir().unwrap();
    let index = dir.path().join("emb.plog");
    let emb = dir.path().join("emb.npy");
    write_npy(&emb, &concept_embeddings(), P, 8);
    let out = ok(&[
        "create",
        s(&index),
        "--num-probes",
        &P.to_string(),
        "--probe-embeddings",
        s(&emb),
    ]);
    assert!(out.contains("probe embeddings (dim 8)"), "{out}");
    let f = Fixture { dir, index };
    f.append("a", &[3, 4, 5], 1);
    f.append("b", &[6, 1, 7], 2); // entry 4 detects concept 1
    let text = f.path("text.npy");
    write_npy_1d(&text, &[1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    let r = ok_json(&[
        "search",
        f.idx(),
        "--text-embedding",
        s(&text),
        "--top",
        "2",
    ]);
    assert_eq!(r["query"]["kind"], "text_embedding");
    assert_eq!(r["query"]["dim"], 8);
    assert_eq!(r["results"][0]["entry"], 4, "{r}");
    assert_eq!(r["results"][0]["label"], "concept-1");
    let info = model_info(f.idx());
    assert_eq!(info["probe_embedding_dim"], 8);

    let short = f.path("short.npy");
    write_npy_1d(&short, &[1.0, 0.0, 0.0]);
    let e = fails(&["search", f.idx(), "--text-embedding", s(&short)]);
    assert!(e.contains("3 dimensions") && e.contains("8"), "{e}");

    let plain = Fixture::new().with_models();
    let e = fails(&["search", plain.idx(), "--text-embedding", s(&text)]);
    assert!(e.contains("no probe embeddings"), "{e}");
}

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
    let e = fails(&[
        "append",
        f.idx(),
        "--logits",
        s(&npy),
        "--name",
        "m",
        "--probe-fingerprint",
        &given,
    ]);
    assert!(e.contains("probe set mismatch"), "{e}");
    ok(&[
        "append",
        f.idx(),
        "--logits",
        s(&npy),
        "--name",
        "m",
        "--probe-fingerprint",
        &fingerprint,
    ]);
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
fn no_wait_fails_while_another_writer_holds_the_lock() {
    let f = Fixture::new();
    let (npy, _, _) = f.model_files("m", &[1, 2], 1);
    let held = IndexWriter::open(&f.index, LockWait::Fail).unwrap();
    let e = fails(&[
        "append",
        f.idx(),
        "--logits",
        s(&npy),
        "--name",
        "m",
        "--no-wait",
    ]);
    assert!(e.contains("locked"), "{e}");
    let e = fails(&["compact", f.idx(), "--no-wait"]);
    assert!(e.contains("locked"), "{e}");
    drop(held);
    ok(&[
        "append",
        f.idx(),
        "--logits",
        s(&npy),
        "--name",
        "m",
        "--no-wait",
    ]);
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

#[test]
fn probe_fraction_completes_models_from_stored_factors() {
    let f = Fixture::new();
    let m = f.six_model_manifest().0;
    let args = [
        "append",
        f.idx(),
        "--manifest",
        s(&m),
        "--probe-fraction",
        "0.5",
        "--seed",
        "3",
    ];
    // The default rank (32) needs more logits than these 18 to fit factors.
    let e = fails(&args);
    assert!(e.contains("at least 32 logits"), "{e}");
    assert_eq!(
        model_info(f.idx())["model_count"],
        0,
        "nothing was committed"
    );
    let r = ok_json(&[&args[..], &["--rank", "6"]].concat());
    assert_eq!(r["models_added"], 6);
    let info = model_info(f.idx());
    assert_eq!(info["probe_factors"]["rank"], 6);
    for m in info["models"].as_array().unwrap() {
        assert_eq!(m["observed_probes"], (P / 2) as u64);
    }
    // A concept-1 logit finds another model's concept-1 logit first.
    let r = ok_json(&[
        "search",
        f.idx(),
        "--entry",
        "2",
        "--exclude-same-model",
        "--per-model",
    ]);
    assert_eq!(r["query"]["label"], "concept-3");
    assert_eq!(r["results"][0]["label"], "concept-3");
    // A later append folds in with the stored factors (its --rank is not used).
    let (npy, labels, _) = f.model_files("late", &[1, 3], 9);
    let r = ok_json(&[
        "append",
        f.idx(),
        "--logits",
        s(&npy),
        "--name",
        "late",
        "--labels",
        s(&labels),
        "--probe-fraction",
        "0.4",
        "--rank",
        "2",
    ]);
    assert_eq!(r["models_added"], 1);
    let info = model_info(f.idx());
    assert_eq!(info["probe_factors"]["rank"], 6);
    assert_eq!(info["models"][6]["observed_probes"], 20);
    ok(&["verify", f.idx()]);
    // Refitting the factors at compaction takes the new rank and keeps every model.
    let r = ok_json(&["compact", f.idx(), "--refactorize", "--rank", "4"]);
    assert_eq!(r["model_count"], 7);
    let info = model_info(f.idx());
    assert_eq!(info["probe_factors"]["rank"], 4);
    assert_eq!(info["models"][6]["observed_probes"], 20);
    ok(&["verify", f.idx()]);
    let e = fails(&[
        "append",
        f.idx(),
        "--logits",
        s(&npy),
        "--name",
        "x",
        "--probe-fraction",
        "0",
    ]);
    assert!(e.contains("fraction"), "{e}");
}

#[test]
fn adaptive_round_runs_the_probes_the_first_rounds_completion_ranks_highest() {
    use probelog::collab::{
        CollabOptions, Observations, ProbeFactors, adaptive_probes, adaptive_split,
        sample_probe_count, sample_probes,
    };
    let f = Fixture::new();
    let (m, raw) = f.six_model_manifest();
    let append = |index: &str, share: &str| {
        ok(&["create", index, "--num-probes", &P.to_string()]);
        ok_json(&[
            "append",
            index,
            "--manifest",
            s(&m),
            "--probe-fraction",
            "0.5",
            "--seed",
            "3",
            "--rank",
            "6",
            "--adaptive-share",
            share,
        ])
    };
    // Round 1 as the command runs it: each model's random 6 of the 25 probes, factors fitted
    // on those; round 2 takes the 19 probes its completion ranks highest.
    let (random, adaptive) = adaptive_split(P, 0.5, 0.75).unwrap();
    assert_eq!((random, adaptive), (6, 19));
    let first: Vec<(Vec<u32>, Observations)> = raw
        .iter()
        .enumerate()
        .map(|(i, logits)| {
            let l = SIX_MODELS[i].len();
            let observed = sample_probe_count(P, random, 3 + i as u64);
            let rows: Vec<f32> = observed
                .iter()
                .flat_map(|&q| &logits[q as usize * l..(q as usize + 1) * l])
                .copied()
                .collect();
            let matrix = probelog::LogitMatrix::new(&rows, observed.len(), l).unwrap();
            let obs = Observations::from_logits("m", &matrix, &observed, P, false)
                .unwrap()
                .0;
            (observed, obs)
        })
        .collect();
    let opts = CollabOptions {
        rank: 6,
        seed: 3,
        ..CollabOptions::default()
    };
    let observations: Vec<Observations> = first.iter().map(|(_, o)| o.clone()).collect();
    let factors = ProbeFactors::fit(P, &observations, &opts).unwrap();
    let adaptive_index = f.path("adaptive.plog");
    let r = append(s(&adaptive_index), "0.75");
    assert_eq!(r["models_added"], 6);
    let index = probelog::Index::open(&adaptive_index).unwrap();
    for (i, (observed, obs)) in first.iter().enumerate() {
        let predicted = factors.impute(obs, opts.lambda).unwrap();
        let extra = adaptive_probes(&predicted, obs.logits, P, observed, adaptive).unwrap();
        let mut want = [observed.clone(), extra].concat();
        want.sort_unstable();
        let got = index.observed_probes(i as u64).unwrap().unwrap();
        assert_eq!(got, want, "model {i}");
    }
    ok(&["verify", s(&adaptive_index)]);
    // Share 0: the paper's random subsets of the whole budget.
    let random_index = f.path("random.plog");
    append(s(&random_index), "0");
    let index = probelog::Index::open(&random_index).unwrap();
    for i in 0..6 {
        assert_eq!(
            index.observed_probes(i).unwrap().unwrap(),
            sample_probes(P, 0.5, 3 + i).unwrap()
        );
    }
    for bad in ["1", "-0.5", "nan"] {
        let e = fails(&[
            "append",
            f.idx(),
            "--manifest",
            s(&m),
            "--probe-fraction",
            "0.5",
            &format!("--adaptive-share={bad}"),
        ]);
        assert!(e.contains("adaptive share"), "{bad}: {e}");
    }
}

#[test]
fn hnsw_mode_with_graphs_from_append_and_compact() {
    let f = Fixture::new().with_models();
    assert_eq!(
        model_info(f.idx())["graphs"],
        0,
        "small appends build no graph"
    );
    // Exact below the auto threshold, and hnsw mode scans segments without a graph. The graphs
    // serve the paper's top-k discrepancy, so these searches name it.
    let exact = ok_json(&[
        "search",
        f.idx(),
        "--entry",
        "6",
        "--top",
        "5",
        "--metric",
        "topk",
    ]);
    assert_eq!(exact["mode"], "exact");
    assert_eq!(exact["candidates"], Value::Null);
    let hnsw = ok_json(&[
        "search",
        f.idx(),
        "--entry",
        "6",
        "--top",
        "5",
        "--mode",
        "hnsw",
        "--metric",
        "topk",
    ]);
    assert_eq!(hnsw["mode"], "hnsw");
    assert_eq!(hnsw["candidates"], probelog::DEFAULT_CANDIDATES);
    assert_eq!(hnsw["results"], exact["results"]);

    // One graph over everything after compaction; with C >= the entries it finds the exact top.
    ok(&["compact", f.idx(), "--graph-min-entries", "2"]);
    let info = model_info(f.idx());
    assert_eq!(info["graphs"], 1);
    assert_eq!(info["graph_entries"], 12);
    assert!(ok(&["info", f.idx()]).contains("ANN graphs:       1 covering 12 of 12 entries"));
    ok(&["verify", f.idx()]);
    // hnsw mode with room for every entry: the exact top 5.
    let hnsw_all = || {
        ok_json(&[
            "search",
            f.idx(),
            "--entry",
            "6",
            "--top",
            "5",
            "--mode",
            "hnsw",
            "--candidates",
            "12",
            "--metric",
            "topk",
        ])
    };
    let hnsw = hnsw_all();
    assert_eq!(hnsw["results"], exact["results"]);
    let human = ok(&[
        "search",
        f.idx(),
        "--entry",
        "6",
        "--mode",
        "hnsw",
        "--metric",
        "topk",
    ]);
    assert!(
        human.contains(&format!(
            "hnsw candidates {} per graph",
            probelog::DEFAULT_CANDIDATES
        )),
        "{human}"
    );
    // A graph of at most 5 entries: compaction splits the 12 into three parts of 4, which find
    // the same exact top with C >= the entries.
    ok(&[
        "compact",
        f.idx(),
        "--graph-min-entries",
        "2",
        "--graph-max-entries",
        "5",
    ]);
    let info = model_info(f.idx());
    assert_eq!(
        (&info["graphs"], &info["graph_entries"]),
        (&Value::from(3), &Value::from(12))
    );
    ok(&["verify", f.idx()]);
    let parts = hnsw_all();
    assert_eq!(parts["results"], exact["results"]);
    let err = fails(&["compact", f.idx(), "--graph-max-entries", "1"]);
    assert!(err.contains("at least 2 entries"), "{err}");
    // The default metric, the blend, never runs on the graphs: auto scans, hnsw says how.
    let auto = ok_json(&["search", f.idx(), "--entry", "6", "--mode", "auto"]);
    assert_eq!(
        (&auto["metric"], &auto["mode"]),
        (&Value::from("blend"), &Value::from("exact"))
    );
    let err = fails(&["search", f.idx(), "--entry", "6", "--mode", "hnsw"]);
    assert!(
        err.contains("hnsw mode ranks by the topk metric only, not blend")
            && err.contains("--metric topk"),
        "{err}"
    );

    let err = fails(&[
        "search",
        f.idx(),
        "--entry",
        "6",
        "--mode",
        "hnsw",
        "--metric",
        "full",
    ]);
    assert!(
        err.contains("hnsw mode ranks by the topk metric only"),
        "{err}"
    );
    let out = run(&["search", f.idx(), "--entry", "6", "--candidates", "0"]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
    assert!(stderr(&out).contains("--candidates"), "{}", stderr(&out));

    // An append with a graph of its own, then compaction without graphs.
    let (npy, _, _) = f.model_files("delta", &[1, 9, 2], 4);
    ok(&[
        "append",
        f.idx(),
        "--logits",
        s(&npy),
        "--name",
        "delta",
        "--graph-min-entries",
        "2",
    ]);
    // The three parts of the compaction above, and the append's own graph.
    assert_eq!(model_info(f.idx())["graphs"], 4);
    ok(&["compact", f.idx(), "--no-graph"]);
    assert_eq!(model_info(f.idx())["graphs"], 0);
}
