//! `write`: the sync loop.
//!
//! The reader thread turns stdin into batches of events. This thread holds
//! records back until a state covers them (or they pass the batch limit),
//! appends them to DuckDB inside one open transaction, queues state echoes,
//! and commits when the uncompressed data it holds passes the batch limit,
//! when states have waited [`COMMIT_INTERVAL`] under load (up to
//! [`MAX_COMMIT_DELAY`] while fast streams fill DuckDB row groups), or when
//! the input has been quiet for [`IDLE_FLUSH`]. After each commit the queued
//! states are echoed, in order.
//! A truncating stream is swapped in when it reports COMPLETE, or at clean
//! EOF if it never reported a status and the source reported no error.

use std::collections::VecDeque;
use std::io::{IsTerminal, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};

use crate::catalog::{Catalog, WriteMode};
use crate::config::{Config, TypedOutput};
use crate::database;
use crate::emit::Emitter;
use crate::error::Failure;
use crate::pipeline::checkpoint::Checkpointer;
use crate::pipeline::progress::Progress;
use crate::pipeline::reader::{self, Batch, Event, ReaderMsg};
use crate::pipeline::sink::Sink;
use crate::typed;

/// When the input has been quiet this long, pending work is committed and
/// pending states echoed.
pub const IDLE_FLUSH: Duration = Duration::from_millis(200);
/// Under sustained input, states wait about this long for a commit ...
pub const COMMIT_INTERVAL: Duration = Duration::from_secs(1);
/// ... or up to this long while some stream is fast enough that fewer,
/// larger commits let DuckDB write its rows once (see
/// [`Sink::worth_waiting`]).
pub const MAX_COMMIT_DELAY: Duration = Duration::from_secs(10);
/// Records held back without a state (outside DuckDB's buffer pool) are
/// appended anyway past this many bytes, or `batch_size_mb` if smaller.
const HELD_LIMIT: u64 = 64 << 20;
/// Batches in flight between the reader and the writer.
const CHANNEL_BATCHES: usize = 4;

pub fn run<W: Write>(
    config_path: &Path,
    catalog_path: &Path,
    input: Box<dyn Read + Send>,
    out: &mut Emitter<W>,
) -> Result<()> {
    let config = Config::load(config_path)?;
    let catalog = Arc::new(Catalog::load(catalog_path, &config.schema)?);
    tracing::debug!(?config, streams = catalog.streams.len(), "starting write");
    let db = database::open(&config)?;
    let label = db.label.clone();
    run_sync(&config, &catalog, db, input, out).map_err(|e| database::storage_failure(e, &label))
}

fn run_sync<W: Write>(
    config: &Config,
    catalog: &Arc<Catalog>,
    db: database::Database,
    input: Box<dyn Read + Send>,
    out: &mut Emitter<W>,
) -> Result<()> {
    let mut sink = Sink::prepare(&db.session, catalog, config.memory_limit_bytes())?;
    let mut typed = typed::prepare(&db.session, sink.streams(), config.typed_output)?;

    // Settings for the append phase, undone before the typed refresh and
    // the final checkpoint (`RESET`).
    // - One DuckDB thread, unless the config asks for more: the reader thread
    //   parses on the other core, and a second DuckDB worker mostly spins
    //   waiting for the appender's small inserts (1M records: 5.3-6.6 s
    //   against 6.4-7.1 s, with 20% less CPU).
    // - No dictionary compression: `_airbyte_ab_id` and `_airbyte_data` are
    //   unique per row, so analysing them for a dictionary at every row
    //   group is wasted (1M records: 4.6-4.8 s against 5.0-6.5 s); only the
    //   small `_airbyte_meta` column loses by it (the file grows about 4%).
    //   Typed tables, built after the reset, keep it.
    let mut append_phase = vec![("disabled_compression_methods", "'dictionary'")];
    if config.threads.is_none() {
        append_phase.push(("threads", "1"));
    }
    for (name, value) in &append_phase {
        db.session
            .execute(&format!("SET {name} = {value}"))
            .with_context(|| format!("setting DuckDB's {name}"))?;
    }

    let cancelled = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&cancelled))
            .context("installing the SIGTERM handler")?;
    }
    // Past a file-size limit (ulimit -f) a write fails with EFBIG instead of
    // the process dying on SIGXFSZ, so the failure is reported and rolled back.
    signal_hook::flag::register(
        signal_hook::consts::SIGXFSZ,
        Arc::new(AtomicBool::new(false)),
    )
    .context("installing the SIGXFSZ handler")?;

    let (tx, rx) = mpsc::sync_channel(CHANNEL_BATCHES);
    let reader_catalog = Arc::clone(catalog);
    std::thread::Builder::new()
        .name("reader".into())
        .spawn(move || reader::run(input, reader_catalog, tx))
        .context("starting the reader thread")?;

    let mut sync = SyncLoop {
        sink: &mut sink,
        checkpointer: Checkpointer::new(catalog.streams.len()),
        out,
        status_seen: vec![false; catalog.streams.len()],
        progress: Progress::new(
            catalog.streams.iter().map(|s| s.label()).collect(),
            Duration::from_secs(config.progress_interval_seconds),
        ),
        progress_on_stdout: !std::io::stdout().is_terminal(),
        last_commit: Instant::now(),
        batch_bytes: config.batch_bytes,
        cancelled,
        held: Held::default(),
    };
    let outcome = sync.run(&rx, catalog);
    if let Err(e) = outcome {
        sync.sink.rollback();
        let dropped = sync.checkpointer.discard();
        if dropped > 0 {
            tracing::warn!("{dropped} state(s) not echoed: their records were rolled back");
        }
        return Err(e);
    }
    let tables: Vec<String> = sync
        .sink
        .streams()
        .iter()
        .map(|s| format!("\"{}\".\"{}\"", s.schema, s.table))
        .collect();
    let states = sync.checkpointer.released();
    for line in sync.progress.summary(&tables, states) {
        sync.report(&line)?;
    }
    for (name, _) in &append_phase {
        db.session
            .execute(&format!("RESET {name}"))
            .with_context(|| format!("resetting DuckDB's {name}"))?;
    }
    let refreshed = if config.typed_output == TypedOutput::Tables {
        refresh_typed_tables(&db.session, sink.streams(), &mut typed)
    } else {
        Ok(())
    };
    drop(sink);
    // States are already echoed here: a refresh or the final checkpoint that
    // fails (a full disk) loses none of the raw rows, which are in the WAL.
    refreshed.and_then(|()| db.close())
}

