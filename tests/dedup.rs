//! Typed relations with `append_dedup`: the typing/deduping cases of
//! Airbyte's destination test suite (`dat/`), and the dedup rules: composite
//! and nested keys, cursor ties, NULL cursors, CDC deletes, schema changes
//! between syncs, and both `typed_output` modes.

use serde_json::{json, Value};

use crate::util::cases::{mode_harness, MODES};
use crate::util::*;

fn dat_schema() -> Value {
    read_json(&acceptance("dat/schema.json"))
}

/// A configured `append_dedup` stream.
fn dedup_stream(name: &str, ns: Option<&str>, schema: Value, pk: Value, cursor: Value) -> Value {
    let mut stream = json!({"name": name, "json_schema": schema});
    if let Some(ns) = ns {
        stream["namespace"] = json!(ns);
    }
    json!({
        "stream": stream,
        "sync_mode": "incremental",
        "destination_sync_mode": "append_dedup",
        "primary_key": pk,
        "cursor_field": cursor,
    })
}

fn dat_catalog(cursor: &str) -> Value {
    let mut schema = dat_schema();
    if cursor == "old_cursor" {
        schema["properties"]["old_cursor"] = json!({"type": "integer"});
    }
    json!({"streams": [dedup_stream("dat", Some("ns1"), schema, json!([["id1"], ["id2"]]), json!([cursor]))]})
}

/// A `dat/` file as protocol input: comment lines dropped, the stream (and
/// namespace) filled in, and a state at the end so the rows are committed.
fn dat_messages(file: &str, stream: &str, ns: &str) -> String {
    let text = std::fs::read_to_string(acceptance(&format!("dat/{file}"))).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("//") || line.trim().is_empty() {
            continue;
        }
        let mut m: Value = serde_json::from_str(line).unwrap();
        m["record"]["stream"] = json!(stream);
        m["record"]["namespace"] = json!(ns);
        out.push_str(&m.to_string());
        out.push('\n');
    }
    out.push_str(&stream_state(stream, ns, 1));
    out
}

fn stream_state(stream: &str, ns: &str, n: i64) -> String {
    format!(
        "{}\n",
        json!({"type": "STATE", "state": {"type": "STREAM", "stream": {
            "stream_descriptor": {"name": stream, "namespace": ns},
            "stream_state": {"n": n}}}})
    )
}

/// The typed rows as text, ordered by the given columns (each cast to
/// VARCHAR by the caller); DuckDB 1.4, 1.5 and 2.0 must read the same.
fn rows(h: &Harness, relation: &str, columns: &str, order: &str) -> Vec<Vec<String>> {
    let query = format!("SELECT {columns} FROM {relation} ORDER BY {order}");
    crate::util::assert_readers_agree(h, std::slice::from_ref(&query));
    h.strings(&query)
        .into_iter()
        .map(|r| {
            r.into_iter()
                .map(|v| v.unwrap_or_else(|| "NULL".into()))
                .collect()
        })
        .collect()
}

fn owned(rows: &[&[&str]]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|r| r.iter().map(|v| v.to_string()).collect())
        .collect()
}

const DAT_COLUMNS: &str =
    "id1::VARCHAR, id2::VARCHAR, name, address->>'city', updated_at::VARCHAR, \
     age::VARCHAR, registration_date::VARCHAR, _airbyte_emitted_at::VARCHAR";

