//! Connector configuration: the raw JSON the platform passes, validated into
//! a resolved [`Config`] that carries no surprises.
//!
//! The keys are those of Airbyte's official Python `destination-duckdb`
//! (`destination_path`, `schema`, `motherduck_api_key`) plus optional tuning
//! keys, each bounded. Unknown keys are ignored: the platform may add some.

use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::{Map, Value};

use crate::error::Failure;
use crate::names;

/// The storage format of newly created files when the config names none:
/// readable by DuckDB 1.0 and later (DuckDB 2.0's own default is not readable
/// by the 1.4 LTS line most tools ship).
pub const DEFAULT_STORAGE_VERSION: &str = "v1.0.0";
/// Uncompressed record data the open transaction may hold in memory before
/// a commit is forced: room for 27 streams of 300-byte records to fill a
/// 16,384-row group each, or three to fill one of DuckDB's 122,880 (see
/// `database::row_group_rows` and `Sink::worth_waiting`).
pub const DEFAULT_BATCH_MIB: u64 = 128;
pub const MAX_BATCH_MIB: u64 = 1024;
pub const MAX_THREADS: u64 = 256;
/// DuckDB's buffer pool when the config names none: the smallest that
/// checkpoints safely, which keeps the process under 256 MiB however large
/// the sync at little cost in speed (measured: bench/README.md, "Measurements
/// behind settings in the code").
pub const DEFAULT_MEMORY_LIMIT: &str = "128MB";
pub const MIN_MEMORY_LIMIT_BYTES: u64 = 128_000_000;
/// 1 PiB: far above any machine, below what overflows DuckDB's parser.
pub const MAX_MEMORY_LIMIT_BYTES: u64 = 1 << 50;
/// How long `write` waits, by default, for another process to let go of the
/// database file (see `lock_timeout_seconds`): long enough for a query or a
/// notebook cell to finish and for someone to notice the log line naming
/// the holder, short enough that a forgotten session fails the attempt with
/// a retryable error instead of stalling the job for hours.
pub const DEFAULT_LOCK_TIMEOUT_SECONDS: u64 = 300;
/// How long `check` waits for the lock: a check answers a person in the
/// Airbyte UI, who should hear at once that the file is held, and by whom.
pub const CHECK_LOCK_TIMEOUT_SECONDS: u64 = 5;
/// Seconds of quiet input after which `write` lets go of the database file
/// between commits, by default (see `release_idle_seconds`): sources that
/// page through an API pause this long between pages, while a stream that
/// flows never pauses so long and never pays for a release.
pub const DEFAULT_RELEASE_IDLE_SECONDS: u64 = 2;
/// Seconds between progress reports during `write`.
pub const DEFAULT_PROGRESS_SECONDS: u64 = 10;
/// Relative `destination_path`s resolve under this folder when the variable
/// is set (the Docker image sets it to `/local`, the official connector's
/// mount), and under the working directory otherwise. When it is set, a
/// path that resolves outside it (by `..`, a symlink, or an absolute path
/// elsewhere) is refused: in the container it would be lost at exit.
pub const LOCAL_ROOT_ENV: &str = "DESTINATION_DUCKDB_LOCAL_ROOT";
/// How Airbyte says records travel to `write` (`STDIO` or `SOCKET`), and in
/// which format (`JSONL` or `PROTOBUF`). This connector reads JSON lines on
/// stdin only; the platform uses sockets only with connectors that declare
/// them, so anything else is a deployment mistake, refused before any input.
pub const DATA_CHANNEL_MEDIUM_ENV: &str = "DATA_CHANNEL_MEDIUM";
pub const DATA_CHANNEL_FORMAT_ENV: &str = "DATA_CHANNEL_FORMAT";
/// The ephemeral-storage limit of the connector's pod, in bytes, which
/// Airbyte may set. Not applied: everything this connector writes (the
/// database, its WAL and DuckDB's spill files beside it) is under
/// `destination_path`, a mounted volume that this limit does not count.
pub const STORAGE_LIMIT_ENV: &str = "CONNECTOR_STORAGE_LIMIT_BYTES";

