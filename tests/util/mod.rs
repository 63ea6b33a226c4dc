//! The test harness: a temp dir per test, the real binary, and an
//! independent reader of the resulting DuckDB file. A process the test talks
//! to while it runs ([`Live`]) is waited on by event (a line, the end of its
//! output, its exit), each wait bounded by one [`HANG_GUARD`].

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub mod cases;

pub const BIN: &str = env!("CARGO_BIN_EXE_destination-duckdb");

/// How long a test waits for an event (a line on stdout or stderr, an exit)
/// before it calls the binary hung. Only a guard: no verdict depends on how
/// soon anything happens (a busy machine is slow, not wrong), so this is far
/// above what any wait needs; rules about time are checked against the fake
/// clock of the sync loop's own tests.
pub const HANG_GUARD: Duration = Duration::from_secs(60);

/// Airbyte's acceptance data, vendored in `tests/data/airbyte` (see its
/// `SOURCES.md`), or where `ACCEPTANCE_DATA` points.
pub fn acceptance(rel: &str) -> PathBuf {
    let base = std::env::var_os("ACCEPTANCE_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/airbyte"));
    let p = base.join(rel);
    assert!(
        p.exists(),
        "acceptance data file {} is missing",
        p.display()
    );
    p
}

/// A temp folder with a config pointing at `db.duckdb` inside it.
pub struct Harness {
    pub dir: tempfile::TempDir,
}

/// What one run of the binary produced.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub messages: Vec<Value>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn of_type(&self, kind: &str) -> Vec<&Value> {
        self.messages.iter().filter(|m| m["type"] == kind).collect()
    }

    /// stdout lines other than LOG messages (progress reports).
    pub fn protocol_lines(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .filter(|l| !l.starts_with(r#"{"log":"#))
            .collect()
    }

    /// `destinationStats.recordCount` of every echoed state, in order.
    pub fn state_counts(&self) -> Vec<f64> {
        self.states()
            .iter()
            .map(|s| {
                s["state"]["destinationStats"]["recordCount"]
                    .as_f64()
                    .unwrap()
            })
            .collect()
    }

    pub fn states(&self) -> Vec<&Value> {
        self.of_type("STATE")
    }

    /// The single TRACE ERROR's `error` object.
    pub fn error(&self) -> &Value {
        let traces: Vec<_> = self
            .of_type("TRACE")
            .into_iter()
            .filter(|t| t["trace"]["type"] == "ERROR")
            .collect();
        assert_eq!(traces.len(), 1, "expected one TRACE ERROR: {self:?}");
        &traces[0]["trace"]["error"]
    }

    pub fn assert_ok(&self) {
        assert_eq!(self.code, Some(0), "run failed: {self:?}");
    }
}

/// Parses stdout strictly: every line must be one JSON object with a type.
pub fn parse_stdout(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
            assert!(
                v["type"].is_string(),
                "stdout line is not an AirbyteMessage: {line}"
            );
            v
        })
        .collect()
}

