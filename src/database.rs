//! Opening and closing the destination database, shared by `check` and
//! `write`.
//!
//! The file is ATTACHed to an in-memory DuckDB instance under the name
//! [`CATALOG`]: ATTACH is where DuckDB takes a `STORAGE_VERSION`, which a new
//! file needs so that DuckDB 1.x readers can open it (an existing file keeps
//! its own format), and the session's `ROW_GROUP_SIZE` ([`row_group_rows`]).
//!
//! Only a DuckDB database file is ever written. DuckDB opens other files
//! too (a CSV or Parquet file becomes a temporary, in-memory database whose
//! data vanishes at exit; a FIFO blocks the open), so the path is looked at
//! before DuckDB sees it, and the attached database is checked afterwards.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::access;
use crate::config::{Config, Target, DEFAULT_BATCH_MIB};
use crate::duck::{DuckError, Instance, Session};
use crate::error::{Failure, Storage};
use crate::internal;
use crate::lock::{Blocked, Wait, WriterLock};
use crate::names::literal;
pub use crate::names::CATALOG;

/// Where a DuckDB database file says what it is: the bytes `DUCK` after an
/// 8-byte checksum at the start of the file.
const MAGIC: &[u8; 4] = b"DUCK";
const MAGIC_OFFSET: usize = 8;

/// Every table (not view) of the destination, with its columns. Read it once where it
/// is needed for many streams: duckdb_columns() walks the whole catalog at
/// each call, however it is filtered.
pub fn existing_tables(session: &Session) -> Result<Tables> {
    let mut tables: HashMap<(String, String), Vec<(String, String)>> = HashMap::new();
    for row in session.query(&format!(
        "SELECT c.schema_name, c.table_name, c.column_name, c.data_type \
         FROM duckdb_columns() c JOIN duckdb_tables() t ON c.table_oid = t.table_oid \
         WHERE c.database_name = '{CATALOG}' AND t.database_name = '{CATALOG}' \
         ORDER BY c.schema_name, c.table_name, c.column_index"
    ))? {
        if let [Some(schema), Some(table), Some(column), Some(ty)] = &row[..] {
            tables
                .entry((schema.to_lowercase(), table.to_lowercase()))
                .or_default()
                .push((column.clone(), ty.clone()));
        }
    }
    Ok(Tables(tables))
}

/// Whether the destination has a table (not a view) `name` in `schema`
/// (any case): one look, where [`existing_tables`] would read every column
/// of every table.
pub fn table_exists(session: &Session, schema: &str, name: &str) -> Result<bool> {
    Ok(session
        .query_row(&format!(
            "SELECT count(*) > 0 FROM duckdb_tables() WHERE database_name = '{CATALOG}' \
             AND lower(schema_name) = lower({}) AND lower(table_name) = lower({})",
            literal(schema),
            literal(name)
        ))?
        .bool(0)
        == Some(true))
}

/// The tables of the destination as [`existing_tables`] read them: keyed
/// by (schema, table) in lowercase, each with its columns (name and type
/// as DuckDB names it, in order).
pub struct Tables(HashMap<(String, String), Vec<(String, String)>>);

impl Tables {
    /// Whether the table (schema, table), in lowercase, is there.
    pub fn contains(&self, key: &(String, String)) -> bool {
        self.0.contains_key(key)
    }

    /// The columns of table `table` in `schema` (any case), if it is there.
    pub fn columns(&self, schema: &str, table: &str) -> Option<&[(String, String)]> {
        self.0
            .get(&(schema.to_lowercase(), table.to_lowercase()))
            .map(Vec::as_slice)
    }
}

/// An open destination database.
pub struct Database {
    pub session: Instance,
    /// What to call the database in messages (a path or an `md:` URL).
    pub label: String,
    /// Rows per row group of the tables written in this session.
    pub row_group_rows: u64,
    /// How to attach the file again after [`Attachment::release`]; None
    /// for MotherDuck, which is never released.
    pub attachment: Option<Attachment>,
    /// A sync's hold on the writers' lock beside the file (see
    /// [`WriterLock`]), until the database is dropped.
    _writer: Option<WriterLock>,
}

