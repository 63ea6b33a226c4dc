//! A source that fails (its TRACE ERROR in the input) during an overwrite:
//! the previous table stays, and no record after the last state is kept for
//! the retry to duplicate.

use serde_json::json;

use crate::util::cases::{texts, write};
use crate::util::{global_state, lines, record, Harness};

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
