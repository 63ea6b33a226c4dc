//! Random SIGKILLs: whatever moment a sync dies at, the file opens, every
//! row acknowledged by an echoed state is there exactly once, an interrupted
//! overwrite leaves the live table whole, and the next sync works.
//!
//! The moments are events, not delays: a seeded generator picks each kill
//! point (at start-up, right after some input is sent, after the k-th echoed
//! state, while a commit is being written, after an overwrite's swap), so
//! the seed names where every kill lands (it is printed, and
//! `KILL_TEST_SEED` replays it), and no verdict depends on how fast the
//! machine is. Waits end on the event or fail at the hang guard.

use std::path::PathBuf;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use crate::util::{catalog_of, Harness, Live, HANG_GUARD};

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

    /// One of `1..=n`.
    fn one_to(&mut self, n: usize) -> usize {
        1 + self.below(n as u64) as usize
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
/// Logged once an overwrite's staged rows have replaced the live ones.
const SWAPPED: &str = "overwrite complete";

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

/// Where a sync is killed; chunks are counted from 1.
#[derive(Debug, Clone, Copy, PartialEq)]
enum KillPoint {
    /// Before any input.
    AtStart,
    /// As soon as `chunks` chunks are in the pipe.
    AfterSending { chunks: usize },
    /// Once the state of chunk `acks` is echoed, as soon as `more` further
    /// chunks are in the pipe.
    AfterEcho { acks: usize, more: usize },
    /// After `chunks` chunks, as soon as the write-ahead log changes size
    /// (a commit is being written), or else the last chunk's state is
    /// echoed.
    DuringCommit { chunks: usize },
    /// After every chunk and the tail, once the swap is logged.
    AfterSwap,
}

impl KillPoint {
    /// A kill point for `chunks` chunks; `AfterSwap` only if `swaps`.
    fn pick(rng: &mut Rng, chunks: usize, swaps: bool) -> KillPoint {
        match rng.below(if swaps { 12 } else { 10 }) {
            0 => KillPoint::AtStart,
            1..=3 => KillPoint::AfterSending {
                chunks: rng.one_to(chunks),
            },
            4..=6 => KillPoint::AfterEcho {
                acks: rng.one_to(chunks),
                more: rng.below(4) as usize,
            },
            7..=9 => KillPoint::DuringCommit {
                chunks: rng.one_to(chunks),
            },
            _ => KillPoint::AfterSwap,
        }
    }
}

/// What one killed sync left: the kill point, whether the tail was sent,
/// and the `upto` of the last echoed state (records `0..upto` are
/// acknowledged), if any.
struct Killed {
    point: KillPoint,
    tail_sent: bool,
    acked: Option<usize>,
}

/// One sync of iteration `it`: `total` records in chunks of
/// [`STATE_EVERY`], each chunk ending in its state, and `tail` after the
/// last, killed at a point the generator picks.
fn run_and_kill(h: &Harness, rng: &mut Rng, it: usize, total: usize, tail: &str) -> Killed {
    let chunks = total / STATE_EVERY;
    let point = KillPoint::pick(rng, chunks, !tail.is_empty());
    let mut live = h.spawn_write();
    let mut sync = Sending {
        live: &mut live,
        it,
        chunks,
        tail,
        sent: 0,
        acked: None,
    };
    match point {
        KillPoint::AtStart => {}
        KillPoint::AfterSending { chunks } => sync.send_upto(chunks),
        KillPoint::AfterEcho { acks, more } => {
            sync.send_upto(acks);
            sync.watch("the echo of the state before the kill", |acked| {
                acked >= Some(acks * STATE_EVERY)
            });
            sync.send_upto(acks + more);
        }
        KillPoint::DuringCommit { chunks } => {
            sync.send_upto(chunks);
            let wal = wal_path(h);
            let before = size_of(&wal);
            let last = Some(sync.sent * STATE_EVERY);
            sync.watch("a commit", |acked| size_of(&wal) != before || acked >= last);
        }
        KillPoint::AfterSwap => {
            sync.send_upto(chunks);
            assert!(sync.live.wait_for_log(SWAPPED), "the overwrite swaps");
        }
    }
    let tail_sent = sync.sent == chunks;
    let mut acked = sync.acked;
    live.kill();
    for line in live.rest_of_stdout() {
        acked = acked_upto(&line).or(acked);
    }
    Killed {
        point,
        tail_sent,
        acked,
    }
}

/// A live sync of one iteration's chunks, and what came back so far.
struct Sending<'a> {
    live: &'a mut Live,
    it: usize,
    chunks: usize,
    tail: &'a str,
    /// Chunks sent.
    sent: usize,
    /// The `upto` of the last echoed state seen.
    acked: Option<usize>,
}

