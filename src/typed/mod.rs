//! Typed relations over the raw tables: one column per top-level property of
//! a stream's JSON schema, and for `append_dedup` streams one row per
//! primary key.
//!
//! The raw table stays the source of truth. The typed relation
//! `"<schema>"."<name>"` is either a view that types (and deduplicates) the
//! raw rows when it is queried, or a table (see [`TypedOutput`]): written as
//! the records arrive where it can be (`inline`, typing plain values in
//! Rust, `fast`), else refreshed from the raw table at the end of each sync
//! (`refresh`). The typing rules are SQL over `_airbyte_data` (`sql`), kept
//! as macros in the file, so a DuckDB client reads the views with no
//! extension of ours, and the Rust typing gives what
//! that SQL gives for the values it takes (a JSON column: the same JSON
//! value, in the source's text rather than DuckDB's rewriting of it).
//!
//! Typing never fails a query or a sync: a value that does not fit its
//! column becomes NULL and the row's `_airbyte_meta.changes` gets
//! `{"field": <property>, "change": "NULLED", "reason":
//! "DESTINATION_TYPECAST_ERROR"}`.
//!
//! Names and columns are recorded in `_airbyte_internal.typed_relations`, so
//! they stay stable across syncs: a property once given a column keeps it
//! (its type may widen), and properties that leave the schema keep their
//! column.
//!
//! A dedup cursor compares by its value: a typed column by its type; a
//! nested, undeclared or JSON cursor by its JSON value (see `json_order`),
//! so views and tables agree whatever the schema says.
//!
//! This module owns the registry (read and written here only), [`prepare`]
//! and [`Typed`]; the type mapping is in `types`, the SQL text in `sql`,
//! the end-of-sync table refresh in `refresh`, tables written with the
//! records in `inline` (their rows are appended by
//! `pipeline::typed_writer`). Names are allocated through
//! [`crate::internal`], which the raw tables share.

mod coverage;
mod fast;
mod inline;
mod refresh;
mod sql;
mod text;
mod types;

use std::collections::{HashMap, HashSet};

use anyhow::{Context, Result};

pub use coverage::count_update;
pub use fast::type_record;
pub use inline::{
    catch_up as catch_up_inline, eligible as inline_eligible, finish as finish_inline,
    forget_coverage, open as open_inline, Inline,
};
pub use refresh::materialise;
pub use types::{column_type, merge_columns, schema_properties, ColType, Column};

use crate::catalog::Stream;
use crate::config::TypedOutput;
use crate::database::CATALOG;
use crate::duck::Session;
use crate::internal::{self, fnv1a64, free_name, stream_key, RAW_PREFIX, TYPED_RELATIONS};
use crate::names::{literal, qualified};
use coverage::Coverage;
use sql::Query;
use types::{columns_from_json, columns_to_json};

/// What the typed relation of one stream is and holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Typed {
    /// The relation's name (unquoted), in the stream's schema.
    pub name: String,
    pub columns: Vec<Column>,
    /// What exists in the database now.
    materialized: Materialized,
}

/// What this connector has made of a typed relation. One enum rather than a
/// kind and three optionals, so a view never carries a coverage nor a
/// table a view's hash. The registry keeps flat columns (`kind`,
/// `table_columns`, the coverage's, `definition`) so every database reads
/// the same; [`Materialized::read`] and [`record`] convert.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Materialized {
    /// Nothing: typed output is off, or the table is not built yet.
    Nothing,
    /// A view. `definition` is a hash of its SQL: an unchanged view is not
    /// recreated (binding one costs DuckDB tens of milliseconds).
    View { definition: String },
    /// A table holding `columns`, and the raw rows `coverage` says.
    Table {
        columns: Vec<Column>,
        coverage: Coverage,
    },
}

