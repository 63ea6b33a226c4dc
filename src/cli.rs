//! Command-line types only; no logic.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "destination-duckdb",
    version,
    about = "Airbyte destination that lands records in a DuckDB file",
    long_about = "Airbyte destination that lands records in a DuckDB file.\n\n\
        Speaks the Airbyte protocol: `spec`, `check` and `write`. Protocol messages go to stdout, \
        one JSON per line; logs go to stderr.",
    after_help = "Examples:\n  \
        destination-duckdb spec\n  \
        destination-duckdb check --config config.json\n  \
        source-faker read --config s.json --catalog c.json | destination-duckdb write --config config.json --catalog c.json"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Log level for stderr (error, warn, info, debug, trace); RUST_LOG
    /// overrides it with a full filter.
    #[arg(
        long,
        global = true,
        default_value = "info",
        env = "DESTINATION_DUCKDB_LOG_LEVEL"
    )]
    pub log_level: String,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the connector specification (one SPEC message).
    Spec,
    /// Check that the configured database can be opened and written.
    Check {
        /// JSON config file (see `spec`).
        #[arg(long)]
        config: PathBuf,
    },
    /// Read Airbyte messages on stdin and write their records to DuckDB.
    Write {
        /// JSON config file (see `spec`).
        #[arg(long)]
        config: PathBuf,
        /// Configured catalog JSON file.
        #[arg(long)]
        catalog: PathBuf,
    },
}
