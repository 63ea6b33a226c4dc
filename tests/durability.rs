//! Acknowledged data survives a SIGKILL.

use std::time::{Duration, Instant};

use crate::util::{catalog_of, global_state, record, Harness, Live};

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
    let started = std::time::Instant::now();
    let echoed = live.next_line(20).expect("a state while stdin stays open");
    assert_eq!(echoed["state"]["destinationStats"]["recordCount"], 1000.0);
    assert!(
        started.elapsed().as_secs_f64() < 5.0,
        "echoed within about a second of the pause"
    );
    // Unacknowledged records follow, then the process is killed.
    live.send(&(record("s", 5000, r#"{"late":true}"#) + "\n"));
    live.child.kill().unwrap();
    live.child.wait().unwrap();
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

/// Sends `chunk(i)` over and over, never pausing long enough for the idle
/// commit, until a state comes back or `limit` passes. Returns when the first
/// state came back.
fn first_echo_under_load(
    live: &mut Live,
    limit: Duration,
    gap: Duration,
    chunk: impl Fn(i64) -> String,
) -> Option<Duration> {
    let started = Instant::now();
    let mut i = 0;
    while started.elapsed() < limit {
        live.send(&chunk(i));
        i += 1;
        std::thread::sleep(gap);
        while let Ok(line) = live.lines.try_recv() {
            if line.contains(r#""type":"STATE""#) {
                return Some(started.elapsed());
            }
        }
    }
    None
}

/// A slow stream under input that never pauses: commits come about every
/// second.
#[test]
fn states_come_back_within_seconds_under_slow_sustained_input() {
    let h = Harness::new();
    h.write_catalog(&catalog_of(&[("s", None)], "append"));
    let mut live = h.spawn_write();
    let first = first_echo_under_load(
        &mut live,
        Duration::from_secs(6),
        Duration::from_millis(50),
        |i| record("s", i, "{}") + "\n" + &global_state(i) + "\n",
    );
    let first = first.expect("a state while the input keeps coming");
    assert!(
        first < Duration::from_secs(3),
        "first state after {first:?}"
    );
}

/// A stream fast enough that commits wait for its row groups (up to 10 s):
/// states still come back while the input keeps coming.
#[test]
fn states_come_back_within_the_commit_delay_under_fast_sustained_input() {
    let h = Harness::new();
    h.write_catalog(&catalog_of(&[("s", None)], "append"));
    let mut live = h.spawn_write();
    let pad = "x".repeat(200);
    let first = first_echo_under_load(
        &mut live,
        Duration::from_secs(20),
        Duration::from_millis(5),
        |i| {
            let mut chunk = String::new();
            for k in 0..2_000 {
                chunk += &record("s", i * 2_000 + k, &format!(r#"{{"pad":"{pad}"}}"#));
                chunk.push('\n');
            }
            chunk + &global_state(i) + "\n"
        },
    );
    let first = first.expect("a state while the input keeps coming");
    assert!(
        first < Duration::from_secs(13),
        "first state after {first:?}"
    );
}
