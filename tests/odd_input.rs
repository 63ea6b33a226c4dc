//! Input at the edge of what is valid: lone surrogate escapes in record data
//! and metadata (repaired, with a change, so every query keeps working), keys
//! repeated in a record or a state, whitespace around a line, and an
//! `emitted_at` or a `memory_limit` out of range.

use serde_json::{json, Value};

use crate::util::cases::{
    assert_check_fails, assert_config_error, catalog, check, harness_with, mode_harness,
    one_record, select_all, stream, texts, write, MODES,
};
use crate::util::{catalog_of, global_state, lines, record, Harness, Run};

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

#[test]
fn absurd_memory_limit_is_a_config_error() {
    let h = harness_with(json!({"memory_limit": "99999999999TB"}));
    assert_check_fails(&check(&h), "memory_limit", "check");
    h.write_catalog(&catalog_of(&[("s", None)], "append"));
    let m = assert_config_error(&write(&h, &one_record()), "write");
    assert!(m.contains("memory_limit"), "{m}");
}
