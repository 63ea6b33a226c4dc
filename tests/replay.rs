//! Replays of Airbyte's own acceptance data (`tests/data/airbyte`).

use serde_json::value::RawValue;
use serde_json::Value;

use destination_duckdb::names::{normalize, normalize_schema};

use crate::util::{acceptance, configured_from_plain, read_json, Harness};

/// What the input says: the exact `data` text and emitted_at of every record
/// (with its namespace and stream), and every state with the count the
/// protocol expects.
struct Expected {
    records: Vec<(String, String, String, i64)>,
    states: Vec<(Value, u64)>,
}

fn expected(input: &str) -> Expected {
    #[derive(serde::Deserialize)]
    struct Rec<'a> {
        stream: String,
        #[serde(default)]
        namespace: Option<String>,
        emitted_at: i64,
        #[serde(borrow)]
        data: &'a RawValue,
    }
    #[derive(serde::Deserialize)]
    struct Env<'a> {
        #[serde(borrow)]
        record: Rec<'a>,
    }
    let mut records = Vec::new();
    let mut states = Vec::new();
    let mut since_any = 0u64;
    let mut since_stream: std::collections::HashMap<(String, String), u64> = Default::default();
    for line in input.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).unwrap();
        match v["type"].as_str().unwrap() {
            "RECORD" => {
                // The data text straight from the line, untouched.
                let env: Env<'_> = serde_json::from_str(line).unwrap();
                let ns = env.record.namespace.unwrap_or_default();
                *since_stream
                    .entry((ns.clone(), env.record.stream.clone()))
                    .or_default() += 1;
                records.push((
                    ns,
                    env.record.stream,
                    env.record.data.get().to_string(),
                    env.record.emitted_at,
                ));
                since_any += 1;
            }
            "STATE" => {
                let state = &v["state"];
                let count = if state["type"] == "STREAM" {
                    let d = &state["stream"]["stream_descriptor"];
                    let key = (
                        d["namespace"].as_str().unwrap_or("").to_string(),
                        d["name"].as_str().unwrap().to_string(),
                    );
                    since_stream.remove(&key).unwrap_or(0)
                } else {
                    since_stream.clear();
                    since_any
                };
                since_any = 0;
                states.push((state.clone(), count));
            }
            _ => {}
        }
    }
    Expected { records, states }
}

/// The table a stream lands in, for names that do not collide.
pub fn raw_table(namespace: &str, stream: &str) -> String {
    let schema = if namespace.is_empty() {
        "main".to_string()
    } else {
        normalize_schema(namespace)
    };
    format!("\"{schema}\".\"_airbyte_raw_{}\"", normalize(stream))
}

