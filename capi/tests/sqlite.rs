//! The SQLite extension (`sqlite/probelog_sqlite.c`, built on the C ABI) in real SQLite engines:
//! the one rusqlite bundles, linked into this test (always), and Debian's `sqlite3` command line
//! when it is installed. Its table-valued functions must return what `probelog-tool search
//! --json` returns, and every bad argument must be an SQL error.

mod common;

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
    let labelled: i64 = conn
        .query_row(
            "SELECT count(*) FROM probelog_search(?1, ?2, 1000) WHERE label IS NOT NULL",
            [path.clone(), query.clone()],
            |r| r.get(0),
        )
        .unwrap();
    let all: i64 = conn
        .query_row(
            "SELECT count(*) FROM probelog_search(?1, ?2, 1000)",
            [path.clone(), query.clone()],
            |r| r.get(0),
        )
        .unwrap();
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

/// Runs `sql` to its end; it must fail. Returns the message.
fn sql_error(conn: &Connection, sql: &str, args: Vec<SqlValue>) -> String {
    let result = (|| -> rusqlite::Result<usize> {
        let mut stmt = conn.prepare(sql)?;
        let mut rows = stmt.query(params_from_iter(args))?;
        let mut n = 0;
        while rows.next()?.is_some() {
            n += 1;
        }
        Ok(n)
    })();
    match result {
        Ok(n) => panic!("{sql} should fail, returned {n} rows"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_arguments_are_sql_errors() {
    let hub = Hub::new();
    let so = build_extension(hub.dir.path());
    let conn = connect(&so);
    let plain = hub.path("plain.plog");
    tool_ok(&["demo", s(&plain), "--models", "3", "--probes", "16"]);
    let path = || SqlValue::Text(s(&hub.index).into());
    let blob = |v: &[f32]| SqlValue::Blob(f32_bytes(v));
    let query = || blob(&hub.query);
    let int = SqlValue::Integer;
    let text = |t: &str| SqlValue::Text(t.into());
    let mut nan = hub.query.clone();
    nan[5] = f32::NAN;
    let mut inf_text = hub.text.clone();
    inf_text[0] = f32::INFINITY;
    let short = &hub.query[..hub.probes - 1];

    // probelog_search with as many arguments as given.
    let search = "probelog_search";
    let cases: Vec<(&str, Vec<SqlValue>, &str)> = vec![
        // The query blob.
        (
            search,
            vec![path(), blob(short), int(5)],
            "47 probes, but the index was created with 48",
        ),
        (
            search,
            vec![path(), SqlValue::Blob(vec![0; 7]), int(5)],
            "got 7 bytes",
        ),
        (
            search,
            vec![path(), SqlValue::Blob(vec![]), int(5)],
            "got 0 bytes",
        ),
        (search, vec![path(), blob(&nan), int(5)], "NaN"),
        (
            search,
            vec![path(), text("abc"), int(5)],
            "must be a BLOB of little-endian float32 values, got TEXT",
        ),
        (search, vec![path(), int(3), int(5)], "got INTEGER"),
        (search, vec![path(), SqlValue::Null, int(5)], "got NULL"),
        (
            search,
            vec![path(), blob(&vec![1.0; hub.probes]), int(5)],
            "constant",
        ),
        // The path.
        (
            search,
            vec![text("/nonexistent/hub.plog"), query(), int(5)],
            "No such file",
        ),
        (
            search,
            vec![int(1), query(), int(5)],
            "index path (argument 1) must be TEXT, got INTEGER",
        ),
        (
            search,
            vec![text(s(&hub.query_npy)), query(), int(5)],
            "not a probelog index",
        ),
        // n, k, metric, per_model.
        (
            search,
            vec![path(), query(), int(0)],
            "n, the number of results (argument 3), must be between 1",
        ),
        (search, vec![path(), query(), int(-3)], "must be between 1"),
        (
            search,
            vec![path(), query(), text("5")],
            "must be an INTEGER, got TEXT",
        ),
        (
            search,
            vec![path(), query(), SqlValue::Real(2.5)],
            "must be an INTEGER, got REAL",
        ),
        (
            search,
            vec![path(), query(), int(5), int(0)],
            "k (argument 4) must be between 1",
        ),
        (
            search,
            vec![path(), query(), int(5), int(49)],
            "k = 49 is out of range",
        ),
        (
            search,
            vec![path(), query(), int(5), int(4), text("full")],
            "k only applies to the blend and topk metrics",
        ),
        (
            search,
            vec![path(), query(), int(5), SqlValue::Null, text("cosine")],
            "got 'cosine'",
        ),
        (
            search,
            vec![path(), query(), int(5), SqlValue::Null, int(1)],
            "metric (argument 5) must be",
        ),
        (
            search,
            vec![
                path(),
                query(),
                int(5),
                SqlValue::Null,
                SqlValue::Null,
                int(2),
            ],
            "per_model (argument 6) must be between 0 and 1",
        ),
        // Missing arguments.
        (
            "SELECT * FROM probelog_search",
            vec![],
            "the index path and the query are required",
        ),
        (
            "SELECT * FROM probelog_search(?1)",
            vec![path()],
            "the index path and the query are required",
        ),
        // Entries.
        (
            "SELECT * FROM probelog_search_entry(?1, ?2)",
            vec![path(), int(68)],
            "entry 68 does not exist",
        ),
        (
            "SELECT * FROM probelog_search_entry(?1, ?2)",
            vec![path(), int(-1)],
            "between 0 and",
        ),
        (
            "SELECT * FROM probelog_search_entry(?1, ?2)",
            vec![path(), text("3")],
            "must be an INTEGER, got TEXT",
        ),
        (
            "SELECT * FROM probelog_search_entry(?1, 0, 5, NULL, 'topk', 0, 2)",
            vec![path()],
            "exclude_same_model (argument 7) must be between 0 and 1",
        ),
        // mode and candidates.
        (
            search,
            vec![
                path(),
                query(),
                int(5),
                SqlValue::Null,
                text("topk"),
                int(0),
                text("fast"),
            ],
            "mode (argument 7) must be 'exact', 'hnsw' or 'auto', got 'fast'",
        ),
        (
            search,
            vec![
                path(),
                query(),
                int(5),
                SqlValue::Null,
                SqlValue::Null,
                int(0),
                text("HNSW"),
            ],
            "got 'HNSW'",
        ),
        (
            // probelog_search has no exclude_same_model: its argument 7 is the mode.
            "SELECT * FROM probelog_search(?1, ?2, 5, NULL, 'topk', 0, 1)",
            vec![path(), query()],
            "mode (argument 7) must be 'exact', 'hnsw' or 'auto', got INTEGER",
        ),
        (
            search,
            vec![
                path(),
                query(),
                int(5),
                SqlValue::Null,
                text("full"),
                int(0),
                text("hnsw"),
            ],
            "mode 'hnsw' ranks by the metric 'topk' only, not by 'full'",
        ),
        (
            "SELECT * FROM probelog_search(?1, ?2, 5, NULL, NULL, 0, 'hnsw')",
            vec![path(), query()],
            "mode 'hnsw' ranks by the metric 'topk' only, not by 'blend': pass metric 'topk'",
        ),
        // The blend's weight.
        (
            "SELECT * FROM probelog_search(?1, ?2, 5, NULL, 'blend', 0, 'exact', NULL, -1)",
            vec![path(), query()],
            "blend_weight (argument 9) must be a number from 0 to 1e+06, got -1",
        ),
        (
            "SELECT * FROM probelog_search_entry(?1, 0, 5, NULL, NULL, 0, 0, NULL, NULL, '2')",
            vec![path()],
            "blend_weight (argument 10) must be a number, got TEXT",
        ),
        (
            "SELECT * FROM probelog_models(?1, ?2, 5, NULL, 'topk', NULL, NULL, 1.5)",
            vec![path(), query()],
            "blend_weight (argument 8) only applies to the metric 'blend', not to 'topk'",
        ),
        (
            "SELECT * FROM probelog_search(?1, ?2, 5, NULL, NULL, 0, NULL, NULL, 3e38)",
            vec![path(), query()],
            "must be a number from 0 to 1e+06, got 3e+38",
        ),
        (
            "SELECT * FROM probelog_models(?1, ?2, 5, NULL, 'model', 'hnsw')",
            vec![path(), query()],
            "probelog_models: mode 'hnsw' ranks by the metric 'topk' only, not by 'model'",
        ),
        (
            "SELECT * FROM probelog_models(?1, ?2, 5, NULL, 'topk', 3)",
            vec![path(), query()],
            "mode (argument 6) must be 'exact', 'hnsw' or 'auto', got INTEGER",
        ),
        (
            "SELECT * FROM probelog_search_entry(?1, 0, 5, NULL, 'topk', 0, 0, 'approx')",
            vec![path()],
            "mode (argument 8) must be",
        ),
        (
            search,
            vec![
                path(),
                query(),
                int(5),
                SqlValue::Null,
                text("topk"),
                SqlValue::Null,
                text("hnsw"),
                int(0),
            ],
            "candidates (argument 8) must be between 1 and 4294967295, got 0",
        ),
        (
            "SELECT * FROM probelog_search_text(?1, ?2, 5, NULL, 'topk', 0, 'hnsw', '9')",
            vec![path(), blob(&hub.text)],
            "candidates (argument 8) must be an INTEGER, got TEXT",
        ),
        (
            "SELECT * FROM probelog_search_entry(?1, 0, 5, NULL, 'topk', 0, 0, 'hnsw', -1)",
            vec![path()],
            "candidates (argument 9) must be between 1",
        ),
        (
            "SELECT * FROM probelog_models(?1, ?2, 5, NULL, 'topk', 'exact', 2.5)",
            vec![path(), query()],
            "candidates (argument 7) must be an INTEGER, got REAL",
        ),
        // Text embeddings.
        (
            "SELECT * FROM probelog_search_text(?1, ?2)",
            vec![path(), blob(&hub.query)],
            "the text embedding has 48 dimensions, the probe embeddings",
        ),
        (
            "SELECT * FROM probelog_search_text(?1, ?2)",
            vec![path(), blob(&inf_text)],
            "inf",
        ),
        (
            "SELECT * FROM probelog_search_text(?1, ?2)",
            vec![text(s(&plain)), blob(&hub.text)],
            "has no probe embeddings",
        ),
        // Scalar functions.
        (
            "SELECT probelog_descriptor(?1, 68)",
            vec![path()],
            "entry 68 does not exist",
        ),
        (
            "SELECT probelog_descriptor(?1, 'x')",
            vec![path()],
            "must be an INTEGER",
        ),
        ("SELECT probelog_descriptor(3, 1)", vec![], "must be TEXT"),
        (
            "SELECT probelog_f32('[1, nan]')",
            vec![],
            "value 2 is not a finite number",
        ),
        ("SELECT probelog_f32('[1, 2')", vec![], "expected numbers"),
        ("SELECT probelog_f32('')", vec![], "expected numbers"),
        ("SELECT probelog_f32(x'00')", vec![], "must be TEXT"),
    ];
    for (sql, args, want) in cases {
        let sql = if sql == search {
            let marks: Vec<String> = (1..=args.len()).map(|i| format!("?{i}")).collect();
            format!("SELECT * FROM probelog_search({})", marks.join(", "))
        } else {
            sql.to_string()
        };
        let shown = format!("{sql} {args:?}");
        let e = sql_error(&conn, &sql, args);
        assert!(
            e.contains(want),
            "{shown}: the error {e:?} should contain {want:?}"
        );
    }
    // The table functions name themselves in their errors.
    let e = sql_error(
        &conn,
        "SELECT * FROM probelog_models(?1, x'00')",
        vec![path()],
    );
    assert!(e.starts_with("probelog_models: "), "{e}");

    // The connection still works after all of that.
    let n: i64 = conn
        .query_row(
            "SELECT count(*) FROM probelog_search(?1, ?2, 3)",
            [path(), query()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 3);
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

/// A filter argument, a model_name argument, the CLI's flags and the models they keep.
type FilterCase<'a> = (Option<&'a str>, Option<&'a str>, &'a [&'a str], &'a [u64]);

/// Borrowed arguments.
fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// `probelog-tool search ... --json` on a zoo, with `extra` flags: its rows.
fn zoo_cli(zoo: &Zoo, query: &[&str], extra: &[&str]) -> Vec<Row> {
    let mut args = vec!["search", s(&zoo.index)];
    args.extend(query);
    args.extend(extra);
    cli_rows(&tool_json(&args))
}

#[test]
fn sql_filters_and_deletes_equal_the_cli() {
    for graph in [false, true] {
        let zoo = Zoo::new(graph);
        let so = build_extension(zoo.dir.path());
        let conn = connect(&so);
        let path = SqlValue::Text(s(&zoo.index).into());
        let query = SqlValue::Blob(f32_bytes(&zoo.query));
        let text = SqlValue::Blob(f32_bytes(&zoo.text));
        let q_vec = ["--query-logits", s(&zoo.query_npy)];
        let q_text = ["--text-embedding", s(&zoo.text_npy)];
        let q_entry = ["--entry", "4"];
        let sql_rows = |sql: &str, args: Vec<SqlValue>| {
            rows(&conn, &format!("SELECT {COLUMNS} FROM {sql}"), args)
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
        };

        // (filter argument, model_name argument, the CLI's flags, the models kept)
        let cases: &[FilterCase] = &[
            (
                Some("family=a"),
                None,
                &["--where", "family=a"],
                &[0, 2, 4, 6, 8],
            ),
            (
                Some("family=b&license!=gpl"),
                None,
                &["--where", "family=b", "--where", "license!=gpl"],
                &[3, 5, 7, 9],
            ),
            (None, Some("*-4"), &["--model-name", "*-4"], &[4]),
            (
                Some("license=mit"),
                Some("m-?"),
                &["--where", "license=mit", "--model-name", "m-?"],
                &[3, 4, 5, 6, 7, 8],
            ),
            (Some(""), None, &[], &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
        ];
        for &(filter, name, flags, keep) in cases {
            let f = filter.map_or(SqlValue::Null, |f| SqlValue::Text(f.into()));
            let n = name.map_or(SqlValue::Null, |n| SqlValue::Text(n.into()));
            let check = |got: &[Row], grouped: bool, top: usize| {
                let matching = keep.len() * if grouped { 1 } else { zoo.logits };
                assert_eq!(
                    got.len(),
                    matching.min(top),
                    "{filter:?} {name:?}: a full top"
                );
                assert!(
                    got.iter().all(|r| keep.contains(&r.2)),
                    "{filter:?} {name:?}"
                );
            };
            let with = |extra: &[&str]| -> Vec<String> {
                flags.iter().chain(extra).map(|a| a.to_string()).collect()
            };

            // probelog_search: filter and model_name are arguments 10 and 11.
            let got = sql_rows(
                "probelog_search(?1, ?2, 5, NULL, 'blend', 0, 'auto', NULL, NULL, ?3, ?4)",
                vec![path.clone(), query.clone(), f.clone(), n.clone()],
            );
            check(&got, false, 5);
            assert_eq!(got, zoo_cli(&zoo, &q_vec, &refs(&with(&["--top", "5"]))));
            // probelog_search_text.
            let got = sql_rows(
                "probelog_search_text(?1, ?2, 4, 6, 'topk', 1, 'auto', NULL, NULL, ?3, ?4)",
                vec![path.clone(), text.clone(), f.clone(), n.clone()],
            );
            check(&got, true, 4);
            let extra = ["--top", "4", "--k", "6", "--metric", "topk", "--per-model"];
            assert_eq!(got, zoo_cli(&zoo, &q_text, &refs(&with(&extra))));
            // probelog_search_entry: arguments 11 and 12, after exclude_same_model.
            let got = sql_rows(
                "probelog_search_entry(?1, 4, 6, NULL, 'full', 0, 1, 'auto', NULL, NULL, ?2, ?3)",
                vec![path.clone(), f.clone(), n.clone()],
            );
            let kept_others = keep.iter().filter(|&&m| m != 1).count();
            assert_eq!(got.len(), (kept_others * zoo.logits).min(6));
            assert!(got.iter().all(|r| keep.contains(&r.2) && r.2 != 1));
            let extra = ["--top", "6", "--metric", "full", "--exclude-same-model"];
            assert_eq!(got, zoo_cli(&zoo, &q_entry, &refs(&with(&extra))));
            // probelog_models: arguments 9 and 10.
            let got = sql_rows(
                "probelog_models(?1, ?2, 3, NULL, 'blend', 'auto', NULL, NULL, ?3, ?4)",
                vec![path.clone(), query.clone(), f.clone(), n.clone()],
            );
            check(&got, true, 3);
            let extra = ["--top", "3", "--per-model"];
            assert_eq!(got, zoo_cli(&zoo, &q_vec, &refs(&with(&extra))));
            // As hidden columns.
            let mut sql = "probelog_search WHERE path = ?1 AND query = ?2".to_string();
            let mut args = vec![path.clone(), query.clone()];
            for (column, value) in [("filter", &f), ("model_name", &n)] {
                if *value != SqlValue::Null {
                    args.push(value.clone());
                    sql.push_str(&format!(" AND {column} = ?{}", args.len()));
                }
            }
            let got = sql_rows(&sql, args);
            assert_eq!(got, zoo_cli(&zoo, &q_vec, &refs(&with(&[]))));
            if graph {
                let got = sql_rows(
                    "probelog_search(?1, ?2, 5, NULL, 'topk', 0, 'hnsw', 20, NULL, ?3, ?4)",
                    vec![path.clone(), query.clone(), f.clone(), n.clone()],
                );
                check(&got, false, 5);
                let extra = [
                    "--top",
                    "5",
                    "--metric",
                    "topk",
                    "--mode",
                    "hnsw",
                    "--candidates",
                    "20",
                ];
                assert_eq!(got, zoo_cli(&zoo, &q_vec, &refs(&with(&extra))));
            }
        }
        // The hidden columns read back as given.
        let (f, n): (String, String) = conn
            .query_row(
                "SELECT filter, model_name FROM probelog_search(?1, ?2, 1, NULL, NULL, NULL, \
                 NULL, NULL, NULL, 'family=a', 'm-*')",
                [path.clone(), query.clone()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((f.as_str(), n.as_str()), ("family=a", "m-*"));

        // Bad filters are SQL errors that name the argument.
        let bad: &[(&str, SqlValue, &str)] = &[
            (
                "probelog_search(?1, ?2, 5, NULL, NULL, NULL, NULL, NULL, NULL, ?3)",
                SqlValue::Text("family".into()),
                "filter (argument 10): condition 1, 'family'",
            ),
            (
                "probelog_search(?1, ?2, 5, NULL, NULL, NULL, NULL, NULL, NULL, ?3)",
                SqlValue::Text("family=a&".into()),
                "condition 2, ''",
            ),
            (
                "probelog_search(?1, ?2, 5, NULL, NULL, NULL, NULL, NULL, NULL, ?3)",
                SqlValue::Text("=a".into()),
                "non-empty key",
            ),
            (
                "probelog_search(?1, ?2, 5, NULL, NULL, NULL, NULL, NULL, NULL, ?3)",
                SqlValue::Text("a=b!=c".into()),
                "condition 1",
            ),
            (
                "probelog_search(?1, ?2, 5, NULL, NULL, NULL, NULL, NULL, NULL, ?3)",
                SqlValue::Integer(5),
                "filter (argument 10) must be TEXT",
            ),
            (
                "probelog_models(?1, ?2, 5, NULL, NULL, NULL, NULL, NULL, NULL, ?3)",
                SqlValue::Blob(vec![1]),
                "model_name (argument 10) must be TEXT",
            ),
        ];
        for (sql, arg, want) in bad {
            let msg = sql_error(
                &conn,
                &format!("SELECT * FROM {sql}"),
                vec![path.clone(), query.clone(), arg.clone()],
            );
            assert!(msg.contains(want), "{sql} {arg:?}: {msg}");
        }

        // Deleted models never come back: m-2 by name and model 5 by id, through the CLI.
        tool_ok(&["delete", s(&zoo.index), "--model", "m-2", "--model-id", "5"]);
        let all = (zoo.models * zoo.logits) as i64;
        let forms = [
            format!("probelog_search(?1, ?2, {all})"),
            format!("probelog_search(?1, ?2, {all}, NULL, 'topk', 1)"),
            format!("probelog_search(?1, ?2, {all}, NULL, 'model')"),
            format!(
                "probelog_search(?1, ?2, {all}, NULL, 'blend', 0, 'auto', NULL, NULL, 'family=a')"
            ),
            format!("probelog_models(?1, ?2, {all})"),
            format!("probelog_search_text(?1, ?3, {all}, NULL, 'full')"),
            format!("probelog_search_entry(?1, 0, {all})"),
            format!("probelog_search_entry(?1, 0, {all}, NULL, 'topk', 1, 1)"),
        ];
        let mut forms = forms.to_vec();
        if graph {
            forms.push(format!(
                "probelog_search(?1, ?2, {all}, NULL, 'topk', 0, 'hnsw', 40)"
            ));
            forms.push("probelog_search_entry(?1, 0, 5, NULL, 'topk', 0, 0, 'hnsw', 40)".into());
        }
        // The arguments a form names: ?1 (the path), ?2 (the query), ?3 (the text embedding).
        let args_of = |form: &str| {
            let mut args = vec![path.clone(), query.clone(), text.clone()];
            args.truncate(if form.contains("?3") {
                3
            } else if form.contains("?2") {
                2
            } else {
                1
            });
            args
        };
        for form in &forms {
            let got = sql_rows(form, args_of(form));
            assert!(!got.is_empty(), "{form}");
            assert!(got.iter().all(|r| r.2 != 2 && r.2 != 5), "{form}: {got:?}");
        }
        // All 8 live models, and the CLI's rows.
        let got = sql_rows(&forms[4], args_of(&forms[4]));
        assert_eq!(got.len(), 8);
        assert_eq!(got, zoo_cli(&zoo, &q_vec, &["--top", "30", "--per-model"]));
        // Their entries are errors as queries and as descriptors.
        for e in [6, 15, 17] {
            let msg = sql_error(
                &conn,
                &format!("SELECT * FROM probelog_search_entry(?1, {e})"),
                vec![path.clone()],
            );
            assert!(msg.contains("deleted"), "{msg}");
            let msg = sql_error(
                &conn,
                &format!("SELECT probelog_descriptor(?1, {e})"),
                vec![path.clone()],
            );
            assert!(
                msg.contains("probelog_descriptor") && msg.contains("deleted"),
                "{msg}"
            );
        }
    }
}
