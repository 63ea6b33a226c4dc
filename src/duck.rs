//! A small safe layer over DuckDB's C API, used for everything the
//! connector does with DuckDB.
//!
//! Why not `duckdb::Connection`? Its `Appender` binds one value at a time
//! through `append_row`, which is the bottleneck of a bulk load, and it does
//! not expose the raw connection that the data-chunk appender needs. So this
//! module owns one database handle and one connection, runs SQL on it, and
//! offers an [`Appender`] that fills DuckDB data chunks directly (no casts:
//! the chunk has the target columns' own types).
//!
//! Nothing here saves data in `Drop`: an appender's buffered rows are
//! discarded when it is dropped; only [`Appender::flush`] followed by a
//! `COMMIT` makes them durable.

use std::ffi::{CStr, CString};
use std::marker::PhantomData;
use std::os::raw::c_char;
use std::ptr;

use duckdb::ffi;

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
    kind: Option<ffi::duckdb_error_type>,
    text: String,
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
    fn duckdb(raw: &str, kind: Option<ffi::duckdb_error_type>) -> Self {
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
    /// gives lock conflicts no error type of their own (they are IO errors),
    /// so the text decides.
    pub fn is_lock_conflict(&self) -> bool {
        self.text.contains("Could not set lock") || self.text.contains("Conflicting lock")
    }

    /// DuckDB has no error type for "the file system refused": its IO errors
    /// carry the operating system's words, which the text decides on (a
    /// folder where the `.wal` should go counts too).
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

    /// A full disk or a file-size limit (the OS's words, as above).
    pub fn is_storage_full(&self) -> bool {
        self.text.contains("No space left on device") || self.text.contains("File too large")
    }
}

/// DuckDB error types whose message is about a value: a conversion, a
/// range, a constraint, malformed input. Their detail quotes the value,
/// which may be record contents, so it is withheld altogether.
const VALUE_ERRORS: [ffi::duckdb_error_type; 9] = [
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

type Result<T> = std::result::Result<T, DuckError>;

fn cstring(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| DuckError::ours("text passed to DuckDB contains a NUL byte"))
}

