use serde_json::json;

use crate::util::{acceptance, Harness, Run};

fn status(run: &Run) -> (String, String) {
    run.assert_ok();
    assert_eq!(run.messages.len(), 1, "exactly one message: {run:?}");
    let m = &run.messages[0];
    assert_eq!(m["type"], "CONNECTION_STATUS");
    let s = &m["connectionStatus"];
    (
        s["status"].as_str().unwrap().to_string(),
        s["message"].as_str().unwrap_or("").to_string(),
    )
}

#[test]
fn check_succeeds_creates_parent_folders_and_leaves_nothing_behind() {
    let h = Harness::new();
    let db = h.path("a/b/c/x.duckdb");
    h.write_config(
        json!({"destination_path": db.to_str().unwrap(), "schema": "test_schema_abcdef"}),
    );
    let (s, m) = status(&h.check());
    assert_eq!(s, "SUCCEEDED", "{m}");
    assert!(db.exists());
    let conn = duckdb::Connection::open(&db).unwrap();
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM duckdb_tables()", [], |r| r.get(0))
        .unwrap();
    let schemas: i64 = conn
        .query_row(
            "SELECT count(*) FROM duckdb_schemas() WHERE schema_name = 'test_schema_abcdef'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!((tables, schemas), (0, 0));
}

#[test]
fn check_with_the_official_python_config_shape_succeeds() {
    let h = Harness::new();
    let mut config = crate::util::read_json(&acceptance("duckdb_config_python.json"));
    config["destination_path"] = json!(h.path("destination.duckdb").to_str().unwrap());
    h.write_config(config);
    assert_eq!(status(&h.check()).0, "SUCCEEDED");
}

#[test]
fn check_fails_for_a_path_that_is_a_directory() {
    let h = Harness::new();
    h.write_config(json!({"destination_path": h.dir.path().to_str().unwrap()}));
    let (s, m) = status(&h.check());
    assert_eq!(s, "FAILED");
    assert!(m.contains("directory"), "{m}");
}

#[test]
fn check_fails_when_the_folder_cannot_be_created() {
    let h = Harness::new();
    std::fs::write(h.path("file"), "x").unwrap();
    h.write_config(json!({"destination_path": h.path("file/sub/x.duckdb").to_str().unwrap()}));
    let (s, m) = status(&h.check());
    assert_eq!(s, "FAILED");
    assert!(m.contains("cannot create the folder"), "{m}");
}

#[test]
fn check_fails_in_a_read_only_location() {
    let h = Harness::new();
    // /proc is read-only even for root, unlike a chmod'ed folder.
    h.write_config(json!({"destination_path": "/proc/destination-duckdb-test/x.duckdb"}));
    let (s, m) = status(&h.check());
    assert_eq!(s, "FAILED");
    assert!(!m.is_empty());
}

#[test]
fn check_fails_for_a_config_that_does_not_parse_or_lacks_the_path() {
    let h = Harness::new();
    std::fs::write(h.config_path(), "{not json").unwrap();
    let (s, m) = status(&h.check());
    assert_eq!(s, "FAILED");
    assert!(m.contains("not valid JSON"), "{m}");

    h.write_config(json!({"schema": "main"}));
    let (s, m) = status(&h.check());
    assert_eq!(s, "FAILED");
    assert!(m.contains("destination_path"), "{m}");
}

#[test]
fn check_fails_when_another_process_holds_the_database() {
    let h = Harness::new();
    // Make the file, then hold it open read-write from this process.
    assert_eq!(status(&h.check()).0, "SUCCEEDED");
    let holder = duckdb::Connection::open(h.db_path()).unwrap();
    let (s, m) = status(&h.check());
    drop(holder);
    assert_eq!(s, "FAILED");
    // It names the holder: this test's own process.
    assert!(m.contains(&format!("(PID {})", std::process::id())), "{m}");
}
