//! The examples of docs/embedding.md, run: each code block that follows a
//! `<!-- file: NAME -->` line is compiled (C) or executed (SQL), and its results are compared
//! with the CLI's. The C fragment of docs/probing.md (collaborative probing) is compiled inside
//! a program that gives it a writer and a model.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;

use common::*;
use rusqlite::Connection;
use rusqlite::types::Value as SqlValue;

/// The marked code blocks of the guide, by file name.
fn examples() -> BTreeMap<String, String> {
    let text = fs::read_to_string(repo_root().join("docs/embedding.md")).expect("the guide");
    let mut out = BTreeMap::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line
            .strip_prefix("<!-- file: ")
            .and_then(|l| l.strip_suffix(" -->"))
        else {
            continue;
        };
        let fence = lines.next().expect("a code block after the marker");
        assert!(fence.starts_with("```"), "{name}: no code block");
        let body: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
        out.insert(name.to_string(), body.join("\n") + "\n");
    }
    for name in [
        "search.c",
        "append.c",
        "versions.c",
        "queries.sql",
        "error.sql",
    ] {
        assert!(out.contains_key(name), "the guide lost its example {name}");
    }
    out
}

/// The hub of the guide (with an ANN graph, as the guide says), and the examples written out.
fn setup() -> (tempfile::TempDir, BTreeMap<String, String>) {
    let dir = tempfile::tempdir().unwrap();
    let ex = examples();
    for (name, body) in &ex {
        fs::write(dir.path().join(name), body).unwrap();
    }
    tool_ok(&[
        "demo",
        s(&dir.path().join("hub.plog")),
        "--models",
        "20",
        "--probes",
        "64",
    ]);
    let compacted = tool_json(&[
        "compact",
        s(&dir.path().join("hub.plog")),
        "--graph-min-entries",
        "2",
    ]);
    assert_eq!(compacted["segments_after"], 1, "{compacted}");
    (dir, ex)
}

