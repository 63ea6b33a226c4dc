//! Acknowledged data survives a SIGKILL.

use crate::util::{catalog_of, global_state, record, Harness};

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
