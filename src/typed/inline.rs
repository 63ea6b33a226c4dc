//! Typed tables written as records arrive (`typed_output: tables`), in the
//! same transactions as the raw rows.
//!
//! For an `append` stream each record's typed row goes straight into the
//! typed table; for an `append_dedup` stream into a staging table that is
//! merged into the typed table once, at the end of the sync. Records that
//! [`fast::type_record`](super::fast::type_record) does not type go, as raw
//! rows, to a pending table that the SQL types into the same place before
//! every commit. The registry counts the raw rows the typed table covers,
//! also in that commit, so that a crash leaves the typed table, its staged
//! rows and the raw table agreeing, and the next sync knows it.
//!
//! Overwrite streams, and deduplicated streams whose key or cursor is no
//! typed column, keep the refresh at the end of the sync (`refresh`).

use anyhow::{Context, Result};

use super::coverage::{Coverage, Extent, Verdict};
use super::refresh::{create_empty, intact, materialise, merge};
use super::registry::{record, relation, tombstones, Materialized, Typed};
use super::sql::{Query, INCOMING, STORED};
use super::types::{Column, META_COLUMNS};
use crate::catalog::{Stream, WriteMode};
use crate::database::Tables;
use crate::duck::Session;
use crate::internal::{self, stream_key};
use crate::names::{literal, qualified};
use crate::raw;

/// Where and how the sink writes one stream's typed rows.
#[derive(Debug, Clone)]
pub struct Inline {
    pub columns: Vec<Column>,
    /// (schema, table) the typed rows are appended to: the typed table, or
    /// for a deduplicated stream its staging table.
    pub target: (String, String),
    /// Its columns, in the order of the cells the sink appends: the
    /// metadata, the typed columns, and for a staging table
    /// `_airbyte_deleted` and `_airbyte_seq`.
    pub target_columns: Vec<String>,
    /// (schema, table) of the pending table.
    pub pending: (String, String),
    /// Its columns: the raw columns and `_airbyte_seq`, the arrival order.
    pub pending_columns: Vec<String>,
    pub dedup: bool,
    /// Types the pending rows into the target and empties the pending
    /// table.
    convert: String,
    /// The registry entry that counts the raw rows the typed table covers:
    /// its stream key and schema, as SQL literals.
    registry_row: String,
}

impl Inline {
    /// The SQL that types the pending rows into the target and empties the
    /// pending table, in the open transaction.
    pub fn convert_pending(&self) -> &str {
        &self.convert
    }

    /// One row of [`count_update`](super::count_update): this stream's
    /// registry entry, the `raw_rows` of it that a commit adds, and the id
    /// of the last of them.
    pub fn count_row(&self, raw_rows: u64, last_id: &str) -> String {
        format!("({}, {raw_rows}, {})", self.registry_row, literal(last_id))
    }
}

/// Whether stream `s` can have its typed rows written as records arrive:
/// not an overwrite (its typed table is rebuilt from the new raw rows at
/// the end), and for a deduplicated stream a key and cursor that are typed
/// columns of a non-JSON type (the merge compares them, and a JSON column
/// keeps the text the Rust path saw where the SQL path keeps DuckDB's).
pub fn eligible(s: &Stream, t: &Typed) -> bool {
    s.mode != WriteMode::Truncate
        && (!s.dedup || Query::new(s, &t.columns, false).keys_are_plain_columns())
}

/// Forgets, in memory, what a typed table covers, so that the end-of-sync
/// refresh rebuilds it from the raw rows (after typed rows were given up
/// mid-sync; staged rows of a deduplicated stream are then dropped with it,
/// as the raw rows hold them too).
pub fn forget_coverage(t: &mut Typed) {
    if let Materialized::Table { coverage, .. } = &mut t.materialized {
        *coverage = Coverage::Rebuild;
    }
}

/// Brings an eligible stream's typed table up to date with its raw table,
/// as the end-of-sync refresh does (appending, merging or rebuilding), unless
/// it already holds every raw row: of the current columns, a coverage that
/// still matches the raw rows, and the table (and tombstones) still there.
pub fn catch_up(session: &Session, s: &Stream, t: &mut Typed, tables: &Tables) -> Result<()> {
    if let Materialized::Table { columns, coverage } = &t.materialized {
        if *columns == t.columns
            && intact(s, t, tables)
            && coverage.verify(session, s)? == Verdict::Current
        {
            return Ok(());
        }
    }
    let empty = session
        .query_row(&format!(
            "SELECT count(*) = 0 FROM {}",
            qualified(&s.schema, &s.table)
        ))?
        .bool(0)
        == Some(true);
    let how = if empty {
        // Nothing to type: the table is declared, not computed (binding the
        // typing SQL of a wide stream takes milliseconds, times the streams
        // of a first sync).
        create_empty(session, s, t)?;
        "created"
    } else {
        materialise(session, s, t, tables)?
    };
    tracing::info!(how, stream = %s.label(), table = %relation(s, t), "typed table caught up before the records");
    Ok(())
}

