//! Black-box versions of Airbyte's write-semantics cases: namespaces, names,
//! overwrite and refreshes, many streams.

use serde_json::{json, Value};

use crate::replay::raw_table;
use crate::util::{
    acceptance, catalog_of, configured_from_plain, global_state, lines, read_json, record, Harness,
};

fn ns_record(ns: &str, stream: &str, emitted_at: i64, data: &str) -> String {
    format!(
        r#"{{"type":"RECORD","record":{{"namespace":{},"stream":{},"emitted_at":{emitted_at},"data":{data}}}}}"#,
        json!(ns),
        json!(stream)
    )
}

fn complete(stream: &str) -> String {
    format!(
        r#"{{"type":"TRACE","trace":{{"type":"STREAM_STATUS","emitted_at":1,"stream_status":{{"stream_descriptor":{{"name":"{stream}"}},"status":"COMPLETE"}}}}}}"#
    )
}

/// A catalog stream with explicit generations.
fn gen_catalog(stream: &str, mode: &str, generation: i64, minimum: i64) -> Value {
    json!({"streams": [{"stream": {"name": stream, "json_schema": {"type": "object"}}, "sync_mode": "full_refresh",
        "destination_sync_mode": mode, "generation_id": generation, "minimum_generation_id": minimum, "sync_id": generation}]})
}

/// Sends `parts`, waits until the state among them is echoed, then breaks
/// the input off with an unparseable line (the bulk CDK's
/// `runSyncUntilStateAck`): the sync fails after an acknowledged state.
fn ack_then_break(h: &Harness, parts: &[String]) {
    let mut live = h.spawn_write();
    live.send(&lines(parts));
    live.next_state();
    live.send("{\"unparseable\n");
    live.close_stdin();
    live.wait_for("a TRACE", |m| m["type"] == "TRACE");
    assert!(!live.wait_exit().success());
}

fn data_of(h: &Harness, table: &str) -> Vec<String> {
    h.strings(&format!("SELECT _airbyte_data::VARCHAR FROM {table}"))
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect()
}

