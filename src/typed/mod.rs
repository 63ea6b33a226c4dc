//! Typed relations over the raw tables: one column per top-level property of
//! a stream's JSON schema, and for `append_dedup` streams one row per
//! primary key.
//!
//! The raw table stays the source of truth. The typed relation
//! `"<schema>"."<name>"` is either a view that types (and deduplicates) the
//! raw rows when it is queried, or a table (`typed_output`): written as
//! the records arrive where it can be (`inline`, typing plain values in
//! Rust, `fast`), else refreshed from the raw table at the end of each sync
//! (`refresh`). The typing rules are SQL over `_airbyte_data` (`sql`), kept
//! as macros in the file, so a DuckDB client reads the views with no
//! extension of ours, and the Rust typing gives what
//! that SQL gives for the values it takes (a JSON column: the same JSON
//! value, in the source's text rather than DuckDB's rewriting of it).
//!
//! Typing never fails a query or a sync: a value that does not fit its
//! column becomes NULL and the row's `_airbyte_meta.changes` gets
//! `{"field": <property>, "change": "NULLED", "reason":
//! "DESTINATION_TYPECAST_ERROR"}`.
//!
//! Names and columns are recorded in `_airbyte_internal.typed_relations`, so
//! they stay stable across syncs: a property once given a column keeps it
//! (its type may widen), and properties that leave the schema keep their
//! column.
//!
//! A dedup cursor compares by its value: a typed column by its type; a
//! nested, undeclared or JSON cursor by its JSON value (see `json_order`),
//! so views and tables agree whatever the schema says.
//!
//! The modules, each depending only on those before it:
//! - `text`: which text each type accepts, as SQL (the one definition of
//!   the accepted shapes);
//! - `types`: the JSON schema to DuckDB type mapping, and column names;
//! - `sql`: the typed relation's SQL, built on `text` and `types`; the
//!   typing rules are DuckDB macros whose names carry a hash of their text;
//! - `fast`: typing a record in Rust, a faster path to what `sql` gives for
//!   the values it takes (and it gives up on the others);
//! - `coverage`: which raw rows a typed table holds, checked against them;
//! - `registry`: the registry of typed relations, read and written there
//!   only, and the objects that belong to a typed relation;
//! - `prepare`: names, columns and views at the start of a sync;
//! - `refresh`: a typed table caught up (or rebuilt) from its raw table;
//! - `inline`: typed tables written as the records arrive (their rows are
//!   appended by `pipeline::typed_writer`).
//!
//! Names are allocated through [`crate::internal`], which the raw tables
//! share.

mod coverage;
mod fast;
mod inline;
mod prepare;
mod refresh;
mod registry;
mod sql;
mod text;
mod types;

pub use coverage::count_update;
pub use fast::type_record;
pub use inline::{
    catch_up as catch_up_inline, eligible as inline_eligible, finish as finish_inline,
    forget_coverage, open as open_inline, Inline,
};
pub use prepare::prepare;
pub use refresh::materialise;
pub use registry::{dropped_with_raw_rows, Typed};
pub use types::{column_type, merge_columns, schema_properties, ColType, Column};
