//! SQL identifiers: Airbyte's standard name transformation, and quoting.
//!
//! Every schema and table name that reaches SQL goes through [`quote`], so no
//! stream or namespace name can change the statement that runs, whatever it
//! contains.

use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

/// Airbyte's standard name transformer (`StandardNameTransformer`,
/// `Names.toAlphanumericAndUnderscore`): Unicode NFKD, combining marks
/// (accents) dropped, each run of whitespace to one `_`, and every other
/// character outside `[A-Za-z0-9_]` to `_`.
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
    out
}

/// A schema name from a namespace or the config: [`normalize`], and a leading
/// `_` when it would start with a digit (Airbyte's namespace test case
/// `99namespace` -> `_99namespace`).
pub fn normalize_schema(name: &str) -> String {
    let n = normalize(name);
    if n.starts_with(|c: char| c.is_ascii_digit()) {
        format!("_{n}")
    } else {
        n
    }
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
        assert_eq!(normalize(""), "");
        assert_eq!(normalize("ﬁ"), "fi");
        assert_eq!(normalize_schema("99namespace"), "_99namespace");
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("a\"b"), "\"a\"\"b\"");
        assert_eq!(literal("it's"), "'it''s'");
    }
}
