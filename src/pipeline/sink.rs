//! DuckDB tables, transactions and the appenders that fill them.
//!
//! Per stream there is one raw table, `"<schema>"."_airbyte_raw_<name>"`,
//! and, while a truncating stream is in flight, a staging table
//! `"<schema>"."_airbyte_tmp_raw_<name>"` that receives its rows. Rows go in
//! through data-chunk appenders inside one explicit transaction that
//! [`Sink::commit`] ends; a truncating stream's staged rows replace the live
//! table's contents in a transaction of their own when it completes
//! ([`Sink::finish_truncate`]).

use std::sync::Arc;

use anyhow::{bail, Context, Result};

use super::typed_output::TypedOutput;
use super::unflushed::{Flush, FlushLimits, Unflushed};
use crate::catalog::{Catalog, Stream, WriteMode};
use crate::database::{Attachment, Released, Tables, CATALOG};
use crate::duck::{Appender, Row, Session, Transaction};
use crate::error::Failure;
use crate::internal::{self, RawOf};
use crate::names::{qualified, qualified_schema};
use crate::raw::{self, MetaText, COLUMNS};

/// When appenders hand their rows to the transaction: a table's at 4 MiB, so
/// that DuckDB's appender buffers stay small, and every table's at 16 MiB in
/// all, as a smaller total slowed syncs of many streams (`bench/README.md`,
/// "Measurements behind settings in the code", "Appender flush limits").
const FLUSH: FlushLimits = FlushLimits {
    table: 4 << 20,
    all: 16 << 20,
};

struct Target<'s> {
    /// Appends to the staging table while a truncate is in flight, to the
    /// live table otherwise. Created on first use.
    appender: Option<Appender<'s>>,
    table: String,
    /// Rows appended in the open transaction (0: nothing to flush).
    txn_rows: u64,
    /// Record bytes of the table's open row group in the transaction.
    open_group_bytes: u64,
    meta: MetaText,
}

impl Target<'_> {
    /// Hands the appender's buffered rows to the transaction.
    fn flush(&mut self, s: &Stream) -> Result<()> {
        if let Some(appender) = self.appender.as_mut() {
            appender
                .flush()
                .with_context(|| format!("writing rows to \"{}\".\"{}\"", s.schema, self.table))?;
        }
        Ok(())
    }

    /// Forgets the counts of a transaction that ended (committed or rolled
    /// back).
    fn end_transaction(&mut self) {
        self.txn_rows = 0;
        self.open_group_bytes = 0;
    }
}

pub struct Sink<'scope, 's> {
    session: &'s Session,
    /// The streams, with their resolved tables (shared, not copied).
    catalog: Arc<Catalog>,
    targets: Vec<Target<'s>>,
    /// The open transaction. Declared after `targets`: dropped without a
    /// commit, the appenders go first (discarding their rows), then the
    /// transaction rolls back.
    txn: Option<Transaction<'s>>,
    meta_buf: String,
    /// DuckDB's `memory_limit` now, in bytes.
    pool_bytes: u64,
    /// The sync's typed output: each record goes there too, and each
    /// commit of raw rows is followed by its typed rows.
    typed: TypedOutput<'scope, 's>,
    /// How to let go of the database file while the input is idle, and
    /// attach it again (None: never let go, as for MotherDuck).
    attachment: Option<Attachment>,
    /// The file is let go of (and what the sync left in it): it is
    /// attached again before the next write.
    released: Option<Released>,
    /// Appended bytes not yet handed to the transaction, per table.
    unflushed: Unflushed,
    /// Rows per row group of the database's tables
    /// (`Database::row_group_rows`). Inside one transaction DuckDB
    /// compresses and writes each table's group to the file as soon as it is
    /// full; only the open (partial) group is held in memory, uncompressed. A
    /// table that receives at least one full group in a transaction is
    /// committed by linking those groups in ("bulk append"); a smaller one is
    /// copied row by row into the WAL and rewritten again by the next
    /// checkpoint.
    group_rows: u64,
}

