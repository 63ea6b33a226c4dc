//! The registry of names for the connector's own objects: its bookkeeping
//! tables, the staging twin of a raw table, the tombstones of a typed
//! table, and the work tables of a merge. Every such name is made here, and
//! so are the allocation rules the raw tables (`pipeline::tables`) and the
//! typed relations (`typed`) share: the stream key, the hashed suffix a
//! taken name gets ([`free_name`]), and which typed names are recorded. Both
//! sides depend on this module and neither on the other, so each can read
//! what the other has claimed without a module cycle.
//!
//! The rule that keeps them apart from stream data: bookkeeping, tombstones
//! and work tables live in [`SCHEMA`] (`_airbyte_internal`), which no
//! namespace maps to (`names::normalize_schema` moves such a namespace to
//! `__airbyte_internal`). Inside it, tombstone names are built from the
//! typed relation's (schema, name), which the typed registry keeps unique,
//! joined by `.`, a character normalized names never hold; so two streams
//! never share one. A staging table sits beside its raw table and is
//! reserved with it when the raw table's name is chosen (`tables::assign`).

use std::collections::HashSet;

use anyhow::{Context, Result};

use crate::duck::Session;
use crate::names::{self, literal, qualified_schema};

pub use crate::names::INTERNAL_SCHEMA as SCHEMA;

/// Prefix of every raw table: `_airbyte_raw_<stream>`.
pub const RAW_PREFIX: &str = "_airbyte_raw_";
/// Prefix of the staging table of a truncating stream.
pub const STAGING_PREFIX: &str = "_airbyte_tmp_raw_";

/// Which stream writes which raw table.
pub const STREAM_TABLES: &str = "stream_tables";
/// Each stream's typed relation, its columns and refresh watermark.
pub const TYPED_RELATIONS: &str = "typed_relations";
/// The mark a sync leaves in the file each time it lets go of it (one row,
/// a new UUID each time): taking the file back, it must find its own mark,
/// so that a file put back from an older copy is noticed.
pub const RELEASE_MARK: &str = "release_mark";

/// The macro of a typing rule (`typed::sql`'s `Rule`; `rule` is its name
/// and version), fully qualified: `typed_<rule>`. Macros and tables are
/// named apart in DuckDB, so these meet none of the tables here.
pub fn typing_rule(rule: &str) -> String {
    qualified(&rule_macro(rule))
}

/// [`typing_rule`] as a view names it: schema and name only, so that it
/// binds in the view's own catalog.
pub fn typing_rule_in_view(rule: &str) -> String {
    format!(
        "{}.{}",
        names::quote(SCHEMA),
        names::quote(&rule_macro(rule))
    )
}

fn rule_macro(rule: &str) -> String {
    format!("typed_{rule}")
}

/// The table `check` creates and drops in its probe transaction, in the
/// config's schema: its name is new each time, so it can meet nothing.
pub fn probe_table() -> String {
    format!(
        "_airbyte_connection_check_{}",
        uuid::Uuid::new_v4().simple()
    )
}

/// A bookkeeping table, fully qualified.
pub fn qualified(object: &str) -> String {
    names::qualified(SCHEMA, object)
}

/// The staging table that goes with the raw table `raw`.
pub fn staging_of(raw: &str) -> String {
    let stream_part = raw.strip_prefix(RAW_PREFIX).unwrap_or(raw);
    format!("{STAGING_PREFIX}{stream_part}")
}

/// The name of the table that keeps the CDC-deleted keys of the typed table
/// `relation` in `schema`.
pub fn tombstones(schema: &str, relation: &str) -> String {
    format!("deleted.{schema}.{relation}")
}

/// The table of records that a stream's typed table, written as records
/// arrive, leaves to SQL: emptied at every commit.
pub fn typed_pending(schema: &str, relation: &str) -> String {
    format!("pending.{schema}.{relation}")
}

/// The typed rows of a deduplicated stream's records that await the merge
/// into its typed table at the end of the sync (or the next sync's start,
/// after a crash).
pub fn typed_staged(schema: &str, relation: &str) -> String {
    format!("staged.{schema}.{relation}")
}

/// What tombstones were called before names were kept apart by `.`
/// (`deleted__<schema>__<relation>`, which two streams could share);
/// dropped when a typed table is rebuilt.
pub fn legacy_tombstones(schema: &str, relation: &str) -> String {
    format!("deleted__{schema}__{relation}")
}

/// The work tables of a dedup merge, created and dropped inside its
/// transaction.
#[derive(Debug, Clone, Copy)]
pub enum Work {
    /// New raw rows, typed.
    New,
    /// New rows with the table's and tombstones' rows of the same keys.
    All,
    /// The latest row of each key.
    Latest,
}

impl Work {
    pub fn qualified(self) -> String {
        qualified(match self {
            Work::New => "_airbyte_merge_new",
            Work::All => "_airbyte_merge_all",
            Work::Latest => "_airbyte_merge_latest",
        })
    }
}

/// The registry key of a stream: a JSON array `[namespace, name]` (JSON so
/// that any character, NUL included, round-trips through SQL text). Exact,
/// not normalized: two streams that normalize alike still have two keys.
pub fn stream_key(namespace: &str, name: &str) -> String {
    serde_json::to_string(&(namespace, name)).expect("strings serialize")
}