impl Sending<'_> {
    /// Sends the chunks up to chunk `n` (at most all), the tail after the
    /// last.
    fn send_upto(&mut self, n: usize) {
        while self.sent < n.min(self.chunks) {
            let mut text = chunk(self.it, self.sent * STATE_EVERY, STATE_EVERY);
            self.sent += 1;
            if self.sent == self.chunks {
                text += self.tail;
            }
            self.live.send(&text);
        }
    }

    /// Reads stdout until `done` (given the last acknowledged `upto`) holds,
    /// asking it at least every millisecond.
    fn watch(&mut self, what: &str, mut done: impl FnMut(Option<usize>) -> bool) {
        let deadline = Instant::now() + HANG_GUARD;
        while !done(self.acked) {
            assert!(
                Instant::now() < deadline,
                "no {what} within {HANG_GUARD:?} (hang guard)"
            );
            match self.live.lines.recv_timeout(Duration::from_millis(1)) {
                Ok(line) => self.acked = acked_upto(&line).or(self.acked),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => panic!("the sync ended before {what}"),
            }
        }
    }
}

fn wal_path(h: &Harness) -> PathBuf {
    let mut wal = h.db_path().into_os_string();
    wal.push(".wal");
    wal.into()
}

fn size_of(path: &PathBuf) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.len())
}

/// Whether the killed sync left a database to look at. A kill during the
/// first sync's start-up may come before DuckDB made the file, or between
/// creating it and writing its header (an empty file, which the next sync
/// takes as a new database); then nothing was acknowledged.
fn made_a_database(h: &Harness, killed: &Killed) -> bool {
    let made = size_of(&h.db_path()).is_some_and(|n| n > 0);
    if !made {
        assert_eq!(
            killed.acked, None,
            "{:?}: acknowledged without a database file",
            killed.point
        );
    }
    made
}