impl Materialized {
    /// From the registry's columns. What cannot be read falls to the state
    /// that rebuilds: a view without a hash (recorded before hashes were)
    /// is recreated once; a table whose columns are unreadable is rebuilt
    /// whole.
    fn read(
        kind: Option<&str>,
        table_columns: Option<&str>,
        coverage: Coverage,
        definition: Option<&str>,
    ) -> Materialized {
        match kind {
            Some("view") => Materialized::View {
                definition: definition.unwrap_or_default().to_string(),
            },
            Some("table") => match table_columns.and_then(columns_from_json) {
                Some(columns) => Materialized::Table { columns, coverage },
                None => Materialized::Table {
                    columns: Vec::new(),
                    coverage: Coverage::Rebuild,
                },
            },
            _ => Materialized::Nothing,
        }
    }
}

/// What the database holds when `prepare` starts.
struct Existing {
    /// Recorded relations by (stream key, lowercase schema).
    known: HashMap<(String, String), Typed>,
    /// Names no new relation may take, per schema (lowercase).
    taken: HashSet<(String, String)>,
    /// Views in the database (lowercase), to notice one dropped by hand.
    views: HashSet<(String, String)>,
    /// The recorded [`shape`] of each table, by the keys of `known`.
    shapes: HashMap<(String, String), String>,
}

/// What a typed table's rows are, besides its columns: every raw row, or
/// the latest row per primary key by cursor. Recorded with a table; a table
/// of another shape is rebuilt, not merged into.
fn shape(s: &Stream) -> String {
    if !s.dedup {
        return "append".to_string();
    }
    let key = serde_json::to_string(&(&s.primary_key, &s.cursor_field)).expect("strings serialize");
    format!("dedup:{:016x}", fnv1a64(key.as_bytes()))
}

/// Resolves every stream's typed relation (name and columns), records it,
/// and brings the database in line with `mode`: views are (re)created now;
/// tables are built by [`materialise`] at the end of the sync; `off` drops
/// what this connector made.
pub fn prepare(session: &Session, streams: &[Stream], mode: TypedOutput) -> Result<Vec<Typed>> {
    let Existing {
        mut known,
        mut taken,
        views,
        shapes,
    } = survey(session)?;
    // New names are handed out in (namespace, name) order, so the same
    // catalog gets the same names whatever order it lists streams in.
    let mut order: Vec<usize> = (0..streams.len()).collect();
    order.sort_by(|&a, &b| {
        (&streams[a].namespace, &streams[a].name).cmp(&(&streams[b].namespace, &streams[b].name))
    });
    let mut out: Vec<Option<Typed>> = vec![None; streams.len()];
    let mut changed = Vec::new();
    // One transaction for all streams: one commit, however many there are.
    in_transaction(session, || {
        if mode != TypedOutput::Off {
            // Every typed relation and statement calls the typing rules
            // (the schema is made with the registry, in `survey`).
            session
                .execute(&sql::create_rules())
                .context("creating the typing rules")?;
        }
        for i in order {
            let s = &streams[i];
            let key = (stream_key(&s.namespace, &s.name), s.schema.to_lowercase());
            let (mut typed, recorded) = match known.remove(&key) {
                Some(t) => (t.clone(), Some(t)),
                None => {
                    let t = Typed {
                        name: allocate(s, &mut taken),
                        columns: Vec::new(),
                        materialized: Materialized::Nothing,
                    };
                    (t, None)
                }
            };
            typed.columns = merge_columns(&typed.columns, &schema_properties(&s.json_schema));
            // A table deduplicated by another key or cursor, or not at all,
            // is no base to merge or append to: rebuilt. (Tables recorded
            // before shapes were kept none, and are taken as they are.)
            let mut reshaped = false;
            if let (Materialized::Table { coverage, .. }, Some(old)) =
                (&mut typed.materialized, shapes.get(&key))
            {
                if !old.is_empty() && *old != shape(s) {
                    *coverage = Coverage::Rebuild;
                }
                // Recorded without a shape: the shape is recorded now.
                reshaped = *old != shape(s);
            }
            let exists = views.contains(&(s.schema.to_lowercase(), typed.name.to_lowercase()));
            apply(session, s, &mut typed, mode, exists, &taken)
                .with_context(|| format!("preparing the typed relation of stream {}", s.label()))?;
            if reshaped || recorded.as_ref() != Some(&typed) {
                changed.push(i);
            }
            out[i] = Some(typed);
        }
        let entries: Vec<(&Stream, &Typed)> = changed
            .iter()
            .map(|&i| (&streams[i], out[i].as_ref().expect("prepared above")))
            .collect();
        record_all(session, &entries)
    })?;
    Ok(out.into_iter().map(|t| t.expect("every stream")).collect())
}

