//! Sharing the file with readers and other writers: a sync lets go of the
//! database while its input is idle (readers, here DuckDB 1.4 in Python
//! with `read_only=True`, then see exactly what the echoed states cover),
//! waits for a file another process holds, within `lock_timeout_seconds`,
//! and two syncs of one file take turns.
//!
//! Every wait here is on an event (a state echoed, a line on stderr, a
//! reader that says it holds the file); the time bounds only guard against
//! a hang.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::{json, Value};

use crate::util::{catalog_of, global_state, lines, python_with_duckdb, record, Harness};

const RELEASED: &str = "the database file is let go of";
const WAITING: &str = "waiting for it";

fn harness(extra: Value) -> Harness {
    let h = Harness::new();
    let mut config =
        json!({"destination_path": h.db_path().to_str().unwrap(), "release_idle_seconds": 1});
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    h.write_config(config);
    h
}

/// `n` records of stream `s` tagged `tag`, then a state.
fn batch(s: &str, tag: &str, n: usize, state: i64) -> String {
    let mut out: Vec<String> = (0..n)
        .map(|i| {
            record(
                s,
                1_700_000_000_000 + i as i64,
                &format!(r#"{{"tag":"{tag}","i":{i}}}"#),
            )
        })
        .collect();
    out.push(global_state(state));
    lines(&out)
}

/// A DuckDB 1.4 reader in its own process: opens the file read-only as
/// soon as it can (trying for up to a minute), says `held`, reads the
/// number `query` gives (the row count of a table named alone), keeps the
/// file open `hold` seconds, then closes it.
struct Reader {
    child: Child,
    out: BufReader<std::process::ChildStdout>,
}

impl Reader {
    fn start(h: &Harness, query: &str, hold: f64) -> Reader {
        let query = if query.starts_with("SELECT") {
            query.to_string()
        } else {
            format!("SELECT count(*) FROM {query}")
        };
        let script = format!(
            "import duckdb, time, sys\n\
             deadline = time.time() + 60\n\
             while True:\n\
             \x20   try:\n\
             \x20       c = duckdb.connect({db:?}, read_only=True)\n\
             \x20       break\n\
             \x20   except duckdb.IOException:\n\
             \x20       if time.time() > deadline: raise\n\
             \x20       time.sleep(0.05)\n\
             print('held', flush=True)\n\
             print(c.execute({query:?}).fetchone()[0], flush=True)\n\
             time.sleep({hold})\n\
             c.close()\n",
            db = h.db_path().to_str().unwrap(),
        );
        let mut child = Command::new(python_with_duckdb("1.4.3"))
            .args(["-c", &script])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        Reader { child, out }
    }

    /// Waits until the reader holds the file; returns the count it read.
    fn holding(&mut self) -> i64 {
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "held", "the reader got in");
        line.clear();
        self.out.read_line(&mut line).unwrap();
        line.trim().parse().unwrap()
    }

    fn done(mut self) {
        assert!(self.child.wait().unwrap().success(), "the reader ran");
    }
}

/// A slow source: a batch, a state, a pause, many times. During each
/// pause the sync lets go of the file; a reader gets in and counts exactly
/// the rows the echoed states cover, never part of a batch.
#[test]
fn readers_get_in_during_pauses_and_see_what_the_states_cover() {
    let h = harness(json!({}));
    h.write_catalog(&catalog_of(&[("s", None)], "append"));
    let mut live = h.spawn_write();
    let mut acknowledged = 0;
    for k in 1..=4 {
        let n = 500 * k;
        live.send(&batch("s", &format!("b{k}"), n, k as i64));
        let state = live.next_state();
        assert_eq!(state["state"]["destinationStats"]["recordCount"], n as f64);
        acknowledged += n as i64;
        assert!(
            live.wait_for_log(RELEASED),
            "pause {k}: the file is let go of"
        );
        let mut reader = Reader::start(&h, "main._airbyte_raw_s", 0.0);
        assert_eq!(
            reader.holding(),
            acknowledged,
            "pause {k}: the reader's count"
        );
        reader.done();
    }
    live.close_stdin();
    assert!(live.child.wait().unwrap().success());
    assert_eq!(h.count("main._airbyte_raw_s"), acknowledged);
}