impl Harness {
    pub fn new() -> Harness {
        let h = Harness {
            dir: tempfile::tempdir().unwrap(),
        };
        h.write_config(json!({"destination_path": h.db_path().to_str().unwrap()}));
        h
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn db_path(&self) -> PathBuf {
        self.path("db.duckdb")
    }

    pub fn config_path(&self) -> PathBuf {
        self.path("config.json")
    }

    pub fn catalog_path(&self) -> PathBuf {
        self.path("catalog.json")
    }

    pub fn write_config(&self, config: Value) {
        std::fs::write(self.config_path(), config.to_string()).unwrap();
    }

    pub fn write_catalog(&self, catalog: &Value) {
        std::fs::write(self.catalog_path(), catalog.to_string()).unwrap();
    }

    pub fn run(&self, args: &[&str], stdin: &[u8]) -> Run {
        self.exec(args, stdin, &[], Duration::from_secs(600))
    }

    /// Runs the binary with extra environment variables, in a scratch working
    /// folder inside the test's temp dir, and fails the test (killing the child)
    /// if it has not exited within `limit`.
    pub fn exec(&self, args: &[&str], stdin: &[u8], env: &[(&str, &str)], limit: Duration) -> Run {
        let cwd = self.path("cwd");
        std::fs::create_dir_all(&cwd).unwrap();
        let mut child = Command::new(BIN)
            .args(args)
            .envs(env.iter().copied())
            .current_dir(&cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        let data = stdin.to_vec();
        let feeder = std::thread::spawn(move || {
            let _ = input.write_all(&data);
        });
        let mut out = child.stdout.take().unwrap();
        let mut err = child.stderr.take().unwrap();
        let out = std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = out.read_to_end(&mut b);
            b
        });
        let err = std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = err.read_to_end(&mut b);
            b
        });
        let start = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if start.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                panic!("`{}` did not finish within {limit:?}", args.join(" "));
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        feeder.join().unwrap();
        let stdout = String::from_utf8(out.join().unwrap()).expect("stdout is UTF-8");
        let stderr = String::from_utf8_lossy(&err.join().unwrap()).into_owned();
        Run {
            code: status.code(),
            messages: parse_stdout(&stdout),
            stdout,
            stderr,
        }
    }

    pub fn check(&self) -> Run {
        self.run(
            &["check", "--config", self.config_path().to_str().unwrap()],
            b"",
        )
    }

    pub fn write(&self, stdin: &[u8]) -> Run {
        self.run(&self.write_args(), stdin)
    }

    pub fn write_args(&self) -> Vec<&str> {
        // Leaked so the args can be borrowed; tests are short-lived.
        let config: &'static str = Box::leak(
            self.config_path()
                .to_str()
                .unwrap()
                .to_string()
                .into_boxed_str(),
        );
        let catalog: &'static str = Box::leak(
            self.catalog_path()
                .to_str()
                .unwrap()
                .to_string()
                .into_boxed_str(),
        );
        vec!["write", "--config", config, "--catalog", catalog]
    }

    /// Starts `write` with stdin left open; stdout and stderr lines arrive
    /// on channels.
    pub fn spawn_write(&self) -> Live {
        self.spawn_with(&self.write_args())
    }

    /// Starts the binary with `args`, stdin left open; stdout and stderr
    /// lines arrive on channels.
    pub fn spawn_with(&self, args: &[&str]) -> Live {
        let mut cmd = Command::new(BIN);
        cmd.args(args);
        Live::spawn(&mut cmd)
    }

    /// Opens the database read-only with the DuckDB library (no shared state
    /// with the binary: a separate process wrote it).
    pub fn db(&self) -> duckdb::Connection {
        let config = duckdb::Config::default()
            .access_mode(duckdb::AccessMode::ReadOnly)
            .unwrap();
        duckdb::Connection::open_with_flags(self.db_path(), config).unwrap()
    }

    pub fn strings(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        let conn = self.db();
        let mut stmt = conn.prepare(sql).unwrap();
        let mut rows = stmt.query([]).unwrap();
        let mut out = Vec::new();
        while let Some(row) = rows.next().unwrap() {
            let n = row.as_ref().column_count();
            out.push(
                (0..n)
                    .map(|i| row.get::<_, Option<String>>(i).unwrap())
                    .collect(),
            );
        }
        out
    }

    pub fn count(&self, table: &str) -> i64 {
        let conn = self.db();
        conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    }
}

