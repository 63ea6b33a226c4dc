//! A sync's typed output, from start to finish, in one place: one `Plan`
//! per stream and the steps the write path calls, in order.
//!
//! 1. [`TypedOutput::start`], once the raw tables exist. `views` and `off`:
//!    the typed relations are prepared on a thread and session of their own
//!    while the records load (they do not depend on the records; binding a
//!    large catalog's views takes seconds). `tables`: names and columns are
//!    resolved, and each stream gets its plan: typed rows written as the
//!    records arrive (`Plan::Inline`, the table caught up first), or the
//!    table refreshed from its raw table at the end (`Plan::Refresh`:
//!    overwrites, and deduplicated streams whose key or cursor is no plain
//!    typed column). The inline streams' rows go to the typed-row writer.
//! 2. Per record, [`TypedOutput::add`]; per commit of the raw rows,
//!    [`TypedOutput::after_commit`] (or [`TypedOutput::rollback`]). The sink
//!    calls these; it owns this object for the sync.
//! 3. [`TypedOutput::end_appending`]: the writer's last rows are committed
//!    and it stops.
//! 4. [`TypedOutput::finish`]: the views thread is joined, and every typed
//!    table is finished (merged) or refreshed, each in its own transaction.
//!
//! Typed rows that cannot be written never fail the sync once their raw
//! rows are committed: they are given up, and their tables are rebuilt from
//! the raw rows at the end (the raw table is the source of truth).

use std::sync::Arc;
use std::thread::{Scope, ScopedJoinHandle};
use std::time::Instant;

use anyhow::{anyhow, Context, Result};

use super::typed_writer::TypedWriter;
use crate::catalog::{Catalog, Stream};
use crate::config::TypedOutput as Mode;
use crate::database::{self, Tables};
use crate::duck::{Instance, Session};
use crate::names::qualified;
use crate::typed::{self, Inline, Typed};

/// What the sync does with one stream's typed table (`typed_output:
/// tables`).
enum Plan {
    /// Typed rows written as the records arrive, committed with the raw
    /// rows (a deduplicated stream's merged at the end).
    Inline { typed: Typed, inline: Box<Inline> },
    /// Refreshed from the raw table at the end of the sync.
    Refresh { typed: Typed },
}

/// The sync's typed output (see the module docs).
pub struct TypedOutput<'scope, 's> {
    session: &'s Session,
    catalog: Arc<Catalog>,
    /// `views` and `off`: the thread preparing the typed relations, until
    /// it is joined; then what it gave.
    beside: Option<ScopedJoinHandle<'scope, Result<()>>>,
    beside_done: Option<Result<()>>,
    /// `tables`: one plan per stream, in catalog order (empty otherwise).
    plans: Vec<Plan>,
    /// `tables`: per stream, whether its typed table is behind the raw rows
    /// committed so far (rows of a stream refreshed at the end, staged rows
    /// of a deduplicated stream, raw rows replaced by an overwrite), which
    /// [`TypedOutput::bring_current`] catches up.
    behind: Vec<bool>,
    /// The inline streams' typed rows, while the records are appended.
    writer: Option<TypedWriter>,
}

impl<'scope, 's: 'scope> TypedOutput<'scope, 's> {
    /// Step 1 (see the module docs): prepares every stream's typed relation
    /// for `mode`, on `instance`, whose raw tables exist.
    pub fn start(
        scope: &'scope Scope<'scope, '_>,
        instance: &'s Instance,
        catalog: Arc<Catalog>,
        mode: Mode,
    ) -> Result<Self> {
        let mut out = TypedOutput {
            session: instance,
            catalog,
            beside: None,
            beside_done: None,
            plans: Vec::new(),
            behind: Vec::new(),
            writer: None,
        };
        if mode != Mode::Tables {
            out.beside = Some(prepare_beside(
                scope,
                instance,
                Arc::clone(&out.catalog),
                mode,
            )?);
            return Ok(out);
        }
        let typed = typed::prepare(instance, &out.catalog.streams, mode)?;
        out.plans = plan(instance, &out.catalog.streams, typed)?;
        out.behind = vec![false; out.plans.len()];
        let inline: Vec<Option<Inline>> = out
            .plans
            .iter()
            .map(|p| match p {
                Plan::Inline { inline, .. } => Some(Inline::clone(inline)),
                Plan::Refresh { .. } => None,
            })
            .collect();
        if inline.iter().any(Option::is_some) {
            out.writer = Some(TypedWriter::spawn(
                scope,
                instance.connect()?,
                &inline,
                &out.catalog,
            )?);
        }
        Ok(out)
    }
}