/// A reader holds the file when the sync starts, another holds it when
/// records come after a pause: the sync waits for each (saying who holds
/// the file), then ends with every state echoed and every row once.
#[test]
fn a_sync_waits_for_readers_at_the_start_and_mid_sync() {
    let h = harness(json!({"lock_timeout_seconds": 120}));
    h.write_catalog(&catalog_of(&[("s", None)], "append"));
    h.write(batch("s", "first", 10, 1).as_bytes()).assert_ok();

    let mut reader = Reader::start(&h, "main._airbyte_raw_s", 3.0);
    assert_eq!(reader.holding(), 10);
    let mut live = h.spawn_write();
    live.send(&batch("s", "a", 100, 2));
    assert!(live.wait_for_log(WAITING), "the sync waits at the start");
    assert_eq!(
        live.next_state()["state"]["destinationStats"]["recordCount"],
        100.0
    );
    reader.done();

    assert!(live.wait_for_log(RELEASED), "the file is let go of");
    let mut reader = Reader::start(&h, "main._airbyte_raw_s", 3.0);
    assert_eq!(reader.holding(), 110);
    live.send(&batch("s", "b", 200, 3));
    assert!(live.wait_for_log(WAITING), "the sync waits mid-sync");
    assert_eq!(
        live.next_state()["state"]["destinationStats"]["recordCount"],
        200.0
    );
    reader.done();
    live.close_stdin();
    assert!(live.child.wait().unwrap().success());
    assert_eq!(h.count("main._airbyte_raw_s"), 310);
    assert_eq!(
        h.count(
            "(SELECT DISTINCT _airbyte_data->>'tag', _airbyte_data->>'i' FROM main._airbyte_raw_s)"
        ),
        310,
        "every row once"
    );
}

/// The TRACE error of a run, as (failure_type, message).
fn trace_error(messages: &[Value]) -> (String, String) {
    let e = messages
        .iter()
        .find(|m| m["type"] == "TRACE" && m["trace"]["type"] == "ERROR")
        .expect("a TRACE error")["trace"]["error"]
        .clone();
    (
        e["failure_type"].as_str().unwrap().to_string(),
        e["message"].as_str().unwrap().to_string(),
    )
}

/// A reader that holds the file past `lock_timeout_seconds` fails the
/// sync with a retryable error naming it, at the start or mid-sync; what
/// the echoed states cover stays, and the next sync goes on from there.
#[test]
fn a_reader_past_the_timeout_fails_the_sync_with_a_transient_error() {
    let h = harness(json!({"lock_timeout_seconds": 1}));
    h.write_catalog(&catalog_of(&[("s", None)], "append"));
    h.write(batch("s", "first", 10, 1).as_bytes()).assert_ok();

    // At the start.
    let mut reader = Reader::start(&h, "main._airbyte_raw_s", 6.0);
    reader.holding();
    let run = h.write(batch("s", "never", 5, 2).as_bytes());
    assert_ne!(run.code, Some(0));
    let (kind, message) = trace_error(&run.messages);
    assert_eq!(kind, "transient_error");
    let pid = reader.child.id().to_string();
    assert!(
        message.contains(&format!("PID {pid}")),
        "names the holder: {message}"
    );
    reader.done();

    // Mid-sync.
    let mut live = h.spawn_write();
    live.send(&batch("s", "acked", 20, 3));
    live.next_state();
    assert!(live.wait_for_log(RELEASED));
    let mut reader = Reader::start(&h, "main._airbyte_raw_s", 6.0);
    assert_eq!(reader.holding(), 30);
    live.send(&batch("s", "lost", 7, 4));
    live.close_stdin();
    let status = live.child.wait().unwrap();
    assert!(!status.success());
    let rest: Vec<Value> = live
        .rest_of_stdout()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        rest.iter().all(|m| m["type"] != "STATE"),
        "no state after the failure"
    );
    let (kind, message) = trace_error(&rest);
    assert_eq!(kind, "transient_error", "{message}");
    assert!(
        message.contains(&format!("PID {}", reader.child.id())),
        "{message}"
    );
    reader.done();

    assert_eq!(
        h.count("main._airbyte_raw_s"),
        30,
        "what the states covered"
    );
    h.write(batch("s", "next", 3, 5).as_bytes()).assert_ok();
    assert_eq!(h.count("main._airbyte_raw_s"), 33);
}

/// `check` waits a few seconds only, then fails naming the holder.
#[test]
fn check_fails_naming_the_holder() {
    let h = harness(json!({}));
    h.write_catalog(&catalog_of(&[("s", None)], "append"));
    h.write(batch("s", "first", 1, 1).as_bytes()).assert_ok();
    let mut reader = Reader::start(&h, "main._airbyte_raw_s", 30.0);
    reader.holding();
    let run = h.check();
    run.assert_ok();
    let status = &run.of_type("CONNECTION_STATUS")[0]["connectionStatus"];
    assert_eq!(status["status"], "FAILED");
    let message = status["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("PID {}", reader.child.id())),
        "{message}"
    );
    reader.child.kill().unwrap();
    reader.child.wait().unwrap();
}

