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

use crate::util::cases::harness_with;
use crate::util::{
    catalog_of, global_state, lines, python_with_duckdb, record, Harness, Live, Nobody,
};

const RELEASED: &str = "the database file is let go of";
const WAITING: &str = "waiting for it";

/// A harness whose syncs let go of the file after 1 s of quiet input, with
/// `extra` config keys.
fn harness(extra: Value) -> Harness {
    let mut config = json!({"release_idle_seconds": 1});
    config
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    harness_with(config)
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
/// number `query` gives (the row count of a table named alone), and keeps
/// the file open until the test lets it go ([`Reader::done`]).
struct Reader {
    child: Child,
    out: BufReader<std::process::ChildStdout>,
}

impl Reader {
    fn start(h: &Harness, query: &str) -> Reader {
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
             sys.stdin.readline()\n\
             c.close()\n",
            db = h.db_path().to_str().unwrap(),
        );
        let mut child = Command::new(python_with_duckdb("1.4.3"))
            .args(["-c", &script])
            .stdin(Stdio::piped())
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

    /// Lets the reader close the file and end.
    fn done(mut self) {
        drop(self.child.stdin.take());
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
        let mut reader = Reader::start(&h, "main._airbyte_raw_s");
        assert_eq!(
            reader.holding(),
            acknowledged,
            "pause {k}: the reader's count"
        );
        reader.done();
    }
    live.close_stdin();
    assert!(live.wait_exit().success());
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

    let mut reader = Reader::start(&h, "main._airbyte_raw_s");
    assert_eq!(reader.holding(), 10);
    let mut live = h.spawn_write();
    live.send(&batch("s", "a", 100, 2));
    assert!(live.wait_for_log(WAITING), "the sync waits at the start");
    reader.done();
    assert_eq!(
        live.next_state()["state"]["destinationStats"]["recordCount"],
        100.0
    );

    assert!(live.wait_for_log(RELEASED), "the file is let go of");
    let mut reader = Reader::start(&h, "main._airbyte_raw_s");
    assert_eq!(reader.holding(), 110);
    live.send(&batch("s", "b", 200, 3));
    assert!(live.wait_for_log(WAITING), "the sync waits mid-sync");
    reader.done();
    assert_eq!(
        live.next_state()["state"]["destinationStats"]["recordCount"],
        200.0
    );
    live.close_stdin();
    assert!(live.wait_exit().success());
    assert_eq!(h.count("main._airbyte_raw_s"), 310);
    assert_eq!(
        h.count(
            "(SELECT DISTINCT _airbyte_data->>'tag', _airbyte_data->>'i' FROM main._airbyte_raw_s)"
        ),
        310,
        "every row once"
    );
}

/// Ends a sync that must fail: closes its input, waits for it, and
/// returns the messages it wrote after those already read.
fn fails(mut live: Live) -> Vec<Value> {
    live.close_stdin();
    assert!(!live.wait_exit().success(), "the sync fails");
    live.rest_of_stdout()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
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
    let mut reader = Reader::start(&h, "main._airbyte_raw_s");
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
    let mut reader = Reader::start(&h, "main._airbyte_raw_s");
    assert_eq!(reader.holding(), 30);
    live.send(&batch("s", "lost", 7, 4));
    let rest = fails(live);
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
    let mut reader = Reader::start(&h, "main._airbyte_raw_s");
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
    reader.done();
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
    assert!(first.wait_exit().success());
    assert_eq!(
        second.next_state()["state"]["destinationStats"]["recordCount"],
        50.0
    );
    second.close_stdin();
    assert!(second.wait_exit().success());
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
                let mut r = Reader::start(&h, "main._airbyte_raw_s");
                r.holding();
                live.send(&batch("s", "late", 50, 2));
                assert!(live.wait_for_log(WAITING), "{moment}");
                reader = Some(r);
            }
            _ => live.send(&batch("s", "late", 50, 2)),
        }
        live.kill();
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