unsafe fn message(p: *const c_char, fallback: &str) -> String {
    if p.is_null() {
        fallback.to_string()
    } else {
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}

/// One in-process DuckDB instance and one connection to it.
pub struct Session {
    db: ffi::duckdb_database,
    con: ffi::duckdb_connection,
}

// The handles are owned exclusively by this struct; DuckDB allows a
// connection to be used from any one thread at a time.
unsafe impl Send for Session {}

impl Session {
    /// Opens a DuckDB instance on `path` (`:memory:` for none) with start-up
    /// options.
    pub fn open(path: &str, options: &[(&str, &str)]) -> Result<Session> {
        let c_path = cstring(path)?;
        unsafe {
            let mut config: ffi::duckdb_config = ptr::null_mut();
            if ffi::duckdb_create_config(&mut config) != ffi::DuckDBSuccess {
                ffi::duckdb_destroy_config(&mut config);
                return Err(DuckError::ours("DuckDB could not allocate a configuration"));
            }
            for (name, value) in options {
                let refused = match (cstring(name), cstring(value)) {
                    (Ok(n), Ok(v)) => {
                        ffi::duckdb_set_config(config, n.as_ptr(), v.as_ptr()) != ffi::DuckDBSuccess
                    }
                    _ => true,
                };
                if refused {
                    // Destroyed on every exit path: an early return here
                    // would leak the configuration.
                    ffi::duckdb_destroy_config(&mut config);
                    return Err(DuckError {
                        kind: Some(ffi::duckdb_error_type_DUCKDB_ERROR_SETTINGS),
                        text: format!("DuckDB refused the setting `{name}`"),
                    });
                }
            }
            let mut db: ffi::duckdb_database = ptr::null_mut();
            let mut err: *mut c_char = ptr::null_mut();
            let rc = ffi::duckdb_open_ext(c_path.as_ptr(), &mut db, config, &mut err);
            ffi::duckdb_destroy_config(&mut config);
            if rc != ffi::DuckDBSuccess {
                let msg = message(err, "DuckDB could not open the database");
                if !err.is_null() {
                    ffi::duckdb_free(err.cast());
                }
                return Err(DuckError::duckdb(&msg, None));
            }
            let mut con: ffi::duckdb_connection = ptr::null_mut();
            if ffi::duckdb_connect(db, &mut con) != ffi::DuckDBSuccess {
                ffi::duckdb_close(&mut db);
                return Err(DuckError::ours("DuckDB could not open a connection"));
            }
            Ok(Session { db, con })
        }
    }

    /// Runs SQL (one or more statements) and discards any result.
    pub fn execute(&self, sql: &str) -> Result<()> {
        self.query(sql).map(drop)
    }

    /// Runs SQL and returns the last statement's rows as text (`None` for
    /// NULL). Meant for small metadata queries.
    pub fn query(&self, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
        let c_sql = cstring(sql)?;
        unsafe {
            let mut res: ffi::duckdb_result = std::mem::zeroed();
            let rc = ffi::duckdb_query(self.con, c_sql.as_ptr(), &mut res);
            if rc != ffi::DuckDBSuccess {
                let msg = message(ffi::duckdb_result_error(&mut res), "DuckDB query failed");
                let kind = ffi::duckdb_result_error_type(&mut res);
                ffi::duckdb_destroy_result(&mut res);
                return Err(DuckError::duckdb(&msg, Some(kind)));
            }
            let cols = ffi::duckdb_column_count(&mut res);
            let rows = ffi::duckdb_row_count(&mut res);
            let mut out = Vec::with_capacity(rows as usize);
            for r in 0..rows {
                let mut row = Vec::with_capacity(cols as usize);
                for c in 0..cols {
                    if ffi::duckdb_value_is_null(&mut res, c, r) {
                        row.push(None);
                    } else {
                        let p = ffi::duckdb_value_varchar(&mut res, c, r);
                        row.push(Some(message(p, "")));
                        if !p.is_null() {
                            ffi::duckdb_free(p.cast());
                        }
                    }
                }
                out.push(row);
            }
            ffi::duckdb_destroy_result(&mut res);
            Ok(out)
        }
    }

    /// The first two columns of every row, for rows where both are not
    /// NULL: a set of name pairs such as (schema, table).
    pub fn query_pairs(&self, sql: &str) -> Result<std::collections::HashSet<(String, String)>> {
        Ok(self
            .query(sql)?
            .into_iter()
            .filter_map(|r| match &r[..] {
                [Some(a), Some(b), ..] => Some((a.clone(), b.clone())),
                _ => None,
            })
            .collect())
    }

    /// The first column of the first row, as text.
    pub fn query_value(&self, sql: &str) -> Result<Option<String>> {
        Ok(self
            .query(sql)?
            .into_iter()
            .next()
            .and_then(|row| row.into_iter().next().flatten()))
    }
}

/// An open transaction on a [`Session`]: [`Transaction::commit`] ends it;
/// dropped without a commit (an error on the way), it rolls back, and a
/// rollback that fails is logged, not ignored.
pub struct Transaction<'s> {
    session: &'s Session,
    open: bool,
}

impl Session {
    /// Starts a transaction.
    pub fn begin(&self) -> Result<Transaction<'_>> {
        self.execute("BEGIN TRANSACTION")?;
        Ok(Transaction {
            session: self,
            open: true,
        })
    }

    /// Rolls back the open transaction, if any: DuckDB has already ended
    /// one whose COMMIT failed. Anything else that fails is logged.
    pub fn rollback(&self) {
        if let Err(e) = self.execute("ROLLBACK") {
            if !e.text().contains("no transaction is active") {
                tracing::warn!("rollback failed: {e}");
            }
        }
    }
}

impl Transaction<'_> {
    pub fn commit(mut self) -> Result<()> {
        self.open = false;
        self.session.execute("COMMIT")
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if self.open {
            self.session.rollback();
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        unsafe {
            ffi::duckdb_disconnect(&mut self.con);
            ffi::duckdb_close(&mut self.db);
        }
    }
}

/// The physical layout the appender writes for one column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Physical {
    Text,
    /// TIMESTAMP or TIMESTAMP WITH TIME ZONE: microseconds since the epoch.
    Micros,
    BigInt,
}

/// Appends rows of the raw-table shape through DuckDB data chunks.
///
/// The column list is fixed at creation: `_airbyte_ab_id` (text),
/// `_airbyte_emitted_at` (timestamp), `_airbyte_data` (JSON/text),
/// `_airbyte_meta` (JSON/text), `_airbyte_generation_id` (BIGINT, nullable).
pub struct Appender<'s> {
    app: ffi::duckdb_appender,
    chunk: ffi::duckdb_data_chunk,
    types: Vec<ffi::duckdb_logical_type>,
    vectors: [ffi::duckdb_vector; 5],
    rows: u64,
    capacity: u64,
    _session: PhantomData<&'s Session>,
}

