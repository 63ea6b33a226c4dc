//! Property tests of the pieces whose invariants matter most: the reader
//! never panics and always explains itself; states are released in order
//! and never before their records are committed; no name changes the SQL
//! or is one DuckDB cannot create; no accepted JSON text makes a table or
//! typed relation unreadable.

use std::sync::mpsc;
use std::sync::Arc;

use proptest::prelude::*;

use destination_duckdb::catalog::Catalog;
use destination_duckdb::duck::Instance;
use destination_duckdb::names::{
    normalize, normalize_schema, qualified, qualified_schema, quote, RESERVED_SCHEMAS,
};
use destination_duckdb::pipeline::checkpoint::Checkpointer;
use destination_duckdb::pipeline::reader::{self, Event, ReaderMsg, Scope};
use destination_duckdb::protocol;

fn catalog() -> Arc<Catalog> {
    Arc::new(
        Catalog::parse(
            r#"{"streams":[{"stream":{"name":"s"},"destination_sync_mode":"append"}]}"#,
            "main",
        )
        .unwrap(),
    )
}

/// Runs the reader over `input` and returns what it sent.
fn read(input: Vec<u8>) -> Vec<ReaderMsg> {
    let (tx, rx) = mpsc::sync_channel(1024);
    let handle =
        std::thread::spawn(move || reader::run(std::io::Cursor::new(input), catalog(), tx));
    let msgs: Vec<ReaderMsg> = rx.iter().collect();
    handle.join().expect("the reader never panics");
    msgs
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(serde_json::Value::from),
        ".*".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            prop::collection::btree_map(".*", inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn reader_survives_arbitrary_bytes(input in prop::collection::vec(any::<u8>(), 0..2048)) {
        let msgs = read(input);
        // It always ends with exactly one Eof or Failed, and a failure names a line.
        let last = msgs.last().expect("a final message");
        match last {
            ReaderMsg::Eof { .. } => {}
            ReaderMsg::Failed(f) => prop_assert!(f.message.starts_with("line "), "{}", f.message),
            ReaderMsg::Batch(_) => prop_assert!(false, "batches come before the end"),
        }
    }

    #[test]
    fn reader_survives_arbitrary_json_lines(values in prop::collection::vec(json_value(), 0..8)) {
        let input: String = values.iter().map(|v| format!("{v}\n")).collect();
        let msgs = read(input.into_bytes());
        let ends_well = matches!(msgs.last(), Some(ReaderMsg::Eof { .. } | ReaderMsg::Failed(_)));
        prop_assert!(ends_well);
    }

    #[test]
    fn records_keep_their_exact_data_text(data in prop::collection::vec(json_value(), 1..6)) {
        let objects: Vec<String> = data.iter().map(|v| serde_json::json!({"v": v}).to_string()).collect();
        let input: String = objects
            .iter()
            .map(|d| format!(r#"{{"type":"RECORD","record":{{"stream":"s","emitted_at":1,"data":{d}}}}}"#) + "\n")
            .collect();
        let mut got = Vec::new();
        for msg in read(input.into_bytes()) {
            if let ReaderMsg::Batch(b) = msg {
                for e in b.events {
                    if let Event::Record { data, .. } = e {
                        got.push(b.bytes[data].to_string());
                    }
                }
            }
        }
        prop_assert_eq!(got, objects);
    }

    /// A model of the writer: records, states and commits in any order.
    /// States come out in input order, each only after a commit that follows
    /// every record before it, with the right count.
    #[test]
    fn states_are_released_in_order_and_only_after_their_records_commit(
        ops in prop::collection::vec(prop_oneof![Just(0u8), Just(1u8), Just(2u8)], 0..200)
    ) {
        let mut cp = Checkpointer::new(1);
        let mut received_records = 0u64;
        let mut states_in = 0u64;
        let mut released: Vec<(u64, u64)> = Vec::new(); // (state seq, records before it)
        let mut state_marks: Vec<u64> = Vec::new();
        for op in ops {
            match op {
                0 => { cp.on_record(0); received_records += 1; }
                1 => {
                    let line = format!(r#"{{"type":"STATE","state":{{"type":"GLOBAL","seq":{states_in}}}}}"#);
                    let Ok(protocol::Message::State(s)) = protocol::parse_line(&line) else { unreachable!() };
                    let start = s.raw.as_ptr() as usize - line.as_ptr() as usize;
                    cp.on_state(&line, start..start + s.raw.len(), Scope::Global);
                    state_marks.push(received_records);
                    states_in += 1;
                }
                _ => {
                    let committed_records = received_records;
                    for echo in cp.release() {
                        let v: serde_json::Value = serde_json::from_str(&echo).unwrap();
                        let seq = v["state"]["seq"].as_u64().unwrap();
                        released.push((seq, state_marks[seq as usize]));
                        prop_assert!(state_marks[seq as usize] <= committed_records);
                    }
                }
            }
        }
        for (i, (seq, _)) in released.iter().enumerate() {
            prop_assert_eq!(*seq, i as u64, "in order, none skipped");
        }
    }

    /// Any Unicode name, normalized and quoted, names exactly one table and
    /// runs no other SQL.
    #[test]
    fn no_name_changes_the_sql(name in "\\PC{0,40}", raw in "[\\x00-\\x7f]{0,30}") {
        let session = Instance::open(":memory:", &[]).unwrap();
        session.execute("CREATE TABLE canary (x INT)").unwrap();
        for n in [normalize(&name), normalize(&raw)] {
            prop_assert!(n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'), "{n:?}");
            let table = quote(&format!("_airbyte_raw_{n}"));
            session.execute(&format!("CREATE TABLE IF NOT EXISTS {table} (x INT)")).unwrap();
        }
        // Quoting alone holds even for names that were never normalized.
        let bare = raw.replace('\0', "");
        if !bare.is_empty() {
            let q = quote(&bare);
            session.execute(&format!("CREATE TABLE IF NOT EXISTS {q} (x INT)")).unwrap();
        }
        let canary = session.query_value("SELECT count(*) FROM canary").unwrap();
        prop_assert_eq!(canary.as_deref(), Some("0"));
    }
}

/// JSON string text, escapes included: every kind JSON allows, NUL, random
/// `\uXXXX` over the whole BMP, and lone surrogates of either half, which
/// serde_json's raw values accept and DuckDB's JSON reader does not.
fn json_string_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            "[a-zA-Z0-9 ]{0,5}",
            "[^\"\\\\\\x00-\\x1f]{0,3}",
            Just(r#"\n\"\\\/\b\f\r\t"#.to_string()),
            Just(r"\u0000".to_string()),
            (0u32..=0xFFFF).prop_map(|c| format!("\\u{c:04x}")),
            (0xD800u32..=0xDFFF).prop_map(|c| format!("\\u{c:04X}")),
            Just(r"\ud83d\ude00".to_string()),
        ],
        0..6,
    )
    .prop_map(|parts| format!("\"{}\"", parts.concat()))
}

/// Any JSON value's text, with numbers of any size and spelling and random
/// whitespace.
fn json_text() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        json_string_text(),
        "-?(0|[1-9][0-9]{0,40})(\\.[0-9]{1,20})?([eE][+-]?[0-9]{1,3})?",
        Just("true".to_string()),
        Just("false".to_string()),
        Just("null".to_string()),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(|v| format!("[ {} ]", v.join(","))),
            object_text(inner),
        ]
    })
}