/// What a database is opened for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A sync: one at a time per file, for its whole length.
    Sync,
    /// A check: one short transaction, beside anything else.
    Check,
}

/// A database file attached to the session, which can be let go of between
/// commits (so that other processes can open the file) and attached again,
/// waiting for it as at the start.
#[derive(Debug, Clone)]
pub struct Attachment {
    /// The `ATTACH` of the existing file.
    attach: String,
    path: PathBuf,
    label: String,
    wait: Wait,
    /// The file that was attached: attaching again must find the same one.
    identity: FileIdentity,
}

/// What a sync left in the database file when it let go of it (see
/// [`Attachment::release`]).
#[derive(Debug)]
pub struct Released(String);

/// Which file a path named (device and inode), to notice one moved,
/// replaced or deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileIdentity {
    device: u64,
    inode: u64,
}

impl FileIdentity {
    fn of(path: &Path) -> std::io::Result<FileIdentity> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path)?;
        Ok(FileIdentity {
            device: meta.dev(),
            inode: meta.ino(),
        })
    }
}

impl Attachment {
    /// Leaves a new mark in the database ([`internal::RELEASE_MARK`]),
    /// checkpoints it and detaches it: the file is closed, and other
    /// processes can open it. Call with no transaction open. Returns the
    /// mark, which [`Attachment::reacquire`] must find again.
    pub fn release(&self, session: &Session) -> Result<Released> {
        let mark = internal::qualified(internal::RELEASE_MARK);
        let txn = session.begin()?;
        session.execute(&format!(
            "CREATE TABLE IF NOT EXISTS {mark} (mark VARCHAR); DELETE FROM {mark}; \
             INSERT INTO {mark} SELECT uuid()::VARCHAR"
        ))?;
        let left = Released(
            session
                .query_value(&format!("SELECT mark FROM {mark}"))?
                .context("the release mark just written")?,
        );
        txn.commit()?;
        session
            .execute(&format!("CHECKPOINT {CATALOG}; DETACH {CATALOG}"))
            .with_context(|| format!("letting go of the database `{}`", self.label))?;
        Ok(left)
    }

    /// Attaches the file again, waiting while another process holds it.
    /// The file must be the one let go of: DuckDB would make a new, empty
    /// database where one was moved away or deleted, and the sync would
    /// then write its rows there; and it must hold the mark the sync left
    /// (`left`), which a copy put back in its place does not.
    pub fn reacquire(&self, session: &Session, left: &Released) -> Result<()> {
        self.same_file()?;
        self.wait
            .attach(session, &self.attach, &self.label)
            .map_err(|b| match b {
                Blocked::Locked(failure) => failure.into(),
                Blocked::Other(e) if e.is_permission_denied() => {
                    anyhow::Error::new(e).context(unwritable(&self.label))
                }
                Blocked::Other(e) => anyhow::Error::new(e).context(Failure::system(format!(
                    "could not open the database `{}` again after letting go of it",
                    self.label
                ))),
            })?;
        // Also after: a file made at the path in between is not ours.
        self.same_file()?;
        verify_attached(session, &self.label)?;
        let found = if table_exists(session, internal::SCHEMA, internal::RELEASE_MARK)? {
            let mark = internal::qualified(internal::RELEASE_MARK);
            session.query_value(&format!("SELECT max(mark) FROM {mark}"))?
        } else {
            None
        };
        if found.as_deref() != Some(left.0.as_str()) {
            // Not left attached: nothing may be written to this file.
            let _ = session.execute(&format!("DETACH {CATALOG}"));
            return Err(Failure::config(format!(
                "the database `{}` is not the file this sync let go of (between commits, while \
                 the input was idle): it was replaced by a copy or rewritten by another program. \
                 The sync stops rather than write into it. Rows the echoed states covered may be \
                 missing from it: if an older copy was put back, reset the connection (a full \
                 refresh) or restore the newer file",
                self.label
            ))
            .into());
        }
        Ok(())
    }

