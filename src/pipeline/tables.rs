//! Which table each stream writes: decided once per stream, remembered in
//! the database, never changed afterwards.
//!
//! A stream's raw table is `_airbyte_raw_<normalized name>` in its schema.
//! DuckDB compares identifiers case-insensitively, so distinct streams can
//! normalize to the same table (`Users` and `users`, `a-b` and `a b`). The
//! rule:
//!
//! 1. A stream seen before keeps the table recorded for it in
//!    `_airbyte_internal.stream_tables` (keyed by its exact namespace and
//!    name, and the schema).
//! 2. New streams are taken in (namespace, name) order. Each gets the plain
//!    name unless another stream already holds that table (compared
//!    case-insensitively); then it gets `_airbyte_raw_<name>_<hash>`, where
//!    `<hash>` is 8 hex digits of the FNV-1a 64-bit hash of the stream's key
//!    (its low 32 bits), and `_2`, `_3`, ... should even that be taken
//!    (`internal::free_name`, which typed relations share).
//! 3. The choice is recorded. A table that exists but is not recorded (made
//!    by the official connector, say) goes to the first stream that claims
//!    it, and is adopted. A view is never taken over: the stream gets the
//!    suffixed name.
//!
//! Adding a stream later therefore never renames an existing stream's table.

use std::collections::{HashMap, HashSet};

use anyhow::{Context, Result};

use crate::catalog::Stream;
use crate::duck::Session;
use crate::internal::{self, free_name, stream_key, RAW_PREFIX, STREAM_TABLES};
use crate::names::{literal, CATALOG};

/// Sets `table` and `staging_table` of every stream, recording new choices.
pub fn assign(session: &Session, streams: &mut [Stream]) -> Result<()> {
    // One transaction, one commit: the registries and the new names.
    let txn = session.begin().context("starting a transaction")?;
    assign_in(session, streams)?;
    txn.commit().context("committing the stream/table registry")
}

fn assign_in(session: &Session, streams: &mut [Stream]) -> Result<()> {
    let registry = internal::qualified(STREAM_TABLES);
    internal::create_stream_registry(session)?;
    let rows = session
        .query(&format!(
            "SELECT stream_key, schema_name, table_name FROM {registry}"
        ))
        .context("reading the stream/table registry")?;
    // Keyed by stream and schema: a stream without a namespace moves to
    // another schema when the config's `schema` changes.
    let mut known: HashMap<(String, String), String> = HashMap::new();
    // Views (yours, or another stream's typed view) cannot be appended to:
    // a raw table never takes a view's name. Tables can be adopted (rule 3).
    let mut taken: HashSet<(String, String)> = session.query_pairs(&format!(
        "SELECT lower(schema_name), lower(view_name) FROM duckdb_views() \
         WHERE database_name = '{CATALOG}' AND NOT internal"
    ))?;
    for row in rows {
        if let [Some(key), Some(schema), Some(table)] = &row[..] {
            taken.insert((schema.to_lowercase(), table.to_lowercase()));
            known.insert((key.clone(), schema.to_lowercase()), table.clone());
        }
    }
    let mut fresh: Vec<usize> = Vec::new();
    for (i, s) in streams.iter_mut().enumerate() {
        match known.get(&(stream_key(&s.namespace, &s.name), s.schema.to_lowercase())) {
            Some(table) => set_table(s, table.clone()),
            None => fresh.push(i),
        }
    }
    fresh.sort_by(|&a, &b| {
        (&streams[a].namespace, &streams[a].name).cmp(&(&streams[b].namespace, &streams[b].name))
    });
    // Typed relations' names are off limits too, for the raw table and for
    // its staging twin.
    let typed_names = internal::typed_names(session)?;
    let clashes = |taken: &HashSet<(String, String)>, schema: &str, table: &str| {
        let table = table.to_lowercase();
        let staging = internal::staging_of(&table);
        taken.contains(&(schema.to_string(), table.clone()))
            || typed_names.contains(&(schema.to_string(), table))
            || typed_names.contains(&(schema.to_string(), staging))
    };
    let mut inserts = Vec::new();
    for i in fresh {
        let s = &mut streams[i];
        let schema = s.schema.to_lowercase();
        let plain = format!("{RAW_PREFIX}{}", s.base);
        let key = stream_key(&s.namespace, &s.name);
        let table = free_name(&plain, &key, |t| clashes(&taken, &schema, t));
        if table != plain {
            tracing::warn!(
                stream = %s.label(),
                table = %table,
                "stream name collides with another stream's table (DuckDB names are case-insensitive); using a suffixed table"
            );
        }
        taken.insert((schema, table.to_lowercase()));
        inserts.push(format!(
            "({}, {}, {})",
            literal(&key),
            literal(&s.schema),
            literal(&table)
        ));
        set_table(s, table);
    }
    if !inserts.is_empty() {
        session
            .execute(&format!(
                "INSERT INTO {registry} (stream_key, schema_name, table_name) VALUES {}",
                inserts.join(", ")
            ))
            .context("recording stream tables")?;
    }
    Ok(())
}

fn set_table(s: &mut Stream, table: String) {
    s.staging_table = internal::staging_of(&table);
    s.table = table;
}
