//! The sync loop: from the reader's batches to commits and echoed states.
//!
//! The reader thread turns stdin into batches of events. This loop holds
//! records back until a state covers them (or they pass the held limit),
//! appends them to the [`Store`] inside one open transaction, queues state
//! echoes in the [`Checkpointer`], and commits when the [`policy`] says so,
//! when a truncating stream completes, and at the end of the input. After
//! each commit the queued states are echoed, in order.
//!
//! A truncating stream is swapped in when it reports COMPLETE, or at clean
//! EOF if it never reported a status and the source reported no error.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};

use crate::catalog::{Catalog, WriteMode};
use crate::emit::Emitter;
use crate::error::Failure;
use crate::pipeline::checkpoint::Checkpointer;
use crate::pipeline::policy::{self, Clock, Decision, PolicyInputs, IDLE_FLUSH};
use crate::pipeline::progress::Progress;
use crate::pipeline::reader::{Batch, Event, ReaderMsg};
use crate::pipeline::sink::Sink;

#[cfg(test)]
mod tests;

/// Records held back without a state (outside DuckDB's buffer pool) are
/// appended anyway past this many bytes, or `batch_size_mb` if smaller.
const HELD_LIMIT: u64 = 64 << 20;

/// Where the loop writes records: the DuckDB [`Sink`], or a recording fake
/// in tests. See [`Sink`] for what each operation means.
pub trait Store {
    /// Adds one record to the open transaction (opening one if needed).
    fn append(
        &mut self,
        stream: usize,
        emitted_at_micros: i64,
        data: &str,
        changes: Option<&str>,
    ) -> Result<()>;
    /// A transaction is open.
    fn has_pending(&self) -> bool;
    /// Record bytes the open transaction holds in memory, uncompressed.
    fn buffered_bytes(&self) -> u64;
    /// Putting the commit off (within `budget` bytes) makes it cheaper.
    fn worth_waiting(&self, budget: u64) -> bool;
    fn commit(&mut self) -> Result<()>;
    fn rollback(&mut self);
    /// Swaps a truncating stream's staged rows in; call with no open
    /// transaction.
    fn finish_truncate(&mut self, stream: usize) -> Result<()>;
    /// Lets go of the database between commits, so that other processes
    /// can open it; the store takes it back before it next writes.
    fn release(&mut self) -> Result<()> {
        Ok(())
    }
}

impl Store for Sink<'_, '_> {
    fn append(
        &mut self,
        stream: usize,
        emitted_at_micros: i64,
        data: &str,
        changes: Option<&str>,
    ) -> Result<()> {
        Sink::append(self, stream, emitted_at_micros, data, changes)
    }
    fn has_pending(&self) -> bool {
        Sink::has_pending(self)
    }
    fn buffered_bytes(&self) -> u64 {
        Sink::buffered_bytes(self)
    }
    fn worth_waiting(&self, budget: u64) -> bool {
        Sink::worth_waiting(self, budget)
    }
    fn commit(&mut self) -> Result<()> {
        Sink::commit(self)
    }
    fn rollback(&mut self) {
        Sink::rollback(self)
    }
    fn finish_truncate(&mut self, stream: usize) -> Result<()> {
        Sink::finish_truncate(self, stream)
    }
    fn release(&mut self) -> Result<()> {
        Sink::release(self)
    }
}

/// How the loop is set up.
pub struct Settings {
    /// The batch limit (`batch_size_mb`) in bytes.
    pub batch_bytes: u64,
    pub progress_interval: Duration,
    /// Progress also goes out as LOG messages on stdout (for the Airbyte
    /// UI), unless stdout is a terminal, where stderr already shows it.
    pub progress_on_stdout: bool,
    /// Set by SIGTERM/SIGINT: stop, roll back what is not committed, close.
    pub cancelled: Arc<AtomicBool>,
    /// The quoted raw table of each stream, for the closing summary.
    pub tables: Vec<String>,
    /// Quiet input after which the database is let go of (between
    /// commits, when every row written is covered by an echoed state);
    /// None: never.
    pub release_idle: Option<Duration>,
}

