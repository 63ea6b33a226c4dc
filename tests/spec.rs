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

// ---------------------------------------------------------------------------
// Airbyte's spec checks (the connector acceptance tests' `spec` suite), run
// on what the binary serves with a real JSON Schema (draft 7) validator.

/// The `connectionSpecification` exactly as `spec` prints it.
fn connection_specification() -> Value {
    let run = Harness::new().run(&["spec"], b"");
    run.assert_ok();
    run.messages[0]["spec"]["connectionSpecification"].clone()
}

fn validator(schema: &Value) -> jsonschema::Validator {
    jsonschema::draft7::new(schema).unwrap_or_else(|e| panic!("spec does not compile: {e}"))
}

/// Every validation error for `config`, as text (empty when it is valid).
fn schema_errors(validator: &jsonschema::Validator, config: &Value) -> Vec<String> {
    validator
        .iter_errors(config)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect()
}

/// Calls `f(json_pointer, object)` for every object in `value`, depth first.
fn walk_objects(
    value: &Value,
    pointer: &str,
    f: &mut dyn FnMut(&str, &serde_json::Map<String, Value>),
) {
    match value {
        Value::Object(map) => {
            f(pointer, map);
            for (k, v) in map {
                walk_objects(v, &format!("{pointer}/{k}"), f);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                walk_objects(v, &format!("{pointer}/{i}"), f);
            }
        }
        _ => {}
    }
}

/// Every `(pointer, name, schema)` under a `properties` keyword, at any depth
/// (nested objects, `oneOf` branches).
fn all_properties(spec: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    walk_objects(spec, "", &mut |pointer, map| {
        if let Some(Value::Object(props)) = map.get("properties") {
            for (name, schema) in props {
                out.push((
                    format!("{pointer}/properties/{name}"),
                    name.clone(),
                    schema.clone(),
                ));
            }
        }
    });
    out
}

/// A config with every optional key set to a valid value.
fn full_config(destination_path: &str) -> Value {
    serde_json::json!({
        "destination_path": destination_path,
        "schema": "analytics",
        "motherduck_api_key": "not-a-real-token",
        "storage_version": "latest",
        "memory_limit": "512MB",
        "threads": 2,
        "batch_size_mb": 16,
        "progress_interval_seconds": 30,
        "typed_output": "tables",
        "lock_timeout_seconds": 60,
        "release_idle_seconds": 5,
    })
}

/// Configs that the spec must reject, each with what is wrong.
fn invalid_configs() -> Vec<(&'static str, Value)> {
    use serde_json::json;
    vec![
        ("missing destination_path", json!({"schema": "main"})),
        (
            "threads 0",
            json!({"destination_path": "/tmp/x.duckdb", "threads": 0}),
        ),
        (
            "batch_size_mb 5000",
            json!({"destination_path": "/tmp/x.duckdb", "batch_size_mb": 5000}),
        ),
        (
            "storage_version 1.0",
            json!({"destination_path": "/tmp/x.duckdb", "storage_version": "1.0"}),
        ),
        (
            "memory_limit lots",
            json!({"destination_path": "/tmp/x.duckdb", "memory_limit": "lots"}),
        ),
        (
            "typed_output materialized",
            json!({"destination_path": "/tmp/x.duckdb", "typed_output": "materialized"}),
        ),
    ]
}

#[test]
fn spec_is_a_valid_draft7_json_schema() {
    let spec = connection_specification();
    assert_eq!(spec["$schema"], "http://json-schema.org/draft-07/schema#");
    if let Err(e) = jsonschema::draft7::meta::validate(&spec) {
        panic!(
            "connectionSpecification is not a valid draft 7 schema: {e} at {}",
            e.instance_path()
        );
    }
    assert_eq!(spec["type"], "object");
    validator(&spec);
}

#[test]
fn example_and_acceptance_configs_validate_against_the_spec() {
    let spec = connection_specification();
    let v = validator(&spec);
    let files = [
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config.json"),
        crate::util::acceptance("duckdb_config.json"),
        crate::util::acceptance("duckdb_config_python.json"),
    ];
    for file in files {
        let config = crate::util::read_json(&file);
        let errors = schema_errors(&v, &config);
        assert!(errors.is_empty(), "{}: {errors:?}", file.display());
    }
}

