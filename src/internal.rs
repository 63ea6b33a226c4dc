//! The registry of names for the connector's own objects: its bookkeeping
//! tables, the staging twin of a raw table, the tombstones of a typed
//! table, and the work tables of a merge. Every such name is made here.
//!
//! The rule that keeps them apart from stream data: bookkeeping, tombstones
//! and work tables live in [`SCHEMA`] (`_airbyte_internal`), which no
//! namespace maps to (`names::normalize_schema` moves such a namespace to
//! `__airbyte_internal`). Inside it, tombstone names are built from the
//! typed relation's (schema, name), which the typed registry keeps unique,
//! joined by `.`, a character normalized names never hold; so two streams
//! never share one. A staging table sits beside its raw table and is
//! reserved with it when the raw table's name is chosen (`tables::assign`).

use crate::names;

pub use crate::names::INTERNAL_SCHEMA as SCHEMA;

/// Prefix of every raw table: `_airbyte_raw_<stream>`.
pub const RAW_PREFIX: &str = "_airbyte_raw_";
/// Prefix of the staging table of a truncating stream.
pub const STAGING_PREFIX: &str = "_airbyte_tmp_raw_";

/// Which stream writes which raw table.
pub const STREAM_TABLES: &str = "stream_tables";
/// Each stream's typed relation, its columns and refresh watermark.
pub const TYPED_RELATIONS: &str = "typed_relations";

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
}
