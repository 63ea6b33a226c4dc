//! SQL identifiers: Airbyte's standard name transformation, the schema
//! names DuckDB keeps for itself, and quoting.
//!
//! Every schema and table name that reaches SQL goes through [`quote`], and
//! every relation through [`qualified`] (catalog, schema, object), so no
//! stream or namespace name can change the statement that runs or confuse
//! DuckDB's name resolution, whatever it contains.

use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

/// The name the destination database is attached under: the catalog part
/// of every qualified name.
pub const CATALOG: &str = "destination";

/// The schema of the connector's own bookkeeping. No namespace maps to it
/// (see [`normalize_schema`]).
pub const INTERNAL_SCHEMA: &str = "_airbyte_internal";

/// Schema names a namespace cannot take as they are: DuckDB's own schemas
/// (which it refuses to create), the names of the catalogs a session has
/// (`temp`, `system`, `memory`, and [`CATALOG`]: a two-part name such as
/// `temp.users` in a view or a user's query would be ambiguous), and the
/// connector's internal schema. Compared case-insensitively.
pub const RESERVED_SCHEMAS: [&str; 7] = [
    "information_schema",
    "pg_catalog",
    "temp",
    "system",
    "memory",
    CATALOG,
    INTERNAL_SCHEMA,
];

/// Airbyte's standard name transformer (`StandardNameTransformer`,
/// `Names.toAlphanumericAndUnderscore`): Unicode NFKD, combining marks
/// (accents) dropped, each run of whitespace to one `_`, and every other
/// character outside `[A-Za-z0-9_]` to `_`. A name left empty (`""`, or
/// only combining marks) becomes `_`: DuckDB refuses empty identifiers.
///
/// `"stream-with:spécial:character_names"` becomes
/// `"stream_with_special_character_names"`.
pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_whitespace = false;
    for c in name.nfkd().filter(|c| !is_combining_mark(*c)) {
        if c.is_whitespace() {
            if !in_whitespace {
                out.push('_');
            }
            in_whitespace = true;
            continue;
        }
        in_whitespace = false;
        out.push(if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        });
    }
    if out.is_empty() {
        out.push('_');
    }
    out
}

/// A schema name from a namespace or the config: [`normalize`], and a leading
/// `_` when it would start with a digit (Airbyte's namespace test case
/// `99namespace` -> `_99namespace`) or is one of [`RESERVED_SCHEMAS`]
/// (`temp` -> `_temp`, `_airbyte_internal` -> `__airbyte_internal`).
pub fn normalize_schema(name: &str) -> String {
    let n = normalize(name);
    let reserved = RESERVED_SCHEMAS.iter().any(|r| r.eq_ignore_ascii_case(&n));
    if reserved || n.starts_with(|c: char| c.is_ascii_digit()) {
        format!("_{n}")
    } else {
        n
    }
}

/// `"destination"."<schema>"."<object>"`: how every statement names a
/// table or view of the destination.
pub fn qualified(schema: &str, object: &str) -> String {
    format!("{}.{}.{}", quote(CATALOG), quote(schema), quote(object))
}

/// `"destination"."<schema>"`.
pub fn qualified_schema(schema: &str) -> String {
    format!("{}.{}", quote(CATALOG), quote(schema))
}

/// Quotes an identifier for DuckDB: wrapped in double quotes, inner double
/// quotes doubled. Normalized names never contain quotes, but quoting does
/// not rely on that.
pub fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// Quotes a string literal for DuckDB (`'it''s'`).
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn airbyte_examples() {
        assert_eq!(
            normalize("stream-with:spécial:character_names"),
            "stream_with_special_character_names"
        );
        assert_eq!(
            normalize("namespace_with_spécial_character"),
            "namespace_with_special_character"
        );
        assert_eq!(normalize("99namespace"), "99namespace");
        assert_eq!(normalize("a  \t b"), "a_b");
        assert_eq!(normalize("Ünïcödé"), "Unicode");
        assert_eq!(normalize("x\"; DROP TABLE t; --"), "x___DROP_TABLE_t____");
        assert_eq!(normalize(""), "_");
        assert_eq!(normalize("\u{301}\u{302}"), "_");
        assert_eq!(normalize("ﬁ"), "fi");
        assert_eq!(normalize_schema("99namespace"), "_99namespace");
        assert_eq!(normalize_schema("\u{301}"), "_");
        for (name, schema) in [
            ("temp", "_temp"),
            ("Temp", "_Temp"),
            ("information_schema", "_information_schema"),
            ("pg_catalog", "_pg_catalog"),
            ("_airbyte_internal", "__airbyte_internal"),
            ("main", "main"),
            ("destination", "_destination"),
        ] {
            assert_eq!(normalize_schema(name), schema);
        }
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("a\"b"), "\"a\"\"b\"");
        assert_eq!(literal("it's"), "'it''s'");
    }
}
