//! Bad input: every case either works (where the protocol allows it) or
//! fails with one TRACE error naming the line and the problem, never the
//! record's contents, never a panic, and never losing committed rows.

use crate::util::{catalog_of, global_state, record, Harness};

const SECRET: &str = "s3cr3t-value";

/// Two committed rows, acknowledged by a state, come first in every case.
fn prefix() -> String {
    format!(
        "{}\n{}\n{}\n",
        record("s", 1, r#"{"n":1}"#),
        record("s", 2, r#"{"n":2}"#),
        global_state(1)
    )
}

enum Outcome {
    /// Exit 0 with this many rows in the table.
    Ok(i64),
    /// A config_error whose message contains both strings.
    Fails(&'static str, &'static str),
}

fn case(name: &str, tail: &[u8], outcome: Outcome) {
    let h = Harness::new();
    h.write_catalog(&catalog_of(&[("s", None)], "append"));
    let mut input = prefix().into_bytes();
    input.extend_from_slice(tail);
    let run = h.write(&input);
    assert!(
        !run.stdout.contains(SECRET) && !run.stderr.contains(SECRET),
        "{name}: leaked contents: {run:?}"
    );
    match outcome {
        Outcome::Ok(rows) => {
            run.assert_ok();
            assert_eq!(h.count("main._airbyte_raw_s"), rows, "{name}");
        }
        Outcome::Fails(a, b) => {
            assert_eq!(run.code, Some(1), "{name}: {run:?}");
            let e = run.error();
            assert_eq!(e["failure_type"], "config_error", "{name}");
            let m = e["message"].as_str().unwrap();
            assert!(m.contains(a) && m.contains(b), "{name}: {m}");
            // The state before the bad line was echoed only if committed;
            // either way the committed rows are all there.
            assert!(h.count("main._airbyte_raw_s") <= 2, "{name}");
            if !run.states().is_empty() {
                assert_eq!(h.count("main._airbyte_raw_s"), 2, "{name}");
            }
        }
    }
}

#[test]
fn truncated_line() {
    case(
        "truncated",
        format!(
            r#"{{"type":"RECORD","record":{{"stream":"s","emitted_at":3,"data":{{"k":"{SECRET}"#
        )
        .as_bytes(),
        Outcome::Fails("line 4", "truncated"),
    );
}

#[test]
fn invalid_utf8() {
    let mut tail =
        br#"{"type":"RECORD","record":{"stream":"s","emitted_at":3,"data":{"k":""#.to_vec();
    tail.extend_from_slice(&[0xff, 0xfe]);
    tail.extend_from_slice(b"\"}}}\n");
    case("utf8", &tail, Outcome::Fails("line 4", "UTF-8"));
}

#[test]
fn non_object_data() {
    case(
        "data",
        format!(
            r#"{{"type":"RECORD","record":{{"stream":"s","emitted_at":3,"data":["{SECRET}"]}}}}"#
        )
        .as_bytes(),
        Outcome::Fails("line 4", "object"),
    );
}

#[test]
fn missing_stream_and_emitted_at() {
    case(
        "stream",
        br#"{"type":"RECORD","record":{"emitted_at":3,"data":{}}}"#,
        Outcome::Fails("line 4", "stream"),
    );
    case(
        "emitted_at",
        br#"{"type":"RECORD","record":{"stream":"s","data":{}}}"#,
        Outcome::Fails("line 4", "emitted_at"),
    );
}

#[test]
fn emitted_at_as_a_string() {
    case(
        "emitted_at string",
        format!(
            r#"{{"type":"RECORD","record":{{"stream":"s","emitted_at":"{SECRET}","data":{{}}}}}}"#
        )
        .as_bytes(),
        Outcome::Fails("line 4", "emitted_at"),
    );
}

#[test]
fn trailing_garbage_after_the_json_value() {
    case(
        "trailing",
        br#"{"type":"RECORD","record":{"stream":"s","emitted_at":3,"data":{}}}}"#,
        Outcome::Fails("line 4", "not valid JSON"),
    );
}

#[test]
fn nul_byte_in_a_line() {
    case(
        "nul",
        b"{\"type\":\"RECORD\",\x00}\n",
        Outcome::Fails("line 4", "JSON"),
    );
}

#[test]
fn deep_nesting_in_data_is_stored_without_a_crash() {
    // `data` is kept as text, scanned without recursion: 100k-deep arrays
    // are valid JSON and are stored as they came.
    let deep = format!(
        r#"{{"type":"RECORD","record":{{"stream":"s","emitted_at":3,"data":{{"d":{}{}}}}}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    case("deep", format!("{deep}\n").as_bytes(), Outcome::Ok(3));
}

#[test]
fn deep_nesting_in_ignored_messages_is_skipped_without_a_crash() {
    let deep = format!(
        r#"{{"type":"LOG","log":{}{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    case(
        "deep envelope",
        format!("{deep}\n").as_bytes(),
        Outcome::Ok(2),
    );
}

#[test]
fn message_without_type_and_non_object_lines() {
    case(
        "no type",
        br#"{"record":{}}"#,
        Outcome::Fails("line 4", "type"),
    );
    case(
        "array line",
        b"[1,2,3]\n",
        Outcome::Fails("line 4", "Airbyte message"),
    );
    case(
        "number line",
        b"42\n",
        Outcome::Fails("line 4", "Airbyte message"),
    );
}

#[test]
fn accepted_variations() {
    // CRLF line ends, blank lines, unknown message types, odd TRACE/LOG/CONTROL
    // payloads, a last line without a newline.
    let tail = format!(
        "\r\n   \n{}\r\n{}\n{}\n{}\n{}\n{}",
        r#"{"type":"LOG","log":{"level":"INFO","message":"hi"}}"#,
        r#"{"type":"TRACE","trace":{"type":"STREAM_STATUS","stream_status":"odd"}}"#,
        r#"{"type":"CONTROL","control":[1,2]}"#,
        r#"{"type":"SOMETHING_NEW","x":{}}"#,
        r#"{"type":"TRACE","trace":{"type":"ESTIMATE","estimate":{"name":"s","type":"STREAM","row_estimate":5}}}"#,
        record("s", 3, r#"{"n":3}"#)
    );
    case("variations", tail.as_bytes(), Outcome::Ok(3));
}

#[test]
fn a_bom_on_the_first_line_is_accepted() {
    let h = Harness::new();
    h.write_catalog(&catalog_of(&[("s", None)], "append"));
    let input = format!("\u{feff}{}\n{}\n", record("s", 1, "{}"), global_state(1));
    h.write(input.as_bytes()).assert_ok();
    assert_eq!(h.count("main._airbyte_raw_s"), 1);
}

#[test]
fn a_64_mib_record_is_stored_whole() {
    let h = Harness::new();
    h.write_catalog(&catalog_of(&[("s", None)], "append"));
    let big = "x".repeat(64 << 20);
    let input = format!(
        "{}\n{}\n",
        record("s", 1, &format!(r#"{{"big":"{big}"}}"#)),
        global_state(1)
    );
    h.write(input.as_bytes()).assert_ok();
    let len = h.strings("SELECT length(_airbyte_data->>'big')::VARCHAR FROM main._airbyte_raw_s");
    assert_eq!(len, vec![vec![Some((64 << 20).to_string())]]);
}

#[test]
fn empty_and_malformed_catalogs_and_configs() {
    for catalog in [
        "",
        "{",
        "[]",
        r#"{"streams":[{"stream":{}}]}"#,
        r#"{"streams":[{"stream":{"name":"s"},"destination_sync_mode":"upsert"}]}"#,
    ] {
        let h = Harness::new();
        std::fs::write(h.catalog_path(), catalog).unwrap();
        let run = h.write(b"");
        assert_eq!(run.code, Some(1), "{catalog}");
        assert_eq!(run.error()["failure_type"], "config_error", "{catalog}");
    }
    for config in [
        "",
        "null",
        r#"{"destination_path": ""}"#,
        r#"{"destination_path": "/tmp/x.duckdb", "batch_size_mb": 0}"#,
    ] {
        let h = Harness::new();
        h.write_catalog(&catalog_of(&[("s", None)], "append"));
        std::fs::write(h.config_path(), config).unwrap();
        let run = h.write(b"");
        assert_eq!(run.code, Some(1), "{config}");
        assert_eq!(run.error()["failure_type"], "config_error", "{config}");
    }
}

#[test]
fn motherduck_key_never_appears_in_output() {
    let h = Harness::new();
    h.write_catalog(&catalog_of(&[("s", None)], "append"));
    h.write_config(
        serde_json::json!({"destination_path": "md:my_db", "motherduck_api_key": SECRET}),
    );
    let run = h.write(b"");
    assert_eq!(run.code, Some(1));
    assert!(
        !run.stdout.contains(SECRET) && !run.stderr.contains(SECRET),
        "{run:?}"
    );
    assert!(run.error()["message"]
        .as_str()
        .unwrap()
        .contains("MotherDuck"));
    let run = h.check();
    assert!(
        !run.stdout.contains(SECRET) && !run.stderr.contains(SECRET),
        "{run:?}"
    );
}
