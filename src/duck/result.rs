//! Reading a query's result through data chunks, as a typed [`Value`] per
//! value.

use std::os::raw::c_void;

use libduckdb_sys as ffi;

use super::{message, DuckError, Result};

/// A `duckdb_result`, destroyed on every path (DuckDB requires it even when
/// the query failed).
pub(super) struct QueryResult(pub(super) ffi::duckdb_result);

impl QueryResult {
    pub(super) fn has_error(&mut self) -> bool {
        // SAFETY: `self.0` is a result filled by `duckdb_query` (or zeroed,
        // which DuckDB treats as having no error), alive until drop.
        !unsafe { ffi::duckdb_result_error(&mut self.0) }.is_null()
    }

    /// The result's error, scrubbed, with DuckDB's error type.
    pub(super) fn error(&mut self, fallback: &str) -> DuckError {
        // SAFETY: `self.0` is alive (see `has_error`); the message pointer it
        // returns stays valid until the result is destroyed, after the copy.
        let (msg, kind) = unsafe {
            (
                message(ffi::duckdb_result_error(&mut self.0), fallback),
                ffi::duckdb_result_error_type(&mut self.0),
            )
        };
        DuckError::duckdb(&msg, Some(kind))
    }

    /// How to read each column as text, decided once from its logical type.
    pub(super) fn columns(&mut self) -> Result<Vec<Column>> {
        // SAFETY: `self.0` is a successful result, alive until drop.
        let count = unsafe { ffi::duckdb_column_count(&mut self.0) };
        (0..count)
            .map(|c| {
                // SAFETY: `c` is below the column count, so DuckDB returns a
                // new logical type, which `LogicalType` destroys.
                let ty = LogicalType(unsafe { ffi::duckdb_column_logical_type(&mut self.0, c) });
                if ty.0.is_null() {
                    return Err(DuckError::ours(format!(
                        "DuckDB gave no type for column {c} of a metadata query"
                    )));
                }
                // SAFETY: `ty.0` is a live, non-null logical type.
                let id = unsafe { ffi::duckdb_get_type_id(ty.0) };
                Column::of(id).ok_or_else(|| {
                    DuckError::ours(format!(
                        "column {c} of a metadata query has DuckDB type id {id}, which this layer does not read"
                    ))
                })
            })
            .collect()
    }
}

impl Drop for QueryResult {
    fn drop(&mut self) {
        // SAFETY: the result is owned here and destroyed exactly once;
        // destroying a zeroed or failed result is allowed.
        unsafe { ffi::duckdb_destroy_result(&mut self.0) };
    }
}

/// A logical type DuckDB created for us, destroyed on every path.
struct LogicalType(ffi::duckdb_logical_type);

impl Drop for LogicalType {
    fn drop(&mut self) {
        // SAFETY: owned here and destroyed exactly once; null is allowed.
        unsafe { ffi::duckdb_destroy_logical_type(&mut self.0) };
    }
}

/// A data chunk fetched from a result, destroyed on every path.
pub(super) struct Chunk(pub(super) ffi::duckdb_data_chunk);

impl Drop for Chunk {
    fn drop(&mut self) {
        // SAFETY: owned here and destroyed exactly once; null is allowed.
        unsafe { ffi::duckdb_destroy_data_chunk(&mut self.0) };
    }
}

impl Chunk {
    /// Appends this chunk's rows to `rows`.
    pub(super) fn read_into(&self, columns: &[Column], rows: &mut Vec<Vec<Value>>) -> Result<()> {
        if self.0.is_null() {
            return Ok(());
        }
        // SAFETY: `self.0` is a live, non-null chunk this struct owns.
        let (size, width) = unsafe {
            (
                ffi::duckdb_data_chunk_get_size(self.0),
                ffi::duckdb_data_chunk_get_column_count(self.0),
            )
        };
        if width != columns.len() as u64 {
            return Err(DuckError::ours(format!(
                "DuckDB returned a chunk of {width} columns for a result of {}",
                columns.len()
            )));
        }
        let first = rows.len();
        rows.extend((0..size).map(|_| Vec::with_capacity(columns.len())));
        for (c, column) in columns.iter().enumerate() {
            if let Column::Null = column {
                rows[first..]
                    .iter_mut()
                    .for_each(|row| row.push(Value::Null));
                continue;
            }
            // SAFETY: the chunk is live and `c` is below its column count.
            let vector = unsafe { ffi::duckdb_data_chunk_get_vector(self.0, c as u64) };
            if vector.is_null() {
                return Err(DuckError::ours("DuckDB returned a chunk without a column"));
            }
            // SAFETY: `vector` is non-null and lives as long as the chunk.
            // `duckdb_fetch_chunk` flattens what it returns, so the data
            // holds one entry per row; the validity mask is null when every
            // row is valid.
            let (data, validity) = unsafe {
                (
                    ffi::duckdb_vector_get_data(vector),
                    ffi::duckdb_vector_get_validity(vector),
                )
            };
            if data.is_null() {
                return Err(DuckError::ours("DuckDB returned a column without data"));
            }
            for (r, row) in rows[first..].iter_mut().enumerate() {
                // SAFETY: `r` is below the chunk's size; a null mask means
                // "all valid", which the function handles.
                let valid = unsafe { ffi::duckdb_validity_row_is_valid(validity, r as u64) };
                // SAFETY: `data` is the flat data of a live vector whose type
                // `column` was derived from, and `r` is below the chunk's size.
                row.push(if valid {
                    // SAFETY: as above.
                    unsafe { column.value(data, r) }
                } else {
                    Value::Null
                });
            }
        }
        Ok(())
    }
}