#[test]
fn dat_incremental_dedup_two_syncs() {
    // DAT incrementalDedup: sync1 then sync2; Bob is deleted by CDC.
    for mode in MODES {
        let h = mode_harness(mode);
        h.write_catalog(&dat_catalog("updated_at"));
        h.write(dat_messages("sync1_messages.jsonl", "dat", "ns1").as_bytes())
            .assert_ok();
        assert_eq!(h.count("ns1._airbyte_raw_dat"), 5);
        let special = "a\u{8}b\u{c}c\nd\re\tf`~!@#$%^&*()_+-=[]\\{}|'\",./<>?";
        // Unchanged by sync 2.
        let charlie: &[&str] = &[
            "2",
            "200",
            "Charlie",
            "NULL",
            "2000-01-01 00:03:00+00",
            "42",
            "2023-12-23",
            "1970-01-01 00:00:01+00",
        ];
        let special_row: &[&str] = &[
            "3",
            "200",
            special,
            "NULL",
            "2000-01-01 00:04:00+00",
            "NULL",
            "NULL",
            "1970-01-01 00:00:01+00",
        ];
        assert_eq!(
            rows(&h, "ns1.dat", DAT_COLUMNS, "id1, id2"),
            owned(&[
                &[
                    "1",
                    "200",
                    "Alice",
                    "Los Angeles",
                    "2000-01-01 00:01:00+00",
                    "NULL",
                    "NULL",
                    "1970-01-01 00:00:01+00"
                ],
                &[
                    "1",
                    "201",
                    "Bob",
                    "Boston",
                    "2000-01-01 00:02:00+00",
                    "NULL",
                    "NULL",
                    "1970-01-01 00:00:01+00"
                ],
                charlie,
                special_row,
            ]),
            "{mode}"
        );
        // The source's change on Charlie's record is kept in the typed meta.
        let meta = h.strings("SELECT _airbyte_meta FROM ns1.dat WHERE id1 = 2");
        let meta: Value = serde_json::from_str(meta[0][0].as_deref().unwrap()).unwrap();
        assert_eq!(
            meta["changes"],
            json!([{"field": "address", "change": "NULLED", "reason": "SOURCE_RETRIEVAL_ERROR"}])
        );

        h.write(dat_messages("sync2_messages.jsonl", "dat", "ns1").as_bytes())
            .assert_ok();
        assert_eq!(h.count("ns1._airbyte_raw_dat"), 8);
        assert_eq!(
            rows(&h, "ns1.dat", DAT_COLUMNS, "id1, id2"),
            owned(&[
                &[
                    "1",
                    "200",
                    "Alice",
                    "Seattle",
                    "2000-01-02 00:00:00+00",
                    "NULL",
                    "NULL",
                    "1970-01-01 00:00:02+00"
                ],
                charlie,
                special_row,
            ]),
            "{mode}"
        );
    }
}

#[test]
fn dat_same_name_in_two_namespaces() {
    // DAT identicalNameSimultaneousSync: one stream name, two namespaces.
    for mode in MODES {
        let h = mode_harness(mode);
        let s = |ns| {
            dedup_stream(
                "dat",
                Some(ns),
                dat_schema(),
                json!([["id1"], ["id2"]]),
                json!(["updated_at"]),
            )
        };
        h.write_catalog(&json!({"streams": [s("ns1"), s("ns2")]}));
        let input = dat_messages("sync1_messages.jsonl", "dat", "ns1")
            + &dat_messages("sync1_messages2.jsonl", "dat", "ns2");
        h.write(input.as_bytes()).assert_ok();
        assert_eq!(h.count("ns1.dat"), 4);
        assert_eq!(
            rows(
                &h,
                "ns2.dat",
                "id1::VARCHAR, id2::VARCHAR, name, updated_at::VARCHAR",
                "id1"
            ),
            owned(&[&[
                "1",
                "200",
                "Someone completely different",
                "2001-01-01 00:00:00+00"
            ]])
        );
        let input = dat_messages("sync2_messages.jsonl", "dat", "ns1")
            + &dat_messages("sync2_messages2.jsonl", "dat", "ns2");
        h.write(input.as_bytes()).assert_ok();
        assert_eq!(h.count("ns1.dat"), 3, "{mode}");
        assert_eq!(
            rows(
                &h,
                "ns2.dat",
                "id1::VARCHAR, id2::VARCHAR, name, updated_at::VARCHAR",
                "id1"
            ),
            owned(&[&[
                "1",
                "200",
                "Someone completely different v2",
                "2001-01-02 00:00:00+00"
            ]])
        );
    }
}

