//! The layout of a raw table: the five columns every raw table, overwrite
//! staging table and typed pending table has, and their types. One list,
//! so that the tables the sink creates, the typed tables' metadata columns
//! and the pending tables cannot drift apart. Also the `_airbyte_meta` text
//! of a raw row ([`MetaText`]), which typed rows start from.

use crate::catalog::Stream;

/// The raw columns, in table order.
pub const COLUMNS: [&str; 5] = [
    "_airbyte_ab_id",
    "_airbyte_emitted_at",
    "_airbyte_data",
    "_airbyte_meta",
    "_airbyte_generation_id",
];

/// The DuckDB type of each of [`COLUMNS`].
const TYPES: [&str; 5] = [
    "VARCHAR",
    "TIMESTAMP WITH TIME ZONE",
    "JSON",
    "JSON",
    "BIGINT",
];

/// The type of raw column `name`, if it is one.
pub fn column_type(name: &str) -> Option<&'static str> {
    COLUMNS.iter().position(|c| *c == name).map(|i| TYPES[i])
}

/// `name TYPE, ...` of the raw columns, for `CREATE TABLE`.
pub fn create_columns() -> String {
    COLUMNS
        .iter()
        .zip(TYPES)
        .map(|(c, t)| format!("{c} {t}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A stream's `_airbyte_meta` text, as the raw rows (and typed rows) get
/// it: `{"sync_id":..,"changes":[]}` for records without changes, and the
/// text up to `changes` for records with.
pub struct MetaText {
    pub plain: String,
    pub prefix: String,
}

impl MetaText {
    pub fn of(s: &Stream) -> MetaText {
        let sync_id = s.sync_id.map_or("null".to_string(), |s| s.to_string());
        MetaText {
            plain: format!("{{\"sync_id\":{sync_id},\"changes\":[]}}"),
            prefix: format!("{{\"sync_id\":{sync_id},\"changes\":"),
        }
    }

    /// The meta of a record with `changes` (written into `buf` if it has
    /// any).
    pub fn text<'a>(&'a self, changes: Option<&str>, buf: &'a mut String) -> &'a str {
        match changes {
            None => &self.plain,
            Some(changes) => {
                buf.clear();
                buf.push_str(&self.prefix);
                buf.push_str(changes);
                buf.push('}');
                buf
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_columns_lists_every_column_with_its_type() {
        assert_eq!(
            create_columns(),
            "_airbyte_ab_id VARCHAR, _airbyte_emitted_at TIMESTAMP WITH TIME ZONE, \
             _airbyte_data JSON, _airbyte_meta JSON, _airbyte_generation_id BIGINT"
        );
        assert_eq!(column_type("_airbyte_meta"), Some("JSON"));
        assert_eq!(column_type("x"), None);
    }
}
