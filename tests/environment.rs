//! What the Airbyte platform puts around `write` besides its arguments: the
//! data-channel variables, the storage limit, and a destination folder that
//! the connector's user may not write (the Docker image runs as uid 1000; a
//! host folder mounted at `/local` keeps its host owner). Each refusal comes
//! before any input is read: stdin is left open and the process must end
//! on its own.

use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::util::{catalog_of, global_state, lines, parse_stdout, record, Harness, Run, BIN};

/// Runs the binary with `args` and `env`, as `uid` (through setpriv) when
/// given, with stdin open and never written: a run that waits for input
/// fails the test after 30 s.
fn run_without_input(cmd: Command) -> Run {
    let mut cmd = cmd;
    let mut child: Child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _stdin_held_open = child.stdin.take().unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the process waited for input instead of failing at once");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let mut stderr = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
    Run {
        code: status.code(),
        messages: parse_stdout(&stdout),
        stdout,
        stderr,
    }
}

fn binary(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args).envs(env.iter().copied());
    cmd
}

/// The single TRACE ERROR of a failed run, which must be a `config_error`
/// with no state echoed; returns its message.
fn config_error(run: &Run) -> String {
    assert_ne!(run.code, Some(0), "{run:?}");
    assert!(run.states().is_empty(), "{run:?}");
    let e = run.error();
    assert_eq!(e["failure_type"], "config_error", "{run:?}");
    e["message"].as_str().unwrap().to_string()
}

#[test]
fn a_data_channel_other_than_jsonl_on_stdio_is_refused_before_any_input() {
    for (name, value) in [
        ("DATA_CHANNEL_MEDIUM", "SOCKET"),
        ("DATA_CHANNEL_FORMAT", "PROTOBUF"),
    ] {
        let h = Harness::new();
        h.write_catalog(&catalog_of(&[("s", None)], "append"));
        let run = run_without_input(binary(&h.write_args(), &[(name, value)]));
        let m = config_error(&run);
        assert!(m.contains(name) && m.contains(value), "{name}: {m}");
        assert!(
            !h.db_path().exists(),
            "{name}: nothing is created before the refusal"
        );
    }
}

