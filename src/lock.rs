//! Waiting for the database file, within a bound.
//!
//! A DuckDB file has one writer process at a time, and any process that has
//! it open, even read-only, keeps writers out. So `write` waits for the file
//! rather than failing at once ([`Wait::attach`]): it retries with backoff,
//! logs every [`LOG_EVERY`] who holds the file (DuckDB's message names the
//! program and its PID), and gives up after the configured bound with a
//! retryable `transient_error` naming the holder. The same wait serves the
//! start of a sync and every reopen after the file was released while the
//! input was idle.
//!
//! Two syncs into one file are serialised for their whole length by a
//! second, advisory lock on a file beside the database ([`WriterLock`]),
//! which readers never take: once a sync can let go of the database
//! between commits, a second `write` could otherwise slip its commits in
//! between the first one's.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::duck::{DuckError, Session};
use crate::error::Failure;

/// How often a wait says who holds the file.
pub const LOG_EVERY: Duration = Duration::from_secs(10);
/// The longest pause between two tries.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// What the writers' lock file beside a database is called.
pub const WRITER_LOCK_SUFFIX: &str = ".writer.lock";
/// The first line of a writers' lock file this connector made.
const WRITER_LOCK_HEADER: &str = "destination-duckdb writer lock";

/// A bounded wait for a lock, which SIGTERM cuts short.
#[derive(Debug, Clone)]
pub struct Wait {
    pub timeout: Duration,
    /// Set by SIGTERM/SIGINT: stop waiting.
    pub cancelled: Arc<AtomicBool>,
}

impl Wait {
    /// Runs `attach` (an SQL `ATTACH` of the database `label` on `session`)
    /// until it is not refused for a lock another process holds, or the
    /// wait is over. Any other failure is returned at once, as DuckDB gave
    /// it.
    pub fn attach(&self, session: &Session, attach: &str, label: &str) -> Result<(), Blocked> {
        let started = Instant::now();
        let mut logged: Option<Instant> = None;
        let mut backoff = Duration::from_millis(20);
        loop {
            let e = match session.execute(attach) {
                Ok(()) => {
                    if logged.is_some() {
                        tracing::info!(
                            seconds = started.elapsed().as_secs_f64(),
                            "the database `{label}` is free: going on"
                        );
                    }
                    return Ok(());
                }
                Err(e) if e.is_lock_conflict() => e,
                Err(e) => return Err(Blocked::Other(e)),
            };
            let holder = holder(&e);
            let waited = started.elapsed();
            if waited >= self.timeout || self.cancelled.load(Ordering::Relaxed) {
                return Err(Blocked::Locked(locked(label, &holder, waited, self)));
            }
            if logged.is_none_or(|at| at.elapsed() >= LOG_EVERY) {
                tracing::warn!(
                    "the database `{label}` is open in {holder}; waiting for it (up to {} s, {} s so far)",
                    self.timeout.as_secs(),
                    waited.as_secs()
                );
                logged = Some(Instant::now());
            }
            std::thread::sleep(backoff.min(self.timeout - waited));
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// Why a database could not be attached.
#[derive(Debug)]
pub enum Blocked {
    /// Another process held it for the whole wait.
    Locked(Failure),
    /// Anything else, as DuckDB said it.
    Other(DuckError),
}

/// Who holds the file, as DuckDB names it: `program (PID n)`.
fn holder(e: &DuckError) -> String {
    let text = e.text();
    text.find("held in ")
        .map(|i| &text[i + "held in ".len()..])
        .and_then(|rest| rest.find(')').map(|end| &rest[..=end]))
        .filter(|h| h.contains("(PID "))
        .map_or_else(|| "another process".to_string(), str::to_string)
}

fn locked(label: &str, holder: &str, waited: Duration, wait: &Wait) -> Failure {
    let why = if wait.cancelled.load(Ordering::Relaxed) {
        "the sync was cancelled while waiting".to_string()
    } else {
        format!("waited {} s (`lock_timeout_seconds`)", waited.as_secs())
    };
    Failure::transient(format!(
        "the database `{label}` is open in {holder}, which keeps writers out ({why}); \
         close it there, or open it read-only between syncs (see the README, \
         \"Reading the file during a sync\"), and retry"
    ))
}

/// The advisory lock that one sync holds on a database for its whole
/// length (see the module docs), on the file `<database>.writer.lock`. It
/// is never deleted: a lock file removed while another process waits on
/// it would let two holders in.
pub struct WriterLock {
    /// Held open: the lock lasts as long as this handle.
    _file: File,
}

impl WriterLock {
    /// Takes the writers' lock of the database at `db`, waiting as `wait`
    /// says while another sync holds it. `unwritable` says what to tell the
    /// user when the folder refuses the lock file (as it would refuse the
    /// database's own files).
    pub fn acquire(
        db: &Path,
        wait: &Wait,
        unwritable: impl FnOnce(std::io::Error) -> Failure,
    ) -> Result<WriterLock> {
        let path = writer_lock_path(db);
        let shown = path.display().to_string();
        if std::fs::symlink_metadata(&path).is_ok_and(|m| !m.is_file()) {
            return Err(Failure::config(format!(
                "`{shown}` exists and is not a file: this connector keeps its writers' lock there; move it away"
            ))
            .into());
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => {
                    unwritable(e)
                }
                _ => Failure::config(format!(
                    "cannot open `{shown}`, the lock that keeps two syncs of this database apart: {e}"
                )),
            })?;
        let started = Instant::now();
        let mut logged: Option<Instant> = None;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(e)) => {
                    return Err(Failure::config(format!("cannot lock `{shown}`: {e}")).into())
                }
            }
            let owner = read_owner(&mut file);
            let waited = started.elapsed();
            if waited >= wait.timeout || wait.cancelled.load(Ordering::Relaxed) {
                return Err(Failure::transient(format!(
                    "another sync ({owner}) is writing the database `{}` (waited {} s, `lock_timeout_seconds`); \
                     retry when it is done",
                    db.display(),
                    waited.as_secs()
                ))
                .into());
            }
            if logged.is_none_or(|at| at.elapsed() >= LOG_EVERY) {
                tracing::warn!(
                    "another sync ({owner}) is writing the database `{}`; waiting for it to finish (up to {} s, {} s so far)",
                    db.display(),
                    wait.timeout.as_secs(),
                    waited.as_secs()
                );
                logged = Some(Instant::now());
            }
            std::thread::sleep(Duration::from_millis(100).min(wait.timeout - waited));
        }
        // Ours now: say who holds it, for the next sync's messages. A file
        // someone else wrote is left as it is.
        let ours = read_owner_line(&mut file).is_none_or(|l| l.starts_with(WRITER_LOCK_HEADER));
        if ours {
            let note = format!("{WRITER_LOCK_HEADER}: PID {}\n", std::process::id());
            let _ = file
                .set_len(0)
                .and_then(|()| file.rewind())
                .and_then(|()| file.write_all(note.as_bytes()));
        }
        Ok(WriterLock { _file: file })
    }
}

