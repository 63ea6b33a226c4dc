//! Record contents never reach an error or a log line: a sentinel in the
//! data, debug logging on, and every failure path a record can take (a
//! duplicate key in a user's table, a line that is not JSON, an unknown
//! stream, an `emitted_at` out of range, a lone surrogate repaired in a typed
//! table); the sentinel must appear on neither stdout nor stderr.

use serde_json::json;

use crate::util::cases::{
    assert_config_error, catalog, mode_harness, select_all, stream, write_env,
};
use crate::util::{catalog_of, global_state, lines, record, Harness, Run};

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