#[test]
fn the_platforms_own_channel_and_a_storage_limit_sync_normally() {
    let h = Harness::new();
    h.write_catalog(&catalog_of(&[("s", None)], "append"));
    let input = lines(&[
        record("s", 1, r#"{"n":1}"#),
        record("s", 2, r#"{"n":2}"#),
        global_state(2),
    ]);
    // As the platform spells them, then in lower case; the storage limit is
    // documented as not applied (nothing is written outside destination_path),
    // so even one byte does not stop a sync.
    for env in [
        [
            ("DATA_CHANNEL_MEDIUM", "STDIO"),
            ("DATA_CHANNEL_FORMAT", "JSONL"),
            ("CONNECTOR_STORAGE_LIMIT_BYTES", "1"),
        ],
        [
            ("DATA_CHANNEL_MEDIUM", "stdio"),
            ("DATA_CHANNEL_FORMAT", "jsonl"),
            ("CONNECTOR_STORAGE_LIMIT_BYTES", ""),
        ],
    ] {
        let run = h.exec(
            &h.write_args(),
            input.as_bytes(),
            &env,
            Duration::from_secs(120),
        );
        run.assert_ok();
        assert_eq!(run.state_counts(), vec![2.0], "{run:?}");
    }
    assert_eq!(h.count("main._airbyte_raw_s"), 4);
}

/// A folder this test's binary may not write, and the uid the binary runs
/// as: as root, a root-owned 0755 folder (what users often mount at
/// `/local`) and uid 1000 through setpriv, the image's user; otherwise a
/// 0555 folder of the test's own user.
struct Walled {
    folder: PathBuf,
    uid: u32,
    as_uid: Option<u32>,
    /// The binary, where `as_uid` can run it.
    bin: PathBuf,
}

fn walled(h: &Harness) -> Option<Walled> {
    let folder = h.path("local");
    std::fs::create_dir(&folder).unwrap();
    let me = std::fs::metadata(&folder).unwrap().uid();
    if me != 0 {
        std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o555)).unwrap();
        return Some(Walled {
            folder,
            uid: me,
            as_uid: None,
            bin: PathBuf::from(BIN),
        });
    }
    if Command::new("setpriv").arg("--version").output().is_err() {
        return None;
    }
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o755)).unwrap();
    // uid 1000 must reach the binary, the config and the catalog.
    std::fs::set_permissions(h.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = h.path("bin");
    std::fs::copy(BIN, &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    Some(Walled {
        folder,
        uid: 1000,
        as_uid: Some(1000),
        bin,
    })
}

impl Walled {
    fn command(&self, args: &[&str], env: &[(&str, &str)], cwd: &Path) -> Command {
        let mut cmd = match self.as_uid {
            Some(uid) => {
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={uid}"))
                    .arg("--clear-groups")
                    .arg(&self.bin);
                c
            }
            None => Command::new(&self.bin),
        };
        cmd.args(args).envs(env.iter().copied()).current_dir(cwd);
        cmd
    }
}

impl Drop for Walled {
    fn drop(&mut self) {
        let _ = std::fs::set_permissions(&self.folder, std::fs::Permissions::from_mode(0o755));
    }
}

#[test]
#[allow(clippy::print_stderr)]
fn an_unwritable_folder_fails_check_and_write_with_the_uid_and_how_to_grant_access() {
    let h = Harness::new();
    let Some(wall) = walled(&h) else {
        eprintln!("SKIPPED: running as root and setpriv is missing");
        return;
    };
    let owner = std::fs::metadata(&wall.folder).unwrap();
    let mode = format!("mode {:04o}", owner.mode() & 0o7777);
    h.write_catalog(&catalog_of(&[("s", None)], "append"));
    let root = wall.folder.to_str().unwrap().to_string();
    let mounted = format!("on the host, to the folder mounted at `{root}`");
    for (case, path, env, also) in [
        (
            "absolute path",
            wall.folder.join("db.duckdb").to_str().unwrap().to_string(),
            vec![],
            None,
        ),
        // The image's layout: a relative path under the /local root, where
        // the host path is unknown, so the message names the mount.
        (
            "under the local root",
            "db.duckdb".to_string(),
            vec![("DESTINATION_DUCKDB_LOCAL_ROOT", root.as_str())],
            Some(mounted.clone()),
        ),
        (
            "in a folder still to be made",
            wall.folder
                .join("sub/db.duckdb")
                .to_str()
                .unwrap()
                .to_string(),
            vec![],
            None,
        ),
    ] {
        h.write_config(json!({ "destination_path": path }));
        let config = h.config_path().to_str().unwrap().to_string();
        let catalog = h.catalog_path().to_str().unwrap().to_string();
        let expect = |m: &str, command: &str| {
            let needles = [
                format!("runs as uid {}", wall.uid),
                format!("`{}`", wall.folder.display()),
                format!("belongs to uid {}", owner.uid()),
                mode.clone(),
                format!("Give uid {} write access", wall.uid),
                "chown".to_string(),
            ];
            for needle in needles.iter().chain(also.iter()) {
                assert!(
                    m.contains(needle.as_str()),
                    "{case}, {command}: {m:?} lacks {needle:?}"
                );
            }
        };

        let run =
            run_without_input(wall.command(&["check", "--config", &config], &env, h.dir.path()));
        run.assert_ok();
        let status = &run.messages[0]["connectionStatus"];
        assert_eq!(status["status"], "FAILED", "{case}: {run:?}");
        expect(status["message"].as_str().unwrap(), "check");

        let run = run_without_input(wall.command(
            &["write", "--config", &config, "--catalog", &catalog],
            &env,
            h.dir.path(),
        ));
        let m = config_error(&run);
        expect(&m, "write");
        assert!(
            std::fs::read_dir(&wall.folder).unwrap().next().is_none(),
            "{case}: nothing was created in the folder"
        );
    }
}
