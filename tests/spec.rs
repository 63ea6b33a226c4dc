use serde_json::Value;

use crate::util::{parse_stdout, Harness};

#[test]
fn spec_prints_exactly_the_embedded_spec_json() {
    let h = Harness::new();
    let run = h.run(&["spec"], b"");
    run.assert_ok();
    assert_eq!(run.messages.len(), 1, "{run:?}");
    let golden: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/spec.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        run.messages[0],
        serde_json::json!({"type": "SPEC", "spec": golden})
    );
    // One compact line.
    assert_eq!(run.stdout.lines().count(), 1);
}

#[test]
fn spec_is_drop_in_compatible_with_the_official_connector() {
    let h = Harness::new();
    let run = h.run(&["spec"], b"");
    let ours = &run.messages[0]["spec"]["connectionSpecification"];
    let official: Value = crate::util::read_json(&crate::util::acceptance("duckdb_spec.json"));
    let theirs = &official["connectionSpecification"];
    assert_eq!(ours["required"], theirs["required"]);
    for (key, prop) in theirs["properties"].as_object().unwrap() {
        assert_eq!(ours["properties"][key]["type"], prop["type"], "key {key}");
    }
    assert_eq!(
        ours["properties"]["motherduck_api_key"]["airbyte_secret"],
        true
    );
    assert_ne!(ours["additionalProperties"], false);
    assert!(!run.stdout.contains("$ref"));
}

#[test]
fn help_and_version_work() {
    let h = Harness::new();
    let run = std::process::Command::new(crate::util::BIN)
        .arg("--help")
        .output()
        .unwrap();
    assert!(run.status.success());
    let text = String::from_utf8(run.stdout).unwrap();
    assert!(text.contains("write") && text.contains("check") && text.contains("spec"));
    let run = std::process::Command::new(crate::util::BIN)
        .arg("--version")
        .output()
        .unwrap();
    assert!(String::from_utf8(run.stdout)
        .unwrap()
        .contains(env!("CARGO_PKG_VERSION")));
    drop(h);
    let _ = parse_stdout("");
}
