//! A small safe layer over DuckDB's C API, used for everything the
//! connector does with DuckDB: one database handle and one connection that
//! run SQL, read small metadata results, and append rows through data
//! chunks filled directly (no casts: the chunk has the target columns' own
//! types).
//!
//! Why not the `duckdb` crate's safe API: its `Appender` binds one value at
//! a time through `append_row`, the bottleneck of a bulk load, and the crate
//! gives no access to its raw connection, so its users cannot append whole
//! data chunks themselves (its one chunk path, `append_record_batch`, goes
//! through an Arrow batch built first). What would let this module go: an
//! appender in duckdb-rs that takes a data chunk built through a safe chunk
//! builder (typed column writers over `duckdb_append_data_chunk`), and
//! chunk-based result access, with DuckDB's error type, in the safe API.
//!
//! Every `unsafe` block states the invariant it relies on. Nothing here
//! saves data in `Drop`: an appender's buffered rows are discarded when it
//! is dropped; only [`Appender::flush`] followed by a `COMMIT` makes them
//! durable.

use std::ffi::{CStr, CString};
use std::marker::PhantomData;
use std::os::raw::{c_char, c_void};
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

    /// A full disk or a file-size limit: no error type of its own either,
    /// so the OS's words decide, as above.
    pub fn is_storage_full(&self) -> bool {
        self.text.contains("No space left on device") || self.text.contains("File too large")
    }

    /// A `ROLLBACK` with no transaction open (DuckDB has already ended one
    /// whose `COMMIT` failed). The type says "transaction"; only the text
    /// says which transaction error, as DuckDB has no finer type.
    fn is_no_transaction(&self) -> bool {
        self.kind == Some(ffi::duckdb_error_type_DUCKDB_ERROR_TRANSACTION)
            && self.text.contains("no transaction is active")
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

/// Copies a C string DuckDB handed out, or `fallback` when there is none.
///
/// # Safety
///
/// `p` is null or points to a NUL-terminated string that stays valid and
/// unchanged for the duration of the call.
unsafe fn message(p: *const c_char, fallback: &str) -> String {
    if p.is_null() {
        fallback.to_string()
    } else {
        // SAFETY: non-null, and NUL-terminated and valid for this call by
        // this function's contract.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}

/// One in-process DuckDB instance and one connection to it.
pub struct Session {
    db: ffi::duckdb_database,
    con: ffi::duckdb_connection,
}

// SAFETY: the handles are owned exclusively by this struct (nothing else
// holds them, and borrowers such as `Appender` and `Transaction` are tied to
// it by lifetime), and DuckDB allows a connection to be used from any one
// thread at a time; `Session` is not `Sync`, so it is one thread at a time.
unsafe impl Send for Session {}

impl Session {
    /// Opens a DuckDB instance on `path` (`:memory:` for none) with start-up
    /// options.
    pub fn open(path: &str, options: &[(&str, &str)]) -> Result<Session> {
        let c_path = cstring(path)?;
        let mut config: ffi::duckdb_config = ptr::null_mut();
        // SAFETY: `config` is a valid out-pointer; DuckDB allocates into it.
        if unsafe { ffi::duckdb_create_config(&mut config) } != ffi::DuckDBSuccess {
            // SAFETY: destroying accepts whatever create left, null included.
            unsafe { ffi::duckdb_destroy_config(&mut config) };
            return Err(DuckError::ours("DuckDB could not allocate a configuration"));
        }
        for (name, value) in options {
            let refused = match (cstring(name), cstring(value)) {
                // SAFETY: `config` was created above and is destroyed only
                // below; both strings are NUL-terminated and outlive the call.
                (Ok(n), Ok(v)) => unsafe {
                    ffi::duckdb_set_config(config, n.as_ptr(), v.as_ptr()) != ffi::DuckDBSuccess
                },
                _ => true,
            };
            if refused {
                // Destroyed on every exit path: an early return here would
                // leak the configuration.
                // SAFETY: `config` is live and not used after this.
                unsafe { ffi::duckdb_destroy_config(&mut config) };
                return Err(DuckError {
                    kind: Some(ffi::duckdb_error_type_DUCKDB_ERROR_SETTINGS),
                    text: format!("DuckDB refused the setting `{name}`"),
                });
            }
        }
        let mut db: ffi::duckdb_database = ptr::null_mut();
        let mut err: *mut c_char = ptr::null_mut();
        // SAFETY: `c_path` is NUL-terminated and outlives the call, `config`
        // is live (DuckDB copies it, so it is destroyed right after), and
        // `db` and `err` are valid out-pointers.
        let rc = unsafe {
            let rc = ffi::duckdb_open_ext(c_path.as_ptr(), &mut db, config, &mut err);
            ffi::duckdb_destroy_config(&mut config);
            rc
        };
        if rc != ffi::DuckDBSuccess {
            // SAFETY: `err` is null or a NUL-terminated message DuckDB
            // allocated for us; it is freed once, after it was copied.
            let msg = unsafe {
                let msg = message(err, "DuckDB could not open the database");
                if !err.is_null() {
                    ffi::duckdb_free(err.cast());
                }
                msg
            };
            return Err(DuckError::duckdb(&msg, None));
        }
        let mut con: ffi::duckdb_connection = ptr::null_mut();
        // SAFETY: `db` was just opened and is live; `con` is a valid
        // out-pointer. On failure `db` is closed once and not used again.
        unsafe {
            if ffi::duckdb_connect(db, &mut con) != ffi::DuckDBSuccess {
                ffi::duckdb_close(&mut db);
                return Err(DuckError::ours("DuckDB could not open a connection"));
            }
        }
        Ok(Session { db, con })
    }

    /// Runs SQL (one or more statements), returning the last statement's
    /// result, which the caller owns.
    fn run(&self, sql: &str) -> Result<QueryResult> {
        let c_sql = cstring(sql)?;
        // SAFETY: `duckdb_result` is a plain C struct of integers and
        // pointers, for which all zeroes is a valid (empty) value.
        let mut res = QueryResult(unsafe { std::mem::zeroed() });
        // SAFETY: `self.con` is the live connection this session owns,
        // `c_sql` is NUL-terminated and outlives the call, and `res.0` is a
        // valid out-pointer. Failed or not, `res` destroys the result.
        let rc = unsafe { ffi::duckdb_query(self.con, c_sql.as_ptr(), &mut res.0) };
        if rc != ffi::DuckDBSuccess {
            return Err(res.error("DuckDB query failed"));
        }
        Ok(res)
    }

    /// Runs SQL (one or more statements) and discards any result.
    pub fn execute(&self, sql: &str) -> Result<()> {
        self.run(sql).map(drop)
    }

    /// Runs SQL and returns the last statement's rows as text (`None` for
    /// NULL). Meant for small metadata queries: text, booleans, integers
    /// and floating-point numbers; any other column type is an error.
    pub fn query(&self, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
        let mut res = self.run(sql)?;
        let columns = res.columns()?;
        let mut rows = Vec::new();
        loop {
            // SAFETY: `res` holds a successful result that lives until the
            // end of this function; DuckDB reads it through the copied
            // handle and gives us ownership of the chunk it returns.
            let chunk = Chunk(unsafe { ffi::duckdb_fetch_chunk(res.0) });
            if chunk.0.is_null() {
                break;
            }
            chunk.read_into(&columns, &mut rows)?;
        }
        // A chunk that fails to load ends the fetching like the end of the
        // data does; DuckDB records the reason on the result.
        if res.has_error() {
            return Err(res.error("DuckDB could not read a query result"));
        }
        Ok(rows)
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

/// A `duckdb_result`, destroyed on every path (DuckDB requires it even when
/// the query failed).
struct QueryResult(ffi::duckdb_result);

impl QueryResult {
    fn has_error(&mut self) -> bool {
        // SAFETY: `self.0` is a result filled by `duckdb_query` (or zeroed,
        // which DuckDB treats as having no error), alive until drop.
        !unsafe { ffi::duckdb_result_error(&mut self.0) }.is_null()
    }

    /// The result's error, scrubbed, with DuckDB's error type.
    fn error(&mut self, fallback: &str) -> DuckError {
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
    fn columns(&mut self) -> Result<Vec<Column>> {
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
struct Chunk(ffi::duckdb_data_chunk);

impl Drop for Chunk {
    fn drop(&mut self) {
        // SAFETY: owned here and destroyed exactly once; null is allowed.
        unsafe { ffi::duckdb_destroy_data_chunk(&mut self.0) };
    }
}

impl Chunk {
    /// Appends this chunk's rows to `rows`, as text.
    fn read_into(&self, columns: &[Column], rows: &mut Vec<Vec<Option<String>>>) -> Result<()> {
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
                rows[first..].iter_mut().for_each(|row| row.push(None));
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
                row.push(valid.then(|| unsafe { column.text(data, r) }));
            }
        }
        Ok(())
    }
}

/// A result column's physical layout, as far as metadata queries need.
#[derive(Debug, Clone, Copy)]
enum Column {
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

    /// The value at `row` as text: what DuckDB's cast to VARCHAR gives,
    /// except that floating-point numbers use Rust's shortest form.
    ///
    /// # Safety
    ///
    /// `data` is the data of a live flat vector of this column's type, and
    /// `row` is below the size of its chunk.
    unsafe fn text(self, data: *mut c_void, row: usize) -> String {
        // SAFETY: by this function's contract `data` holds at least
        // `row + 1` aligned values of the type this variant names, so every
        // `data.cast::<T>().add(row)` below is in bounds and readable.
        unsafe {
            match self {
                // Never read: `Chunk::read_into` gives these columns `None`.
                Column::Null => String::new(),
                Column::Text => {
                    let s = data.cast::<ffi::duckdb_string_t>().add(row);
                    // The bytes are inline in the vector (12 bytes or fewer)
                    // or in its string heap; both live as long as the chunk.
                    let len = ffi::duckdb_string_t_length(*s) as usize;
                    let bytes =
                        std::slice::from_raw_parts(ffi::duckdb_string_t_data(s).cast::<u8>(), len);
                    String::from_utf8_lossy(bytes).into_owned()
                }
                // DuckDB stores a BOOLEAN as one byte, 0 or 1.
                Column::Bool => (data.cast::<u8>().add(row).read() != 0).to_string(),
                Column::I8 => data.cast::<i8>().add(row).read().to_string(),
                Column::I16 => data.cast::<i16>().add(row).read().to_string(),
                Column::I32 => data.cast::<i32>().add(row).read().to_string(),
                Column::I64 => data.cast::<i64>().add(row).read().to_string(),
                Column::I128 => {
                    let h = data.cast::<ffi::duckdb_hugeint>().add(row).read();
                    ((i128::from(h.upper) << 64) | i128::from(h.lower)).to_string()
                }
                Column::U8 => data.cast::<u8>().add(row).read().to_string(),
                Column::U16 => data.cast::<u16>().add(row).read().to_string(),
                Column::U32 => data.cast::<u32>().add(row).read().to_string(),
                Column::U64 => data.cast::<u64>().add(row).read().to_string(),
                Column::U128 => {
                    let h = data.cast::<ffi::duckdb_uhugeint>().add(row).read();
                    ((u128::from(h.upper) << 64) | u128::from(h.lower)).to_string()
                }
                Column::F32 => data.cast::<f32>().add(row).read().to_string(),
                Column::F64 => data.cast::<f64>().add(row).read().to_string(),
            }
        }
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
            if !e.is_no_transaction() {
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
        // SAFETY: both handles were created by `open`, are owned only by
        // this session, and are released exactly once, here; every borrower
        // (appender, transaction) has ended by lifetime.
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
        // SAFETY: `app` is live (as above).
        let count = unsafe { ffi::duckdb_appender_column_count(app) };
        if count != 5 {
            return Err(DuckError::ours(format!(
                "appender has {count} columns, expected 5"
            )));
        }
        for (i, expected) in EXPECTED.iter().enumerate() {
            // SAFETY: `app` is live and `i` is below its column count (5);
            // the type DuckDB returns is owned by `this.types` at once.
            let ty = unsafe { ffi::duckdb_appender_column_type(app, i as u64) };
            if ty.is_null() {
                return Err(DuckError::ours(
                    "DuckDB gave no type for an appender column",
                ));
            }
            this.types.push(ty);
            // SAFETY: `ty` is a live, non-null logical type.
            let physical = match unsafe { ffi::duckdb_get_type_id(ty) } {
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
    fn query_reads_each_type_as_text() {
        let session = Session::open(":memory:", &[]).unwrap();
        let rows = session
            .query(
                "SELECT 'short', 'longer than twelve bytes, ünïcødé', NULL::VARCHAR, NULL, \
                 true, false, 42::BIGINT, (-9223372036854775808)::BIGINT, -7::TINYINT, 255::UTINYINT, \
                 170141183460469231731687303715884105727::HUGEINT, -2::HUGEINT, \
                 18446744073709551616::UHUGEINT, 1.5::DOUBLE, -0.25::FLOAT",
            )
            .unwrap();
        let text: Vec<Option<&str>> = rows[0].iter().map(Option::as_deref).collect();
        assert_eq!(rows.len(), 1);
        assert_eq!(
            text,
            [
                Some("short"),
                Some("longer than twelve bytes, ünïcødé"),
                None,
                None,
                Some("true"),
                Some("false"),
                Some("42"),
                Some("-9223372036854775808"),
                Some("-7"),
                Some("255"),
                Some("170141183460469231731687303715884105727"),
                Some("-2"),
                Some("18446744073709551616"),
                Some("1.5"),
                Some("-0.25"),
            ]
        );
        // Several chunks (2048 rows each), in order, NULLs in every one.
        let rows = session
            .query(
                "SELECT CASE WHEN i % 3 = 0 THEN NULL ELSE i::VARCHAR || '-padding-past-12' END, i \
                 FROM range(5000) t(i) ORDER BY i",
            )
            .unwrap();
        assert_eq!(rows.len(), 5000);
        for (i, row) in rows.iter().enumerate() {
            let text = (i % 3 != 0).then(|| format!("{i}-padding-past-12"));
            assert_eq!(row, &[text, Some(i.to_string())], "row {i}");
        }
        assert_eq!(
            session.query("SELECT 1 WHERE false").unwrap(),
            Vec::<Vec<Option<String>>>::new()
        );
        // Several statements: the last one's rows.
        assert_eq!(
            session
                .query_value("CREATE TABLE t (x INT); INSERT INTO t VALUES (3); SELECT x FROM t")
                .unwrap(),
            Some("3".to_string())
        );
    }

    #[test]
    fn query_refuses_types_it_does_not_read_and_execute_ignores_them() {
        let session = Session::open(":memory:", &[]).unwrap();
        let e = session.query("SELECT DATE '2024-01-01'").unwrap_err();
        assert!(e.kind.is_none(), "{e:?}");
        assert!(e.text().contains("type id 13"), "{e}");
        session.execute("SELECT DATE '2024-01-01', now()").unwrap();
    }

    #[test]
    fn errors_keep_duckdb_type() {
        let session = Session::open(":memory:", &[]).unwrap();
        let e = session.execute("ROLLBACK").unwrap_err();
        assert!(e.is_no_transaction(), "{e:?}");
        let e = session.query("SELECT * FROM missing_table").unwrap_err();
        assert_eq!(
            e.kind,
            Some(ffi::duckdb_error_type_DUCKDB_ERROR_CATALOG),
            "{e:?}"
        );
        assert!(!e.is_no_transaction() && !e.is_io());
        let e = session.execute("SELECT 'x'::INT").unwrap_err();
        assert_eq!(
            e.kind,
            Some(ffi::duckdb_error_type_DUCKDB_ERROR_CONVERSION),
            "{e:?}"
        );
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