#[test]
fn a_config_with_every_optional_key_validates_and_covers_every_property() {
    let spec = connection_specification();
    let config = full_config("/tmp/destination.duckdb");
    let errors = schema_errors(&validator(&spec), &config);
    assert!(errors.is_empty(), "{errors:?}");
    // Keeps this config complete as properties are added to the spec.
    let mut keys: Vec<_> = config.as_object().unwrap().keys().cloned().collect();
    let mut props: Vec<_> = spec["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    keys.sort();
    props.sort();
    assert_eq!(
        keys, props,
        "full_config() must set every property of spec.json"
    );
    // Unknown keys are allowed (the platform may add some).
    let mut extra = config.clone();
    extra["added_by_the_platform"] = serde_json::json!(1);
    assert!(schema_errors(&validator(&spec), &extra).is_empty());
}

#[test]
fn invalid_configs_are_rejected_by_the_spec() {
    let spec = connection_specification();
    let v = validator(&spec);
    for (what, config) in invalid_configs() {
        assert!(
            !schema_errors(&v, &config).is_empty(),
            "the spec accepts a config with {what}: {config}"
        );
    }
}

#[test]
fn the_binary_agrees_with_the_spec_on_valid_and_invalid_configs() {
    // What the schema accepts, `check` accepts; what it rejects, `check` fails.
    let h = Harness::new();
    let db = h.path("full/destination.duckdb");
    h.write_config(full_config(db.to_str().unwrap()));
    let run = h.check();
    run.assert_ok();
    assert_eq!(
        run.messages[0]["connectionStatus"]["status"], "SUCCEEDED",
        "{run:?}"
    );
    for (what, config) in invalid_configs() {
        h.write_config(config);
        let run = h.check();
        run.assert_ok();
        assert_eq!(
            run.messages[0]["connectionStatus"]["status"], "FAILED",
            "check accepts a config with {what}: {run:?}"
        );
    }
}

#[test]
fn secrets_are_marked_airbyte_secret() {
    let spec = connection_specification();
    for (pointer, name, schema) in all_properties(&spec) {
        let lower = name.to_ascii_lowercase();
        if ["key", "token", "password", "secret"]
            .iter()
            .any(|word| lower.contains(word))
        {
            assert_eq!(
                schema["airbyte_secret"], true,
                "{pointer} looks like a secret but has no `airbyte_secret: true`"
            );
        }
    }
}

#[test]
fn additional_properties_are_true_or_absent_everywhere() {
    let spec = connection_specification();
    walk_objects(&spec, "", &mut |pointer, map| {
        if let Some(ap) = map.get("additionalProperties") {
            assert_eq!(ap, &Value::Bool(true), "{pointer}/additionalProperties");
        }
    });
}

#[test]
fn spec_has_no_ref() {
    let spec = connection_specification();
    walk_objects(&spec, "", &mut |pointer, map| {
        assert!(!map.contains_key("$ref"), "{pointer} has a $ref");
    });
}

#[test]
fn no_enum_has_duplicate_values() {
    let spec = connection_specification();
    walk_objects(&spec, "", &mut |pointer, map| {
        if let Some(Value::Array(values)) = map.get("enum") {
            for (i, a) in values.iter().enumerate() {
                assert!(!values[..i].contains(a), "{pointer}/enum repeats {a}");
            }
        }
    });
}

#[test]
fn every_property_has_title_description_and_type() {
    let spec = connection_specification();
    let props = all_properties(&spec);
    assert!(!props.is_empty());
    for (pointer, _, schema) in props {
        for key in ["title", "description", "type"] {
            assert!(schema.get(key).is_some(), "{pointer} has no `{key}`");
        }
        for key in ["title", "description"] {
            assert!(
                schema[key].as_str().is_some_and(|s| !s.trim().is_empty()),
                "{pointer}/{key} must be a non-empty string"
            );
        }
    }
}

#[test]
fn defaults_and_examples_satisfy_their_own_property() {
    // The UI pre-fills defaults and shows examples: each must be a valid value.
    let spec = connection_specification();
    for (pointer, _, schema) in all_properties(&spec) {
        let v = validator(&schema);
        let mut values: Vec<Value> = schema["examples"].as_array().cloned().unwrap_or_default();
        values.extend(schema.get("default").cloned());
        for value in values {
            let errors = schema_errors(&v, &value);
            assert!(
                errors.is_empty(),
                "{pointer}: {value} is invalid: {errors:?}"
            );
        }
    }
}

#[test]
fn property_orders_are_distinct() {
    // The UI sorts fields by `order`; two equal orders make the form ambiguous.
    let spec = connection_specification();
    let mut orders: Vec<i64> = spec["properties"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(|p| p["order"].as_i64())
        .collect();
    let n = orders.len();
    orders.sort();
    orders.dedup();
    assert_eq!(orders.len(), n, "duplicate `order` values in spec.json");
}
