//! The C ABI from C: `tests/c/check.c` is compiled against the static and against the shared
//! library, and run on indexes made by `probelog-tool`. Its searches must equal the CLI's
//! `search --json` exactly (ranks, entries, models, logits, labels, score bits, the k, mode and
//! candidates that ran), also from four threads sharing one handle, in exact and in hnsw mode;
//! its appends must be what the CLI then reads.

mod common;

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use common::*;

fn check_source() -> PathBuf {
    capi_dir().join("tests/c/check.c")
}

/// Writes the cases file of `check search` (format in check.c): each search with the CLI's
/// results. Returns the number of hits and of searches that ran in hnsw mode.
fn write_cases(hub: &Hub, searches: &[Search], path: &Path) -> (usize, usize) {
    let mut text = String::new();
    let mut hits = 0;
    let mut hnsw = 0;
    for q in searches {
        let report = q.cli(hub);
        let query = match q.kind {
            "entry" => q.entry.to_string(),
            "vector" => s(&hub.query_f32).to_string(),
            "text" => s(&hub.text_f32).to_string(),
            k => panic!("{k}"),
        };
        writeln!(
            text,
            "case\t{}\t{query}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            q.kind,
            q.top,
            q.k,
            u8::from(q.exclude_same_model),
            u8::from(q.per_model),
            q.metric_code(),
            q.mode_code(),
            q.candidates,
            q.blend_weight
        )
        .unwrap();
        let rows = cli_rows(&report);
        assert!(!rows.is_empty(), "{q:?} found nothing");
        let k = report["k"].as_u64().unwrap_or(0);
        let mode = report["mode"].as_str().expect("the mode that ran");
        assert_ne!(mode, "auto", "the report resolves auto");
        if q.mode != "auto" {
            assert_eq!(mode, q.mode, "{q:?}");
        }
        hnsw += usize::from(mode == "hnsw");
        // Null in exact mode.
        let candidates = report["candidates"].as_u64().unwrap_or(0);
        // Null for the metrics other than the blend.
        let weight = report["blend_weight"].as_f64().unwrap_or(0.0) as f32;
        writeln!(
            text,
            "hits\t{}\t{k}\t{}\t{candidates}\t{weight}",
            rows.len(),
            mode_code(mode)
        )
        .unwrap();
        for (rank, entry, model_id, model, logit, label, score) in rows {
            assert!(!model.contains(['\t', '\n']));
            let label = label.map_or("N".to_string(), |l| format!("L:{l}"));
            writeln!(
                text,
                "hit\t{rank}\t{entry}\t{model_id}\t{logit}\t{:08x}\t{model}\t{label}",
                score.to_bits()
            )
            .unwrap();
            hits += 1;
        }
    }
    fs::write(path, text).unwrap();
    (hits, hnsw)
}

fn assert_ran(what: &str, out: &std::process::Output) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains(" passed, 0 failed"),
        "{what} failed ({:?}):\n{stdout}\n{stderr}",
        out.status.code()
    );
    let passed: usize = stdout
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a count of checks");
    assert!(passed > 20, "{what} ran only {passed} checks");
}