#[test]
fn dat_cursor_change_between_syncs() {
    // DAT incrementalDedupChangeCursor: sync1 orders by old_cursor, sync2 by
    // updated_at. Sync1's rows have no updated_at: a NULL cursor loses.
    for mode in MODES {
        let h = mode_harness(mode);
        h.write_catalog(&dat_catalog("old_cursor"));
        h.write(dat_messages("sync1_cursorchange_messages.jsonl", "dat", "ns1").as_bytes())
            .assert_ok();
        assert_eq!(
            rows(
                &h,
                "ns1.dat",
                "id1::VARCHAR, id2::VARCHAR, name, address->>'city', old_cursor::VARCHAR",
                "id1, id2"
            ),
            owned(&[
                &["1", "200", "Alice", "Los Angeles", "1"],
                &["1", "201", "Bob", "Boston", "2"],
                &["2", "200", "Charlie", "NULL", "3"],
            ]),
            "{mode}"
        );
        h.write_catalog(&dat_catalog("updated_at"));
        h.write(dat_messages("sync2_messages.jsonl", "dat", "ns1").as_bytes())
            .assert_ok();
        // old_cursor left the schema but keeps its column and values.
        assert_eq!(
            rows(&h, "ns1.dat", "id1::VARCHAR, id2::VARCHAR, name, address->>'city', old_cursor::VARCHAR, updated_at::VARCHAR", "id1, id2"),
            owned(&[
                &["1", "200", "Alice", "Seattle", "NULL", "2000-01-02 00:00:00+00"],
                &["2", "200", "Charlie", "NULL", "3", "NULL"],
            ]),
            "{mode}"
        );
    }
}

#[test]
fn dat_null_primary_key_value_is_a_key() {
    // DAT testRemovingPKNonNullIndexes: id2 is null in every record; the
    // sync succeeds and keeps one row, also when run again.
    for mode in MODES {
        let h = mode_harness(mode);
        h.write_catalog(&dat_catalog("updated_at"));
        let input = dat_messages("sync_null_pk.jsonl", "dat", "ns1");
        h.write(input.as_bytes()).assert_ok();
        h.write(input.as_bytes()).assert_ok();
        assert_eq!(
            rows(
                &h,
                "ns1.dat",
                "id1::VARCHAR, id2::VARCHAR, updated_at::VARCHAR",
                "id1"
            ),
            owned(&[&["1", "NULL", "2000-01-03 00:00:00+00"]]),
            "{mode}"
        );
        assert_eq!(h.count("ns1._airbyte_raw_dat"), 6);
    }
}

fn kv_schema() -> Value {
    json!({"type": "object", "properties": {
        "a": {"type": "integer"},
        "b": {"type": "string"},
        "cur": {"type": "integer"},
        "v": {"type": "string"},
        "_ab_cdc_deleted_at": {"type": ["null", "string"], "format": "date-time"},
    }})
}

