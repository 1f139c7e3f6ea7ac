//! The shipped demo assets (tools/demo/, the material of `tools/demo.sh`) work: the classifiers
//! of tools/demo/models.toml appended over tools/demo/probes.pset through libtorch find each
//! other's concepts by example, and the text stand-in (tools/demo/text/) finds the concepts by
//! name.
#![cfg(feature = "torch")]

mod common;
use common::*;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;
use tempfile::TempDir;

fn asset(rel: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("demo").join(rel);
    assert!(p.is_file(), "missing demo asset {}", p.display());
    p.to_str().expect("UTF-8 path").to_string()
}

/// An index of every shipped classifier, with the probes' embeddings from the text stand-in.
fn demo_index(dir: &TempDir) -> String {
    let index = dir.path().join("hub.plog");
    let index = s(&index).to_string();
    let pset = asset("probes.pset");
    ok(&["create", &index, "--probes", &pset]);
    let appended = ok_json(&[
        "append", &index, "--manifest", &asset("models.toml"), "--probes", &pset, "--device", "cpu",
    ]);
    assert!(appended.is_object(), "{appended}");
    ok(&[
        "probes", "embed", &index, "--clip-image", &asset("text/clip_image.pt"), "--probes", &pset,
        "--device", "cpu",
    ]);
    index
}

fn results(doc: &Value) -> &Vec<Value> {
    doc["results"].as_array().expect("results array")
}

fn label(hit: &Value) -> &str {
    hit["label"].as_str().expect("a label")
}

#[test]
fn demo_assets_find_concepts_by_example_and_by_text() {
    let dir = TempDir::new().unwrap();
    let index = demo_index(&dir);

    // Every entry's model and label, from an unrestricted search's hits (all entries).
    let all = ok_json(&["search", &index, "--entry", "0", "--top", "1000"]);
    let mut entries: BTreeMap<u64, (String, String)> = BTreeMap::new();
    for hit in results(&all) {
        entries.insert(
            hit["entry"].as_u64().unwrap(),
            (hit["model"].as_str().unwrap().to_string(), label(hit).to_string()),
        );
    }
    let models: std::collections::BTreeSet<&str> =
        entries.values().map(|(m, _)| m.as_str()).collect();
    assert_eq!(models.len(), 7, "{models:?}");
    // tools/demo.sh's example queries: entry 0 is pets-cnn's "dog", entry 20 fruit-cnn's "banana".
    assert_eq!(entries[&0], ("pets-cnn".to_string(), "dog".to_string()));
    assert_eq!(entries[&20], ("fruit-cnn".to_string(), "banana".to_string()));

    // (a) By example: the logits of concepts that another model also recognizes find that
    // concept in another model first. These must (tools/demo.sh queries entries 0 and 20);
    // of all 18 shared-concept logits, 15 do with the shipped models, and at least 13 must.
    let must = [0u64, 4, 11, 12, 20, 22, 33, 45];
    let (mut shared, mut found) = (0, 0);
    for (&entry, (model, concept)) in &entries {
        let elsewhere = entries.values().any(|(m, l)| m != model && l == concept);
        if !elsewhere {
            assert!(!must.contains(&entry), "entry {entry}: {concept} is in no other model");
            continue;
        }
        let doc = ok_json(&[
            "search", &index, "--entry", &entry.to_string(), "--exclude-same-model", "--top", "1",
        ]);
        let top = &results(&doc)[0];
        assert_ne!(top["model"].as_str().unwrap(), model);
        shared += 1;
        if label(top) == concept {
            found += 1;
        } else {
            assert!(
                !must.contains(&entry),
                "entry {entry} ({model} {concept}): top hit {top}"
            );
        }
    }
    assert_eq!(shared, 18);
    assert!(found >= 13, "only {found} of {shared} shared-concept logits find their concept first");

    // (b) By text: the stand-in finds a logit of the named concept in its top 3.
    for (text, concept) in [
        ("dog", "dog"),
        ("a photo of a banana", "banana"),
        ("airplane", "airplane"),
        ("strawberry", "strawberry"),
        ("elephant", "elephant"),
        ("cat", "cat"),
        ("bus", "bus"),
    ] {
        let doc = ok_json(&[
            "search", &index, "--text", text, "--clip-text", &asset("text/clip_text.pt"),
            "--tokenizer", &asset("text/tokenizer.json"), "--device", "cpu", "--top", "3",
        ]);
        let labels: Vec<&str> = results(&doc).iter().map(label).collect();
        assert!(labels.contains(&concept), "text {text:?}: top 3 {labels:?}");
    }
    ok(&["verify", &index]);
}