/// Creates the schemas and raw tables of every catalog stream (streams
/// without records still get their empty table) and prepares staging
/// tables, in one transaction. The catalog's tables must be resolved
/// (`tables::assign`).
pub fn prepare_tables(session: &Session, catalog: &Catalog) -> Result<()> {
    let existing = crate::database::existing_tables(session)?;
    // One transaction for every stream's schema and tables: one commit
    // (one fsync) rather than two or more per stream.
    let txn = session.begin().context("starting a transaction")?;
    let mut rewritten = Vec::new();
    for stream in &catalog.streams {
        if prepare_stream(session, stream, &existing)
            .with_context(|| format!("preparing the table of stream {}", stream.label()))?
        {
            rewritten.push(stream);
        }
    }
    // A raw table made (again) or adopted holds other rows than any typed
    // table's coverage recorded before says.
    let rewritten: Vec<RawOf<'_>> = rewritten
        .into_iter()
        .map(|s| RawOf::new(&s.namespace, &s.name, &s.schema))
        .collect();
    if let Some(sql) = internal::count_rewrites(&rewritten) {
        session
            .execute(&sql)
            .context("recording the raw tables made or adopted")?;
    }
    txn.commit().context("committing the streams' tables")
}

impl<'scope, 's> Sink<'scope, 's> {
    /// A sink for the catalog's streams, whose tables [`prepare_tables`]
    /// made, writing their typed rows to `typed`.
    pub fn new(
        session: &'s Session,
        catalog: Arc<Catalog>,
        pool_bytes: u64,
        group_rows: u64,
        typed: TypedOutput<'scope, 's>,
        attachment: Option<Attachment>,
    ) -> Sink<'scope, 's> {
        let targets: Vec<Target<'s>> = catalog
            .streams
            .iter()
            .map(|stream| Target {
                appender: None,
                table: match stream.mode {
                    WriteMode::Append => stream.table.clone(),
                    WriteMode::Truncate => stream.staging_table.clone(),
                },
                txn_rows: 0,
                open_group_bytes: 0,
                meta: MetaText::of(stream),
            })
            .collect();
        let unflushed = Unflushed::new(targets.len(), FLUSH);
        Sink {
            session,
            catalog,
            targets,
            txn: None,
            meta_buf: String::new(),
            pool_bytes,
            group_rows,
            typed,
            unflushed,
            attachment,
            released: None,
        }
    }

    /// Ends the appending: the typed-row writer stops (every commit already
    /// took its rows), and the typed output is handed back for its last
    /// step, with the database attached.
    pub fn finish(mut self) -> Result<TypedOutput<'scope, 's>> {
        self.attached()?;
        self.typed.end_appending();
        Ok(self.typed)
    }

    /// Lets go of the database file, so that other processes can open it,
    /// until the next write: a checkpoint, then the file is closed. Only
    /// between commits (with a transaction open it does nothing), after the
    /// typed views are made and every typed table is caught up to the
    /// committed rows (if one cannot be, the file is kept). Does nothing if
    /// the file cannot be let go of (MotherDuck) or already is.
    pub fn release(&mut self) -> Result<()> {
        if self.txn.is_some() || self.released.is_some() || self.attachment.is_none() {
            return Ok(());
        }
        // Nothing else may use the database while it is let go of: the
        // typed views are made first, and every typed table caught up to
        // the committed rows (else the file is kept, and readers wait).
        self.typed.settle()?;
        if !self.typed.bring_current() {
            return Ok(());
        }
        let attachment = self.attachment.as_ref().expect("checked above");
        let started = std::time::Instant::now();
        // Letting go is a courtesy to readers: if it fails, the sync keeps
        // the file (still attached: the checkpoint or the detach did not
        // happen) and goes on; a storage that truly failed fails the next
        // write, as it would have anyway.
        match attachment.release(self.session) {
            Ok(left) => self.released = Some(left),
            Err(e) => {
                tracing::warn!("keeping the database file open: {e:#}");
                return Ok(());
            }
        }
        tracing::info!(
            seconds = started.elapsed().as_secs_f64(),
            "the input is idle: the database file is let go of until records come"
        );
        Ok(())
    }

    /// Attaches the database file again if it was let go of.
    fn attached(&mut self) -> Result<()> {
        if let (Some(attachment), Some(left)) = (self.attachment.as_ref(), self.released.as_ref()) {
            let started = std::time::Instant::now();
            attachment.reacquire(self.session, left)?;
            self.released = None;
            tracing::info!(
                seconds = started.elapsed().as_secs_f64(),
                "records came: the database file is open again"
            );
        }
        Ok(())
    }

