//! What sits at or around `destination_path`: files that are not DuckDB
//! databases (CSV, JSON, random bytes, text, SQLite, Parquet), a FIFO and a
//! device, an empty file, a folder or stray file at the WAL's path, remote
//! URLs, paths outside the local root, and a folder the writer may not write
//! in. Each is refused by `check` and `write` alike with a clear
//! `config_error` and left untouched, or (an empty file) taken as a new
//! database. (The URL case also takes a catalog with a lone surrogate in a
//! description, as the platform's parser does.)

use std::path::Path;
use std::process::Command;

use crate::util::cases::{
    assert_check_fails, assert_config_error, check, check_env, one_record, set_path, status, write,
    write_env,
};
use crate::util::{catalog_of, global_state, lines, record, Harness, Nobody};

/// `check` and `write` both refuse the file, and its bytes stay as they were.
fn foreign_file_case(name: &str, bytes: &[u8]) {
    let h = Harness::new();
    let path = h.path(name);
    std::fs::write(&path, bytes).unwrap();
    set_path(&h, path.to_str().unwrap());
    h.write_catalog(&catalog_of(&[("s", None)], "append"));

    assert_check_fails(&check(&h), "not a DuckDB database", name);
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "{name}: check changed it"
    );

    let run = write(&h, &one_record());
    assert_config_error(&run, name);
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "{name}: write changed it"
    );
}

/// Deterministic pseudo-random bytes.
fn noise(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn foreign_csv_file_is_refused_and_untouched() {
    foreign_file_case("data.csv", b"a,b\n1,2\n");
}

#[test]
fn foreign_json_file_is_refused_and_untouched() {
    foreign_file_case("data.json", br#"{"users": [{"id": 1, "name": "a"}]}"#);
}

#[test]
fn foreign_random_bytes_file_is_refused_and_untouched() {
    foreign_file_case("noise.bin", &noise(4096));
}

#[test]
fn foreign_text_file_is_refused_and_untouched() {
    let text: String = "lorem ipsum dolor sit amet\n"
        .chars()
        .cycle()
        .take(4096)
        .collect();
    foreign_file_case("notes.txt", text.as_bytes());
}

#[test]
fn foreign_sqlite_file_is_refused_and_untouched() {
    let mut bytes = b"SQLite format 3\0".to_vec();
    bytes.resize(4096, 0);
    foreign_file_case("data.sqlite", &bytes);
}

#[test]
fn foreign_parquet_file_is_refused_and_untouched() {
    let mut bytes = b"PAR1".to_vec();
    bytes.extend_from_slice(&noise(1024));
    bytes.extend_from_slice(b"PAR1");
    foreign_file_case("data.parquet", &bytes);
}

/// A path that is not a regular file: `check` fails (a blocking open of a
/// FIFO would hang it until the hang guard), and `write` is a config error.
fn special_file_case(path: &Path) {
    let h = Harness::new();
    set_path(&h, path.to_str().unwrap());
    h.write_catalog(&catalog_of(&[("s", None)], "append"));
    let case = path.display().to_string();
    assert_check_fails(&check(&h), "not a regular file", &case);
    assert_config_error(&write(&h, &one_record()), &case);
}

#[test]
fn fifo_destination_is_refused_without_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe.duckdb");
    let ok = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(ok.success(), "mkfifo failed");
    special_file_case(&fifo);
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
}

#[test]
fn dev_null_destination_is_refused() {
    special_file_case(Path::new("/dev/null"));
}

#[test]
fn empty_existing_file_is_accepted_as_a_new_database() {
    let h = Harness::new();
    std::fs::write(h.db_path(), b"").unwrap();
    h.write_catalog(&catalog_of(&[("s", None)], "append"));
    write(&h, &one_record()).assert_ok();
    assert_eq!(h.count("main._airbyte_raw_s"), 1);

    let h = Harness::new();
    std::fs::write(h.db_path(), b"").unwrap();
    let (s, m) = status(&check(&h));
    assert_eq!(s, "SUCCEEDED", "{m}");
}

#[test]
fn a_folder_or_a_stray_file_at_the_wal_path_is_a_config_error() {
    let h = Harness::new();
    h.write_catalog(&catalog_of(&[("s", None)], "append"));
    let wal = h.path("db.duckdb.wal");
    std::fs::create_dir(&wal).unwrap();
    assert_check_fails(&check(&h), "db.duckdb.wal", "folder at the WAL path");
    assert_config_error(&write(&h, &one_record()), "folder at the WAL path");
    std::fs::remove_dir(&wal).unwrap();
    std::fs::write(&wal, "a,b\n1,2\n").unwrap();
    assert_check_fails(&check(&h), "db.duckdb.wal", "stray WAL file");
    assert_config_error(&write(&h, &one_record()), "stray WAL file");
    assert_eq!(
        std::fs::read(&wal).unwrap(),
        b"a,b\n1,2\n",
        "left untouched"
    );
}

#[test]
fn remote_urls_are_refused_and_lone_surrogates_in_the_catalog_are_taken() {
    let h = Harness::new();
    h.write_catalog(&catalog_of(&[("s", None)], "append"));
    let cwd = h.path("cwd");
    for url in ["s3://bucket/x.duckdb", "https://host/x.duckdb"] {
        set_path(&h, url);
        assert_check_fails(&check(&h), "URL", url);
        assert_config_error(&write(&h, &one_record()), url);
    }
    assert!(!cwd.join("s3:").exists() && !cwd.join("https:").exists());
    // The platform's parser takes a lone surrogate in a description.
    set_path(&h, h.db_path().to_str().unwrap());
    let text = r#"{"streams":[{"stream":{"name":"s","description":"half \ud83d","json_schema":{"type":"object"}},"destination_sync_mode":"append"}]}"#;
    std::fs::write(h.catalog_path(), text).unwrap();
    write(&h, &one_record()).assert_ok();
}

#[test]
fn paths_outside_the_local_root_are_refused() {
    let h = Harness::new();
    let root = h.path("root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(h.path("elsewhere")).unwrap();
    std::os::unix::fs::symlink(h.path("elsewhere"), root.join("link")).unwrap();
    let env = [("DESTINATION_DUCKDB_LOCAL_ROOT", root.to_str().unwrap())];
    h.write_catalog(&catalog_of(&[("s", None)], "append"));

    let outside = h.path("outside.duckdb");
    // A dangling link: the file would be created at its target, outside.
    std::os::unix::fs::symlink(
        h.path("elsewhere/dangling.duckdb"),
        root.join("dangling.duckdb"),
    )
    .unwrap();
    for path in [
        "../x.duckdb",
        "sub/../../x.duckdb",
        outside.to_str().unwrap(),
        "link/x.duckdb",
        "dangling.duckdb",
    ] {
        set_path(&h, path);
        assert_check_fails(&check_env(&h, &env), "root", path);
        assert_config_error(&write_env(&h, &one_record(), &env), path);
    }
    for created in [
        "x.duckdb",
        "outside.duckdb",
        "elsewhere/x.duckdb",
        "elsewhere/dangling.duckdb",
    ] {
        assert!(!h.path(created).exists(), "{created} was created");
    }

    let inside = root.join("y.duckdb");
    for (path, file) in [
        ("x.duckdb", root.join("x.duckdb")),
        ("sub/x.duckdb", root.join("sub/x.duckdb")),
        (inside.to_str().unwrap(), inside.clone()),
    ] {
        set_path(&h, path);
        let (s, m) = status(&check_env(&h, &env));
        assert_eq!(s, "SUCCEEDED", "{path}: {m}");
        write_env(&h, &one_record(), &env).assert_ok();
        assert_eq!(count_in(&file, "main._airbyte_raw_s"), 1, "{path}");
    }
}

fn open_ro(path: &Path) -> duckdb::Connection {
    let config = duckdb::Config::default()
        .access_mode(duckdb::AccessMode::ReadOnly)
        .unwrap();
    duckdb::Connection::open_with_flags(path, config).unwrap()
}

fn count_in(path: &Path, table: &str) -> i64 {
    open_ro(path)
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

/// Restores a folder's permissions on drop, so the temp dir can be removed.
struct Writable<'a>(&'a Path);

impl Drop for Writable<'_> {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(self.0, std::fs::Permissions::from_mode(0o755));
    }
}

