//! Random SIGKILLs: whatever moment a sync dies at, the file opens, every
//! row acknowledged by an echoed state is there exactly once, an interrupted
//! overwrite leaves the live table whole, and the next sync works.

use std::time::{Duration, Instant};

use crate::util::{catalog_of, Harness};

/// xorshift64*: a tiny deterministic generator, so a failing seed replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[allow(clippy::print_stderr)]
fn seed() -> u64 {
    let seed = std::env::var("KILL_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    // Printed so that a failure can be replayed with KILL_TEST_SEED.
    eprintln!("kill test seed: KILL_TEST_SEED={seed}");
    seed
}

const ITERATIONS: usize = 12;
const STATE_EVERY: usize = 250;

fn record(it: usize, i: usize) -> String {
    format!(
        r#"{{"type":"RECORD","record":{{"stream":"s","emitted_at":{i},"data":{{"it":{it},"i":{i},"pad":"{}"}}}}}}"#,
        "x".repeat(200)
    )
}

fn state(it: usize, i: usize) -> String {
    format!(
        r#"{{"type":"STATE","state":{{"type":"GLOBAL","global":{{"shared_state":{{"it":{it},"upto":{i}}}}}}}}}"#
    )
}

/// Records `from..from + n` of iteration `it`, then the state that covers
/// them.
fn chunk(it: usize, from: usize, n: usize) -> String {
    let mut chunk = String::new();
    for i in from..from + n {
        chunk += &record(it, i);
        chunk.push('\n');
    }
    chunk += &state(it, from + n);
    chunk.push('\n');
    chunk
}

/// The `upto` of an echoed state line, if it is one.
fn acked_upto(line: &str) -> Option<usize> {
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    (v["type"] == "STATE").then(|| {
        v["state"]["global"]["shared_state"]["upto"]
            .as_u64()
            .unwrap() as usize
    })
}

/// Sends `total` records in chunks with states, then kills the process after
/// a random delay. Returns the `upto` of the last echoed state (records
/// `0..upto` are acknowledged) or None.
fn run_and_kill(
    h: &Harness,
    rng: &mut Rng,
    it: usize,
    total: usize,
    extra_tail: &str,
) -> Option<usize> {
    let mut live = h.spawn_write();
    let deadline = Instant::now() + Duration::from_millis(rng.below(1500));
    let mut last_ack = None;
    let mut i = 0;
    while i < total && Instant::now() < deadline {
        let mut chunk = chunk(it, i, STATE_EVERY);
        i += STATE_EVERY;
        if i >= total {
            chunk += extra_tail;
        }
        live.send(&chunk);
        if rng.below(3) == 0 {
            std::thread::sleep(Duration::from_millis(rng.below(300)));
        }
        while let Ok(line) = live.lines.try_recv() {
            last_ack = acked_upto(&line).or(last_ack);
        }
    }
    std::thread::sleep(Duration::from_millis(rng.below(400)));
    live.child.kill().unwrap();
    live.child.wait().unwrap();
    while let Ok(line) = live.lines.recv_timeout(Duration::from_millis(200)) {
        last_ack = acked_upto(&line).or(last_ack);
    }
    last_ack
}

#[test]
fn random_kills_never_lose_acknowledged_rows() {
    let mut rng = Rng(seed());
    let h = Harness::new();
    h.write_catalog(&catalog_of(&[("s", None)], "append"));
    for it in 0..ITERATIONS {
        let acked = run_and_kill(&h, &mut rng, it, 20_000, "");
        let conn = h.db();
        let (rows, distinct, max_i): (i64, i64, Option<i64>) = conn
            .query_row(
                &format!(
                    "SELECT count(*), count(DISTINCT (_airbyte_data->>'i')::INT), max((_airbyte_data->>'i')::INT) \
                     FROM main._airbyte_raw_s WHERE (_airbyte_data->>'it')::INT = {it}"
                ),
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        drop(conn);
        assert_eq!(rows, distinct, "iteration {it}: no row twice");
        if let Some(acked) = acked {
            let present = h.count(&format!(
                "main._airbyte_raw_s WHERE (_airbyte_data->>'it')::INT = {it} AND (_airbyte_data->>'i')::INT < {acked}"
            ));
            assert_eq!(
                present, acked as i64,
                "iteration {it}: every acknowledged row (max seen {max_i:?})"
            );
        }
    }
}

#[test]
fn random_kills_during_overwrite_leave_the_live_table_whole() {
    let mut rng = Rng(seed());
    let h = Harness::new();
    h.write_catalog(&catalog_of(&[("s", None)], "append"));
    let base: String =
        (0..300).map(|i| record(999, i) + "\n").collect::<String>() + &state(999, 300) + "\n";
    h.write(base.as_bytes()).assert_ok();
    h.write_catalog(&catalog_of(&[("s", None)], "overwrite"));
    let complete = r#"{"type":"TRACE","trace":{"type":"STREAM_STATUS","emitted_at":1,"stream_status":{"stream_descriptor":{"name":"s"},"status":"COMPLETE"}}}"#.to_string() + "\n";
    let mut current_it = 999;
    let mut current_rows = 300;
    for it in 0..ITERATIONS {
        let total = 2_000;
        run_and_kill(&h, &mut rng, it, total, &complete);
        // The live table holds one whole generation: the previous one or
        // this one, never a mix or a part.
        let rows = h.strings(
            "SELECT (_airbyte_data->>'it'), count(*)::VARCHAR FROM main._airbyte_raw_s GROUP BY 1",
        );
        assert_eq!(
            rows.len(),
            1,
            "iteration {it}: one generation in the live table: {rows:?}"
        );
        let (got_it, got_rows): (usize, usize) = (
            rows[0][0].as_deref().unwrap().parse().unwrap(),
            rows[0][1].as_deref().unwrap().parse().unwrap(),
        );
        if got_it == it {
            assert_eq!(
                got_rows, total,
                "iteration {it}: the new generation is whole"
            );
            current_it = it;
            current_rows = total;
        } else {
            assert_eq!(
                (got_it, got_rows),
                (current_it, current_rows),
                "iteration {it}: the old contents intact"
            );
        }
    }
}

/// A fast stream keeps its transaction open for up to ten seconds, and
/// DuckDB writes each full row group of it into the file before the commit.
/// A SIGKILL then leaves those blocks unreferenced: the file opens with
/// exactly the acknowledged rows, and the next sync reuses the space.
#[test]
fn a_kill_after_row_groups_were_written_ahead_of_the_commit_loses_nothing_acknowledged() {
    let h = Harness::new();
    h.write_catalog(&catalog_of(&[("s", None)], "append"));
    let db = h.db_path();
    let mut live = h.spawn_write();
    let mut i = 0;
    let mut chunk_of = |n: usize| {
        i += n;
        chunk(0, i - n, n)
    };
    // Well over two row groups (2 x 122,880 rows), as fast as the pipe takes
    // them, then a trickle that keeps the input from going quiet (a quiet
    // input is committed after 200 ms) until DuckDB has written ahead.
    for _ in 0..60 {
        live.send(&chunk_of(5_000));
    }
    let deadline = Instant::now() + Duration::from_secs(8);
    let written_ahead = loop {
        let size = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
        if size > 8 << 20 || Instant::now() > deadline {
            break size;
        }
        live.send(&chunk_of(1));
        std::thread::sleep(Duration::from_millis(50));
    };
    live.child.kill().unwrap();
    live.child.wait().unwrap();
    let mut acked = 0;
    while let Ok(line) = live.lines.recv_timeout(Duration::from_millis(200)) {
        acked = acked_upto(&line).unwrap_or(acked);
    }
    assert!(
        written_ahead > 8 << 20,
        "row groups reach the file before the commit ({written_ahead} bytes)"
    );
    assert!(
        acked < 250_000,
        "the kill lands inside the open transaction (acknowledged {acked})"
    );
    let (rows, distinct) = h
        .db()
        .query_row(
            "SELECT count(*), count(DISTINCT (_airbyte_data->>'i')::INT) FROM main._airbyte_raw_s",
            [],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
        )
        .unwrap();
    assert_eq!((rows, distinct), (acked as i64, acked as i64));
    // The platform re-sends from the last acknowledged state.
    let resend: String = (acked..acked + 130_000)
        .map(|k| record(0, k) + "\n")
        .collect::<String>()
        + &state(0, acked + 130_000)
        + "\n";
    h.write(resend.as_bytes()).assert_ok();
    assert_eq!(h.count("main._airbyte_raw_s"), acked as i64 + 130_000);
}

/// Typed tables are written beside the raw rows and committed right after
/// them: whatever moment a sync dies at, no typed row is there without its
/// raw row, and the next sync that completes leaves the typed table holding
/// exactly the raw rows.
#[test]
fn random_kills_with_typed_tables_never_leave_typed_rows_ahead() {
    let mut rng = Rng(seed());
    let h = Harness::new();
    h.write_config(serde_json::json!({
        "destination_path": h.db_path().to_str().unwrap(),
        "typed_output": "tables",
    }));
    let mut catalog = catalog_of(&[("s", None)], "append");
    catalog["streams"][0]["stream"]["json_schema"] = serde_json::json!({
        "type": "object",
        "properties": {"it": {"type": "integer"}, "i": {"type": "integer"}, "pad": {"type": "string"}}
    });
    h.write_catalog(&catalog);
    let pairs = |relation: &str| {
        format!("SELECT (_airbyte_data->>'it')::INT, (_airbyte_data->>'i')::INT FROM {relation}")
    };
    for it in 0..6 {
        run_and_kill(&h, &mut rng, it, 20_000, "");
        // A kill before the first sync made its tables leaves nothing to see.
        let made = h.strings(
            "SELECT count(*)::VARCHAR FROM duckdb_tables() WHERE schema_name = 'main' AND table_name IN ('s', '_airbyte_raw_s')",
        );
        if made[0][0].as_deref() != Some("2") {
            continue;
        }
        let (raw, typed) = (h.count("main._airbyte_raw_s"), h.count("main.s"));
        assert!(
            typed <= raw,
            "iteration {it}: {typed} typed rows, {raw} raw"
        );
        let ahead = h.count(&format!(
            "(SELECT it, i FROM main.s EXCEPT {}) x",
            pairs("main._airbyte_raw_s")
        ));
        assert_eq!(ahead, 0, "iteration {it}: typed rows without raw rows");
    }
    let run = h.write(chunk(99, 0, 10).as_bytes());
    run.assert_ok();
    let raw = h.count("main._airbyte_raw_s");
    assert_eq!(
        h.count("main.s"),
        raw,
        "the typed table holds every raw row"
    );
    let missing = h.count(&format!(
        "({} EXCEPT SELECT it, i FROM main.s) x",
        pairs("main._airbyte_raw_s")
    ));
    assert_eq!(missing, 0, "and no other");
}
