//! Property tests of the pieces whose invariants matter most: the reader
//! never panics and always explains itself; states are released in order
//! and never before their records are committed; no name changes the SQL.

use std::sync::mpsc;
use std::sync::Arc;

use proptest::prelude::*;

use destination_duckdb::catalog::Catalog;
use destination_duckdb::duck::Session;
use destination_duckdb::names::{normalize, quote};
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
            ReaderMsg::Eof => {}
            ReaderMsg::Failed(f) => prop_assert!(f.message.starts_with("line "), "{}", f.message),
            ReaderMsg::Batch(_) => prop_assert!(false, "batches come before the end"),
        }
    }

    #[test]
    fn reader_survives_arbitrary_json_lines(values in prop::collection::vec(json_value(), 0..8)) {
        let input: String = values.iter().map(|v| format!("{v}\n")).collect();
        let msgs = read(input.into_bytes());
        prop_assert!(matches!(msgs.last(), Some(ReaderMsg::Eof) | Some(ReaderMsg::Failed(_))));
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
        let session = Session::open(":memory:", &[]).unwrap();
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