    fn same_file(&self) -> Result<()> {
        match FileIdentity::of(&self.path) {
            Ok(now) if now == self.identity => Ok(()),
            _ => Err(Failure::config(format!(
                "the database `{}` was moved, replaced or deleted while the sync had let go of it \
                 (between commits, while the input was idle); the sync stops rather than write \
                 into another file. Put the file back and retry; a sync that finds no file there \
                 starts a new database",
                self.label
            ))
            .into()),
        }
    }
}

/// DuckDB's own rows per row group.
pub const DUCKDB_ROW_GROUP_ROWS: u64 = 122_880;
/// The smaller row groups of syncs whose streams can all fill one within the
/// batch limit (see [`row_group_rows`]).
pub const SMALL_ROW_GROUP_ROWS: u64 = 16_384;
/// The record size [`row_group_rows`] plans for (the bench's generated
/// records average 290 bytes).
const PLANNED_RECORD_BYTES: u64 = 300;

/// Rows per DuckDB row group in the tables of a sync of `streams` streams,
/// set as `ROW_GROUP_SIZE` at `ATTACH`. The size is not stored in the file,
/// and DuckDB versions before 1.2 read any group up to their own 122,880
/// (tested with DuckDB 1.4.3).
///
/// A commit that brings a table at least one full group goes straight into
/// the file; a smaller one is copied through the WAL and compressed again by
/// a checkpoint. The commit rule waits for busy streams' groups to fill only
/// while all of them fit in `batch_bytes`. So groups of 16,384 rows are used
/// when every stream of the catalog could fill one at once within the limit
/// (up to 27 streams of 300-byte records at the default 128 MiB): then
/// interleaved streams commit whole groups and small syncs skip the WAL, for
/// slightly larger files. Larger catalogs keep DuckDB's 122,880: their
/// streams' rows go through the WAL either way, and the smaller groups only
/// made such syncs slower and their files larger. The measurements are in
/// `bench/README.md`, "Measurements behind settings in the code", "Row
/// groups".
pub fn row_group_rows(streams: usize, batch_bytes: u64) -> u64 {
    let fill_all =
        (streams.max(1) as u64).saturating_mul(SMALL_ROW_GROUP_ROWS * PLANNED_RECORD_BYTES);
    // Not past the default limit: a larger `batch_size_mb` would let many
    // streams wait for groups that slow streams never fill, which was not
    // measured to pay.
    if fill_all <= batch_bytes.min(DEFAULT_BATCH_MIB << 20) {
        SMALL_ROW_GROUP_ROWS
    } else {
        DUCKDB_ROW_GROUP_ROWS
    }
}

/// Opens (creating when missing) the configured database, for a sync of
/// `streams` streams, waiting as `wait` says while another process holds
/// the file.
pub fn open(config: &Config, streams: usize, wait: &Wait, purpose: Purpose) -> Result<Database> {
    let threads = config.threads.map(|t| t.to_string());
    let mut options: Vec<(&str, &str)> = vec![
        // Air-gapped by design: never reach out for extensions at run time.
        ("autoinstall_known_extensions", "false"),
        ("autoload_known_extensions", "false"),
    ];
    let wal_autocheckpoint = config.wal_autocheckpoint();
    options.push(("memory_limit", &config.memory_limit));
    options.push(("wal_autocheckpoint", &wal_autocheckpoint));
    if let Some(t) = &threads {
        options.push(("threads", t));
    }
    match &config.target {
        Target::File(path) => open_file(
            path,
            &config.storage_version,
            row_group_rows(streams, config.batch_bytes),
            &options,
            wait,
            purpose,
        ),
        Target::MotherDuck { path, token } => open_motherduck(path, token.as_deref()),
    }
}