#[test]
fn random_kills_never_lose_acknowledged_rows() {
    let mut rng = Rng(seed());
    let h = Harness::new();
    h.write_catalog(&catalog_of(&[("s", None)], "append"));
    for it in 0..ITERATIONS {
        let killed = run_and_kill(&h, &mut rng, it, 20_000, "");
        if !made_a_database(&h, &killed) {
            continue;
        }
        let Killed { point, acked, .. } = killed;
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
        assert_eq!(rows, distinct, "iteration {it}, {point:?}: no row twice");
        if let KillPoint::AfterEcho { acks, .. } = point {
            assert!(
                acked >= Some(acks * STATE_EVERY),
                "iteration {it}, {point:?}: acknowledged {acked:?}"
            );
        }
        if let Some(acked) = acked {
            let present = h.count(&format!(
                "main._airbyte_raw_s WHERE (_airbyte_data->>'it')::INT = {it} AND (_airbyte_data->>'i')::INT < {acked}"
            ));
            assert_eq!(
                present, acked as i64,
                "iteration {it}, {point:?}: every acknowledged row (max seen {max_i:?})"
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
        let Killed {
            point, tail_sent, ..
        } = run_and_kill(&h, &mut rng, it, total, &complete);
        // The live table holds one whole generation: the previous one or
        // this one, never a mix or a part.
        let rows = h.strings(
            "SELECT (_airbyte_data->>'it'), count(*)::VARCHAR FROM main._airbyte_raw_s GROUP BY 1",
        );
        assert_eq!(
            rows.len(),
            1,
            "iteration {it}, {point:?}: one generation in the live table: {rows:?}"
        );
        let (got_it, got_rows): (usize, usize) = (
            rows[0][0].as_deref().unwrap().parse().unwrap(),
            rows[0][1].as_deref().unwrap().parse().unwrap(),
        );
        // Which one is fixed by the kill point, but for a kill after the
        // COMPLETE went out and before the swap was seen.
        if point == KillPoint::AfterSwap {
            assert_eq!(got_it, it, "iteration {it}, {point:?}: swapped in");
        } else if !tail_sent {
            assert_eq!(
                got_it, current_it,
                "iteration {it}, {point:?}: no swap without the COMPLETE"
            );
        }
        if got_it == it {
            assert_eq!(
                got_rows, total,
                "iteration {it}, {point:?}: the new generation is whole"
            );
            current_it = it;
            current_rows = total;
        } else {
            assert_eq!(
                (got_it, got_rows),
                (current_it, current_rows),
                "iteration {it}, {point:?}: the old contents intact"
            );
        }
    }
}

/// Records of iteration `it` from `from` on, without any state, in blocks of
/// 5,000, as fast as `live`'s stdin takes them, on a thread of its own,
/// until the process goes away.
fn flood_without_states(live: &mut Live, it: usize, from: usize) -> std::thread::JoinHandle<()> {
    let mut stdin = live.stdin.take().unwrap();
    std::thread::spawn(move || {
        use std::io::Write;
        for block in 0.. {
            let start = from + block * 5_000;
            let text: String = (start..start + 5_000)
                .map(|i| record(it, i) + "\n")
                .collect();
            if stdin.write_all(text.as_bytes()).is_err() {
                return;
            }
        }
    })
}

/// Records that no state covers are held up to 64 MiB, then written ahead
/// into the open transaction, and DuckDB writes each full row group of it
/// into the file before the commit. A SIGKILL then leaves those blocks
/// unreferenced: the file opens with exactly the acknowledged rows, and the
/// next sync, re-sending from the last acknowledged state, works.
///
/// The kill comes when the file holds more than 8 MiB, which only rows
/// written ahead can make it hold. Rows written ahead are committed only if
/// the input pauses for the idle commit (200 ms); the flood never pauses,
/// but a machine busy enough to stall its thread that long gets another
/// attempt: the rules are checked on every attempt, and this one needs the
/// kill inside the transaction.
#[test]
#[allow(clippy::print_stderr)]
fn a_kill_after_row_groups_were_written_ahead_of_the_commit_loses_nothing_acknowledged() {
    const ACKED: usize = 1_000;
    for attempt in 1..=3 {
        let h = Harness::new();
        h.write_catalog(&catalog_of(&[("s", None)], "append"));
        let db = h.db_path();
        let mut live = h.spawn_write();
        live.send(&chunk(0, 0, ACKED));
        let echoed = live.next_state();
        assert_eq!(echoed["state"]["global"]["shared_state"]["upto"], ACKED);
        let flood = flood_without_states(&mut live, 0, ACKED);
        let deadline = Instant::now() + HANG_GUARD;
        while size_of(&db).unwrap_or(0) <= 8 << 20 {
            assert!(
                Instant::now() < deadline,
                "the file never passed 8 MiB (hang guard)"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        live.kill();
        flood.join().unwrap();
        let later: Vec<String> = live.rest_of_stdout();
        assert!(
            later.iter().all(|l| acked_upto(l).is_none()),
            "no state was sent after the first: {later:?}"
        );
        let (rows, distinct, acked_rows) = h
            .db()
            .query_row(
                &format!(
                    "SELECT count(*), count(DISTINCT (_airbyte_data->>'i')::INT), \
                     count(*) FILTER (WHERE (_airbyte_data->>'i')::INT < {ACKED}) \
                     FROM main._airbyte_raw_s"
                ),
                [],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                },
            )
            .unwrap();
        assert_eq!(rows, distinct, "attempt {attempt}: no row twice");
        assert_eq!(
            acked_rows, ACKED as i64,
            "attempt {attempt}: every acknowledged row"
        );
        if rows != ACKED as i64 {
            eprintln!(
                "attempt {attempt}: an idle commit took {} rows written ahead (the flood \
                 stalled 200 ms); trying again",
                rows - ACKED as i64
            );
            continue;
        }
        // The platform re-sends from the last acknowledged state.
        let resend = chunk(0, ACKED, 130_000);
        h.write(resend.as_bytes()).assert_ok();
        assert_eq!(h.count("main._airbyte_raw_s"), ACKED as i64 + 130_000);
        return;
    }
    eprintln!("NOT EXERCISED: every attempt's flood stalled long enough for an idle commit");
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
        let killed = run_and_kill(&h, &mut rng, it, 20_000, "");
        let point = killed.point;
        // A kill before the first sync made its tables leaves nothing to see.
        if !made_a_database(&h, &killed) {
            continue;
        }
        let made = h.strings(
            "SELECT count(*)::VARCHAR FROM duckdb_tables() WHERE schema_name = 'main' AND table_name IN ('s', '_airbyte_raw_s')",
        );
        if made[0][0].as_deref() != Some("2") {
            continue;
        }
        let (raw, typed) = (h.count("main._airbyte_raw_s"), h.count("main.s"));
        assert!(
            typed <= raw,
            "iteration {it}, {point:?}: {typed} typed rows, {raw} raw"
        );
        let ahead = h.count(&format!(
            "(SELECT it, i FROM main.s EXCEPT {}) x",
            pairs("main._airbyte_raw_s")
        ));
        assert_eq!(
            ahead, 0,
            "iteration {it}, {point:?}: typed rows without raw rows"
        );
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