/// The lines of `stream`, on a channel, read on a thread of their own (so a
/// pipe nobody reads never blocks the child).
fn line_channel(stream: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

pub struct Live {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    pub lines: mpsc::Receiver<String>,
    /// stderr, line by line.
    pub errors: mpsc::Receiver<String>,
}

impl Live {
    /// Starts `cmd` with stdin left open; stdout and stderr lines arrive on
    /// channels.
    pub fn spawn(cmd: &mut Command) -> Live {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        Live {
            lines: line_channel(child.stdout.take().unwrap()),
            errors: line_channel(child.stderr.take().unwrap()),
            child,
            stdin: Some(stdin),
        }
    }

    pub fn send(&mut self, data: &str) {
        assert!(self.try_send(data), "the process stopped reading stdin");
    }

    /// Sends `data`; false if the process has gone (its stdin is closed).
    pub fn try_send(&mut self, data: &str) -> bool {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(data.as_bytes()).is_ok() && stdin.flush().is_ok()
    }

    /// The next stdout message that `wanted` accepts, skipping others (LOG
    /// lines, mostly); fails the test, naming `what` and the lines skipped,
    /// if stdout ends first or nothing comes within [`HANG_GUARD`].
    pub fn wait_for(&self, what: &str, mut wanted: impl FnMut(&Value) -> bool) -> Value {
        let deadline = Instant::now() + HANG_GUARD;
        let mut skipped = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let v: Value = serde_json::from_str(&line)
                        .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
                    if wanted(&v) {
                        return v;
                    }
                    skipped.push(line);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("no {what} within {HANG_GUARD:?} (hang guard); stdout: {skipped:#?}")
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("stdout ended before any {what}; stdout: {skipped:#?}")
                }
            }
        }
    }

    /// The next STATE on stdout (see [`Live::wait_for`]).
    pub fn next_state(&self) -> Value {
        self.wait_for("STATE", |m| m["type"] == "STATE")
    }

    /// Every stdout line still to come, up to the end of stdout: call it
    /// once the process has ended or will end by itself (stdin closed, a
    /// kill). Fails the test if stdout stays open for [`HANG_GUARD`].
    pub fn rest_of_stdout(&self) -> Vec<String> {
        let mut rest = Vec::new();
        loop {
            match self.lines.recv_timeout(HANG_GUARD) {
                Ok(line) => rest.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => return rest,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("stdout still open after {HANG_GUARD:?} (hang guard); so far: {rest:#?}")
                }
            }
        }
    }

    /// Like [`Live::rest_of_stdout`], for stderr.
    pub fn rest_of_stderr(&self) -> String {
        let mut rest = String::new();
        loop {
            match self.errors.recv_timeout(HANG_GUARD) {
                Ok(line) => {
                    rest.push_str(&line);
                    rest.push('\n');
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return rest,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("stderr still open after {HANG_GUARD:?} (hang guard); so far: {rest}")
                }
            }
        }
    }

    pub fn close_stdin(&mut self) {
        self.stdin.take();
    }

    /// Waits for a stderr line containing `needle`; false if stderr ends
    /// first (the process exited without logging it). Fails the test if
    /// neither happens within [`HANG_GUARD`].
    pub fn wait_for_log(&self, needle: &str) -> bool {
        let deadline = Instant::now() + HANG_GUARD;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.errors.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return true,
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return false,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("no log line with {needle:?} within {HANG_GUARD:?} (hang guard)")
                }
            }
        }
    }

    /// Waits for the process to exit by itself; fails the test (killing
    /// it) if it is still running after [`HANG_GUARD`].
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + HANG_GUARD;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!("still running after {HANG_GUARD:?} (hang guard)");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL, and the reaping of the process.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Sends SIGTERM (as Airbyte cancels a sync), without waiting.
    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -TERM");
    }

    /// Sends SIGTERM and waits for the exit (see [`Live::wait_exit`]).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.sigterm();
        self.wait_exit()
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A configured catalog built the way Airbyte's acceptance tests build one
/// from a plain catalog (`CatalogHelpers.toDefaultConfiguredCatalog` plus the
/// DAT's sync_id 42, generation 12, minimum generation 12).
pub fn configured_from_plain(plain: &Value) -> Value {
    let streams: Vec<Value> = plain["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            json!({
                "stream": s,
                "sync_mode": "full_refresh",
                "destination_sync_mode": "overwrite",
                "cursor_field": [],
                "primary_key": [],
                "sync_id": 42,
                "generation_id": 12,
                "minimum_generation_id": 12
            })
        })
        .collect();
    json!({ "streams": streams })
}

/// A configured catalog of plain streams with one sync mode.
pub fn catalog_of(streams: &[(&str, Option<&str>)], mode: &str) -> Value {
    let streams: Vec<Value> = streams
        .iter()
        .map(|(name, ns)| {
            let mut stream = json!({"name": name, "json_schema": {"type": "object"}, "supported_sync_modes": ["full_refresh", "incremental"]});
            if let Some(ns) = ns {
                stream["namespace"] = json!(ns);
            }
            json!({"stream": stream, "sync_mode": "full_refresh", "destination_sync_mode": mode})
        })
        .collect();
    json!({ "streams": streams })
}

pub fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Joins message lines, each ending in a newline.
pub fn lines(parts: &[String]) -> String {
    parts.iter().map(|p| format!("{p}\n")).collect()
}

pub fn record(stream: &str, emitted_at: i64, data: &str) -> String {
    format!(
        r#"{{"type":"RECORD","record":{{"stream":"{stream}","emitted_at":{emitted_at},"data":{data}}}}}"#
    )
}

