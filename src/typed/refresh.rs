//! Keeping typed tables (`typed_output: tables`) up to date at the end of a
//! sync: append or merge only the raw rows past the recorded watermark when
//! that is safe, else rebuild the table whole. The raw table stays the
//! source of truth, so a rebuild is always correct, only slower.

use anyhow::{Context, Result};

use super::coverage::{Extent, Verdict};
use super::registry::{
    drop_existing, in_transaction, record, relation, tombstones, Materialized, Typed,
};
use super::sql::{Query, INCOMING, STORED};
use super::types::META_COLUMNS;
use crate::catalog::Stream;
use crate::database::Tables;
use crate::duck::Session;
use crate::internal::{self, Work};
use crate::names::{qualified, quote};
use crate::raw;

/// Brings a stream's typed table up to date with its raw table: new raw
/// rows are typed and appended (or, for `append_dedup`, merged by key);
/// the table is rebuilt whole when its columns changed, when it was dropped,
/// or when its coverage no longer matches the raw rows (`Coverage::verify`:
/// after an overwrite's swap, the raw table's rewrite count went up).
pub fn materialise(
    session: &Session,
    s: &Stream,
    t: &mut Typed,
    tables: &Tables,
) -> Result<&'static str> {
    let mut next = t.clone();
    let columns = next.columns.clone();
    let q = Query::new(s, &columns, false);
    let rel = relation(s, &next);
    let mut how = "rebuilt";
    in_transaction(session, || {
        let extent = Extent::of(session, s)?;
        // Keys or a cursor outside the typed columns cannot be compared
        // between the table and new rows: such a dedup table is rebuilt.
        let verdict = match &next.materialized {
            Materialized::Table { columns, coverage }
                if *columns == next.columns
                    && (!s.dedup || q.keys_are_columns())
                    && intact(s, &next, tables) =>
            {
                coverage.verify(session, s)?
            }
            _ => Verdict::Rebuild,
        };
        let out = q.output_columns();
        match verdict {
            Verdict::Rebuild => {
                drop_existing(session, s, &next)?;
                let rows = q.typed_rows(None);
                if s.dedup {
                    let latest = q.latest(&rows, "_airbyte_raw_rowid");
                    store_latest(session, &q, &latest, &rel, &tombstones(s, &next), true)?;
                } else {
                    session
                        .execute(&format!("CREATE TABLE {rel} AS SELECT {out} FROM ({rows})"))?;
                }
            }
            Verdict::After(after) if extent.max_rowid.is_some_and(|last| after < last) => {
                how = if s.dedup { "merged" } else { "appended" };
                let rows = q.typed_rows(Some(after));
                if s.dedup {
                    merge(session, &q, &rel, &tombstones(s, &next), &rows)?;
                } else {
                    session.execute(&format!(
                        "INSERT INTO {rel} ({out}) SELECT {out} FROM ({rows})"
                    ))?;
                }
            }
            Verdict::After(_) | Verdict::Current => how = "already current",
        }
        next.materialized = Materialized::Table {
            columns: next.columns.clone(),
            coverage: extent.covered(),
        };
        record(session, s, &next)
    })
    .with_context(|| format!("refreshing the typed table {rel}"))?;
    *t = next;
    Ok(how)
}

/// Makes an empty typed table (and for a deduplicated stream its
/// tombstones) of the stream's columns, replacing what was there, for a raw
/// table without rows. The column types are those the typing SQL gives.
pub(super) fn create_empty(session: &Session, s: &Stream, t: &mut Typed) -> Result<()> {
    let mut next = t.clone();
    // The metadata columns have their raw columns' types.
    let mut columns: Vec<String> = META_COLUMNS
        .iter()
        .map(|c| format!("{c} {}", raw::column_type(c).expect("a raw column")))
        .collect();
    columns.extend(
        next.columns
            .iter()
            .map(|c| format!("{} {}", quote(&c.name), c.ty.sql())),
    );
    let columns = columns.join(", ");
    in_transaction(session, || {
        let extent = Extent::of(session, s)?;
        drop_existing(session, s, &next)?;
        session.execute(&format!("CREATE TABLE {} ({columns})", relation(s, &next)))?;
        if s.dedup {
            session.execute(&format!(
                "CREATE TABLE {} ({columns})",
                tombstones(s, &next)
            ))?;
        }
        next.materialized = Materialized::Table {
            columns: next.columns.clone(),
            coverage: extent.covered(),
        };
        record(session, s, &next)
    })
    .with_context(|| format!("creating the typed table {}", relation(s, &next)))?;
    *t = next;
    Ok(())
}