/// Refuses a data channel other than JSON lines on stdin, given the
/// process environment as `var` (unset and empty variables are fine).
///
/// ```
/// use destination_duckdb::config::check_data_channel;
/// let env = |pairs: &'static [(&'static str, &'static str)]| {
///     move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
/// };
/// assert!(check_data_channel(env(&[])).is_ok());
/// assert!(check_data_channel(env(&[("DATA_CHANNEL_MEDIUM", "STDIO"), ("DATA_CHANNEL_FORMAT", "JSONL")])).is_ok());
/// assert!(check_data_channel(env(&[("DATA_CHANNEL_MEDIUM", "SOCKET")])).is_err());
/// assert!(check_data_channel(env(&[("DATA_CHANNEL_FORMAT", "PROTOBUF")])).is_err());
/// ```
pub fn check_data_channel(var: impl Fn(&str) -> Option<String>) -> Result<(), Failure> {
    let shown = |v: &str| v.chars().take(40).collect::<String>();
    let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
    if let Some(medium) = set(DATA_CHANNEL_MEDIUM_ENV) {
        if !medium.trim().eq_ignore_ascii_case("STDIO") {
            return Err(Failure::config(format!(
                "`{DATA_CHANNEL_MEDIUM_ENV}` is `{}`, but this connector reads records from stdin only \
                 (`STDIO`); unset it or set it to `STDIO`",
                shown(&medium)
            )));
        }
    }
    if let Some(format) = set(DATA_CHANNEL_FORMAT_ENV) {
        if !format.trim().eq_ignore_ascii_case("JSONL") {
            return Err(Failure::config(format!(
                "`{DATA_CHANNEL_FORMAT_ENV}` is `{}`, but this connector reads JSON lines only \
                 (`JSONL`); unset it or set it to `JSONL`",
                shown(&format)
            )));
        }
    }
    Ok(())
}

/// Whether and how typed relations are kept over the raw tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypedOutput {
    /// Views computed from the raw tables at query time (the default):
    /// always current, nothing extra written or stored.
    Views,
    /// Tables refreshed at the end of each sync, incrementally where
    /// possible: faster to query, costs write time and space.
    Tables,
    /// Raw tables only; typed relations this connector made are dropped.
    Off,
}

impl TypedOutput {
    pub fn parse(v: &str) -> Option<TypedOutput> {
        match v {
            "views" => Some(TypedOutput::Views),
            "tables" => Some(TypedOutput::Tables),
            "off" => Some(TypedOutput::Off),
            _ => None,
        }
    }
}

/// Where the database lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    File(PathBuf),
    /// An `md:` / `motherduck:` path, handed to DuckDB as is.
    MotherDuck {
        path: String,
        token: Option<String>,
    },
}

/// A validated configuration.
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    pub target: Target,
    /// Default schema (already normalized) for streams without a namespace.
    pub schema: String,
    pub storage_version: String,
    /// DuckDB's `memory_limit` (its buffer pool), as DuckDB reads it.
    pub memory_limit: String,
    pub threads: Option<u64>,
    pub batch_bytes: u64,
    pub progress_interval_seconds: u64,
    pub typed_output: TypedOutput,
    /// How long to wait for another process's lock on the database file.
    pub lock_timeout: std::time::Duration,
    /// Quiet input after which the file is let go between commits; None:
    /// held for the whole sync.
    pub release_idle: Option<std::time::Duration>,
}

impl std::fmt::Debug for Config {
    // Hand-written so that the MotherDuck token can never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let target = match &self.target {
            Target::File(p) => format!("File({})", p.display()),
            Target::MotherDuck { path, token } => {
                format!(
                    "MotherDuck({path}, token: {})",
                    if token.is_some() { "<set>" } else { "<none>" }
                )
            }
        };
        f.debug_struct("Config")
            .field("target", &target)
            .field("schema", &self.schema)
            .field("storage_version", &self.storage_version)
            .field("memory_limit", &self.memory_limit)
            .field("threads", &self.threads)
            .field("batch_bytes", &self.batch_bytes)
            .field("progress_interval_seconds", &self.progress_interval_seconds)
            .field("typed_output", &self.typed_output)
            .field("lock_timeout", &self.lock_timeout)
            .field("release_idle", &self.release_idle)
            .finish()
    }
}