/// Two syncs of one file, different streams, both slow: the second waits
/// for the first to end (saying so), then runs; both end with every state
/// echoed and every row.
#[test]
fn two_syncs_of_one_file_take_turns() {
    let h = harness(json!({"lock_timeout_seconds": 120}));
    let other = h.path("other-catalog.json");
    h.write_catalog(&catalog_of(&[("a", None)], "append"));
    std::fs::write(&other, catalog_of(&[("b", None)], "append").to_string()).unwrap();

    let mut first = h.spawn_write();
    first.send(&batch("a", "a1", 100, 1));
    first.next_state();
    assert!(
        first.wait_for_log(RELEASED),
        "the first lets go of the file"
    );
    let args = h.write_args();
    let mut second = h.spawn_with(&[
        args[0],
        args[1],
        args[2],
        "--catalog",
        other.to_str().unwrap(),
    ]);
    second.send(&batch("b", "b1", 50, 1));
    assert!(
        second.wait_for_log("another sync"),
        "the second waits for the first"
    );
    first.send(&batch("a", "a2", 100, 2));
    first.next_state();
    first.close_stdin();
    assert!(first.child.wait().unwrap().success());
    assert_eq!(
        second.next_state()["state"]["destinationStats"]["recordCount"],
        50.0
    );
    second.close_stdin();
    assert!(second.child.wait().unwrap().success());
    assert_eq!(h.count("main._airbyte_raw_a"), 200);
    assert_eq!(h.count("main._airbyte_raw_b"), 50);
}

/// SIGKILL while the file is let go of, while waiting for it, and while
/// taking it back: nothing acknowledged is lost, and the next sync works.
#[test]
fn kills_around_a_release_lose_nothing_acknowledged() {
    for moment in ["released", "waiting", "reopening"] {
        let h = harness(json!({"lock_timeout_seconds": 120}));
        h.write_catalog(&catalog_of(&[("s", None)], "append"));
        let mut live = h.spawn_write();
        live.send(&batch("s", "acked", 300, 1));
        live.next_state();
        assert!(live.wait_for_log(RELEASED), "{moment}");
        let mut reader = None;
        match moment {
            "released" => {}
            "waiting" => {
                let mut r = Reader::start(&h, "main._airbyte_raw_s", 3.0);
                r.holding();
                live.send(&batch("s", "late", 50, 2));
                assert!(live.wait_for_log(WAITING), "{moment}");
                reader = Some(r);
            }
            _ => live.send(&batch("s", "late", 50, 2)),
        }
        live.child.kill().unwrap();
        live.child.wait().unwrap();
        if let Some(r) = reader {
            r.done();
        }
        let acked = h.count("main._airbyte_raw_s WHERE _airbyte_data->>'tag' = 'acked'");
        assert_eq!(acked, 300, "{moment}: every acknowledged row, once");
        h.write(batch("s", "next", 5, 3).as_bytes()).assert_ok();
        assert_eq!(
            h.count("main._airbyte_raw_s WHERE _airbyte_data->>'tag' = 'next'"),
            5,
            "{moment}: the next sync"
        );
    }
}

/// With `typed_output: tables` and an overwrite in flight, a reader in a
/// pause sees typed tables that hold exactly the raw rows the echoed states
/// cover, and the overwritten stream's previous contents until it
/// completes.
#[test]
fn typed_tables_and_staged_overwrites_survive_a_release() {
    let h = harness(json!({"typed_output": "tables"}));
    let mut catalog = catalog_of(&[("s", None)], "append");
    let mut o = catalog_of(&[("o", None)], "overwrite")["streams"][0].clone();
    o["stream"]["json_schema"] =
        json!({"type": "object", "properties": {"tag": {"type": "string"}}});
    catalog["streams"][0]["stream"]["json_schema"] = o["stream"]["json_schema"].clone();
    catalog["streams"].as_array_mut().unwrap().push(o);
    h.write_catalog(&catalog);
    h.write((batch("s", "old", 5, 1) + &batch("o", "old", 7, 2)).as_bytes())
        .assert_ok();

    let mut live = h.spawn_write();
    live.send(&(batch("s", "new", 40, 3) + &batch("o", "new", 60, 4)));
    live.next_state();
    live.next_state();
    assert!(live.wait_for_log(RELEASED));
    let counts = "SELECT (SELECT count(*) FROM main._airbyte_raw_s) * 1000000 \
                  + (SELECT count(*) FROM main.s) * 10000 \
                  + (SELECT count(*) FROM main._airbyte_raw_o) * 100 \
                  + (SELECT count(*) FROM main.o)";
    let mut reader = Reader::start(&h, counts, 0.0);
    // s: 45 raw and typed; o: the old 7, raw and typed, until COMPLETE.
    assert_eq!(reader.holding(), 45_450_707);
    reader.done();
    live.send(&format!(
        "{}\n",
        r#"{"type":"TRACE","trace":{"type":"STREAM_STATUS","emitted_at":1,"stream_status":{"stream_descriptor":{"name":"o"},"status":"COMPLETE"}}}"#
    ));
    live.send(&batch("s", "more", 5, 5));
    live.next_state();
    live.close_stdin();
    assert!(live.child.wait().unwrap().success());
    assert_eq!(h.count("main.s"), 50);
    assert_eq!(h.count("main.o WHERE tag = 'new'"), 60);
    assert_eq!(h.count("main.o"), 60);
}
