//! `check`: proves that a sync with this config can write.
//!
//! It opens (or creates) the database, then in one transaction creates the
//! schema when missing, a probe table, writes a row, and drops both again,
//! commits and checkpoints. A passing check has therefore really written to
//! the file; it leaves nothing behind but the (possibly new, empty) file.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::config::{Config, CHECK_LOCK_TIMEOUT_SECONDS};
use crate::database;
use crate::emit::Emitter;
use crate::error::classify;
use crate::internal;
use crate::lock::Wait;
use crate::names::{literal, qualified, qualified_schema};

pub fn run<W: Write>(config_path: &Path, out: &mut Emitter<W>) -> Result<()> {
    let result = Config::load(config_path).and_then(|config| probe(&config));
    match result {
        Ok(()) => out.connection_status(Ok(())),
        Err(e) => {
            tracing::warn!("check failed: {e:#}");
            let failure = classify(&e);
            out.connection_status(Err(&failure.message))
        }
    }
    .context("writing the CONNECTION_STATUS message")
}

fn probe(config: &Config) -> Result<()> {
    // A check answers a person: it waits for the file a few seconds only,
    // then fails naming who holds it.
    let wait = Wait {
        timeout: Duration::from_secs(CHECK_LOCK_TIMEOUT_SECONDS),
        cancelled: Arc::new(AtomicBool::new(false)),
    };
    // The probe writes one table of one row: any row group size does.
    let db = database::open(config, 1, &wait, database::Purpose::Check)?;
    let label = db.label.clone();
    write_probe(config, db).context(database::storage(&label))
}

fn write_probe(config: &Config, db: database::Database) -> Result<()> {
    let schema = qualified_schema(&config.schema);
    let schema_existed = db
        .session
        .query_row(&format!(
            "SELECT count(*) > 0 FROM duckdb_schemas() WHERE database_name = '{}' AND lower(schema_name) = lower({})",
            database::CATALOG,
            literal(&config.schema)
        ))?
        .bool(0)
        == Some(true);
    let table = qualified(&config.schema, &internal::probe_table());
    let drop_schema = if schema_existed {
        String::new()
    } else {
        format!("DROP SCHEMA {schema};")
    };
    let sql = format!(
        "CREATE SCHEMA IF NOT EXISTS {schema}; \
         CREATE TABLE {table} (probe VARCHAR); \
         INSERT INTO {table} VALUES ('airbyte'); \
         DROP TABLE {table}; \
         {drop_schema}"
    );
    let txn = db.session.begin()?;
    db.session
        .execute(&sql)
        .and_then(|()| txn.commit())
        .with_context(|| format!("writing a probe table into `{}`", db.label))?;
    db.close()
}