impl Config {
    /// `memory_limit` in bytes (validated at load, so it parses).
    pub fn memory_limit_bytes(&self) -> u64 {
        memory_size_bytes(&self.memory_limit).unwrap_or(MIN_MEMORY_LIMIT_BYTES)
    }

    /// DuckDB's `wal_autocheckpoint`: fewer checkpoints rewrite partial row
    /// groups less often, but the WAL's rows stay in the buffer pool until
    /// the checkpoint, which fails when they crowd it out. So: an eighth of
    /// the limit, from 4 to 64 MiB, below 512 MiB; a quarter, up to 128 MiB,
    /// from 512 MiB (measured: bench/README.md).
    pub fn wal_autocheckpoint(&self) -> String {
        let mib = self.memory_limit_bytes() >> 20;
        let wal = if mib >= 512 {
            (mib / 4).min(128)
        } else {
            (mib / 8).clamp(4, 64)
        };
        format!("{wal}MiB")
    }

    /// Reads and validates a config file. Every problem is a `config_error`.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Failure::config(format!(
                "cannot read the config file `{}`: {e}",
                path.display()
            ))
        })?;
        Config::parse(&text).with_context(|| format!("in the config file `{}`", path.display()))
    }

    pub fn parse(text: &str) -> Result<Config> {
        let value: Value = serde_json::from_str(text).map_err(|e| {
            Failure::config(format!(
                "the config is not valid JSON (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        let Value::Object(obj) = value else {
            return Err(Failure::config("the config must be a JSON object").into());
        };
        Ok(Config::from_object(&obj)?)
    }

    fn from_object(obj: &Map<String, Value>) -> Result<Config, Failure> {
        let path = opt_string(obj, "destination_path")?.ok_or_else(|| {
            Failure::config("the config has no `destination_path` (the DuckDB file to write)")
        })?;
        let token = opt_string(obj, "motherduck_api_key")?.filter(|t| !t.is_empty());
        let target = resolve_target(&path, token)?;
        let schema_raw = opt_string(obj, "schema")?
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "main".into());
        let schema = names::normalize_schema(&schema_raw);
        let storage_version =
            match opt_string(obj, "storage_version")? {
                None => DEFAULT_STORAGE_VERSION.to_string(),
                Some(v) if is_storage_version(&v) => v,
                Some(_) => return Err(Failure::config(
                    "`storage_version` must look like `v1.0.0` (a DuckDB version) or be `latest`",
                )),
            };
        let memory_limit = match opt_string(obj, "memory_limit")? {
            None => DEFAULT_MEMORY_LIMIT.to_string(),
            Some(v)
                if memory_size_bytes(&v).is_some_and(|b| {
                    (MIN_MEMORY_LIMIT_BYTES..=MAX_MEMORY_LIMIT_BYTES).contains(&b)
                }) =>
            {
                v
            }
            Some(_) => {
                return Err(Failure::config(
                    "`memory_limit` must be a size of at least 128MB and at most 1PiB, such as `512MB` or `2GB`",
                ));
            }
        };
        let threads = opt_integer(obj, "threads", 1, MAX_THREADS)?;
        let batch_mib =
            opt_integer(obj, "batch_size_mb", 1, MAX_BATCH_MIB)?.unwrap_or(DEFAULT_BATCH_MIB);
        let progress_interval_seconds = opt_integer(obj, "progress_interval_seconds", 1, 3600)?
            .unwrap_or(DEFAULT_PROGRESS_SECONDS);
        let typed_output = match opt_string(obj, "typed_output")? {
            None => TypedOutput::Views,
            Some(v) => TypedOutput::parse(&v).ok_or_else(|| {
                Failure::config("`typed_output` must be `views`, `tables` or `off`")
            })?,
        };
        let lock_timeout = opt_integer(obj, "lock_timeout_seconds", 0, 86_400)?
            .unwrap_or(DEFAULT_LOCK_TIMEOUT_SECONDS);
        let release_idle = opt_integer(obj, "release_idle_seconds", 0, 3600)?
            .unwrap_or(DEFAULT_RELEASE_IDLE_SECONDS);
        Ok(Config {
            target,
            schema,
            storage_version,
            memory_limit,
            threads,
            batch_bytes: batch_mib << 20,
            progress_interval_seconds,
            typed_output,
            lock_timeout: std::time::Duration::from_secs(lock_timeout),
            release_idle: (release_idle > 0).then(|| std::time::Duration::from_secs(release_idle)),
        })
    }
}

fn opt_string(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, Failure> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Failure::config(format!("`{key}` must be a string"))),
    }
}

