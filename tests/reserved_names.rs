//! Names DuckDB resolves specially: namespaces it reserves (`temp`,
//! `system`, `main`, `information_schema`, ...) as namespaces or as the
//! default schema, every DuckDB keyword as namespace and stream name, a file
//! named like a schema (its catalog takes that name), and macros in the file
//! named like the functions the connector calls. Each stream lands in its
//! own schema and table, and every relation reads.

use std::collections::BTreeSet;

use serde_json::json;

use crate::util::cases::{
    catalog, check, dedup_stream, harness_with, locate, mode_harness, ns_record, one_record,
    qualified, select_all, set_path, status, stream, write,
};
use crate::util::{catalog_of, global_state, lines, record, Harness};

/// Namespaces DuckDB treats specially, and the schema each lands in
/// (compared case-insensitively, as DuckDB does).
const RESERVED: [(&str, &str); 9] = [
    ("temp", "_temp"),
    ("system", "_system"),
    ("memory", "_memory"),
    ("destination", "_destination"),
    ("information_schema", "_information_schema"),
    ("pg_catalog", "_pg_catalog"),
    ("main", "main"),
    ("MAIN", "main"),
    ("Temp", "_temp"),
];

#[test]
fn reserved_namespaces_land_in_their_own_schemas() {
    let h = Harness::new();
    let streams: Vec<(String, &str)> = RESERVED
        .iter()
        .enumerate()
        .map(|(i, (ns, _))| (format!("s{i}"), *ns))
        .collect();
    h.write_catalog(&catalog(
        streams
            .iter()
            .map(|(name, ns)| stream(name, Some(ns), "append", json!({"i": {"type": "integer"}})))
            .collect(),
    ));
    let mut parts: Vec<String> = streams
        .iter()
        .enumerate()
        .map(|(i, (name, ns))| ns_record(ns, name, 1, &format!(r#"{{"i":{i}}}"#)))
        .collect();
    parts.push(global_state(1));
    write(&h, &lines(&parts)).assert_ok();

    let located = locate(&h);
    for ((name, ns), (_, schema)) in streams.iter().zip(RESERVED) {
        let l = &located[&(ns.to_string(), name.clone())];
        assert_eq!(l.schema.to_lowercase(), schema, "namespace {ns}");
        assert_eq!(
            h.count(&qualified(schema, &format!("_airbyte_raw_{name}"))),
            1,
            "namespace {ns}"
        );
        assert_eq!(
            select_all(&h, &qualified(schema, name)),
            1,
            "namespace {ns}"
        );
    }
}

#[test]
fn reserved_default_schemas_are_mapped() {
    for (schema, lands) in [
        ("temp", "_temp"),
        ("information_schema", "_information_schema"),
        ("pg_catalog", "_pg_catalog"),
    ] {
        let h = harness_with(json!({ "schema": schema }));
        let (s, m) = status(&check(&h));
        assert_eq!(s, "SUCCEEDED", "{schema}: {m}");
        h.write_catalog(&catalog_of(&[("s", None)], "append"));
        write(&h, &one_record()).assert_ok();
        assert_eq!(h.count(&qualified(lands, "_airbyte_raw_s")), 1, "{schema}");
        assert_eq!(select_all(&h, &qualified(lands, "s")), 1, "{schema}");
    }
}

#[test]
fn every_duckdb_keyword_works_as_namespace_and_stream_name() {
    let keywords: Vec<String> = {
        let conn = duckdb::Connection::open_in_memory().unwrap();
        let mut stmt = conn
            .prepare("SELECT keyword_name FROM duckdb_keywords()")
            .unwrap();
        let names = stmt.query_map([], |r| r.get(0)).unwrap();
        names.map(|n| n.unwrap()).collect()
    };
    assert!(keywords.len() > 100, "{} keywords", keywords.len());
    let names: BTreeSet<String> = keywords
        .into_iter()
        .chain(RESERVED.iter().map(|(ns, _)| ns.to_string()))
        .collect();

    let h = Harness::new();
    h.write_catalog(&catalog(
        names
            .iter()
            .map(|n| stream(n, Some(n), "append", json!({})))
            .collect(),
    ));
    let mut parts: Vec<String> = names
        .iter()
        .map(|n| ns_record(n, n, 1, r#"{"k":1}"#))
        .collect();
    parts.push(global_state(1));
    let run = write(&h, &lines(&parts));
    run.assert_ok();

    let located = locate(&h);
    let conn = h.db();
    for n in &names {
        let l = located
            .get(&(n.clone(), n.clone()))
            .unwrap_or_else(|| panic!("{n}: not in the registry"));
        let count: i64 = conn
            .query_row(&format!("SELECT count(*) FROM {}", l.raw), [], |r| r.get(0))
            .unwrap_or_else(|e| panic!("{n}: {}: {e}", l.raw));
        assert_eq!(count, 1, "{n}: {}", l.raw);
    }
}

#[test]
fn views_resolve_when_the_file_is_named_like_a_schema() {
    let h = Harness::new();
    let path = h.path("sales.duckdb");
    set_path(&h, path.to_str().unwrap());
    h.write_catalog(&catalog(vec![stream(
        "users",
        Some("sales"),
        "append",
        json!({"n": {"type": "integer"}}),
    )]));
    write(
        &h,
        &lines(&[
            ns_record("sales", "users", 1, r#"{"n":7}"#),
            global_state(1),
        ]),
    )
    .assert_ok();
    // Opened as itself, the file's catalog is `sales`, like the schema.
    let conn = duckdb::Connection::open(&path).unwrap();
    let n: i64 = conn
        .query_row("SELECT n FROM sales.sales.users", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 7);
}

#[test]
fn a_macro_in_the_file_does_not_replace_the_functions_the_connector_calls() {
    let h = mode_harness("tables");
    h.write_catalog(&catalog(vec![dedup_stream(
        "s",
        None,
        json!({"id": {"type": "integer"}}),
        json!(["id"]),
    )]));
    write(
        &h,
        &lines(&[record("s", 1, r#"{"id":1}"#), global_state(1)]),
    )
    .assert_ok();
    duckdb::Connection::open(h.db_path())
        .unwrap()
        .execute_batch(
            "CREATE MACRO main.json_type(x) AS 'NULL'; \
             CREATE MACRO main.duckdb_tables() AS TABLE SELECT 1 AS x",
        )
        .unwrap();
    write(
        &h,
        &lines(&[record("s", 2, r#"{"id":2}"#), global_state(2)]),
    )
    .assert_ok();
    assert_eq!(h.count("main.s"), 2);
}
