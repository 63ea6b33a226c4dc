//! `write`: wiring for the sync. Loads the config and catalog, opens the
//! database, prepares the tables, starts the reader thread, runs the
//! [`SyncLoop`], refreshes the typed tables and closes the database. What
//! happens to each record and state is in [`pipeline`](crate::pipeline).

use std::io::{IsTerminal, Read, Write};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::catalog::Catalog;
use crate::config::{self, Config};
use crate::database::{self, Purpose};
use crate::duck::Session;
use crate::emit::Emitter;
use crate::lock::Wait;
use crate::pipeline::policy::SystemClock;
use crate::pipeline::reader::{self, ReaderMsg};
use crate::pipeline::sink::{self, Sink};
use crate::pipeline::sync::{Settings, SyncLoop};
use crate::pipeline::tables;
use crate::pipeline::typed_output::TypedOutput;

/// Batches in flight between the reader and the writer.
const CHANNEL_BATCHES: usize = 4;

pub fn run<W: Write>(
    config_path: &Path,
    catalog_path: &Path,
    input: Box<dyn Read + Send>,
    out: &mut Emitter<W>,
) -> Result<()> {
    config::check_data_channel(|name| std::env::var(name).ok())?;
    if let Ok(limit) = std::env::var(config::STORAGE_LIMIT_ENV) {
        tracing::debug!(
            limit,
            "{} is not applied: everything this connector writes is under destination_path, \
             a mounted volume outside the pod's ephemeral storage",
            config::STORAGE_LIMIT_ENV
        );
    }
    let config = Config::load(config_path)?;
    let catalog = Catalog::load(catalog_path, &config.schema)?;
    tracing::debug!(?config, streams = catalog.streams.len(), "starting write");
    // Before any wait for the file: a cancel ends a wait too.
    let cancelled = install_signal_handlers()?;
    let wait = Wait {
        timeout: config.lock_timeout,
        cancelled: Arc::clone(&cancelled),
    };
    let db = database::open(&config, catalog.streams.len(), &wait, Purpose::Sync)?;
    let label = db.label.clone();
    run_sync(&config, catalog, db, input, out, cancelled).context(database::storage(&label))
}

fn run_sync<W: Write>(
    config: &Config,
    mut catalog: Catalog,
    db: database::Database,
    input: Box<dyn Read + Send>,
    out: &mut Emitter<W>,
    cancelled: Arc<AtomicBool>,
) -> Result<()> {
    let session = &db.session;
    // Every stream's tables are resolved here, once, before the catalog is
    // shared: the one copy of the names that the reader, the sink and the
    // typed relations all read.
    tables::assign(session, &mut catalog.streams)?;
    let catalog = Arc::new(catalog);
    sink::prepare_tables(session, &catalog)?;
    // A scope for the typed output's threads, which borrow the database:
    // they end before the database is closed, on every path out of here.
    let finished = std::thread::scope(|scope| -> Result<Result<()>> {
        let typed = TypedOutput::start(scope, session, Arc::clone(&catalog), config.typed_output)?;
        let mut sink = Sink::new(
            session,
            Arc::clone(&catalog),
            config.memory_limit_bytes(),
            db.row_group_rows,
            typed,
            db.attachment.clone(),
        );
        let append_phase = append_phase_settings(config);
        set_append_phase(session, &append_phase)?;
        let rx = start_reader(input, &catalog)?;
        let settings = Settings {
            batch_bytes: config.batch_bytes,
            progress_interval: Duration::from_secs(config.progress_interval_seconds),
            progress_on_stdout: !std::io::stdout().is_terminal(),
            cancelled,
            tables: catalog
                .streams
                .iter()
                .map(|s| format!("\"{}\".\"{}\"", s.schema, s.table))
                .collect(),
            release_idle: config.release_idle,
        };
        SyncLoop::new(&mut sink, &catalog, out, SystemClock, settings).run(&rx)?;
        let typed = sink.finish()?;
        for (name, _) in &append_phase {
            session
                .execute(&format!("RESET {name}"))
                .with_context(|| format!("resetting DuckDB's {name}"))?;
        }
        // States are already echoed here: a typed refresh that fails loses
        // none of the raw rows.
        Ok(typed.finish())
    })?;
    // A final checkpoint that fails (a full disk) loses none of the raw
    // rows either: they are in the WAL.
    finished.and_then(|()| db.close())
}

/// DuckDB settings for the append phase, undone (`RESET`) before the typed
/// refresh and the final checkpoint. Measured in `bench/README.md`
/// ("Measurements behind settings in the code").
fn append_phase_settings(config: &Config) -> Vec<(&'static str, &'static str)> {
    // `_airbyte_ab_id` and `_airbyte_data` are unique per row: analysing them
    // for a dictionary at every row group is wasted work.
    let mut settings = vec![("disabled_compression_methods", "'dictionary'")];
    if config.threads.is_none() {
        // The reader parses on the other core; a second DuckDB worker mostly
        // spins waiting for the appender's small inserts.
        settings.push(("threads", "1"));
    }
    settings
}

fn set_append_phase(session: &Session, settings: &[(&str, &str)]) -> Result<()> {
    for (name, value) in settings {
        session
            .execute(&format!("SET {name} = {value}"))
            .with_context(|| format!("setting DuckDB's {name}"))?;
    }
    Ok(())
}

/// Returns the flag that SIGTERM and SIGINT set.
fn install_signal_handlers() -> Result<Arc<AtomicBool>> {
    let cancelled = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&cancelled))
            .context("installing the SIGTERM handler")?;
    }
    // Past a file-size limit (ulimit -f) a write fails with EFBIG instead of
    // the process dying on SIGXFSZ, so the failure is reported and rolled back.
    signal_hook::flag::register(
        signal_hook::consts::SIGXFSZ,
        Arc::new(AtomicBool::new(false)),
    )
    .context("installing the SIGXFSZ handler")?;
    Ok(cancelled)
}

/// Starts the thread that parses `input` into batches.
fn start_reader(
    input: Box<dyn Read + Send>,
    catalog: &Arc<Catalog>,
) -> Result<Receiver<ReaderMsg>> {
    let (tx, rx) = mpsc::sync_channel(CHANNEL_BATCHES);
    let catalog = Arc::clone(catalog);
    std::thread::Builder::new()
        .name("reader".into())
        .spawn(move || reader::run(input, catalog, tx))
        .context("starting the reader thread")?;
    Ok(rx)
}