/// FNV-1a, 64 bit: small, stable across versions and platforms, so a
/// suffix chosen once is chosen again by any later version.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// `plain` if `taken` says it is free, else `plain_<hash of the stream
/// key>`, then with `_2`, `_3`, ... until one is free: a name that stays
/// the same for the same stream and never takes another's.
pub fn free_name(plain: &str, stream_key: &str, taken: impl Fn(&str) -> bool) -> String {
    if !taken(plain) {
        return plain.to_string();
    }
    let hashed = format!("{plain}_{:08x}", fnv1a64(stream_key.as_bytes()) as u32);
    let mut name = hashed.clone();
    let mut n = 2;
    while taken(&name) {
        name = format!("{hashed}_{n}");
        n += 1;
    }
    name
}

/// Creates the stream/table registry (idempotent). `rewrites` came later
/// than the table, hence the `ADD COLUMN` for databases made before.
pub fn create_stream_registry(session: &Session) -> Result<()> {
    let registry = qualified(STREAM_TABLES);
    session
        .execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {}; \
             CREATE TABLE IF NOT EXISTS {registry} \
             (stream_key VARCHAR, schema_name VARCHAR, table_name VARCHAR, \
              recorded_at TIMESTAMP WITH TIME ZONE DEFAULT current_timestamp, \
              rewrites BIGINT DEFAULT 0); \
             ALTER TABLE {registry} ADD COLUMN IF NOT EXISTS rewrites BIGINT DEFAULT 0",
            qualified_schema(SCHEMA),
        ))
        .context("creating the stream/table registry")
}

/// The statement that records, for each stream in `streams`, that its raw
/// rows changed other than by appending (an overwrite replaced them, the
/// table was made again or adopted): its rewrite count goes up, in the
/// caller's transaction, so no typed table's coverage recorded before
/// still matches (`typed::coverage`). None for no streams.
pub fn count_rewrites(streams: &[RawOf<'_>]) -> Option<String> {
    let keys: Vec<String> = streams
        .iter()
        .map(|raw| format!("({}, {})", literal(&raw.key), literal(raw.schema)))
        .collect();
    // One statement however many streams (a first sync of a large catalog
    // makes every table).
    (!keys.is_empty()).then(|| {
        format!(
            "UPDATE {r} SET rewrites = coalesce({r}.rewrites, 0) + 1 FROM (VALUES {}) v(k, s) \
             WHERE {r}.stream_key = v.k AND lower({r}.schema_name) = lower(v.s)",
            keys.join(", "),
            r = qualified(STREAM_TABLES),
        )
    })
}

/// An SQL expression: a stream's raw table's rewrite count now (see
/// [`count_rewrites`]).
pub fn raw_rewrites(raw: &RawOf<'_>) -> String {
    format!(
        "(SELECT coalesce(max(rewrites), 0) FROM {} \
         WHERE stream_key = {} AND lower(schema_name) = lower({}))",
        qualified(STREAM_TABLES),
        literal(&raw.key),
        literal(raw.schema)
    )
}

/// Whose raw table: a stream's key ([`stream_key`]) and schema, as the
/// stream/table registry records them.
pub struct RawOf<'a> {
    pub key: String,
    pub schema: &'a str,
}

impl<'a> RawOf<'a> {
    pub fn new(namespace: &str, name: &str, schema: &'a str) -> Self {
        RawOf {
            key: stream_key(namespace, name),
            schema,
        }
    }
}

/// Creates the typed relation registry (idempotent). `definition`,
/// `watermark_id` and `raw_rewrites` came later than the table, hence the
/// `ADD COLUMN`s for databases made before.
pub fn create_typed_registry(session: &Session) -> Result<()> {
    let registry = qualified(TYPED_RELATIONS);
    session
        .execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {}; \
             CREATE TABLE IF NOT EXISTS {registry} \
             (stream_key VARCHAR, schema_name VARCHAR, relation_name VARCHAR, \
              columns VARCHAR, kind VARCHAR, table_columns VARCHAR, \
              watermark BIGINT, watermark_count BIGINT, \
              updated_at TIMESTAMP WITH TIME ZONE DEFAULT current_timestamp, \
              definition VARCHAR, watermark_id VARCHAR, raw_rewrites BIGINT); \
             ALTER TABLE {registry} ADD COLUMN IF NOT EXISTS definition VARCHAR; \
             ALTER TABLE {registry} ADD COLUMN IF NOT EXISTS watermark_id VARCHAR; \
             ALTER TABLE {registry} ADD COLUMN IF NOT EXISTS raw_rewrites BIGINT",
            qualified_schema(SCHEMA)
        ))
        .context("creating the typed relation registry")
}

/// The typed relation names recorded per schema (both lowercase), so that
/// raw tables never take them.
pub fn typed_names(session: &Session) -> Result<HashSet<(String, String)>> {
    create_typed_registry(session)?;
    Ok(session.query_pairs(&format!(
        "SELECT lower(schema_name), lower(relation_name) FROM {}",
        qualified(TYPED_RELATIONS)
    ))?)
}

/// The raw tables recorded per schema and their staging twins (both
/// lowercase), so that typed relations never take them.
pub fn raw_names(session: &Session) -> Result<HashSet<(String, String)>> {
    let mut names = HashSet::new();
    for (schema, table) in session.query_pairs(&format!(
        "SELECT lower(schema_name), lower(table_name) FROM {}",
        qualified(STREAM_TABLES)
    ))? {
        names.insert((schema.clone(), staging_of(&table)));
        names.insert((schema, table));
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tombstones_of_distinct_relations_never_share_a_name() {
        // Separators inside names cannot make two pairs meet: `.` is not in
        // the alphabet of normalized names.
        assert_ne!(tombstones("a__b", "c"), tombstones("a", "b__c"));
        assert_eq!(staging_of("_airbyte_raw_users"), "_airbyte_tmp_raw_users");
    }

    #[test]
    fn fnv_reference_values() {
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
    }
}