impl TypedOutput<'_, '_> {
    /// Step 2: one record of `stream`, as its raw row got it.
    pub fn add(
        &mut self,
        stream: usize,
        id: &str,
        emitted_at_micros: i64,
        data: &str,
        changes: Option<&str>,
    ) -> Result<()> {
        match self.writer.as_mut() {
            Some(writer) => writer.add(stream, id, emitted_at_micros, data, changes),
            None => Ok(()),
        }
    }

    /// Step 2: the raw rows of a commit (`rows` per stream) are committed;
    /// the typed rows follow, counting them. Never fails: the commit's
    /// states are due. Typed rows that cannot be written are given up for
    /// the rest of the sync, and their tables rebuilt at the end.
    pub fn after_commit(&mut self, rows: Vec<u64>) {
        for ((plan, behind), &n) in self.plans.iter().zip(&mut self.behind).zip(&rows) {
            *behind |= n > 0 && !plan.current_with_each_commit();
        }
        let Some(writer) = self.writer.as_mut() else {
            return;
        };
        if let Err(e) = writer.commit(rows) {
            tracing::warn!(
                "typed rows could not be written; the raw rows are committed and the typed tables are rebuilt from them: {e:#}"
            );
            self.give_up_inline();
        }
    }

    /// SQL to run in the transaction that replaces stream `stream`'s raw
    /// rows (an overwrite's swap): drops its typed table and tombstones,
    /// those that are tables (not a view someone made there), so that they
    /// never hold rows the raw table no longer has.
    pub fn swap_sql(&self, stream: usize) -> Result<String> {
        let (Some(s), Some(plan)) = (self.catalog.streams.get(stream), self.plans.get(stream))
        else {
            return Ok(String::new());
        };
        let mut sql = String::new();
        for (schema, name) in typed::dropped_with_raw_rows(s, plan.typed()) {
            if database::table_exists(self.session, &schema, &name)? {
                sql += &format!("DROP TABLE {};", qualified(&schema, &name));
            }
        }
        Ok(sql)
    }

    /// Step 2: stream `stream`'s raw rows were replaced (an overwrite's
    /// swap): its typed table is behind until it is rebuilt.
    pub fn raw_replaced(&mut self, stream: usize) {
        if let Some(behind) = self.behind.get_mut(stream) {
            *behind = true;
        }
    }

    /// Step 2, between commits, before the database is let go of: brings
    /// every typed table that is behind up to the raw rows committed so far
    /// (merges staged rows, refreshes), each in its own transaction, so that
    /// a reader sees typed tables at the point the echoed states cover.
    /// Returns whether they all are; one that fails stays behind (the end of
    /// the sync tries again, and reports it).
    pub fn bring_current(&mut self) -> bool {
        if !self.behind.contains(&true) {
            return true;
        }
        let tables = match database::existing_tables(self.session) {
            Ok(tables) => tables,
            Err(e) => {
                tracing::warn!("typed tables not caught up: {e:#}");
                return false;
            }
        };
        let mut all = true;
        for ((stream, plan), behind) in self
            .catalog
            .streams
            .iter()
            .zip(&mut self.plans)
            .zip(&mut self.behind)
        {
            if !*behind {
                continue;
            }
            match plan.finish(self.session, stream, &tables) {
                Ok(how) => {
                    *behind = false;
                    tracing::debug!(how, stream = %stream.label(), "typed table caught up while the input is idle");
                }
                Err(e) => {
                    tracing::warn!(stream = %stream.label(), "catching up the typed table failed: {e:#}");
                    all = false;
                }
            }
        }
        all
    }

    /// Step 2: the open transaction is abandoned.
    pub fn rollback(&mut self) {
        if let Some(writer) = self.writer.as_mut() {
            writer.rollback();
        }
    }

    /// Step 3: no more records; the typed-row writer ends (its rows were
    /// all committed with the last commit of the raw rows; its thread ends
    /// with the sync's scope).
    pub fn end_appending(&mut self) {
        self.writer = None;
    }

    /// Step 4: the typed relations finished (see the module docs). Runs
    /// after the raw rows are all committed and their states echoed: a
    /// refresh that fails loses none of them.
    pub fn finish(mut self) -> Result<()> {
        self.end_appending();
        self.settle()?;
        if let Some(done) = self.beside_done.take() {
            return done;
        }
        let tables = database::existing_tables(self.session)?;
        // Every stream gets its refresh even if one before it fails; the
        // first failure is reported at the end.
        let mut first_failure = None;
        for (stream, plan) in self.catalog.streams.iter().zip(&mut self.plans) {
            let started = Instant::now();
            match plan.finish(self.session, stream, &tables) {
                Ok(how) => tracing::info!(
                    how,
                    stream = %stream.label(),
                    table = %format!("\"{}\".\"{}\"", stream.schema, plan.typed().name),
                    seconds = started.elapsed().as_secs_f64(),
                    "typed table refreshed"
                ),
                Err(e) => {
                    tracing::warn!(stream = %stream.label(), "refreshing the typed table failed: {e:#}");
                    first_failure.get_or_insert(e);
                }
            }
        }
        first_failure.map_or(Ok(()), Err)
    }

