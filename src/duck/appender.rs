//! The data-chunk appender for raw-table rows.

use std::marker::PhantomData;
use std::ptr;

use libduckdb_sys as ffi;

use super::{cstring, message, DuckError, Result, Session};

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
///
/// Invariants the `unsafe` blocks rely on: `app` is null or an appender
/// this struct owns; after `new` succeeds, `chunk` is a non-null chunk of
/// the five columns' types (owned, as are `types`), `vectors` are its
/// column vectors, and `rows < capacity` between calls.
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
        let mut app: ffi::duckdb_appender = ptr::null_mut();
        // SAFETY: `session.con` is the session's live connection (the
        // appender borrows the session for 's); the names are NUL-terminated
        // and outlive the call; `app` is a valid out-pointer. Failed or not,
        // `this` (below) owns and destroys what DuckDB put in `app`.
        let rc = unsafe {
            ffi::duckdb_appender_create_ext(
                session.con,
                c_catalog.as_ptr(),
                c_schema.as_ptr(),
                c_table.as_ptr(),
                &mut app,
            )
        };
        // SAFETY: no arguments; a constant of the DuckDB build.
        let capacity = unsafe { ffi::duckdb_vector_size() };
        let mut this = Appender {
            app,
            chunk: ptr::null_mut(),
            types: Vec::new(),
            vectors: [ptr::null_mut(); 5],
            rows: 0,
            capacity,
            _session: PhantomData,
        };
        if rc != ffi::DuckDBSuccess {
            return Err(this.error("DuckDB could not create an appender"));
        }
        for col in columns {
            let c_col = cstring(col)?;
            // SAFETY: `app` was created successfully and is owned by `this`;
            // `c_col` is NUL-terminated and outlives the call.
            if unsafe { ffi::duckdb_appender_add_column(app, c_col.as_ptr()) } != ffi::DuckDBSuccess
            {
                return Err(this.error("DuckDB refused an appender column"));
            }
        }
        this.check_columns(&format!("{schema}.{table}"), columns)?;
        // SAFETY: `this.types` holds 5 live logical types, which DuckDB
        // copies; the chunk is owned by `this` and destroyed in its drop.
        this.chunk = unsafe { ffi::duckdb_create_data_chunk(this.types.as_mut_ptr(), 5) };
        if this.chunk.is_null() {
            return Err(DuckError::ours("DuckDB could not allocate a data chunk"));
        }
        this.load_vectors();
        if this.vectors.iter().any(|v| v.is_null()) {
            return Err(DuckError::ours(
                "DuckDB returned a data chunk without its columns",
            ));
        }
        Ok(this)
    }

    /// Checks that the appender's columns have the layouts [`EXPECTED`],
    /// keeping their logical types in `self.types` for the data chunk.
    fn check_columns(&mut self, table: &str, columns: &[&str; 5]) -> Result<()> {
        let app = self.app;
        // SAFETY: `app` was created successfully and is owned by `self`.
        let count = unsafe { ffi::duckdb_appender_column_count(app) };
        if count != 5 {
            return Err(DuckError::ours(format!(
                "appender has {count} columns, expected 5"
            )));
        }
        for (i, expected) in EXPECTED.iter().enumerate() {
            // SAFETY: `app` is live and `i` is below its column count (5);
            // the type DuckDB returns is owned by `self.types` at once.
            let ty = unsafe { ffi::duckdb_appender_column_type(app, i as u64) };
            if ty.is_null() {
                return Err(DuckError::ours(
                    "DuckDB gave no type for an appender column",
                ));
            }
            self.types.push(ty);
            // SAFETY: `ty` is a live, non-null logical type.
            let physical = match unsafe { ffi::duckdb_get_type_id(ty) } {
                ffi::DUCKDB_TYPE_DUCKDB_TYPE_VARCHAR => Physical::Text,
                ffi::DUCKDB_TYPE_DUCKDB_TYPE_TIMESTAMP
                | ffi::DUCKDB_TYPE_DUCKDB_TYPE_TIMESTAMP_TZ => Physical::Micros,
                ffi::DUCKDB_TYPE_DUCKDB_TYPE_BIGINT => Physical::BigInt,
                other => {
                    return Err(DuckError::ours(format!(
                        "column `{}` of {table} has an unsupported type (DuckDB type id {other})",
                        columns[i]
                    )))
                }
            };
            if physical != *expected {
                return Err(DuckError::ours(format!(
                    "column `{}` of {table} has type {physical:?}, expected {expected:?}",
                    columns[i]
                )));
            }
        }
        Ok(())
    }

    /// The appender's error, scrubbed, with DuckDB's error type.
    fn error(&self, fallback: &str) -> DuckError {
        if self.app.is_null() {
            return DuckError::ours(fallback);
        }
        // SAFETY: `self.app` is a non-null appender this struct owns. The
        // error data is ours: its message is copied before it is destroyed,
        // once.
        unsafe {
            let mut data = ffi::duckdb_appender_error_data(self.app);
            let msg = message(ffi::duckdb_error_data_message(data), fallback);
            let kind = ffi::duckdb_error_data_error_type(data);
            ffi::duckdb_destroy_error_data(&mut data);
            DuckError::duckdb(&msg, Some(kind))
        }
    }

    /// Reads the chunk's column vectors (after creation and each reset).
    fn load_vectors(&mut self) {
        for (i, v) in self.vectors.iter_mut().enumerate() {
            // SAFETY: `self.chunk` is a live chunk of 5 columns and `i < 5`;
            // DuckDB returns null only for a null chunk or a column out of
            // range, which `append` checks for anyway.
            *v = unsafe { ffi::duckdb_data_chunk_get_vector(self.chunk, i as u64) };
        }
    }

    /// Adds one row to the current chunk, handing full chunks to DuckDB.
    pub fn append(&mut self, row: &Row<'_>) -> Result<()> {
        // Five pointer comparisons per row make the writes below sound even
        // if DuckDB ever handed out a null vector.
        if self.vectors.iter().any(|v| v.is_null()) {
            return Err(DuckError::ours("the appender has no data chunk to fill"));
        }
        let r = self.rows;
        // The text columns use DuckDB's unchecked assignment: the fields are
        // `&str`, so valid UTF-8 by type, and DuckDB's own check of every
        // byte again cost 2-3% of a sync.
        // SAFETY: the vectors are non-null (checked above) column vectors of
        // the live chunk, of the types `new` verified (text, microseconds as
        // i64, text, text, i64); `r < capacity`, the chunk's row capacity,
        // because a full chunk is handed over and reset before this returns;
        // the string bytes are valid for the calls, which copy them.
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
                    // A writable mask exists after `ensure`, so the pointer
                    // is non-null and covers the chunk's capacity.
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
        // SAFETY: `self.app` and `self.chunk` are live and owned (rows were
        // appended, so `new` succeeded); `self.rows` rows of the chunk were
        // written and `self.rows <= capacity`. DuckDB copies the chunk, which
        // is then reset for reuse.
        let rc = unsafe {
            ffi::duckdb_data_chunk_set_size(self.chunk, self.rows);
            let rc = ffi::duckdb_append_data_chunk(self.app, self.chunk);
            ffi::duckdb_data_chunk_reset(self.chunk);
            rc
        };
        self.rows = 0;
        self.load_vectors();
        if rc != ffi::DuckDBSuccess {
            return Err(self.error("DuckDB refused a chunk of rows"));
        }
        Ok(())
    }

    /// Writes every buffered row into the table, inside the connection's
    /// current transaction. Errors (constraints, disk) surface here.
    pub fn flush(&mut self) -> Result<()> {
        self.hand_over_chunk()?;
        // SAFETY: `self.app` is the live appender this struct owns.
        if unsafe { ffi::duckdb_appender_flush(self.app) } != ffi::DuckDBSuccess {
            return Err(self.error("DuckDB could not flush appended rows"));
        }
        Ok(())
    }

    /// Drops buffered rows that were not flushed (used after a rollback).
    pub fn discard(&mut self) {
        // SAFETY: `self.chunk` and `self.app` are live and owned by this
        // struct (an `Appender` exists only once `new` succeeded).
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
        // SAFETY: every handle is owned by this struct and released exactly
        // once, here; null ones (a failed `new`) are skipped or accepted.
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