/// One row for [`Appender::append`].
pub struct Row<'a> {
    pub ab_id: &'a str,
    pub emitted_at_micros: i64,
    pub data: &'a str,
    pub meta: &'a str,
    pub generation_id: Option<i64>,
}

const EXPECTED: [Physical; 5] = [
    Physical::Text,
    Physical::Micros,
    Physical::Text,
    Physical::Text,
    Physical::BigInt,
];

impl<'s> Appender<'s> {
    pub fn new(
        session: &'s Session,
        catalog: &str,
        schema: &str,
        table: &str,
        columns: &[&str; 5],
    ) -> Result<Self> {
        let (c_catalog, c_schema, c_table) = (cstring(catalog)?, cstring(schema)?, cstring(table)?);
        unsafe {
            let mut app: ffi::duckdb_appender = ptr::null_mut();
            let rc = ffi::duckdb_appender_create_ext(
                session.con,
                c_catalog.as_ptr(),
                c_schema.as_ptr(),
                c_table.as_ptr(),
                &mut app,
            );
            let mut this = Appender {
                app,
                chunk: ptr::null_mut(),
                types: Vec::new(),
                vectors: [ptr::null_mut(); 5],
                rows: 0,
                capacity: ffi::duckdb_vector_size(),
                _session: PhantomData,
            };
            if rc != ffi::DuckDBSuccess {
                return Err(this.error("DuckDB could not create an appender"));
            }
            for col in columns {
                let c_col = cstring(col)?;
                if ffi::duckdb_appender_add_column(app, c_col.as_ptr()) != ffi::DuckDBSuccess {
                    return Err(this.error("DuckDB refused an appender column"));
                }
            }
            let count = ffi::duckdb_appender_column_count(app);
            if count != 5 {
                return Err(DuckError::ours(format!(
                    "appender has {count} columns, expected 5"
                )));
            }
            for (i, expected) in EXPECTED.iter().enumerate() {
                let ty = ffi::duckdb_appender_column_type(app, i as u64);
                this.types.push(ty);
                let physical = match ffi::duckdb_get_type_id(ty) {
                    ffi::DUCKDB_TYPE_DUCKDB_TYPE_VARCHAR => Physical::Text,
                    ffi::DUCKDB_TYPE_DUCKDB_TYPE_TIMESTAMP | ffi::DUCKDB_TYPE_DUCKDB_TYPE_TIMESTAMP_TZ => {
                        Physical::Micros
                    }
                    ffi::DUCKDB_TYPE_DUCKDB_TYPE_BIGINT => Physical::BigInt,
                    other => {
                        return Err(DuckError::ours(format!(
                            "column `{}` of {schema}.{table} has an unsupported type (DuckDB type id {other})",
                            columns[i]
                        )))
                    }
                };
                if physical != *expected {
                    return Err(DuckError::ours(format!(
                        "column `{}` of {schema}.{table} has type {physical:?}, expected {expected:?}",
                        columns[i]
                    )));
                }
            }
            this.chunk = ffi::duckdb_create_data_chunk(this.types.as_mut_ptr(), 5);
            if this.chunk.is_null() {
                return Err(DuckError::ours("DuckDB could not allocate a data chunk"));
            }
            this.load_vectors();
            Ok(this)
        }
    }

    unsafe fn error(&self, fallback: &str) -> DuckError {
        if self.app.is_null() {
            return DuckError::ours(fallback);
        }
        unsafe {
            let mut data = ffi::duckdb_appender_error_data(self.app);
            let msg = message(ffi::duckdb_error_data_message(data), fallback);
            let kind = ffi::duckdb_error_data_error_type(data);
            ffi::duckdb_destroy_error_data(&mut data);
            DuckError::duckdb(&msg, Some(kind))
        }
    }

    fn load_vectors(&mut self) {
        for (i, v) in self.vectors.iter_mut().enumerate() {
            *v = unsafe { ffi::duckdb_data_chunk_get_vector(self.chunk, i as u64) };
        }
    }

