//! Filters (`filter`, `model_name`) and deletes through SQL return what the CLI returns.

use super::errors::sql_error;
use super::*;

/// A filter argument, a model_name argument, the CLI's flags and the models they keep.
type FilterCase<'a> = (Option<&'a str>, Option<&'a str>, &'a [&'a str], &'a [u64]);

/// Borrowed arguments.
fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// `probelog-tool search ... --json` on a zoo, with `extra` flags: its rows.
fn zoo_cli(zoo: &Zoo, query: &[&str], extra: &[&str]) -> Vec<Row> {
    cli_rows(&tool_search(&zoo.index, &[query, extra].concat()))
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
                assert_eq!(got, zoo_cli(&zoo, &q_vec, &refs(&with(HNSW_TOP5_FLAGS))));
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
        let filter_call = "probelog_search(?1, ?2, 5, NULL, NULL, NULL, NULL, NULL, NULL, ?3)";
        let model_name_call = "probelog_models(?1, ?2, 5, NULL, NULL, NULL, NULL, NULL, NULL, ?3)";
        let sql_text = |t: &str| SqlValue::Text(t.into());
        let bad: &[(&str, SqlValue, &str)] = &[
            (
                filter_call,
                sql_text("family"),
                "filter (argument 10): condition 1, 'family'",
            ),
            (filter_call, sql_text("family=a&"), "condition 2, ''"),
            (filter_call, sql_text("=a"), "non-empty key"),
            (filter_call, sql_text("a=b!=c"), "condition 1"),
            (
                filter_call,
                SqlValue::Integer(5),
                "filter (argument 10) must be TEXT",
            ),
            (
                model_name_call,
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
