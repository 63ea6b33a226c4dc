//! The typed relation registry (`_airbyte_internal.typed_relations`), read
//! and written here only: each stream's typed relation, its name and
//! columns, and what this connector made of it ([`Materialized`]: a view,
//! or a table and the raw rows it covers); and the objects that belong to a
//! typed relation (its tombstones, pending and staged rows), named through
//! [`crate::internal`].

use std::collections::{HashMap, HashSet};

use anyhow::{Context, Result};

use super::coverage::{self, Coverage};
use super::types::{columns_from_json, columns_to_json, Column};
use crate::catalog::Stream;
use crate::duck::{ResultRow, Session};
use crate::internal::{self, fnv1a64, stream_key, TYPED_RELATIONS};
use crate::names::CATALOG;
use crate::names::{literal, qualified};

/// What the typed relation of one stream is and holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Typed {
    /// The relation's name (unquoted), in the stream's schema.
    pub name: String,
    pub columns: Vec<Column>,
    /// What exists in the database now.
    pub(super) materialized: Materialized,
}

/// What this connector has made of a typed relation. One enum rather than a
/// kind and three optionals, so a view never carries a coverage nor a
/// table a view's hash. The registry keeps flat columns (`kind`,
/// `table_columns`, the coverage's, `definition`) so every database reads
/// the same; [`Materialized::read`] and [`record`] convert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Materialized {
    /// Nothing: typed output is off, or the table is not built yet.
    Nothing,
    /// A view. `definition` is a hash of its SQL: an unchanged view is not
    /// recreated (binding one costs DuckDB tens of milliseconds). None: a
    /// view recorded before hashes were, made again once.
    View { definition: Option<String> },
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
    pub(super) fn read(
        kind: Option<&str>,
        table_columns: Option<&str>,
        coverage: Coverage,
        definition: Option<&str>,
    ) -> Materialized {
        match kind {
            Some("view") => Materialized::View {
                definition: definition.map(str::to_string),
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
pub(super) struct Existing {
    /// Recorded relations by (stream key, lowercase schema).
    pub(super) known: HashMap<(String, String), Typed>,
    /// Names no new relation may take, per schema (lowercase).
    pub(super) taken: HashSet<(String, String)>,
    /// Views in the database (lowercase), to notice one dropped by hand.
    pub(super) views: HashSet<(String, String)>,
    /// The recorded [`shape`] of each table, by the keys of `known` (None
    /// for tables recorded before shapes were, taken as they are).
    pub(super) shapes: HashMap<(String, String), Option<String>>,
}

/// What a typed table's rows are, besides its columns: every raw row, or
/// the latest row per primary key by cursor. Recorded with a table; a table
/// of another shape is rebuilt, not merged into.
pub(super) fn shape(s: &Stream) -> String {
    if !s.dedup {
        return "append".to_string();
    }
    let key = serde_json::to_string(&(&s.primary_key, &s.cursor_field)).expect("strings serialize");
    format!("dedup:{:016x}", fnv1a64(key.as_bytes()))
}

/// Reads the registry, and every name a new relation may not take: the
/// recorded relations, the raw tables and their staging twins, and any
/// table or view in the database (someone else's are never replaced).
pub(super) fn survey(session: &Session) -> Result<Existing> {
    let (known, mut taken, shapes) = read_registry(session)?;
    taken.extend(internal::raw_names(session)?);
    let mut views: HashSet<(String, String)> = HashSet::new();
    for row in session.query_values(&format!(
        "SELECT lower(schema_name), lower(table_name), false FROM duckdb_tables() WHERE database_name = '{CATALOG}' \
         UNION ALL SELECT lower(schema_name), lower(view_name), true FROM duckdb_views() \
         WHERE database_name = '{CATALOG}' AND NOT internal"
    ))? {
        let row = ResultRow(row);
        if let (Some(schema), Some(name), Some(is_view)) = (row.text(0), row.text(1), row.bool(2)) {
            let pair = (schema.to_string(), name.to_string());
            if is_view {
                views.insert(pair.clone());
            }
            taken.insert(pair);
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
    HashMap<(String, String), Option<String>>,
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
        // A table's `definition` is its shape (a view's, its hash).
        if matches!(typed.materialized, Materialized::Table { .. }) {
            shapes.insert(key.clone(), definition.as_str().map(str::to_string));
        }
        known.insert(key, typed);
    }
    Ok((known, names, shapes))
}

pub(super) fn relation(s: &Stream, t: &Typed) -> String {
    qualified(&s.schema, &t.name)
}

/// The tables that go with stream `s`'s raw rows when they are replaced
/// (an overwrite's swap), as (schema, name): its typed table and
/// tombstones, so that no typed row outlives its raw row if the sync is cut
/// off before the table is rebuilt (the next chance rebuilds it: a missing
/// table is never current). None unless the typed relation is a table.
pub fn dropped_with_raw_rows(s: &Stream, t: &Typed) -> Vec<(String, String)> {
    match t.materialized {
        Materialized::Table { .. } => vec![
            (s.schema.clone(), t.name.clone()),
            (
                internal::SCHEMA.to_string(),
                internal::tombstones(&s.schema, &t.name),
            ),
        ],
        _ => Vec::new(),
    }
}

/// Where a materialised dedup table keeps the keys whose latest row is a
/// CDC delete (that row, typed), so that a later row only brings a key back
/// if it beats the delete.
pub(super) fn tombstones(s: &Stream, t: &Typed) -> String {
    internal::qualified(&internal::tombstones(&s.schema, &t.name))
}

/// The internal tables a typed relation may have left (unqualified, in
/// the internal schema).
pub(super) fn leftovers(s: &Stream, t: &Typed) -> [String; 4] {
    [
        internal::tombstones(&s.schema, &t.name),
        internal::legacy_tombstones(&s.schema, &t.name),
        internal::typed_pending(&s.schema, &t.name),
        internal::typed_staged(&s.schema, &t.name),
    ]
}

pub(super) fn drop_existing(session: &Session, s: &Stream, t: &Typed) -> Result<()> {
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
pub(super) fn record(session: &Session, s: &Stream, t: &Typed) -> Result<()> {
    record_all(session, &[(s, t)])
}

/// [`record`] for many streams, two statements per hundred: a first sync of
/// a large catalog records every stream, and each statement costs DuckDB a
/// parse. (Batches, because DuckDB limits how deep an expression, such as a
/// chain of `OR`s, may nest.)
pub(super) fn record_all(session: &Session, entries: &[(&Stream, &Typed)]) -> Result<()> {
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
                definition.as_deref().map_or_else(null, literal),
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

pub(super) fn in_transaction(session: &Session, work: impl FnOnce() -> Result<()>) -> Result<()> {
    let txn = session.begin()?;
    work()?;
    txn.commit().context("committing")
}

#[cfg(test)]
mod tests {
    use super::super::types::ColType;
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
                definition: Some("00000000000000ff".into()),
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
            Materialized::View { definition: None }
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