pub fn global_state(n: i64) -> String {
    format!(
        r#"{{"type":"STATE","state":{{"type":"GLOBAL","global":{{"shared_state":{{"n":{n}}}}}}}}}"#
    )
}

/// A Python virtual environment with the given `duckdb` release, made once
/// per test build (PyPI is reachable on the machines this runs on).
pub fn python_with_duckdb(version: &str) -> PathBuf {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap();
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("venv-duckdb-{version}"));
    let python = venv.join("bin/python");
    let ready = venv.join(".ready");
    const NEEDS: &str = "the tests that read files with an independent DuckDB need Python 3 \
        with the venv module (Debian: python3-venv) and access to PyPI";
    if !ready.exists() {
        let status = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .unwrap_or_else(|e| panic!("cannot run python3 ({e}): {NEEDS}"));
        assert!(
            status.success(),
            "python3 -m venv {} failed: {NEEDS}",
            venv.display()
        );
        let status = Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                &format!("duckdb=={version}"),
            ])
            .status()
            .unwrap_or_else(|e| panic!("cannot run {} ({e}): {NEEDS}", python.display()));
        assert!(
            status.success(),
            "pip install duckdb=={version} failed: {NEEDS}"
        );
        std::fs::write(&ready, "").unwrap();
    }
    python
}

/// The DuckDB releases whose Python packages read the tests' files beside
/// the tests' own reader (the `duckdb` crate, DuckDB 2.0.0): the 1.4 LTS
/// line most tools ship, 1.5, and 2.0.
pub const READERS: [&str; 3] = ["1.4.3", "1.5.6", "2.0.1"];

/// The rows of each of `queries` over `db`, read by DuckDB `version`
/// through Python (`tests/util/read_rows.py`), each value as text.
pub fn read_with(version: &str, db: &Path, queries: &[String]) -> Vec<Vec<Vec<Option<String>>>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/util/read_rows.py");
    let mut child = Command::new(python_with_duckdb(version))
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let job = json!({"db": db.to_str().unwrap(), "queries": queries});
    child
        .stdin
        .take()
        .unwrap()
        .write_all(job.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "DuckDB {version} could not read {}: {}",
        db.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["version"], version, "the reader's DuckDB version");
    serde_json::from_value(v["rows"].clone()).unwrap()
}

/// Every reader of [`READERS`] gets from `queries` (which cast every
/// column to VARCHAR) exactly the rows the tests' own reader gets.
pub fn assert_readers_agree(h: &Harness, queries: &[String]) {
    let ours: Vec<_> = queries.iter().map(|q| h.strings(q)).collect();
    for version in READERS {
        let theirs = read_with(version, &h.db_path(), queries);
        for ((q, a), b) in queries.iter().zip(&ours).zip(&theirs) {
            assert_eq!(a, b, "DuckDB {version} reads other rows from: {q}");
        }
    }
}

/// xorshift64: a tiny deterministic generator for the tests' random inputs,
/// so that a failing seed replays.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// Runs the binary as the user `nobody` (uid 65534), for tests of what
/// another user may and may not do: only when the tests run as root with
/// `setpriv` at hand.
pub struct Nobody {
    /// A copy of the binary that `nobody` can reach.
    bin: PathBuf,
}

impl Nobody {
    /// None (and a SKIPPED line) when the tests cannot switch users. Makes
    /// the harness's folder, config and catalog readable by `nobody`.
    #[allow(clippy::print_stderr)]
    pub fn new(h: &Harness) -> Option<Nobody> {
        use std::os::unix::fs::PermissionsExt;
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0"));
        if !root || Command::new("setpriv").arg("--version").output().is_err() {
            eprintln!("SKIPPED: needs root and setpriv to run as another user");
            return None;
        }
        let bin = h.path("bin");
        std::fs::copy(BIN, &bin).unwrap();
        for (path, mode) in [
            (h.dir.path().to_path_buf(), 0o755),
            (bin.clone(), 0o755),
            (h.config_path(), 0o644),
            (h.catalog_path(), 0o644),
        ] {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        Some(Nobody { bin })
    }

    pub fn run(&self, args: &[&str], stdin: &[u8]) -> Run {
        let mut child = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&self.bin)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        Run {
            code: out.status.code(),
            messages: parse_stdout(&stdout),
            stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}
