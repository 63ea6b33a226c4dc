//! Integration tests, all in one binary. They drive the real
//! `destination-duckdb` binary on real files and check stdout and what lands
//! in DuckDB. Two modules also use the library in-process: `properties` runs
//! the reader, the checkpointer and the name rules on generated inputs by
//! the thousand, and `replay` asks the name rules where a stream lands. No
//! verdict depends on how long anything takes: a wait ends on an event (a
//! line, an exit) or fails at `util::HANG_GUARD`, and rules about time are
//! checked against the sync loop's fake clock in `src/`.

mod util;

mod check;
mod coverage;
mod cursors;
mod dedup;
mod destination_paths;
mod differential;
mod durability;
mod environment;
mod failed_sources;
mod faults;
mod hostile_names;
mod kills;
mod locks;
mod odd_input;
mod packaging;
mod private_data;
mod properties;
mod replay;
mod reserved_names;
mod robustness;
mod semantics;
mod spec;
mod typing;
mod write;
