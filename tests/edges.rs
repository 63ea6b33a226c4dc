//! Edge cases found in review, each pinned by a run of the real binary:
//! files at `destination_path` that are not DuckDB databases (CSV, JSON,
//! SQLite, Parquet, FIFOs, devices) and the local root confinement; lone
//! surrogate escapes in record data and metadata; record contents kept out of
//! every error and log line; CDC tombstones and dedup cursors in typed
//! relations; namespaces and stream names that DuckDB reserves, that
//! normalize to nothing, or that look like the connector's own bookkeeping;
//! a failed source during an overwrite; clearer configuration errors; and
//! STATE and data lines with duplicate keys or surrounding whitespace.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::util::{catalog_of, global_state, lines, parse_stdout, record, Harness, Run, BIN};

const MODES: [&str; 2] = ["views", "tables"];

/// Every run here must end well within this; a hang fails the test.
const LIMIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// Running the binary
// ---------------------------------------------------------------------------

fn check_env(h: &Harness, env: &[(&str, &str)]) -> Run {
    let config = h.config_path();
    h.exec(
        &["check", "--config", config.to_str().unwrap()],
        b"",
        env,
        LIMIT,
    )
}

fn write_env(h: &Harness, input: &str, env: &[(&str, &str)]) -> Run {
    h.exec(&h.write_args(), input.as_bytes(), env, LIMIT)
}

fn check(h: &Harness) -> Run {
    check_env(h, &[])
}

fn write(h: &Harness, input: &str) -> Run {
    write_env(h, input, &[])
}

/// The `CONNECTION_STATUS` of a `check` run: status and message.
fn status(run: &Run) -> (String, String) {
    run.assert_ok();
    assert_eq!(run.messages.len(), 1, "exactly one message: {run:?}");
    let s = &run.messages[0]["connectionStatus"];
    (
        s["status"].as_str().unwrap().to_string(),
        s["message"].as_str().unwrap_or("").to_string(),
    )
}

/// A `check` that fails with a message containing `needle`.
fn assert_check_fails(run: &Run, needle: &str, case: &str) {
    let (s, m) = status(run);
    assert_eq!(s, "FAILED", "{case}: {m}");
    assert!(m.contains(needle), "{case}: {m:?} lacks {needle:?}");
}

/// A `write` that fails with one `config_error` and echoes no state; returns
/// the error message.
fn assert_config_error(run: &Run, case: &str) -> String {
    assert_ne!(run.code, Some(0), "{case}: {run:?}");
    let e = run.error();
    assert_eq!(e["failure_type"], "config_error", "{case}: {e}");
    assert!(run.states().is_empty(), "{case}: a state was echoed");
    e["message"].as_str().unwrap().to_string()
}

// ---------------------------------------------------------------------------
// Configs, catalogs and messages
// ---------------------------------------------------------------------------

/// A harness whose config has `extra` keys beside its `destination_path`.
fn harness_with(extra: Value) -> Harness {
    let h = Harness::new();
    let mut config = json!({"destination_path": h.db_path().to_str().unwrap()});
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    h.write_config(config);
    h
}

fn mode_harness(mode: &str) -> Harness {
    harness_with(json!({"typed_output": mode}))
}

fn set_path(h: &Harness, path: &str) {
    h.write_config(json!({ "destination_path": path }));
}

/// A configured stream with declared properties.
fn stream(name: &str, ns: Option<&str>, mode: &str, properties: Value) -> Value {
    let mut s = json!({"name": name, "json_schema": {"type": "object", "properties": properties}});
    if let Some(ns) = ns {
        s["namespace"] = json!(ns);
    }
    json!({"stream": s, "sync_mode": "incremental", "destination_sync_mode": mode})
}

/// An `append_dedup` stream keyed by `id`.
fn dedup_stream(name: &str, ns: Option<&str>, properties: Value, cursor: Value) -> Value {
    let mut s = stream(name, ns, "append_dedup", properties);
    s["primary_key"] = json!([["id"]]);
    s["cursor_field"] = cursor;
    s
}

fn catalog(streams: Vec<Value>) -> Value {
    json!({ "streams": streams })
}

fn ns_record(ns: &str, stream: &str, emitted_at: i64, data: &str) -> String {
    format!(
        r#"{{"type":"RECORD","record":{{"namespace":{},"stream":{},"emitted_at":{emitted_at},"data":{data}}}}}"#,
        json!(ns),
        json!(stream)
    )
}