/// With `typed_output: tables`, a reader in a pause sees every typed table
/// at the point the echoed states cover: an appended stream's rows, a
/// deduplicated stream's latest row per key (its staged rows merged before
/// the file is let go of), and an overwritten stream's previous contents
/// until it completes, then its new ones (its typed table rebuilt).
#[test]
fn typed_tables_are_at_the_echoed_states_when_the_file_is_let_go_of() {
    let h = harness(json!({"typed_output": "tables"}));
    let schema = json!({"type": "object", "properties": {"tag": {"type": "string"}, "i": {"type": "integer"}}});
    let stream = |name: &str, mode: &str| {
        let mut c = catalog_of(&[(name, None)], mode)["streams"][0].clone();
        c["stream"]["json_schema"] = schema.clone();
        if mode == "append_dedup" {
            c["primary_key"] = json!([["i"]]);
        }
        c
    };
    h.write_catalog(&json!({"streams": [
        stream("s", "append"), stream("o", "overwrite"), stream("d", "append_dedup")
    ]}));
    h.write(
        (batch("s", "old", 5, 1) + &batch("o", "old", 7, 2) + &batch("d", "old", 3, 3)).as_bytes(),
    )
    .assert_ok();

    let mut live = h.spawn_write();
    live.send(&(batch("s", "new", 40, 4) + &batch("o", "new", 60, 5) + &batch("d", "new", 8, 6)));
    for _ in 0..3 {
        live.next_state();
    }
    assert!(live.wait_for_log(RELEASED));
    let counts = |table: &str| format!("(SELECT count(*) FROM main.{table})");
    let query = format!(
        "SELECT {} * 100000000 + {} * 1000000 + {} * 10000 + {} * 100 + {}",
        counts("_airbyte_raw_s"),
        counts("s"),
        counts("o WHERE tag = 'old'"),
        counts("d"),
        counts("d WHERE tag = 'new'")
    );
    let mut reader = Reader::start(&h, &query);
    // s: 45 raw and typed; o: the old 7 until COMPLETE; d: keys 0..8, all
    // of them the new rows' (staged rows merged).
    assert_eq!(reader.holding(), 4_545_070_808);
    reader.done();

    live.send(&format!(
        "{}\n{}\n",
        r#"{"type":"TRACE","trace":{"type":"STREAM_STATUS","emitted_at":1,"stream_status":{"stream_descriptor":{"name":"o"},"status":"COMPLETE"}}}"#,
        global_state(7)
    ));
    live.next_state();
    assert!(live.wait_for_log(RELEASED));
    let query = format!(
        "SELECT {} * 10000 + {} * 100 + {}",
        counts("_airbyte_raw_o"),
        counts("o"),
        counts("o WHERE tag = 'new'")
    );
    let mut reader = Reader::start(&h, &query);
    // o: the new 60, raw and typed, once it completed.
    assert_eq!(reader.holding(), 606_060);
    reader.done();
    live.close_stdin();
    assert!(live.wait_exit().success());
    assert_eq!(h.count("main.s"), 45);
    assert_eq!(h.count("main.o"), 60);
    assert_eq!(h.count("main.d"), 8);
}

