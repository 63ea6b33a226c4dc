//! The typed-row writer: typed rows of the streams written as records
//! arrive (see [`typed::Inline`]) are typed and appended on a thread of
//! their own, over a connection of their own, so that DuckDB compresses
//! them on the other core while the raw rows are appended here.
//!
//! The sink hands each record over ([`TypedWriter::add`], in chunks of
//! about [`CHUNK_BYTES`]). At each commit it commits the raw rows, then
//! waits for the typed rows to commit ([`TypedWriter::commit`]), in a
//! transaction that also counts the raw rows they cover, before any state
//! is echoed. So a typed table never holds a row its raw table does not; a
//! crash or a failure between the two commits leaves a count that does not
//! match the raw table, and the next sync rebuilds the typed table from the
//! raw rows (the source of truth). The raw side opens its next transaction
//! only after the typed commit, so DuckDB's automatic checkpoints still
//! happen, at the typed commit.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::Scope;

use anyhow::{anyhow, Context, Result};

use super::unflushed::{Flush, FlushLimits, Unflushed};
use crate::catalog::Catalog;
use crate::database::CATALOG;
use crate::duck::{Appender, Cell, Linked, Session, Transaction};
use crate::raw::MetaText;
use crate::typed::{self, Inline};

/// Record bytes handed to the writer at a time.
pub const CHUNK_BYTES: usize = 2 << 20;
/// When typed rows go from the appenders' buffers into the transaction, in
/// record bytes: a stream's at 2 MiB, smaller than the raw side's, as the
/// typed rows of a chunk are built while the next one waits; every
/// stream's at 16 MiB in all.
const FLUSH: FlushLimits = FlushLimits {
    table: 2 << 20,
    all: 16 << 20,
};
/// Chunks on their way to the writer. Three busy threads share two cores;
/// more, smaller chunks in the queue keep the appending thread from stalling
/// whenever the typed thread falls behind for a moment (`bench/README.md`,
/// "Measurements behind settings in the code", "Typed-row chunks").
const CHUNKS_IN_FLIGHT: usize = 8;
/// Record bytes queued for the writer at most (see [`Queued`]): a chunk
/// holds at least one record, so a count of chunks alone would let records
/// larger than [`CHUNK_BYTES`] pile up eight deep.
const QUEUED_BYTES: usize = CHUNK_BYTES * CHUNKS_IN_FLIGHT;

/// The record bytes of the chunks handed to the writer and not yet typed.
/// The sink waits before handing over a chunk that would take them past
/// [`QUEUED_BYTES`], unless nothing is queued (so one record larger than
/// that still goes through) or the writer has stopped (its send then fails).
#[derive(Default)]
struct Queued {
    /// (bytes queued, writer stopped)
    state: Mutex<(usize, bool)>,
    freed: Condvar,
}

impl Queued {
    fn lock(&self) -> std::sync::MutexGuard<'_, (usize, bool)> {
        // A panic while holding this lock leaves a plain pair of numbers.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn reserve(&self, bytes: usize) {
        let mut state = self.lock();
        while must_wait(state.0, state.1, bytes) {
            state = self.freed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        state.0 += bytes;
    }

    fn release(&self, bytes: usize) {
        let mut state = self.lock();
        state.0 = state.0.saturating_sub(bytes);
        self.freed.notify_all();
    }

    fn stop(&self) {
        self.lock().1 = true;
        self.freed.notify_all();
    }
}

/// Whether a chunk of `bytes` must wait, with `queued` bytes queued and the
/// writer `stopped` or not (see [`Queued`]).
fn must_wait(queued: usize, stopped: bool, bytes: usize) -> bool {
    !stopped && queued > 0 && queued + bytes > QUEUED_BYTES
}

/// Marks the writer stopped however its thread ends, panics included.
struct StopOnDrop(Arc<Queued>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop();
    }
}

struct Rec {
    stream: usize,
    id: [u8; 36],
    emitted_at_micros: i64,
    data: Range<usize>,
    changes: Option<Range<usize>>,
}

#[derive(Default)]
struct Chunk {
    bytes: String,
    records: Vec<Rec>,
}

enum Work {
    Records(Chunk),
    /// Commit, counting these raw rows per stream (catalog order).
    Commit(Vec<u64>),
    Rollback,
}