/// Builds or catches up every stream's typed table (`typed_output: tables`).
/// Each runs in its own transaction; one that fails leaves its previous
/// table, and the next sync catches it up.
fn refresh_typed_tables(
    session: &crate::duck::Session,
    streams: &[crate::catalog::Stream],
    typed: &mut [typed::Typed],
) -> Result<()> {
    let tables = database::existing_tables(session)?;
    for (stream, t) in streams.iter().zip(typed.iter_mut()) {
        let started = Instant::now();
        let rebuild = stream.mode == WriteMode::Truncate;
        let how = typed::materialise(session, stream, t, rebuild, &tables)?;
        tracing::info!(
            how,
            stream = %stream.label(),
            table = %format!("\"{}\".\"{}\"", stream.schema, t.name),
            seconds = started.elapsed().as_secs_f64(),
            "typed table refreshed"
        );
    }
    Ok(())
}

struct SyncLoop<'a, 's, W: Write> {
    sink: &'a mut Sink<'s>,
    checkpointer: Checkpointer,
    out: &'a mut Emitter<W>,
    /// Whether a stream has sent any STREAM_STATUS (then only COMPLETE
    /// finishes it; otherwise clean EOF does).
    status_seen: Vec<bool>,
    progress: Progress,
    /// Progress also goes out as LOG messages on stdout (for the Airbyte
    /// UI), unless stdout is a terminal, where stderr already shows it.
    progress_on_stdout: bool,
    last_commit: Instant,
    batch_bytes: u64,
    /// Set by SIGTERM/SIGINT: stop, roll back what is not committed, close.
    cancelled: Arc<AtomicBool>,
    held: Held,
}

/// Received records not yet appended: the tail of the newest batches from
/// event `start` of the first one.
#[derive(Default)]
struct Held {
    batches: VecDeque<Batch>,
    start: usize,
    bytes: u64,
    /// Records were written ahead of any state (past the held limit) and no
    /// state has covered them since.
    uncovered: bool,
}

