//! Opening and closing the destination database, shared by `check` and
//! `write`.
//!
//! The file is ATTACHed to an in-memory DuckDB instance under the name
//! [`CATALOG`]: ATTACH is where DuckDB takes a `STORAGE_VERSION`, which a new
//! file needs so that DuckDB 1.x readers can open it. An existing file keeps
//! its own format.

use std::path::Path;

use anyhow::{Context, Result};

use crate::config::{Config, Target};
use crate::duck::{DuckError, Session};
use crate::error::Failure;
use crate::names::literal;

/// The name the destination database is attached under.
pub const CATALOG: &str = "destination";

/// Every table of the destination, (schema, table) in lowercase. Read it
/// once where it is needed for many streams: duckdb_tables() walks the
/// whole catalog at each call.
pub fn existing_tables(session: &Session) -> Result<std::collections::HashSet<(String, String)>> {
    Ok(session.query_pairs(&format!(
        "SELECT lower(schema_name), lower(table_name) FROM duckdb_tables() WHERE database_name = '{CATALOG}'"
    ))?)
}

/// An open destination database.
pub struct Database {
    pub session: Session,
    /// What to call the database in messages (a path or an `md:` URL).
    pub label: String,
}

/// Opens (creating when missing) the configured database.
pub fn open(config: &Config) -> Result<Database> {
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
        Target::File(path) => open_file(path, &config.storage_version, &options),
        Target::MotherDuck { path, token } => open_motherduck(path, token.as_deref()),
    }
}

fn open_file(path: &Path, storage_version: &str, options: &[(&str, &str)]) -> Result<Database> {
    let label = path.display().to_string();
    if path.is_dir() {
        return Err(Failure::config(format!(
            "`destination_path` `{label}` is a directory; name a file inside it"
        ))
        .into());
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| {
            Failure::config(format!(
                "cannot create the folder `{}` for the database: {e}",
                parent.display()
            ))
        })?;
    }
    let path_text = path.to_str().ok_or_else(|| {
        Failure::config(format!("`destination_path` `{label}` is not valid UTF-8"))
    })?;
    // Spill files (large sorts, such as building a deduplicated typed table
    // under `memory_limit`) go beside the database, as DuckDB does for a
    // file it opens itself, not into the working directory.
    let temp_directory = format!("{path_text}.tmp");
    let mut options = options.to_vec();
    options.push(("temp_directory", &temp_directory));
    let session = Session::open(":memory:", &options).context("starting DuckDB")?;
    let is_new = std::fs::metadata(path)
        .map(|m| m.len() == 0)
        .unwrap_or(true);
    let attach = if is_new && storage_version != "latest" {
        format!(
            "ATTACH {} AS {CATALOG} (STORAGE_VERSION {})",
            literal(path_text),
            literal(storage_version)
        )
    } else {
        format!("ATTACH {} AS {CATALOG}", literal(path_text))
    };
    session
        .execute(&attach)
        .map_err(|e| attach_failure(&label, e))?;
    session
        .execute(&format!("USE {CATALOG}"))
        .context("selecting the destination database")?;
    Ok(Database { session, label })
}

fn attach_failure(label: &str, e: DuckError) -> anyhow::Error {
    let failure = if e.is_lock_conflict() {
        Failure::transient(format!(
            "the database `{label}` is locked by another process (a DuckDB CLI, notebook or another sync?); \
             close it and retry"
        ))
    } else if e.0.contains("Permission denied")
        || e.0.contains("Read-only")
        || e.0.contains("read-only")
    {
        Failure::config(format!(
            "cannot write the database `{label}`: permission denied or read-only location"
        ))
    } else if e.0.contains("not a valid DuckDB database") || e.0.contains("version number") {
        Failure::config(format!(
            "`{label}` is not a DuckDB database this version can open (a newer DuckDB, or another kind of file)"
        ))
    } else {
        // DuckDB's first line says why (a missing folder, an IO error).
        let why = e.0.lines().next().unwrap_or("").trim();
        Failure::config(format!("cannot open the database `{label}`: {why}"))
    };
    anyhow::Error::new(e).context(failure)
}

fn open_motherduck(path: &str, token: Option<&str>) -> Result<Database> {
    let mut options = vec![
        ("autoinstall_known_extensions", "true"),
        ("autoload_known_extensions", "true"),
    ];
    if let Some(token) = token {
        options.push(("motherduck_token", token));
    }
    let session = Session::open(path, &options).map_err(|e| {
        // DuckDB's message can echo the connection string; never the token.
        let detail = match token {
            Some(t) => e.0.replace(t, "<redacted>"),
            None => e.0,
        };
        anyhow::Error::new(DuckError(detail)).context(Failure::config(format!(
            "cannot connect to MotherDuck (`{path}`): this connector needs DuckDB's `motherduck` extension, \
             which it cannot download or load in this environment; write to a local file instead"
        )))
    })?;
    Ok(Database {
        session,
        label: path.to_string(),
    })
}

impl Database {
    /// Checkpoints and closes the database so that other processes can open
    /// it at once.
    pub fn close(self) -> Result<()> {
        if self.label.starts_with("md:") || self.label.starts_with("motherduck:") {
            return Ok(());
        }
        self.session
            .execute(&format!("CHECKPOINT {CATALOG}"))
            .context("checkpointing the database")?;
        self.session
            .execute(&format!("USE memory; DETACH {CATALOG}"))
            .context("closing the database")?;
        Ok(())
    }
}