/// The sink's end of the typed-row writer.
pub struct TypedWriter {
    tx: SyncSender<Work>,
    done: Receiver<Result<()>>,
    chunk: Chunk,
    /// Which streams are written this way.
    inline: Vec<bool>,
    queued: Arc<Queued>,
}

impl TypedWriter {
    /// Starts the writer on `connection` for the streams with an `Inline`
    /// (one entry per catalog stream).
    pub fn spawn<'scope>(
        scope: &'scope Scope<'scope, '_>,
        connection: Linked<'scope>,
        specs: &[Option<Inline>],
        catalog: &Arc<Catalog>,
    ) -> Result<TypedWriter> {
        let (tx, rx) = mpsc::sync_channel(CHUNKS_IN_FLIGHT);
        let (done_tx, done) = mpsc::sync_channel(1);
        let inline = specs.iter().map(Option::is_some).collect();
        let specs = specs.to_vec();
        let catalog = Arc::clone(catalog);
        let queued = Arc::new(Queued::default());
        let worker_queued = Arc::clone(&queued);
        std::thread::Builder::new()
            .name("typed".into())
            .spawn_scoped(scope, move || {
                let _stop = StopOnDrop(Arc::clone(&worker_queued));
                // A panic here (a bug) must end the sync with an error, not
                // take the process down when the scope joins: the sink sees
                // the writer gone and fails the commit plainly.
                let run = std::panic::AssertUnwindSafe(|| {
                    let mut worker = Worker::new(&connection, specs, &catalog);
                    worker.run(&rx, &done_tx, &worker_queued);
                });
                if std::panic::catch_unwind(run).is_err() {
                    tracing::error!("the typed-row writer stopped on a bug (a panic)");
                }
            })
            .context("starting the typed-row writer")?;
        Ok(TypedWriter {
            tx,
            done,
            chunk: Chunk::default(),
            inline,
            queued,
        })
    }

    /// Hands over one record of `stream` (ignored unless the stream's typed
    /// rows are written here).
    pub fn add(
        &mut self,
        stream: usize,
        id: &str,
        emitted_at_micros: i64,
        data: &str,
        changes: Option<&str>,
    ) -> Result<()> {
        if !self.inline[stream] {
            return Ok(());
        }
        let mut push = |s: &str| {
            let start = self.chunk.bytes.len();
            self.chunk.bytes.push_str(s);
            start..self.chunk.bytes.len()
        };
        let data = push(data);
        let changes = changes.map(&mut push);
        let id: [u8; 36] = id
            .as_bytes()
            .try_into()
            .map_err(|_| anyhow!("a record id is not a hyphenated UUID"))?;
        self.chunk.records.push(Rec {
            stream,
            id,
            emitted_at_micros,
            data,
            changes,
        });
        if self.chunk.bytes.len() >= CHUNK_BYTES {
            self.send_chunk()?;
        }
        Ok(())
    }

    fn send_chunk(&mut self) -> Result<()> {
        if self.chunk.records.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::take(&mut self.chunk);
        self.queued.reserve(chunk.bytes.len());
        self.send(Work::Records(chunk))
    }

    fn send(&self, work: Work) -> Result<()> {
        self.tx
            .send(work)
            .map_err(|_| anyhow!("the typed-row writer stopped unexpectedly"))
    }

    fn wait(&self) -> Result<()> {
        self.done
            .recv()
            .map_err(|_| anyhow!("the typed-row writer stopped unexpectedly"))?
    }

    /// Commits the typed rows handed over, counting `raw_rows` per stream.
    pub fn commit(&mut self, raw_rows: Vec<u64>) -> Result<()> {
        self.send_chunk()?;
        self.send(Work::Commit(raw_rows))?;
        self.wait()
    }

    /// Abandons the typed rows handed over since the last commit.
    pub fn rollback(&mut self) {
        self.chunk = Chunk::default();
        if let Err(e) = self.send(Work::Rollback).and_then(|()| self.wait()) {
            tracing::warn!("rolling back the typed rows: {e:#}");
        }
    }
}