/// Runs a sync and checks the DAT assertions: every state echoed, in order,
/// unchanged but for the right `destinationStats`; every stream's rows equal
/// to its input records (exact data text, emitted_at, order).
fn assert_replay(h: &Harness, input: &str) -> crate::util::Run {
    let run = h.write(input.as_bytes());
    run.assert_ok();
    let exp = expected(input);
    let states = run.states();
    assert_eq!(
        states.len(),
        exp.states.len(),
        "every state echoed: {run:?}"
    );
    for (got, (want, count)) in states.iter().zip(&exp.states) {
        let mut got_state = got["state"].clone();
        let stats = got_state
            .as_object_mut()
            .unwrap()
            .remove("destinationStats")
            .expect("destinationStats");
        let mut want = want.clone();
        want.as_object_mut().unwrap().remove("destinationStats");
        assert_eq!(got_state, want, "state echoed unchanged");
        assert_eq!(stats, serde_json::json!({"recordCount": *count as f64}));
    }
    let mut streams: Vec<(&str, &str)> = exp
        .records
        .iter()
        .map(|r| (r.0.as_str(), r.1.as_str()))
        .collect();
    streams.sort();
    streams.dedup();
    for (ns, stream) in streams {
        let want: Vec<(String, i64)> = exp
            .records
            .iter()
            .filter(|r| r.0 == ns && r.1 == stream)
            .map(|r| (r.2.clone(), r.3))
            .collect();
        let rows = h.strings(&format!(
            "SELECT _airbyte_data::VARCHAR, epoch_ms(_airbyte_emitted_at::TIMESTAMP)::VARCHAR FROM {}",
            raw_table(ns, stream)
        ));
        let got: Vec<(String, i64)> = rows
            .into_iter()
            .map(|r| {
                (
                    r[0].clone().unwrap(),
                    r[1].clone().unwrap().parse().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            got, want,
            "rows of {stream}: exact data text and emitted_at, in order"
        );
    }
    run
}

fn exchange_rate(version: &str) {
    let h = Harness::new();
    let plain = read_json(&acceptance(&format!(
        "{version}/exchange_rate_catalog.json"
    )));
    let catalog = configured_from_plain(&plain);
    h.write_catalog(&catalog);
    let input =
        std::fs::read_to_string(acceptance(&format!("{version}/exchange_rate_messages.txt")))
            .unwrap();
    assert_replay(&h, &input);
    assert_eq!(h.count("main._airbyte_raw_exchange_rate"), 5);
    // Metadata columns from the catalog.
    let meta = h.strings(
        "SELECT DISTINCT _airbyte_meta::VARCHAR, _airbyte_generation_id::VARCHAR FROM main._airbyte_raw_exchange_rate",
    );
    assert_eq!(
        meta,
        vec![vec![
            Some(r#"{"sync_id":42,"changes":[]}"#.to_string()),
            Some("12".to_string())
        ]]
    );
    let ids = h.strings("SELECT count(DISTINCT _airbyte_ab_id)::VARCHAR, min(length(_airbyte_ab_id))::VARCHAR FROM main._airbyte_raw_exchange_rate");
    assert_eq!(ids, vec![vec![Some("5".into()), Some("36".into())]]);
    // Byte for byte, the echo is the input line with the stats added as the
    // state object's last member.
    let run_again = h.write(input.as_bytes());
    let last_in = input
        .lines()
        .rfind(|l| l.contains("\"STATE\""))
        .unwrap()
        .trim_end();
    let last_out = *run_again.protocol_lines().last().unwrap();
    let count = expected(&input).states.last().unwrap().1;
    let want = format!(
        "{},\"destinationStats\":{{\"recordCount\":{count}.0}}}}}}",
        &last_in[..last_in.len() - 2]
    );
    assert_eq!(last_out, want);
}

#[test]
fn exchange_rate_v0() {
    exchange_rate("v0");
}

#[test]
fn exchange_rate_v1() {
    exchange_rate("v1");
}

/// Replays a message file against its catalog (made into a configured
/// catalog the DAT way when it is a plain one) and checks every stream.
fn replay(catalog_file: &str, messages_file: &str) {
    let h = Harness::new();
    let plain = read_json(&acceptance(catalog_file));
    let catalog = if plain["streams"][0].get("stream").is_some() {
        plain
    } else {
        configured_from_plain(&plain)
    };
    h.write_catalog(&catalog);
    let input = std::fs::read_to_string(acceptance(messages_file)).unwrap();
    assert_replay(&h, &input);
    // Every catalog stream has its table; those without records are empty.
    let exp = expected(&input);
    for s in catalog["streams"].as_array().unwrap() {
        let ns = s["stream"]["namespace"].as_str().unwrap_or("");
        let name = s["stream"]["name"].as_str().unwrap();
        let n = exp
            .records
            .iter()
            .filter(|r| r.0 == ns && r.1 == name)
            .count() as i64;
        assert_eq!(h.count(&raw_table(ns, name)), n, "rows of {name}");
    }
}

macro_rules! replays {
    ($($test:ident: $catalog:expr, $messages:expr;)*) => {
        $(
            #[test]
            fn $test() {
                replay($catalog, $messages);
            }
        )*
    };
}

replays! {
    v0_data_type_array_object: "v0/data_type_array_object_test_catalog.json", "v0/data_type_array_object_test_messages.txt";
    v0_data_type_array: "v0/data_type_array_test_catalog.json", "v0/data_type_array_test_messages.txt";
    v0_data_type_basic: "v0/data_type_basic_test_catalog.json", "v0/data_type_basic_test_messages.txt";
    v0_data_type_object: "v0/data_type_object_test_catalog.json", "v0/data_type_object_test_messages.txt";
    v0_edge_case: "v0/edge_case_catalog.json", "v0/edge_case_messages.txt";
    v0_namespace: "v0/namespace_catalog.json", "v0/namespace_messages.txt";
    v0_number_data_type_array: "v0/number_data_type_array_test_catalog.json", "v0/number_data_type_array_test_messages.txt";
    v0_number_data_type: "v0/number_data_type_test_catalog.json", "v0/number_data_type_test_messages.txt";
    v0_every_time_type: "v0/every_time_type_configured_catalog.json", "v0/every_time_type_messages.txt";
    v0_problematic_types: "v0/problematic_types_configured_catalog.json", "v0/problematic_types_messages_in.txt";
    v1_data_type_array_object: "v1/data_type_array_object_test_catalog.json", "v1/data_type_array_object_test_messages.txt";
    v1_data_type_array: "v1/data_type_array_test_catalog.json", "v1/data_type_array_test_messages.txt";
    v1_data_type_basic: "v1/data_type_basic_test_catalog.json", "v1/data_type_basic_test_messages.txt";
    v1_data_type_object: "v1/data_type_object_test_catalog.json", "v1/data_type_object_test_messages.txt";
    v1_edge_case: "v1/edge_case_catalog.json", "v1/edge_case_messages.txt";
    v1_namespace: "v1/namespace_catalog.json", "v1/namespace_messages.txt";
    v1_number_data_type_array: "v1/number_data_type_array_test_catalog.json", "v1/number_data_type_array_test_messages.txt";
    v1_number_data_type: "v1/number_data_type_test_catalog.json", "v1/number_data_type_test_messages.txt";
    v1_nan_number: "v1/data_type_number_type_test_catalog.json", "v1/nan_type_test_message.txt";
    v1_nan_integer: "v1/data_type_integer_type_test_catalog.json", "v1/nan_type_test_message.txt";
    legacy_data_type_array_object: "legacy/data_type_array_object_test_catalog.json", "legacy/data_type_array_object_test_messages.txt";
    legacy_data_type_array: "legacy/data_type_array_test_catalog.json", "legacy/data_type_array_test_messages.txt";
    legacy_data_type_basic: "legacy/data_type_basic_test_catalog.json", "legacy/data_type_basic_test_messages.txt";
    legacy_data_type_object: "legacy/data_type_object_test_catalog.json", "legacy/data_type_object_test_messages.txt";
    legacy_edge_case: "legacy/edge_case_catalog.json", "legacy/edge_case_messages.txt";
    legacy_exchange_rate: "legacy/exchange_rate_catalog.json", "legacy/exchange_rate_messages.txt";
    legacy_namespace: "legacy/namespace_catalog.json", "legacy/namespace_messages.txt";
    legacy_number_data_type_array: "legacy/number_data_type_array_test_catalog.json", "legacy/number_data_type_array_test_messages.txt";
    legacy_number_data_type: "legacy/number_data_type_test_catalog.json", "legacy/number_data_type_test_messages.txt";
    duckdb_official_fixture: "duckdb_configured_catalog.json", "duckdb_messages.jsonl";
}

#[test]
fn edge_case_special_character_stream_lands_in_its_normalized_table() {
    let h = Harness::new();
    h.write_catalog(&configured_from_plain(&read_json(&acceptance(
        "v0/edge_case_catalog.json",
    ))));
    let input = std::fs::read_to_string(acceptance("v0/edge_case_messages.txt")).unwrap();
    h.write(input.as_bytes()).assert_ok();
    assert!(h.count("main._airbyte_raw_stream_with_special_character_names") > 0);
    assert_eq!(h.count("main._airbyte_raw_STREAM_WITH_ALL_CAPS"), 0);
}

#[test]
fn stripe_messages_with_a_hand_made_catalog() {
    for dir in ["v0", "v1", "legacy"] {
        let h = Harness::new();
        h.write_catalog(&crate::util::catalog_of(&[("customers", None)], "append"));
        let input =
            std::fs::read_to_string(acceptance(&format!("{dir}/stripe_messages.txt"))).unwrap();
        assert_replay(&h, &input);
        assert_eq!(h.count("main._airbyte_raw_customers"), 3);
    }
}

#[test]
fn the_infinity_file_names_a_stream_outside_the_catalog_and_fails_clearly() {
    let h = Harness::new();
    h.write_catalog(&configured_from_plain(&read_json(&acceptance(
        "v1/data_type_number_type_test_catalog.json",
    ))));
    let run = h.write(&std::fs::read(acceptance("v1/infinity_type_test_message.txt")).unwrap());
    assert_eq!(run.code, Some(1));
    let e = run.error();
    assert_eq!(e["failure_type"], "config_error");
    assert!(e["message"].as_str().unwrap().contains("\"infinity\""));
    assert_eq!(h.count("main._airbyte_raw_nan_test"), 0);
}

#[test]
fn users_with_generation_id_metadata_and_the_malformed_line() {
    // Line 4 has a stray `}`: strict JSON rejects it. Our documented
    // behaviour: a config_error naming line 4, nothing after the last
    // echoed state written (this file has no state before it).
    let h = Harness::new();
    h.write_catalog(&read_json(&acceptance(
        "v0/users_with_generation_id_configured_catalog.json",
    )));
    let input =
        std::fs::read_to_string(acceptance("v0/users_with_generation_id_messages.txt")).unwrap();
    let run = h.write(input.as_bytes());
    assert_eq!(run.code, Some(1));
    assert!(run.error()["message"].as_str().unwrap().contains("line 4"));
    assert_eq!(h.count("main._airbyte_raw_users"), 0);

    // Without the bad line, the metadata columns are checked.
    let good: String = input
        .lines()
        .enumerate()
        .filter(|(i, _)| *i != 3)
        .map(|(_, l)| format!("{l}\n"))
        .collect();
    let h = Harness::new();
    h.write_catalog(&read_json(&acceptance(
        "v0/users_with_generation_id_configured_catalog.json",
    )));
    h.write(good.as_bytes()).assert_ok();
    let rows = h.strings(
        "SELECT _airbyte_ab_id, epoch_ms(_airbyte_emitted_at::TIMESTAMP)::VARCHAR, _airbyte_meta::VARCHAR, \
         _airbyte_generation_id::VARCHAR FROM main._airbyte_raw_users",
    );
    let exp = expected(&good);
    assert_eq!(rows.len(), exp.records.len());
    for (row, rec) in rows.iter().zip(&exp.records) {
        let id = row[0].as_deref().unwrap();
        let uuid = uuid_v4_shape(id);
        assert!(uuid, "UUID v4: {id}");
        assert_eq!(row[1].as_deref().unwrap().parse::<i64>().unwrap(), rec.3);
        assert_eq!(row[3].as_deref(), Some("10"));
        let meta: Value = serde_json::from_str(row[2].as_deref().unwrap()).unwrap();
        assert_eq!(meta["sync_id"], 100);
    }
    let with_changes: Vec<Value> = rows
        .iter()
        .map(|r| serde_json::from_str::<Value>(r[2].as_deref().unwrap()).unwrap())
        .filter(|m| m["changes"].as_array().is_some_and(|c| !c.is_empty()))
        .collect();
    assert_eq!(
        with_changes,
        vec![
            serde_json::json!({"sync_id": 100, "changes": [{"field": "name", "change": "TRUNCATED", "reason": "SOURCE_FIELD_SIZE_LIMITATION"}]})
        ]
    );
}

fn uuid_v4_shape(id: &str) -> bool {
    let b = id.as_bytes();
    id.len() == 36
        && [8, 13, 18, 23].iter().all(|&i| b[i] == b'-')
        && b[14] == b'4'
        && matches!(b[19], b'8' | b'9' | b'a' | b'b')
        && id
            .chars()
            .filter(|c| *c != '-')
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
}

/// The typing/deduping inputs, prepared the way the upstream harness does:
/// `//` comment lines dropped and `record.stream` injected (as text, so the
/// data stays byte-exact).
#[test]
fn dat_files_prepared_as_upstream() {
    let files = [
        "dat/sync1_messages.jsonl",
        "dat/sync1_messages2.jsonl",
        "dat/sync1_cursorchange_messages.jsonl",
        "dat/sync2_messages.jsonl",
        "dat/sync2_messages2.jsonl",
        "dat/sync_null_pk.jsonl",
    ];
    let h = Harness::new();
    h.write_catalog(&crate::util::catalog_of(
        &[("users_final", Some("dat_ns"))],
        "append",
    ));
    h.write(b"").assert_ok();
    let mut total = 0;
    for file in files {
        let raw = std::fs::read_to_string(acceptance(file)).unwrap();
        let prepared: String = raw
            .lines()
            .filter(|l| !l.trim_start().starts_with("//") && !l.trim().is_empty())
            .map(|l| {
                l.replacen(
                    r#""record": {"#,
                    r#""record": {"namespace": "dat_ns", "stream": "users_final", "#,
                    1,
                ) + "\n"
            })
            .collect();
        let before = h.count("dat_ns._airbyte_raw_users_final");
        // Per-file check of state echoes and of the new rows' exact text.
        let run = h.write(prepared.as_bytes());
        run.assert_ok();
        let exp = expected(&prepared);
        assert_eq!(run.states().len(), exp.states.len(), "{file}");
        let rows = h.strings(&format!(
            "SELECT _airbyte_data::VARCHAR, epoch_ms(_airbyte_emitted_at::TIMESTAMP)::VARCHAR \
             FROM dat_ns._airbyte_raw_users_final OFFSET {before}"
        ));
        let got: Vec<(String, i64)> = rows
            .into_iter()
            .map(|r| {
                (
                    r[0].clone().unwrap(),
                    r[1].clone().unwrap().parse().unwrap(),
                )
            })
            .collect();
        let want: Vec<(String, i64)> = exp.records.iter().map(|r| (r.2.clone(), r.3)).collect();
        assert_eq!(got, want, "{file}");
        total += want.len() as i64;
    }
    assert_eq!(h.count("dat_ns._airbyte_raw_users_final"), total);
}

/// A captured `source-faker read` (LOG, TRACE, ESTIMATE, RECORD and STREAM
/// states with sourceStats), replayed as the source wrote it.
#[test]
fn faker_capture_replays_with_per_stream_counts() {
    let h = Harness::new();
    h.write_catalog(&read_json(&acceptance(
        "faker/faker_configured_catalog_incremental_append.json",
    )));
    let input = std::fs::read_to_string(acceptance("faker/faker_read_count10.jsonl")).unwrap();
    let run = assert_replay(&h, &input);
    // Each STREAM state's destination count equals the source's own count.
    for s in run.states() {
        assert_eq!(
            s["state"]["destinationStats"]["recordCount"], s["state"]["sourceStats"]["recordCount"],
            "{s}"
        );
    }
}