/// Reads the registry, and every name a new relation may not take: the
/// recorded relations, the raw tables and their staging twins, and any
/// table or view in the database (someone else's are never replaced).
fn survey(session: &Session) -> Result<Existing> {
    let (known, mut taken, shapes) = read_registry(session)?;
    taken.extend(internal::raw_names(session)?);
    let mut views: HashSet<(String, String)> = HashSet::new();
    for row in session.query(&format!(
        "SELECT lower(schema_name), lower(table_name), false FROM duckdb_tables() WHERE database_name = '{CATALOG}' \
         UNION ALL SELECT lower(schema_name), lower(view_name), true FROM duckdb_views() \
         WHERE database_name = '{CATALOG}' AND NOT internal"
    ))? {
        if let [Some(schema), Some(name), Some(is_view)] = &row[..] {
            if is_view == "true" {
                views.insert((schema.clone(), name.clone()));
            }
            taken.insert((schema.clone(), name.clone()));
        }
    }
    Ok(Existing {
        known,
        taken,
        views,
        shapes,
    })
}

/// The recorded typed relations, by (stream key, lowercase schema), the
/// names they hold (lowercase, with their schema), and the tables' shapes.
type Registry = (
    HashMap<(String, String), Typed>,
    HashSet<(String, String)>,
    HashMap<(String, String), String>,
);

fn read_registry(session: &Session) -> Result<Registry> {
    internal::create_typed_registry(session)?;
    let rows = session.query_values(&format!(
        "SELECT stream_key, lower(schema_name), relation_name, columns, kind, table_columns, \
         watermark, watermark_count, watermark_id, raw_rewrites, definition FROM {}",
        internal::qualified(TYPED_RELATIONS)
    ))?;
    let mut known = HashMap::new();
    let mut names = HashSet::new();
    let mut shapes = HashMap::new();
    for row in rows {
        let [key, schema, name, columns, kind, table_columns, coverage @ .., definition] = &row[..]
        else {
            continue;
        };
        let (Some(key), Some(schema), Some(name)) = (key.as_str(), schema.as_str(), name.as_str())
        else {
            continue;
        };
        names.insert((schema.to_string(), name.to_lowercase()));
        let typed = Typed {
            name: name.to_string(),
            columns: columns
                .as_str()
                .and_then(columns_from_json)
                .unwrap_or_default(),
            materialized: Materialized::read(
                kind.as_str(),
                table_columns.as_str(),
                coverage::from_values(coverage),
                definition.as_str(),
            ),
        };
        let key = (key.to_string(), schema.to_string());
        if kind.as_str() == Some("table") {
            shapes.insert(
                key.clone(),
                definition.as_str().unwrap_or_default().to_string(),
            );
        }
        known.insert(key, typed);
    }
    Ok((known, names, shapes))
}

fn allocate(s: &Stream, taken: &mut HashSet<(String, String)>) -> String {
    let schema = s.schema.to_lowercase();
    // A raw table's name minus its prefix: `_airbyte_raw_users` → `users`.
    let plain = s
        .table
        .strip_prefix(RAW_PREFIX)
        .unwrap_or(&s.base)
        .to_string();
    let name = free_name(&plain, &stream_key(&s.namespace, &s.name), |n| {
        n.is_empty() || taken.contains(&(schema.clone(), n.to_lowercase()))
    });
    if name != plain {
        tracing::warn!(stream = %s.label(), relation = %name, "the typed relation's plain name is taken; using a suffixed name");
    }
    taken.insert((schema, name.to_lowercase()));
    name
}

fn relation(s: &Stream, t: &Typed) -> String {
    qualified(&s.schema, &t.name)
}

/// Where a materialised dedup table keeps the keys whose latest row is a
/// CDC delete (that row, typed), so that a later row only brings a key back
/// if it beats the delete.
fn tombstones(s: &Stream, t: &Typed) -> String {
    internal::qualified(&internal::tombstones(&s.schema, &t.name))
}