    /// Adds one record to the open transaction (opening one if needed).
    pub fn append(
        &mut self,
        stream: usize,
        emitted_at_micros: i64,
        data: &str,
        changes: Option<&str>,
    ) -> Result<()> {
        if self.txn.is_none() {
            self.attached()?;
            self.txn = Some(self.session.begin().context("starting a transaction")?);
        }
        self.make_room(data.len() as u64)?;
        let session = self.session;
        let target = &mut self.targets[stream];
        let s = &self.catalog.streams[stream];
        if target.appender.is_none() {
            target.appender = Some(
                Appender::new(session, CATALOG, &s.schema, &target.table, &COLUMNS).with_context(
                    || {
                        format!(
                            "opening an appender on \"{}\".\"{}\"",
                            s.schema, target.table
                        )
                    },
                )?,
            );
        }
        let meta = target.meta.text(changes, &mut self.meta_buf);
        let mut id_buf = [0u8; 36];
        let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut id_buf);
        let appender = target.appender.as_mut().expect("created above");
        appender
            .append(&Row {
                ab_id: id,
                emitted_at_micros,
                data,
                meta,
                generation_id: s.generation_id,
            })
            .with_context(|| format!("appending to \"{}\".\"{}\"", s.schema, target.table))?;
        self.typed
            .add(stream, id, emitted_at_micros, data, changes)?;
        target.txn_rows += 1;
        target.open_group_bytes += data.len() as u64;
        if target.txn_rows.is_multiple_of(self.group_rows) {
            target.open_group_bytes = 0;
        }
        match self.unflushed.appended(stream, data.len() as u64) {
            Flush::Nothing => {}
            Flush::Table => target.flush(s)?,
            Flush::All => self.flush_appenders()?,
        }
        Ok(())
    }

    /// Hands every appender's buffered rows to the transaction.
    fn flush_appenders(&mut self) -> Result<()> {
        for (i, (target, s)) in self
            .targets
            .iter_mut()
            .zip(&self.catalog.streams)
            .enumerate()
        {
            if self.unflushed.holds(i) > 0 {
                target.flush(s)?;
            }
        }
        self.unflushed.flushed_all();
        Ok(())
    }

    /// DuckDB holds a record about three times over while appending it (the
    /// appender's buffer, the transaction's row group, the compressed copy),
    /// each in one piece: a record that a small buffer pool cannot hold
    /// three times raises the pool for the rest of the sync rather than fail
    /// it. Memory then follows the largest record, as it must.
    fn make_room(&mut self, record_bytes: u64) -> Result<()> {
        let need = record_bytes.saturating_mul(3).saturating_add(32 << 20);
        if need <= self.pool_bytes {
            return Ok(());
        }
        let mib = need.div_ceil(1 << 20);
        self.session
            .execute(&format!("SET memory_limit = '{mib}MiB'"))
            .context("raising DuckDB's memory_limit for a large record")?;
        tracing::info!(
            record_mib = record_bytes >> 20,
            memory_limit_mib = mib,
            "memory_limit raised for a large record"
        );
        self.pool_bytes = mib << 20;
        Ok(())
    }

    /// Record bytes the open transaction holds in memory, uncompressed: each
    /// table's open row group (full groups are already compressed on disk)
    /// or its appender buffer, whichever is larger.
    pub fn buffered_bytes(&self) -> u64 {
        self.targets
            .iter()
            .enumerate()
            .map(|(i, t)| t.open_group_bytes.max(self.unflushed.holds(i)))
            .sum()
    }

    /// Whether a commit that states are waiting for should be put off (up
    /// to the caller's limit) to make it cheaper.
    ///
    /// A table with at least one full row group in the transaction is
    /// committed by linking its groups in; the partial group each commit
    /// leaves behind is merged and rewritten by a later checkpoint, so for
    /// fast streams fewer commits are cheaper. A table with a part of its
    /// first group is copied through the WAL instead. Either way, waiting
    /// pays once some table has more than a quarter of a group, and only
    /// while the uncompressed data needed to fill every table's open group is
    /// projected to stay within `budget` bytes (otherwise the byte limit
    /// would force the commit before the groups fill anyway).
    pub fn worth_waiting(&self, budget: u64) -> bool {
        waiting_pays(
            self.targets
                .iter()
                .map(|t| (t.txn_rows, t.open_group_bytes)),
            budget,
            self.group_rows,
        )
    }

    pub fn has_pending(&self) -> bool {
        self.txn.is_some()
    }

    /// The catalog's streams with their assigned tables.
    pub fn streams(&self) -> &[Stream] {
        &self.catalog.streams
    }

    /// Flushes every appender and commits. On error the transaction is
    /// rolled back and the error returned.
    pub fn commit(&mut self) -> Result<()> {
        if self.txn.is_none() {
            return Ok(());
        }
        if let Err(e) = self.flush_and_commit() {
            self.rollback();
            return Err(e);
        }
        Ok(())
    }

    fn flush_and_commit(&mut self) -> Result<()> {
        for (target, s) in self.targets.iter_mut().zip(&self.catalog.streams) {
            if target.txn_rows > 0 {
                target.flush(s)?;
            }
        }
        let rows: Vec<u64> = self.targets.iter().map(|t| t.txn_rows).collect();
        for target in &mut self.targets {
            target.end_transaction();
        }
        self.unflushed.flushed_all();
        // A COMMIT that fails has ended the transaction in DuckDB: the
        // guard is spent either way.
        let txn = self.txn.take().expect("commit checked for a transaction");
        txn.commit().context("committing the transaction")?;
        // Then the typed rows, with a record of the raw rows they cover: a
        // typed table never holds a row its raw table does not. If they fail
        // to commit (or the process dies first), the record no longer matches
        // the raw table and the next sync rebuilds the typed table from it.
        self.typed.after_commit(rows);
        // Appenders are cheap to make and each holds a data chunk: dropping
        // them keeps memory proportional to the streams active in one
        // batch, not to the size of the catalog.
        for target in &mut self.targets {
            target.appender = None;
        }
        Ok(())
    }

    /// Abandons the open transaction and every row appended in it.
    pub fn rollback(&mut self) {
        for target in &mut self.targets {
            if let Some(appender) = target.appender.as_mut() {
                appender.discard();
            }
            target.end_transaction();
        }
        self.unflushed.flushed_all();
        self.typed.rollback();
        // Dropping the guard rolls back (a failure is logged).
        self.txn = None;
    }

    /// Replaces a truncating stream's live rows by its staged rows, in one
    /// transaction. Commit pending work first: the swap is its own
    /// transaction. Later records of the stream go to the live table.
    pub fn finish_truncate(&mut self, stream: usize) -> Result<()> {
        debug_assert!(self.txn.is_none(), "commit before finishing a truncate");
        let catalog = Arc::clone(&self.catalog);
        let s = &catalog.streams[stream];
        if s.mode != WriteMode::Truncate {
            return Ok(());
        }
        if self.targets[stream].table != s.staging_table {
            return Ok(()); // already swapped
        }
        self.attached()?;
        let target = &mut self.targets[stream];
        // The appender references the staging table, which is about to go.
        target.appender = None;
        let (live, staging) = (
            qualified(&s.schema, &s.table),
            qualified(&s.schema, &s.staging_table),
        );
        let columns = COLUMNS.join(", ");
        // The rewrite count goes up in the same transaction: a typed table
        // that covered the old rows no longer claims to cover these.
        let rewrite = internal::count_rewrites(&[RawOf::new(&s.namespace, &s.name, &s.schema)])
            .expect("one stream");
        // The typed table goes with the rows it was typed from (rebuilt
        // from the new ones at the end, or at the next chance).
        let typed = self.typed.swap_sql(stream)?;
        let swap = || -> Result<(), crate::duck::DuckError> {
            let txn = self.session.begin()?;
            self.session.execute(&format!(
                "DELETE FROM {live}; \
                 INSERT INTO {live} ({columns}) SELECT {columns} FROM {staging}; \
                 DROP TABLE {staging}; {rewrite}; {typed}"
            ))?;
            txn.commit()
        };
        swap().with_context(|| format!("replacing the rows of {} with the new ones", s.label()))?;
        target.table = s.table.clone();
        self.typed.raw_replaced(stream);
        tracing::info!(stream = %s.label(), "overwrite complete: staged rows replaced the table's contents");
        Ok(())
    }
}

