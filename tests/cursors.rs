//! Dedup cursors and timestamps compare by value, never as text: nested and
//! undeclared numeric cursors, timestamps with offsets (spaced or not),
//! `infinity`, integers a DOUBLE cannot tell apart; a zone name is not read
//! as UTC. Views and tables must agree on every winner.

use serde_json::{json, Value};

use crate::util::cases::{
    catalog, dedup_stream, mode_harness, pairs, pairs_of, stream, texts, write, MODES,
};
use crate::util::{global_state, lines, record};

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