#[test]
fn composite_keys_ties_null_cursors_and_cdc_deletes() {
    for mode in MODES {
        let h = mode_harness(mode);
        h.write_catalog(&json!({"streams": [
            dedup_stream("kv", None, kv_schema(), json!([["a"], ["b"]]), json!(["cur"]))
        ]}));
        let sync1 = lines(&[
            // (1, x): a higher cursor beats a later emission.
            record("kv", 5000, r#"{"a":1,"b":"x","cur":2,"v":"hi-cursor"}"#),
            record(
                "kv",
                9000,
                r#"{"a":1,"b":"x","cur":1,"v":"late-low-cursor"}"#,
            ),
            // (1, y): cursor tie, the later emission wins.
            record("kv", 2000, r#"{"a":1,"b":"y","cur":7,"v":"tie-later"}"#),
            record("kv", 1000, r#"{"a":1,"b":"y","cur":7,"v":"tie-earlier"}"#),
            // (2, x): cursor and emission tie: the later arrival wins.
            record("kv", 1000, r#"{"a":2,"b":"x","cur":3,"v":"first"}"#),
            record("kv", 1000, r#"{"a":2,"b":"x","cur":3,"v":"second"}"#),
            // (3, x): a NULL or missing cursor loses to any value.
            record("kv", 1000, r#"{"a":3,"b":"x","cur":0,"v":"zero"}"#),
            record(
                "kv",
                9000,
                r#"{"a":3,"b":"x","cur":null,"v":"null-cursor"}"#,
            ),
            record("kv", 9000, r#"{"a":3,"b":"x","v":"no-cursor"}"#),
            // (NULL, x) and (1, NULL): NULL is a key value of its own.
            record("kv", 1000, r#"{"a":null,"b":"x","cur":1,"v":"null-a"}"#),
            record("kv", 1000, r#"{"b":"x","cur":2,"v":"missing-a"}"#),
            record("kv", 1000, r#"{"a":1,"b":null,"cur":1,"v":"null-b"}"#),
            // (4, x): deleted by CDC; (5, x): explicit null is not a delete.
            record("kv", 1000, r#"{"a":4,"b":"x","cur":1,"v":"doomed"}"#),
            record(
                "kv",
                2000,
                r#"{"a":4,"b":"x","cur":2,"_ab_cdc_deleted_at":"2020-01-01T00:00:00Z"}"#,
            ),
            record(
                "kv",
                1000,
                r#"{"a":5,"b":"x","cur":1,"v":"alive","_ab_cdc_deleted_at":null}"#,
            ),
            global_state(1),
        ]);
        h.write(sync1.as_bytes()).assert_ok();
        let cols = "a::VARCHAR, b, cur::VARCHAR, v";
        let order = "a NULLS FIRST, b NULLS FIRST";
        assert_eq!(
            rows(&h, "main.kv", cols, order),
            owned(&[
                &["NULL", "x", "2", "missing-a"],
                &["1", "NULL", "1", "null-b"],
                &["1", "x", "2", "hi-cursor"],
                &["1", "y", "7", "tie-later"],
                &["2", "x", "3", "second"],
                &["3", "x", "0", "zero"],
                &["5", "x", "1", "alive"],
            ]),
            "{mode}"
        );
        // Second sync: the deleted key comes back with a newer cursor, a
        // stale update loses to the stored row, a delete of (1, y) wins a
        // cursor tie by later emission, and an old-cursor delete of (2, x)
        // loses.
        let sync2 = lines(&[
            record("kv", 3000, r#"{"a":4,"b":"x","cur":3,"v":"reborn"}"#),
            record("kv", 9999, r#"{"a":1,"b":"x","cur":1,"v":"stale"}"#),
            record(
                "kv",
                3000,
                r#"{"a":1,"b":"y","cur":7,"_ab_cdc_deleted_at":"2021-01-01T00:00:00Z"}"#,
            ),
            record(
                "kv",
                3000,
                r#"{"a":2,"b":"x","cur":1,"_ab_cdc_deleted_at":"2021-01-01T00:00:00Z"}"#,
            ),
            record("kv", 3000, r#"{"a":6,"b":"x","cur":1,"v":"new"}"#),
            global_state(2),
        ]);
        h.write(sync2.as_bytes()).assert_ok();
        assert_eq!(
            rows(&h, "main.kv", cols, order),
            owned(&[
                &["NULL", "x", "2", "missing-a"],
                &["1", "NULL", "1", "null-b"],
                &["1", "x", "2", "hi-cursor"],
                &["2", "x", "3", "second"],
                &["3", "x", "0", "zero"],
                &["4", "x", "3", "reborn"],
                &["5", "x", "1", "alive"],
                &["6", "x", "1", "new"],
            ]),
            "{mode}"
        );
        assert_eq!(h.count("main._airbyte_raw_kv"), 20);
    }
}

#[test]
fn nested_primary_key_and_no_cursor() {
    // Keys inside objects are read from the raw JSON; without a cursor the
    // latest emission wins.
    for mode in MODES {
        let h = mode_harness(mode);
        let schema = json!({"type": "object", "properties": {
            "obj": {"type": "object", "properties": {"id": {"type": "integer"}}},
            "v": {"type": "string"},
        }});
        h.write_catalog(&json!({"streams": [
            dedup_stream("nested", None, schema, json!([["obj", "id"]]), json!([]))
        ]}));
        let input = lines(&[
            record("nested", 1000, r#"{"obj":{"id":1},"v":"a"}"#),
            record("nested", 3000, r#"{"obj":{"id":1},"v":"b"}"#),
            record("nested", 2000, r#"{"obj":{"id":1},"v":"c"}"#),
            record("nested", 1000, r#"{"obj":{"id":2},"v":"d"}"#),
            global_state(1),
        ]);
        h.write(input.as_bytes()).assert_ok();
        let again = lines(&[
            record("nested", 500, r#"{"obj":{"id":2},"v":"e"}"#),
            record("nested", 4000, r#"{"obj":{"id":3},"v":"f"}"#),
            global_state(2),
        ]);
        h.write(again.as_bytes()).assert_ok();
        assert_eq!(
            rows(&h, "main.nested", "(obj->>'id'), v", "1"),
            owned(&[&["1", "b"], &["2", "d"], &["3", "f"]]),
            "{mode}"
        );
    }
}

#[test]
fn schema_change_between_syncs_widens_and_adds_columns() {
    for mode in MODES {
        let h = mode_harness(mode);
        let catalog = |props: Value| {
            json!({"streams": [{
                "stream": {"name": "evolving", "json_schema": {"type": "object", "properties": props}},
                "sync_mode": "incremental",
                "destination_sync_mode": "append",
            }]})
        };
        h.write_catalog(&catalog(json!({
            "id": {"type": "integer"}, "n": {"type": "integer"}, "s": {"type": "string"}
        })));
        let sync1 = lines(&[
            record("evolving", 1000, r#"{"id":1,"n":10,"s":"x"}"#),
            global_state(1),
        ]);
        h.write(sync1.as_bytes()).assert_ok();
        // n: integer → number (widens to DOUBLE); s: string → integer (falls
        // back to JSON); w is new.
        h.write_catalog(&catalog(json!({
            "id": {"type": "integer"}, "n": {"type": "number"}, "s": {"type": "integer"},
            "w": {"type": "boolean"}
        })));
        let sync2 = lines(&[
            record("evolving", 2000, r#"{"id":2,"n":2.5,"s":7,"w":true}"#),
            global_state(2),
        ]);
        h.write(sync2.as_bytes()).assert_ok();
        let types = h.strings(
            "SELECT column_name, data_type FROM information_schema.columns \
             WHERE table_schema = 'main' AND table_name = 'evolving' ORDER BY ordinal_position",
        );
        let types: Vec<(String, String)> = types
            .into_iter()
            .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap()))
            .collect();
        let want = [
            ("_airbyte_ab_id", "VARCHAR"),
            ("_airbyte_emitted_at", "TIMESTAMP WITH TIME ZONE"),
            ("_airbyte_meta", "JSON"),
            ("_airbyte_generation_id", "BIGINT"),
            ("id", "BIGINT"),
            ("n", "DOUBLE"),
            ("s", "JSON"),
            ("w", "BOOLEAN"),
        ];
        assert_eq!(
            types,
            want.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect::<Vec<_>>(),
            "{mode}"
        );
        assert_eq!(
            rows(
                &h,
                "main.evolving",
                "id::VARCHAR, n::VARCHAR, s::VARCHAR, w::VARCHAR",
                "id"
            ),
            owned(&[&["1", "10.0", "\"x\"", "NULL"], &["2", "2.5", "7", "true"]]),
            "{mode}"
        );
        // A third sync whose schema drops a property keeps its column.
        h.write_catalog(&catalog(json!({"id": {"type": "integer"}})));
        h.write(
            lines(&[
                record("evolving", 3000, r#"{"id":3,"w":false}"#),
                global_state(3),
            ])
            .as_bytes(),
        )
        .assert_ok();
        assert_eq!(
            rows(&h, "main.evolving", "id::VARCHAR, w::VARCHAR", "id"),
            owned(&[&["1", "NULL"], &["2", "true"], &["3", "false"]]),
            "{mode}"
        );
    }
}

#[test]
fn typed_output_modes_switch_cleanly() {
    let h = mode_harness("views");
    h.write_catalog(&json!({"streams": [
        dedup_stream("kv", None, kv_schema(), json!([["a"], ["b"]]), json!(["cur"]))
    ]}));
    let kind = |h: &Harness| {
        h.strings(
            "SELECT table_type FROM information_schema.tables \
             WHERE table_schema = 'main' AND table_name = 'kv'",
        )
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect::<Vec<_>>()
    };
    let input = |n: i64| {
        lines(&[
            record(
                "kv",
                1000 + n,
                &format!(r#"{{"a":{n},"b":"x","cur":1,"v":"r{n}"}}"#),
            ),
            global_state(n),
        ])
    };
    h.write(input(1).as_bytes()).assert_ok();
    assert_eq!(kind(&h), ["VIEW"]);
    for (mode, want, n) in [
        ("tables", Some("BASE TABLE"), 2),
        ("tables", Some("BASE TABLE"), 3),
        ("off", None, 4),
        ("views", Some("VIEW"), 5),
        ("tables", Some("BASE TABLE"), 6),
    ] {
        h.write_config(
            json!({"destination_path": h.db_path().to_str().unwrap(), "typed_output": mode}),
        );
        h.write(input(n).as_bytes()).assert_ok();
        assert_eq!(kind(&h), want.into_iter().collect::<Vec<_>>(), "{mode}");
        if want.is_some() {
            assert_eq!(h.count("main.kv"), n, "{mode} after sync {n}");
        }
        assert_eq!(h.count("main._airbyte_raw_kv"), n);
    }
}

#[test]
fn tables_mode_matches_views_over_many_syncs_and_overwrites() {
    // The incremental merge of the tables mode agrees with the view, sync
    // after sync; an overwrite stream's table is rebuilt from its new rows.
    let hv = mode_harness("views");
    let ht = mode_harness("tables");
    let catalog = json!({"streams": [
        dedup_stream("kv", None, kv_schema(), json!([["a"], ["b"]]), json!(["cur"])),
        {
            "stream": {"name": "full", "json_schema": kv_schema()},
            "sync_mode": "full_refresh",
            "destination_sync_mode": "overwrite",
        },
    ]});
    hv.write_catalog(&catalog);
    ht.write_catalog(&catalog);
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |m: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % m
    };
    for sync in 0..5 {
        let mut msgs = Vec::new();
        for i in 0..40 {
            let (a, cur) = (next(6), next(4));
            let deleted = if next(7) == 0 {
                r#","_ab_cdc_deleted_at":"2020-01-01T00:00:00Z""#
            } else {
                ""
            };
            let data = format!(
                r#"{{"a":{a},"b":"k{}","cur":{cur},"v":"s{sync}i{i}"{deleted}}}"#,
                next(2)
            );
            msgs.push(record("kv", 1000 + next(3) as i64, &data));
            msgs.push(record(
                "full",
                1000,
                &format!(r#"{{"a":{i},"v":"s{sync}"}}"#),
            ));
        }
        msgs.push(global_state(sync));
        let input = lines(&msgs);
        hv.write(input.as_bytes()).assert_ok();
        let run = ht.write(input.as_bytes());
        run.assert_ok();
        // The dedup stream's typed rows are staged as they arrive and
        // merged at the end of every sync (the first one builds the table
        // before the records come); the overwrite stream's table is rebuilt
        // every time.
        let logged = |how: &str, stream: &str| {
            run.stderr.lines().any(|l| {
                l.contains("typed table refreshed")
                    && l.contains(&format!("how=\"{how}\""))
                    && l.contains(&format!("stream=`{stream}`"))
            })
        };
        assert!(logged("merged", "kv"), "{}", run.stderr);
        assert!(logged("rebuilt", "full"), "{}", run.stderr);
        let cols = "a::VARCHAR, b, cur::VARCHAR, v, _airbyte_ab_id";
        let view_rows = rows(&hv, "main.kv", cols, "a, b");
        let table_rows = rows(
            &ht,
            "main.kv",
            "a::VARCHAR, b, cur::VARCHAR, v, _airbyte_ab_id",
            "a, b",
        );
        assert_eq!(
            view_rows.iter().map(|r| &r[..4]).collect::<Vec<_>>(),
            table_rows.iter().map(|r| &r[..4]).collect::<Vec<_>>(),
            "sync {sync}"
        );
        assert!(!view_rows.is_empty());
        assert_eq!(ht.count("main.\"full\""), 40);
        assert_eq!(
            rows(&ht, "main.\"full\"", "DISTINCT v", "1"),
            owned(&[&[&format!("s{sync}")]])
        );
    }
}

#[test]
fn typed_names_never_clobber_raw_tables_or_foreign_tables() {
    let h = mode_harness("views");
    // A table of the user's own where the typed view would go, in a file
    // every reader can open (DuckDB 2.0's own format is newer than 1.4's).
    {
        let conn = duckdb::Connection::open_in_memory().unwrap();
        conn.execute_batch(&format!(
            "ATTACH '{}' AS f (STORAGE_VERSION 'v1.0.0'); \
             CREATE TABLE f.main.users (mine INTEGER); INSERT INTO f.main.users VALUES (42);",
            h.db_path().display()
        ))
        .unwrap();
    }
    let mut catalog = catalog_of(
        &[("users", None), ("x", None), ("_airbyte_raw_x", None)],
        "append",
    );
    for s in catalog["streams"].as_array_mut().unwrap() {
        s["stream"]["json_schema"] =
            json!({"type": "object", "properties": {"v": {"type": "string"}}});
    }
    h.write_catalog(&catalog);
    let input = lines(&[
        record("users", 1000, r#"{"v":"u"}"#),
        record("x", 1000, r#"{"v":"x"}"#),
        record("_airbyte_raw_x", 1000, r#"{"v":"raw-x"}"#),
        global_state(1),
    ]);
    h.write(input.as_bytes()).assert_ok();
    assert_eq!(
        rows(&h, "main.users", "mine::VARCHAR", "1"),
        owned(&[&["42"]])
    );
    let registry = h.strings(
        "SELECT stream_key, relation_name FROM _airbyte_internal.typed_relations ORDER BY stream_key",
    );
    let name_of = |stream: &str| {
        registry
            .iter()
            .find(|r| r[0].as_deref() == Some(&format!(r#"["","{stream}"]"#)))
            .and_then(|r| r[1].clone())
            .unwrap()
    };
    let users = name_of("users");
    assert!(
        users.starts_with("users_") && users.len() == "users_".len() + 8,
        "{users}"
    );
    assert_eq!(
        rows(&h, &format!("main.\"{users}\""), "v", "1"),
        owned(&[&["u"]])
    );
    assert_eq!(rows(&h, "main.x", "v", "1"), owned(&[&["x"]]));
    // The stream `_airbyte_raw_x` must not take the name of x's raw table.
    let raw_x = name_of("_airbyte_raw_x");
    assert_ne!(raw_x.to_lowercase(), "_airbyte_raw_x");
    assert_eq!(
        rows(&h, &format!("main.\"{raw_x}\""), "v", "1"),
        owned(&[&["raw-x"]])
    );
    assert_eq!(
        rows(&h, "main._airbyte_raw_x", "_airbyte_data->>'v'", "1"),
        owned(&[&["x"]])
    );
    // Names stay put on the next sync.
    h.write(input.as_bytes()).assert_ok();
    assert_eq!(h.count(&format!("main.\"{users}\"")), 2);
    assert_eq!(h.count("main.users"), 1);
}

#[test]
fn append_dedup_needs_a_primary_key() {
    let h = mode_harness("views");
    h.write_catalog(&json!({"streams": [
        dedup_stream("kv", None, kv_schema(), json!([]), json!(["cur"]))
    ]}));
    let run = h.write(lines(&[record("kv", 1, r#"{"a":1}"#)]).as_bytes());
    let error = run.error();
    assert_eq!(error["failure_type"], "config_error", "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("primary key"),
        "{error}"
    );
    assert!(!h.db_path().exists() || h.count("main._airbyte_raw_kv") == 0);
}

#[test]
fn sigkill_during_a_table_refresh_keeps_the_previous_table() {
    // The refresh runs after the last state is echoed and the summary
    // logged; a kill there must leave the previous typed table (one
    // transaction) and the next sync must catch it up.
    let h = mode_harness("tables");
    h.write_catalog(&json!({"streams": [
        dedup_stream("kv", None, kv_schema(), json!([["a"], ["b"]]), json!(["cur"]))
    ]}));
    let first: Vec<String> = (0..3)
        .map(|a| {
            record(
                "kv",
                1,
                &format!(r#"{{"a":{a},"b":"x","cur":0,"v":"old"}}"#),
            )
        })
        .chain([global_state(1)])
        .collect();
    h.write(lines(&first).as_bytes()).assert_ok();
    assert_eq!(h.count("main.kv"), 3);

    let keys = 50_000;
    let mut input = String::new();
    for i in 0..3 * keys {
        input.push_str(&record(
            "kv",
            2,
            &format!(
                r#"{{"a":{},"b":"x","cur":{},"v":"v{i}"}}"#,
                i % keys,
                1 + i / keys
            ),
        ));
        input.push('\n');
    }
    input.push_str(&global_state(2));
    input.push('\n');
    let mut live = h.spawn_write();
    live.send(&input);
    live.close_stdin();
    live.wait_for("the summary the sync logs before the refresh", |m| {
        m["log"]["message"]
            .as_str()
            .is_some_and(|t| t.starts_with("sync finished"))
    });
    live.kill();

    // Every acknowledged raw row is there; the typed table is whole: the
    // previous one, or (if the kill came late) the refreshed one.
    assert_eq!(h.count("main._airbyte_raw_kv"), 3 + 3 * keys as i64);
    let typed = h.count("main.kv");
    assert!(
        typed == 3 || typed == keys as i64,
        "typed table has {typed} rows"
    );
    assert_eq!(
        h.count("duckdb_tables() WHERE table_name LIKE '_airbyte_merge%'"),
        0,
        "no work table outlives its transaction"
    );
    // The next sync, with no records at all, catches the table up.
    h.write(lines(&[global_state(3)]).as_bytes()).assert_ok();
    assert_eq!(
        rows(
            &h,
            "main.kv",
            "count(*)::VARCHAR, min(cur)::VARCHAR, max(cur)::VARCHAR",
            "1"
        ),
        owned(&[&[&keys.to_string(), "3", "3"]])
    );
    assert_eq!(
        rows(&h, "main.kv", "v", "a LIMIT 2"),
        owned(&[&["v100000"], &["v100001"]])
    );
}

#[test]
fn unchanged_views_are_left_alone_and_missing_ones_recreated() {
    // Creating a view costs DuckDB tens of milliseconds of parsing; a sync
    // whose streams did not change must not pay it again.
    let h = mode_harness("views");
    h.write_catalog(&json!({"streams": [
        dedup_stream("kv", None, kv_schema(), json!([["a"], ["b"]]), json!(["cur"]))
    ]}));
    // Whether the sync (re)created the view.
    let sync = |n: i64| -> bool {
        let input = lines(&[
            record("kv", n, &format!(r#"{{"a":{n},"b":"x","cur":1}}"#)),
            global_state(n),
        ]);
        let run = h.write(input.as_bytes());
        run.assert_ok();
        run.stderr.contains("typed view created")
    };
    let recorded = || {
        h.strings("SELECT updated_at::VARCHAR, definition FROM _airbyte_internal.typed_relations")
    };
    assert!(sync(1));
    let first = recorded();
    assert!(!sync(2), "an unchanged view was recreated");
    assert_eq!(recorded(), first);
    assert_eq!(h.count("main.kv"), 2);
    // Dropped by hand: the next sync puts it back.
    {
        let conn = duckdb::Connection::open(h.db_path()).unwrap();
        conn.execute_batch("DROP VIEW main.kv").unwrap();
    }
    assert!(sync(3));
    assert_eq!(h.count("main.kv"), 3);
    // A new property changes the definition: replaced, with the column.
    let mut catalog = json!({"streams": [
        dedup_stream("kv", None, kv_schema(), json!([["a"], ["b"]]), json!(["cur"]))
    ]});
    catalog["streams"][0]["stream"]["json_schema"]["properties"]["extra"] =
        json!({"type": "string"});
    h.write_catalog(&catalog);
    assert!(sync(4));
    assert_ne!(recorded()[0][1], first[0][1]);
    assert_eq!(
        rows(&h, "main.kv", "count(extra)::VARCHAR", "1"),
        owned(&[&["0"]])
    );
}

#[test]
fn typed_tables_dropped_by_hand_are_rebuilt() {
    let h = mode_harness("tables");
    h.write_catalog(&json!({"streams": [
        dedup_stream("kv", None, kv_schema(), json!([["a"], ["b"]]), json!(["cur"]))
    ]}));
    let sync = |n: i64| {
        let input = lines(&[
            record("kv", n, &format!(r#"{{"a":{n},"b":"x","cur":1}}"#)),
            record(
                "kv",
                n,
                r#"{"a":0,"b":"x","cur":0,"_ab_cdc_deleted_at":"2020-01-01T00:00:00Z"}"#,
            ),
            global_state(n),
        ]);
        let run = h.write(input.as_bytes());
        run.assert_ok();
        run
    };
    sync(1);
    for drop in [
        "DROP TABLE main.kv",
        r#"DROP TABLE _airbyte_internal."deleted.main.kv""#,
    ] {
        {
            let conn = duckdb::Connection::open(h.db_path()).unwrap();
            conn.execute_batch(drop).unwrap();
        }
        let n = h.count("main._airbyte_raw_kv") / 2 + 1;
        let run = sync(n);
        assert!(
            run.stderr.contains(r#"how="rebuilt""#),
            "{drop}: {}",
            run.stderr
        );
        assert_eq!(h.count("main.kv"), n, "{drop}");
    }
}