/// Rows written before a truncate's COMPLETE with no state after them are
/// in the file but covered by no echoed state: the sync keeps the file
/// until a state covers them. (A wrong release could come later than the
/// pause here on a loaded machine; the rule itself is checked against the
/// fake clock in `sync::tests`.)
#[test]
fn rows_no_echoed_state_covers_keep_the_file() {
    let h = harness(json!({}));
    h.write_catalog(&catalog_of(&[("o", None)], "overwrite"));
    let mut live = h.spawn_write();
    let mut input: Vec<String> = (0..30)
        .map(|i| record("o", 1_700_000_000_000, &format!(r#"{{"i":{i}}}"#)))
        .collect();
    input.push(
        r#"{"type":"TRACE","trace":{"type":"STREAM_STATUS","emitted_at":1,"stream_status":{"stream_descriptor":{"name":"o"},"status":"COMPLETE"}}}"#
            .to_string(),
    );
    live.send(&lines(&input));
    assert!(live.wait_for_log("overwrite complete"));
    // Three times the release time of quiet input: no release.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let quiet: Vec<String> = std::iter::from_fn(|| live.errors.try_recv().ok()).collect();
    assert!(
        !quiet.iter().any(|l| l.contains(RELEASED)),
        "let go of with rows no state covers: {quiet:?}"
    );
    live.send(&lines(&[global_state(1)]));
    live.next_state();
    assert!(
        live.wait_for_log(RELEASED),
        "released once a state covers the rows"
    );
    // Nothing was let go of between the COMPLETE and the state: the one
    // release line came after the state was sent.
    live.close_stdin();
    assert!(live.wait_exit().success());
}

/// A database moved away while the sync had let go of it is not replaced
/// by a new, empty one: the sync stops with an error that says so, and
/// nothing is made at the path.
#[test]
fn a_database_moved_while_let_go_of_stops_the_sync() {
    let h = harness(json!({}));
    h.write_catalog(&catalog_of(&[("s", None)], "append"));
    let mut live = h.spawn_write();
    live.send(&batch("s", "acked", 10, 1));
    live.next_state();
    assert!(live.wait_for_log(RELEASED));
    let moved = h.path("moved.duckdb");
    std::fs::rename(h.db_path(), &moved).unwrap();
    live.send(&batch("s", "late", 5, 2));
    let rest = fails(live);
    let (kind, message) = trace_error(&rest);
    assert_eq!(kind, "config_error", "{message}");
    assert!(message.contains("moved, replaced or deleted"), "{message}");
    assert!(!h.db_path().exists(), "no new database made at the path");
    // The moved file holds what the states covered.
    let conn = duckdb::Connection::open(&moved).unwrap();
    let n: i64 = conn
        .query_row("SELECT count(*) FROM main._airbyte_raw_s", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 10);
}

/// An older copy of the database put back in its place while the sync had
/// let go of it (over the file, so the path keeps its inode, or after
/// deleting it) is noticed: the sync stops with an error that says so and
/// writes nothing into the copy.
#[test]
fn a_copy_put_back_while_let_go_of_stops_the_sync() {
    for how in ["copied over", "deleted, then copied"] {
        let h = harness(json!({}));
        h.write_catalog(&catalog_of(&[("s", None)], "append"));
        h.write(batch("s", "first", 3, 1).as_bytes()).assert_ok();
        let copy = h.path("copy.duckdb");
        std::fs::copy(h.db_path(), &copy).unwrap();
        let mut live = h.spawn_write();
        live.send(&batch("s", "acked", 10, 2));
        live.next_state();
        assert!(live.wait_for_log(RELEASED), "{how}");
        if how != "copied over" {
            std::fs::remove_file(h.db_path()).unwrap();
        }
        std::fs::copy(&copy, h.db_path()).unwrap();
        live.send(&batch("s", "late", 5, 3));
        let rest = fails(live);
        let (kind, message) = trace_error(&rest);
        assert_eq!(kind, "config_error", "{how}: {message}");
        // Deleted first, the copy may or may not get the old inode back:
        // either way the sync stops.
        assert!(
            message.contains("not the file this sync let go of")
                || (how != "copied over" && message.contains("moved, replaced or deleted")),
            "{how}: {message}"
        );
        assert!(
            !rest.iter().any(|m| m["type"] == "STATE"),
            "{how}: no state echoed for rows written into the copy"
        );
        assert_eq!(
            h.count("main._airbyte_raw_s"),
            3,
            "{how}: the copy as it was"
        );
    }
}

/// Another user who may write the database and its folder may take the
/// writers' lock too, though the lock file is someone else's and read-only
/// to them; `check` says the same as `write`.
#[test]
fn another_user_takes_a_lock_file_they_cannot_write() {
    use std::os::unix::fs::PermissionsExt;
    let h = harness(json!({}));
    h.write_catalog(&catalog_of(&[("s", None)], "append"));
    h.write(batch("s", "root", 3, 1).as_bytes()).assert_ok();
    let Some(nobody) = Nobody::new(&h) else {
        return;
    };
    let lock = format!("{}.writer.lock", h.db_path().display());
    std::fs::set_permissions(&lock, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(h.db_path(), std::fs::Permissions::from_mode(0o666)).unwrap();
    std::fs::set_permissions(h.dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let config = h.config_path().to_str().unwrap().to_string();
    let check = nobody.run(&["check", "--config", &config], b"");
    assert_eq!(
        check.of_type("CONNECTION_STATUS")[0]["connectionStatus"]["status"],
        "SUCCEEDED",
        "{check:?}"
    );
    let args = h.write_args();
    let run = nobody.run(&args, batch("s", "nobody", 2, 2).as_bytes());
    run.assert_ok();
    assert_eq!(h.count("main._airbyte_raw_s"), 5);
}
