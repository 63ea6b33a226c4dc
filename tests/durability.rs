//! Acknowledged data survives a SIGKILL, and states come back while the
//! input stays open: after a pause, and under input that never pauses.
//!
//! How soon they come back is the sync loop's rule, checked against its fake
//! clock (`src/pipeline/sync/tests.rs`); here the binary only has to echo
//! them before the input ends, so a busy machine cannot fail these tests.

use std::time::Instant;

use serde_json::Value;

use crate::util::{catalog_of, global_state, record, Harness, HANG_GUARD};

#[test]
fn state_is_echoed_while_stdin_is_open_and_survives_sigkill() {
    let h = Harness::new();
    h.write_catalog(&catalog_of(&[("s", None)], "append"));
    let mut live = h.spawn_write();
    let mut batch = String::new();
    for i in 0..1000 {
        batch += &record("s", i, &format!(r#"{{"i":{i}}}"#));
        batch += "\n";
    }
    batch += &global_state(1);
    batch += "\n";
    live.send(&batch);
    let echoed = live.next_state();
    assert_eq!(echoed["state"]["destinationStats"]["recordCount"], 1000.0);
    // Unacknowledged records follow, then the process is killed.
    live.send(&(record("s", 5000, r#"{"late":true}"#) + "\n"));
    live.kill();
    drop(live);

    let acknowledged = h.count("main._airbyte_raw_s WHERE _airbyte_data->>'late' IS NULL");
    assert_eq!(acknowledged, 1000, "every acknowledged row, exactly once");

    // The next sync on the same file works.
    let run =
        h.write((record("s", 6000, r#"{"next":1}"#) + "\n" + &global_state(2) + "\n").as_bytes());
    run.assert_ok();
    assert_eq!(
        h.count("main._airbyte_raw_s WHERE _airbyte_data->>'next' = '1'"),
        1
    );
}

/// Records per chunk of [`states_keep_coming_back_while_the_input_never_pauses`].
const CHUNK: i64 = 2_000;

/// Chunk `k`: records `k * CHUNK ..`, padded so that the stream is fast
/// enough for commits to wait for its row groups, then `global_state(k)`.
fn chunk(k: i64) -> String {
    let pad = "x".repeat(200);
    let mut chunk = String::new();
    for i in k * CHUNK..(k + 1) * CHUNK {
        chunk += &record("s", i, &format!(r#"{{"i":{i},"pad":"{pad}"}}"#));
        chunk.push('\n');
    }
    chunk + &global_state(k) + "\n"
}

/// Input that never pauses (each chunk sent as soon as the pipe takes it)
/// still gets states back before it ends: the commits that wait for row
/// groups are bounded. Then the input ends, and every state is echoed once,
/// in order, each counting its own chunk, over exactly the rows sent.
#[test]
fn states_keep_coming_back_while_the_input_never_pauses() {
    let h = Harness::new();
    h.write_catalog(&catalog_of(&[("s", None)], "append"));
    let mut live = h.spawn_write();
    let started = Instant::now();
    let mut sent = 0;
    let mut out = Vec::new();
    while !out.iter().any(|l: &String| l.contains(r#""type":"STATE""#)) {
        assert!(
            started.elapsed() < HANG_GUARD,
            "no state in {HANG_GUARD:?} of input that never pauses (hang guard)"
        );
        live.send(&chunk(sent));
        sent += 1;
        out.extend(live.lines.try_iter());
    }
    live.close_stdin();
    out.extend(live.rest_of_stdout());
    assert!(live.wait_exit().success());
    let lines: Vec<Value> = out
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|m: &Value| m["type"] != "LOG")
        .collect();
    let echoed: Vec<(i64, f64)> = lines
        .iter()
        .map(|m| {
            assert_eq!(m["type"], "STATE", "{m}");
            (
                m["state"]["global"]["shared_state"]["n"].as_i64().unwrap(),
                m["state"]["destinationStats"]["recordCount"]
                    .as_f64()
                    .unwrap(),
            )
        })
        .collect();
    let want: Vec<(i64, f64)> = (0..sent).map(|k| (k, CHUNK as f64)).collect();
    assert_eq!(echoed, want);
    assert_eq!(h.count("main._airbyte_raw_s"), sent * CHUNK);
    assert_eq!(
        h.count("(SELECT DISTINCT _airbyte_data->>'i' FROM main._airbyte_raw_s)"),
        sent * CHUNK
    );
}