/// Prepares an eligible stream, caught up, for typed rows written as its
/// records arrive, inside the caller's transaction: its pending (and for a
/// deduplicated stream, staging) table, staged rows a crashed sync left
/// merged, and the registry saying that the table covers every raw row.
pub fn open(session: &Session, s: &Stream, t: &mut Typed) -> Result<Inline> {
    let Materialized::Table {
        coverage: Coverage::UpTo { .. } | Coverage::All { .. },
        ..
    } = &t.materialized
    else {
        anyhow::bail!("the typed table of {} was not built", s.label());
    };
    let rel = relation(s, t);
    let pending = internal::typed_pending(&s.schema, &t.name);
    let staged = internal::typed_staged(&s.schema, &t.name);
    let columns = t.columns.clone();
    let q = Query::new(s, &columns, false);
    let out = q.output_columns();
    let mut target_columns: Vec<String> = META_COLUMNS.iter().map(|c| c.to_string()).collect();
    target_columns.extend(columns.iter().map(|c| c.name.clone()));
    let mut pending_columns: Vec<String> = raw::COLUMNS.iter().map(|c| c.to_string()).collect();
    pending_columns.push("_airbyte_seq".into());
    session.execute(&format!(
        "CREATE TABLE IF NOT EXISTS {p} ({}, _airbyte_seq BIGINT); DELETE FROM {p}",
        raw::create_columns(),
        p = internal::qualified(&pending)
    ))?;
    let target = if s.dedup {
        let staged_q = internal::qualified(&staged);
        session.execute(&format!(
            "CREATE TABLE IF NOT EXISTS {staged_q} AS SELECT {out}, false AS _airbyte_deleted, \
             0::BIGINT AS _airbyte_seq FROM {rel} LIMIT 0"
        ))?;
        if session
            .query_row(&format!("SELECT count(*) > 0 FROM {staged_q}"))?
            .bool(0)
            == Some(true)
        {
            merge_staged(session, s, t)?;
            tracing::info!(stream = %s.label(), "typed rows staged by an interrupted sync merged");
        }
        target_columns.extend(["_airbyte_deleted".into(), "_airbyte_seq".into()]);
        (internal::SCHEMA.to_string(), staged)
    } else {
        (s.schema.clone(), t.name.clone())
    };
    // Caught up: every raw row, as the raw table is now. The typed-row
    // writer adds the rows of each commit.
    let covering = Materialized::Table {
        columns: columns.clone(),
        coverage: Coverage::all_of(&Extent::of(session, s)?),
    };
    if t.materialized != covering {
        t.materialized = covering;
        record(session, s, t)?;
    }
    let source = internal::qualified(&pending);
    let pq = Query::over_pending(s, &columns, source.clone());
    let rows = pq.typed_rows(None);
    let convert = if s.dedup {
        format!(
            "INSERT INTO {} ({out}, _airbyte_deleted, _airbyte_seq) \
             SELECT {out}, _airbyte_deleted, _airbyte_raw_rowid FROM ({rows}); DELETE FROM {source}",
            internal::qualified(&target.1)
        )
    } else {
        format!("INSERT INTO {rel} ({out}) SELECT {out} FROM ({rows}); DELETE FROM {source}")
    };
    let registry_row = format!(
        "{}, {}",
        literal(&stream_key(&s.namespace, &s.name)),
        literal(&s.schema),
    );
    Ok(Inline {
        columns,
        target,
        target_columns,
        pending: (internal::SCHEMA.to_string(), pending),
        pending_columns,
        dedup: s.dedup,
        convert,
        registry_row,
    })
}

/// Merges a deduplicated stream's staged rows into its typed table and
/// empties the staging table, inside the caller's transaction.
///
/// When every staged key is new (no two staged rows share one, and neither
/// the table nor the tombstones hold it), each staged row is its key's
/// latest: the live ones are appended and the deletes become tombstones,
/// with no ranking. That is a first sync, and any sync that only adds keys.
fn merge_staged(session: &Session, s: &Stream, t: &Typed) -> Result<()> {
    let staged = internal::qualified(&internal::typed_staged(&s.schema, &t.name));
    let q = Query::new(s, &t.columns, false);
    let (rel, tombs) = (relation(s, t), tombstones(s, t));
    let out = q.output_columns();
    let keys = q.key_columns();
    let same_key = q.same_key();
    let clash = format!(
        "SELECT EXISTS (SELECT 1 FROM {staged} GROUP BY {k} HAVING count(*) > 1) \
         OR EXISTS (SELECT 1 FROM {rel} {STORED} WHERE EXISTS (SELECT 1 FROM {staged} {INCOMING} WHERE {same_key})) \
         OR EXISTS (SELECT 1 FROM {tombs} {STORED} WHERE EXISTS (SELECT 1 FROM {staged} {INCOMING} WHERE {same_key}))",
        k = keys.join(", ")
    );
    if session.query_row(&clash)?.bool(0) == Some(false) {
        session.execute(&format!(
            "INSERT INTO {rel} ({out}) SELECT {out} FROM {staged} WHERE NOT _airbyte_deleted; \
             INSERT INTO {tombs} ({out}) SELECT {out} FROM {staged} WHERE _airbyte_deleted"
        ))?;
    } else {
        let rows = format!(
            "SELECT {out}, _airbyte_deleted, _airbyte_seq AS _airbyte_raw_rowid FROM {staged}"
        );
        merge(session, &q, &rel, &tombs, &rows)?;
    }
    session.execute(&format!("DELETE FROM {staged}"))?;
    Ok(())
}

/// Ends the sync for a stream written inline: a deduplicated stream's
/// staged rows are merged into its typed table, in a transaction of its
/// own (raw rows and staged rows are already committed; if this fails, the
/// next sync merges them).
pub fn finish(session: &Session, s: &Stream, t: &Typed, inline: &Inline) -> Result<&'static str> {
    if !inline.dedup {
        return Ok("written as records arrived");
    }
    let txn = session.begin()?;
    merge_staged(session, s, t).with_context(|| {
        format!(
            "merging the staged rows of {}",
            qualified(&s.schema, &t.name)
        )
    })?;
    txn.commit().context("committing")?;
    Ok("merged")
}
