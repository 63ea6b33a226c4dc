//! `write`: the sync loop.
//!
//! The reader thread turns stdin into batches of events. This thread appends
//! records to DuckDB inside one open transaction, queues state echoes, and
//! commits when the batch grows past its byte limit, when states have waited
//! [`COMMIT_INTERVAL`] under load, or when the input has been quiet for
//! [`IDLE_FLUSH`]. After each commit the queued states are echoed, in order.
//! A truncating stream is swapped in when it reports COMPLETE, or at clean
//! EOF if it never reported a status.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};

use crate::catalog::{Catalog, WriteMode};
use crate::config::Config;
use crate::database;
use crate::emit::Emitter;
use crate::error::Failure;
use crate::pipeline::checkpoint::Checkpointer;
use crate::pipeline::reader::{self, Event, ReaderMsg};
use crate::pipeline::sink::Sink;

/// When the input has been quiet this long, pending work is committed and
/// pending states echoed.
pub const IDLE_FLUSH: Duration = Duration::from_millis(200);
/// Under sustained input, states wait at most about this long for a commit.
pub const COMMIT_INTERVAL: Duration = Duration::from_secs(1);
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
    let mut sink = Sink::prepare(&db.session, &catalog)?;
    let started = Instant::now();

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
    let reader_catalog = Arc::clone(&catalog);
    std::thread::Builder::new()
        .name("reader".into())
        .spawn(move || reader::run(input, reader_catalog, tx))
        .context("starting the reader thread")?;

    let mut sync = SyncLoop {
        sink: &mut sink,
        checkpointer: Checkpointer::new(catalog.streams.len()),
        out,
        status_seen: vec![false; catalog.streams.len()],
        records: vec![0; catalog.streams.len()],
        last_commit: Instant::now(),
        batch_bytes: config.batch_bytes,
        cancelled,
    };
    let outcome = sync.run(&rx, &catalog);
    if let Err(e) = outcome {
        sync.sink.rollback();
        let dropped = sync.checkpointer.discard();
        if dropped > 0 {
            tracing::warn!("{dropped} state(s) not echoed: their records were rolled back");
        }
        return Err(e);
    }
    let elapsed = started.elapsed().as_secs_f64();
    for (stream, n) in sync.sink.streams().iter().zip(&sync.records) {
        tracing::info!(stream = %stream.label(), records = n, table = %format!("{}.{}", stream.schema, stream.table), "stream written");
    }
    let total: u64 = sync.records.iter().sum();
    tracing::info!(
        records = total,
        states = sync.checkpointer.released(),
        seconds = format!("{elapsed:.2}"),
        records_per_second = format!("{:.0}", total as f64 / elapsed.max(1e-9)),
        "sync finished"
    );
    drop(sink);
    db.close()
}

struct SyncLoop<'a, 's, W: Write> {
    sink: &'a mut Sink<'s>,
    checkpointer: Checkpointer,
    out: &'a mut Emitter<W>,
    /// Whether a stream has sent any STREAM_STATUS (then only COMPLETE
    /// finishes it; otherwise clean EOF does).
    status_seen: Vec<bool>,
    records: Vec<u64>,
    last_commit: Instant,
    batch_bytes: u64,
    /// Set by SIGTERM/SIGINT: stop, roll back what is not committed, close.
    cancelled: Arc<AtomicBool>,
}

impl<W: Write> SyncLoop<'_, '_, W> {
    fn run(&mut self, rx: &mpsc::Receiver<ReaderMsg>, catalog: &Catalog) -> Result<()> {
        loop {
            if self.cancelled.load(Ordering::Relaxed) {
                return Err(Failure::transient(
                    "the sync was cancelled (SIGTERM/SIGINT); records after the last echoed state were rolled back",
                )
                .into());
            }
            let msg = match rx.recv_timeout(IDLE_FLUSH) {
                Ok(msg) => msg,
                Err(RecvTimeoutError::Timeout) => {
                    self.commit()?;
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(anyhow!("the reader thread stopped unexpectedly"))
                }
            };
            match msg {
                ReaderMsg::Batch(batch) => {
                    for event in batch.events {
                        self.event(event, &batch.bytes, catalog)?;
                    }
                    let states_waited = self.checkpointer.has_pending()
                        && self.last_commit.elapsed() >= COMMIT_INTERVAL;
                    if self.sink.pending_bytes() >= self.batch_bytes || states_waited {
                        self.commit()?;
                    }
                }
                ReaderMsg::Failed(failure) => return Err(failure.into()),
                ReaderMsg::Eof => break,
            }
        }
        self.commit()?;
        for (i, stream) in catalog.streams.iter().enumerate() {
            if stream.mode == WriteMode::Truncate && !self.status_seen[i] {
                self.sink.finish_truncate(i)?;
            }
        }
        Ok(())
    }

    fn event(&mut self, event: Event, bytes: &[u8], catalog: &Catalog) -> Result<()> {
        match event {
            Event::Record {
                stream,
                emitted_at_ms,
                line,
                data,
                changes,
            } => {
                self.sink
                    .append(
                        stream,
                        emitted_at_ms,
                        &bytes[data],
                        changes.map(|c| &bytes[c]),
                    )
                    .with_context(|| format!("line {line}"))?;
                self.checkpointer.on_record(stream);
                self.records[stream] += 1;
            }
            Event::State {
                line_text,
                state,
                scope,
            } => self.checkpointer.on_state(&line_text, state, scope),
            Event::StreamStatus { stream, complete } => {
                self.status_seen[stream] = true;
                if complete && catalog.streams[stream].mode == WriteMode::Truncate {
                    self.commit()?;
                    self.sink.finish_truncate(stream)?;
                }
            }
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
