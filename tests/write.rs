//! `write` behaviour on small, hand-made inputs.

use serde_json::{json, Value};

use crate::util::{
    catalog_of, global_state, lines, python_with_duckdb, record, Harness, HANG_GUARD,
};

#[test]
fn empty_input_creates_empty_tables_and_exits_cleanly() {
    let h = Harness::new();
    h.write_catalog(&catalog_of(&[("a", None), ("b", Some("ns"))], "append"));
    let run = h.write(b"");
    run.assert_ok();
    assert!(run.protocol_lines().is_empty(), "{run:?}");
    assert_eq!(h.count("main._airbyte_raw_a"), 0);
    assert_eq!(h.count("ns._airbyte_raw_b"), 0);
    let columns = h.strings(
        "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = '_airbyte_raw_a' ORDER BY column_index",
    );
    let columns: Vec<(String, String)> = columns
        .into_iter()
        .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap()))
        .collect();
    assert_eq!(
        columns,
        [
            ("_airbyte_ab_id", "VARCHAR"),
            ("_airbyte_emitted_at", "TIMESTAMP WITH TIME ZONE"),
            ("_airbyte_data", "JSON"),
            ("_airbyte_meta", "JSON"),
            ("_airbyte_generation_id", "BIGINT"),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
}

#[test]
fn state_only_input_echoes_every_state_in_order() {
    let h = Harness::new();
    h.write_catalog(&catalog_of(&[("name_one", None)], "append"));
    let input = lines(&[
        r#"{"type":"STATE","state":{"type":"STREAM","stream":{"stream_descriptor":{"name":"name_one"},"stream_state":{"c":1}}}}"#.into(),
        r#"{"type":"STATE","state":{"type":"STREAM","stream":{"stream_descriptor":{"name":"name_two"},"stream_state":{"c":2}}}}"#.into(),
        r#"{"type":"STATE","state":{"data":{"legacy":true}}}"#.into(),
    ]);
    let run = h.write(input.as_bytes());
    run.assert_ok();
    let out = run.protocol_lines();
    assert_eq!(
        out,
        [
            r#"{"type":"STATE","state":{"type":"STREAM","stream":{"stream_descriptor":{"name":"name_one"},"stream_state":{"c":1}},"destinationStats":{"recordCount":0.0}}}"#,
            r#"{"type":"STATE","state":{"type":"STREAM","stream":{"stream_descriptor":{"name":"name_two"},"stream_state":{"c":2}},"destinationStats":{"recordCount":0.0}}}"#,
            r#"{"type":"STATE","state":{"data":{"legacy":true},"destinationStats":{"recordCount":0.0}}}"#,
        ]
    );
}

#[test]
fn stream_state_counts_only_its_own_stream() {
    let h = Harness::new();
    h.write_catalog(&catalog_of(&[("a", None), ("b", None)], "append"));
    let stream_state = |s: &str| {
        format!(
            r#"{{"type":"STATE","state":{{"type":"STREAM","stream":{{"stream_descriptor":{{"name":"{s}","namespace":null}}}}}}}}"#
        )
    };
    let input = lines(&[
        record("a", 1, "{}"),
        record("b", 2, "{}"),
        record("a", 3, "{}"),
        stream_state("a"),
        record("b", 4, "{}"),
        stream_state("b"),
        global_state(1),
    ]);
    let run = h.write(input.as_bytes());
    run.assert_ok();
    assert_eq!(run.state_counts(), [2.0, 2.0, 0.0]);
}

#[test]
fn data_text_is_stored_exactly_as_it_arrived() {
    let h = Harness::new();
    h.write_catalog(&catalog_of(&[("s", None)], "append"));
    let data = [
        r#"{"big":10000000000000000000000.1234,"tiny":1e-400,"huge":123456789012345678901234567890}"#,
        r#"{"z":1,"a":2,"esc":"line\nbreak \u2028 \"q\" \\ é ࠈൡሗ 😀","nested":{"arr":[1,null,{"x":[]}]}}"#,
        r#"{ "spaced" : [ 1 , 2 ] }"#,
        r#"{"currency":"USD\u2028","date":"2020-03-\n31T00:00:00Z\r"}"#,
    ];
    let input: String = data
        .iter()
        .enumerate()
        .map(|(i, d)| record("s", 1_600_000_000_000 + i as i64, d) + "\n")
        .collect();
    let run = h.write(input.as_bytes());
    run.assert_ok();
    let rows = h.strings("SELECT _airbyte_data::VARCHAR FROM main._airbyte_raw_s");
    let got: Vec<String> = rows.into_iter().map(|r| r[0].clone().unwrap()).collect();
    assert_eq!(got, data.map(String::from));
    let emitted = h.strings(
        "SELECT epoch_ms(_airbyte_emitted_at::TIMESTAMP)::VARCHAR FROM main._airbyte_raw_s",
    );
    assert_eq!(emitted[3][0].as_deref(), Some("1600000000003"));
}

#[test]
fn append_accumulates_and_overwrite_replaces_across_syncs() {
    let h = Harness::new();
    h.write_catalog(&catalog_of(&[("s", None)], "append"));
    let input = lines(&[
        record("s", 1, r#"{"n":1}"#),
        record("s", 2, r#"{"n":2}"#),
        global_state(1),
    ]);
    h.write(input.as_bytes()).assert_ok();
    h.write(input.as_bytes()).assert_ok();
    assert_eq!(h.count("main._airbyte_raw_s"), 4);

    h.write_catalog(&catalog_of(&[("s", None)], "overwrite"));
    let input = lines(&[record("s", 3, r#"{"n":3}"#), global_state(2)]);
    h.write(input.as_bytes()).assert_ok();
    assert_eq!(
        h.strings("SELECT _airbyte_data::VARCHAR FROM main._airbyte_raw_s"),
        vec![vec![Some(r#"{"n":3}"#.into())]]
    );
    // No staging table is left behind.
    assert_eq!(
        h.count("duckdb_tables() WHERE table_name LIKE '_airbyte_tmp%'"),
        0
    );
}

#[test]
fn overwrite_that_fails_keeps_the_previous_rows() {
    let h = Harness::new();
    h.write_catalog(&catalog_of(&[("s", None)], "append"));
    h.write(lines(&[record("s", 1, r#"{"old":1}"#), global_state(1)]).as_bytes())
        .assert_ok();

    h.write_catalog(&catalog_of(&[("s", None)], "overwrite"));
    let input = lines(&[
        record("s", 2, r#"{"new":1}"#),
        global_state(2),
        r#"{"type":"RECORD","record":{"#.into(),
    ]);
    let run = h.write(input.as_bytes());
    assert_ne!(run.code, Some(0));
    assert_eq!(
        h.strings("SELECT _airbyte_data::VARCHAR FROM main._airbyte_raw_s"),
        vec![vec![Some(r#"{"old":1}"#.into())]]
    );
}

#[test]
fn a_record_for_a_stream_outside_the_catalog_is_a_config_error() {
    let h = Harness::new();
    h.write_catalog(&catalog_of(&[("s", None)], "append"));
    let run = h.write(
        lines(&[
            record("s", 1, "{}"),
            record("infinity", 2, r#"{"secret":"x"}"#),
        ])
        .as_bytes(),
    );
    assert_eq!(run.code, Some(1));
    let e = run.error();
    assert_eq!(e["failure_type"], "config_error");
    let message = e["message"].as_str().unwrap();
    assert!(
        message.contains("line 2") && message.contains("infinity"),
        "{message}"
    );
    assert!(!run.stdout.contains("secret"));
}

#[test]
fn a_truncated_line_after_a_committed_state_fails_and_keeps_committed_rows() {
    let h = Harness::new();
    h.write_catalog(&catalog_of(&[("s", None)], "append"));
    let mut live = h.spawn_write();
    live.send(&lines(&[
        record("s", 1, r#"{"n":1}"#),
        record("s", 2, r#"{"n":2}"#),
        global_state(1),
    ]));
    live.next_state();
    live.send(&lines(&[
        record("s", 3, r#"{"n":3}"#),
        r#"{"type":"RECORD","record":{"stream":"s","emitted_at":4,"data":{"private":"#.into(),
    ]));
    live.close_stdin();
    let trace = live.wait_for("a TRACE", |m| m["type"] == "TRACE");
    let error = &trace["trace"]["error"];
    assert_eq!(error["failure_type"], "config_error");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("line 5") && message.contains("truncated"),
        "{message}"
    );
    assert!(!message.contains("private"));
    let status = live.wait_exit();
    assert!(!status.success());
    let after = live.rest_of_stdout();
    assert!(after.is_empty(), "nothing after the trace: {after:?}");
    assert_eq!(h.count("main._airbyte_raw_s"), 2);
}

/// Runs `script` under Python with DuckDB 1.4.3 (an independent, older
/// reader) and returns its trimmed stdout; fails the test if the script does.
fn duckdb_1_4(script: &str) -> String {
    let out = std::process::Command::new(python_with_duckdb("1.4.3"))
        .args(["-c", script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn new_files_open_in_duckdb_1_4() {
    let h = Harness::new();
    h.write_catalog(&catalog_of(&[("s", None)], "append"));
    h.write(
        lines(&[
            record("s", 1_700_000_000_123, r#"{"k":"v"}"#),
            global_state(1),
        ])
        .as_bytes(),
    )
    .assert_ok();
    let script = format!(
        "import duckdb; c = duckdb.connect({:?}, read_only=True); \
         print(c.sql(\"SELECT _airbyte_data, epoch_ms(_airbyte_emitted_at) FROM main._airbyte_raw_s\").fetchall())",
        h.db_path().to_str().unwrap()
    );
    assert_eq!(duckdb_1_4(&script), r#"[('{"k":"v"}', 1700000000123)]"#);
}

/// A sync of few streams attaches with a `ROW_GROUP_SIZE` of 16,384 rows, so
/// that a commit of a stream's rows goes straight into the file (no WAL)
/// from 16,384 rows on; a catalog too large for every stream to fill such a
/// group within `batch_size_mb` keeps DuckDB's 122,880. DuckDB 1.4 reads
/// both, raw and typed tables.
#[test]
fn row_groups_follow_the_catalog_size_and_duckdb_1_4_reads_them() {
    // (streams in the catalog, row groups per table) after each sync of
    // 40,000 records of stream s0 into the same file: a new file with groups
    // of 16,384 rows (3); the existing file with DuckDB's 122,880, where the
    // checkpoint merges all 80,000 rows into one group; then 16,384 again,
    // three groups more (4).
    let syncs = [(1, 3), (40, 1), (1, 4)];
    let h = Harness::new();
    h.write_config(serde_json::json!({
        "destination_path": h.db_path().to_str().unwrap(),
        "typed_output": "tables",
    }));
    for (sync, (streams, groups)) in syncs.into_iter().enumerate() {
        let names: Vec<String> = (0..streams).map(|i| format!("s{i}")).collect();
        let named: Vec<(&str, Option<&str>)> = names.iter().map(|n| (n.as_str(), None)).collect();
        h.write_catalog(&catalog_of(&named, "append"));
        let mut input: Vec<String> = (0..40_000)
            .map(|i| record("s0", 1_700_000_000_000 + i, &format!(r#"{{"n":{i}}}"#)))
            .collect();
        input.push(global_state(1));
        h.write(input.join("\n").as_bytes()).assert_ok();
        let script = format!(
            "import duckdb; c = duckdb.connect({:?}, read_only=True)\n\
             for t in ('_airbyte_raw_s0', 's0'):\n\
             \x20   groups = c.sql(f\"SELECT count(DISTINCT row_group_id) FROM pragma_storage_info('main.{{t}}')\").fetchone()[0]\n\
             \x20   print(t, c.sql(f'SELECT count(*) FROM main.{{t}}').fetchone()[0], groups)",
            h.db_path().to_str().unwrap()
        );
        let rows = 40_000 * (sync + 1);
        assert_eq!(
            duckdb_1_4(&script),
            format!("_airbyte_raw_s0 {rows} {groups}\ns0 {rows} {groups}"),
            "sync {sync} with {streams} streams"
        );
    }
}

/// Typed views call the typing rules, macros in `_airbyte_internal`. A
/// client that attaches the file under a name of its own, with DuckDB 1.4,
/// reads every view as DuckDB 2.0 does: every column type, a value that did
/// not fit (the `_airbyte_meta` rule) and a dedup by an undeclared cursor
/// (the JSON order rules).
#[test]
fn typed_views_read_the_same_in_duckdb_1_4_under_another_name() {
    let props = json!({
        "id": {"type": "integer"},
        "b": {"type": "boolean"},
        "n": {"type": "number"},
        "d": {"type": "string", "format": "date"},
        "ts": {"type": "string", "format": "date-time", "airbyte_type": "timestamp_without_timezone"},
        "tz": {"type": "string", "format": "date-time", "airbyte_type": "timestamp_with_timezone"},
        "t": {"type": "string", "format": "time", "airbyte_type": "time_without_timezone"},
        "ttz": {"type": "string", "format": "time", "airbyte_type": "time_with_timezone"},
        "s": {"type": "string"},
        "o": {"type": "object"},
        "a": {"type": "array"},
    });
    let stream = |name: &str, mode: &str| {
        json!({
            "stream": {"name": name, "json_schema": {"type": "object", "properties": props},
                       "supported_sync_modes": ["incremental"]},
            "sync_mode": "incremental", "destination_sync_mode": mode,
            "primary_key": [["id"]], "cursor_field": ["c"],
        })
    };
    let h = Harness::new();
    h.write_catalog(
        &json!({"streams": [stream("plain", "append"), stream("latest", "append_dedup")]}),
    );
    let datas = [
        r#"{"id":1,"b":true,"n":1.5,"d":"2024-07-25","ts":"2024-07-25T10:30:00","tz":"2024-07-25T10:30:00+02:00","t":"10:30:00","ttz":"10:30:00+02:00","s":"é","o":{"k":1},"a":[1],"c":"2024-01-01T10:00:00+02:00"}"#,
        r#"{"id":1,"b":"FALSE","n":"2.5","d":"x","ts":"2024-07-25 10:30","tz":"2024-07-25T10:30:00Z","t":"x","ttz":"10:30:00","s":5,"o":[1],"a":{},"c":"2024-01-01T09:00:00Z"}"#,
        r#"{"id":"x","b":1,"n":true,"d":null,"ts":"x","tz":"x","t":null,"ttz":"x","s":null,"o":null,"a":null,"c":7}"#,
        r#"{"id":2,"c":{"z":1}}"#,
        r#"{"id":2,"c":10}"#,
    ];
    let mut input = Vec::new();
    for (k, data) in datas.iter().enumerate() {
        for name in ["plain", "latest"] {
            input.push(record(name, 1_700_000_000_000 + k as i64, data));
        }
    }
    input.push(global_state(1));
    h.write(lines(&input).as_bytes()).assert_ok();

    let query = |catalog: &str, name: &str| {
        format!(
            "SELECT COLUMNS(* EXCLUDE (_airbyte_ab_id))::VARCHAR FROM {catalog}main.{name} \
             ORDER BY _airbyte_emitted_at, id"
        )
    };
    for name in ["plain", "latest"] {
        let ours = h.strings(&query("", name));
        let script = format!(
            "import duckdb, json\n\
             c = duckdb.connect()\n\
             c.execute(\"SET TimeZone = 'UTC'\")\n\
             c.execute(\"ATTACH '{}' AS elsewhere (READ_ONLY)\")\n\
             print(json.dumps(c.execute({:?}).fetchall()))",
            h.db_path().to_str().unwrap(),
            query("elsewhere.", name)
        );
        let theirs: Vec<Vec<Option<String>>> = serde_json::from_str(&duckdb_1_4(&script)).unwrap();
        assert_eq!(
            theirs, ours,
            "stream {name}: DuckDB 1.4 reads the view otherwise"
        );
        // Dedup: keys 1, 2 and the NULL of `"x"`.
        assert_eq!(ours.len(), if name == "plain" { 5 } else { 3 }, "{name}");
    }
    // The rules ran: typed values, a value that did not fit, the latest rows.
    let plain = h.strings("SELECT tz::VARCHAR, json_array_length(_airbyte_meta -> '$.changes')::VARCHAR FROM main.plain ORDER BY _airbyte_emitted_at");
    assert_eq!(
        plain[0],
        [Some("2024-07-25 08:30:00+00".into()), Some("0".into())]
    );
    assert_eq!(
        plain[2][1].as_deref(),
        Some("6"),
        "id, b, n, ts, tz and ttz: {plain:?}"
    );
    let latest = h.strings("SELECT id::VARCHAR, s FROM main.latest ORDER BY id");
    // Key 1: 09:00Z beats 10:00+02:00 (08:00Z); key 2: an object beats a
    // number; the number 5 in a string column is its JSON text.
    assert_eq!(
        latest,
        [
            [Some("1".into()), Some("5".into())],
            [Some("2".into()), None],
            [None, None]
        ]
    );
}

/// A first sync of a large catalog records every stream's view in batches
/// (250 streams: three); a later sync with the same catalog recreates
/// none, and `off` then drops them all, leaving the typing rules, which
/// views of other streams may call.
#[test]
fn a_large_catalog_records_every_view_once_and_off_drops_them() {
    let names: Vec<String> = (0..250).map(|i| format!("s{i:03}")).collect();
    let named: Vec<(&str, Option<&str>)> = names.iter().map(|n| (n.as_str(), None)).collect();
    let h = Harness::new();
    h.write_catalog(&catalog_of(&named, "append"));
    let input = lines(&[
        record("s007", 1_700_000_000_000, r#"{"k":"v"}"#),
        global_state(1),
    ]);
    let created = |run: &crate::util::Run| run.stderr.matches("typed view created").count();
    let first = h.write(input.as_bytes());
    first.assert_ok();
    assert_eq!(created(&first), 250);
    let registry = "SELECT count(*)::VARCHAR, count(DISTINCT stream_key)::VARCHAR, \
                    count(*) FILTER (kind = 'view')::VARCHAR FROM _airbyte_internal.typed_relations";
    let all = Some("250".to_string());
    assert_eq!(
        h.strings(registry),
        [[all.clone(), all.clone(), all.clone()]]
    );
    let views =
        "SELECT count(*)::VARCHAR FROM duckdb_views() WHERE NOT internal AND schema_name = 'main'";
    assert_eq!(h.strings(views), [[all.clone()]]);
    assert_eq!(
        h.strings("SELECT count(*)::VARCHAR FROM main.s007"),
        [[Some("1".to_string())]]
    );

    let second = h.write(input.as_bytes());
    second.assert_ok();
    assert_eq!(created(&second), 0, "unchanged views are kept");
    assert_eq!(h.strings(registry), [[all.clone(), all.clone(), all]]);

    h.write_config(json!({
        "destination_path": h.db_path().to_str().unwrap(),
        "typed_output": "off",
    }));
    h.write(input.as_bytes()).assert_ok();
    assert_eq!(h.strings(views), [[Some("0".to_string())]]);
    let rules = "SELECT (count(*) > 0)::VARCHAR FROM duckdb_functions() \
                 WHERE schema_name = '_airbyte_internal' AND function_name LIKE 'typed_%'";
    assert_eq!(h.strings(rules), [[Some("true".to_string())]]);
    assert_eq!(h.count("main._airbyte_raw_s007"), 3);
}

/// A view names its typing rules without a catalog, and a rule dropped by
/// hand comes back with the next sync, though no view changed.
#[test]
fn typing_rules_dropped_by_hand_come_back_with_the_next_sync() {
    let h = Harness::new();
    let props = json!({"id": {"type": "integer"}, "ts": {"type": "string", "format": "date-time"}});
    h.write_catalog(&json!({"streams": [{
        "stream": {"name": "s", "json_schema": {"type": "object", "properties": props},
                   "supported_sync_modes": ["full_refresh"]},
        "sync_mode": "full_refresh", "destination_sync_mode": "append",
    }]}));
    let input = lines(&[
        record(
            "s",
            1_700_000_000_000,
            r#"{"id":7,"ts":"2024-01-01T10:00:00+02:00"}"#,
        ),
        global_state(1),
    ]);
    h.write(input.as_bytes()).assert_ok();
    let read = "SELECT id::VARCHAR, ts::VARCHAR FROM main.s";
    let want = [[
        Some("7".to_string()),
        Some("2024-01-01 08:00:00+00".to_string()),
    ]];
    assert_eq!(h.strings(read), want);
    let sql = h.strings("SELECT sql FROM duckdb_views() WHERE view_name = 's'");
    let sql = sql[0][0].as_deref().unwrap();
    assert!(sql.contains("_airbyte_internal.typed_bigint_"), "{sql}");
    assert!(
        !sql.contains("destination"),
        "a view names no catalog: {sql}"
    );

    let macros = "SELECT function_name FROM duckdb_functions() \
                  WHERE schema_name = '_airbyte_internal' AND function_type = 'macro' ORDER BY 1";
    let made = h.strings(macros);
    assert!(made.len() >= 10, "{made:?}");
    {
        let conn = duckdb::Connection::open(h.db_path()).unwrap();
        for name in &made {
            let name = name[0].as_deref().unwrap();
            conn.execute_batch(&format!("DROP MACRO _airbyte_internal.\"{name}\""))
                .unwrap();
        }
    }
    assert!(
        h.db().prepare(read).is_err(),
        "the view cannot bind without its rules"
    );
    let again = h.write(input.as_bytes());
    again.assert_ok();
    assert!(
        !again.stderr.contains("typed view created"),
        "no view changed"
    );
    assert_eq!(h.strings(macros), made);
    assert_eq!(h.strings(read), [want[0].clone(), want[0].clone()]);
}

#[test]
fn official_connector_tables_are_adopted() {
    let h = Harness::new();
    {
        let conn = duckdb::Connection::open(h.db_path()).unwrap();
        conn.execute_batch(
            "CREATE TABLE main._airbyte_raw_s (_airbyte_ab_id TEXT PRIMARY KEY, _airbyte_emitted_at TIMESTAMP, _airbyte_data JSON);
             INSERT INTO main._airbyte_raw_s VALUES ('old-id', TIMESTAMP '2020-01-01 00:00:00', '{\"old\":true}');",
        )
        .unwrap();
    }
    h.write_catalog(&catalog_of(&[("s", None)], "append"));
    h.write(lines(&[record("s", 1000, r#"{"new":true}"#), global_state(1)]).as_bytes())
        .assert_ok();
    let rows = h.strings("SELECT _airbyte_ab_id, _airbyte_data::VARCHAR, _airbyte_meta::VARCHAR FROM main._airbyte_raw_s");
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[0],
        vec![Some("old-id".into()), Some(r#"{"old":true}"#.into()), None]
    );
    assert_eq!(rows[1][1].as_deref(), Some(r#"{"new":true}"#));
}

/// With `typed_output: tables`, a table adopted from the official connector
/// (its `_airbyte_emitted_at` a TIMESTAMP) and one made here are typed
/// once; later syncs append to the typed tables rather than rebuild them.
#[test]
fn adopted_and_own_typed_tables_are_built_once() {
    let h = Harness::new();
    h.write_config(
        json!({"destination_path": h.db_path().to_str().unwrap(), "typed_output": "tables"}),
    );
    {
        let conn = duckdb::Connection::open(h.db_path()).unwrap();
        conn.execute_batch(
            "CREATE TABLE main._airbyte_raw_s (_airbyte_ab_id TEXT PRIMARY KEY, _airbyte_emitted_at TIMESTAMP, _airbyte_data JSON);
             INSERT INTO main._airbyte_raw_s VALUES ('old-id', TIMESTAMP '2020-01-01 00:00:00', '{\"old\":true}');",
        )
        .unwrap();
    }
    h.write_catalog(&catalog_of(&[("s", None), ("t", None)], "append"));
    for n in 0..3 {
        let input = [
            record("s", 1000, r#"{"new":true}"#),
            record("t", 1000, r#"{"new":true}"#),
            global_state(n),
        ];
        let run = h.write(lines(&input).as_bytes());
        run.assert_ok();
        if n > 0 {
            assert!(!run.stderr.contains("rebuilt"), "sync {n}: {}", run.stderr);
        }
    }
    assert_eq!(h.count("main.s"), 4);
    assert_eq!(h.count("main.t"), 3);
}

#[test]
fn write_to_a_locked_database_is_a_transient_error() {
    let h = Harness::new();
    h.write_config(
        json!({"destination_path": h.db_path().to_str().unwrap(), "lock_timeout_seconds": 1}),
    );
    h.write_catalog(&catalog_of(&[("s", None)], "append"));
    h.write(b"").assert_ok();
    let holder = duckdb::Connection::open(h.db_path()).unwrap();
    let input = lines(&[record("s", 1, "{}")]);
    let run = h.exec(&h.write_args(), input.as_bytes(), &[], HANG_GUARD);
    drop(holder);
    assert_eq!(run.code, Some(1));
    assert_eq!(run.error()["failure_type"], "transient_error");
    assert!(run.error()["message"]
        .as_str()
        .unwrap()
        .contains("db.duckdb"));
}

#[test]
fn bad_config_and_catalog_are_config_errors() {
    let h = Harness::new();
    h.write_catalog(&catalog_of(&[("s", None)], "append"));
    h.write_config(json!({"destination_path": h.db_path().to_str().unwrap(), "threads": "many"}));
    let run = h.write(b"");
    assert_eq!(run.error()["failure_type"], "config_error");

    let h = Harness::new();
    std::fs::write(h.catalog_path(), "{\"streams\": 3}").unwrap();
    let run = h.write(b"");
    assert_eq!(run.code, Some(1));
    assert_eq!(run.error()["failure_type"], "config_error");
}

#[test]
fn progress_is_reported_at_an_interval_and_summed_up_at_the_end() {
    let h = Harness::new();
    h.write_catalog(&catalog_of(&[("a", None), ("b", None)], "append"));
    h.write_config(
        json!({"destination_path": h.db_path().to_str().unwrap(), "progress_interval_seconds": 1}),
    );
    let mut live = h.spawn_write();
    live.send(&lines(&[
        record("a", 1, r#"{"n":1}"#),
        record("a", 2, r#"{"n":2}"#),
        record("b", 3, "{}"),
        global_state(1),
    ]));
    // A progress line goes out every second while the input stays open.
    let line = live.wait_for("a progress LOG counting the records and the state", |m| {
        m["type"] == "LOG"
            && m["log"]["message"].as_str().is_some_and(|t| {
                t.starts_with("progress: 3 records") && t.contains("1 states acknowledged")
            })
    });
    let progress = line["log"]["message"].as_str().unwrap();
    assert!(progress.contains("`a` 2 records"), "{progress}");
    live.close_stdin();
    let rest: Vec<Value> = live
        .rest_of_stdout()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(live.wait_exit().success());
    let logs: Vec<&str> = rest
        .iter()
        .filter(|m| m["type"] == "LOG")
        .map(|m| m["log"]["message"].as_str().unwrap())
        .collect();
    assert!(
        logs.iter().any(|l| l.starts_with("stream `a`: 2 records")),
        "{logs:?}"
    );
    assert!(
        logs.iter().any(|l| l.starts_with("stream `b`: 1 records")),
        "{logs:?}"
    );
    assert!(
        logs.last().unwrap().starts_with("sync finished: 3 records"),
        "{logs:?}"
    );
}
