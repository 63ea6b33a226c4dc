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

mod appender;
mod error;
mod result;
mod session;

use std::ffi::{CStr, CString};
use std::os::raw::c_char;

pub use appender::{Appender, Cell, Physical, Row};
pub use error::{names_storage_full, scrub, DuckError};
pub use result::Value;
pub use session::{Instance, Linked, ResultRow, Session, Transaction};

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

#[cfg(test)]
mod tests {
    use super::error::VALUE_ERRORS;
    use super::*;
    use libduckdb_sys as ffi;

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
        let session = Instance::open(":memory:", &[]).unwrap();
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
        let session = Instance::open(":memory:", &[]).unwrap();
        let e = session.query("SELECT DATE '2024-01-01'").unwrap_err();
        assert!(e.kind.is_none(), "{e:?}");
        assert!(e.text().contains("type id 13"), "{e}");
        session.execute("SELECT DATE '2024-01-01', now()").unwrap();
    }

    #[test]
    fn errors_keep_duckdb_type() {
        let session = Instance::open(":memory:", &[]).unwrap();
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