fn open_file(
    path: &Path,
    storage_version: &str,
    row_group_rows: u64,
    options: &[(&str, &str)],
    wait: &Wait,
    purpose: Purpose,
) -> Result<Database> {
    let label = path.display().to_string();
    let Claimed {
        writer,
        is_new,
        wait,
    } = claim(path, &label, wait, purpose)?;
    let wait = &wait;
    let path_text = path.to_str().ok_or_else(|| {
        Failure::config(format!("`destination_path` `{label}` is not valid UTF-8"))
    })?;
    // Spill files (large sorts, such as building a deduplicated typed table
    // under `memory_limit`) go beside the database, as DuckDB does for a
    // file it opens itself, not into the working directory.
    let temp_directory = format!("{path_text}.tmp");
    let mut options = options.to_vec();
    options.push(("temp_directory", &temp_directory));
    let session = Instance::open(":memory:", &options).map_err(settings_failure)?;
    let version = if is_new && storage_version != "latest" {
        format!("STORAGE_VERSION {}, ", literal(storage_version))
    } else {
        String::new()
    };
    let attach = |version: &str| {
        format!(
            "ATTACH {} AS {CATALOG} ({version}ROW_GROUP_SIZE {row_group_rows})",
            literal(path_text),
        )
    };
    attach_waiting(&session, &attach(&version), &label, wait)?;
    verify_attached(&session, &label)?;
    let identity = FileIdentity::of(path).map_err(|e| {
        Failure::system(format!(
            "cannot look at the database `{label}` once opened: {e}"
        ))
    })?;
    // No `USE destination`: every statement names its tables in full, and
    // function names then resolve among DuckDB's own, never to a macro
    // someone defined in the file's `main` schema.
    let attachment = Attachment {
        attach: attach(""),
        path: path.to_path_buf(),
        label: label.clone(),
        wait: wait.clone(),
        identity,
    };
    Ok(Database {
        session,
        label,
        row_group_rows,
        attachment: Some(attachment),
        _writer: writer,
    })
}

/// The destination path, ready to attach.
struct Claimed {
    /// A sync's writers' lock.
    writer: Option<WriterLock>,
    /// No database is there yet: the one made gets the storage version.
    is_new: bool,
    /// What is left of the wait for the file's own lock.
    wait: Wait,
}

/// Refuses a path that holds anything but a DuckDB database (before
/// anything is made beside it), makes its folder, takes the writers' lock
/// (a sync) or makes sure it could be taken (a check), and looks at the
/// path again under the lock, where an empty file makes way for the
/// database.
fn claim(path: &Path, label: &str, wait: &Wait, purpose: Purpose) -> Result<Claimed> {
    inspect_existing(path, label)?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| {
            let hint = match e.kind() {
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => {
                    access::unwritable_hint(path)
                        .map(|h| format!(". {h}"))
                        .unwrap_or_default()
                }
                _ => String::new(),
            };
            Failure::config(format!(
                "cannot create the folder `{}` for the database: {e}{hint}",
                parent.display()
            ))
        })?;
    }
    let started = std::time::Instant::now();
    let writer = match purpose {
        Purpose::Sync => Some(WriterLock::acquire(path, wait, |_| unwritable(label))?),
        Purpose::Check => {
            WriterLock::probe(path, |_| unwritable(label))?;
            None
        }
    };
    let is_new = match inspect_existing(path, label)? {
        Found::Nothing => true,
        Found::Empty => {
            std::fs::remove_file(path).map_err(|e| {
                Failure::config(format!(
                    "`destination_path` `{label}` is an empty file that cannot be replaced by a database: {e}"
                ))
            })?;
            true
        }
        Found::Database => false,
    };
    Ok(Claimed {
        writer,
        is_new,
        // The lock's wait counts against the same bound.
        wait: wait.less(started.elapsed()),
    })
}

/// What is at the destination path.
enum Found {
    Nothing,
    /// An empty file (`touch db.duckdb`): nothing to lose, and DuckDB
    /// refuses to attach it, so it makes way for a new database.
    Empty,
    Database,
}