/// The internal tables a typed relation may have left (unqualified, in
/// the internal schema).
fn leftovers(s: &Stream, t: &Typed) -> [String; 4] {
    [
        internal::tombstones(&s.schema, &t.name),
        internal::legacy_tombstones(&s.schema, &t.name),
        internal::typed_pending(&s.schema, &t.name),
        internal::typed_staged(&s.schema, &t.name),
    ]
}

fn drop_existing(session: &Session, s: &Stream, t: &Typed) -> Result<()> {
    session.execute(
        &leftovers(s, t)
            .iter()
            .map(|table| format!("DROP TABLE IF EXISTS {};", internal::qualified(table)))
            .collect::<String>(),
    )?;
    match t.materialized {
        Materialized::View { .. } => {
            session.execute(&format!("DROP VIEW IF EXISTS {}", relation(s, t)))?
        }
        Materialized::Table { .. } => {
            session.execute(&format!("DROP TABLE IF EXISTS {}", relation(s, t)))?
        }
        Materialized::Nothing => {}
    }
    Ok(())
}

/// Writes `t` to the registry, flattening [`Materialized`] into the columns
/// the registry has always had.
fn record(session: &Session, s: &Stream, t: &Typed) -> Result<()> {
    record_all(session, &[(s, t)])
}

/// [`record`] for many streams, two statements per hundred: a first sync of
/// a large catalog records every stream, and each statement costs DuckDB a
/// parse. (Batches, because DuckDB limits how deep an expression, such as a
/// chain of `OR`s, may nest.)
fn record_all(session: &Session, entries: &[(&Stream, &Typed)]) -> Result<()> {
    for batch in entries.chunks(100) {
        record_batch(session, batch)?;
    }
    Ok(())
}

fn record_batch(session: &Session, entries: &[(&Stream, &Typed)]) -> Result<()> {
    let null = || "NULL".to_string();
    let mut keys = Vec::with_capacity(entries.len());
    let mut rows = Vec::with_capacity(entries.len());
    for (s, t) in entries {
        let (kind, table_columns, coverage, definition) = match &t.materialized {
            Materialized::Nothing => (null(), null(), Coverage::Rebuild.columns(), null()),
            Materialized::View { definition } => (
                literal("view"),
                null(),
                Coverage::Rebuild.columns(),
                literal(definition),
            ),
            Materialized::Table { columns, coverage } => (
                literal("table"),
                literal(&columns_to_json(columns)),
                coverage.columns(),
                literal(&shape(s)),
            ),
        };
        let [wm, wm_count, wm_id, rewrites] = coverage;
        let key = literal(&stream_key(&s.namespace, &s.name));
        let schema = literal(&s.schema);
        keys.push(format!(
            "(stream_key = {key} AND lower(schema_name) = lower({schema}))"
        ));
        rows.push(format!(
            "({key}, {schema}, {name}, {columns}, {kind}, {table_columns}, {wm}, {wm_count}, \
             {wm_id}, {rewrites}, {definition})",
            name = literal(&t.name),
            columns = literal(&columns_to_json(&t.columns)),
        ));
    }
    session.execute(&format!(
        "DELETE FROM {registry} WHERE {keys}; \
         INSERT INTO {registry} \
         (stream_key, schema_name, relation_name, columns, kind, table_columns, watermark, \
          watermark_count, watermark_id, raw_rewrites, definition) VALUES {rows}",
        keys = keys.join(" OR "),
        rows = rows.join(", "),
        registry = internal::qualified(TYPED_RELATIONS),
    ))?;
    Ok(())
}

fn in_transaction(session: &Session, work: impl FnOnce() -> Result<()>) -> Result<()> {
    let txn = session.begin()?;
    work()?;
    txn.commit().context("committing")
}

