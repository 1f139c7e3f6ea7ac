//! The SQLite extension (`sqlite/probelog_sqlite.c`, built on the C ABI) in real SQLite engines:
//! the one rusqlite bundles, linked into this test (always), and Debian's `sqlite3` command line
//! when it is installed. Its table-valued functions must return what `probelog-tool search
//! --json` returns, and every bad argument must be an SQL error.

#[path = "../common/mod.rs"]
mod common;
mod errors;
mod filters;

use std::path::Path;
use std::process::Command;

use common::*;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, params_from_iter};

/// A connection of the bundled engine with the extension loaded.
fn connect(so: &Path) -> Connection {
    let conn = Connection::open_in_memory().unwrap();
    // SAFETY: the extension is this crate's own, built by this test; loading is disabled again
    // right after.
    unsafe {
        conn.load_extension_enable().unwrap();
        // No entry point given: SQLite derives sqlite3_probelog_init from the file name.
        conn.load_extension(so, None::<&str>).unwrap();
    }
    conn.load_extension_disable().unwrap();
    conn
}

/// The rows of a query, as (rank, entry, model_id, model, logit, label, score).
fn rows(conn: &Connection, sql: &str, args: Vec<SqlValue>) -> rusqlite::Result<Vec<Row>> {
    let mut stmt = conn.prepare(sql)?;
    let mapped = stmt.query_map(params_from_iter(args), |r| {
        Ok((
            r.get::<_, i64>(0)? as u64,
            r.get::<_, Option<i64>>(1)?.unwrap_or(-1),
            r.get::<_, i64>(2)? as u64,
            r.get::<_, String>(3)?,
            r.get::<_, Option<i64>>(4)?.unwrap_or(-1),
            r.get::<_, Option<String>>(5)?,
            r.get::<_, f64>(6)? as f32,
        ))
    })?;
    mapped.collect()
}

const COLUMNS: &str = "rank, entry, model_id, model, logit, label, score";

/// The SQL form of a search and its arguments.
fn sql_of(q: &Search, hub: &Hub) -> (String, Vec<SqlValue>) {
    let k = if q.k == 0 {
        SqlValue::Null
    } else {
        SqlValue::Integer(q.k.into())
    };
    let mut args = vec![SqlValue::Text(s(&hub.index).into())];
    let function = match q.kind {
        "entry" => {
            args.push(SqlValue::Integer(q.entry as i64));
            "probelog_search_entry"
        }
        "vector" => {
            args.push(SqlValue::Blob(f32_bytes(&hub.query)));
            "probelog_search"
        }
        "text" => {
            args.push(SqlValue::Blob(f32_bytes(&hub.text)));
            "probelog_search_text"
        }
        k => panic!("{k}"),
    };
    args.extend([
        SqlValue::Integer(q.top.into()),
        k,
        SqlValue::Text(q.metric.into()),
        SqlValue::Integer(q.per_model.into()),
    ]);
    if q.kind == "entry" {
        args.push(SqlValue::Integer(q.exclude_same_model.into()));
    }
    args.extend([
        SqlValue::Text(q.mode.into()),
        if q.candidates == 0 {
            SqlValue::Null
        } else {
            SqlValue::Integer(q.candidates.into())
        },
        if q.blend_weight == 0.0 {
            SqlValue::Null
        } else {
            SqlValue::Real(q.blend_weight.into())
        },
    ]);
    let marks: Vec<String> = (1..=args.len()).map(|i| format!("?{i}")).collect();
    (
        format!("SELECT {COLUMNS} FROM {function}({})", marks.join(", ")),
        args,
    )
}