/// Refuses anything at `path` that is not a DuckDB database file, without
/// opening it unless it is a regular file, and without changing anything.
fn inspect_existing(path: &Path, label: &str) -> Result<Found, Failure> {
    let wal = path.with_file_name(format!(
        "{}.wal",
        path.file_name().unwrap_or_default().to_string_lossy()
    ));
    // DuckDB deletes the `.wal` of a database it creates: one that is there
    // without its database is someone else's file.
    let stray_wal = || -> Result<Found, Failure> {
        if std::fs::symlink_metadata(&wal).is_ok() {
            return Err(Failure::config(format!(
                "`{}` exists but the database `{label}` does not: a new database would delete it; \
                 move it away or name another file",
                wal.display()
            )));
        }
        Ok(Found::Nothing)
    };
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        // Missing, or under a file: creating its folder says why.
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            return stray_wal()
        }
        Err(e) => {
            return Err(Failure::config(format!(
                "cannot inspect `destination_path` `{label}`: {e}"
            )))
        }
    };
    if meta.is_dir() {
        return Err(Failure::config(format!(
            "`destination_path` `{label}` is a directory; name a file inside it"
        )));
    }
    if !meta.is_file() {
        return Err(Failure::config(format!(
            "`destination_path` `{label}` is not a regular file (a FIFO, socket or device); \
             name a DuckDB database file"
        )));
    }
    if meta.len() == 0 {
        stray_wal()?;
        return Ok(Found::Empty);
    }
    let mut file = std::fs::File::open(path)
        .map_err(|e| Failure::config(format!("cannot read `destination_path` `{label}`: {e}")))?;
    let mut head = [0u8; MAGIC_OFFSET + MAGIC.len()];
    if file.read_exact(&mut head).is_ok() && &head[MAGIC_OFFSET..] == MAGIC {
        return Ok(Found::Database);
    }
    Err(Failure::config(format!(
        "`destination_path` `{label}` exists and is not a DuckDB database file (a CSV, JSON, \
         Parquet, SQLite or other file?); it is left untouched: name a new or DuckDB file"
    )))
}

/// Checks that what DuckDB attached is a persistent DuckDB database at the
/// path, not a temporary or foreign one.
fn verify_attached(session: &Session, label: &str) -> Result<()> {
    let row = session
        .query_row(&format!(
            "SELECT type = 'duckdb' AND path IS NOT NULL AND path <> '' AND NOT readonly \
             FROM duckdb_databases() WHERE database_name = '{CATALOG}'"
        ))
        .context("inspecting the attached database")?;
    match row.bool(0) {
        Some(true) => Ok(()),
        _ => Err(Failure::config(format!(
            "`{label}` did not open as a writable DuckDB database file; name a new or DuckDB file"
        ))
        .into()),
    }
}

/// DuckDB refused a start-up setting: the config's value (`memory_limit`,
/// `threads`) was validated, so this is a value DuckDB cannot use here.
fn settings_failure(e: DuckError) -> anyhow::Error {
    let failure = Failure::config(format!(
        "DuckDB refused a setting from the config (`memory_limit` or `threads`): {e}"
    ));
    anyhow::Error::new(e).context(failure)
}

/// The file or the files beside it cannot be written: the same failure
/// whether DuckDB found out when attaching or at a later commit.
fn unwritable(label: &str) -> Failure {
    let hint = access::unwritable_hint(Path::new(label))
        .map(|h| format!(". {h}"))
        .unwrap_or_default();
    Failure::config(format!(
        "cannot write the database `{label}` or the files beside it (`.wal`, `.tmp`, `.writer.lock`): \
         permission denied, read-only location, or a folder in the way{hint}"
    ))
}