impl<W: Write> SyncLoop<'_, '_, W> {
    fn run(&mut self, rx: &mpsc::Receiver<ReaderMsg>, catalog: &Catalog) -> Result<()> {
        let source_failed = loop {
            if self.cancelled.load(Ordering::Relaxed) {
                return Err(Failure::transient(
                    "the sync was cancelled (SIGTERM/SIGINT); records after the last echoed state were rolled back",
                )
                .into());
            }
            let msg = match rx.recv_timeout(IDLE_FLUSH) {
                Ok(msg) => msg,
                Err(RecvTimeoutError::Timeout) => {
                    // A cancel that arrived during the wait wins over the
                    // idle commit.
                    if !self.cancelled.load(Ordering::Relaxed) {
                        self.commit()?;
                        self.maybe_report()?;
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(anyhow!("the reader thread stopped unexpectedly"))
                }
            };
            match msg {
                ReaderMsg::Batch(batch) => {
                    self.batch(batch, catalog)?;
                    let waited = self.last_commit.elapsed();
                    let states_waited = self.checkpointer.has_pending()
                        && waited >= COMMIT_INTERVAL
                        && (waited >= MAX_COMMIT_DELAY
                            || !self.sink.worth_waiting(self.batch_bytes));
                    if self.sink.buffered_bytes() >= self.batch_bytes || states_waited {
                        self.commit()?;
                    }
                    self.maybe_report()?;
                }
                ReaderMsg::Failed(failure) => return Err(failure.into()),
                ReaderMsg::Eof { source_failed } => break source_failed,
            }
        };
        if !source_failed {
            // A source that ends cleanly may send no final state: what it
            // sent is complete, and committed.
            self.append_held()?;
            self.commit()?;
        } else if self.held.uncovered {
            // The source failed: records that no state covers are re-sent
            // by the retry, so none of them may stay. Some were written
            // ahead (past the held limit) into the open transaction: it is
            // rolled back, and its states are not echoed.
            self.sink.rollback();
            self.checkpointer.discard();
        } else {
            self.commit()?;
        }
        for (i, stream) in catalog.streams.iter().enumerate() {
            if stream.mode != WriteMode::Truncate || self.status_seen[i] {
                continue;
            }
            if source_failed {
                // The source failed: its rows may be partial. The live
                // table stays; the staged rows wait for the retry.
                tracing::warn!(
                    stream = %stream.label(),
                    "the source reported an error and the stream sent no status: \
                     the previous contents stay, the new rows stay staged for the retry"
                );
            } else {
                self.sink.finish_truncate(i)?;
            }
        }
        Ok(())
    }

    /// Takes in one batch. Records are held back until a state covers them
    /// (or they pass the batch limit), so that a commit normally ends at a
    /// state: records after the last state are not written before their
    /// state arrives, and a failure or cancel leaves none of them behind to
    /// be duplicated when the platform re-sends them.
    fn batch(&mut self, batch: Batch, catalog: &Catalog) -> Result<()> {
        self.held.batches.push_back(batch);
        let n = self.held.batches.back().map_or(0, |b| b.events.len());
        for k in 0..n {
            let last = self.held.batches.back().expect("pushed above");
            match &last.events[k] {
                Event::Record { stream, data, .. } => {
                    self.checkpointer.on_record(*stream);
                    self.progress.record(*stream, data.len());
                    self.held.bytes += data.len() as u64;
                }
                Event::State { .. } => {
                    self.append_held_upto(k)?;
                    let last = self.held.batches.back().expect("kept by append_held_upto");
                    if let Event::State {
                        line_text,
                        state,
                        scope,
                    } = &last.events[k]
                    {
                        self.checkpointer.on_state(line_text, state.clone(), *scope);
                    }
                    self.held.uncovered = false;
                }
                Event::StreamStatus { stream, complete } => {
                    let (stream, complete) = (*stream, *complete);
                    self.status_seen[stream] = true;
                    if complete && catalog.streams[stream].mode == WriteMode::Truncate {
                        self.append_held_upto(k)?;
                        self.commit()?;
                        self.sink.finish_truncate(stream)?;
                    }
                }
            }
        }
        if self.held.bytes >= self.batch_bytes.min(HELD_LIMIT) {
            // No state in sight: write them anyway, memory stays bounded.
            self.append_held()?;
            self.held.uncovered = true;
        }
        Ok(())
    }

    /// Appends every held record.
    fn append_held(&mut self) -> Result<()> {
        let n = self.held.batches.back().map_or(0, |b| b.events.len());
        self.append_held_upto(n)
    }

    /// Appends the held records before event `upto` of the newest batch;
    /// what remains held starts there.
    fn append_held_upto(&mut self, upto: usize) -> Result<()> {
        let count = self.held.batches.len();
        for (i, batch) in self.held.batches.iter().enumerate() {
            let from = if i == 0 { self.held.start } else { 0 };
            let to = if i + 1 == count {
                upto
            } else {
                batch.events.len()
            };
            for event in &batch.events[from..to] {
                if let Event::Record {
                    stream,
                    emitted_at_micros,
                    line,
                    data,
                    changes,
                } = event
                {
                    self.sink
                        .append(
                            *stream,
                            *emitted_at_micros,
                            &batch.bytes[data.clone()],
                            changes.clone().map(|c| &batch.bytes[c]),
                        )
                        .with_context(|| format!("line {line}"))?;
                }
            }
        }
        while self.held.batches.len() > 1 {
            self.held.batches.pop_front();
        }
        self.held.start = upto;
        self.held.bytes = 0;
        Ok(())
    }

    fn maybe_report(&mut self) -> Result<()> {
        if self.progress.due() {
            let line = self.progress.line(self.checkpointer.released());
            self.report(&line)?;
        }
        Ok(())
    }

    fn report(&mut self, line: &str) -> Result<()> {
        tracing::info!("{line}");
        if self.progress_on_stdout {
            self.out
                .log("INFO", line)
                .context("writing a LOG message to stdout")?;
        }
        Ok(())
    }

    /// Commits everything appended so far, then echoes the queued states.
    fn commit(&mut self) -> Result<()> {
        if !self.sink.has_pending() && !self.checkpointer.has_pending() {
            return Ok(());
        }
        self.sink.commit()?;
        for echo in self.checkpointer.release() {
            self.out
                .raw_line(&echo)
                .context("writing a STATE message to stdout")?;
        }
        self.last_commit = Instant::now();
        Ok(())
    }
}
