//! `probelog-research eval` on a small hub whose answers are known: every concept fires on its own
//! probes, models detect random subsets of the concepts, and text embeddings point at a concept's
//! probes. Seeded; the thresholds leave room for the noise.

mod common;

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use common::{fails, ok_json, product, s, write_npy};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

const P: usize = 240;
const CONCEPTS: usize = 16;
const WIDTH: usize = 8;
const MODELS: usize = 24;
const SEED: u64 = 20;

/// Writes the hub's logits, labels and manifest into `dir`; models 0..6 are queries.
fn make_hub(dir: &Path) {
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let mut manifest = String::new();
    let mut gallery = String::new();
    for m in 0..MODELS {
        let mut concepts: Vec<usize> = (0..CONCEPTS).collect();
        concepts.shuffle(&mut rng);
        concepts.truncate(rng.random_range(3..7));
        let l = concepts.len();
        let pattern: Vec<f32> = (0..P).map(|_| rng.random_range(-1.0..1.0)).collect();
        let mut logits = vec![0f32; P * l];
        for (j, &c) in concepts.iter().enumerate() {
            for p in 0..P {
                let fires = p / WIDTH == c;
                logits[p * l + j] =
                    if fires { 5.0 } else { 0.0 } + 0.8 * pattern[p] + rng.random_range(-0.5..0.5);
            }
        }
        let name = format!("m{m:02}");
        write_npy(&dir.join(format!("{name}.npy")), &logits, P, l);
        let labels: String = concepts.iter().map(|c| format!("concept {c}\n")).collect();
        fs::write(dir.join(format!("{name}.txt")), labels).unwrap();
        let split = if m < 6 { "query" } else { "gallery" };
        let arch = if m % 2 == 0 { "a" } else { "b" };
        let table = format!(
            "[[model]]\nlogits = \"{name}.npy\"\nlabels = \"{name}.txt\"\nmeta = {{ split = \"{split}\", arch = \"{arch}\" }}\n\n"
        );
        manifest.push_str(&table);
        if m >= 6 {
            gallery.push_str(&table);
        }
    }
    fs::write(dir.join("hub.toml"), manifest).unwrap();
    fs::write(dir.join("gallery.toml"), gallery).unwrap();
    // Probe embeddings: one dimension per concept, set on the concept's probes.
    let mut emb = vec![0f32; P * CONCEPTS];
    for p in 0..P {
        if p / WIDTH < CONCEPTS {
            emb[p * CONCEPTS + p / WIDTH] = 1.0;
        }
        // A little of everything, so that no probe embedding is zero.
        for c in 0..CONCEPTS {
            emb[p * CONCEPTS + c] += 0.01 * ((p * 7 + c * 3) % 5) as f32;
        }
    }
    write_npy(&dir.join("probe-emb.npy"), &emb, P, CONCEPTS);
    // Text embeddings: concept c's query is the c-th axis (plus a concept no model detects).
    let mut text = vec![0f32; (CONCEPTS + 1) * CONCEPTS];
    let mut names = String::new();
    for c in 0..CONCEPTS {
        text[c * CONCEPTS + c] = 1.0;
        writeln!(names, "concept {c}").unwrap();
    }
    text[CONCEPTS * CONCEPTS] = 1.0;
    names.push_str("not a concept of the hub\n");
    write_npy(&dir.join("text-emb.npy"), &text, CONCEPTS + 1, CONCEPTS);
    fs::write(dir.join("concepts.txt"), names).unwrap();
}

fn build(dir: &Path) -> String {
    make_hub(dir);
    let index = dir.join("hub.plog");
    let emb = dir.join("probe-emb.npy");
    product(&[
        "create",
        s(&index),
        "--num-probes",
        &P.to_string(),
        "--probe-embeddings",
        s(&emb),
    ]);
    product(&["append", s(&index), "--manifest", s(&dir.join("hub.toml"))]);
    s(&index).to_string()
}