/// Attaches the database (`attach`), waiting while another process holds
/// the file.
fn attach_waiting(session: &Session, attach: &str, label: &str, wait: &Wait) -> Result<()> {
    wait.attach(session, attach, label).map_err(|b| match b {
        Blocked::Locked(failure) => failure.into(),
        Blocked::Other(e) => attach_failure(label, e),
    })
}

fn attach_failure(label: &str, e: DuckError) -> anyhow::Error {
    let failure = if e.is_permission_denied() {
        unwritable(label)
    } else if e.text().contains("not a valid DuckDB database")
        || e.text().contains("version number")
    {
        Failure::config(format!(
            "`{label}` is not a DuckDB database this version can open (a newer DuckDB, or another kind of file)"
        ))
    } else {
        // DuckDB's (scrubbed) first line says why (a missing folder, an IO error).
        Failure::config(format!("cannot open the database `{label}`: {e}"))
    };
    anyhow::Error::new(e).context(failure)
}

/// The context that names the database `label` for [`crate::error::classify`]
/// (see [`Storage`]): attached to every error of a command that writes it.
pub fn storage(label: &str) -> Storage {
    Storage {
        label: label.to_string(),
        unwritable: unwritable(label).message,
    }
}

fn open_motherduck(path: &str, token: Option<&str>) -> Result<Database> {
    let mut options = vec![
        ("autoinstall_known_extensions", "true"),
        ("autoload_known_extensions", "true"),
    ];
    if let Some(token) = token {
        options.push(("motherduck_token", token));
    }
    let session = Instance::open(path, &options).map_err(|e| {
        // DuckDB's message can echo the connection string; never the token.
        let detail = match token {
            Some(t) => e.text().replace(t, "<redacted>"),
            None => e.text().to_string(),
        };
        anyhow::Error::new(DuckError::ours(detail)).context(Failure::config(format!(
            "cannot connect to MotherDuck (`{path}`): this connector needs DuckDB's `motherduck` extension, \
             which it cannot download or load in this environment; write to a local file instead"
        )))
    })?;
    Ok(Database {
        session,
        label: path.to_string(),
        attachment: None,
        _writer: None,
        // DuckDB's default, as nothing is set on MotherDuck; it only tunes
        // when commits are taken.
        row_group_rows: DUCKDB_ROW_GROUP_ROWS,
    })
}

impl Database {
    /// Checkpoints and closes the database so that other processes can open
    /// it at once.
    pub fn close(self) -> Result<()> {
        // MotherDuck: nothing local to checkpoint or close.
        if self.attachment.is_none() {
            return Ok(());
        }
        self.session
            .execute(&format!("CHECKPOINT {CATALOG}"))
            .context("checkpointing the database")?;
        self.session
            .execute(&format!("DETACH {CATALOG}"))
            .context("closing the database")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_row_groups_only_when_every_stream_can_fill_one_within_the_batch_limit() {
        let mib = 1 << 20;
        assert_eq!(row_group_rows(0, 128 * mib), SMALL_ROW_GROUP_ROWS);
        assert_eq!(row_group_rows(21, 128 * mib), SMALL_ROW_GROUP_ROWS);
        assert_eq!(row_group_rows(27, 128 * mib), SMALL_ROW_GROUP_ROWS);
        assert_eq!(row_group_rows(28, 128 * mib), DUCKDB_ROW_GROUP_ROWS);
        assert_eq!(row_group_rows(200, 128 * mib), DUCKDB_ROW_GROUP_ROWS);
        assert_eq!(row_group_rows(27, 1024 * mib), SMALL_ROW_GROUP_ROWS);
        assert_eq!(row_group_rows(200, 1024 * mib), DUCKDB_ROW_GROUP_ROWS);
        assert_eq!(row_group_rows(3, 16 * mib), SMALL_ROW_GROUP_ROWS);
        assert_eq!(row_group_rows(4, 16 * mib), DUCKDB_ROW_GROUP_ROWS);
        assert_eq!(
            row_group_rows(usize::MAX, 1024 * mib),
            DUCKDB_ROW_GROUP_ROWS
        );
    }
}
