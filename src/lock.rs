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
    /// The same wait, with `spent` of it already gone.
    pub fn less(&self, spent: Duration) -> Wait {
        Wait {
            timeout: self.timeout.saturating_sub(spent),
            cancelled: Arc::clone(&self.cancelled),
        }
    }

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
            let over = self.turn(started, &mut logged, backoff, |timeout, waited| {
                tracing::warn!(
                    "the database `{label}` is open in {holder}; waiting for it (up to {timeout} s, {waited} s so far)"
                )
            });
            if let Some(why) = over {
                return Err(Blocked::Locked(locked(label, &holder, &why)));
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One turn of a wait, `started` then, for something another process
    /// holds. Once the wait is over (its time spent, or the sync cancelled)
    /// returns why, for the error. Else says who holds it through
    /// `say(timeout_s, waited_s)` every [`LOG_EVERY`] (`logged` keeps when
    /// it last did) and pauses `pause`, no longer than the wait has left.
    fn turn(
        &self,
        started: Instant,
        logged: &mut Option<Instant>,
        pause: Duration,
        say: impl FnOnce(u64, u64),
    ) -> Option<String> {
        let waited = started.elapsed();
        if self.cancelled.load(Ordering::Relaxed) {
            return Some("the sync was cancelled while waiting".to_string());
        }
        if waited >= self.timeout {
            return Some(format!(
                "waited {} s, `lock_timeout_seconds`",
                waited.as_secs()
            ));
        }
        if logged.is_none_or(|at| at.elapsed() >= LOG_EVERY) {
            say(self.timeout.as_secs(), waited.as_secs());
            *logged = Some(Instant::now());
        }
        std::thread::sleep(pause.min(self.timeout - waited));
        None
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

fn locked(label: &str, holder: &str, why: &str) -> Failure {
    Failure::transient(format!(
        "the database `{label}` is open in {holder}, which keeps writers out ({why}); \
         close it there and retry. A read-only connection keeps writers out too \
         while it is open: connect for as long as a query takes (see the README, \
         \"Reading the file during a sync\")"
    ))
}

/// The advisory lock that one sync holds on a database for its whole
/// length (see the module docs), on the file `<database>.writer.lock` beside
/// the database's real path (links followed), so that every path to one
/// database meets the same lock. It is never deleted: a lock file removed
/// while another process waits on it would let two holders in; and one
/// removed or replaced while this process waits for it is opened again.
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
        unwritable: impl Fn(std::io::Error) -> Failure,
    ) -> Result<WriterLock> {
        let path = writer_lock_path(db);
        let shown = path.display().to_string();
        let started = Instant::now();
        let mut logged: Option<Instant> = None;
        loop {
            let mut opened = LockFile::open(&path, &unwritable)?;
            match opened.file.try_lock() {
                // Locked, and still the file at the path (not one removed
                // or replaced while this process waited): ours.
                Ok(()) if opened.is_at(&path) => {
                    opened.note_holder();
                    return Ok(WriterLock { _file: opened.file });
                }
                Ok(()) => continue,
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(e)) => {
                    return Err(Failure::config(format!("cannot lock `{shown}`: {e}")).into())
                }
            }
            let owner = opened.holder();
            let pause = Duration::from_millis(100);
            let over = wait.turn(started, &mut logged, pause, |timeout, waited| {
                tracing::warn!(
                    "another sync ({owner}) is writing the database `{}`; waiting for it to finish (up to {timeout} s, {waited} s so far)",
                    db.display()
                )
            });
            if let Some(why) = over {
                return Err(Failure::transient(format!(
                    "another sync ({owner}) is writing the database `{}` ({why}); \
                     retry when it is done",
                    db.display()
                ))
                .into());
            }
        }
    }

    /// Opens (making it if missing) the writers' lock file of the database
    /// at `db` without taking the lock: what `check` does, so that a folder
    /// that would refuse a sync's lock fails the check too.
    pub fn probe(db: &Path, unwritable: impl Fn(std::io::Error) -> Failure) -> Result<()> {
        LockFile::open(&writer_lock_path(db), &unwritable).map(drop)
    }
}

/// An opened writers' lock file.
struct LockFile {
    file: File,
    /// This process made it: it may write the holder's note in it.
    made: bool,
    writable: bool,
}

