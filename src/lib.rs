//! `destination-duckdb`: an Airbyte destination that writes to DuckDB.
//!
//! [`run`] is the whole program behind `main`, taking its input and output
//! streams as arguments. The data path of `write` lives in [`pipeline`].

pub mod access;
pub mod catalog;
pub mod cli;
pub mod commands;
pub mod config;
pub mod database;
pub mod duck;
pub mod emit;
pub mod error;
pub mod internal;
pub mod lock;
pub mod names;
pub mod pipeline;
pub mod protocol;
pub mod raw;
pub mod repair;
pub mod typed;

use std::io::{Read, Write};

use cli::{Cli, Command};
use emit::Emitter;

/// Runs one command and returns the process exit code (failure: 1). A
/// failure is reported as one TRACE ERROR message on `out`.
pub fn run<W: Write>(cli: Cli, input: Box<dyn Read + Send>, out: W) -> std::process::ExitCode {
    use std::process::ExitCode;

    let mut out = Emitter::new(out);
    let result = match &cli.command {
        Command::Spec => commands::spec::run(&mut out),
        Command::Check { config } => commands::check::run(config, &mut out),
        Command::Write { config, catalog } => {
            commands::write::run(config, catalog, input, &mut out)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let failure = error::classify(&e);
            let internal = format!("{e:#}");
            tracing::error!("{internal}");
            if let Err(write_error) = out.trace_error(&failure, &internal) {
                tracing::error!("could not report the failure on stdout: {write_error}");
            }
            ExitCode::FAILURE
        }
    }
}
