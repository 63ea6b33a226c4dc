//! The sync loop against a recording store and a fake clock: no DuckDB, no
//! sleeps. The property test is a model of the input (records, states,
//! statuses, pauses, time) checked against what the real loop, the real
//! [`policy`] and the real [`Checkpointer`] do with it; the tests of input
//! that never pauses pin when states come back, to the fake millisecond.
//! The last tests feed the loop from another thread, as the reader does, so
//! that its own wait on the channel decides what a pause is; they check the
//! order of events, never how long anything took.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::rc::Rc;
use std::sync::mpsc;

use proptest::prelude::*;

use super::*;
use crate::pipeline::policy::{COMMIT_INTERVAL, MAX_COMMIT_DELAY};
use crate::pipeline::reader::Scope;

/// What happened, in order: the store's commits (with the record ids in
/// them) and rollbacks, truncates finished, states echoed on stdout.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Commit(Vec<u64>),
    Rollback,
    Finished(usize),
    Echo(u64),
    /// The store let go of the database.
    Release,
}

type Log = Rc<RefCell<Vec<Seen>>>;

/// Stream 0 appends, stream 1 truncates.
const CATALOG: &str = r#"{"streams":[
    {"stream":{"name":"a"},"destination_sync_mode":"append"},
    {"stream":{"name":"b"},"destination_sync_mode":"overwrite"}]}"#;
const TRUNCATING: usize = 1;

/// Records per row group of the fake store.
const GROUP_ROWS: usize = 4;

/// A store that keeps record ids. Like DuckDB it holds only the open row
/// group in memory (full groups are written out), so records written ahead
/// can stay in the transaction below the batch limit. Its transaction is
/// "worth waiting for" from 8 records on, so both branches of the policy are
/// taken.
struct FakeStore {
    log: Log,
    txn: Vec<u64>,
    open_group_bytes: u64,
}

impl FakeStore {
    fn new(log: &Log) -> Self {
        FakeStore {
            log: Rc::clone(log),
            txn: Vec::new(),
            open_group_bytes: 0,
        }
    }
}

impl Store for FakeStore {
    fn append(&mut self, _: usize, _: i64, data: &str, _: Option<&str>) -> Result<()> {
        let id = data.split(' ').next().unwrap().parse().unwrap();
        self.txn.push(id);
        self.open_group_bytes += data.len() as u64;
        if self.txn.len().is_multiple_of(GROUP_ROWS) {
            self.open_group_bytes = 0;
        }
        Ok(())
    }
    fn has_pending(&self) -> bool {
        !self.txn.is_empty()
    }
    fn buffered_bytes(&self) -> u64 {
        self.open_group_bytes
    }
    fn worth_waiting(&self, _: u64) -> bool {
        self.txn.len() >= 8
    }
    fn commit(&mut self) -> Result<()> {
        self.log
            .borrow_mut()
            .push(Seen::Commit(std::mem::take(&mut self.txn)));
        self.open_group_bytes = 0;
        Ok(())
    }
    fn rollback(&mut self) {
        self.log.borrow_mut().push(Seen::Rollback);
        self.txn.clear();
        self.open_group_bytes = 0;
    }
    fn finish_truncate(&mut self, stream: usize) -> Result<()> {
        assert!(
            self.txn.is_empty(),
            "a truncate finishes outside a transaction"
        );
        self.log.borrow_mut().push(Seen::Finished(stream));
        Ok(())
    }
    fn release(&mut self) -> Result<()> {
        assert!(self.txn.is_empty(), "released with a transaction open");
        self.log.borrow_mut().push(Seen::Release);
        Ok(())
    }
}

/// Stdout: each STATE line becomes [`Seen::Echo`] of its `seq`, and goes
/// to `echoes` as it is flushed, if someone listens.
struct Stdout {
    log: Log,
    buf: Vec<u8>,
    echoes: Option<mpsc::Sender<u64>>,
}

