//! Integration tests: each drives the real `destination-duckdb` binary on
//! real files and checks stdout and what lands in DuckDB.

mod util;

mod check;
mod dedup;
mod differential;
mod durability;
mod edges;
mod environment;
mod faults;
mod kills;
mod packaging;
mod properties;
mod replay;
mod robustness;
mod semantics;
mod spec;
mod typing;
mod write;