fn opt_integer(
    obj: &Map<String, Value>,
    key: &str,
    min: u64,
    max: u64,
) -> Result<Option<u64>, Failure> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) if n.as_u64().is_some_and(|v| (min..=max).contains(&v)) => {
            Ok(n.as_u64())
        }
        Some(_) => Err(Failure::config(format!(
            "`{key}` must be a whole number from {min} to {max}"
        ))),
    }
}

fn resolve_target(path: &str, token: Option<String>) -> Result<Target, Failure> {
    if path.starts_with("md:") || path.starts_with("motherduck:") {
        return Ok(Target::MotherDuck {
            path: path.to_string(),
            token,
        });
    }
    if path.trim().is_empty() {
        return Err(Failure::config("`destination_path` is empty"));
    }
    if path == ":memory:" || path.starts_with(":memory:") {
        return Err(Failure::config(
            "`destination_path` must be a file: an in-memory database would lose every record at exit",
        ));
    }
    if let Some((scheme, _)) = path.split_once("://") {
        if !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
        {
            return Err(Failure::config(format!(
                "`destination_path` is a `{scheme}://` URL; this connector writes a local DuckDB file \
                 (or MotherDuck with `md:`)"
            )));
        }
    }
    if path.contains('\0') {
        return Err(Failure::config(
            "`destination_path` contains a NUL character",
        ));
    }
    let p = PathBuf::from(path);
    let root = std::env::var_os(LOCAL_ROOT_ENV)
        .filter(|r| !r.is_empty())
        .map(PathBuf::from);
    match root {
        None => Ok(Target::File(p)),
        Some(root) => confine(&root, &root.join(p)).map(Target::File),
    }
}

/// `path` as the operating system will resolve it (symlinks followed, `..`
/// applied after them), provided that is inside `root`.
fn confine(root: &Path, path: &Path) -> Result<PathBuf, Failure> {
    let root_real = resolve(root);
    let real = resolve(path);
    if real.starts_with(&root_real) && real != root_real {
        return Ok(real);
    }
    Err(Failure::config(format!(
        "`destination_path` resolves to `{}`, outside the local root `{}` ({LOCAL_ROOT_ENV}); \
         in the Docker image only files under that mount outlive the container: \
         use a path inside it, such as `destination.duckdb`",
        real.display(),
        root.display()
    )))
}

/// `path` as the operating system resolves it when it opens or creates the
/// file: component by component, following every symlink (a dangling one
/// too: the file would be created at its target) and applying `..` after
/// the links before it. Gives up following after 40 links, as the OS does.
fn resolve(path: &Path) -> PathBuf {
    let start = match std::env::current_dir() {
        Ok(cwd) if path.is_relative() => cwd.join(path),
        _ => path.to_path_buf(),
    };
    let parts = |p: &Path| -> Vec<PathBuf> {
        p.components()
            .rev()
            .map(|c| PathBuf::from(c.as_os_str()))
            .collect()
    };
    let mut pending = parts(&start);
    let mut out = PathBuf::new();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        match part.components().next() {
            Some(Component::RootDir | Component::Prefix(_)) => out = part,
            Some(Component::ParentDir) => {
                out.pop();
            }
            Some(Component::Normal(name)) => {
                let next = out.join(name);
                let is_link =
                    std::fs::symlink_metadata(&next).is_ok_and(|m| m.file_type().is_symlink());
                match std::fs::read_link(&next) {
                    Ok(target) if is_link && links < 40 => {
                        links += 1;
                        pending.extend(parts(&target));
                    }
                    _ => out = next,
                }
            }
            Some(Component::CurDir) | None => {}
        }
    }
    out
}