impl LockFile {
    /// Opens the lock file at `path`: made if missing (mode 0666 less the
    /// umask, so that whoever may write the database may take the lock),
    /// else opened for writing, or for reading only when this user may not
    /// write it (a lock works on either). A path that is not a regular file
    /// (a link, a folder, a FIFO) is refused.
    fn open(path: &Path, unwritable: &impl Fn(std::io::Error) -> Failure) -> Result<LockFile> {
        use std::os::unix::fs::OpenOptionsExt;
        let shown = path.display().to_string();
        let not_regular = || -> anyhow::Error {
            Failure::config(format!(
                "`{shown}` is not a regular file (a link, a folder, a FIFO?): this connector keeps \
                 its writers' lock there; move it away"
            ))
            .into()
        };
        let is_regular = || std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file());
        let refused = |e: std::io::Error| -> anyhow::Error {
            match e.kind() {
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => {
                    unwritable(e).into()
                }
                // A dangling link, say: say what is there, not what it pointed to.
                _ if std::fs::symlink_metadata(path).is_ok() && !is_regular() => not_regular(),
                _ => Failure::config(format!(
                    "cannot open `{shown}`, the lock that keeps two syncs of this database apart: {e}"
                ))
                .into(),
            }
        };
        let opened = match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o666)
            .open(path)
        {
            Ok(file) => LockFile {
                file,
                made: true,
                writable: true,
            },
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                match OpenOptions::new().read(true).write(true).open(path) {
                    Ok(file) => LockFile {
                        file,
                        made: false,
                        writable: true,
                    },
                    Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => LockFile {
                        file: File::open(path).map_err(refused)?,
                        made: false,
                        writable: false,
                    },
                    Err(e) => return Err(refused(e)),
                }
            }
            Err(e) => return Err(refused(e)),
        };
        // What was opened must be the regular file at the path itself, not
        // what a link there points to.
        if !opened.is_at(path) {
            return Err(not_regular());
        }
        Ok(opened)
    }

    /// Whether the path still names this very file, as a regular file.
    fn is_at(&self, path: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        match (self.file.metadata(), std::fs::symlink_metadata(path)) {
            (Ok(open), Ok(at)) => {
                at.file_type().is_file() && open.dev() == at.dev() && open.ino() == at.ino()
            }
            _ => false,
        }
    }

    /// Notes this process as the holder, for the next sync's messages: in a
    /// file this process made or one that holds such a note already, never
    /// in someone else's file.
    fn note_holder(&mut self) {
        let ours = self.made
            || read_owner_line(&mut self.file).is_some_and(|l| l.starts_with(WRITER_LOCK_HEADER));
        if self.writable && ours {
            let note = format!("{WRITER_LOCK_HEADER}: PID {}\n", std::process::id());
            let _ = self
                .file
                .set_len(0)
                .and_then(|()| self.file.rewind())
                .and_then(|()| self.file.write_all(note.as_bytes()));
        }
    }

    /// Who holds the lock, as the holder noted it.
    fn holder(&mut self) -> String {
        read_owner_line(&mut self.file)
            .and_then(|l| {
                l.strip_prefix(WRITER_LOCK_HEADER)
                    .map(|r| r.trim_start_matches(':').trim().to_string())
            })
            .filter(|o| !o.is_empty())
            .unwrap_or_else(|| "a process".to_string())
    }
}

/// `<database>.writer.lock`, beside the database's real path (links
/// followed, as far as the path exists).
pub fn writer_lock_path(db: &Path) -> PathBuf {
    let real = std::fs::canonicalize(db).unwrap_or_else(|_| {
        match (db.parent().map(std::fs::canonicalize), db.file_name()) {
            (Some(Ok(parent)), Some(name)) => parent.join(name),
            _ => db.to_path_buf(),
        }
    });
    let mut name = real.file_name().unwrap_or_default().to_os_string();
    name.push(WRITER_LOCK_SUFFIX);
    real.with_file_name(name)
}

/// The first line of the lock file, if it is short text.
fn read_owner_line(file: &mut File) -> Option<String> {
    let mut buf = [0u8; 128];
    file.rewind().ok()?;
    let n = file.read(&mut buf).ok()?;
    let text = std::str::from_utf8(&buf[..n]).ok()?;
    text.lines().next().map(str::to_string)
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
    fn writer_lock_beside_the_database_itself() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().canonicalize().unwrap();
        assert_eq!(
            writer_lock_path(&dir.path().join("x.duckdb")),
            real.join("x.duckdb.writer.lock")
        );
        // A link to the database meets the same lock.
        std::fs::write(real.join("x.duckdb"), b"").unwrap();
        std::os::unix::fs::symlink(real.join("x.duckdb"), real.join("link.duckdb")).unwrap();
        assert_eq!(
            writer_lock_path(&real.join("link.duckdb")),
            real.join("x.duckdb.writer.lock")
        );
    }

    /// Someone else's file at the lock's path is locked but never written;
    /// a link there is refused.
    #[test]
    fn foreign_lock_files_are_left_as_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db.duckdb");
        let lock = writer_lock_path(&db);
        let wait = Wait {
            timeout: Duration::ZERO,
            cancelled: Arc::new(AtomicBool::new(false)),
        };
        let refused = |e: std::io::Error| Failure::config(e.to_string());
        std::fs::write(&lock, [0xff, 0x00, 0x01]).unwrap();
        drop(WriterLock::acquire(&db, &wait, refused).unwrap());
        assert_eq!(std::fs::read(&lock).unwrap(), [0xff, 0x00, 0x01]);
        std::fs::remove_file(&lock).unwrap();
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), &lock).unwrap();
        assert!(WriterLock::acquire(&db, &wait, refused).is_err());
        assert!(
            !dir.path().join("elsewhere").exists(),
            "nothing made through the link"
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