#[test]
fn sql_results_equal_the_cli() {
    let hub = Hub::new();
    let so = build_extension(hub.dir.path());
    let conn = connect(&so);
    for q in searches() {
        let want = cli_rows(&q.cli(&hub));
        let (sql, args) = sql_of(&q, &hub);
        let got = rows(&conn, &sql, args).unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert_eq!(got, want, "{q:?}");
        assert!(!got.is_empty());
    }

    let path = SqlValue::Text(s(&hub.index).into());
    let query = SqlValue::Blob(f32_bytes(&hub.query));

    // The per-model form is `search --per-model`.
    let want = cli_rows(
        &Search {
            top: 6,
            per_model: true,
            ..Search::new("vector")
        }
        .cli(&hub),
    );
    let sql = format!("SELECT {COLUMNS} FROM probelog_models(?1, ?2, 6)");
    let got = rows(&conn, &sql, vec![path.clone(), query.clone()]).unwrap();
    assert_eq!(got, want);
    let models: Vec<&String> = got.iter().map(|r| &r.3).collect();
    let mut distinct = models.clone();
    distinct.dedup();
    assert_eq!(models.len(), distinct.len(), "one row per model");

    // Arguments as hidden columns in WHERE; defaults for the rest (top 10).
    let want = cli_rows(&Search::new("vector").cli(&hub));
    let sql = format!("SELECT {COLUMNS} FROM probelog_search WHERE path = ?1 AND query = ?2");
    assert_eq!(
        rows(&conn, &sql, vec![path.clone(), query.clone()]).unwrap(),
        want
    );

    // The default metric is the blend; a weight of 0 ranks and scores as topk.
    let topk = cli_rows(
        &Search {
            metric: "topk",
            ..Search::new("vector")
        }
        .cli(&hub),
    );
    let sql =
        format!("SELECT {COLUMNS} FROM probelog_search(?1, ?2, 10, NULL, NULL, 0, NULL, NULL, 0)");
    assert_eq!(
        rows(&conn, &sql, vec![path.clone(), query.clone()]).unwrap(),
        topk
    );
    let sql = format!(
        "SELECT {COLUMNS} FROM probelog_search WHERE path = ?1 AND query = ?2 AND metric = 'topk'"
    );
    assert_eq!(
        rows(&conn, &sql, vec![path.clone(), query.clone()]).unwrap(),
        topk
    );
    let blend = cli_rows(
        &Search {
            blend_weight: 8.0,
            ..Search::new("vector")
        }
        .cli(&hub),
    );
    assert_eq!(blend, cli_rows(&Search::new("vector").cli(&hub)));
    let sql = format!(
        "SELECT {COLUMNS} FROM probelog_search(?1, ?2, 10, NULL, 'blend', 0, 'auto', NULL, 8)"
    );
    assert_eq!(
        rows(&conn, &sql, vec![path.clone(), query.clone()]).unwrap(),
        blend
    );

    // SQL on top: filter, order, aggregate, join.
    let count = |sql: &str| -> i64 {
        conn.query_row(sql, [path.clone(), query.clone()], |r| r.get(0))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    };
    let labelled =
        count("SELECT count(*) FROM probelog_search(?1, ?2, 1000) WHERE label IS NOT NULL");
    let all = count("SELECT count(*) FROM probelog_search(?1, ?2, 1000)");
    let info = tool_json(&["info", s(&hub.index)]);
    assert_eq!(all as u64, info["entry_count"].as_u64().unwrap());
    assert!(labelled < all && labelled > 0, "model 5 has no labels");
    conn.execute_batch(
        "CREATE TABLE wanted(model TEXT); INSERT INTO wanted VALUES ('model-03'), ('model-08');",
    )
    .unwrap();
    let joined: Vec<String> = conn
        .prepare(
            "SELECT s.model FROM wanted w JOIN probelog_models(?1, ?2, 1000) s ON s.model = w.model \
             ORDER BY s.score",
        )
        .unwrap()
        .query_map([path.clone(), query.clone()], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(joined.len(), 2, "{joined:?}");

    // A stored descriptor is a query blob that finds its own entry first.
    let (entry, score): (i64, f64) = conn
        .query_row(
            "SELECT entry, score FROM probelog_search(?1, probelog_descriptor(?1, 7), 1)",
            [path.clone()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(entry, 7);
    assert!(score.abs() < 1e-5);
    let bytes: Vec<u8> = conn
        .query_row("SELECT probelog_descriptor(?1, 7)", [path.clone()], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(bytes.len(), hub.probes * 4);

    // probelog_f32 turns text into the same blob the test builds.
    let blob: Vec<u8> = conn
        .query_row("SELECT probelog_f32(' [1, -2.5,3e-2] ')", [], |r| r.get(0))
        .unwrap();
    assert_eq!(blob, f32_bytes(&[1.0, -2.5, 0.03]));
    let blob: Vec<u8> = conn
        .query_row("SELECT probelog_f32('0.5 2')", [], |r| r.get(0))
        .unwrap();
    assert_eq!(blob, f32_bytes(&[0.5, 2.0]));
    let version: String = conn
        .query_row("SELECT probelog_version()", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, env!("CARGO_PKG_VERSION"));
}

#[test]
fn sql_searches_in_hnsw_mode_equal_the_cli() {
    let hub = Hub::with_graph();
    let so = build_extension(hub.dir.path());
    let conn = connect(&so);
    let mut all = searches();
    all.extend(mode_searches());
    let mut hnsw = 0;
    for q in &all {
        let report = q.cli(&hub);
        hnsw += usize::from(report["mode"] == "hnsw");
        let want = cli_rows(&report);
        let (sql, args) = sql_of(q, &hub);
        let got = rows(&conn, &sql, args).unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert_eq!(got, want, "{q:?}");
        assert!(!got.is_empty());
    }
    assert!(hnsw >= 7, "{hnsw} searches ran in hnsw mode");

    let path = SqlValue::Text(s(&hub.index).into());
    let query = SqlValue::Blob(f32_bytes(&hub.query));
    let hnsw = |top, candidates, per_model| Search {
        top,
        per_model,
        mode: "hnsw",
        metric: "topk",
        candidates,
        ..Search::new("vector")
    };

    // probelog_models takes mode and candidates after the metric.
    let want = cli_rows(&hnsw(6, 2, true).cli(&hub));
    let sql = format!("SELECT {COLUMNS} FROM probelog_models(?1, ?2, 6, NULL, 'topk', 'hnsw', 2)");
    assert_eq!(
        rows(&conn, &sql, vec![path.clone(), query.clone()]).unwrap(),
        want
    );
    // The arguments as hidden columns; the defaults for the others (top 10, NULL candidates).
    let want = cli_rows(&hnsw(10, 3, false).cli(&hub));
    let sql = format!(
        "SELECT {COLUMNS} FROM probelog_search WHERE path = ?1 AND query = ?2 AND mode = 'hnsw' \
         AND candidates = 3 AND metric = 'topk'"
    );
    assert_eq!(
        rows(&conn, &sql, vec![path.clone(), query.clone()]).unwrap(),
        want
    );
    let want = cli_rows(&hnsw(10, 0, false).cli(&hub));
    let sql = format!(
        "SELECT {COLUMNS} FROM probelog_search(?1, ?2, NULL, NULL, 'topk', NULL, 'hnsw', NULL)"
    );
    assert_eq!(
        rows(&conn, &sql, vec![path.clone(), query.clone()]).unwrap(),
        want
    );
    // The hidden columns read back as given.
    let (mode, candidates): (String, i64) = conn
        .query_row(
            "SELECT mode, candidates FROM probelog_search_entry(?1, 0, 3, NULL, 'topk', 0, 0, \
             'hnsw', 4) LIMIT 1",
            [path.clone()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((mode.as_str(), candidates), ("hnsw", 4));
}

/// The `sqlite3` command line: Debian's package, when installed.
fn sqlite3_cli() -> Option<&'static str> {
    let ok = Command::new("sqlite3")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then_some("sqlite3")
}

#[test]
fn the_sqlite3_command_line_loads_the_extension() {
    let Some(cli) = sqlite3_cli() else {
        eprintln!(
            "note: no `sqlite3` command line (apt-get install sqlite3); the extension was checked \
             in the bundled engine only"
        );
        return;
    };
    // With a graph over one segment, for hnsw mode; the other searches run exactly (auto).
    let hub = Hub::with_graph();
    let so = build_extension(hub.dir.path());
    let run_sql = |sql: &str| {
        Command::new(cli)
            .args(["-bail", "-json", ":memory:"])
            .arg(format!(".load {}", s(&so.with_extension(""))))
            .arg(sql)
            .output()
            .expect("sqlite3 runs")
    };
    for (q, function) in [
        (
            Search {
                top: 6,
                ..Search::new("vector")
            },
            "probelog_search",
        ),
        (
            Search {
                top: 5,
                per_model: true,
                ..Search::new("vector")
            },
            "probelog_models",
        ),
        (
            Search {
                top: 5,
                ..Search::new("text")
            },
            "probelog_search_text",
        ),
        (
            Search {
                top: 5,
                mode: "hnsw",
                metric: "topk",
                candidates: 3,
                ..Search::new("vector")
            },
            "probelog_search",
        ),
    ] {
        let want = cli_rows(&q.cli(&hub));
        let bytes = if q.kind == "text" {
            f32_bytes(&hub.text)
        } else {
            f32_bytes(&hub.query)
        };
        let mode = if q.mode == "auto" {
            String::new()
        } else {
            format!(", NULL, 'topk', 0, '{}', {}", q.mode, q.candidates)
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM {function}('{}', X'{}', {}{mode});",
            s(&hub.index),
            hex(&bytes),
            q.top
        );
        let out = run_sql(&sql);
        assert!(
            out.status.success(),
            "{function}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("sqlite3 -json");
        let got = json_rows(json.as_array().unwrap());
        assert_eq!(got, want, "{function} in {cli}");
    }
    // Bad arguments: an error message and exit status 1, not a crash.
    for (sql, want) in [
        (
            "SELECT * FROM probelog_search('/nonexistent.plog', X'0000803f0000803f', 1);",
            "No such file",
        ),
        ("SELECT * FROM probelog_search(1, 2);", "must be TEXT"),
        ("SELECT * FROM probelog_search;", "are required"),
        (
            "SELECT * FROM probelog_search('x', X'0000803f', 1, NULL, NULL, NULL, 'ann');",
            "got 'ann'",
        ),
    ] {
        let out = run_sql(sql);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{sql}: {err}");
        assert!(err.contains(want), "{sql}: {err}");
    }
}