/// Brings one stream's typed relation in line with `mode`, inside the
/// caller's transaction. `view_exists`: a view of its name is in the
/// database.
fn apply(
    session: &Session,
    s: &Stream,
    t: &mut Typed,
    mode: TypedOutput,
    view_exists: bool,
    tables: &HashSet<(String, String)>,
) -> Result<()> {
    // Nothing made and no leftover table: nothing to drop (a first sync of
    // a large catalog would otherwise spend a statement of four drops per stream).
    let nothing_to_drop = t.materialized == Materialized::Nothing
        && leftovers(s, t)
            .iter()
            .all(|n| !tables.contains(&(internal::SCHEMA.to_lowercase(), n.to_lowercase())));
    match mode {
        TypedOutput::Views => {
            let q = Query::new(s, &t.columns, true);
            let sql = q.relation();
            let definition = format!("{:016x}", fnv1a64(sql.as_bytes()));
            match &t.materialized {
                Materialized::View { definition: d } if *d == definition && view_exists => {
                    return Ok(())
                }
                Materialized::View { .. } => {}
                // A table of ours under this name goes first.
                _ if nothing_to_drop => {}
                _ => drop_existing(session, s, t)?,
            }
            session.execute(&format!(
                "CREATE OR REPLACE VIEW {} AS {sql}",
                relation(s, t)
            ))?;
            tracing::info!(stream = %s.label(), view = %relation(s, t), "typed view created");
            t.materialized = Materialized::View { definition };
        }
        // Built at the end of the sync.
        TypedOutput::Tables => {}
        TypedOutput::Off => {
            if !nothing_to_drop {
                drop_existing(session, s, t)?;
            }
            t.materialized = Materialized::Nothing;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::duck::Instance;

    /// The registry keeps its flat columns; every state reads back as it
    /// was written, so existing databases and this code agree.
    #[test]
    fn materialized_round_trips_through_the_registry() {
        let session = Instance::open(":memory:", &[]).unwrap();
        session
            .execute(&format!("ATTACH ':memory:' AS {CATALOG}"))
            .unwrap();
        internal::create_typed_registry(&session).unwrap();
        let text = r#"{"streams":[{"stream":{"name":"s"},"destination_sync_mode":"append"}]}"#;
        let catalog = Catalog::parse(text, "main").unwrap();
        let s = &catalog.streams[0];
        let columns = vec![Column {
            property: "id".into(),
            name: "id".into(),
            ty: ColType::Bigint,
        }];
        let states = [
            Materialized::Nothing,
            Materialized::View {
                definition: "00000000000000ff".into(),
            },
            Materialized::Table {
                columns: columns.clone(),
                coverage: Coverage::UpTo {
                    rowid: 7,
                    seen: coverage::Seen {
                        count: 8,
                        last_id: Some("it's".into()),
                        rewrites: 3,
                    },
                },
            },
            Materialized::Table {
                columns: columns.clone(),
                coverage: Coverage::All {
                    seen: coverage::Seen {
                        count: 0,
                        last_id: None,
                        rewrites: 0,
                    },
                },
            },
            Materialized::Table {
                columns: Vec::new(),
                coverage: Coverage::Rebuild,
            },
        ];
        for materialized in states {
            let t = Typed {
                name: "S".into(),
                columns: columns.clone(),
                materialized,
            };
            record(&session, s, &t).unwrap();
            let (known, names, _) = read_registry(&session).unwrap();
            assert_eq!(known.len(), 1, "one record per stream");
            assert_eq!(known.get(&(stream_key("", "s"), "main".into())), Some(&t));
            assert!(names.contains(&("main".into(), "s".into())));
        }
    }

    #[test]
    fn unreadable_records_read_as_states_that_rebuild() {
        let seen = || Coverage::All {
            seen: coverage::Seen {
                count: 2,
                last_id: Some("x".into()),
                rewrites: 0,
            },
        };
        assert_eq!(
            Materialized::read(Some("view"), None, Coverage::Rebuild, None),
            Materialized::View {
                definition: String::new()
            }
        );
        assert_eq!(
            Materialized::read(Some("table"), Some("not json"), seen(), None),
            Materialized::Table {
                columns: Vec::new(),
                coverage: Coverage::Rebuild
            }
        );
        assert_eq!(
            Materialized::read(None, Some("[]"), seen(), Some("ab")),
            Materialized::Nothing
        );
    }
}