/// Creates an index of `P` probes at `index` and runs `append` on it with `append_args`.
fn create_and_append(index: &Path, append_args: &[&str]) {
    product(&["create", s(index), "--num-probes", &P.to_string()]);
    product(&[["append", s(index)].as_slice(), append_args].concat());
}

fn find<'a>(lines: &'a Value, setting: &str, method: &str) -> &'a Value {
    lines
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["setting"] == setting && l["method"].as_str().unwrap().starts_with(method))
        .unwrap_or_else(|| panic!("no line {setting} / {method} in {lines}"))
}

#[test]
fn eval_measures_a_hub_whose_answers_are_known() {
    let dir = tempfile::tempdir().unwrap();
    let index = build(dir.path());
    let concepts = dir.path().join("concepts.txt");
    let text = dir.path().join("text-emb.npy");
    let report = dir.path().join("report.json");
    let r = ok_json(&[
        "eval",
        &index,
        "--k",
        "8",
        "--ablations",
        "--k-sweep",
        "--ks",
        "1,8,64",
        "--probe-curve",
        "--probe-counts",
        "60,120",
        "--variants",
        "--candidate",
        "topk+all:1",
        "--variant",
        "calibrated/5:topk@16",
        "--bootstrap",
        "200",
        "--text-concepts",
        s(&concepts),
        "--text-embeddings",
        s(&text),
        "--report",
        s(&report),
    ]);
    println!("seed {SEED}: {r}");
    assert_eq!(r["query_models"], 6);
    assert_eq!(r["gallery_models"], MODELS - 6);
    assert_eq!(r["k"], 8);
    let from_file: Value = serde_json::from_str(&fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(from_file["table"], r["table"]);

    let topk = find(&r["table"], "logit->logit", "ProbeLog top-k");
    assert!(topk["top1"].as_f64().unwrap() >= 0.9, "{topk}");
    let chance = r["chance"][0]["top1"].as_f64().unwrap();
    assert!(chance < 0.2, "chance {chance}");
    let ci = topk["top1_ci"].as_array().unwrap();
    assert!(ci[0].as_f64().unwrap() <= topk["top1"].as_f64().unwrap());
    // Bottom-k compares only probes where the query does not fire.
    let bottom = find(&r["ablations"], "logit->logit", "bottom-k");
    assert!(
        bottom["top1"].as_f64().unwrap() < topk["top1"].as_f64().unwrap() - 0.3,
        "{bottom}"
    );

    // Text: 16 concepts known to the hub (the 17th is left out), each found by its own probes.
    let text_topk = find(&r["table"], "text->logit", "ProbeLog top-k");
    assert_eq!(text_topk["queries"], CONCEPTS);
    assert!(text_topk["top5"].as_f64().unwrap() >= 0.9, "{text_topk}");
    assert!(r["chance"][1]["top5"].as_f64().unwrap() < 0.5);

    // The sweep, curve and variants hold what was asked, and the top-k variant differs from
    // itself by exactly zero.
    let topk_xs = |curve: &Value| -> Vec<f64> {
        let lines = curve.as_array().unwrap().iter();
        lines
            .filter(|l| l["setting"] == "logit->logit" && l["method"] == "top-k")
            .map(|l| l["x"].as_f64().unwrap())
            .collect()
    };
    assert_eq!(topk_xs(&r["k_sweep"]), [1.0, 8.0, 64.0]);
    assert_eq!(topk_xs(&r["probe_curve"]), [60.0, 120.0, P as f64]);
    // The candidate is a line of the table and one of the variants.
    let c = find(&r["table"], "logit->logit", "candidate topk+all:1");
    assert!(c["top1"].as_f64().unwrap() >= 0.8, "{c}");
    find(&r["variants"], "logit->logit", "topk+all:1:");
    let v = find(&r["variants"], "logit->logit", "topk:");
    assert_eq!(v["vs_topk"]["top1"], 0.0);
    assert!(
        find(&r["variants"], "logit->logit", "calibrated:union")["top1"]
            .as_f64()
            .unwrap()
            >= 0.8
    );
    let extra = find(&r["variants"], "logit->logit", "calibrated/5:topk@16");
    assert!(
        extra["method"].as_str().unwrap().contains("(m=5)"),
        "{extra}"
    );
}

/// The collaborative index holds the gallery models only; the queries come from the full index.
#[test]
fn collaborative_indexes_are_compared_with_a_fixed_subset() {
    let dir = tempfile::tempdir().unwrap();
    let index = build(dir.path());
    let partial = dir.path().join("partial.plog");
    create_and_append(
        &partial,
        &[
            "--manifest",
            s(&dir.path().join("gallery.toml")),
            "--probe-fraction",
            "0.5",
            "--seed",
            "3",
            "--rank",
            "8",
        ],
    );
    let arg = format!("0.5={}", s(&partial));
    let r = ok_json(&["eval", &index, "--collab", &arg, "--subset-seeds", "2"]);
    let lines = r["collab"].as_array().unwrap();
    let settings: Vec<&str> = lines
        .iter()
        .map(|l| l["setting"].as_str().unwrap())
        .collect();
    assert!(
        settings.contains(&"collaborative, 120 probes per model"),
        "{settings:?}"
    );
    assert!(
        settings.contains(&"fixed subset, 120 probes"),
        "{settings:?}"
    );
    assert!(settings.contains(&format!("full probing, {P} probes").as_str()));
    for l in lines {
        let t = l["top1"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&t), "{l}");
        // Fixed subsets pool their outcomes over the two subset seeds.
        let pooled = if l["setting"].as_str().unwrap().starts_with("fixed") {
            2
        } else {
            1
        };
        assert_eq!(
            l["queries"].as_u64().unwrap(),
            pooled * r["logit_queries"].as_u64().unwrap()
        );
    }
    // An index missing gallery models is refused by name.
    let other = dir.path().join("other.plog");
    create_and_append(
        &other,
        &[
            "--logits",
            s(&dir.path().join("m10.npy")),
            "--name",
            "m10",
            "--labels",
            s(&dir.path().join("m10.txt")),
        ],
    );
    let e = fails(&["eval", &index, "--collab", &format!("0.5={}", s(&other))]);
    assert!(e.contains("holds 1 of the 18 gallery models"), "{e}");
}

