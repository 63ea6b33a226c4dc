//! A DuckDB instance ([`Instance`]) and the connections to it
//! ([`Session`]): SQL, small metadata queries, transactions.

use std::os::raw::c_char;
use std::ptr;

use libduckdb_sys as ffi;

use super::result::{Chunk, QueryResult, Value};
use super::{cstring, message, DuckError, Result};

/// One connection to a DuckDB instance, a session in DuckDB's terms:
/// everything that runs SQL, reads results, opens transactions and
/// appenders goes through one.
pub struct Session {
    pub(super) con: ffi::duckdb_connection,
}

// SAFETY: the handle is owned exclusively by this struct (borrowers such as
// `Appender` and `Transaction` are tied to it by lifetime), and DuckDB allows
// a connection to be used from any one thread at a time; `Session` is not
// `Sync`, so it is one thread at a time.
unsafe impl Send for Session {}

impl Drop for Session {
    fn drop(&mut self) {
        // SAFETY: the handle came from `duckdb_connect`, is owned only by
        // this struct and released exactly once, here; every borrower
        // (appender, transaction) has ended by lifetime.
        unsafe { ffi::duckdb_disconnect(&mut self.con) };
    }
}

/// One in-process DuckDB instance and its first session, which it derefs
/// to. Only an instance opens further sessions ([`Instance::connect`]): a
/// [`Linked`] session cannot.
pub struct Instance {
    /// Declared first: dropped (disconnected) before the instance closes.
    session: Session,
    db: InstanceHandle,
}

/// The instance handle, closed when dropped (after the instance's own
/// session, by field order).
struct InstanceHandle(ffi::duckdb_database);

// SAFETY: owned exclusively by its `Instance`; DuckDB's instance handle may
// be used (connected to, closed) from any thread.
unsafe impl Send for InstanceHandle {}

impl Drop for InstanceHandle {
    fn drop(&mut self) {
        // SAFETY: created by `duckdb_open_ext`, owned only by its
        // `Instance`, closed exactly once, here. The instance's own session
        // is gone (field order), and `Linked` sessions borrow the instance,
        // so they are gone too.
        unsafe { ffi::duckdb_close(&mut self.0) };
    }
}

impl std::ops::Deref for Instance {
    type Target = Session;
    fn deref(&self) -> &Session {
        &self.session
    }
}

/// A further session on an [`Instance`] (its attached databases and
/// settings included), for another thread. It cannot outlive the instance,
/// and cannot open sessions itself.
pub struct Linked<'s> {
    session: Session,
    _instance: std::marker::PhantomData<&'s ()>,
}

impl std::ops::Deref for Linked<'_> {
    type Target = Session;
    fn deref(&self) -> &Session {
        &self.session
    }
}

impl Instance {
    /// Opens another connection to this instance, for use on another
    /// thread while this one goes on.
    pub fn connect(&self) -> Result<Linked<'_>> {
        let mut con: ffi::duckdb_connection = ptr::null_mut();
        // SAFETY: `self.db` is the live instance this struct owns, and
        // DuckDB lets any thread open connections to an instance; `con` is a
        // valid out-pointer. `Linked` borrows `self`, so the instance
        // outlives the connection.
        unsafe {
            if ffi::duckdb_connect(self.db.0, &mut con) != ffi::DuckDBSuccess {
                return Err(DuckError::ours("DuckDB could not open a second connection"));
            }
        }
        Ok(Linked {
            session: Session { con },
            _instance: std::marker::PhantomData,
        })
    }

    /// Opens a DuckDB instance on `path` (`:memory:` for none) with start-up
    /// options.
    pub fn open(path: &str, options: &[(&str, &str)]) -> Result<Instance> {
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
        Ok(Instance {
            session: Session { con },
            db: InstanceHandle(db),
        })
    }
}

impl Session {
    /// Runs SQL (one or more statements), returning the last statement's
    /// result, which the caller owns.
    fn run(&self, sql: &str) -> Result<QueryResult> {
        let c_sql = cstring(sql)?;
        // SAFETY: `duckdb_result` is a plain C struct of integers and
        // pointers, for which all zeroes is a valid (empty) value.
        let mut res = QueryResult(unsafe { std::mem::zeroed() });
        // SAFETY: `self.con` is the live connection this struct owns,
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

    /// Runs SQL and returns the last statement's rows, typed. Meant for
    /// small metadata queries: text, booleans, integers and floating-point
    /// numbers; any other column type is an error.
    pub fn query_values(&self, sql: &str) -> Result<Vec<Vec<Value>>> {
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

    /// The first row of a metadata query (no values when it has none).
    pub fn query_row(&self, sql: &str) -> Result<ResultRow> {
        Ok(ResultRow(
            self.query_values(sql)?
                .into_iter()
                .next()
                .unwrap_or_default(),
        ))
    }

    /// [`Session::query_values`] as text (`None` for NULL).
    pub fn query(&self, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
        Ok(self
            .query_values(sql)?
            .into_iter()
            .map(|row| row.into_iter().map(Value::into_text).collect())
            .collect())
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

/// An open transaction on a [`Session`]: [`Transaction::commit`] ends
/// it; dropped without a commit (an error on the way), it rolls back, and a
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

/// One row of a metadata query, read by column position.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResultRow(pub Vec<Value>);

impl ResultRow {
    /// Column `i` as an integer; None for NULL, another type, or no such
    /// column.
    pub fn int(&self, i: usize) -> Option<i64> {
        self.0.get(i).and_then(Value::as_i64)
    }

    /// Column `i` as text; None for NULL, another type, or no such column.
    pub fn text(&self, i: usize) -> Option<&str> {
        self.0.get(i).and_then(Value::as_str)
    }

    /// Column `i` as a boolean; None for NULL, another type, or no such
    /// column.
    pub fn bool(&self, i: usize) -> Option<bool> {
        self.0.get(i).and_then(Value::as_bool)
    }
}
