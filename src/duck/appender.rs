//! The data-chunk appender: raw-table rows ([`Row`]) and typed rows
//! ([`Cell`]s), written straight into DuckDB data chunks.

use std::borrow::Cow;
use std::marker::PhantomData;
use std::ptr;

use libduckdb_sys as ffi;

use super::{cstring, message, DuckError, Result, Session};

/// The physical layout the appender writes for one column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Physical {
    /// VARCHAR and JSON.
    Text,
    /// TIMESTAMP or TIMESTAMP WITH TIME ZONE: microseconds since the epoch.
    Micros,
    BigInt,
    Double,
    Bool,
    /// DATE: days since the epoch.
    Date,
    /// Any other type: only NULL can be appended to it here.
    Other,
}

/// One value of a typed row, in the physical form of its column.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell<'a> {
    Null,
    Text(Cow<'a, str>),
    Micros(i64),
    BigInt(i64),
    Double(f64),
    Bool(bool),
    Date(i32),
}

/// Appends rows through DuckDB data chunks: raw-table rows ([`Row`], the
/// five raw columns) or typed rows ([`Cell`]s, one per column).
///
/// Invariants the `unsafe` blocks rely on: `app` is null or an appender
/// this struct owns; after `new` succeeds, `chunk` is a non-null chunk of
/// the columns' types (owned, as are `types`), `vectors` are its column
/// vectors (one per entry of `kinds`, all non-null, reloaded after each
/// reset), `kinds[i]` is the physical layout of column `i`, and
/// `rows < capacity` between calls.
pub struct Appender<'s> {
    app: ffi::duckdb_appender,
    chunk: ffi::duckdb_data_chunk,
    types: Vec<ffi::duckdb_logical_type>,
    vectors: Vec<ffi::duckdb_vector>,
    kinds: Vec<Physical>,
    rows: u64,
    capacity: u64,
    _connection: PhantomData<&'s Session>,
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
    /// An appender of raw-table rows: `columns` are the five raw columns,
    /// which must have the layouts of [`Row`].
    pub fn new(
        session: &'s Session,
        catalog: &str,
        schema: &str,
        table: &str,
        columns: &[&str; 5],
    ) -> Result<Self> {
        let this = Self::open(session, catalog, schema, table, columns)?;
        if this.kinds != EXPECTED {
            return Err(DuckError::ours(format!(
                "{schema}.{table} has column types {:?}, expected {EXPECTED:?}",
                this.kinds
            )));
        }
        Ok(this)
    }

    /// An appender of typed rows over `columns` of the table, whatever
    /// their types ([`Appender::kinds`] says which).
    pub fn open(
        session: &'s Session,
        catalog: &str,
        schema: &str,
        table: &str,
        columns: &[&str],
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
            vectors: Vec::new(),
            kinds: Vec::new(),
            rows: 0,
            capacity,
            _connection: PhantomData,
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
        this.read_columns(columns.len())?;
        // SAFETY: `this.types` holds `columns.len()` live logical types,
        // which DuckDB copies; the chunk is owned by `this` and destroyed in
        // its drop.
        this.chunk = unsafe {
            ffi::duckdb_create_data_chunk(this.types.as_mut_ptr(), this.types.len() as u64)
        };
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

    /// Reads the physical layout of each of the appender's `expected`
    /// columns, keeping their logical types in `self.types` for the data
    /// chunk.
    fn read_columns(&mut self, expected: usize) -> Result<()> {
        let app = self.app;
        // SAFETY: `app` was created successfully and is owned by `self`.
        let count = unsafe { ffi::duckdb_appender_column_count(app) };
        if count != expected as u64 {
            return Err(DuckError::ours(format!(
                "appender has {count} columns, expected {expected}"
            )));
        }
        for i in 0..count {
            // SAFETY: `app` is live and `i` is below its column count; the
            // type DuckDB returns is owned by `self.types` at once.
            let ty = unsafe { ffi::duckdb_appender_column_type(app, i) };
            if ty.is_null() {
                return Err(DuckError::ours(
                    "DuckDB gave no type for an appender column",
                ));
            }
            self.types.push(ty);
            // SAFETY: `ty` is a live, non-null logical type.
            self.kinds
                .push(match unsafe { ffi::duckdb_get_type_id(ty) } {
                    ffi::DUCKDB_TYPE_DUCKDB_TYPE_VARCHAR => Physical::Text,
                    ffi::DUCKDB_TYPE_DUCKDB_TYPE_TIMESTAMP
                    | ffi::DUCKDB_TYPE_DUCKDB_TYPE_TIMESTAMP_TZ => Physical::Micros,
                    ffi::DUCKDB_TYPE_DUCKDB_TYPE_BIGINT => Physical::BigInt,
                    ffi::DUCKDB_TYPE_DUCKDB_TYPE_DOUBLE => Physical::Double,
                    ffi::DUCKDB_TYPE_DUCKDB_TYPE_BOOLEAN => Physical::Bool,
                    ffi::DUCKDB_TYPE_DUCKDB_TYPE_DATE => Physical::Date,
                    _ => Physical::Other,
                });
        }
        Ok(())
    }

    /// The physical layout of each column, in order.
    pub fn kinds(&self) -> &[Physical] {
        &self.kinds
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
        self.vectors.clear();
        for i in 0..self.kinds.len() {
            // SAFETY: `self.chunk` is a live chunk of `kinds.len()` columns
            // and `i` is below that; DuckDB returns null only for a null
            // chunk or a column out of range, which `append` checks for
            // anyway.
            self.vectors
                .push(unsafe { ffi::duckdb_data_chunk_get_vector(self.chunk, i as u64) });
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
        // byte again cost a measurable share of a sync (`bench/README.md`,
        // "Measurements behind settings in the code", "Unchecked strings").
        // SAFETY: the vectors are non-null (checked above) column vectors of
        // the live chunk, of the types `new` verified (text, microseconds as
        // i64, text, text, i64); `r < capacity`, the chunk's row capacity,
        // because a full chunk is handed over and reset before this returns;
        // the string bytes are valid for the calls, which copy them.
        unsafe {
            let [id_v, ts_v, data_v, meta_v, gen_v] = self.vectors[..] else {
                return Err(DuckError::ours("a raw-row appender has five columns"));
            };
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

    /// Adds one typed row: `cells[i]` goes to column `i`, and must be NULL
    /// or of the column's physical layout.
    pub fn append_cells(&mut self, cells: &[Cell<'_>]) -> Result<()> {
        if cells.len() != self.kinds.len() || self.vectors.iter().any(|v| v.is_null()) {
            return Err(DuckError::ours("a typed row does not fit the appender"));
        }
        // Checked before anything is written: a refused row leaves no
        // trace (no NULL mark) for the row written next at its place.
        let fits = |(cell, kind): (&Cell<'_>, &Physical)| {
            matches!(
                (cell, kind),
                (Cell::Null, _)
                    | (Cell::Text(_), Physical::Text)
                    | (Cell::Micros(_), Physical::Micros)
                    | (Cell::BigInt(_), Physical::BigInt)
                    | (Cell::Double(_), Physical::Double)
                    | (Cell::Bool(_), Physical::Bool)
                    | (Cell::Date(_), Physical::Date)
            )
        };
        if let Some((_, kind)) = cells.iter().zip(&self.kinds).find(|&p| !fits(p)) {
            return Err(DuckError::ours(format!(
                "a typed value does not fit its column ({kind:?})"
            )));
        }
        let r = self.rows;
        for ((cell, kind), &v) in cells.iter().zip(&self.kinds).zip(&self.vectors) {
            // SAFETY: `v` is a non-null (checked above) column vector of the
            // live chunk whose physical layout is `kind` (read in `new`);
            // each arm writes only the element type of that layout (i64,
            // f64, bool, i32, or a string DuckDB copies), at row
            // `r < capacity`, as a full chunk is handed over and reset
            // before this returns. The validity mask exists after `ensure`,
            // so its pointer is non-null and covers the chunk's capacity.
            unsafe {
                match (cell, kind) {
                    (Cell::Null, _) => {
                        ffi::duckdb_vector_ensure_validity_writable(v);
                        ffi::duckdb_validity_set_row_invalid(ffi::duckdb_vector_get_validity(v), r);
                    }
                    (Cell::Text(t), Physical::Text) => {
                        ffi::duckdb_unsafe_vector_assign_string_element_len(
                            v,
                            r,
                            t.as_ptr().cast(),
                            t.len() as u64,
                        );
                    }
                    (Cell::Micros(x), Physical::Micros) | (Cell::BigInt(x), Physical::BigInt) => {
                        *ffi::duckdb_vector_get_data(v).cast::<i64>().add(r as usize) = *x
                    }
                    (Cell::Double(x), Physical::Double) => {
                        *ffi::duckdb_vector_get_data(v).cast::<f64>().add(r as usize) = *x
                    }
                    (Cell::Bool(x), Physical::Bool) => {
                        *ffi::duckdb_vector_get_data(v)
                            .cast::<bool>()
                            .add(r as usize) = *x
                    }
                    (Cell::Date(x), Physical::Date) => {
                        *ffi::duckdb_vector_get_data(v).cast::<i32>().add(r as usize) = *x
                    }
                    // Refused above.
                    _ => {}
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