/// A result column's physical layout, as far as metadata queries need.
#[derive(Debug, Clone, Copy)]
pub(super) enum Column {
    /// A bare `NULL` literal's type: every value is NULL.
    Null,
    Text,
    Bool,
    I8,
    I16,
    I32,
    I64,
    I128,
    U8,
    U16,
    U32,
    U64,
    U128,
    F32,
    F64,
}

impl Column {
    fn of(id: ffi::duckdb_type) -> Option<Column> {
        Some(match id {
            ffi::DUCKDB_TYPE_DUCKDB_TYPE_SQLNULL => Column::Null,
            ffi::DUCKDB_TYPE_DUCKDB_TYPE_VARCHAR => Column::Text,
            ffi::DUCKDB_TYPE_DUCKDB_TYPE_BOOLEAN => Column::Bool,
            ffi::DUCKDB_TYPE_DUCKDB_TYPE_TINYINT => Column::I8,
            ffi::DUCKDB_TYPE_DUCKDB_TYPE_SMALLINT => Column::I16,
            ffi::DUCKDB_TYPE_DUCKDB_TYPE_INTEGER => Column::I32,
            ffi::DUCKDB_TYPE_DUCKDB_TYPE_BIGINT => Column::I64,
            ffi::DUCKDB_TYPE_DUCKDB_TYPE_HUGEINT => Column::I128,
            ffi::DUCKDB_TYPE_DUCKDB_TYPE_UTINYINT => Column::U8,
            ffi::DUCKDB_TYPE_DUCKDB_TYPE_USMALLINT => Column::U16,
            ffi::DUCKDB_TYPE_DUCKDB_TYPE_UINTEGER => Column::U32,
            ffi::DUCKDB_TYPE_DUCKDB_TYPE_UBIGINT => Column::U64,
            ffi::DUCKDB_TYPE_DUCKDB_TYPE_UHUGEINT => Column::U128,
            ffi::DUCKDB_TYPE_DUCKDB_TYPE_FLOAT => Column::F32,
            ffi::DUCKDB_TYPE_DUCKDB_TYPE_DOUBLE => Column::F64,
            _ => return None,
        })
    }

    /// The value at `row`.
    ///
    /// # Safety
    ///
    /// `data` is the data of a live flat vector of this column's type, and
    /// `row` is below the size of its chunk.
    unsafe fn value(self, data: *mut c_void, row: usize) -> Value {
        // SAFETY: by this function's contract `data` holds at least
        // `row + 1` aligned values of the type this variant names, so every
        // `data.cast::<T>().add(row)` below is in bounds and readable.
        unsafe {
            match self {
                // Never read: `Chunk::read_into` gives these columns `Null`.
                Column::Null => Value::Null,
                Column::Text => {
                    let s = data.cast::<ffi::duckdb_string_t>().add(row);
                    // The bytes are inline in the vector (12 bytes or fewer)
                    // or in its string heap; both live as long as the chunk.
                    let len = ffi::duckdb_string_t_length(*s) as usize;
                    let bytes =
                        std::slice::from_raw_parts(ffi::duckdb_string_t_data(s).cast::<u8>(), len);
                    Value::Text(String::from_utf8_lossy(bytes).into_owned())
                }
                // DuckDB stores a BOOLEAN as one byte, 0 or 1.
                Column::Bool => Value::Bool(data.cast::<u8>().add(row).read() != 0),
                Column::I8 => Value::Int(data.cast::<i8>().add(row).read().into()),
                Column::I16 => Value::Int(data.cast::<i16>().add(row).read().into()),
                Column::I32 => Value::Int(data.cast::<i32>().add(row).read().into()),
                Column::I64 => Value::Int(data.cast::<i64>().add(row).read().into()),
                Column::I128 => {
                    let h = data.cast::<ffi::duckdb_hugeint>().add(row).read();
                    Value::Int((i128::from(h.upper) << 64) | i128::from(h.lower))
                }
                Column::U8 => Value::Int(data.cast::<u8>().add(row).read().into()),
                Column::U16 => Value::Int(data.cast::<u16>().add(row).read().into()),
                Column::U32 => Value::Int(data.cast::<u32>().add(row).read().into()),
                Column::U64 => Value::Int(data.cast::<u64>().add(row).read().into()),
                Column::U128 => {
                    let h = data.cast::<ffi::duckdb_uhugeint>().add(row).read();
                    let v = (u128::from(h.upper) << 64) | u128::from(h.lower);
                    // Beyond i128 (no metadata query of ours comes near it):
                    // kept as text rather than wrapped.
                    i128::try_from(v).map_or_else(|_| Value::Text(v.to_string()), Value::Int)
                }
                Column::F32 => Value::Float(data.cast::<f32>().add(row).read().into()),
                Column::F64 => Value::Float(data.cast::<f64>().add(row).read()),
            }
        }
    }
}

/// One value of a metadata query, as DuckDB typed it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    /// Any integer type.
    Int(i128),
    /// FLOAT or DOUBLE.
    Float(f64),
    Text(String),
}

impl Value {
    /// An integer that fits an `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(v) => i64::try_from(*v).ok(),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }

    /// The value as text, as DuckDB's cast to VARCHAR gives it, except that
    /// floating-point numbers use Rust's shortest form; None for NULL.
    pub fn into_text(self) -> Option<String> {
        match self {
            Value::Null => None,
            Value::Bool(b) => Some(b.to_string()),
            Value::Int(v) => Some(v.to_string()),
            Value::Float(v) => Some(v.to_string()),
            Value::Text(s) => Some(s),
        }
    }
}