/// One record and one state for stream `s`.
fn one_record() -> String {
    lines(&[record("s", 1, r#"{"n":1}"#), global_state(1)])
}

// ---------------------------------------------------------------------------
// Reading the result
// ---------------------------------------------------------------------------

fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", ident(schema), ident(name))
}

/// Every column of every row as text, which makes DuckDB compute each typed
/// value; panics with the query and DuckDB's error if that fails. Returns the
/// number of rows.
fn select_all(h: &Harness, relation: &str) -> usize {
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
fn texts(h: &Harness, sql: &str) -> Vec<String> {
    h.strings(sql)
        .into_iter()
        .map(|r| r[0].clone().unwrap_or_else(|| "NULL".into()))
        .collect()
}

/// Two-column text rows (NULL as `NULL`).
fn pairs(h: &Harness, sql: &str) -> Vec<(String, String)> {
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
struct Located {
    /// Schema name as recorded.
    schema: String,
    /// The quoted, qualified raw table.
    raw: String,
    /// The quoted, qualified typed relation, if one is recorded.
    typed: Option<String>,
}

/// The registries, keyed by (namespace, name).
fn locate(h: &Harness) -> HashMap<(String, String), Located> {
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

fn open_ro(path: &Path) -> duckdb::Connection {
    let config = duckdb::Config::default()
        .access_mode(duckdb::AccessMode::ReadOnly)
        .unwrap();
    duckdb::Connection::open_with_flags(path, config).unwrap()
}

fn count_in(path: &Path, table: &str) -> i64 {
    open_ro(path)
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

// ---------------------------------------------------------------------------
// 1. Foreign files at destination_path
// ---------------------------------------------------------------------------

/// `check` and `write` both refuse the file, and its bytes stay as they were.
fn foreign_file_case(name: &str, bytes: &[u8]) {
    let h = Harness::new();
    let path = h.path(name);
    std::fs::write(&path, bytes).unwrap();
    set_path(&h, path.to_str().unwrap());
    h.write_catalog(&catalog_of(&[("s", None)], "append"));

    assert_check_fails(&check(&h), "not a DuckDB database", name);
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "{name}: check changed it"
    );

    let run = write(&h, &one_record());
    assert_config_error(&run, name);
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "{name}: write changed it"
    );
}

/// Deterministic pseudo-random bytes.
fn noise(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn foreign_csv_file_is_refused_and_untouched() {
    foreign_file_case("data.csv", b"a,b\n1,2\n");
}

#[test]
fn foreign_json_file_is_refused_and_untouched() {
    foreign_file_case("data.json", br#"{"users": [{"id": 1, "name": "a"}]}"#);
}

#[test]
fn foreign_random_bytes_file_is_refused_and_untouched() {
    foreign_file_case("noise.bin", &noise(4096));
}

#[test]
fn foreign_text_file_is_refused_and_untouched() {
    let text: String = "lorem ipsum dolor sit amet\n"
        .chars()
        .cycle()
        .take(4096)
        .collect();
    foreign_file_case("notes.txt", text.as_bytes());
}

#[test]
fn foreign_sqlite_file_is_refused_and_untouched() {
    let mut bytes = b"SQLite format 3\0".to_vec();
    bytes.resize(4096, 0);
    foreign_file_case("data.sqlite", &bytes);
}

#[test]
fn foreign_parquet_file_is_refused_and_untouched() {
    let mut bytes = b"PAR1".to_vec();
    bytes.extend_from_slice(&noise(1024));
    bytes.extend_from_slice(b"PAR1");
    foreign_file_case("data.parquet", &bytes);
}

/// A path that is not a regular file: `check` fails (a blocking open of a
/// FIFO would hang it until the hang guard), and `write` is a config error.
fn special_file_case(path: &Path) {
    let h = Harness::new();
    set_path(&h, path.to_str().unwrap());
    h.write_catalog(&catalog_of(&[("s", None)], "append"));
    let case = path.display().to_string();
    assert_check_fails(&check(&h), "not a regular file", &case);
    assert_config_error(&write(&h, &one_record()), &case);
}

#[test]
fn fifo_destination_is_refused_without_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe.duckdb");
    let ok = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(ok.success(), "mkfifo failed");
    special_file_case(&fifo);
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
}

#[test]
fn dev_null_destination_is_refused() {
    special_file_case(Path::new("/dev/null"));
}

#[test]
fn empty_existing_file_is_accepted_as_a_new_database() {
    let h = Harness::new();
    std::fs::write(h.db_path(), b"").unwrap();
    h.write_catalog(&catalog_of(&[("s", None)], "append"));
    write(&h, &one_record()).assert_ok();
    assert_eq!(h.count("main._airbyte_raw_s"), 1);

    let h = Harness::new();
    std::fs::write(h.db_path(), b"").unwrap();
    let (s, m) = status(&check(&h));
    assert_eq!(s, "SUCCEEDED", "{m}");
}

// ---------------------------------------------------------------------------
// 2. Lone surrogates
// ---------------------------------------------------------------------------

/// (record data as sent, the top-level properties it damages.)
const SURROGATE_DATA: [(&str, &[&str]); 6] = [
    (r#"{"id":1,"a":"x\ud800y"}"#, &["a"]),
    (r#"{"id":2,"b":{"n":["\udc00",1]}}"#, &["b"]),
    (r#"{"id":3,"a":"\uD83D"}"#, &["a"]),
    (r#"{"id":4,"\ud800k":1}"#, &["\u{FFFD}k"]),
    // Carries a lone surrogate in meta.changes instead (sent by hand below).
    (r#"{"id":5,"a":"ok"}"#, &[]),
    // A valid pair (an emoji): untouched.
    (r#"{"id":6,"a":"\ud83d\ude00"}"#, &[]),
];

fn surrogate_input() -> String {
    let mut parts = Vec::new();
    for (i, (data, _)) in SURROGATE_DATA.iter().enumerate() {
        let at = i as i64 + 1;
        if at == 5 {
            parts.push(format!(
                r#"{{"type":"RECORD","record":{{"stream":"s","emitted_at":{at},"data":{data},"meta":{{"changes":[{{"field":"a\ud800","change":"NULLED","reason":"SOURCE_RETRIEVAL_ERROR"}}]}}}}}}"#
            ));
        } else {
            parts.push(record("s", at, data));
        }
    }
    parts.push(global_state(1));
    lines(&parts)
}

fn surrogate_catalog() -> Value {
    catalog(vec![stream(
        "s",
        None,
        "append",
        json!({"id": {"type": "integer"}, "a": {"type": "string"}, "b": {"type": "object"}}),
    )])
}

/// Every stored row: valid JSON, repaired text, and the expected changes.
fn assert_surrogates_repaired(h: &Harness, mode: &str) {
    let raw = "main._airbyte_raw_s";
    let total = h.count(raw);
    assert_eq!(
        h.count(&format!(
            "{raw} WHERE json_valid(_airbyte_data) AND json_valid(_airbyte_meta)"
        )),
        total,
        "{mode}: invalid JSON stored"
    );
    assert_eq!(
        h.count(&format!(
            "(SELECT json_extract(_airbyte_data, '$') AS d, json_extract(_airbyte_meta, '$') AS m \
             FROM {raw}) WHERE d IS NOT NULL AND m IS NOT NULL"
        )),
        total,
        "{mode}"
    );
    let rows = h.strings(&format!(
        "SELECT epoch_ms(_airbyte_emitted_at)::VARCHAR, _airbyte_data::VARCHAR, \
         _airbyte_meta::VARCHAR FROM {raw}"
    ));
    assert_eq!(rows.len() as i64, total, "{mode}");
    for row in &rows {
        let [Some(at), Some(data), Some(meta)] = &row[..] else {
            panic!("{mode}: NULL in {row:?}");
        };
        let (sent, fields) = SURROGATE_DATA[at.parse::<usize>().unwrap() - 1];
        let expected = sent
            .replace(r"\ud800", r"\ufffd")
            .replace(r"\udc00", r"\ufffd")
            .replace(r"\uD83D", r"\ufffd");
        assert_eq!(data, &expected, "{mode}: data text");
        let meta: Value = serde_json::from_str(meta)
            .unwrap_or_else(|e| panic!("{mode}: meta {meta:?} does not parse: {e}"));
        let changes = meta["changes"].as_array().unwrap();
        for field in fields {
            let change = json!({"field": field, "change": "TRUNCATED",
                "reason": "DESTINATION_SERIALIZATION_ERROR"});
            assert!(changes.contains(&change), "{mode}: {sent}: {meta}");
        }
        if sent.contains(r#""id":5"#) {
            assert_eq!(changes[0]["change"], "NULLED", "{mode}: {meta}");
            assert_eq!(
                changes[0]["reason"], "SOURCE_RETRIEVAL_ERROR",
                "{mode}: {meta}"
            );
            assert_eq!(changes[0]["field"], "a\u{FFFD}", "{mode}: {meta}");
        }
        if fields.is_empty() && !sent.contains(r#""id":5"#) {
            assert_eq!(changes.len(), 0, "{mode}: {sent}: {meta}");
        }
    }
}

#[test]
fn lone_surrogates_are_repaired_with_a_change_and_keep_every_query_working() {
    for mode in MODES {
        let h = mode_harness(mode);
        h.write_catalog(&surrogate_catalog());
        write(&h, &surrogate_input()).assert_ok();
        assert_surrogates_repaired(&h, mode);
        assert_eq!(select_all(&h, "main.s"), 6, "{mode}");
        let a = texts(&h, "SELECT a FROM main.s WHERE id = 6");
        assert_eq!(a, vec!["\u{1F600}".to_string()], "{mode}: the valid pair");
    }
}

#[test]
fn lone_surrogates_in_typed_tables_survive_a_second_sync() {
    let h = mode_harness("tables");
    h.write_catalog(&surrogate_catalog());
    write(&h, &surrogate_input()).assert_ok();
    write(&h, &surrogate_input()).assert_ok();
    assert_eq!(h.count("main._airbyte_raw_s"), 12);
    assert_surrogates_repaired(&h, "tables, second sync");
    assert_eq!(select_all(&h, "main.s"), 12);
}

// ---------------------------------------------------------------------------
// 3. No record contents in errors or logs
// ---------------------------------------------------------------------------

const SENTINEL: &str = "SENTINEL_7f3a9";

/// A run with debug logging whose output must not quote record contents.
fn sentinel_run(h: &Harness, input: &str, case: &str) -> Run {
    let run = write_env(h, input, &[("RUST_LOG", "debug")]);
    assert!(
        !run.stdout.contains(SENTINEL),
        "{case}: record contents on stdout:\n{}",
        run.stdout
    );
    assert!(
        !run.stderr.contains(SENTINEL),
        "{case}: record contents on stderr:\n{}",
        run.stderr
    );
    run
}

fn sentinel_data() -> String {
    format!(r#"{{"secret":"{SENTINEL}"}}"#)
}

#[test]
fn duplicate_key_error_from_a_user_table_does_not_quote_the_record() {
    let h = Harness::new();
    {
        let conn = duckdb::Connection::open(h.db_path()).unwrap();
        conn.execute_batch(
            "CREATE TABLE main._airbyte_raw_s (_airbyte_ab_id VARCHAR, \
             _airbyte_emitted_at TIMESTAMPTZ, _airbyte_data JSON PRIMARY KEY, \
             _airbyte_meta JSON, _airbyte_generation_id BIGINT)",
        )
        .unwrap();
    }
    h.write_catalog(&catalog_of(&[("s", None)], "append"));
    let data = sentinel_data();
    let input = lines(&[
        record("s", 1, &data),
        record("s", 1, &data),
        global_state(1),
    ]);
    let run = sentinel_run(&h, &input, "duplicate key");
    assert_ne!(run.code, Some(0), "{run:?}");
    run.error();
}

#[test]
fn bad_json_line_error_does_not_quote_the_record() {
    let h = Harness::new();
    h.write_catalog(&catalog_of(&[("s", None)], "append"));
    let input = lines(&[
        record("s", 1, &sentinel_data()),
        format!(
            r#"{{"type":"RECORD","record":{{"stream":"s","emitted_at":2,"data":{{"k":{SENTINEL}}}}}}}"#
        ),
    ]);
    let run = sentinel_run(&h, &input, "bad JSON");
    assert_ne!(run.code, Some(0), "{run:?}");
    assert!(run.error()["message"].as_str().unwrap().contains("line 2"));
}

#[test]
fn unknown_stream_error_does_not_quote_the_record() {
    let h = Harness::new();
    h.write_catalog(&catalog_of(&[("s", None)], "append"));
    let input = lines(&[record("other", 1, &sentinel_data()), global_state(1)]);
    let run = sentinel_run(&h, &input, "unknown stream");
    assert_config_error(&run, "unknown stream");
}

#[test]
fn emitted_at_out_of_range_error_does_not_quote_the_record() {
    let h = Harness::new();
    h.write_catalog(&catalog_of(&[("s", None)], "append"));
    let input = lines(&[record("s", i64::MAX, &sentinel_data()), global_state(1)]);
    let run = sentinel_run(&h, &input, "emitted_at");
    assert_ne!(run.code, Some(0), "{run:?}");
    run.error();
}

#[test]
fn lone_surrogate_repair_in_typed_tables_does_not_quote_the_record() {
    let h = mode_harness("tables");
    h.write_catalog(&catalog(vec![stream(
        "s",
        None,
        "append",
        json!({"k": {"type": "string"}}),
    )]));
    let input = lines(&[
        record("s", 1, &format!(r#"{{"k":"{SENTINEL}\ud800"}}"#)),
        global_state(1),
    ]);
    sentinel_run(&h, &input, "lone surrogate").assert_ok();
    assert_eq!(select_all(&h, "main.s"), 1);
}

// ---------------------------------------------------------------------------
// 4. CDC tombstones are per stream
// ---------------------------------------------------------------------------

#[test]
fn cdc_tombstones_are_per_stream_even_when_names_join_alike() {
    // ("a__b", "c") and ("a", "b__c") both read "a__b__c" when joined: a
    // tombstone kept under such a name would delete the other stream's key.
    let h = mode_harness("tables");
    let props = json!({"id": {"type": "integer"}, "updated": {"type": "integer"},
        "tag": {"type": "string"}, "_ab_cdc_deleted_at": {"type": "string"}});
    h.write_catalog(&catalog(vec![
        dedup_stream("c", Some("a__b"), props.clone(), json!(["updated"])),
        dedup_stream("b__c", Some("a"), props, json!(["updated"])),
    ]));
    let rows = |relation: &str| {
        pairs(
            &h,
            &format!("SELECT id::VARCHAR, tag FROM {relation} ORDER BY id"),
        )
    };
    let (abc, a_bc) = (r#""a__b"."c""#, r#""a"."b__c""#);

    let mut sync1 = Vec::new();
    for (ns, name) in [("a__b", "c"), ("a", "b__c")] {
        for id in [1, 2] {
            let data = format!(r#"{{"id":{id},"updated":1,"tag":"s1"}}"#);
            sync1.push(ns_record(ns, name, 1, &data));
        }
    }
    sync1.push(global_state(1));
    write(&h, &lines(&sync1)).assert_ok();
    assert_eq!(rows(abc), pairs_of(&[("1", "s1"), ("2", "s1")]));
    assert_eq!(rows(a_bc), pairs_of(&[("1", "s1"), ("2", "s1")]));

    // Sync 2: ("a__b", "c") deletes id 1.
    let delete = r#"{"id":1,"updated":2,"tag":"del","_ab_cdc_deleted_at":"2024-01-01T00:00:00Z"}"#;
    write(
        &h,
        &lines(&[ns_record("a__b", "c", 2, delete), global_state(2)]),
    )
    .assert_ok();
    assert_eq!(rows(abc), pairs_of(&[("2", "s1")]), "the delete applies");
    assert_eq!(
        rows(a_bc),
        pairs_of(&[("1", "s1"), ("2", "s1")]),
        "the other stream keeps id 1"
    );

    // Sync 3: ("a", "b__c") updates id 1 with a cursor below that delete's
    // (it ties with its own row and is later, so it wins there); ("a__b",
    // "c") gets an older id 1, which its delete still beats, and a new id 3.
    write(
        &h,
        &lines(&[
            ns_record("a__b", "c", 3, r#"{"id":1,"updated":1,"tag":"s3"}"#),
            ns_record("a__b", "c", 3, r#"{"id":3,"updated":3,"tag":"s3"}"#),
            ns_record("a", "b__c", 3, r#"{"id":1,"updated":1,"tag":"s3"}"#),
            global_state(3),
        ]),
    )
    .assert_ok();
    assert_eq!(rows(abc), pairs_of(&[("2", "s1"), ("3", "s3")]));
    assert_eq!(rows(a_bc), pairs_of(&[("1", "s3"), ("2", "s1")]));
}

// ---------------------------------------------------------------------------
// 5. Dedup cursors compare by JSON value
// ---------------------------------------------------------------------------

/// Syncs `records` (data, in arrival order, emitted_at ascending) into an
/// `append_dedup` stream in both modes; returns the typed `(id, tag)` rows,
/// which must be the same in both.
fn dedup_winners(properties: Value, cursor: Value, records: &[&str]) -> Vec<(String, String)> {
    let mut results = Vec::new();
    for mode in MODES {
        let h = mode_harness(mode);
        h.write_catalog(&catalog(vec![dedup_stream(
            "s",
            None,
            properties.clone(),
            cursor.clone(),
        )]));
        let mut parts: Vec<String> = records
            .iter()
            .enumerate()
            .map(|(i, d)| record("s", i as i64 + 1, d))
            .collect();
        parts.push(global_state(1));
        write(&h, &lines(&parts)).assert_ok();
        results.push(pairs(
            &h,
            "SELECT id::VARCHAR, tag::VARCHAR FROM main.s ORDER BY id",
        ));
    }
    assert_eq!(results[0], results[1], "views and tables disagree");
    results.remove(0)
}

fn pairs_of(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn dedup_nested_cursor_compares_numbers_not_text() {
    let props = json!({"id": {"type": "integer"}, "tag": {"type": "string"},
        "meta": {"type": "object", "properties": {"v": {"type": "integer"}}}});
    let winners = dedup_winners(
        props,
        json!(["meta", "v"]),
        &[
            r#"{"id":1,"meta":{"v":10},"tag":"ten"}"#,
            r#"{"id":1,"meta":{"v":9},"tag":"nine"}"#,
        ],
    );
    assert_eq!(winners, pairs_of(&[("1", "ten")]));
}

#[test]
fn dedup_undeclared_cursor_compares_numbers_not_text() {
    let props = json!({"id": {"type": "integer"}, "tag": {"type": "string"}});
    let winners = dedup_winners(
        props,
        json!(["v"]),
        &[
            r#"{"id":1,"v":10,"tag":"ten"}"#,
            r#"{"id":1,"v":9,"tag":"nine"}"#,
        ],
    );
    assert_eq!(winners, pairs_of(&[("1", "ten")]));
}

#[test]
fn dedup_undeclared_timestamp_cursor_compares_instants_not_text() {
    // 10:00+02:00 is 08:00Z, earlier than 09:00Z, though it sorts later as
    // text. Key 1 gets them in one order, key 2 in the other.
    let props = json!({"id": {"type": "integer"}, "tag": {"type": "string"}});
    let winners = dedup_winners(
        props,
        json!(["ts"]),
        &[
            r#"{"id":1,"ts":"2024-01-01T10:00:00+02:00","tag":"eight"}"#,
            r#"{"id":1,"ts":"2024-01-01T09:00:00Z","tag":"nine"}"#,
            r#"{"id":2,"ts":"2024-01-01T09:00:00Z","tag":"nine"}"#,
            r#"{"id":2,"ts":"2024-01-01T10:00:00+02:00","tag":"eight"}"#,
        ],
    );
    assert_eq!(winners, pairs_of(&[("1", "nine"), ("2", "nine")]));
}

// ---------------------------------------------------------------------------
// 6. Reserved namespaces
// ---------------------------------------------------------------------------

#[test]
fn dedup_cursors_keep_big_integers_exact_and_read_spaced_offsets_and_infinity() {
    let props = json!({"id": {"type": "integer"}, "tag": {"type": "string"}});
    // Two integers a DOUBLE cannot tell apart; the larger arrives first.
    let winners = dedup_winners(
        props.clone(),
        json!(["v"]),
        &[
            r#"{"id":1,"v":9007199254740993,"tag":"larger"}"#,
            r#"{"id":1,"v":9007199254740992,"tag":"smaller"}"#,
        ],
    );
    assert_eq!(winners, pairs_of(&[("1", "larger")]));
    // `10:00:00 +05:30` is 04:30Z, before 12:00Z; `infinity` beats both.
    let winners = dedup_winners(
        props,
        json!(["ts"]),
        &[
            r#"{"id":1,"ts":"2024-01-01T10:00:00 +05:30","tag":"early"}"#,
            r#"{"id":1,"ts":"2024-01-01T12:00:00Z","tag":"noon"}"#,
            r#"{"id":2,"ts":"infinity","tag":"forever"}"#,
            r#"{"id":2,"ts":"2024-01-01T12:00:00Z","tag":"noon"}"#,
        ],
    );
    assert_eq!(winners, pairs_of(&[("1", "noon"), ("2", "forever")]));
}

#[test]
fn a_timestamp_with_a_zone_name_is_nulled_not_read_as_utc() {
    for mode in MODES {
        let h = mode_harness(mode);
        h.write_catalog(&catalog(vec![stream(
            "s",
            None,
            "append",
            json!({"ts": {"type": "string", "format": "date-time"}}),
        )]));
        let input = lines(&[
            record("s", 1, r#"{"ts":"2024-01-01T10:00:00 EST"}"#),
            record("s", 2, r#"{"ts":"2024-01-01T10:00+05:30"}"#),
            global_state(1),
        ]);
        write(&h, &input).assert_ok();
        let got = texts(
            &h,
            "SELECT coalesce(ts::VARCHAR, 'NULL') || ' ' || \
             (_airbyte_meta->'changes')::VARCHAR FROM main.s ORDER BY _airbyte_emitted_at",
        );
        assert!(
            got[0].starts_with("NULL ") && got[0].contains("NULLED"),
            "{mode}: {got:?}"
        );
        assert!(
            got[1].starts_with("2024-01-01 04:30:00+00 "),
            "{mode}: {got:?}"
        );
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

#[test]
fn a_folder_or_a_stray_file_at_the_wal_path_is_a_config_error() {
    let h = Harness::new();
    h.write_catalog(&catalog_of(&[("s", None)], "append"));
    let wal = h.path("db.duckdb.wal");
    std::fs::create_dir(&wal).unwrap();
    assert_check_fails(&check(&h), "db.duckdb.wal", "folder at the WAL path");
    assert_config_error(&write(&h, &one_record()), "folder at the WAL path");
    std::fs::remove_dir(&wal).unwrap();
    std::fs::write(&wal, "a,b\n1,2\n").unwrap();
    assert_check_fails(&check(&h), "db.duckdb.wal", "stray WAL file");
    assert_config_error(&write(&h, &one_record()), "stray WAL file");
    assert_eq!(
        std::fs::read(&wal).unwrap(),
        b"a,b\n1,2\n",
        "left untouched"
    );
}

#[test]
fn remote_urls_are_refused_and_lone_surrogates_in_the_catalog_are_taken() {
    let h = Harness::new();
    h.write_catalog(&catalog_of(&[("s", None)], "append"));
    let cwd = h.path("cwd");
    for url in ["s3://bucket/x.duckdb", "https://host/x.duckdb"] {
        set_path(&h, url);
        assert_check_fails(&check(&h), "URL", url);
        assert_config_error(&write(&h, &one_record()), url);
    }
    assert!(!cwd.join("s3:").exists() && !cwd.join("https:").exists());
    // The platform's parser takes a lone surrogate in a description.
    set_path(&h, h.db_path().to_str().unwrap());
    let text = r#"{"streams":[{"stream":{"name":"s","description":"half \ud83d","json_schema":{"type":"object"}},"destination_sync_mode":"append"}]}"#;
    std::fs::write(h.catalog_path(), text).unwrap();
    write(&h, &one_record()).assert_ok();
}

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

// ---------------------------------------------------------------------------
// 7. Names that normalize to nothing
// ---------------------------------------------------------------------------

#[test]
fn names_that_normalize_to_nothing_still_get_tables() {
    let (ns, name) = ("\u{301}", "\u{301}\u{302}");
    for mode in MODES {
        let h = mode_harness(mode);
        h.write_catalog(&catalog(vec![stream(
            name,
            Some(ns),
            "append",
            json!({"": {"type": "string"}, "id": {"type": "integer"}}),
        )]));
        let input = lines(&[
            ns_record(ns, name, 1, r#"{"id":1,"":"x"}"#),
            ns_record(ns, name, 2, r#"{"id":2,"":"y"}"#),
            global_state(1),
        ]);
        write(&h, &input).assert_ok();
        let located = locate(&h);
        let l = &located[&(ns.to_string(), name.to_string())];
        assert_eq!(l.schema, "_", "{mode}");
        assert_eq!(h.count(&l.raw), 2, "{mode}");
        let typed = l.typed.as_ref().expect("a typed relation");
        assert_eq!(select_all(&h, typed), 2, "{mode}: {typed}");
    }
}

// ---------------------------------------------------------------------------
// 8. Streams named like bookkeeping objects
// ---------------------------------------------------------------------------

#[test]
fn streams_named_like_bookkeeping_objects_do_not_disturb_it() {
    const NS: &str = "_airbyte_internal";
    const NAMES: [&str; 5] = [
        "stream_tables",
        "typed_relations",
        "_airbyte_merge_latest",
        "_airbyte_merge_new",
        "deleted__main__s",
    ];
    let h = mode_harness("tables");
    h.write_catalog(&catalog(
        NAMES
            .iter()
            .map(|n| dedup_stream(n, Some(NS), json!({"id": {"type": "integer"}}), json!([])))
            .collect(),
    ));
    for sync in 1..=3 {
        let mut parts: Vec<String> = NAMES
            .iter()
            .map(|n| ns_record(NS, n, sync, &format!(r#"{{"id":{sync}}}"#)))
            .collect();
        parts.push(global_state(sync));
        write(&h, &lines(&parts)).assert_ok();
    }
    let located = locate(&h);
    for n in NAMES {
        let l = located
            .get(&(NS.to_string(), n.to_string()))
            .unwrap_or_else(|| panic!("{n}: not in the registry"));
        assert_eq!(l.schema, "__airbyte_internal", "{n}");
        assert_eq!(h.count(&l.raw), 3, "{n}");
        let typed = l.typed.as_ref().expect("a typed relation");
        assert!(typed.starts_with("\"__airbyte_internal\"."), "{n}: {typed}");
        assert_eq!(select_all(&h, typed), 3, "{n}: {typed}");
    }
}

// ---------------------------------------------------------------------------
// 9. Local root confinement
// ---------------------------------------------------------------------------

#[test]
fn paths_outside_the_local_root_are_refused() {
    let h = Harness::new();
    let root = h.path("root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(h.path("elsewhere")).unwrap();
    std::os::unix::fs::symlink(h.path("elsewhere"), root.join("link")).unwrap();
    let env = [("DESTINATION_DUCKDB_LOCAL_ROOT", root.to_str().unwrap())];
    h.write_catalog(&catalog_of(&[("s", None)], "append"));

    let outside = h.path("outside.duckdb");
    // A dangling link: the file would be created at its target, outside.
    std::os::unix::fs::symlink(
        h.path("elsewhere/dangling.duckdb"),
        root.join("dangling.duckdb"),
    )
    .unwrap();
    for path in [
        "../x.duckdb",
        "sub/../../x.duckdb",
        outside.to_str().unwrap(),
        "link/x.duckdb",
        "dangling.duckdb",
    ] {
        set_path(&h, path);
        assert_check_fails(&check_env(&h, &env), "root", path);
        assert_config_error(&write_env(&h, &one_record(), &env), path);
    }
    for created in [
        "x.duckdb",
        "outside.duckdb",
        "elsewhere/x.duckdb",
        "elsewhere/dangling.duckdb",
    ] {
        assert!(!h.path(created).exists(), "{created} was created");
    }

    let inside = root.join("y.duckdb");
    for (path, file) in [
        ("x.duckdb", root.join("x.duckdb")),
        ("sub/x.duckdb", root.join("sub/x.duckdb")),
        (inside.to_str().unwrap(), inside.clone()),
    ] {
        set_path(&h, path);
        let (s, m) = status(&check_env(&h, &env));
        assert_eq!(s, "SUCCEEDED", "{path}: {m}");
        write_env(&h, &one_record(), &env).assert_ok();
        assert_eq!(count_in(&file, "main._airbyte_raw_s"), 1, "{path}");
    }
}

// ---------------------------------------------------------------------------
// 10. A failed source keeps the previous table
// ---------------------------------------------------------------------------

#[test]
fn failed_source_during_overwrite_keeps_the_previous_table() {
    let h = Harness::new();
    h.write_catalog(&json!({"streams": [{
        "stream": {"name": "s", "json_schema": {"type": "object"}},
        "sync_mode": "full_refresh", "destination_sync_mode": "overwrite",
        "generation_id": 5, "sync_id": 1}]}));
    let data = |h: &Harness| {
        texts(
            h,
            "SELECT (_airbyte_data->>'gen') || (_airbyte_data->>'i') \
             FROM main._airbyte_raw_s ORDER BY 1",
        )
    };
    let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let rec =
        |at: i64, gen: &str, i: i64| record("s", at, &format!(r#"{{"gen":"{gen}","i":{i}}}"#));

    write(
        &h,
        &lines(&[
            rec(1, "old", 1),
            rec(2, "old", 2),
            rec(3, "old", 3),
            global_state(1),
        ]),
    )
    .assert_ok();
    assert_eq!(data(&h), owned(&["old1", "old2", "old3"]));

    // The source fails: its TRACE ERROR, then EOF without a stream status.
    let error = r#"{"type":"TRACE","trace":{"type":"ERROR","emitted_at":1,"error":{"message":"boom","failure_type":"system_error"}}}"#;
    let run = write(
        &h,
        &lines(&[
            rec(4, "new", 1),
            rec(5, "new", 2),
            global_state(2),
            error.to_string(),
        ]),
    );
    assert_eq!(
        data(&h),
        owned(&["old1", "old2", "old3"]),
        "the previous contents stay: {run:?}"
    );

    // The retry of the same generation ends cleanly.
    write(&h, &lines(&[rec(6, "new", 3), global_state(3)])).assert_ok();
    assert_eq!(data(&h), owned(&["new1", "new2", "new3"]));
}

#[test]
fn a_failed_source_leaves_no_unacknowledged_record_for_the_retry_to_duplicate() {
    let h = Harness::new();
    h.write_catalog(&json!({"streams": [{
        "stream": {"name": "s", "json_schema": {"type": "object"}},
        "sync_mode": "full_refresh", "destination_sync_mode": "overwrite",
        "generation_id": 5, "minimum_generation_id": 5}]}));
    let rec = |i: i64| record("s", i, &format!(r#"{{"i":{i}}}"#));
    let error = r#"{"type":"TRACE","trace":{"type":"ERROR","emitted_at":1,"error":{"message":"boom","failure_type":"system_error"}}}"#;
    // Record 2 comes after the last state: the retry re-sends it.
    let run = write(&h, &lines(&[rec(1), global_state(1), rec(2), error.into()]));
    assert_eq!(run.state_counts(), vec![1.0], "{run:?}");
    let complete = r#"{"type":"TRACE","trace":{"type":"STREAM_STATUS","emitted_at":1,"stream_status":{"stream_descriptor":{"name":"s"},"status":"COMPLETE"}}}"#;
    write(&h, &lines(&[rec(2), global_state(2), complete.into()])).assert_ok();
    assert_eq!(
        texts(
            &h,
            "SELECT _airbyte_data->>'i' FROM main._airbyte_raw_s ORDER BY 1"
        ),
        ["1", "2"]
    );
}

// ---------------------------------------------------------------------------
// 11. Clearer errors
// ---------------------------------------------------------------------------

/// Restores a folder's permissions on drop, so the temp dir can be removed.
struct Writable<'a>(&'a Path);

impl Drop for Writable<'_> {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(self.0, std::fs::Permissions::from_mode(0o755));
    }
}

#[test]
#[allow(clippy::print_stderr)]
fn read_only_folder_is_a_config_error() {
    use std::os::unix::fs::PermissionsExt;
    let h = Harness::new();
    let dir = h.path("ro");
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("db.duckdb");
    set_path(&h, db.to_str().unwrap());
    h.write_catalog(&catalog_of(&[("s", None)], "append"));
    write(&h, &one_record()).assert_ok();

    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    let _restore = Writable(&dir);
    let input = lines(&[record("s", 2, r#"{"n":2}"#), global_state(2)]);
    let probe = dir.join("probe");
    if std::fs::write(&probe, b"").is_err() {
        assert_config_error(&write(&h, &input), "read-only folder");
        return;
    }
    // Root ignores the folder's mode: run the binary as `nobody`, from a
    // copy it can reach, on a file it may write.
    let _ = std::fs::remove_file(&probe);
    if Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("SKIPPED: running as root and setpriv is missing");
        return;
    }
    let bin = h.path("bin");
    std::fs::copy(BIN, &bin).unwrap();
    for (path, mode) in [
        (h.dir.path().to_path_buf(), 0o755),
        (bin.clone(), 0o755),
        (db.clone(), 0o666),
        (h.config_path(), 0o644),
        (h.catalog_path(), 0o644),
    ] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let as_nobody = |args: &[&str], stdin: &[u8]| {
        let mut child = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&bin)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        Run {
            code: out.status.code(),
            messages: parse_stdout(&stdout),
            stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    };
    let config = h.config_path().to_str().unwrap().to_string();
    let catalog = h.catalog_path().to_str().unwrap().to_string();
    let run = as_nobody(
        &["write", "--config", &config, "--catalog", &catalog],
        input.as_bytes(),
    );
    let m = assert_config_error(&run, "read-only folder");
    assert!(m.contains("permission denied"), "{m}");
    assert_check_fails(
        &as_nobody(&["check", "--config", &config], b""),
        "permission",
        "check",
    );
    assert_eq!(
        count_in(&db, "main._airbyte_raw_s"),
        1,
        "the first sync's row stays"
    );
}

#[test]
fn absurd_memory_limit_is_a_config_error() {
    let h = harness_with(json!({"memory_limit": "99999999999TB"}));
    assert_check_fails(&check(&h), "memory_limit", "check");
    h.write_catalog(&catalog_of(&[("s", None)], "append"));
    let m = assert_config_error(&write(&h, &one_record()), "write");
    assert!(m.contains("memory_limit"), "{m}");
}

#[test]
fn out_of_range_emitted_at_names_the_line() {
    for at in [i64::MAX, i64::MIN] {
        let h = Harness::new();
        h.write_catalog(&catalog_of(&[("s", None)], "append"));
        let input = lines(&[
            record("s", 1, r#"{"n":1}"#),
            global_state(1),
            record("s", at, r#"{"n":2}"#),
            global_state(2),
        ]);
        let run = write(&h, &input);
        assert_ne!(run.code, Some(0), "{at}: {run:?}");
        let m = run.error()["message"].as_str().unwrap().to_string();
        assert!(m.contains("line 3"), "{at}: {m}");
    }
}

// ---------------------------------------------------------------------------
// 12. Duplicate keys and whitespace
// ---------------------------------------------------------------------------

/// The raw stdout lines of the echoed states.
fn state_lines(run: &Run) -> Vec<&str> {
    run.stdout
        .lines()
        .filter(|l| serde_json::from_str::<Value>(l).unwrap()["type"] == "STATE")
        .collect()
}

#[test]
fn state_with_two_destination_stats_is_echoed_with_one() {
    let h = Harness::new();
    h.write_catalog(&catalog_of(&[("s", None)], "append"));
    let state = r#"{"type":"STATE","state":{"type":"GLOBAL","global":{"shared_state":{"n":1}},"destinationStats":{"recordCount":99.0},"destinationStats":{"recordCount":7.0}}}"#;
    let run = write(
        &h,
        &lines(&[
            record("s", 1, "{}"),
            record("s", 2, "{}"),
            state.to_string(),
        ]),
    );
    run.assert_ok();
    let echoed = state_lines(&run);
    assert_eq!(echoed.len(), 1, "{run:?}");
    assert_eq!(
        echoed[0].matches("destinationStats").count(),
        1,
        "{}",
        echoed[0]
    );
    assert_eq!(run.state_counts(), vec![2.0]);
}

#[test]
fn state_line_with_surrounding_whitespace_is_echoed_trimmed() {
    let h = Harness::new();
    h.write_catalog(&catalog_of(&[("s", None)], "append"));
    let run = write(
        &h,
        &lines(&[
            record("s", 1, "{}"),
            format!(" \t \t{}   ", global_state(1)),
        ]),
    );
    run.assert_ok();
    let echoed = state_lines(&run);
    assert_eq!(echoed.len(), 1, "{run:?}");
    assert!(
        echoed[0].starts_with('{') && echoed[0].ends_with('}'),
        "{:?}",
        echoed[0]
    );
    assert_eq!(run.state_counts(), vec![1.0]);
}

#[test]
fn duplicate_keys_in_data_are_kept_raw_and_the_first_is_typed() {
    let data = r#"{"id":1,"v":"first","v":"second"}"#;
    for mode in MODES {
        let h = mode_harness(mode);
        h.write_catalog(&catalog(vec![stream(
            "s",
            None,
            "append",
            json!({"id": {"type": "integer"}, "v": {"type": "string"}}),
        )]));
        write(&h, &lines(&[record("s", 1, data), global_state(1)])).assert_ok();
        assert_eq!(
            texts(&h, "SELECT _airbyte_data::VARCHAR FROM main._airbyte_raw_s"),
            vec![data.to_string()],
            "{mode}"
        );
        assert_eq!(
            texts(&h, "SELECT v FROM main.s"),
            vec!["first".to_string()],
            "{mode}"
        );
    }
}