/// Makes stream `s`'s raw table (and staging table) ready; true when its
/// raw rows are not what they were (the table was made or adopted).
fn prepare_stream(session: &Session, s: &Stream, existing: &Tables) -> Result<bool> {
    let made = !existing.contains(&(s.schema.to_lowercase(), s.table.to_lowercase()));
    session.execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {}",
        qualified_schema(&s.schema)
    ))?;
    session.execute(&format!(
        "CREATE TABLE IF NOT EXISTS {} ({})",
        qualified(&s.schema, &s.table),
        raw::create_columns()
    ))?;
    // A table made just now has every raw column; one that was there is
    // made to fit, from the columns read with the others.
    let adopted = match existing.columns(&s.schema, &s.table) {
        Some(columns) => adopt(session, &s.schema, &s.table, columns)?,
        None => false,
    };
    if s.mode == WriteMode::Truncate {
        let staging = qualified(&s.schema, &s.staging_table);
        let keep = match (
            s.generation_id,
            existing.contains(&(s.schema.to_lowercase(), s.staging_table.to_lowercase())),
        ) {
            (Some(generation), true) => {
                // A retry of the same generation keeps the rows an earlier
                // attempt staged (and acknowledged).
                let other = session.query_row(&format!(
                    "SELECT count(*) FROM {staging} WHERE _airbyte_generation_id IS DISTINCT FROM {generation}"
                ))?;
                other.int(0) == Some(0)
            }
            _ => false,
        };
        if !keep {
            session.execute(&format!("DROP TABLE IF EXISTS {staging}"))?;
            session.execute(&format!(
                "CREATE TABLE {staging} ({})",
                raw::create_columns()
            ))?;
        } else {
            tracing::info!(stream = %s.label(), "resuming the staged rows of generation {:?}", s.generation_id);
        }
    }
    Ok(made || adopted)
}