#[test]
#[allow(clippy::print_stderr)]
fn read_only_folder_is_a_config_error() {
    use std::os::unix::fs::PermissionsExt;
    let h = Harness::new();
    let dir = h.path("ro");
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("db.duckdb");
    set_path(&h, db.to_str().unwrap());
    h.write_catalog(&catalog_of(&[("s", None)], "append"));
    write(&h, &one_record()).assert_ok();

    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    let _restore = Writable(&dir);
    let input = lines(&[record("s", 2, r#"{"n":2}"#), global_state(2)]);
    let probe = dir.join("probe");
    if std::fs::write(&probe, b"").is_err() {
        assert_config_error(&write(&h, &input), "read-only folder");
        return;
    }
    // Root ignores the folder's mode: run the binary as `nobody`, from a
    // copy it can reach, on a file it may write.
    let _ = std::fs::remove_file(&probe);
    let Some(nobody) = Nobody::new(&h) else {
        return;
    };
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o666)).unwrap();
    let as_nobody = |args: &[&str], stdin: &[u8]| nobody.run(args, stdin);
    let config = h.config_path().to_str().unwrap().to_string();
    let catalog = h.catalog_path().to_str().unwrap().to_string();
    let run = as_nobody(
        &["write", "--config", &config, "--catalog", &catalog],
        input.as_bytes(),
    );
    let m = assert_config_error(&run, "read-only folder");
    assert!(m.contains("permission denied"), "{m}");
    assert_check_fails(
        &as_nobody(&["check", "--config", &config], b""),
        "permission",
        "check",
    );
    assert_eq!(
        count_in(&db, "main._airbyte_raw_s"),
        1,
        "the first sync's row stays"
    );
}