    /// Adds one row to the current chunk, handing full chunks to DuckDB.
    pub fn append(&mut self, row: &Row<'_>) -> Result<()> {
        let r = self.rows;
        // The text columns use DuckDB's unchecked assignment: the fields are
        // `&str`, so valid UTF-8 by type, and DuckDB's own check of every
        // byte again cost 2-3% of a sync.
        unsafe {
            let [id_v, ts_v, data_v, meta_v, gen_v] = self.vectors;
            ffi::duckdb_unsafe_vector_assign_string_element_len(
                id_v,
                r,
                row.ab_id.as_ptr().cast(),
                row.ab_id.len() as u64,
            );
            *ffi::duckdb_vector_get_data(ts_v)
                .cast::<i64>()
                .add(r as usize) = row.emitted_at_micros;
            ffi::duckdb_unsafe_vector_assign_string_element_len(
                data_v,
                r,
                row.data.as_ptr().cast(),
                row.data.len() as u64,
            );
            ffi::duckdb_unsafe_vector_assign_string_element_len(
                meta_v,
                r,
                row.meta.as_ptr().cast(),
                row.meta.len() as u64,
            );
            match row.generation_id {
                Some(g) => {
                    *ffi::duckdb_vector_get_data(gen_v)
                        .cast::<i64>()
                        .add(r as usize) = g
                }
                None => {
                    ffi::duckdb_vector_ensure_validity_writable(gen_v);
                    ffi::duckdb_validity_set_row_invalid(ffi::duckdb_vector_get_validity(gen_v), r);
                }
            }
        }
        self.rows += 1;
        if self.rows == self.capacity {
            self.hand_over_chunk()?;
        }
        Ok(())
    }

    fn hand_over_chunk(&mut self) -> Result<()> {
        if self.rows == 0 {
            return Ok(());
        }
        unsafe {
            ffi::duckdb_data_chunk_set_size(self.chunk, self.rows);
            let rc = ffi::duckdb_append_data_chunk(self.app, self.chunk);
            ffi::duckdb_data_chunk_reset(self.chunk);
            self.rows = 0;
            self.load_vectors();
            if rc != ffi::DuckDBSuccess {
                return Err(self.error("DuckDB refused a chunk of rows"));
            }
        }
        Ok(())
    }

    /// Writes every buffered row into the table, inside the connection's
    /// current transaction. Errors (constraints, disk) surface here.
    pub fn flush(&mut self) -> Result<()> {
        self.hand_over_chunk()?;
        unsafe {
            if ffi::duckdb_appender_flush(self.app) != ffi::DuckDBSuccess {
                return Err(self.error("DuckDB could not flush appended rows"));
            }
        }
        Ok(())
    }

    /// Drops buffered rows that were not flushed (used after a rollback).
    pub fn discard(&mut self) {
        unsafe {
            ffi::duckdb_data_chunk_reset(self.chunk);
            ffi::duckdb_appender_clear(self.app);
        }
        self.rows = 0;
        self.load_vectors();
    }
}

impl Drop for Appender<'_> {
    fn drop(&mut self) {
        unsafe {
            if !self.app.is_null() {
                // Destroying an appender flushes it; clear first so that a
                // drop never writes rows that were not explicitly flushed.
                ffi::duckdb_appender_clear(self.app);
                ffi::duckdb_appender_destroy(&mut self.app);
            }
            if !self.chunk.is_null() {
                ffi::duckdb_destroy_data_chunk(&mut self.chunk);
            }
            for ty in &mut self.types {
                ffi::duckdb_destroy_logical_type(ty);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_keeps_the_wording_and_drops_quoted_values() {
        let io = Some(ffi::duckdb_error_type_DUCKDB_ERROR_IO);
        let lock = scrub(
            "IO Error: Could not set lock on file \"/d/db.duckdb\": Conflicting lock is held",
            io,
        );
        assert_eq!(
            lock,
            "IO Error: Could not set lock on file \"\u{2026}\": Conflicting lock is held"
        );
        let json = scrub(
            "Invalid Input Error: Malformed JSON at byte 2 of input: unexpected. Input: {\"k\":\"SECRET\"}",
            None,
        );
        assert!(!json.contains("SECRET"), "{json}");
        let binder = scrub(
            "Binder Error: Referenced column \"SECRET\" not found\n\nLINE 1: SELECT 'SECRET'",
            Some(ffi::duckdb_error_type_DUCKDB_ERROR_BINDER),
        );
        assert!(!binder.contains("SECRET"), "{binder}");
        let unterminated = scrub("Error: 'SECRET", None);
        assert!(!unterminated.contains("SECRET"), "{unterminated}");
    }

    #[test]
    fn value_errors_keep_only_their_category() {
        for kind in VALUE_ERRORS {
            let text = scrub(
                "Constraint Error: Duplicate key \"_airbyte_data: SECRET 42\" violates primary key",
                Some(kind),
            );
            assert_eq!(
                text,
                "Constraint Error (details withheld: they may quote record contents)"
            );
        }
    }
}