#[test]
fn the_c_examples_run_and_agree_with_the_cli() {
    let (dir, _) = setup();
    let d = dir.path();
    let hub = d.join("hub.plog");

    let search = d.join("search");
    compile_c(&[d.join("search.c")], &search, Link::Static, &[]);
    let out = run(&search, &[s(&hub), "0"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    let want = cli_rows(&tool_search(
        &hub,
        &["--entry", "0", "--top", "5", "--per-model"],
    ));
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(lines.len(), want.len(), "{printed}");
    for (line, (rank, _, _, model, logit, label, score)) in lines.iter().zip(&want) {
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(f[0], rank.to_string(), "{line}");
        assert_eq!(f[1], model, "{line}");
        assert_eq!(f[2], logit.to_string(), "{line}");
        assert_eq!(f[3], label.as_deref().unwrap_or("-"), "{line}");
        let printed_score: f32 = f[4].parse().unwrap();
        assert!((printed_score - score).abs() <= 5e-5, "{line} vs {score}");
    }

    let append = d.join("append");
    compile_c(&[d.join("append.c")], &append, Link::Shared, &[]);
    let before = tool_json(&["info", s(&hub)]);
    let out = run(&append, &[s(&hub)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let n = before["entry_count"].as_u64().unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!(
            "model 20: entries {n} to {}; the index holds {} entries\n",
            n + 2,
            n + 3
        )
    );
    let info = tool_json(&["info", s(&hub)]);
    let m = &info["models"][20];
    assert_eq!(m["name"], "my-model");
    assert_eq!(m["meta"]["arch"], "toy");
    tool_ok(&["verify", s(&hub)]);
    let report = tool_search(&hub, &["--entry", &(n + 1).to_string(), "--top", "1"]);
    assert_eq!(cli_rows(&report)[0].5.as_deref(), Some("dog"));

    // versions.c: a new version of synth-00001 and synth-00002 deleted in one commit, then a
    // filtered search with explanations, which must be the CLI's.
    let versions = d.join("versions");
    compile_c(&[d.join("versions.c")], &versions, Link::Static, &[]);
    let out = run(&versions, &[s(&hub)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    let info = tool_json(&["info", s(&hub)]);
    assert_eq!(info["deleted_models"], 2, "{info}");
    let models = info["models"].as_array().unwrap();
    let live = |name: &str| {
        models
            .iter()
            .filter(|m| m["name"] == name && m["deleted"] == false)
            .count()
    };
    assert_eq!((live("synth-00001"), live("synth-00002")), (1, 0));
    let mut lines = printed.lines();
    assert_eq!(
        lines.next(),
        Some(format!("commit {}: 1 model added, 2 deleted", info["sequence"]).as_str())
    );
    // 20 demo models, my-model and the new version, less the two deleted.
    assert_eq!(lines.next(), Some("20 live models, 2 deleted"));
    assert_eq!(lines.next(), Some("entry 7: PROBELOG_ERR_DELETED"));
    let report = tool_search(
        &hub,
        &[
            "--entry",
            "0",
            "--exclude-same-model",
            "--per-model",
            "--top",
            "3",
            "--where",
            "generator=probelog-tool demo",
            "--model-name",
            "synth-0000?",
            "--explain",
            "2",
        ],
    );
    let results = report["results"].as_array().unwrap();
    assert_eq!(results.len(), 3, "{report}");
    for r in results {
        let line = lines.next().expect("a hit");
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(f[0], r["rank"].to_string(), "{line}");
        assert_eq!(f[1], r["model"].as_str().unwrap(), "{line}");
        assert_ne!(f[1], "synth-00002", "{line}");
        assert_eq!(f[2], r["logit"].to_string(), "{line}");
        let score: f64 = f[3].parse().unwrap();
        assert!(
            (score - r["score"].as_f64().unwrap()).abs() <= 5e-5,
            "{line}"
        );
        for p in r["explain"].as_array().unwrap() {
            let line = lines.next().expect("a probe");
            let share = format!("{:.4}", p["share"].as_f64().unwrap());
            assert_eq!(
                line,
                format!("\tprobe {}: {share} of the score", p["probe"]),
                "{line}"
            );
        }
    }
    assert_eq!(lines.next(), None);
}

/// The statements of an SQL example, without the shell's dot-commands and comments.
fn statements(sql: &str) -> Vec<String> {
    let code: String = sql
        .lines()
        .filter(|l| !l.starts_with('.') && !l.starts_with("--"))
        .map(|l| format!("{l}\n"))
        .collect();
    code.split(";\n")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn query(conn: &Connection, sql: &str) -> rusqlite::Result<Vec<Vec<SqlValue>>> {
    let mut stmt = conn.prepare(sql)?;
    let n = stmt.column_count();
    let rows = stmt.query_map([], |r| (0..n).map(|i| r.get::<_, SqlValue>(i)).collect())?;
    rows.collect()
}

fn text(v: &SqlValue) -> &str {
    match v {
        SqlValue::Text(t) => t,
        v => panic!("{v:?} is not text"),
    }
}

fn real(v: &SqlValue) -> f64 {
    match v {
        SqlValue::Real(x) => *x,
        v => panic!("{v:?} is not real"),
    }
}

#[test]
fn the_sql_examples_run_and_agree_with_the_cli() {
    let (dir, ex) = setup();
    let d = dir.path();
    let hub = d.join("hub.plog");
    // The text example's index: probe embeddings of dimension 8.
    let clip = Hub::new();
    fs::copy(&clip.index, d.join("clip-hub.plog")).unwrap();
    let so = build_extension(d);

    let conn = Connection::open_in_memory().unwrap();
    // SAFETY: the extension is this crate's own, built by this test.
    unsafe {
        conn.load_extension_enable().unwrap();
        conn.load_extension(&so, None::<&str>).unwrap();
    }
    // The examples name their indexes relative to the shell's directory.
    let absolute = |sql: &str| {
        sql.replace("'hub.plog'", &format!("'{}'", s(&hub)))
            .replace(
                "'clip-hub.plog'",
                &format!("'{}'", s(&d.join("clip-hub.plog"))),
            )
    };
    let results: Vec<Vec<Vec<SqlValue>>> = statements(&ex["queries.sql"])
        .iter()
        .map(|st| query(&conn, &absolute(st)).unwrap_or_else(|e| panic!("{st}: {e}")))
        .collect();
    assert_eq!(results.len(), 7);
    for (i, r) in results.iter().enumerate() {
        assert!(!r.is_empty(), "statement {i} returned nothing");
    }

    // Statements 1 and 2 are CLI searches by entry 0.
    let cli = |extra: &[&str]| {
        cli_rows(&tool_search(
            &hub,
            &[&["--entry", "0", "--top", "5"][..], extra].concat(),
        ))
    };
    let close = |a: f64, b: f32| (a - f64::from(b)).abs() <= 5e-5;
    // Statement `i`'s rows are the CLI's hits: rank, model and logit in its first three columns,
    // the score in column `score_column`.
    let same_hits = |i: usize, want: &[Row], score_column: usize| {
        assert_eq!(results[i].len(), want.len(), "statement {}", i + 1);
        for (row, w) in results[i].iter().zip(want) {
            assert_eq!(row[0], SqlValue::Integer(w.0 as i64), "statement {}", i + 1);
            assert_eq!(text(&row[1]), w.3, "statement {}", i + 1);
            assert_eq!(row[2], SqlValue::Integer(w.4), "statement {}", i + 1);
            assert!(close(real(&row[score_column]), w.6), "statement {}", i + 1);
        }
    };
    same_hits(0, &cli(&[]), 4);
    let want = cli(&["--per-model", "--exclude-same-model"]);
    assert_eq!(results[1].len(), want.len());
    for (row, w) in results[1].iter().zip(&want) {
        assert_eq!(text(&row[0]), w.3);
        assert_ne!(
            text(&row[0]),
            "synth-00000",
            "the query's model is left out"
        );
        assert!(close(real(&row[3]), w.6));
    }
    // Statement 3: entry 3's descriptor finds entry 3 first.
    let entry3 = cli_rows(&tool_search(&hub, &["--entry", "3", "--top", "1"]));
    assert_eq!(text(&results[2][0][0]), entry3[0].3);
    assert_eq!(results[2][0][1], SqlValue::Integer(entry3[0].4));
    // Statement 5: the CLI's --text-embedding with the same 8 values.
    let emb = [0.1f32, -0.3, 0.5, 0.2, -0.1, 0.4, 0.0, -0.2];
    write_npy(&d.join("emb.npy"), &[8], &emb);
    let want = cli_rows(&tool_search(
        &d.join("clip-hub.plog"),
        &["--text-embedding", s(&d.join("emb.npy")), "--top", "3"],
    ));
    let got: Vec<&str> = results[4].iter().map(|r| text(&r[0])).collect();
    let want_models: Vec<&str> = want.iter().map(|r| r.3.as_str()).collect();
    assert_eq!(got, want_models);
    // Statement 6: search --metric topk --mode hnsw --candidates 20, through the hub's graph.
    let report = tool_search(&hub, &[&["--entry", "0"][..], HNSW_TOP5_FLAGS].concat());
    assert_eq!(report["mode"], "hnsw");
    assert_eq!(tool_json(&["info", s(&hub)])["graphs"], 1);
    same_hits(5, &cli_rows(&report), 3);

    // Statement 7: search --where ... --where ... --model-name ....
    let want = cli_rows(&tool_search(
        &hub,
        &[
            "--entry",
            "0",
            "--top",
            "3",
            "--where",
            "generator=probelog-tool demo",
            "--where",
            "arch!=vit",
            "--model-name",
            "synth-0001*",
        ],
    ));
    assert_eq!(results[6].len(), want.len());
    assert_eq!(want.len(), 3);
    for (row, w) in results[6].iter().zip(&want) {
        assert_eq!(text(&row[0]), w.3);
        assert!(w.3.starts_with("synth-0001"));
        assert_eq!(row[1], SqlValue::Integer(w.4));
        assert!(close(real(&row[2]), w.6));
    }

    // The error example fails with the message the guide shows.
    let shown = ex["error.sql"]
        .lines()
        .find_map(|l| l.strip_prefix("-- Error: "))
        .expect("the guide shows the error");
    let st = &statements(&ex["error.sql"])[0];
    let e = query(&conn, &absolute(st)).expect_err("the bad query fails");
    assert_eq!(e.to_string(), shown);

    // Debian's sqlite3 shell, when installed, runs the example file as it is.
    if Command::new("sqlite3")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        let out = Command::new("sqlite3")
            .current_dir(d)
            .args(["-bail", ":memory:", ".read queries.sql"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let printed = String::from_utf8_lossy(&out.stdout);
        assert!(printed.contains("synth-"), "{printed}");
        assert!(Path::new(&d.join("probelog.so")).is_file());
    } else {
        eprintln!("note: no `sqlite3` shell; the SQL examples ran in the bundled engine only");
    }
}

/// The C fragment of docs/probing.md: a probe function, then the statements that stage a model
/// through it. It runs inside `main` with a writer on an index of 60 probes and the model's
/// logits on every probe, and stages the model from 30% of the probes.
#[test]
fn the_probing_guide_c_example_stages_a_model_from_its_share_of_the_probes() {
    const PROBES: usize = 60;
    let guide = fs::read_to_string(repo_root().join("docs/probing.md")).expect("the guide");
    let mut blocks = guide.split("```c\n").skip(1);
    let block = blocks.next().expect("the guide's C example");
    assert!(blocks.next().is_none(), "one C example in the guide");
    let block = block.split("\n```").next().unwrap();
    let at = block
        .find("ProbelogModel m")
        .expect("the example's statements start with its model");
    let (function, statements) = block.split_at(at);
    let program = format!(
        r#"#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include "probelog.h"

{function}
int main(int argc, char **argv) {{
    (void)argc;
    static float logits[{PROBES} * 1000];
    for (size_t p = 0; p < {PROBES}; p++)
        for (size_t j = 0; j < 1000; j++)
            logits[p * 1000 + j] = (float)((p * 31 + j * 17) % 101) / 10.0f;
    ProbelogWriter *writer = NULL;
    if (probelog_writer_open(argv[1], 0, &writer) != PROBELOG_OK) return 1;
{statements}
    if (probelog_writer_commit(writer, NULL) != PROBELOG_OK) {{
        fprintf(stderr, "%s\n", probelog_last_error());
        return 2;
    }}
    probelog_writer_close(writer);
    return 0;
}}
"#
    );
    let dir = tempfile::tempdir().unwrap();
    let (source, exe) = (dir.path().join("collab.c"), dir.path().join("collab"));
    fs::write(&source, program).unwrap();
    compile_c(&[source], &exe, Link::Static, &[]);
    let index = dir.path().join("hub.plog");
    tool_ok(&["create", s(&index), "--num-probes", &PROBES.to_string()]);
    let out = run(&exe, &[s(&index)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ix = probelog::Index::open(&index).unwrap();
    assert_eq!(ix.model_count(), 1);
    let model = ix.model(0).unwrap();
    assert_eq!((model.name.as_str(), model.logit_count), ("resnet", 1000));
    let observed = ix
        .observed_probes(0)
        .unwrap()
        .expect("a partially probed model");
    assert_eq!(observed.len(), 18, "30% of {PROBES} probes: {observed:?}");
    assert!(observed.windows(2).all(|w| w[0] < w[1]), "{observed:?}");
}