#[test]
fn c_searches_equal_the_cli_through_the_static_and_the_shared_library() {
    let hub = Hub::new();
    let cases = hub.path("cases.tsv");
    let (hits, hnsw) = write_cases(&hub, &searches(), &cases);
    assert!(hits > 40 && hnsw == 0, "{hits} hits, {hnsw} in hnsw mode");
    let plain = hub.path("plain.plog");
    tool_ok(&["demo", s(&plain), "--models", "3", "--probes", "16"]);

    // The same hub with an ANN graph over its first segment: every search again, and searches
    // in hnsw mode.
    let graph = Hub::with_graph();
    let info = tool_json(&["info", s(&graph.index)]);
    let covered = info["graph_entries"].as_u64().unwrap();
    assert!(
        info["graphs"] == 1 && covered > 0 && covered < info["entry_count"].as_u64().unwrap(),
        "one of the two segments has a graph: {info}"
    );
    let graph_cases = graph.path("cases.tsv");
    let mut all = searches();
    all.extend(mode_searches());
    let (hits, hnsw) = write_cases(&graph, &all, &graph_cases);
    assert!(hits > 60 && hnsw >= 7, "{hits} hits, {hnsw} in hnsw mode");

    for (link, name) in [
        (Link::Static, "check-static"),
        (Link::Shared, "check-shared"),
    ] {
        let exe = hub.path(name);
        compile_c(&[check_source()], &exe, link, &["-pthread"]);
        if let Some(needed) = needed_libraries(&exe) {
            assert_eq!(
                needed.contains("libprobelog_c.so"),
                link == Link::Shared,
                "{name} links the library it should:\n{needed}"
            );
        }
        let out = run(&exe, &["search", s(&hub.index), s(&cases), s(&plain)]);
        assert_ran(name, &out);
        let out = run(
            &exe,
            &["search", s(&graph.index), s(&graph_cases), s(&plain)],
        );
        assert_ran(&format!("{name} (graph)"), &out);
    }
}

#[test]
fn c_appends_under_the_writer_lock_and_the_cli_reads_them() {
    for (link, name) in [
        (Link::Static, "append-static"),
        (Link::Shared, "append-shared"),
    ] {
        let hub = Hub::new();
        let (p, l) = (hub.probes, 4);
        let mut rng = Rng::new(99);
        let logits = rng.vec(p * l);
        write_f32(&hub.path("new.f32"), &logits);
        let before = tool_json(&["info", s(&hub.index)]);

        let exe = hub.path(name);
        compile_c(&[check_source()], &exe, link, &["-pthread"]);
        let created = hub.path("created.plog");
        let out = run(
            &exe,
            &[
                "append",
                s(&hub.index),
                s(&hub.path("new.f32")),
                &p.to_string(),
                &l.to_string(),
                s(&created),
            ],
        );
        assert_ran(name, &out);

        // The CLI sees both models of the C commit, with their labels and metadata.
        let info = tool_json(&["info", s(&hub.index)]);
        assert_eq!(
            info["entry_count"].as_u64().unwrap(),
            before["entry_count"].as_u64().unwrap() + 2 * l as u64
        );
        let models = info["models"].as_array().unwrap();
        let m = models
            .iter()
            .find(|m| m["name"] == "c-appended")
            .expect("the model");
        assert_eq!(m["logits"], 4);
        assert_eq!(m["source"], "capi/tests/c/check.c");
        assert_eq!(m["meta"]["origin"], "check.c");
        assert_eq!(m["meta"]["abi"], "1");
        // C deleted kept-constant in a second commit.
        let kept = models
            .iter()
            .find(|m| m["name"] == "kept-constant")
            .expect("the deleted model is listed");
        assert_eq!(kept["deleted"], true);
        assert_eq!(info["deleted_models"], 1);
        assert_eq!(info["deleted_entries"].as_u64(), Some(l as u64));
        tool_ok(&["verify", s(&hub.index)]);

        // Logit 2's column, searched by the CLI, finds the logit C appended.
        let col: Vec<f32> = (0..p).map(|i| logits[i * l + 2]).collect();
        write_npy(&hub.path("col.npy"), &[p], &col);
        let report = tool_json(&[
            "search",
            s(&hub.index),
            "--query-logits",
            s(&hub.path("col.npy")),
            "--top",
            "1",
        ]);
        let rows = cli_rows(&report);
        assert_eq!(rows[0].3, "c-appended");
        assert_eq!(rows[0].4, 2);
        assert_eq!(rows[0].5.as_deref(), Some("c-label-2"));

        // probelog_create made an empty index the CLI reads.
        let fresh = tool_json(&["info", s(&created)]);
        assert_eq!(fresh["num_probes"].as_u64(), Some(p as u64));
        assert_eq!(fresh["entry_count"], 0);
    }
}