/// The writer thread's state.
struct Worker<'s> {
    session: &'s Session,
    targets: Vec<Option<TypedTarget<'s>>>,
    /// Per stream: its raw rows' `_airbyte_meta`.
    meta: Vec<MetaText>,
    generation: Vec<Option<i64>>,
    labels: Vec<String>,
    txn: Option<Transaction<'s>>,
    /// Record bytes appended and not yet flushed, per stream.
    unflushed: Unflushed,
    /// Per stream: the id of the last record since the last commit.
    last_id: Vec<Option<[u8; 36]>>,
}

impl<'s> Worker<'s> {
    fn new(session: &'s Session, specs: Vec<Option<Inline>>, catalog: &Catalog) -> Self {
        let targets = specs
            .into_iter()
            .map(|spec| {
                spec.map(|spec| TypedTarget {
                    spec,
                    appender: None,
                    pending: None,
                    pending_rows: 0,
                    seq: 0,
                })
            })
            .collect::<Vec<_>>();
        let unflushed = Unflushed::new(targets.len(), FLUSH);
        let meta = catalog.streams.iter().map(MetaText::of).collect();
        Worker {
            session,
            targets,
            meta,
            generation: catalog.streams.iter().map(|s| s.generation_id).collect(),
            labels: catalog.streams.iter().map(|s| s.label()).collect(),
            txn: None,
            unflushed,
            last_id: vec![None; catalog.streams.len()],
        }
    }

    fn run(&mut self, rx: &Receiver<Work>, done: &SyncSender<Result<()>>, queued: &Queued) {
        // The first failure since the last commit; reported at the next one.
        let mut failed: Option<anyhow::Error> = None;
        for work in rx {
            let reply = match work {
                Work::Records(chunk) => {
                    if failed.is_none() {
                        failed = self.records(&chunk).err();
                    }
                    queued.release(chunk.bytes.len());
                    continue;
                }
                Work::Commit(rows) => {
                    let result = match failed.take() {
                        Some(e) => Err(e),
                        None => self.commit(&rows),
                    };
                    if result.is_err() {
                        self.abandon();
                    }
                    result
                }
                Work::Rollback => {
                    failed = None;
                    self.abandon();
                    Ok(())
                }
            };
            if done.send(reply).is_err() {
                break;
            }
        }
        self.abandon();
    }

    fn records(&mut self, chunk: &Chunk) -> Result<()> {
        if self.txn.is_none() {
            self.txn = Some(self.session.begin().context("starting a transaction")?);
        }
        let mut meta_buf = String::new();
        for r in &chunk.records {
            let Some(target) = self.targets[r.stream].as_mut() else {
                continue;
            };
            self.last_id[r.stream] = Some(r.id);
            let changes = r.changes.clone().map(|c| &chunk.bytes[c]);
            let meta = &self.meta[r.stream];
            let input = TypedInput {
                id: std::str::from_utf8(&r.id).context("a record id")?,
                emitted_at_micros: r.emitted_at_micros,
                data: &chunk.bytes[r.data.clone()],
                meta: meta.text(changes, &mut meta_buf),
                meta_prefix: &meta.prefix,
                changes,
                generation_id: self.generation[r.stream],
            };
            target
                .append(self.session, &input)
                .with_context(|| format!("appending a typed row of {}", self.labels[r.stream]))?;
            match self.unflushed.appended(r.stream, input.data.len() as u64) {
                Flush::Nothing => {}
                Flush::Table => target.flush()?,
                Flush::All => self.flush_all()?,
            }
        }
        Ok(())
    }

    fn flush_all(&mut self) -> Result<()> {
        for (i, target) in self.targets.iter_mut().enumerate() {
            if let Some(target) = target.as_mut().filter(|_| self.unflushed.holds(i) > 0) {
                target.flush()?;
            }
        }
        self.unflushed.flushed_all();
        Ok(())
    }

