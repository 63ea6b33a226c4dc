//! Shorthand shared by the modules of edge cases (`destination_paths`,
//! `odd_input`, `private_data`, `cursors`, `reserved_names`,
//! `hostile_names`, `failed_sources`): runs of the binary that fail at the
//! hang guard instead of hanging, configs and catalogs with declared
//! properties, and reading back where a stream landed.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::{global_state, lines, record, Harness, Run, HANG_GUARD};

/// The `typed_output` modes that make typed relations.
pub const MODES: [&str; 2] = ["views", "tables"];

/// `check`, with extra environment variables.
pub fn check_env(h: &Harness, env: &[(&str, &str)]) -> Run {
    let config = h.config_path();
    h.exec(
        &["check", "--config", config.to_str().unwrap()],
        b"",
        env,
        HANG_GUARD,
    )
}

/// `write` of `input`, with extra environment variables.
pub fn write_env(h: &Harness, input: &str, env: &[(&str, &str)]) -> Run {
    h.exec(&h.write_args(), input.as_bytes(), env, HANG_GUARD)
}

pub fn check(h: &Harness) -> Run {
    check_env(h, &[])
}

pub fn write(h: &Harness, input: &str) -> Run {
    write_env(h, input, &[])
}

/// The `CONNECTION_STATUS` of a `check` run: status and message.
pub fn status(run: &Run) -> (String, String) {
    run.assert_ok();
    assert_eq!(run.messages.len(), 1, "exactly one message: {run:?}");
    let s = &run.messages[0]["connectionStatus"];
    (
        s["status"].as_str().unwrap().to_string(),
        s["message"].as_str().unwrap_or("").to_string(),
    )
}

/// A `check` that fails with a message containing `needle`.
pub fn assert_check_fails(run: &Run, needle: &str, case: &str) {
    let (s, m) = status(run);
    assert_eq!(s, "FAILED", "{case}: {m}");
    assert!(m.contains(needle), "{case}: {m:?} lacks {needle:?}");
}

/// A `write` that fails with one `config_error` and echoes no state; returns
/// the error message.
pub fn assert_config_error(run: &Run, case: &str) -> String {
    assert_ne!(run.code, Some(0), "{case}: {run:?}");
    let e = run.error();
    assert_eq!(e["failure_type"], "config_error", "{case}: {e}");
    assert!(run.states().is_empty(), "{case}: a state was echoed");
    e["message"].as_str().unwrap().to_string()
}

/// A harness whose config has `extra` keys beside its `destination_path`.
pub fn harness_with(extra: Value) -> Harness {
    let h = Harness::new();
    let mut config = json!({"destination_path": h.db_path().to_str().unwrap()});
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    h.write_config(config);
    h
}

pub fn mode_harness(mode: &str) -> Harness {
    harness_with(json!({"typed_output": mode}))
}

pub fn set_path(h: &Harness, path: &str) {
    h.write_config(json!({ "destination_path": path }));
}

/// A configured stream with declared properties.
pub fn stream(name: &str, ns: Option<&str>, mode: &str, properties: Value) -> Value {
    let mut s = json!({"name": name, "json_schema": {"type": "object", "properties": properties}});
    if let Some(ns) = ns {
        s["namespace"] = json!(ns);
    }
    json!({"stream": s, "sync_mode": "incremental", "destination_sync_mode": mode})
}

/// An `append_dedup` stream keyed by `id`.
pub fn dedup_stream(name: &str, ns: Option<&str>, properties: Value, cursor: Value) -> Value {
    let mut s = stream(name, ns, "append_dedup", properties);
    s["primary_key"] = json!([["id"]]);
    s["cursor_field"] = cursor;
    s
}

pub fn catalog(streams: Vec<Value>) -> Value {
    json!({ "streams": streams })
}

pub fn ns_record(ns: &str, stream: &str, emitted_at: i64, data: &str) -> String {
    format!(
        r#"{{"type":"RECORD","record":{{"namespace":{},"stream":{},"emitted_at":{emitted_at},"data":{data}}}}}"#,
        json!(ns),
        json!(stream)
    )
}

/// One record and one state for stream `s`.
pub fn one_record() -> String {
    lines(&[record("s", 1, r#"{"n":1}"#), global_state(1)])
}

pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

pub fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", ident(schema), ident(name))
}

/// Every column of every row as text, which makes DuckDB compute each typed
/// value; panics with the query and DuckDB's error if that fails. Returns the
/// number of rows.
pub fn select_all(h: &Harness, relation: &str) -> usize {
    let conn = h.db();
    let sql = format!("SELECT CAST(COLUMNS(*) AS VARCHAR) FROM {relation}");
    let mut stmt = conn.prepare(&sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    let mut rows = stmt.query([]).unwrap_or_else(|e| panic!("{sql}: {e}"));
    let mut n = 0;
    while let Some(row) = rows.next().unwrap_or_else(|e| panic!("{sql}: {e}")) {
        for i in 0..row.as_ref().column_count() {
            let _: Option<String> = row.get(i).unwrap();
        }
        n += 1;
    }
    n
}

/// Single-column text rows (NULL as `NULL`).
pub fn texts(h: &Harness, sql: &str) -> Vec<String> {
    h.strings(sql)
        .into_iter()
        .map(|r| r[0].clone().unwrap_or_else(|| "NULL".into()))
        .collect()
}

/// Two-column text rows (NULL as `NULL`).
pub fn pairs(h: &Harness, sql: &str) -> Vec<(String, String)> {
    h.strings(sql)
        .into_iter()
        .map(|r| {
            let text = |v: &Option<String>| v.clone().unwrap_or_else(|| "NULL".into());
            (text(&r[0]), text(&r[1]))
        })
        .collect()
}

/// Where a stream landed, from the connector's registries.
#[derive(Debug)]
pub struct Located {
    /// Schema name as recorded.
    pub schema: String,
    /// The quoted, qualified raw table.
    pub raw: String,
    /// The quoted, qualified typed relation, if one is recorded.
    pub typed: Option<String>,
}

/// The registries, keyed by (namespace, name).
pub fn locate(h: &Harness) -> HashMap<(String, String), Located> {
    let key = |text: &str| {
        let v: Value = serde_json::from_str(text).unwrap();
        (
            v[0].as_str().unwrap_or("").to_string(),
            v[1].as_str().unwrap().to_string(),
        )
    };
    let mut typed = HashMap::new();
    for r in h.strings(
        "SELECT stream_key, schema_name, relation_name FROM _airbyte_internal.typed_relations",
    ) {
        let [Some(k), Some(schema), Some(name)] = &r[..] else {
            continue;
        };
        typed.insert(key(k), qualified(schema, name));
    }
    let mut out = HashMap::new();
    for r in
        h.strings("SELECT stream_key, schema_name, table_name FROM _airbyte_internal.stream_tables")
    {
        let [Some(k), Some(schema), Some(table)] = &r[..] else {
            continue;
        };
        let k = key(k);
        out.insert(
            k.clone(),
            Located {
                schema: schema.clone(),
                raw: qualified(schema, table),
                typed: typed.remove(&k),
            },
        );
    }
    out
}

pub fn pairs_of(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}
