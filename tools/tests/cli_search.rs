//! End-to-end tests of the `probelog-tool` binary (real processes, real files). Searching from the
//! command line: by entry, raw logit vector and text embedding; per-model results, the metrics,
//! hnsw mode.

mod common;
use common::fixture::*;
use common::*;

use serde_json::Value;

#[test]
fn create_append_search_end_to_end() {
    let f = Fixture::new();
    let (npy, labels, _) = f.model_files("alpha", &[1, 2, 3], 1);
    let summary = ok_json(&f.append_logits(&npy, "alpha", &["--labels", s(&labels)]));
    assert_eq!(summary["models_added"], 1);
    assert_eq!(summary["entries_added"], 3);
    assert_eq!(summary["sequence"], 2);
    let line = ok(&f.append_logits(&npy, "alpha-again", &[]));
    assert!(
        line.contains("appended 1 model (3 entries)") && line.contains("commit 3"),
        "{line}"
    );

    let r = ok_json(&f.search_entry("1", &["--top", "4"]));
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

    let r = ok_json(&f.search_entry("1", &["--top", "4000000000"]));
    assert_eq!(
        r["results"].as_array().unwrap().len(),
        6,
        "every entry, and no huge allocation"
    );
    let r = ok_json(&f.search_entry("1", &["--k", "7"]));
    assert_eq!(r["k"], 7);
    let r = ok_json(&f.search_entry("1", &["--metric", "topk", "--k", "7"]));
    assert_eq!(
        (&r["metric"], &r["k"]),
        (&Value::from("topk"), &Value::from(7))
    );
    assert!(r["blend_weight"].is_null());
    let human = ok(&f.search_entry("1", &["--top", "2"]));
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
fn per_model_and_exclude_same_model() {
    let f = Fixture::new().with_models();
    // alpha's logit 0 detects concept 1, which beta and gamma detect too.
    let r = ok_json(&f.search_entry("0", &["--exclude-same-model", "--per-model", "--top", "5"]));
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

    let r = ok_json(&f.search_entry("0", &["--per-model", "--top", "10"]));
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
    let r = ok_json(&f.search_entry("0", &["--metric", "full", "--top", "3"]));
    assert_eq!(r["metric"], "full");
    assert!(r["k"].is_null());
    assert_eq!(r["results"][0]["entry"], 0);
    assert!(r["results"][1]["entry"].is_u64());

    let r = ok_json(&f.search_entry("0", &["--metric", "model"]));
    assert_eq!(r["metric"], "model");
    let results = r["results"].as_array().unwrap();
    assert_eq!(results.len(), 3, "one result per model");
    for h in results {
        assert!(h["entry"].is_null() && h["logit"].is_null(), "{h}");
        assert!(h["model"].is_string());
    }
    let human = ok(&f.search_entry("0", &["--metric", "model"]));
    assert!(human.contains("metric model"), "{human}");

    let e = fails(&f.search_entry("0", &["--metric", "full", "--k", "5"]));
    assert!(e.contains("--k"), "{e}");
    let e = fails(&f.search_entry("0", &["--k", "51"]));
    assert!(e.contains("51") && e.contains("50"), "{e}");
    // Weight 0 ranks and scores as the paper's top-k; a weight shows in the output.
    let zero = ok_json(&f.search_entry("0", &["--blend-weight", "0"]));
    let topk = ok_json(&f.search_entry("0", &["--metric", "topk"]));
    assert_eq!(zero["results"], topk["results"]);
    assert_eq!(zero["blend_weight"].as_f64(), Some(0.0));
    let human = ok(&f.search_entry("0", &["--blend-weight", "0.5"]));
    assert!(
        human.contains("metric blend (k = 16, weight 0.5)"),
        "{human}"
    );
    let e = fails(&f.search_entry("0", &["--metric", "topk", "--blend-weight", "1"]));
    assert!(
        e.contains("--blend-weight only applies to --metric blend"),
        "{e}"
    );
    let e = fails(&f.search_entry("999", &[]));
    assert!(e.contains("entry 999 does not exist"), "{e}");
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
fn hnsw_mode_with_graphs_from_append_and_compact() {
    let f = Fixture::new().with_models();
    assert_eq!(
        model_info(f.idx())["graphs"],
        0,
        "small appends build no graph"
    );
    // Exact below the auto threshold, and hnsw mode scans segments without a graph. The graphs
    // serve the paper's top-k discrepancy, so these searches name it.
    let exact = ok_json(&f.search_entry("6", &["--top", "5", "--metric", "topk"]));
    assert_eq!(exact["mode"], "exact");
    assert_eq!(exact["candidates"], Value::Null);
    let hnsw = ok_json(&f.search_entry("6", &["--top", "5", "--mode", "hnsw", "--metric", "topk"]));
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
        ok_json(&f.search_entry(
            "6",
            &[
                "--top",
                "5",
                "--mode",
                "hnsw",
                "--candidates",
                "12",
                "--metric",
                "topk",
            ],
        ))
    };
    let hnsw = hnsw_all();
    assert_eq!(hnsw["results"], exact["results"]);
    let human = ok(&f.search_entry("6", &["--mode", "hnsw", "--metric", "topk"]));
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
    // The default metric, the blend: auto scans; hnsw walks the graphs and reranks by the
    // blend, so with every entry a candidate it ranks as exact mode.
    let auto = ok_json(&f.search_entry("6", &["--mode", "auto"]));
    assert_eq!(
        (&auto["metric"], &auto["mode"]),
        (&Value::from("blend"), &Value::from("exact"))
    );
    let blend_hnsw = ok_json(&f.search_entry("6", &["--mode", "hnsw", "--candidates", "12"]));
    assert_eq!(
        (&blend_hnsw["metric"], &blend_hnsw["mode"]),
        (&Value::from("blend"), &Value::from("hnsw"))
    );
    assert_eq!(blend_hnsw["results"], auto["results"]);

    let err = fails(&f.search_entry("6", &["--mode", "hnsw", "--metric", "full"]));
    assert!(
        err.contains("hnsw mode ranks by the blend or topk metric only, not full")
            && err.contains("--metric blend or topk"),
        "{err}"
    );
    let out = run(&f.search_entry("6", &["--candidates", "0"]));
    assert_eq!(out.status.code(), Some(2), "a usage error");
    assert!(stderr(&out).contains("--candidates"), "{}", stderr(&out));

    // An append with a graph of its own, then compaction without graphs.
    let (npy, _, _) = f.model_files("delta", &[1, 9, 2], 4);
    ok(&f.append_logits(&npy, "delta", &["--graph-min-entries", "2"]));
    // The three parts of the compaction above, and the append's own graph.
    assert_eq!(model_info(f.idx())["graphs"], 4);
    ok(&["compact", f.idx(), "--no-graph"]);
    assert_eq!(model_info(f.idx())["graphs"], 0);
}