/// Makes an existing table (whose `columns` are as [`Tables`] read them)
/// fit the raw layout: tables written by the official Python connector
/// have only the first three columns; the rest are added. Nothing is ever
/// dropped. True when columns were added.
fn adopt(
    session: &Session,
    schema: &str,
    table: &str,
    columns: &[(String, String)],
) -> Result<bool> {
    let present: Vec<String> = columns.iter().map(|(c, _)| c.to_lowercase()).collect();
    for required in &COLUMNS[..3] {
        if !present.iter().any(|c| c == required) {
            bail!(Failure::config(format!(
                "table \"{schema}\".\"{table}\" exists but has no `{required}` column; \
                 it is not an Airbyte raw table (rename or drop it)"
            )));
        }
    }
    // The columns the official connector's tables lack.
    let mut added = false;
    for column in &COLUMNS[3..] {
        let ty = raw::column_type(column).expect("a raw column");
        if !present.iter().any(|c| c == column) {
            session.execute(&format!(
                "ALTER TABLE {} ADD COLUMN {column} {ty}",
                qualified(schema, table)
            ))?;
            tracing::info!("added column {column} to the existing table \"{schema}\".\"{table}\"");
            added = true;
        }
    }
    Ok(added)
}

/// [`Sink::worth_waiting`] over (rows in the transaction, bytes of the open
/// row group) per table, with groups of `group` rows. Below a quarter of a
/// group, copying a table's rows through the WAL at a commit costs little.
fn waiting_pays(tables: impl Iterator<Item = (u64, u64)>, budget: u64, group: u64) -> bool {
    let small = group / 4;
    let mut busy = false;
    let mut projected = 0u64;
    for (rows, open_bytes) in tables {
        busy |= rows >= small;
        projected += if (small..group).contains(&rows) {
            open_bytes / rows * group
        } else {
            open_bytes
        };
    }
    busy && projected <= budget
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn waiting_pays_only_for_busy_tables_whose_groups_fit() {
        use crate::database::{DUCKDB_ROW_GROUP_ROWS, SMALL_ROW_GROUP_ROWS};
        for g in [SMALL_ROW_GROUP_ROWS, DUCKDB_ROW_GROUP_ROWS] {
            // Nothing busy: commit now, the rows are few.
            assert!(!waiting_pays(
                [(g / 8, g / 8 * 300), (0, 0)].into_iter(),
                128 * MIB,
                g
            ));
            // Three tables half way into groups of 300-byte rows, each
            // projected at a full group (4.7 or 35 MiB), fit the default
            // budget.
            let half = (g / 2, g / 2 * 300);
            assert!(waiting_pays([half, half, half].into_iter(), 128 * MIB, g));
            // Past its first group a table counts only its open group, and
            // tiny side streams count as they are.
            let past = (3 * g + 10, 10 * 300);
            assert!(waiting_pays(
                [past, (5, 1_500), (7, 2_100)].into_iter(),
                MIB,
                g
            ));
        }
        // Twenty-one such tables fit with the small groups only, two hundred
        // with neither.
        let half = |g: u64| (g / 2, g / 2 * 300);
        let g = SMALL_ROW_GROUP_ROWS;
        assert!(waiting_pays(std::iter::repeat_n(half(g), 21), 128 * MIB, g));
        assert!(!waiting_pays(
            std::iter::repeat_n(half(g), 200),
            128 * MIB,
            g
        ));
        let g = DUCKDB_ROW_GROUP_ROWS;
        assert!(!waiting_pays(
            std::iter::repeat_n(half(g), 21),
            128 * MIB,
            g
        ));
    }
}