    fn commit(&mut self, rows: &[u64]) -> Result<()> {
        let mut counts = Vec::new();
        for (((target, &n), label), last) in self
            .targets
            .iter_mut()
            .zip(rows)
            .zip(&self.labels)
            .zip(&mut self.last_id)
        {
            if let Some(target) = target.as_mut().filter(|_| n > 0) {
                target
                    .before_commit(self.session)
                    .with_context(|| format!("writing the typed rows of {label}"))?;
                // The raw rows of the commit are the records handed over
                // since the last one, in order: the last is the raw table's
                // last row.
                let last = last
                    .take()
                    .ok_or_else(|| anyhow!("{label}: raw rows to count but no typed row"))?;
                let last = std::str::from_utf8(&last).context("a record id")?;
                counts.push(target.spec.count_row(n, last));
            }
        }
        // One statement for every stream: with 200 streams, one each made
        // the commits take most of the sync.
        if !counts.is_empty() {
            self.session
                .execute(&typed::count_update(&counts))
                .context("counting the raw rows the typed tables cover")?;
        }
        self.unflushed.flushed_all();
        if let Some(txn) = self.txn.take() {
            txn.commit().context("committing the typed rows")?;
        }
        for target in self.targets.iter_mut().flatten() {
            target.appender = None;
            target.pending = None;
        }
        Ok(())
    }

    /// Drops every row since the last commit (the transaction rolls back).
    fn abandon(&mut self) {
        for target in self.targets.iter_mut().flatten() {
            target.discard();
        }
        self.last_id.iter_mut().for_each(|id| *id = None);
        self.unflushed.flushed_all();
        self.txn = None;
    }
}

/// Where a stream's typed rows go while its records arrive.
struct TypedTarget<'s> {
    spec: Inline,
    /// On the typed table (or staging table); created on first use.
    appender: Option<Appender<'s>>,
    /// On the pending table, for records the SQL types.
    pending: Option<Appender<'s>>,
    pending_rows: u64,
    /// The arrival number of the stream's next record.
    seq: i64,
}

/// The appender in `slot`, opened on `table` (schema, name) for `columns`
/// on first use.
fn opened<'a, 's>(
    slot: &'a mut Option<Appender<'s>>,
    session: &'s Session,
    (schema, table): &(String, String),
    columns: &[String],
) -> Result<&'a mut Appender<'s>> {
    Ok(match slot {
        Some(appender) => appender,
        empty => {
            let columns: Vec<&str> = columns.iter().map(String::as_str).collect();
            empty.insert(Appender::open(session, CATALOG, schema, table, &columns)?)
        }
    })
}

/// A record as the raw table got it, for its typed row.
struct TypedInput<'a> {
    id: &'a str,
    emitted_at_micros: i64,
    data: &'a str,
    /// The raw row's `_airbyte_meta`.
    meta: &'a str,
    /// `_airbyte_meta` up to its `changes` value.
    meta_prefix: &'a str,
    /// The record's `meta.changes`, if it had any.
    changes: Option<&'a str>,
    generation_id: Option<i64>,
}

impl<'s> TypedTarget<'s> {
    /// Appends the record's typed row, or its raw row to the pending table
    /// when the SQL must type it.
    fn append(&mut self, session: &'s Session, r: &TypedInput<'_>) -> Result<()> {
        let seq = self.seq;
        self.seq += 1;
        let generation = r.generation_id.map_or(Cell::Null, Cell::BigInt);
        let mut cells = Vec::with_capacity(self.spec.target_columns.len());
        let mut nulled = Vec::new();
        let mut typed_cells = Vec::new();
        let typed = typed::type_record(r.data, &self.spec.columns, &mut typed_cells, &mut nulled);
        let meta = match (&typed, nulled.is_empty()) {
            (Some(_), true) => Some(Cow::Borrowed(r.meta)),
            (Some(_), false) => nulled_meta(r, &self.spec, &nulled).map(Cow::Owned),
            (None, _) => None,
        };
        match (typed, meta) {
            (Some(t), Some(meta)) => {
                cells.extend([
                    Cell::Text(r.id.into()),
                    Cell::Micros(r.emitted_at_micros),
                    Cell::Text(meta),
                    generation,
                ]);
                cells.append(&mut typed_cells);
                if self.spec.dedup {
                    cells.extend([Cell::Bool(t.deleted), Cell::BigInt(seq)]);
                }
                opened(
                    &mut self.appender,
                    session,
                    &self.spec.target,
                    &self.spec.target_columns,
                )?
                .append_cells(&cells)?;
            }
            _ => {
                let appender = opened(
                    &mut self.pending,
                    session,
                    &self.spec.pending,
                    &self.spec.pending_columns,
                )?;
                appender.append_cells(&[
                    Cell::Text(r.id.into()),
                    Cell::Micros(r.emitted_at_micros),
                    Cell::Text(r.data.into()),
                    Cell::Text(r.meta.into()),
                    generation,
                    Cell::BigInt(seq),
                ])?;
                self.pending_rows += 1;
            }
        }
        Ok(())
    }