pub struct SyncLoop<'a, S: Store, W: Write, C: Clock> {
    store: &'a mut S,
    catalog: &'a Catalog,
    out: &'a mut Emitter<W>,
    clock: C,
    settings: Settings,
    checkpointer: Checkpointer,
    /// Whether a stream has sent any STREAM_STATUS (then only COMPLETE
    /// finishes it; otherwise clean EOF does).
    status_seen: Vec<bool>,
    progress: Progress,
    last_commit: Instant,
    /// When the last batch of input arrived.
    last_input: Instant,
    /// The store was let go of in this quiet spell.
    released: bool,
    /// Records were appended that no received state covers (written ahead
    /// past the held limit, or before a truncate's COMPLETE): until a state
    /// comes, the database holds rows no echoed state covers, and is not
    /// let go of, so that readers never see them.
    ahead_of_states: bool,
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

impl<'a, S: Store, W: Write, C: Clock> SyncLoop<'a, S, W, C> {
    pub fn new(
        store: &'a mut S,
        catalog: &'a Catalog,
        out: &'a mut Emitter<W>,
        clock: C,
        settings: Settings,
    ) -> Self {
        let streams = catalog.streams.len();
        let progress = Progress::new(
            catalog.streams.iter().map(|s| s.label()).collect(),
            settings.progress_interval,
        );
        let last_commit = clock.now();
        SyncLoop {
            store,
            catalog,
            out,
            clock,
            settings,
            checkpointer: Checkpointer::new(streams),
            status_seen: vec![false; streams],
            progress,
            last_commit,
            last_input: last_commit,
            released: false,
            ahead_of_states: false,
            held: Held::default(),
        }
    }

    /// Runs to the end of the input and reports the summary. On failure the
    /// open transaction is rolled back and its states are not echoed.
    pub fn run(mut self, rx: &Receiver<ReaderMsg>) -> Result<()> {
        let outcome = self
            .receive(rx)
            .and_then(|source_failed| self.on_eof(source_failed));
        if let Err(e) = outcome {
            self.store.rollback();
            let dropped = self.checkpointer.discard();
            if dropped > 0 {
                tracing::warn!("{dropped} state(s) not echoed: their records were rolled back");
            }
            return Err(e);
        }
        let states = self.checkpointer.released();
        for line in self.progress.summary(&self.settings.tables, states) {
            self.report(&line)?;
        }
        Ok(())
    }

