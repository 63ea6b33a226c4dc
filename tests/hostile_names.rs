//! Names that could make streams share the connector's objects: names that
//! normalize to nothing, streams named like its bookkeeping tables, and
//! namespace and name pairs that read alike when joined (whose CDC
//! tombstones must stay apart). Every stream keeps objects of its own.

use serde_json::json;

use crate::util::cases::{
    catalog, dedup_stream, locate, mode_harness, ns_record, pairs, pairs_of, select_all, stream,
    write, MODES,
};
use crate::util::{global_state, lines};

#[test]
fn names_that_normalize_to_nothing_still_get_tables() {
    let (ns, name) = ("\u{301}", "\u{301}\u{302}");
    for mode in MODES {
        let h = mode_harness(mode);
        h.write_catalog(&catalog(vec![stream(
            name,
            Some(ns),
            "append",
            json!({"": {"type": "string"}, "id": {"type": "integer"}}),
        )]));
        let input = lines(&[
            ns_record(ns, name, 1, r#"{"id":1,"":"x"}"#),
            ns_record(ns, name, 2, r#"{"id":2,"":"y"}"#),
            global_state(1),
        ]);
        write(&h, &input).assert_ok();
        let located = locate(&h);
        let l = &located[&(ns.to_string(), name.to_string())];
        assert_eq!(l.schema, "_", "{mode}");
        assert_eq!(h.count(&l.raw), 2, "{mode}");
        let typed = l.typed.as_ref().expect("a typed relation");
        assert_eq!(select_all(&h, typed), 2, "{mode}: {typed}");
    }
}

#[test]
fn streams_named_like_bookkeeping_objects_do_not_disturb_it() {
    const NS: &str = "_airbyte_internal";
    const NAMES: [&str; 5] = [
        "stream_tables",
        "typed_relations",
        "_airbyte_merge_latest",
        "_airbyte_merge_new",
        "deleted__main__s",
    ];
    let h = mode_harness("tables");
    h.write_catalog(&catalog(
        NAMES
            .iter()
            .map(|n| dedup_stream(n, Some(NS), json!({"id": {"type": "integer"}}), json!([])))
            .collect(),
    ));
    for sync in 1..=3 {
        let mut parts: Vec<String> = NAMES
            .iter()
            .map(|n| ns_record(NS, n, sync, &format!(r#"{{"id":{sync}}}"#)))
            .collect();
        parts.push(global_state(sync));
        write(&h, &lines(&parts)).assert_ok();
    }
    let located = locate(&h);
    for n in NAMES {
        let l = located
            .get(&(NS.to_string(), n.to_string()))
            .unwrap_or_else(|| panic!("{n}: not in the registry"));
        assert_eq!(l.schema, "__airbyte_internal", "{n}");
        assert_eq!(h.count(&l.raw), 3, "{n}");
        let typed = l.typed.as_ref().expect("a typed relation");
        assert!(typed.starts_with("\"__airbyte_internal\"."), "{n}: {typed}");
        assert_eq!(select_all(&h, typed), 3, "{n}: {typed}");
    }
}

#[test]
fn cdc_tombstones_are_per_stream_even_when_names_join_alike() {
    // ("a__b", "c") and ("a", "b__c") both read "a__b__c" when joined: a
    // tombstone kept under such a name would delete the other stream's key.
    let h = mode_harness("tables");
    let props = json!({"id": {"type": "integer"}, "updated": {"type": "integer"},
        "tag": {"type": "string"}, "_ab_cdc_deleted_at": {"type": "string"}});
    h.write_catalog(&catalog(vec![
        dedup_stream("c", Some("a__b"), props.clone(), json!(["updated"])),
        dedup_stream("b__c", Some("a"), props, json!(["updated"])),
    ]));
    let rows = |relation: &str| {
        pairs(
            &h,
            &format!("SELECT id::VARCHAR, tag FROM {relation} ORDER BY id"),
        )
    };
    let (abc, a_bc) = (r#""a__b"."c""#, r#""a"."b__c""#);

    let mut sync1 = Vec::new();
    for (ns, name) in [("a__b", "c"), ("a", "b__c")] {
        for id in [1, 2] {
            let data = format!(r#"{{"id":{id},"updated":1,"tag":"s1"}}"#);
            sync1.push(ns_record(ns, name, 1, &data));
        }
    }
    sync1.push(global_state(1));
    write(&h, &lines(&sync1)).assert_ok();
    assert_eq!(rows(abc), pairs_of(&[("1", "s1"), ("2", "s1")]));
    assert_eq!(rows(a_bc), pairs_of(&[("1", "s1"), ("2", "s1")]));

    // Sync 2: ("a__b", "c") deletes id 1.
    let delete = r#"{"id":1,"updated":2,"tag":"del","_ab_cdc_deleted_at":"2024-01-01T00:00:00Z"}"#;
    write(
        &h,
        &lines(&[ns_record("a__b", "c", 2, delete), global_state(2)]),
    )
    .assert_ok();
    assert_eq!(rows(abc), pairs_of(&[("2", "s1")]), "the delete applies");
    assert_eq!(
        rows(a_bc),
        pairs_of(&[("1", "s1"), ("2", "s1")]),
        "the other stream keeps id 1"
    );

    // Sync 3: ("a", "b__c") updates id 1 with a cursor below that delete's
    // (it ties with its own row and is later, so it wins there); ("a__b",
    // "c") gets an older id 1, which its delete still beats, and a new id 3.
    write(
        &h,
        &lines(&[
            ns_record("a__b", "c", 3, r#"{"id":1,"updated":1,"tag":"s3"}"#),
            ns_record("a__b", "c", 3, r#"{"id":3,"updated":3,"tag":"s3"}"#),
            ns_record("a", "b__c", 3, r#"{"id":1,"updated":1,"tag":"s3"}"#),
            global_state(3),
        ]),
    )
    .assert_ok();
    assert_eq!(rows(abc), pairs_of(&[("2", "s1"), ("3", "s3")]));
    assert_eq!(rows(a_bc), pairs_of(&[("1", "s3"), ("2", "s1")]));
}

/// Property names a merge's SQL could read as its own table aliases: every
/// one-letter name (a JSON column `o` once turned `o.id` into a field of
/// that column) and the aliases' own names, as JSON columns beside the key
/// and the cursor. Sync after sync (new keys, a newer row of a key, two rows
/// of one key in one sync), a deduplicated table keeps one row per key, the
/// same rows as the view.
#[test]
fn property_names_never_capture_a_merge() {
    let mut properties = json!({"id": {"type": "string"}, "seq": {"type": "integer"}});
    let mut names: Vec<String> = ('a'..='z').map(String::from).collect();
    names.extend(["incoming", "stored", "_airbyte_incoming", "_airbyte_stored"].map(String::from));
    let kinds = [
        json!({"type": "object"}),
        json!({"type": "array"}),
        json!({}),
    ];
    for (i, name) in names.iter().filter(|n| *n != "id").enumerate() {
        properties[name] = kinds[i % kinds.len()].clone();
    }
    let data = |id: &str, seq: i64| {
        let mut d = json!({"id": id, "seq": seq});
        for (i, name) in names.iter().enumerate() {
            d[name] = match i % 3 {
                0 => json!({"id": id, "seq": seq}),
                1 => json!([id, seq]),
                _ => json!(id),
            };
        }
        d.to_string()
    };
    let syncs: [&[(&str, i64)]; 3] = [
        &[("a", 1), ("b", 1)],
        &[("a", 2)],
        &[("b", 5), ("b", 3), ("c", 1)],
    ];
    let cat = catalog(vec![dedup_stream("s", None, properties, json!(["seq"]))]);
    for mode in MODES {
        let h = mode_harness(mode);
        h.write_catalog(&cat);
        for (n, records) in syncs.iter().enumerate() {
            let mut input: Vec<String> = records
                .iter()
                .map(|(id, seq)| crate::util::record("s", 1, &data(id, *seq)))
                .collect();
            input.push(global_state(n as i64));
            write(&h, &lines(&input)).assert_ok();
        }
        let rows = pairs(&h, "SELECT id, seq::VARCHAR FROM main.s ORDER BY id");
        assert_eq!(
            rows,
            pairs_of(&[("a", "2"), ("b", "5"), ("c", "1")]),
            "{mode}"
        );
    }
}
