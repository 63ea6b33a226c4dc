//! `write`: wiring for the sync. Loads the config and catalog, opens the
//! database, prepares the tables, starts the reader thread, runs the
//! [`SyncLoop`], refreshes the typed tables and closes the database. What
//! happens to each record and state is in [`pipeline`](crate::pipeline).

use std::io::{IsTerminal, Read, Write};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::catalog::{Catalog, WriteMode};
use crate::config::{self, Config, TypedOutput};
use crate::database;
use crate::duck::Session;
use crate::emit::Emitter;
use crate::pipeline::policy::SystemClock;
use crate::pipeline::reader::{self, ReaderMsg};
use crate::pipeline::sink::Sink;
use crate::pipeline::sync::{Settings, SyncLoop};
use crate::pipeline::tables;
use crate::pipeline::typed_writer::TypedWriter;
use crate::typed;

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
    let db = database::open(&config, catalog.streams.len())?;
    let label = db.label.clone();
    run_sync(&config, catalog, db, input, out).map_err(|e| database::storage_failure(e, &label))
}

fn run_sync<W: Write>(
    config: &Config,
    mut catalog: Catalog,
    db: database::Database,
    input: Box<dyn Read + Send>,
    out: &mut Emitter<W>,
) -> Result<()> {
    // Every stream's tables are resolved here, once, before the catalog is
    // shared: the one copy of the names that the reader, the sink and the
    // typed relations all read.
    tables::assign(&db.session, &mut catalog.streams)?;
    let catalog = Arc::new(catalog);
    let catalog = &catalog;
    // A scope for the typed-row writer thread, which borrows the database:
    // it ends (its channel closed when the sink is dropped) before the
    // database is closed, on every path out of here.
    let refreshed = std::thread::scope(|scope| -> Result<Result<()>> {
        let session = &db.session;
        // Before the typed tables are caught up, which can take a while.
        let cancelled = install_signal_handlers()?;
        let mut sink = Sink::prepare(
            session,
            Arc::clone(catalog),
            config.memory_limit_bytes(),
            db.row_group_rows,
        )?;
        // Typed views (or, with `off`, dropping what this connector made) do
        // not depend on the records: they are prepared on a connection and
        // thread of their own while the records load, so a first sync of a
        // large catalog does not wait seconds for DuckDB to bind its views
        // before reading any record. Typed tables are prepared before, as
        // their rows are written with the records.
        let beside = config.typed_output != TypedOutput::Tables;
        let (mut typed, views) = if beside {
            let connection = session.connect()?;
            let mode = config.typed_output;
            let views = std::thread::Builder::new()
                .name("views".into())
                .spawn_scoped(scope, move || {
                    // A panic (a bug) fails the sync plainly rather than
                    // taking the process down when the scope joins.
                    let prepare = std::panic::AssertUnwindSafe(|| {
                        typed::prepare(&connection, &catalog.streams, mode).map(drop)
                    });
                    std::panic::catch_unwind(prepare).unwrap_or_else(|_| {
                        Err(anyhow::anyhow!(
                            "preparing the typed views stopped on a bug (a panic)"
                        ))
                    })
                })
                .context("starting the typed view thread")?;
            (Vec::new(), Some(views))
        } else {
            (
                typed::prepare(session, sink.streams(), config.typed_output)?,
                None,
            )
        };
        let inline = start_inline(session, config, sink.streams(), &mut typed)?;
        if inline.iter().any(Option::is_some) {
            let writer = TypedWriter::spawn(scope, session.connect()?, &inline, catalog)?;
            sink.write_typed_with(writer);
        }
        let append_phase = append_phase_settings(config);
        set_append_phase(session, &append_phase)?;
        let rx = start_reader(input, catalog)?;

        let settings = Settings {
            batch_bytes: config.batch_bytes,
            progress_interval: Duration::from_secs(config.progress_interval_seconds),
            progress_on_stdout: !std::io::stdout().is_terminal(),
            cancelled,
            tables: sink
                .streams()
                .iter()
                .map(|s| format!("\"{}\".\"{}\"", s.schema, s.table))
                .collect(),
        };
        SyncLoop::new(&mut sink, catalog, out, SystemClock, settings).run(&rx)?;
        // The typed-row writer ends here, its last rows committed.
        let typed_failed = sink.typed_failed();
        drop(sink);
        let inline = if typed_failed {
            // Typed rows were given up mid-sync: those tables are rebuilt
            // from the raw rows (staged rows included) at the end.
            for (t, i) in typed.iter_mut().zip(&inline) {
                if i.is_some() {
                    typed::forget_coverage(t);
                }
            }
            vec![None; inline.len()]
        } else {
            inline
        };
        if let Some(views) = views {
            views
                .join()
                .map_err(|_| anyhow::anyhow!("the typed view thread stopped on a bug (a panic)"))?
                .context("preparing the typed views")?;
        }

        for (name, _) in &append_phase {
            session
                .execute(&format!("RESET {name}"))
                .with_context(|| format!("resetting DuckDB's {name}"))?;
        }
        // States are already echoed here: a refresh that fails loses none of
        // the raw rows.
        Ok(if config.typed_output == TypedOutput::Tables {
            refresh_typed_tables(session, &catalog.streams, &mut typed, &inline)
        } else {
            Ok(())
        })
    })?;
    // A final checkpoint that fails (a full disk) loses none of the raw
    // rows either: they are in the WAL.
    refreshed.and_then(|()| db.close())
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

/// With `typed_output: tables`, prepares the streams whose typed rows can be
/// written as their records arrive (see [`typed::Inline`]); one entry per
/// stream, None for the others.
fn start_inline(
    session: &Session,
    config: &Config,
    streams: &[crate::catalog::Stream],
    typed: &mut [typed::Typed],
) -> Result<Vec<Option<typed::Inline>>> {
    if config.typed_output != TypedOutput::Tables {
        return Ok(vec![None; streams.len()]);
    }
    let tables = database::existing_tables(session)?;
    let mut eligible: Vec<bool> = streams
        .iter()
        .zip(typed.iter())
        .map(|(s, t)| typed::inline_eligible(s, t))
        .collect();
    for ((s, t), ok) in streams.iter().zip(typed.iter_mut()).zip(&mut eligible) {
        if *ok {
            // A stream whose table cannot be caught up now (out of memory,
            // a full temporary folder) is refreshed at the end of the sync
            // instead, after its records; the others go on.
            if let Err(e) = typed::catch_up_inline(session, s, t, &tables) {
                tracing::warn!(stream = %s.label(), "catching up the typed table failed, it is refreshed after the records instead: {e:#}");
                *ok = false;
            }
        }
    }
    // One transaction (one commit) for every stream, however many.
    let txn = session.begin()?;
    let mut inline = vec![None; streams.len()];
    for (((s, t), slot), ok) in streams
        .iter()
        .zip(typed.iter_mut())
        .zip(&mut inline)
        .zip(eligible)
    {
        if ok {
            *slot = Some(
                typed::open_inline(session, s, t)
                    .with_context(|| format!("preparing the typed table of {}", s.label()))?,
            );
        } else {
            typed::release_inline(session, s, t)?;
        }
    }
    txn.commit().context("committing")?;
    Ok(inline)
}

/// Builds or catches up every stream's typed table (`typed_output: tables`):
/// ends the streams written as records arrived, and refreshes the others
/// from their raw tables. Each runs in its own transaction; one that fails
/// leaves its previous table, and the next sync catches it up.
fn refresh_typed_tables(
    session: &Session,
    streams: &[crate::catalog::Stream],
    typed: &mut [typed::Typed],
    inline: &[Option<typed::Inline>],
) -> Result<()> {
    let tables = database::existing_tables(session)?;
    // Every stream gets its refresh even if one before it fails; the first
    // failure is reported at the end.
    let mut first_failure = None;
    for ((stream, t), inline) in streams.iter().zip(typed.iter_mut()).zip(inline) {
        let started = Instant::now();
        let rebuild = stream.mode == WriteMode::Truncate;
        let how = match inline {
            Some(inline) => typed::finish_inline(session, stream, t, inline),
            None => typed::materialise(session, stream, t, rebuild, &tables),
        };
        let how = match how {
            Ok(how) => how,
            Err(e) => {
                tracing::warn!(stream = %stream.label(), "refreshing the typed table failed: {e:#}");
                first_failure.get_or_insert(e);
                continue;
            }
        };
        tracing::info!(
            how,
            stream = %stream.label(),
            table = %format!("\"{}\".\"{}\"", stream.schema, t.name),
            seconds = started.elapsed().as_secs_f64(),
            "typed table refreshed"
        );
    }
    first_failure.map_or(Ok(()), Err)
}