/// `<database>.writer.lock`.
pub fn writer_lock_path(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(WRITER_LOCK_SUFFIX);
    db.with_file_name(name)
}

/// The first line of the lock file, if it is short text.
fn read_owner_line(file: &mut File) -> Option<String> {
    let mut buf = [0u8; 128];
    file.rewind().ok()?;
    let n = file.read(&mut buf).ok()?;
    let text = std::str::from_utf8(&buf[..n]).ok()?;
    text.lines().next().map(str::to_string)
}

/// Who holds the writers' lock, as the holder wrote it.
fn read_owner(file: &mut File) -> String {
    read_owner_line(file)
        .and_then(|l| {
            l.strip_prefix(WRITER_LOCK_HEADER)
                .map(|r| r.trim_start_matches(':').trim().to_string())
        })
        .filter(|o| !o.is_empty())
        .unwrap_or_else(|| "a process".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holder_is_read_from_duckdb_words() {
        let e = DuckError::ours(
            "IO Error: Could not set lock on file \"\u{2026}\": Conflicting lock is held in \
             /usr/bin/python3.11 (PID 4242) by user root. See also https://duckdb.org/docs",
        );
        assert_eq!(holder(&e), "/usr/bin/python3.11 (PID 4242)");
        assert_eq!(
            holder(&DuckError::ours("IO Error: Conflicting lock")),
            "another process"
        );
    }

    #[test]
    fn writer_lock_beside_the_database() {
        assert_eq!(
            writer_lock_path(Path::new("/d/x.duckdb")),
            Path::new("/d/x.duckdb.writer.lock")
        );
    }

    #[test]
    fn a_second_writer_waits_then_gives_up_naming_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db.duckdb");
        let wait = |secs| Wait {
            timeout: Duration::from_secs(secs),
            cancelled: Arc::new(AtomicBool::new(false)),
        };
        let refused = |e: std::io::Error| Failure::config(e.to_string());
        let first = WriterLock::acquire(&db, &wait(0), refused).unwrap();
        let e = match WriterLock::acquire(&db, &wait(0), refused) {
            Err(e) => e,
            Ok(_) => panic!("two writers held the lock"),
        };
        let failure = crate::error::classify(&e);
        assert_eq!(failure.failure_type, crate::error::FailureType::Transient);
        assert!(
            failure
                .message
                .contains(&format!("PID {}", std::process::id())),
            "{}",
            failure.message
        );
        drop(first);
        WriterLock::acquire(&db, &wait(0), refused).unwrap();
    }
}