/// An object whose keys are often the catalog's properties (`a` to `g`), so
/// that typed columns, keys and cursors meet the odd values.
fn object_text(value: impl Strategy<Value = String>) -> impl Strategy<Value = String> {
    let key = prop_oneof![
        3 => prop::sample::select(vec!["a", "b", "c", "d", "e", "f", "g"])
            .prop_map(|k| format!("\"{k}\"")),
        1 => json_string_text(),
    ];
    prop::collection::vec((key, value), 0..7).prop_map(|members| {
        let body: Vec<String> = members.iter().map(|(k, v)| format!("{k} :{v}")).collect();
        format!("{{{}}}", body.join(", "))
    })
}

fn typed_catalog() -> serde_json::Value {
    let schema = serde_json::json!({"type": "object", "properties": {
        "a": {"type": "integer"},
        "b": {"type": "string", "format": "date-time"},
        "c": {"type": "number"},
        "d": {"type": "object"},
        "e": {"type": "boolean"},
        "f": {"type": "array"},
        "g": {"type": "string"},
    }});
    let stream = |name: &str, mode: &str, cursor: serde_json::Value| {
        serde_json::json!({
            "stream": {"name": name, "json_schema": schema.clone(), "supported_sync_modes": ["incremental"]},
            "sync_mode": "incremental", "destination_sync_mode": mode,
            "primary_key": [["a"]], "cursor_field": cursor,
        })
    };
    serde_json::json!({"streams": [
        stream("s", "append", serde_json::json!([])),
        stream("d", "append_dedup", serde_json::json!(["b"])),
        stream("n", "append_dedup", serde_json::json!(["d", "x"])),
        stream("u", "append_dedup", serde_json::json!(["z"])),
    ]})
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(6))]

    /// Whatever JSON text the reader accepts is stored so that DuckDB's JSON
    /// functions parse every row, and every typed relation can be read
    /// whole, as views and as tables.
    #[test]
    fn accepted_json_text_stays_queryable(
        records in prop::collection::vec((object_text(json_text()), json_text()), 1..30)
    ) {
        let h = crate::util::Harness::new();
        h.write_catalog(&typed_catalog());
        let mut input = String::new();
        for (data, changes) in &records {
            for stream in ["s", "d", "n", "u"] {
                input.push_str(&format!(
                    r#"{{"type":"RECORD","record":{{"stream":"{stream}","emitted_at":1,"data":{data},"meta":{{"changes":[{changes}]}}}}}}"#
                ));
                input.push('\n');
            }
        }
        input.push_str(&crate::util::global_state(1));
        input.push('\n');
        let db = h.db_path().to_str().unwrap().to_string();
        for mode in ["views", "tables"] {
            h.write_config(serde_json::json!({"destination_path": db, "typed_output": mode}));
            let run = h.write(input.as_bytes());
            prop_assert_eq!(run.code, Some(0), "{:?}", run);
            let conn = h.db();
            for stream in ["s", "d", "n", "u"] {
                let parsed: i64 = conn.query_row(&format!(
                    "SELECT count(*) FROM main._airbyte_raw_{stream} WHERE json_valid(_airbyte_data) \
                     AND json_valid(_airbyte_meta) \
                     AND json_extract(_airbyte_data, '$') IS NOT NULL \
                     AND json_extract_string(_airbyte_meta, '$.changes') IS NOT NULL"
                ), [], |r| r.get(0)).unwrap();
                let all: i64 = conn.query_row(&format!(
                    "SELECT count(*) FROM main._airbyte_raw_{stream}"
                ), [], |r| r.get(0)).unwrap();
                prop_assert_eq!(parsed, all);
                // Every column of every row, typed: a row cast to text
                // reads them all.
                let rows: i64 = conn.query_row(&format!(
                    "SELECT count(t::VARCHAR) FROM main.{stream} t"
                ), [], |r| r.get(0)).unwrap();
                prop_assert!(rows >= 1 || stream != "s");
            }
        }
    }

    /// Any name, DuckDB keyword or catalog name becomes a schema and a table
    /// DuckDB creates, fully qualified, never an empty or reserved one.
    #[test]
    fn every_name_makes_a_schema_and_table(name in "\\PC{0,20}", pick in any::<prop::sample::Index>()) {
        let session = Instance::open(":memory:", &[]).unwrap();
        session.execute("ATTACH ':memory:' AS destination; USE destination").unwrap();
        let keywords: Vec<String> = session
            .query("SELECT keyword_name FROM duckdb_keywords()")
            .unwrap()
            .into_iter()
            .filter_map(|r| r.into_iter().next().flatten())
            .collect();
        let special = ["temp", "system", "memory", "destination", "main", "information_schema",
            "pg_catalog", "_airbyte_internal", "TEMP", "\u{301}", ""];
        let keyword = keywords[pick.index(keywords.len())].clone();
        for raw in [name.as_str(), keyword.as_str()].into_iter().chain(special) {
            let schema = normalize_schema(raw);
            prop_assert!(!schema.is_empty());
            prop_assert!(!RESERVED_SCHEMAS.iter().any(|r| r.eq_ignore_ascii_case(&schema)), "{raw:?}");
            let table = format!("_airbyte_raw_{}", normalize(raw));
            session.execute(&format!("CREATE SCHEMA IF NOT EXISTS {}", qualified_schema(&schema))).unwrap();
            session.execute(&format!("CREATE TABLE IF NOT EXISTS {} (x INT)", qualified(&schema, &table))).unwrap();
            session.execute(&format!("INSERT INTO {} VALUES (1)", qualified(&schema, &table))).unwrap();
            session.execute(&format!("CREATE OR REPLACE VIEW {} AS SELECT * FROM {}.{}",
                qualified(&schema, &normalize(raw)), quote(&schema), quote(&table))).unwrap();
            session.query(&format!("SELECT * FROM {}", qualified(&schema, &normalize(raw)))).unwrap();
        }
    }
}
