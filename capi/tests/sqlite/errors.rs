//! Every bad argument of the SQL functions is an SQL error that names it, and the connection
//! keeps working.

use super::*;

/// Runs `sql` to its end; it must fail. Returns the message.
pub(super) fn sql_error(conn: &Connection, sql: &str, args: Vec<SqlValue>) -> String {
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
    // The index path, the query, n = 5 and k = NULL, then `rest` (metric, per_model, mode, ...).
    let top5 = |rest: Vec<SqlValue>| [vec![path(), query(), int(5), SqlValue::Null], rest].concat();

    // probelog_search with as many arguments as given.
    let search = "probelog_search";
    // Statements with bound arguments of every type.
    let mut cases: Vec<(&str, Vec<SqlValue>, &str)> = vec![
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
        (search, top5(vec![text("cosine")]), "got 'cosine'"),
        (search, top5(vec![int(1)]), "metric (argument 5) must be"),
        (
            search,
            top5(vec![SqlValue::Null, int(2)]),
            "per_model (argument 6) must be between 0 and 1",
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
        // mode and candidates.
        (
            search,
            top5(vec![text("topk"), int(0), text("fast")]),
            "mode (argument 7) must be 'exact', 'hnsw' or 'auto', got 'fast'",
        ),
        (
            search,
            top5(vec![SqlValue::Null, int(0), text("HNSW")]),
            "got 'HNSW'",
        ),
        (
            search,
            top5(vec![text("full"), int(0), text("hnsw")]),
            "mode 'hnsw' ranks by the metric 'blend' or 'topk' only, not by 'full'",
        ),
        // The blend's weight.
        (
            search,
            top5(vec![text("topk"), SqlValue::Null, text("hnsw"), int(0)]),
            "candidates (argument 8) must be between 1 and 4294967295, got 0",
        ),
        (
            "SELECT * FROM probelog_search_text(?1, ?2, 5, NULL, 'topk', 0, 'hnsw', '9')",
            vec![path(), blob(&hub.text)],
            "candidates (argument 8) must be an INTEGER, got TEXT",
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
    ];
    // Statements whose parameters, as far as they have any, are the index path (?1) and the
    // query vector (?2).
    let on_path_and_query: &[(&str, &str)] = &[
        // Missing arguments.
        (
            "SELECT * FROM probelog_search",
            "the index path and the query are required",
        ),
        (
            "SELECT * FROM probelog_search(?1)",
            "the index path and the query are required",
        ),
        // Entries.
        (
            "SELECT * FROM probelog_search_entry(?1, 0, 5, NULL, 'topk', 0, 2)",
            "exclude_same_model (argument 7) must be between 0 and 1",
        ),
        // mode and candidates; probelog_search has no exclude_same_model: its argument 7 is the
        // mode.
        (
            "SELECT * FROM probelog_search(?1, ?2, 5, NULL, 'topk', 0, 1)",
            "mode (argument 7) must be 'exact', 'hnsw' or 'auto', got INTEGER",
        ),
        // The blend's weight.
        (
            "SELECT * FROM probelog_search(?1, ?2, 5, NULL, 'blend', 0, 'exact', NULL, -1)",
            "blend_weight (argument 9) must be a number from 0 to 1e+06, got -1",
        ),
        (
            "SELECT * FROM probelog_search_entry(?1, 0, 5, NULL, NULL, 0, 0, NULL, NULL, '2')",
            "blend_weight (argument 10) must be a number, got TEXT",
        ),
        (
            "SELECT * FROM probelog_models(?1, ?2, 5, NULL, 'topk', NULL, NULL, 1.5)",
            "blend_weight (argument 8) only applies to the metric 'blend', not to 'topk'",
        ),
        (
            "SELECT * FROM probelog_search(?1, ?2, 5, NULL, NULL, 0, NULL, NULL, 3e38)",
            "must be a number from 0 to 1e+06, got 3e+38",
        ),
        (
            "SELECT * FROM probelog_models(?1, ?2, 5, NULL, 'model', 'hnsw')",
            "probelog_models: mode 'hnsw' ranks by the metric 'blend' or 'topk' only, not by \
             'model'",
        ),
        (
            "SELECT * FROM probelog_models(?1, ?2, 5, NULL, 'topk', 3)",
            "mode (argument 6) must be 'exact', 'hnsw' or 'auto', got INTEGER",
        ),
        (
            "SELECT * FROM probelog_search_entry(?1, 0, 5, NULL, 'topk', 0, 0, 'approx')",
            "mode (argument 8) must be",
        ),
        (
            "SELECT * FROM probelog_search_entry(?1, 0, 5, NULL, 'topk', 0, 0, 'hnsw', -1)",
            "candidates (argument 9) must be between 1",
        ),
        (
            "SELECT * FROM probelog_models(?1, ?2, 5, NULL, 'topk', 'exact', 2.5)",
            "candidates (argument 7) must be an INTEGER, got REAL",
        ),
        // Scalar functions.
        (
            "SELECT probelog_descriptor(?1, 68)",
            "entry 68 does not exist",
        ),
        ("SELECT probelog_descriptor(?1, 'x')", "must be an INTEGER"),
        ("SELECT probelog_descriptor(3, 1)", "must be TEXT"),
        (
            "SELECT probelog_f32('[1, nan]')",
            "value 2 is not a finite number",
        ),
        ("SELECT probelog_f32('[1, 2')", "expected numbers"),
        ("SELECT probelog_f32('')", "expected numbers"),
        ("SELECT probelog_f32(x'00')", "must be TEXT"),
    ];
    for (sql, want) in on_path_and_query {
        let used = (1..=2).filter(|i| sql.contains(&format!("?{i}"))).count();
        cases.push((
            sql,
            [path(), query()].into_iter().take(used).collect(),
            want,
        ));
    }
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