    /// Takes in messages until EOF; returns whether the source failed.
    fn receive(&mut self, rx: &Receiver<ReaderMsg>) -> Result<bool> {
        loop {
            if self.cancelled() {
                return Err(Failure::transient(
                    "the sync was cancelled (SIGTERM/SIGINT); records after the last echoed state were rolled back",
                )
                .into());
            }
            match rx.recv_timeout(IDLE_FLUSH) {
                Ok(ReaderMsg::Batch(batch)) => self.on_batch(batch)?,
                Ok(ReaderMsg::Failed(failure)) => return Err(failure.into()),
                Ok(ReaderMsg::Eof { source_failed }) => return Ok(source_failed),
                // A cancel that arrived during the wait wins over the idle
                // commit.
                Err(RecvTimeoutError::Timeout) if self.cancelled() => {}
                Err(RecvTimeoutError::Timeout) => self.on_idle()?,
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(anyhow!("the reader thread stopped unexpectedly"))
                }
            }
        }
    }

    fn cancelled(&self) -> bool {
        self.settings.cancelled.load(Ordering::Relaxed)
    }

    fn on_batch(&mut self, batch: Batch) -> Result<()> {
        self.last_input = self.clock.now();
        self.released = false;
        self.take(batch)?;
        self.commit_if_due(false)?;
        self.maybe_report()
    }

    /// The input has been quiet for [`IDLE_FLUSH`].
    fn on_idle(&mut self) -> Result<()> {
        self.commit_if_due(true)?;
        self.release_if_idle()?;
        self.maybe_report()
    }

    /// Lets go of the database once the input has been quiet for
    /// `release_idle`, if everything written is committed and covered by
    /// echoed states: a reader that opens the file then sees exactly what
    /// the echoed states cover.
    fn release_if_idle(&mut self) -> Result<()> {
        let Some(after) = self.settings.release_idle else {
            return Ok(());
        };
        if self.released
            || self.ahead_of_states
            || self.store.has_pending()
            || self.checkpointer.has_pending()
            || self.clock.now().saturating_duration_since(self.last_input) < after
        {
            return Ok(());
        }
        self.store.release()?;
        self.released = true;
        Ok(())
    }

    /// Asks the policy, and commits if it says so.
    fn commit_if_due(&mut self, idle: bool) -> Result<()> {
        let inputs = PolicyInputs {
            last_commit: self.last_commit,
            states_pending: self.checkpointer.has_pending(),
            buffered_bytes: self.store.buffered_bytes(),
            batch_bytes: self.settings.batch_bytes,
            waiting_pays: self.store.worth_waiting(self.settings.batch_bytes),
            idle,
        };
        match policy::decide(inputs, self.clock.now()) {
            Decision::Commit(_) => self.commit(),
            Decision::Wait => Ok(()),
        }
    }

    /// The input ended: what is complete is committed, truncates finish.
    fn on_eof(&mut self, source_failed: bool) -> Result<()> {
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
            self.store.rollback();
            self.checkpointer.discard();
        } else {
            self.commit()?;
        }
        for (i, stream) in self.catalog.streams.iter().enumerate() {
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
                self.store.finish_truncate(i)?;
            }
        }
        Ok(())
    }

    /// Takes in one batch. Records are held back until a state covers them
    /// (or they pass the held limit), so that a commit normally ends at a
    /// state: records after the last state are not written before their
    /// state arrives, and a failure or cancel leaves none of them behind to
    /// be duplicated when the platform re-sends them.
    fn take(&mut self, batch: Batch) -> Result<()> {
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
                    self.ahead_of_states = false;
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
                    if complete && self.catalog.streams[stream].mode == WriteMode::Truncate {
                        self.ahead_of_states |= self.append_held_upto(k)? > 0;
                        self.commit()?;
                        self.store.finish_truncate(stream)?;
                    }
                }
            }
        }
        if self.held.bytes >= self.settings.batch_bytes.min(HELD_LIMIT) {
            // No state in sight: write them anyway, memory stays bounded.
            self.append_held()?;
            self.held.uncovered = true;
            self.ahead_of_states = true;
        }
        Ok(())
    }

    /// Appends every held record.
    fn append_held(&mut self) -> Result<()> {
        let n = self.held.batches.back().map_or(0, |b| b.events.len());
        self.append_held_upto(n).map(drop)
    }

    /// Appends the held records before event `upto` of the newest batch;
    /// what remains held starts there. Returns how many it appended.
    fn append_held_upto(&mut self, upto: usize) -> Result<usize> {
        let mut appended = 0;
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
                    self.store
                        .append(
                            *stream,
                            *emitted_at_micros,
                            &batch.bytes[data.clone()],
                            changes.clone().map(|c| &batch.bytes[c]),
                        )
                        .with_context(|| format!("line {line}"))?;
                    appended += 1;
                }
            }
        }
        while self.held.batches.len() > 1 {
            self.held.batches.pop_front();
        }
        self.held.start = upto;
        self.held.bytes = 0;
        Ok(appended)
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
        if self.settings.progress_on_stdout {
            self.out
                .log("INFO", line)
                .context("writing a LOG message to stdout")?;
        }
        Ok(())
    }

    /// Commits everything appended so far, then echoes the queued states.
    fn commit(&mut self) -> Result<()> {
        if !self.store.has_pending() && !self.checkpointer.has_pending() {
            return Ok(());
        }
        self.store.commit()?;
        for echo in self.checkpointer.release() {
            self.out
                .raw_line(&echo)
                .context("writing a STATE message to stdout")?;
        }
        self.last_commit = self.clock.now();
        Ok(())
    }
}