/// Whether the typed table (and for dedup, its tombstones) is in the
/// database as this connector made it: there, with the columns the
/// stream's typed columns give (names and order, and for typed columns
/// their types; the metadata columns keep whatever type the raw table has,
/// as one adopted from the official connector does). One dropped or
/// altered by hand (a column renamed, dropped, added or retyped) is
/// rebuilt from the raw rows, where appending or merging into it would fail
/// every sync or keep what the hand edit did.
pub(super) fn intact(s: &Stream, t: &Typed, tables: &Tables) -> bool {
    let mut relations = vec![(s.schema.clone(), t.name.clone())];
    if s.dedup {
        relations.push((
            internal::SCHEMA.to_string(),
            internal::tombstones(&s.schema, &t.name),
        ));
    }
    let want: Vec<(&str, Option<&str>)> = META_COLUMNS
        .iter()
        .map(|c| (*c, None))
        .chain(
            t.columns
                .iter()
                .map(|c| (c.name.as_str(), Some(c.ty.sql()))),
        )
        .collect();
    relations.iter().all(|(schema, name)| {
        let Some(have) = tables.columns(schema, name) else {
            return false;
        };
        let same = have.len() == want.len()
            && have.iter().zip(&want).all(|((name, ty), (want_name, want_ty))| {
                name == want_name && want_ty.is_none_or(|w| w == ty)
            });
        if !same {
            tracing::info!(stream = %s.label(), table = %qualified(schema, name), "the typed table's columns are not the ones it was made with; it is rebuilt");
        }
        same
    })
}

/// Merges new typed `rows` (the output columns, `_airbyte_deleted` and
/// `_airbyte_raw_rowid`, the arrival order) into a deduplicated table: the
/// new rows compete with the table's rows and the tombstones of the same
/// keys; each key's winner goes to the table, or to the tombstones if it is
/// a CDC delete.
pub(super) fn merge(
    session: &Session,
    q: &Query<'_>,
    rel: &str,
    tombs: &str,
    rows: &str,
) -> Result<()> {
    let work_new = Work::New.qualified();
    let work_all = Work::All.qualified();
    let out = q.output_columns();
    let keys = q.key_columns();
    let same_key = q.same_key();
    let key_aliases = keys
        .iter()
        .enumerate()
        .map(|(i, k)| format!("{k} AS _airbyte_k{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let matching = format!("EXISTS (SELECT 1 FROM {work_new} {INCOMING} WHERE {same_key})");
    session.execute(&format!(
        "CREATE OR REPLACE TABLE {work_new} AS SELECT {out}, _airbyte_deleted, \
         _airbyte_raw_rowid AS _airbyte_seq FROM ({rows}); \
         CREATE OR REPLACE TABLE {work_all} AS \
         SELECT {out}, _airbyte_deleted, _airbyte_seq FROM {work_new} UNION ALL \
         SELECT {out}, false, -1 FROM {rel} {STORED} WHERE {matching} UNION ALL \
         SELECT {out}, true, -1 FROM {tombs} {STORED} WHERE {matching}; \
         DELETE FROM {rel} {STORED} WHERE {matching}; \
         DELETE FROM {tombs} {STORED} WHERE {matching}"
    ))?;
    let latest = q.latest(
        &format!(
            "SELECT *, {key_aliases}, {} FROM {work_all}",
            q.cursor_keys()
        ),
        "_airbyte_seq",
    );
    store_latest(session, q, &latest, rel, tombs, false)?;
    session.execute(&format!("DROP TABLE {work_new}; DROP TABLE {work_all}"))?;
    Ok(())
}

/// Computes `latest` (one row per key) once into a work table, then puts
/// the live rows into `rel` and the CDC deletes into `tombs`, creating
/// them (`create`) or adding to them.
fn store_latest(
    session: &Session,
    q: &Query<'_>,
    latest: &str,
    rel: &str,
    tombs: &str,
    create: bool,
) -> Result<()> {
    let work = Work::Latest.qualified();
    let out = q.output_columns();
    let put = |target: &str, which: &str| {
        let select = format!("SELECT {out} FROM {work} WHERE {which}_airbyte_deleted");
        if create {
            format!("CREATE TABLE {target} AS {select}")
        } else {
            format!("INSERT INTO {target} ({out}) {select}")
        }
    };
    session.execute(&format!(
        "CREATE OR REPLACE TABLE {work} AS SELECT {out}, _airbyte_deleted FROM ({latest}); \
         {}; {}; DROP TABLE {work}",
        put(rel, "NOT "),
        put(tombs, ""),
    ))?;
    Ok(())
}