    /// Waits for the typed views to be made, if they are being made (before
    /// the database is let go of, which their session must not be using).
    /// Their failure, if any, is reported by [`TypedOutput::finish`].
    pub fn settle(&mut self) -> Result<()> {
        if let Some(beside) = self.beside.take() {
            let done = beside
                .join()
                .map_err(|_| anyhow!("the typed view thread stopped on a bug (a panic)"))?
                .context("preparing the typed views");
            self.beside_done = Some(done);
        }
        Ok(())
    }

    /// Typed rows written as records arrived were given up: those tables are
    /// rebuilt from the raw rows (staged rows included) at the end.
    fn give_up_inline(&mut self) {
        self.writer = None;
        for plan in &mut self.plans {
            if let Plan::Inline { typed, .. } = plan {
                let mut typed = typed.clone();
                typed::forget_coverage(&mut typed);
                *plan = Plan::Refresh { typed };
            }
        }
    }
}

impl Plan {
    /// Whether the typed table holds every committed raw row after each
    /// commit (an append stream written as its records arrive).
    fn current_with_each_commit(&self) -> bool {
        matches!(self, Plan::Inline { inline, .. } if !inline.dedup)
    }

    fn typed(&self) -> &Typed {
        match self {
            Plan::Inline { typed, .. } | Plan::Refresh { typed } => typed,
        }
    }

    /// Brings the typed table up to its raw rows: merges a deduplicated
    /// stream's staged rows, or refreshes the table from the raw table
    /// (rebuilt when its coverage no longer matches, as after an
    /// overwrite's swap, which raises the raw table's rewrite count).
    fn finish(
        &mut self,
        session: &Session,
        stream: &Stream,
        tables: &Tables,
    ) -> Result<&'static str> {
        match self {
            Plan::Inline { typed, inline } => typed::finish_inline(session, stream, typed, inline),
            Plan::Refresh { typed } => typed::materialise(session, stream, typed, tables),
        }
    }
}

/// `views` and `off`: prepares the typed relations on a thread and session
/// of their own (see the module docs).
fn prepare_beside<'scope, 's: 'scope>(
    scope: &'scope Scope<'scope, '_>,
    instance: &'s Instance,
    catalog: Arc<Catalog>,
    mode: Mode,
) -> Result<ScopedJoinHandle<'scope, Result<()>>> {
    let session = instance.connect()?;
    std::thread::Builder::new()
        .name("views".into())
        .spawn_scoped(scope, move || {
            // A panic (a bug) fails the sync plainly rather than taking the
            // process down when the scope joins.
            let prepare = std::panic::AssertUnwindSafe(|| {
                typed::prepare(&session, &catalog.streams, mode).map(drop)
            });
            std::panic::catch_unwind(prepare).unwrap_or_else(|_| {
                Err(anyhow!(
                    "preparing the typed views stopped on a bug (a panic)"
                ))
            })
        })
        .context("starting the typed view thread")
}

/// `tables`: each stream's plan. A stream whose typed rows can be written
/// as its records arrive is caught up with its raw table first; one that
/// cannot be caught up now (out of memory, a full temporary folder) is
/// refreshed at the end instead, after its records, and the others go on.
/// The inline streams are opened in one transaction (one commit, however
/// many streams).
fn plan(session: &Session, streams: &[Stream], typed: Vec<Typed>) -> Result<Vec<Plan>> {
    let tables = database::existing_tables(session)?;
    let mut typed = typed;
    let mut inline = vec![false; streams.len()];
    for ((s, t), inline) in streams.iter().zip(&mut typed).zip(&mut inline) {
        if typed::inline_eligible(s, t) {
            match typed::catch_up_inline(session, s, t, &tables) {
                Ok(()) => *inline = true,
                Err(e) => {
                    tracing::warn!(stream = %s.label(), "catching up the typed table failed, it is refreshed after the records instead: {e:#}")
                }
            }
        }
    }
    let txn = session.begin()?;
    let mut plans = Vec::with_capacity(streams.len());
    for ((s, mut t), inline) in streams.iter().zip(typed).zip(inline) {
        plans.push(if inline {
            let spec = typed::open_inline(session, s, &mut t)
                .with_context(|| format!("preparing the typed table of {}", s.label()))?;
            Plan::Inline {
                typed: t,
                inline: Box::new(spec),
            }
        } else {
            Plan::Refresh { typed: t }
        });
    }
    txn.commit().context("committing")?;
    Ok(plans)
}