#[test]
fn eval_restricts_to_a_family_and_refuses_what_it_cannot_measure() {
    let dir = tempfile::tempdir().unwrap();
    let index = build(dir.path());
    // No model has split=other: no queries.
    let e = fails(&["eval", &index, "--query-models", "split=other"]);
    assert!(e.contains("no split"), "{e}");
    // Text concepts without any way to embed them.
    let concepts = dir.path().join("concepts.txt");
    let e = fails(&["eval", &index, "--text-concepts", s(&concepts)]);
    assert!(e.contains("--text-embeddings"), "{e}");
    // Text embeddings of the wrong shape.
    let bad = dir.path().join("bad.npy");
    write_npy(&bad, &[0.5; 3 * CONCEPTS], 3, CONCEPTS);
    let e = fails(&[
        "eval",
        &index,
        "--text-concepts",
        s(&concepts),
        "--text-embeddings",
        s(&bad),
    ]);
    assert!(e.contains("expected [17, 16]"), "{e}");
    let r = ok_json(&["eval", &index, "--restrict", "arch=a"]);
    assert_eq!(
        (r["query_models"].as_u64(), r["gallery_models"].as_u64()),
        (Some(3), Some(9))
    );
    let e = fails(&["eval", &index, "--restrict", "arch=none"]);
    assert!(e.contains("no split"), "{e}");
    let e = fails(&["eval", &index, "--candidate", "nonsense"]);
    assert!(e.contains("--candidate"), "{e}");
    // An index without labels.
    let bare = dir.path().join("bare.plog");
    let logits = dir.path().join("m00.npy");
    create_and_append(
        &bare,
        &[
            "--logits",
            s(&logits),
            "--name",
            "x",
            "--meta",
            "split=query",
        ],
    );
    let e = fails(&["eval", s(&bare)]);
    assert!(e.contains("no label"), "{e}");
}