impl Write for Stdout {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        while let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=end).collect();
            let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
            if v["type"] == "STATE" {
                let seq = v["state"]["seq"].as_u64().unwrap();
                self.log.borrow_mut().push(Seen::Echo(seq));
                if let Some(echoes) = &self.echoes {
                    let _ = echoes.send(seq);
                }
            }
        }
        Ok(())
    }
}

#[derive(Clone)]
struct FakeClock(Rc<Cell<Instant>>);

impl Clock for FakeClock {
    fn now(&self) -> Instant {
        self.0.get()
    }
}

#[derive(Debug, Clone)]
enum Ev {
    Record { stream: usize, pad: usize },
    State { stream: Option<usize> },
    Status { stream: usize, complete: bool },
}

#[derive(Debug, Clone)]
enum Op {
    Batch(Vec<Ev>),
    Idle,
    Advance(Duration),
}

/// Turns the model's events into reader batches, and remembers how many
/// records came before each state and each truncate COMPLETE.
#[derive(Default)]
struct Input {
    records: u64,
    /// Records received before state `seq`.
    state_marks: Vec<u64>,
    /// Records received before the last COMPLETE of the truncating stream.
    complete_mark: u64,
    completes: usize,
    statuses: usize,
}

impl Input {
    fn batch(&mut self, evs: &[Ev]) -> Batch {
        let mut batch = Batch::default();
        for ev in evs {
            batch.events.push(match *ev {
                Ev::Record { stream, pad } => {
                    let start = batch.bytes.len();
                    batch
                        .bytes
                        .push_str(&format!("{} {}", self.records, "x".repeat(pad)));
                    self.records += 1;
                    Event::Record {
                        stream,
                        emitted_at_micros: 0,
                        line: self.records,
                        data: start..batch.bytes.len(),
                        changes: None,
                    }
                }
                Ev::State { stream } => {
                    let seq = self.state_marks.len();
                    self.state_marks.push(self.records);
                    let line_text =
                        format!(r#"{{"type":"STATE","state":{{"type":"GLOBAL","seq":{seq}}}}}"#);
                    let state = line_text.find(r#"{"type":"GLOBAL""#).unwrap()..line_text.len() - 1;
                    let scope = stream.map_or(Scope::Global, Scope::Stream);
                    Event::State {
                        line_text,
                        state,
                        scope,
                    }
                }
                Ev::Status { stream, complete } => {
                    if stream == TRUNCATING {
                        self.statuses += 1;
                        if complete {
                            self.completes += 1;
                            self.complete_mark = self.records;
                        }
                    }
                    Event::StreamStatus { stream, complete }
                }
            });
        }
        batch
    }
}

/// The quiet input after which the loop lets go of the store, in the
/// tests that let it.
const RELEASE_IDLE: Duration = Duration::from_secs(2);

fn settings(batch_bytes: u64) -> Settings {
    Settings {
        batch_bytes,
        progress_interval: Duration::from_secs(3600),
        progress_on_stdout: false,
        cancelled: Arc::new(AtomicBool::new(false)),
        tables: vec!["a".into(), "b".into()],
        release_idle: Some(RELEASE_IDLE),
    }
}

/// What a run left behind.
struct Outcome {
    seen: Vec<Seen>,
    input: Input,
    /// Records were written ahead of their state at some point.
    wrote_ahead: bool,
    /// Where in `seen` the EOF handling starts.
    eof_at: usize,
}

/// Runs the loop over `ops`, then EOF, checking after every batch that the
/// policy's limits hold.
fn drive(ops: &[Op], batch_bytes: u64, source_failed: bool) -> Outcome {
    let log = Log::default();
    let catalog = Catalog::parse(CATALOG, "main").unwrap();
    let mut store = FakeStore::new(&log);
    let mut out = Emitter::new(Stdout {
        log: Rc::clone(&log),
        buf: Vec::new(),
        echoes: None,
    });
    let clock = FakeClock(Rc::new(Cell::new(Instant::now())));
    let mut sync = SyncLoop::new(
        &mut store,
        &catalog,
        &mut out,
        clock.clone(),
        settings(batch_bytes),
    );
    let mut input = Input::default();
    let mut wrote_ahead = false;
    for op in ops {
        match op {
            Op::Batch(evs) => {
                sync.on_batch(input.batch(evs)).unwrap();
                wrote_ahead |= sync.held.uncovered;
                let waited = clock.now().saturating_duration_since(sync.last_commit);
                let states = sync.checkpointer.has_pending();
                assert!(
                    !(states && waited >= MAX_COMMIT_DELAY),
                    "a state waited {waited:?}"
                );
                assert!(
                    !(states
                        && waited >= COMMIT_INTERVAL
                        && !sync.store.worth_waiting(batch_bytes)),
                    "a state waited {waited:?} though waiting did not pay"
                );
                assert!(
                    sync.store.buffered_bytes() < batch_bytes,
                    "over the batch limit"
                );
            }
            Op::Idle => {
                let quiet = clock.now().saturating_duration_since(sync.last_input);
                let before = log.borrow().len();
                sync.on_idle().unwrap();
                if log.borrow()[before..].contains(&Seen::Release) {
                    assert!(quiet >= RELEASE_IDLE, "released after {quiet:?} of quiet");
                }
                assert!(
                    !sync.checkpointer.has_pending(),
                    "idle leaves no state waiting"
                );
                assert!(!sync.store.has_pending(), "idle commits");
            }
            Op::Advance(d) => clock.0.set(clock.now() + *d),
        }
    }
    let eof_at = log.borrow().len();
    sync.on_eof(source_failed).unwrap();
    assert!(!sync.store.has_pending(), "EOF leaves no transaction open");
    assert!(
        !sync.checkpointer.has_pending(),
        "EOF leaves no state waiting"
    );
    drop(sync);
    let seen = log.borrow().clone();
    Outcome {
        seen,
        input,
        wrote_ahead,
        eof_at,
    }
}

fn event() -> impl Strategy<Value = Ev> {
    prop_oneof![
        6 => (0..2usize, 0..40usize).prop_map(|(stream, pad)| Ev::Record { stream, pad }),
        2 => prop::option::of(0..2usize).prop_map(|stream| Ev::State { stream }),
        1 => (0..2usize, any::<bool>()).prop_map(|(stream, complete)| Ev::Status { stream, complete }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop::collection::vec(event(), 0..12).prop_map(Op::Batch),
        1 => Just(Op::Idle),
        3 => (0..4_000u64).prop_map(|ms| Op::Advance(Duration::from_millis(ms))),
        1 => Just(Op::Advance(MAX_COMMIT_DELAY)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// A state is echoed only after every record before it is committed;
    /// states come out in order, none twice; no record is committed twice.
    /// The store is let go of only when everything committed is covered by
    /// an echoed state (readers then see no part of a batch).
    /// At a clean EOF everything is committed and every state echoed. When
    /// the source failed, the EOF commits no record that no state (or
    /// finished truncate) covers, and if nothing was ever written ahead of
    /// its state, exactly the covered records are committed: the retry
    /// re-sends the rest.
    #[test]
    fn a_state_is_echoed_only_after_its_records_commit(
        ops in prop::collection::vec(op(), 0..60),
        batch_bytes in prop_oneof![Just(64u64), Just(1_000), Just(1 << 30)],
        source_failed: bool,
    ) {
        let Outcome { seen, input, wrote_ahead, eof_at } = drive(&ops, batch_bytes, source_failed);
        let mut committed = HashSet::new();
        let mut echoed = 0u64;
        let mut finished = 0;
        for s in &seen {
            match s {
                Seen::Commit(ids) => {
                    for id in ids {
                        prop_assert!(committed.insert(*id), "record {id} committed twice");
                    }
                }
                Seen::Echo(seq) => {
                    prop_assert_eq!(*seq, echoed, "in order, none skipped");
                    let before = input.state_marks[*seq as usize];
                    prop_assert!(
                        (0..before).all(|r| committed.contains(&r)),
                        "state {seq} echoed before its {before} records were committed"
                    );
                    echoed += 1;
                }
                Seen::Finished(stream) => {
                    prop_assert_eq!(*stream, TRUNCATING);
                    finished += 1;
                }
                Seen::Release => {
                    let covered = echoed
                        .checked_sub(1)
                        .map_or(0, |last| input.state_marks[last as usize]);
                    prop_assert!(
                        committed.iter().all(|&id| id < covered),
                        "released with rows no echoed state covers"
                    );
                }
                Seen::Rollback => {}
            }
        }
        if !source_failed {
            prop_assert_eq!(committed.len() as u64, input.records);
            prop_assert_eq!(echoed, input.state_marks.len() as u64);
            let at_eof = usize::from(input.statuses == 0);
            prop_assert_eq!(finished, input.completes + at_eof);
        } else {
            prop_assert_eq!(finished, input.completes, "no truncate finishes at a failed EOF");
            let covered = echoed
                .checked_sub(1)
                .map_or(0, |last| input.state_marks[last as usize])
                .max(input.complete_mark);
            for s in &seen[eof_at..] {
                if let Seen::Commit(ids) = s {
                    prop_assert!(ids.iter().all(|&id| id < covered), "uncovered {ids:?} committed at EOF");
                }
            }
            if !wrote_ahead {
                prop_assert_eq!(committed.len() as u64, covered);
            }
        }
    }
}

/// What happens before EOF while `batches` batches of `records` records
/// and a GLOBAL state come in `gap` apart and the input never pauses.
fn never_pausing(records: usize, gap: Duration, batches: usize) -> Vec<Seen> {
    let mut evs = vec![Ev::Record { stream: 0, pad: 0 }; records];
    evs.push(Ev::State { stream: None });
    let ops: Vec<Op> = (0..batches)
        .flat_map(|_| [Op::Batch(evs.clone()), Op::Advance(gap)])
        .collect();
    let Outcome {
        mut seen, eof_at, ..
    } = drive(&ops, 1 << 30, false);
    seen.truncate(eof_at);
    seen
}

/// The commit of records `ids` and the echoes of states `seqs`, in order.
fn commit_then_echo(ids: std::ops::Range<u64>, seqs: std::ops::Range<u64>) -> Vec<Seen> {
    std::iter::once(Seen::Commit(ids.collect()))
        .chain(seqs.map(Seen::Echo))
        .collect()
}

/// A slow stream whose input never pauses (one record and a state every
/// 200 ms, below the fake store's "worth waiting" size): states wait the
/// commit interval, no less and no more. The batch at 1.0 s commits records
/// 0..=5 and echoes their states; the one at 2.0 s the next five.
#[test]
fn under_slow_input_that_never_pauses_states_come_back_every_commit_interval() {
    let gap = Duration::from_millis(200);
    assert_eq!(COMMIT_INTERVAL, 5 * gap, "the batches below assume it");
    let seen = never_pausing(1, gap, 12);
    let want = [commit_then_echo(0..6, 0..6), commit_then_echo(6..11, 6..11)].concat();
    assert_eq!(seen, want);
}

/// A stream fast enough that waiting pays (ten records every 500 ms): its
/// states wait up to the longest commit delay, and no longer. The batch at
/// 10 s is the first to commit, with every record and state so far.
#[test]
fn under_fast_input_that_never_pauses_states_come_back_within_the_longest_delay() {
    let gap = Duration::from_millis(500);
    assert_eq!(MAX_COMMIT_DELAY, 20 * gap, "the batches below assume it");
    let seen = never_pausing(10, gap, 25);
    assert_eq!(seen, commit_then_echo(0..210, 0..21));
}

/// Builds a loop over a channel that already holds `msgs`, runs it, and
/// returns the outcome with what happened.
fn run_with(msgs: Vec<ReaderMsg>, cancelled: bool) -> (Result<()>, Vec<Seen>) {
    let log = Log::default();
    let catalog = Catalog::parse(CATALOG, "main").unwrap();
    let mut store = FakeStore::new(&log);
    let mut out = Emitter::new(Stdout {
        log: Rc::clone(&log),
        buf: Vec::new(),
        echoes: None,
    });
    let (tx, rx) = mpsc::channel();
    for msg in msgs {
        tx.send(msg).unwrap();
    }
    // Every message is queued and the sender gone: the loop never waits.
    drop(tx);
    let settings = settings(1 << 30);
    settings.cancelled.store(cancelled, Ordering::Relaxed);
    let clock = FakeClock(Rc::new(Cell::new(Instant::now())));
    let result = SyncLoop::new(&mut store, &catalog, &mut out, clock, settings).run(&rx);
    let seen = log.borrow().clone();
    (result, seen)
}

/// Two records of stream 0, a state, one more record.
fn records_and_a_state() -> Batch {
    Input::default().batch(&[
        Ev::Record { stream: 0, pad: 0 },
        Ev::Record { stream: 0, pad: 0 },
        Ev::State { stream: None },
        Ev::Record { stream: 0, pad: 0 },
    ])
}

#[test]
fn a_clean_end_commits_everything_then_echoes_and_finishes_the_truncate() {
    let msgs = vec![
        ReaderMsg::Batch(records_and_a_state()),
        ReaderMsg::Eof {
            source_failed: false,
        },
    ];
    let (result, seen) = run_with(msgs, false);
    result.unwrap();
    assert_eq!(
        seen,
        [
            Seen::Commit(vec![0, 1, 2]),
            Seen::Echo(0),
            Seen::Finished(TRUNCATING)
        ]
    );
}

#[test]
fn a_failed_source_keeps_what_its_states_cover_and_no_more() {
    let msgs = vec![
        ReaderMsg::Batch(records_and_a_state()),
        ReaderMsg::Eof {
            source_failed: true,
        },
    ];
    let (result, seen) = run_with(msgs, false);
    result.unwrap();
    assert_eq!(seen, [Seen::Commit(vec![0, 1]), Seen::Echo(0)]);
}

#[test]
fn invalid_input_rolls_back_and_echoes_nothing() {
    let msgs = vec![
        ReaderMsg::Batch(records_and_a_state()),
        ReaderMsg::Failed(Failure::config("line 4 is not JSON")),
    ];
    let (result, seen) = run_with(msgs, false);
    assert!(result.is_err());
    assert_eq!(seen, [Seen::Rollback]);
}

#[test]
fn a_cancel_rolls_back_and_echoes_nothing() {
    let msgs = vec![ReaderMsg::Batch(records_and_a_state())];
    let (result, seen) = run_with(msgs, true);
    assert!(format!("{:#}", result.unwrap_err()).contains("cancelled"));
    assert_eq!(seen, [Seen::Rollback]);
}

#[test]
fn a_reader_that_vanishes_is_an_error() {
    let (result, seen) = run_with(Vec::new(), false);
    assert!(format!("{:#}", result.unwrap_err()).contains("reader thread"));
    assert_eq!(seen, [Seen::Rollback]);
}

/// A bound on waits that end on an event, so that a loop that never gets
/// there fails the test instead of hanging it. Only a guard: no verdict
/// here depends on how long anything takes.
const HANG_GUARD: Duration = Duration::from_secs(60);

/// The reader's end of the channel, handed to a thread of its own as in the
/// binary.
struct Feed {
    tx: mpsc::Sender<ReaderMsg>,
    /// The `seq` of each state, as its echo is flushed.
    echoes: mpsc::Receiver<u64>,
    cancelled: Arc<AtomicBool>,
    /// Says when the loop has returned.
    stopped: mpsc::Receiver<()>,
}

/// Runs the loop on this thread, with its real waits on the channel, while
/// `feed` feeds it from another. Returns the loop's outcome, what happened,
/// and what `feed` returned.
fn run_fed<T: Send + 'static>(
    feed: impl FnOnce(Feed) -> T + Send + 'static,
) -> (Result<()>, Vec<Seen>, T) {
    let log = Log::default();
    let catalog = Catalog::parse(CATALOG, "main").unwrap();
    let mut store = FakeStore::new(&log);
    let (echo_tx, echoes) = mpsc::channel();
    let mut out = Emitter::new(Stdout {
        log: Rc::clone(&log),
        buf: Vec::new(),
        echoes: Some(echo_tx),
    });
    let (tx, rx) = mpsc::channel();
    let (stopped_tx, stopped) = mpsc::channel();
    let settings = settings(1 << 30);
    let cancelled = Arc::clone(&settings.cancelled);
    let feeder = std::thread::spawn(move || {
        feed(Feed {
            tx,
            echoes,
            cancelled,
            stopped,
        })
    });
    // The fake clock stands still: only the channel's own timeout (the
    // input pausing) can make the loop commit.
    let clock = FakeClock(Rc::new(Cell::new(Instant::now())));
    let result = SyncLoop::new(&mut store, &catalog, &mut out, clock, settings).run(&rx);
    let _ = stopped_tx.send(());
    let fed = feeder.join().unwrap();
    let seen = log.borrow().clone();
    (result, seen, fed)
}

/// The input pauses after a state and stays open: the loop's wait for more
/// input times out, and it commits and echoes the state before anything
/// else arrives. (How soon is [`IDLE_FLUSH`], whose bound the policy's tests
/// pin; here only the order of events counts.)
#[test]
fn a_state_is_echoed_when_the_input_pauses_while_it_stays_open() {
    let (result, seen, echoed_while_open) = run_fed(|feed| {
        feed.tx
            .send(ReaderMsg::Batch(records_and_a_state()))
            .unwrap();
        let echoed = feed.echoes.recv_timeout(HANG_GUARD).ok();
        feed.tx
            .send(ReaderMsg::Eof {
                source_failed: false,
            })
            .unwrap();
        echoed
    });
    result.unwrap();
    assert_eq!(
        echoed_while_open,
        Some(0),
        "the state is echoed while the input stays open"
    );
    assert_eq!(
        seen,
        [
            Seen::Commit(vec![0, 1]),
            Seen::Echo(0),
            Seen::Commit(vec![2]),
            Seen::Finished(TRUNCATING)
        ]
    );
}

/// A cancel (SIGTERM) while the loop waits for input that never comes: the
/// loop stops by itself, though the input neither ends nor fails, rolls
/// back the record it holds, and echoes nothing.
#[test]
fn a_cancel_while_the_input_is_quiet_ends_the_loop() {
    let (result, seen, ()) = run_fed(|feed| {
        let record = Input::default().batch(&[Ev::Record { stream: 0, pad: 0 }]);
        feed.tx.send(ReaderMsg::Batch(record)).unwrap();
        feed.cancelled.store(true, Ordering::Relaxed);
        // The input stays open until the loop has stopped. Should it never
        // stop, the end of the input lets the test fail below.
        if feed.stopped.recv_timeout(HANG_GUARD).is_err() {
            let _ = feed.tx.send(ReaderMsg::Eof {
                source_failed: false,
            });
        }
    });
    let error = result.expect_err("the loop stops on the cancel alone");
    assert!(format!("{error:#}").contains("cancelled"), "{error:#}");
    assert_eq!(seen, [Seen::Rollback]);
}

/// After a batch and its state, the loop lets go of the store once the
/// input has been quiet for the release time, not before, and once per
/// quiet spell.
#[test]
fn the_store_is_let_go_of_after_a_quiet_spell() {
    let batch = vec![
        Ev::Record { stream: 0, pad: 0 },
        Ev::Record { stream: 0, pad: 0 },
        Ev::State { stream: None },
    ];
    let half = RELEASE_IDLE / 2;
    let ops = [
        Op::Batch(batch.clone()),
        Op::Idle,
        Op::Advance(half),
        Op::Idle,
        Op::Advance(half),
        Op::Idle,
        Op::Advance(half),
        Op::Idle,
        Op::Batch(batch),
    ];
    let Outcome { seen, eof_at, .. } = drive(&ops, 1 << 30, false);
    assert_eq!(
        &seen[..eof_at],
        &[
            Seen::Commit(vec![0, 1]),
            Seen::Echo(0),
            Seen::Release,
            Seen::Commit(vec![2, 3]),
            Seen::Echo(1),
        ]
    );
}
