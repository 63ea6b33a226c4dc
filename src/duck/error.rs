//! DuckDB errors as the program sees them: DuckDB's error type and
//! scrubbed text, never the raw message.

use libduckdb_sys as ffi;

/// An error reported by DuckDB (or by this layer), with text that is safe
/// to show.
///
/// DuckDB's messages quote what they could not handle: a value that did not
/// convert, a duplicate key, a line of JSON. Those can be record contents,
/// which must never reach a TRACE message or a log line. So DuckDB's text
/// passes through [`scrub`] here, where it enters the program, and the raw
/// text is never kept: no later code can leak it.
#[derive(Debug, Clone)]
pub struct DuckError {
    /// DuckDB's error type (`duckdb_error_type`), when it gave one.
    pub(super) kind: Option<ffi::duckdb_error_type>,
    pub(super) text: String,
}

impl std::fmt::Display for DuckError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for DuckError {}

impl DuckError {
    /// An error this layer describes itself (no DuckDB text in it).
    pub fn ours(text: impl Into<String>) -> Self {
        DuckError {
            kind: None,
            text: text.into(),
        }
    }

    /// An error DuckDB reported, of `kind` when known.
    pub(super) fn duckdb(raw: &str, kind: Option<ffi::duckdb_error_type>) -> Self {
        DuckError {
            kind,
            text: scrub(raw, kind),
        }
    }

    /// The scrubbed text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// An input/output error (a file DuckDB could not open, lock, read or
    /// write).
    pub fn is_io(&self) -> bool {
        self.kind == Some(ffi::duckdb_error_type_DUCKDB_ERROR_IO)
    }

    /// DuckDB's wording when another process holds the file lock. DuckDB
    /// gives lock conflicts no error type of their own (they are IO errors,
    /// like every other file failure), so the text decides.
    pub fn is_lock_conflict(&self) -> bool {
        self.text.contains("Could not set lock") || self.text.contains("Conflicting lock")
    }

    /// DuckDB has no error type for "the file system refused": its IO errors
    /// carry the operating system's words, which the text decides on (a
    /// folder where the `.wal` should go counts too). Not narrowed to IO
    /// errors either: `duckdb_open_ext` reports its failures untyped.
    pub fn is_permission_denied(&self) -> bool {
        [
            "Permission denied",
            "Read-only file system",
            "read-only",
            "Is a directory",
            "Not a directory",
        ]
        .iter()
        .any(|w| self.text.contains(w))
    }

    /// A `ROLLBACK` with no transaction open (DuckDB has already ended one
    /// whose `COMMIT` failed). The type says "transaction"; only the text
    /// says which transaction error, as DuckDB has no finer type.
    pub(super) fn is_no_transaction(&self) -> bool {
        self.kind == Some(ffi::duckdb_error_type_DUCKDB_ERROR_TRANSACTION)
            && self.text.contains("no transaction is active")
    }
}

/// Whether error text names a full disk or a file-size limit: no DuckDB
/// error type says so, so the OS's words decide (in DuckDB's errors and in
/// the program's own I/O errors alike).
pub fn names_storage_full(text: &str) -> bool {
    text.contains("No space left on device") || text.contains("File too large")
}

/// DuckDB error types whose message is about a value: a conversion, a
/// range, a constraint, malformed input. Their detail quotes the value,
/// which may be record contents, so it is withheld altogether.
pub(super) const VALUE_ERRORS: [ffi::duckdb_error_type; 9] = [
    ffi::duckdb_error_type_DUCKDB_ERROR_OUT_OF_RANGE,
    ffi::duckdb_error_type_DUCKDB_ERROR_CONVERSION,
    ffi::duckdb_error_type_DUCKDB_ERROR_DECIMAL,
    ffi::duckdb_error_type_DUCKDB_ERROR_MISMATCH_TYPE,
    ffi::duckdb_error_type_DUCKDB_ERROR_INVALID_TYPE,
    ffi::duckdb_error_type_DUCKDB_ERROR_SERIALIZATION,
    ffi::duckdb_error_type_DUCKDB_ERROR_CONSTRAINT,
    ffi::duckdb_error_type_DUCKDB_ERROR_INDEX,
    ffi::duckdb_error_type_DUCKDB_ERROR_INVALID_INPUT,
];

/// The one scrubber of DuckDB error text. It keeps DuckDB's category and
/// wording, which say what went wrong, and drops whatever can quote data:
/// everything of a value error but its first words, every line after the
/// first (SQL echoes, candidate lists), anything after `input:`, and the
/// inside of every quoted span (`"..."`, `'...'`).
pub fn scrub(raw: &str, kind: Option<ffi::duckdb_error_type>) -> String {
    let first = raw.lines().next().unwrap_or("").trim();
    if kind.is_some_and(|k| VALUE_ERRORS.contains(&k)) {
        // "Conversion Error: Could not convert ..." -> "Conversion Error".
        let category = first.split(':').next().unwrap_or("").trim();
        let category = if category.len() <= 40 && !category.contains(['"', '\'']) {
            category
        } else {
            "DuckDB error"
        };
        return format!("{category} (details withheld: they may quote record contents)");
    }
    let cut = first
        .to_ascii_lowercase()
        .find("input:")
        .map_or(first.len(), |i| i + "input:".len());
    let mut out = String::with_capacity(cut + 8);
    let mut open: Option<char> = None;
    for c in first[..cut].chars() {
        match open {
            Some(q) if c == q => {
                out.push('\u{2026}');
                out.push(c);
                open = None;
            }
            Some(_) => {}
            None => {
                out.push(c);
                if c == '"' || c == '\'' {
                    open = Some(c);
                }
            }
        }
    }
    if let Some(q) = open {
        out.push('\u{2026}');
        out.push(q);
    }
    if cut < first.len() {
        out.push_str(" \u{2026}");
    }
    out
}