    /// Hands the appended rows to the transaction.
    fn flush(&mut self) -> Result<()> {
        for appender in [&mut self.appender, &mut self.pending]
            .into_iter()
            .flatten()
        {
            appender.flush()?;
        }
        Ok(())
    }

    /// Flushes the typed rows and types the pending ones, and counts the
    /// `raw_rows` the typed table now covers, in the open transaction.
    fn before_commit(&mut self, session: &Session) -> Result<()> {
        self.flush()?;
        if self.pending_rows > 0 {
            session.execute(self.spec.convert_pending())?;
        }
        self.pending_rows = 0;
        Ok(())
    }

    fn discard(&mut self) {
        for appender in [&mut self.appender, &mut self.pending]
            .into_iter()
            .flatten()
        {
            appender.discard();
        }
        self.pending_rows = 0;
    }
}

/// `_airbyte_meta` of a typed row whose values in `nulled` (column indexes)
/// did not fit: the record's changes, then a `NULLED` change per value, as
/// the SQL writes them. None when the record's `changes` are no JSON array
/// (the SQL then decides).
fn nulled_meta(r: &TypedInput<'_>, spec: &Inline, nulled: &[usize]) -> Option<String> {
    let mut members: Vec<String> = Vec::new();
    if let Some(changes) = r.changes {
        let inner = changes.trim().strip_prefix('[')?.strip_suffix(']')?.trim();
        if !inner.is_empty() {
            members.push(inner.to_string());
        }
    }
    for &i in nulled {
        members.push(format!(
            r#"{{"field":{},"change":"NULLED","reason":"DESTINATION_TYPECAST_ERROR"}}"#,
            serde_json::Value::from(spec.columns[i].property.as_str())
        ));
    }
    Some(format!("{}[{}]}}", r.meta_prefix, members.join(",")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A bound on waits that should end at once: a hang fails the test, a
    /// slow machine does not.
    const HANG_GUARD: Duration = Duration::from_secs(60);

    /// Reserves `bytes` on another thread; the receiver hears when it got
    /// through.
    fn reserve_on_a_thread(q: &Arc<Queued>, bytes: usize) -> mpsc::Receiver<()> {
        let (tx, rx) = mpsc::channel();
        let q = Arc::clone(q);
        std::thread::spawn(move || {
            q.reserve(bytes);
            let _ = tx.send(());
        });
        rx
    }

    /// The rule itself: nothing queued or a stopped writer lets anything
    /// through; otherwise a chunk waits when it would pass the bound.
    #[test]
    fn a_chunk_waits_only_when_it_would_pass_the_bound() {
        assert!(
            !must_wait(0, false, 10 * QUEUED_BYTES),
            "one large record passes"
        );
        assert!(must_wait(10 * QUEUED_BYTES, false, 1));
        assert!(must_wait(1, false, QUEUED_BYTES));
        assert!(!must_wait(1, false, QUEUED_BYTES - 1));
        assert!(!must_wait(10 * QUEUED_BYTES, true, 10 * QUEUED_BYTES));
        // Every chunk of CHUNK_BYTES fits while fewer than
        // CHUNKS_IN_FLIGHT are queued.
        for queued in 0..CHUNKS_IN_FLIGHT {
            assert!(!must_wait(queued * CHUNK_BYTES, false, CHUNK_BYTES));
        }
    }

    /// A waiting sender gets through once bytes are released, or the
    /// writer stops.
    #[test]
    fn waiting_senders_get_through_on_release_or_stop() {
        let q = Arc::new(Queued::default());
        q.reserve(10 * QUEUED_BYTES);
        let waiting = reserve_on_a_thread(&q, 1);
        q.release(10 * QUEUED_BYTES);
        waiting
            .recv_timeout(HANG_GUARD)
            .expect("through after the release");
        assert_eq!(q.lock().0, 1);
        q.reserve(QUEUED_BYTES - 1);
        let waiting = reserve_on_a_thread(&q, QUEUED_BYTES);
        q.stop();
        waiting
            .recv_timeout(HANG_GUARD)
            .expect("through once the writer stopped");
    }
}