#[test]
fn second_sync_overwrite_touches_only_catalog_streams() {
    // DAT testSecondSync.
    let h = Harness::new();
    let plain = read_json(&acceptance("v0/exchange_rate_catalog.json"));
    h.write_catalog(&configured_from_plain(&plain));
    let input = std::fs::read_to_string(acceptance("v0/exchange_rate_messages.txt")).unwrap();
    h.write(input.as_bytes()).assert_ok();
    let mut dummy = plain.clone();
    dummy["streams"][0]["name"] = json!("DummyCatalog");
    h.write_catalog(&configured_from_plain(&dummy));
    h.write(
        input
            .replace("\"exchange_rate\"", "\"DummyCatalog\"")
            .as_bytes(),
    )
    .assert_ok();
    let mut third = configured_from_plain(&plain);
    third["streams"][0]["generation_id"] = json!(13);
    third["streams"][0]["minimum_generation_id"] = json!(13);
    h.write_catalog(&third);
    let one = r#"{"id":1,"currency":"USD","date":"2020-03-31T00:00:00Z","HKD":10.1,"NZD":700.1}"#;
    h.write(lines(&[record("exchange_rate", 1, one), r#"{"type":"STATE","state":{"type":"GLOBAL","global":{"shared_state":{"checkpoint":2}}}}"#.into(), complete("exchange_rate")]).as_bytes()).assert_ok();
    assert_eq!(
        data_of(&h, "main._airbyte_raw_exchange_rate"),
        vec![one.to_string()]
    );
    assert_eq!(h.count("main._airbyte_raw_DummyCatalog"), 5);
}

#[test]
fn incremental_append_accumulates() {
    // DAT testIncrementalSync: 5 + 1 rows.
    let h = Harness::new();
    let mut catalog =
        configured_from_plain(&read_json(&acceptance("v1/exchange_rate_catalog.json")));
    catalog["streams"][0]["destination_sync_mode"] = json!("append");
    catalog["streams"][0]["minimum_generation_id"] = json!(0);
    h.write_catalog(&catalog);
    let input = std::fs::read_to_string(acceptance("v1/exchange_rate_messages.txt")).unwrap();
    h.write(input.as_bytes()).assert_ok();
    h.write(lines(&[record("exchange_rate", 2, r#"{"id":1}"#), global_state(2)]).as_bytes())
        .assert_ok();
    assert_eq!(h.count("main._airbyte_raw_exchange_rate"), 6);
}

#[test]
fn same_table_name_in_two_namespaces() {
    let h = Harness::new();
    h.write_catalog(&catalog_of(
        &[
            ("exchange_rate", Some("ns1")),
            ("exchange_rate", Some("ns2")),
        ],
        "append",
    ));
    let mut parts = Vec::new();
    for i in 0..5 {
        parts.push(ns_record(
            "ns1",
            "exchange_rate",
            i,
            &format!(r#"{{"ns":1,"i":{i}}}"#),
        ));
        parts.push(ns_record(
            "ns2",
            "exchange_rate",
            i,
            &format!(r#"{{"ns":2,"i":{i}}}"#),
        ));
    }
    parts.push(global_state(1));
    h.write(lines(&parts).as_bytes()).assert_ok();
    assert_eq!(
        h.count("ns1._airbyte_raw_exchange_rate WHERE _airbyte_data->>'ns' = '1'"),
        5
    );
    assert_eq!(
        h.count("ns2._airbyte_raw_exchange_rate WHERE _airbyte_data->>'ns' = '2'"),
        5
    );
    assert_eq!(h.count("ns1._airbyte_raw_exchange_rate"), 5);
}

#[test]
fn namespace_test_cases() {
    let cases: Value = read_json(&acceptance("namespace_test_cases.json"));
    for case in cases
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["enabled"] == true)
    {
        let ns = case["namespace"].as_str().unwrap();
        let normalized = case["normalized"].as_str().unwrap();
        let h = Harness::new();
        h.write_catalog(&catalog_of(&[("data_stream", Some(ns))], "append"));
        h.write(
            lines(&[
                ns_record(ns, "data_stream", 1, r#"{"field1":true}"#),
                global_state(1),
            ])
            .as_bytes(),
        )
        .assert_ok();
        assert_eq!(
            h.count(&format!("\"{normalized}\"._airbyte_raw_data_stream")),
            1,
            "case {}",
            case["id"]
        );
    }
}

#[test]
fn truncate_refresh_interrupted_then_completed() {
    let h = Harness::new();
    h.write_catalog(&gen_catalog("s", "append", 1, 0));
    h.write(lines(&[record("s", 1, r#"{"gen":1}"#), global_state(1)]).as_bytes())
        .assert_ok();

    // Attempt 1 of generation 2 (a truncate refresh): a state is
    // acknowledged, then the input breaks off with no COMPLETE (the bulk
    // CDK's runSyncUntilStateAck).
    h.write_catalog(&gen_catalog("s", "append", 2, 2));
    ack_then_break(&h, &[record("s", 2, r#"{"gen":2,"a":1}"#), global_state(2)]);
    assert_eq!(
        data_of(&h, "main._airbyte_raw_s"),
        vec![r#"{"gen":1}"#.to_string()],
        "live table untouched"
    );

    // Attempt 2 of the same generation completes: the rows acknowledged in
    // attempt 1 are kept, the old generation is gone.
    h.write(
        lines(&[
            record("s", 3, r#"{"gen":2,"a":2}"#),
            global_state(3),
            complete("s"),
        ])
        .as_bytes(),
    )
    .assert_ok();
    assert_eq!(
        data_of(&h, "main._airbyte_raw_s"),
        vec![
            r#"{"gen":2,"a":1}"#.to_string(),
            r#"{"gen":2,"a":2}"#.to_string()
        ]
    );
    assert_eq!(
        h.count("duckdb_tables() WHERE table_name LIKE '_airbyte_tmp%'"),
        0
    );
}

#[test]
fn interrupted_truncate_without_prior_data_leaves_an_empty_table() {
    let h = Harness::new();
    h.write_catalog(&gen_catalog("s", "overwrite", 5, 5));
    ack_then_break(&h, &[record("s", 1, r#"{"x":1}"#), global_state(1)]);
    assert_eq!(h.count("main._airbyte_raw_s"), 0);
    assert_eq!(
        h.count("main._airbyte_tmp_raw_s"),
        1,
        "the acknowledged row is staged for a retry"
    );
}

#[test]
fn a_new_generation_discards_rows_staged_by_an_abandoned_one() {
    let h = Harness::new();
    h.write_catalog(&gen_catalog("s", "overwrite", 5, 5));
    ack_then_break(&h, &[record("s", 1, r#"{"gen":5}"#), global_state(1)]);
    assert_eq!(h.count("main._airbyte_tmp_raw_s"), 1);
    h.write_catalog(&gen_catalog("s", "overwrite", 6, 6));
    h.write(
        lines(&[
            record("s", 2, r#"{"gen":6}"#),
            global_state(2),
            complete("s"),
        ])
        .as_bytes(),
    )
    .assert_ok();
    assert_eq!(
        data_of(&h, "main._airbyte_raw_s"),
        vec![r#"{"gen":6}"#.to_string()]
    );
}

#[test]
fn truncate_with_no_records_empties_the_table() {
    let h = Harness::new();
    h.write_catalog(&catalog_of(&[("s", None)], "append"));
    h.write(lines(&[record("s", 1, "{}"), record("s", 2, "{}"), global_state(1)]).as_bytes())
        .assert_ok();
    h.write_catalog(&catalog_of(&[("s", None)], "overwrite"));
    h.write(lines(&[global_state(2), complete("s")]).as_bytes())
        .assert_ok();
    assert_eq!(h.count("main._airbyte_raw_s"), 0);
}

#[test]
fn incomplete_status_does_not_swap() {
    let h = Harness::new();
    h.write_catalog(&catalog_of(&[("s", None)], "append"));
    h.write(lines(&[record("s", 1, r#"{"old":1}"#), global_state(1)]).as_bytes())
        .assert_ok();
    h.write_catalog(&catalog_of(&[("s", None)], "overwrite"));
    let incomplete = complete("s").replace("COMPLETE", "INCOMPLETE");
    h.write(lines(&[record("s", 2, r#"{"new":1}"#), global_state(2), incomplete]).as_bytes())
        .assert_ok();
    assert_eq!(
        data_of(&h, "main._airbyte_raw_s"),
        vec![r#"{"old":1}"#.to_string()]
    );
}

#[test]
fn hybrid_refresh_is_refused_before_anything_is_written() {
    let h = Harness::new();
    h.write_catalog(&gen_catalog("s", "append", 3, 2));
    let run = h.write(lines(&[record("s", 1, "{}")]).as_bytes());
    assert_eq!(run.code, Some(1));
    assert_eq!(run.error()["failure_type"], "config_error");
    assert!(!h.db_path().exists(), "nothing written");
}

fn many_streams(n: usize) {
    let h = Harness::new();
    let names: Vec<String> = (0..n).map(|i| format!("stream_{i}")).collect();
    let streams: Vec<(&str, Option<&str>)> = names.iter().map(|n| (n.as_str(), None)).collect();
    h.write_catalog(&catalog_of(&streams, "append"));
    let mut parts = Vec::new();
    for round in 0..3 {
        for name in &names {
            parts.push(record(name, round, &format!(r#"{{"round":{round}}}"#)));
        }
        parts.push(global_state(round));
    }
    let run = h.write(lines(&parts).as_bytes());
    run.assert_ok();
    assert_eq!(run.state_counts(), vec![n as f64; 3]);
    for name in names.iter().step_by(n / 7 + 1) {
        assert_eq!(h.count(&format!("main.\"_airbyte_raw_{name}\"")), 3);
    }
    assert_eq!(
        h.count("duckdb_tables() WHERE table_name LIKE '_airbyte_raw_stream_%'"),
        n as i64
    );
}

#[test]
fn twenty_one_streams() {
    many_streams(21);
}

#[test]
fn five_hundred_streams() {
    many_streams(500);
}

#[test]
fn funky_stream_and_namespace_names_land_in_their_own_tables() {
    let long_name = "ü".repeat(5_000); // 10 kB of UTF-8
    let funky = [
        (
            "stream-with:spécial:character_names",
            Some("namespace-with:spécial"),
        ),
        ("a\"; DROP TABLE x; --", None),
        ("back\\slash'quote", Some("'; DELETE FROM y; --")),
        ("", None),
        ("!!!", Some("???")),
        ("tab\tand\nnewline", None),
        ("nul\u{0}byte", Some("back\\slash\u{0}")),
        ("only;--punctuation/*", Some("\"")),
        (long_name.as_str(), Some(long_name.as_str())),
    ];
    let h = Harness::new();
    h.write_catalog(&catalog_of(&funky, "append"));
    let parts: Vec<String> = funky
        .iter()
        .enumerate()
        .map(|(i, (name, ns))| {
            ns_record(ns.unwrap_or(""), name, i as i64, &format!(r#"{{"i":{i}}}"#))
        })
        .chain([global_state(1)])
        .collect();
    h.write(lines(&parts).as_bytes()).assert_ok();
    for (i, (name, ns)) in funky.iter().enumerate() {
        assert_eq!(
            data_of(&h, &raw_table(ns.unwrap_or(""), name)),
            vec![format!(r#"{{"i":{i}}}"#)],
            "{name:?}"
        );
    }
}

#[test]
fn case_collisions_get_distinct_tables_and_keep_them_when_streams_are_added() {
    let h = Harness::new();
    h.write_catalog(&catalog_of(&[("users", None)], "append"));
    h.write(lines(&[record("users", 1, r#"{"who":"users"}"#), global_state(1)]).as_bytes())
        .assert_ok();

    // Later `Users` and `a b`/`a-b` arrive: `users` keeps its table.
    h.write_catalog(&catalog_of(
        &[
            ("Users", None),
            ("users", None),
            ("a-b", None),
            ("a b", None),
        ],
        "append",
    ));
    let parts = [
        record("Users", 2, r#"{"who":"Users"}"#),
        record("users", 3, r#"{"who":"users"}"#),
        record("a-b", 4, r#"{"who":"a-b"}"#),
        record("a b", 5, r#"{"who":"a b"}"#),
        global_state(2),
    ];
    h.write(lines(&parts).as_bytes()).assert_ok();
    assert_eq!(
        data_of(&h, "main._airbyte_raw_users"),
        vec![r#"{"who":"users"}"#.to_string(); 2]
    );
    let tables: Vec<String> = h
        .strings(
            "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' ORDER BY table_name",
        )
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect();
    assert_eq!(tables.len(), 4, "{tables:?}");
    // Every stream's rows are in exactly one table of their own.
    for who in ["Users", "users", "a-b", "a b"] {
        let holders: Vec<&String> = tables
            .iter()
            .filter(|t| {
                h.count(&format!(
                    "main.\"{t}\" WHERE _airbyte_data->>'who' = '{who}'"
                )) > 0
            })
            .collect();
        assert_eq!(holders.len(), 1, "{who}: {holders:?}");
    }
    // The rule is stable: a third sync with the streams in another order
    // writes to the same tables.
    h.write_catalog(&catalog_of(
        &[
            ("a b", None),
            ("users", None),
            ("a-b", None),
            ("Users", None),
        ],
        "append",
    ));
    h.write(lines(&[record("a b", 6, r#"{"who":"a b"}"#), global_state(3)]).as_bytes())
        .assert_ok();
    let again: Vec<String> = h
        .strings(
            "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' ORDER BY table_name",
        )
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect();
    assert_eq!(again, tables);
}

#[test]
fn append_dedup_writes_raw_rows_like_append_and_dedups_the_typed_view() {
    // DAT testIncrementalDedupeSync on a raw destination: all 7 raw rows.
    let h = Harness::new();
    let mut catalog =
        configured_from_plain(&read_json(&acceptance("v0/exchange_rate_catalog.json")));
    catalog["streams"][0]["destination_sync_mode"] = json!("append_dedup");
    catalog["streams"][0]["minimum_generation_id"] = json!(0);
    catalog["streams"][0]["primary_key"] = json!([["id"]]);
    catalog["streams"][0]["cursor_field"] = json!(["date"]);
    h.write_catalog(&catalog);
    let input = std::fs::read_to_string(acceptance("v0/exchange_rate_messages.txt")).unwrap();
    h.write(input.as_bytes()).assert_ok();
    let second = [
        record(
            "exchange_rate",
            1602637989500,
            r#"{"id":2,"currency":"EUR","date":"2020-09-01T00:00:00Z","HKD":10.5,"NZD":1.14}"#,
        ),
        record(
            "exchange_rate",
            1602637989600,
            r#"{"id":1,"currency":"USD","date":"2020-09-01T00:00:00Z","HKD":5.4,"NZD":1.14}"#,
        ),
        global_state(9),
    ];
    h.write(lines(&second).as_bytes()).assert_ok();
    assert_eq!(h.count("main._airbyte_raw_exchange_rate"), 7);
    // The typed view keeps the latest row per id: by `date`, then by
    // emission when the dates tie.
    assert_eq!(
        h.strings("SELECT id::VARCHAR, date, \"HKD\"::VARCHAR FROM main.exchange_rate ORDER BY id"),
        [
            [
                Some("1".into()),
                Some("2020-09-01T00:00:00Z".into()),
                Some("5.4".into())
            ],
            [
                Some("2".into()),
                Some("2020-09-01T00:00:00Z".into()),
                Some("10.5".into())
            ],
        ]
    );
}

/// Typed views are prepared on a connection of their own while the records
/// load: overwrites that complete (and drop their staging tables) while the
/// views of a first sync are still being created, in the same schemas, do
/// not disturb either; every view ends up there, over its stream's rows.
#[test]
fn views_prepared_beside_overwrites_that_complete_mid_sync() {
    for round in 0..3 {
        let h = Harness::new();
        let names: Vec<String> = (0..40).map(|i| format!("s{i}")).collect();
        let mut catalog = catalog_of(
            &names.iter().map(|n| (n.as_str(), None)).collect::<Vec<_>>(),
            "overwrite",
        );
        for s in catalog["streams"].as_array_mut().unwrap() {
            s["stream"]["json_schema"] = json!({"type": "object", "properties": {
                "i": {"type": "integer"}, "t": {"type": "string", "format": "date-time"}}});
        }
        h.write_catalog(&catalog);
        let mut parts = Vec::new();
        for (k, n) in names.iter().enumerate() {
            for i in 0..=k {
                parts.push(record(
                    n,
                    i as i64,
                    &format!(r#"{{"i":{i},"t":"2024-01-01T00:00:00Z"}}"#),
                ));
            }
            parts.push(complete(n));
            parts.push(global_state((round * 100 + k) as i64));
        }
        h.write(lines(&parts).as_bytes()).assert_ok();
        for (k, n) in names.iter().enumerate() {
            assert_eq!(
                h.count(&format!("main.{n}")),
                k as i64 + 1,
                "round {round}, {n}"
            );
            assert_eq!(h.count(&format!("main._airbyte_raw_{n}")), k as i64 + 1);
        }
    }
}