fn is_storage_version(v: &str) -> bool {
    if v == "latest" {
        return true;
    }
    let Some(rest) = v.strip_prefix('v') else {
        return false;
    };
    let parts: Vec<&str> = rest.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 4 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Parses a DuckDB-style size (`512MB`, `1.5GiB`) into bytes.
fn memory_size_bytes(v: &str) -> Option<u64> {
    let v = v.trim();
    let digits = v
        .bytes()
        .take_while(|b| b.is_ascii_digit() || *b == b'.')
        .count();
    let number: f64 = v[..digits].parse().ok().filter(|n: &f64| *n > 0.0)?;
    let unit: f64 = match v[digits..].trim().to_ascii_lowercase().as_str() {
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1048576.0,
        "gib" => 1073741824.0,
        "tib" => 1099511627776.0,
        _ => return None,
    };
    Some((number * unit) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(text: &str) -> String {
        let e = Config::parse(text).unwrap_err();
        crate::error::classify(&e).message
    }

    #[test]
    fn defaults() {
        let c = Config::parse(r#"{"destination_path": "/tmp/x.duckdb", "unknown": 1}"#).unwrap();
        assert_eq!(c.target, Target::File("/tmp/x.duckdb".into()));
        assert_eq!(c.schema, "main");
        assert_eq!(c.storage_version, "v1.0.0");
        assert_eq!(c.batch_bytes, 128 << 20);
        assert_eq!(
            (c.memory_limit.as_str(), c.wal_autocheckpoint()),
            ("128MB", "15MiB".to_string())
        );
        let mid = Config::parse(r#"{"destination_path": "/x", "memory_limit": "256MiB"}"#).unwrap();
        assert_eq!(mid.wal_autocheckpoint(), "32MiB");
        let small =
            Config::parse(r#"{"destination_path": "/x", "memory_limit": "128MB"}"#).unwrap();
        assert_eq!(small.wal_autocheckpoint(), "15MiB");
        let half =
            Config::parse(r#"{"destination_path": "/x", "memory_limit": "512MiB"}"#).unwrap();
        assert_eq!(half.wal_autocheckpoint(), "128MiB");
        let large = Config::parse(r#"{"destination_path": "/x", "memory_limit": "4GB"}"#).unwrap();
        assert_eq!(large.wal_autocheckpoint(), "128MiB");
        assert!(
            failure(r#"{"destination_path": "/x", "memory_limit": "100MB"}"#)
                .contains("at least 128MB")
        );
    }

    #[test]
    fn bad_values_are_config_errors() {
        assert!(failure("{}").contains("destination_path"));
        assert!(failure("[1]").contains("object"));
        assert!(failure("{").contains("not valid JSON"));
        assert!(failure(r#"{"destination_path": 5}"#).contains("string"));
        assert!(failure(r#"{"destination_path": "/x", "threads": 0}"#).contains("threads"));
        assert!(
            failure(r#"{"destination_path": "/x", "memory_limit": "lots"}"#)
                .contains("memory_limit")
        );
        assert!(
            failure(r#"{"destination_path": "/x", "storage_version": "1.0"}"#)
                .contains("storage_version")
        );
        assert!(failure(r#"{"destination_path": ":memory:"}"#).contains("in-memory"));
    }

    #[test]
    fn motherduck_token_is_not_in_debug_output() {
        let c = Config::parse(r#"{"destination_path": "md:db", "motherduck_api_key": "sekrit"}"#)
            .unwrap();
        assert!(!format!("{c:?}").contains("sekrit"));
    }
}
