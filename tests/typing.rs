//! Typed relations, value by value: Airbyte's acceptance files and a few
//! hand-made hostile cases are synced through the real binary with
//! `typed_output` `views` and then `tables`, and every typed cell is compared
//! with the value written out in the test. Column types are read from
//! `information_schema`, and each row's `_airbyte_meta` must be the raw row's
//! metadata plus exactly the expected typecast changes.

use serde_json::{json, Value};

use crate::util::cases::MODES;
use crate::util::{acceptance, configured_from_plain, read_json, Harness, Rng};

/// One typed cell as read back from DuckDB.
#[derive(Debug, Clone)]
enum Cell {
    Null,
    /// VARCHAR.
    Str(String),
    /// BIGINT.
    Int(i64),
    /// DOUBLE.
    Num(f64),
    /// BOOLEAN.
    Bool(bool),
    /// JSON, parsed.
    Json(Value),
    /// DATE, TIME, TIMESTAMP and their time zone variants, cast to VARCHAR
    /// (no ICU in the reader, so zoned values render in UTC).
    Temporal(String),
}

impl PartialEq for Cell {
    fn eq(&self, other: &Cell) -> bool {
        use Cell::*;
        match (self, other) {
            (Null, Null) => true,
            (Str(a), Str(b)) | (Temporal(a), Temporal(b)) => a == b,
            (Int(a), Int(b)) => a == b,
            // Bit for bit, except that every NaN is the same value here.
            (Num(a), Num(b)) => a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
            (Bool(a), Bool(b)) => a == b,
            (Json(a), Json(b)) => a == b,
            _ => false,
        }
    }
}

fn s(v: &str) -> Cell {
    Cell::Str(v.to_string())
}

fn i(v: i64) -> Cell {
    Cell::Int(v)
}

fn n(v: f64) -> Cell {
    Cell::Num(v)
}

fn b(v: bool) -> Cell {
    Cell::Bool(v)
}

fn j(v: Value) -> Cell {
    Cell::Json(v)
}

fn t(v: &str) -> Cell {
    Cell::Temporal(v.to_string())
}

use Cell::Null;

/// An expected row of a typed relation: the property cells and the
/// properties whose value the typing nulled (in column order).
type Row<'a> = (Vec<Cell>, Vec<&'a str>);

/// Rows without typecast errors.
fn clean(rows: Vec<Vec<Cell>>) -> Vec<Row<'static>> {
    rows.into_iter().map(|r| (r, Vec::new())).collect()
}

fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn lit(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A catalog file as a configured catalog (plain ones the DAT way).
fn catalog(rel: &str) -> Value {
    let c = read_json(&acceptance(rel));
    if c["streams"][0].get("stream").is_some() {
        c
    } else {
        configured_from_plain(&c)
    }
}

fn input(rel: &str) -> String {
    std::fs::read_to_string(acceptance(rel)).unwrap()
}

/// A fresh database synced once with `typed_output` = `mode`.
fn sync(mode: &str, catalog: &Value, input: &str) -> Harness {
    let h = Harness::new();
    h.write_config(json!({
        "destination_path": h.db_path().to_str().unwrap(),
        "typed_output": mode,
    }));
    h.write_catalog(catalog);
    h.write(input.as_bytes()).assert_ok();
    h
}

/// The stream names of a configured catalog, sorted.
fn stream_names(catalog: &Value) -> Vec<String> {
    let mut names: Vec<String> = catalog["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stream"]["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

/// `(column, type)` of a relation in `main`, in column order.
fn column_types(h: &Harness, relation: &str) -> Vec<(String, String)> {
    h.strings(&format!(
        "SELECT column_name, data_type FROM information_schema.columns \
         WHERE table_schema = 'main' AND table_name = {} ORDER BY ordinal_position",
        lit(relation)
    ))
    .into_iter()
    .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap()))
    .collect()
}

/// The typed relation `main.<relation>` is a view or a table as `mode`
/// says, with the four metadata columns then `columns` (name, DuckDB type).
fn assert_relation_shape(
    h: &Harness,
    mode: &str,
    relation: &str,
    columns: &[(&str, &str)],
    ctx: &str,
) {
    let kind = if mode == "views" {
        "VIEW"
    } else {
        "BASE TABLE"
    };
    assert_eq!(
        h.strings(&format!(
            "SELECT table_type FROM information_schema.tables \
             WHERE table_schema = 'main' AND table_name = {}",
            lit(relation)
        )),
        vec![vec![Some(kind.to_string())]],
        "{ctx}: the typed relation is a {kind}"
    );

    let want_types: Vec<(String, String)> = [
        ("_airbyte_ab_id", "VARCHAR"),
        ("_airbyte_emitted_at", "TIMESTAMP WITH TIME ZONE"),
        ("_airbyte_meta", "JSON"),
        ("_airbyte_generation_id", "BIGINT"),
    ]
    .iter()
    .chain(columns)
    .map(|(c, ty)| (c.to_string(), ty.to_string()))
    .collect();
    assert_eq!(column_types(h, relation), want_types, "{ctx}: column types");
}

/// Checks the typed relation `main.<relation>` over `main._airbyte_raw_<relation>`:
/// a view or a table as `mode` says; the four metadata columns then
/// `columns` (name, DuckDB type); one typed row per raw row, in arrival
/// order, with the expected cells; and each row's `_airbyte_meta` equal to
/// the raw row's with one `DESTINATION_TYPECAST_ERROR` change appended per
/// nulled property.
fn assert_typed(h: &Harness, mode: &str, relation: &str, columns: &[(&str, &str)], rows: &[Row]) {
    let ctx = format!("{relation} (typed_output {mode})");
    let raw = format!("_airbyte_raw_{relation}");
    assert_relation_shape(h, mode, relation, columns, &ctx);

    let select: Vec<String> = columns
        .iter()
        .map(|(c, ty)| match *ty {
            "BIGINT" | "DOUBLE" | "BOOLEAN" | "VARCHAR" => format!("t.{}", ident(c)),
            _ => format!("t.{}::VARCHAR", ident(c)),
        })
        .collect();
    let sql = format!(
        "SELECT {}t._airbyte_meta::VARCHAR, r._airbyte_meta::VARCHAR, \
         t._airbyte_emitted_at = r._airbyte_emitted_at \
         AND t._airbyte_generation_id IS NOT DISTINCT FROM r._airbyte_generation_id \
         FROM main.{} t JOIN main.{} r ON t._airbyte_ab_id = r._airbyte_ab_id ORDER BY r.rowid",
        select.iter().map(|c| format!("{c}, ")).collect::<String>(),
        ident(relation),
        ident(&raw)
    );
    let conn = h.db();
    let total = |rel: &str| -> usize {
        conn.query_row(
            &format!("SELECT count(*) FROM main.{}", ident(rel)),
            [],
            |r| r.get::<_, i64>(0),
        )
        .unwrap() as usize
    };
    assert_eq!(total(&raw), rows.len(), "{ctx}: raw rows");
    assert_eq!(total(relation), rows.len(), "{ctx}: typed rows");
    let mut stmt = conn.prepare(&sql).unwrap();
    let mut got = stmt.query([]).unwrap();
    let mut k = 0;
    while let Some(row) = got.next().unwrap() {
        assert!(k < rows.len(), "{ctx}: more joined rows than expected");
        let (want_cells, want_errors) = &rows[k];
        assert_eq!(want_cells.len(), columns.len(), "{ctx}: test table width");
        let cells: Vec<Cell> = columns
            .iter()
            .enumerate()
            .map(|(c, (_, ty))| read_cell(row, c, ty))
            .collect();
        assert_eq!(&cells, want_cells, "{ctx}: row {k}");
        let m = columns.len();
        let typed_meta: Value = serde_json::from_str(&row.get::<_, String>(m).unwrap()).unwrap();
        let raw_meta: Value = serde_json::from_str(&row.get::<_, String>(m + 1).unwrap()).unwrap();
        assert!(
            row.get::<_, bool>(m + 2).unwrap(),
            "{ctx}: row {k} keeps emitted_at and generation_id"
        );
        let mut want_meta = raw_meta.clone();
        if !want_errors.is_empty() {
            let mut changes = raw_meta["changes"].as_array().cloned().unwrap_or_default();
            changes.extend(want_errors.iter().map(
                |f| json!({"field": f, "change": "NULLED", "reason": "DESTINATION_TYPECAST_ERROR"}),
            ));
            want_meta["changes"] = Value::Array(changes);
        }
        assert_eq!(typed_meta, want_meta, "{ctx}: row {k} _airbyte_meta");
        k += 1;
    }
    assert_eq!(k, rows.len(), "{ctx}: every typed row matches its raw row");
    drop(stmt);
    drop(conn);
    assert_readers_agree_on(h, relation, columns);
}

/// The same rows of `main.<relation>` through DuckDB 1.4, 1.5 and 2.0: a
/// view's typing does not depend on the reader's version.
fn assert_readers_agree_on(h: &Harness, relation: &str, columns: &[(&str, &str)]) {
    let cells: Vec<String> = [
        "_airbyte_ab_id",
        "_airbyte_emitted_at",
        "_airbyte_generation_id",
    ]
    .iter()
    .map(|c| format!("{c}::VARCHAR"))
    .chain(["json(_airbyte_meta)::VARCHAR".to_string()])
    .chain(columns.iter().map(|(c, ty)| match *ty {
        "JSON" => format!("json({})::VARCHAR", ident(c)),
        _ => format!("{}::VARCHAR", ident(c)),
    }))
    .collect();
    crate::util::assert_readers_agree(
        h,
        &[format!(
            "SELECT {} FROM main.{} ORDER BY _airbyte_ab_id",
            cells.join(", "),
            ident(relation)
        )],
    );
}

fn read_cell(row: &duckdb::Row<'_>, c: usize, ty: &str) -> Cell {
    let text = |c| row.get::<_, Option<String>>(c).unwrap();
    let cell = match ty {
        "BIGINT" => row.get::<_, Option<i64>>(c).unwrap().map(Cell::Int),
        "DOUBLE" => row.get::<_, Option<f64>>(c).unwrap().map(Cell::Num),
        "BOOLEAN" => row.get::<_, Option<bool>>(c).unwrap().map(Cell::Bool),
        "VARCHAR" => text(c).map(Cell::Str),
        "JSON" => text(c).map(|v| {
            Cell::Json(serde_json::from_str(&v).unwrap_or_else(|e| panic!("JSON cell {v:?}: {e}")))
        }),
        _ => text(c).map(Cell::Temporal),
    };
    cell.unwrap_or(Null)
}

/// A single-column (`data`) stream: name, DuckDB type, cells in arrival order.
type DataStream = (&'static str, &'static str, Vec<Cell>);

/// Syncs `catalog_file` + `messages_file` in both modes and checks every
/// stream of the catalog against `want` (which must name them all).
fn check_data_streams(catalog_file: &str, messages_file: &str, want: &[DataStream]) {
    let cat = catalog(catalog_file);
    let mut named: Vec<String> = want.iter().map(|w| w.0.to_string()).collect();
    named.sort();
    assert_eq!(stream_names(&cat), named, "the test covers every stream");
    let messages = input(messages_file);
    for mode in MODES {
        let h = sync(mode, &cat, &messages);
        for (stream, ty, cells) in want {
            let rows = clean(cells.iter().map(|c| vec![c.clone()]).collect());
            assert_typed(&h, mode, stream, &[("data", ty)], &rows);
        }
    }
}

const BIG_NUMBER_TEXT: &str = "100000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000.1234";

/// v0 and legacy `data_type_basic`: the same records, typed by format and
/// `airbyte_type`.
fn basic_v0() -> Vec<DataStream> {
    vec![
        (
            "string_test_1",
            "VARCHAR",
            vec![
                s("foo bar"),
                s(""),
                s("some random special characters: ࠈൡሗ"),
            ],
        ),
        (
            "date_test_1",
            "DATE",
            vec![t("2021-01-23"), t("1504-02-29"), t("9999-12-23")],
        ),
        (
            // +05:00, so five hours earlier in UTC.
            "datetime_test_1",
            "TIMESTAMP WITH TIME ZONE",
            vec![
                t("2022-11-21 20:23:45+00"),
                t("1504-02-28 20:23:45+00"),
                t("9999-12-20 20:23:45+00"),
            ],
        ),
        (
            "datetime_test_2",
            "TIMESTAMP",
            vec![
                t("2022-11-22 01:23:45"),
                t("1504-02-29 01:23:45"),
                t("9999-12-21 01:23:45"),
            ],
        ),
        (
            "number_test_1",
            "DOUBLE",
            vec![n(56.78), n(0.0), n(-12345.678)],
        ),
        (
            // Legacy big numbers stay exact text.
            "bignumber_test_1",
            "VARCHAR",
            vec![s(BIG_NUMBER_TEXT), s("0"), s("-12345.678")],
        ),
        ("integer_test_1", "BIGINT", vec![i(42), i(0), i(-12345)]),
        ("boolean_test_1", "BOOLEAN", vec![b(true)]),
    ]
}

#[test]
fn data_type_basic_v0() {
    check_data_streams(
        "v0/data_type_basic_test_catalog.json",
        "v0/data_type_basic_test_messages.txt",
        &basic_v0(),
    );
}

#[test]
fn data_type_basic_legacy() {
    check_data_streams(
        "legacy/data_type_basic_test_catalog.json",
        "legacy/data_type_basic_test_messages.txt",
        &basic_v0(),
    );
}

#[test]
fn data_type_basic_v1_well_known_types_from_strings() {
    // v1 sends numbers and integers as strings; WellKnownTypes `$ref`s.
    check_data_streams(
        "v1/data_type_basic_test_catalog.json",
        "v1/data_type_basic_test_messages.txt",
        &[
            (
                "string_test_1",
                "VARCHAR",
                vec![
                    s("foo bar"),
                    s(""),
                    s("some random special characters: ࠈൡሗ"),
                ],
            ),
            (
                "number_test_1",
                "DOUBLE",
                vec![n(56.78), n(0.0), n(-12345.678)],
            ),
            ("integer_test_1", "BIGINT", vec![i(42), i(0), i(-12345)]),
            ("boolean_test_1", "BOOLEAN", vec![b(true)]),
            ("binary_test_1", "VARCHAR", vec![s("dGVzdA==")]),
        ],
    );
}

#[test]
fn number_data_type_v0_v1_and_legacy() {
    // v1 sends the numbers as strings; the typed values are the same.
    let want: Vec<DataStream> = vec![
        ("int_test", "BIGINT", vec![i(42), i(0), i(-12345)]),
        (
            "float_test",
            "DOUBLE",
            vec![n(56.78), n(0.0), n(-12345.678)],
        ),
        (
            // 10000000000000000000000.1234 is 1e22 as a double.
            "default_number_test",
            "DOUBLE",
            vec![n(1e22), n(0.0), n(-12345.678)],
        ),
    ];
    for dir in ["v0", "legacy", "v1"] {
        check_data_streams(
            &format!("{dir}/number_data_type_test_catalog.json"),
            &format!("{dir}/number_data_type_test_messages.txt"),
            &want,
        );
    }
}

#[test]
fn number_data_type_arrays_stay_json_equal_to_the_input() {
    for dir in ["v0", "v1", "legacy"] {
        let cat = catalog(&format!("{dir}/number_data_type_array_test_catalog.json"));
        let messages = input(&format!("{dir}/number_data_type_array_test_messages.txt"));
        let data: Value = serde_json::from_str::<Value>(messages.lines().next().unwrap()).unwrap()
            ["record"]["data"]
            .clone();
        let want = clean(vec![vec![
            j(data["array_float"].clone()),
            j(data["array_integer"].clone()),
            j(data["array_number"].clone()),
        ]]);
        // The files' values, so the comparison above is not vacuous.
        assert_eq!(data["array_integer"].as_array().unwrap().len(), 3);
        for mode in MODES {
            let h = sync(mode, &cat, &messages);
            assert_typed(
                &h,
                mode,
                "array_test_1",
                &[
                    ("array_float", "JSON"),
                    ("array_integer", "JSON"),
                    ("array_number", "JSON"),
                ],
                &want,
            );
            // The raw row keeps the exact digits the JSON column may not.
            let raw =
                h.strings("SELECT _airbyte_data::VARCHAR FROM main._airbyte_raw_array_test_1");
            let raw: &str = raw[0][0].as_deref().unwrap();
            assert!(
                raw.contains("1000000000000000000000000000000000000000000000000000.1234"),
                "{dir} {mode}: {raw}"
            );
        }
    }
}

/// One-stream catalog with the given properties.
fn hand_catalog(stream: &str, properties: Value) -> Value {
    configured_from_plain(&json!({"streams": [{
        "name": stream,
        "json_schema": {"type": "object", "properties": properties},
        "supported_sync_modes": ["full_refresh"],
    }]}))
}

/// Records of `stream` with these exact `data` texts, then a state.
fn hand_input(stream: &str, datas: &[&str]) -> String {
    let mut out: String = datas
        .iter()
        .enumerate()
        .map(|(k, d)| {
            format!(
                "{{\"type\":\"RECORD\",\"record\":{{\"stream\":\"{stream}\",\"emitted_at\":{},\"data\":{d}}}}}\n",
                1_700_000_000_000i64 + k as i64
            )
        })
        .collect();
    out.push_str(
        "{\"type\":\"STATE\",\"state\":{\"type\":\"GLOBAL\",\"global\":{\"shared_state\":{\"n\":1}}}}\n",
    );
    out
}

#[test]
fn integers_beyond_bigint_are_nulled_with_a_change_and_kept_exact_in_raw() {
    let cat = hand_catalog(
        "big",
        json!({
            "n": {"type": "integer"},
            "s": {"type": "string"},
            "x": {"type": "number"},
        }),
    );
    let rows: Vec<(&str, Vec<Cell>, Vec<&str>)> = vec![
        (
            r#"{"n":9223372036854775807,"s":12345678901234567890,"x":1.7976931348623157e308}"#,
            vec![i(i64::MAX), s("12345678901234567890"), n(f64::MAX)],
            vec![],
        ),
        (
            r#"{"n":-9223372036854775808,"s":1.5,"x":-0.0}"#,
            vec![i(i64::MIN), s("1.5"), n(-0.0)],
            vec![],
        ),
        (
            r#"{"n":9223372036854775808}"#,
            vec![Null, Null, Null],
            vec!["n"],
        ),
        (
            r#"{"n":-9223372036854775809}"#,
            vec![Null, Null, Null],
            vec!["n"],
        ),
        (
            r#"{"n":123456789012345678901234567890,"x":123456789012345678901234567890}"#,
            vec![Null, Null, n(1.2345678901234568e29)],
            vec!["n"],
        ),
        (
            r#"{"n":"9223372036854775808"}"#,
            vec![Null, Null, Null],
            vec!["n"],
        ),
        (
            r#"{"n":"-42","s":"-42","x":"1e3"}"#,
            vec![i(-42), s("-42"), n(1000.0)],
            vec![],
        ),
        (
            r#"{"n":100.0,"s":true}"#,
            vec![i(100), s("true"), Null],
            vec![],
        ),
        (
            r#"{"n":1.5,"x":"abc"}"#,
            vec![Null, Null, Null],
            vec!["n", "x"],
        ),
        (
            r#"{"n":"1.5","x":true}"#,
            vec![Null, Null, Null],
            vec!["n", "x"],
        ),
        (
            r#"{"n":null,"s":null,"x":null}"#,
            vec![Null, Null, Null],
            vec![],
        ),
        (
            r#"{"n":true,"s":{"k":[1,"two"]},"x":[1]}"#,
            vec![Null, s(r#"{"k":[1,"two"]}"#), Null],
            vec!["n", "x"],
        ),
    ];
    let datas: Vec<&str> = rows.iter().map(|r| r.0).collect();
    let messages = hand_input("big", &datas);
    let want: Vec<Row> = rows
        .iter()
        .map(|(_, cells, errors)| (cells.clone(), errors.clone()))
        .collect();
    for mode in MODES {
        let h = sync(mode, &cat, &messages);
        assert_typed(
            &h,
            mode,
            "big",
            &[("n", "BIGINT"), ("s", "VARCHAR"), ("x", "DOUBLE")],
            &want,
        );
        let raw: Vec<String> = h
            .strings("SELECT _airbyte_data::VARCHAR FROM main._airbyte_raw_big ORDER BY rowid")
            .into_iter()
            .map(|r| r[0].clone().unwrap())
            .collect();
        assert_eq!(raw, datas, "{mode}: raw data is the exact input text");
    }
}

#[test]
fn every_time_type() {
    let cat = catalog("v0/every_time_type_configured_catalog.json");
    let messages = input("v0/every_time_type_messages.txt");
    let columns = [
        ("date", "DATE"),
        ("datetime_unspecified", "TIMESTAMP WITH TIME ZONE"),
        ("datetime_with_timezone", "TIMESTAMP WITH TIME ZONE"),
        ("datetime_without_timezone", "TIMESTAMP"),
        ("time_unspecified", "TIME WITH TIME ZONE"),
        ("time_with_timezone", "TIME WITH TIME ZONE"),
        ("time_without_timezone", "TIME"),
    ];
    let want = clean(vec![
        vec![
            t("2024-07-25"),
            t("2024-07-25 10:30:00+00"),
            t("2024-07-25 08:30:00+00"),
            t("2024-07-25 10:30:00"),
            t("10:30:00+00"),
            t("10:30:00+02"),
            t("10:30:00"),
        ],
        vec![
            t("2024-07-26"),
            t("2024-07-26 15:45:30+00"),
            t("2024-07-26 20:45:30+00"),
            t("2024-07-26 15:45:30"),
            t("15:45:30+00"),
            t("15:45:30-05"),
            t("15:45:30"),
        ],
        vec![
            t("2024-07-27"),
            t("2024-07-27 20:00:00+00"),
            t("2024-07-27 20:00:00+00"),
            t("2024-07-27 20:00:00"),
            t("20:00:00+00"),
            t("20:00:00+00"),
            t("20:00:00"),
        ],
    ]);
    for mode in MODES {
        let h = sync(mode, &cat, &messages);
        assert_typed(&h, mode, "every_time_type_test_1", &columns, &want);
    }
}

#[test]
fn date_times_without_an_offset_are_utc() {
    let cat = hand_catalog(
        "times",
        json!({
            "ts": {"type": "string", "format": "date-time"},
            "tstz": {"type": "string", "format": "date-time", "airbyte_type": "timestamp_with_timezone"},
            "tm": {"type": "string", "format": "time", "airbyte_type": "time_with_timezone"},
        }),
    );
    let datas = [
        r#"{"ts":"2024-07-25T10:30:00","tstz":"2024-07-25 10:30:00.123456","tm":"10:30:00"}"#,
        r#"{"ts":"2024-07-25T10:30:00+05:30","tstz":"2024-07-25T10:30:00-0130","tm":"10:30:00.5+05:30"}"#,
        r#"{"ts":"2024-07-25","tstz":"2024-07-25T23:30:00-01:00","tm":"23:59:59-01:00"}"#,
        r#"{"ts":"not a time","tstz":1721903400,"tm":"25:00:00"}"#,
    ];
    // Columns tm, ts, tstz.
    let want: Vec<Row> = vec![
        (
            vec![
                t("10:30:00+00"),
                t("2024-07-25 10:30:00+00"),
                t("2024-07-25 10:30:00.123456+00"),
            ],
            vec![],
        ),
        (
            vec![
                t("10:30:00.5+05:30"),
                t("2024-07-25 05:00:00+00"),
                t("2024-07-25 12:00:00+00"),
            ],
            vec![],
        ),
        (
            vec![
                t("23:59:59-01"),
                t("2024-07-25 00:00:00+00"),
                t("2024-07-26 00:30:00+00"),
            ],
            vec![],
        ),
        (vec![Null, Null, Null], vec!["tm", "ts", "tstz"]),
    ];
    for mode in MODES {
        let h = sync(mode, &cat, &hand_input("times", &datas));
        assert_typed(
            &h,
            mode,
            "times",
            &[
                ("tm", "TIME WITH TIME ZONE"),
                ("ts", "TIMESTAMP WITH TIME ZONE"),
                ("tstz", "TIMESTAMP WITH TIME ZONE"),
            ],
            &want,
        );
    }
}

#[test]
fn problematic_types_keep_their_json() {
    let cat = catalog("v0/problematic_types_configured_catalog.json");
    let messages = input("v0/problematic_types_messages_in.txt");
    // Only `type: string` (alone or with null) is typed as text; objects,
    // arrays, unions and null-only types are JSON.
    let columns = [
        ("array_of_union_integer_and_schemaless_array", "JSON"),
        ("combined_nulls", "JSON"),
        ("combined_type", "JSON"),
        ("combined_with_null", "VARCHAR"),
        ("compact_union", "JSON"),
        ("empty_object", "JSON"),
        ("mixed_array_integer_and_schemaless_object", "JSON"),
        ("object_with_null_properties", "JSON"),
        ("schemaless_array", "JSON"),
        ("schemaless_object", "JSON"),
        ("schematized_object", "JSON"),
        ("union_of_objects_with_properties_contradicting", "JSON"),
        ("union_of_objects_with_properties_identical", "JSON"),
        ("union_of_objects_with_properties_nonoverlapping", "JSON"),
        ("union_of_objects_with_properties_overlapping", "JSON"),
        ("union_type", "JSON"),
        ("union_with_null", "VARCHAR"),
    ];
    let mut props: Vec<&String> = cat["streams"][0]["stream"]["json_schema"]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    props.sort();
    assert_eq!(
        props,
        columns.iter().map(|c| c.0).collect::<Vec<_>>(),
        "the test covers every property"
    );
    let records: Vec<Value> = messages
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|m| m["type"] == "RECORD")
        .map(|m| m["record"]["data"].clone())
        .collect();
    assert_eq!(records.len(), 3);
    // Each cell is the value as sent (SQL NULL for JSON null or a missing
    // property), as JSON or, for the string columns, as its text.
    let want = clean(
        records
            .iter()
            .map(|data| {
                columns
                    .iter()
                    .map(|(c, ty)| match (&data[*c], *ty) {
                        (Value::Null, _) => Null,
                        (Value::String(text), "VARCHAR") => s(text),
                        (v, "JSON") => j(v.clone()),
                        (v, _) => panic!("{c}: {v} in a {ty} column"),
                    })
                    .collect()
            })
            .collect(),
    );
    // Spot checks, so an empty expectation cannot pass.
    assert_eq!(want[1].0[2], j(json!(20)));
    assert_eq!(want[0].0[15], j(json!(10)));
    assert_eq!(want[1].0[15], j(json!("string2")));
    assert_eq!(want[2].0[11], Null, "missing in the third record");
    for mode in MODES {
        let h = sync(mode, &cat, &messages);
        assert_typed(&h, mode, "problematic_types", &columns, &want);
    }
}

#[test]
fn nan_and_infinity_strings_in_number_columns() {
    // Upstream pairs nan_type_test_message.txt with both catalogs.
    let nan = input("v1/nan_type_test_message.txt");
    for mode in MODES {
        let h = sync(
            mode,
            &catalog("v1/data_type_number_type_test_catalog.json"),
            &nan,
        );
        assert_typed(
            &h,
            mode,
            "nan_test",
            &[("data", "DOUBLE")],
            &clean(vec![vec![n(f64::NAN)]]),
        );
        // NaN is not an integer.
        let h = sync(
            mode,
            &catalog("v1/data_type_integer_type_test_catalog.json"),
            &nan,
        );
        assert_typed(
            &h,
            mode,
            "nan_test",
            &[("data", "BIGINT")],
            &[(vec![Null], vec!["data"])],
        );
    }
    // The infinity file names a stream `infinity`, which no upstream catalog
    // has: the number catalog renamed.
    let mut cat = read_json(&acceptance("v1/data_type_number_type_test_catalog.json"));
    cat["streams"][0]["name"] = json!("infinity");
    let cat = configured_from_plain(&cat);
    let messages = input("v1/infinity_type_test_message.txt");
    for mode in MODES {
        let h = sync(mode, &cat, &messages);
        assert_typed(
            &h,
            mode,
            "infinity",
            &[("data", "DOUBLE")],
            &clean(vec![vec![n(f64::INFINITY)], vec![n(f64::NEG_INFINITY)]]),
        );
    }
    // Both spellings in one stream, and the integer column refuses them.
    let cat = hand_catalog(
        "special",
        json!({"x": {"type": "number"}, "k": {"type": "integer"}}),
    );
    let datas = [
        r#"{"x":"NaN","k":"NaN"}"#,
        r#"{"x":"Infinity","k":"Infinity"}"#,
        r#"{"x":"-Infinity","k":"-Infinity"}"#,
    ];
    let want: Vec<Row> = vec![
        (vec![Null, n(f64::NAN)], vec!["k"]),
        (vec![Null, n(f64::INFINITY)], vec!["k"]),
        (vec![Null, n(f64::NEG_INFINITY)], vec!["k"]),
    ];
    for mode in MODES {
        let h = sync(mode, &cat, &hand_input("special", &datas));
        assert_typed(
            &h,
            mode,
            "special",
            &[("k", "BIGINT"), ("x", "DOUBLE")],
            &want,
        );
    }
}

#[test]
fn hostile_property_names_and_values() {
    let cat = hand_catalog(
        "hostile",
        json!({
            "it's \"quoted\"": {"type": "string"},
            "a/b~c": {"type": "string"},
            "with space": {"type": "string"},
            "ünïcödé ☃": {"type": "string"},
            "": {"type": "string"},
            "Id": {"type": "integer"},
            "id": {"type": "integer"},
            "id_1": {"type": "integer"},
            "_airbyte_ab_id": {"type": "string"},
            "_AIRBYTE_META": {"type": "string"},
            "int": {"type": "integer"},
            "flag": {"type": "boolean"},
            "day": {"type": "string", "format": "date"},
            "nul\u{0}name": {"type": "string"},
        }),
    );
    let mut cat = cat;
    cat["streams"][0]["destination_sync_mode"] = json!("append");
    cat["streams"][0]["minimum_generation_id"] = json!(0);
    // Column order: the properties sorted by name (byte order).
    let columns = [
        ("_", "VARCHAR"),
        ("Id", "BIGINT"),
        ("__AIRBYTE_META", "VARCHAR"),
        ("__airbyte_ab_id", "VARCHAR"),
        ("a/b~c", "VARCHAR"),
        ("day", "DATE"),
        ("flag", "BOOLEAN"),
        ("id_1", "BIGINT"),
        ("id_1_1", "BIGINT"),
        ("int", "BIGINT"),
        ("it's \"quoted\"", "VARCHAR"),
        ("with space", "VARCHAR"),
        ("ünïcödé ☃", "VARCHAR"),
    ];
    let good = json!({
        "": "empty", "Id": 1, "id": 2, "id_1": 3, "_airbyte_ab_id": "mine", "_AIRBYTE_META": "m",
        "a/b~c": "slash", "day": "2024-02-29", "flag": true, "int": 7,
        "it's \"quoted\"": "q'\"", "with space": "sp", "ünïcödé ☃": "snow ☃", "nul\u{0}name": "x",
    });
    let good = good.to_string();
    let bad = r#"{"int":"abc","Id":1.5,"flag":{"a":1},"day":"not a date","id":"2","with space":{"k":[1,"two"]},"id_1":-0}"#;
    let more = r#"{"int":1.5,"flag":"false","day":20240229,"a/b~c":false}"#;
    let input_text = hand_input("hostile", &[&good, bad, more]);
    // The record's own changes come first in the typed row's meta.
    let with_changes = input_text.lines().nth(2).unwrap().replace(
        "\"data\":",
        r#""meta":{"changes":[{"field":"day","change":"TRUNCATED","reason":"SOURCE_FIELD_SIZE_LIMITATION"}]},"data":"#,
    );
    let input_text = input_text
        .lines()
        .enumerate()
        .map(|(k, l)| if k == 2 { with_changes.clone() } else { l.to_string() } + "\n")
        .collect::<String>();
    assert!(input_text.contains("SOURCE_FIELD_SIZE_LIMITATION"));
    let want: Vec<Row> = vec![
        (
            vec![
                s("empty"),
                i(1),
                s("m"),
                s("mine"),
                s("slash"),
                t("2024-02-29"),
                b(true),
                i(2),
                i(3),
                i(7),
                s("q'\""),
                s("sp"),
                s("snow ☃"),
            ],
            vec![],
        ),
        (
            vec![
                Null,
                Null,
                Null,
                Null,
                Null,
                Null,
                Null,
                i(2),
                i(0),
                Null,
                Null,
                s(r#"{"k":[1,"two"]}"#),
                Null,
            ],
            vec!["Id", "day", "flag", "int"],
        ),
        (
            vec![
                Null,
                Null,
                Null,
                Null,
                s("false"),
                Null,
                b(false),
                Null,
                Null,
                Null,
                Null,
                Null,
                Null,
            ],
            vec!["day", "int"],
        ),
    ];
    for mode in MODES {
        let h = sync(mode, &cat, &input_text);
        assert_typed(&h, mode, "hostile", &columns, &want);
        // A second sync appends: the same rows again (a table takes the
        // new raw rows incrementally).
        h.write(input_text.as_bytes()).assert_ok();
        let twice: Vec<Row> = want.iter().chain(&want).cloned().collect();
        assert_typed(&h, mode, "hostile", &columns, &twice);
    }
}

#[test]
fn suffixes_separators_and_overflow() {
    // Found by review: `Z`/`z`, `UTC`, `GMT` suffixes and a lowercase `t`
    // are offsets and separators DuckDB's own parser does not all take;
    // digit separators and numbers beyond DOUBLE are not numbers here.
    let cat = hand_catalog(
        "edges",
        json!({
            "tm": {"type": "string", "format": "time"},
            "tstz": {"type": "string", "format": "date-time"},
            "n": {"type": "number"},
            "k": {"type": "integer"},
        }),
    );
    let datas = [
        r#"{"tm":"10:30:00Z","tstz":"2024-07-25t10:30:00z","n":"1e3","k":9000000000000000000.0}"#,
        r#"{"tm":"10:30:00z","tstz":"2024-07-25 10:30:00 GMT","n":1e400,"k":"1_000"}"#,
        r#"{"tm":"10:30:00 UTC","tstz":"2024-07-25T10:30:00 UTC","n":"1_000.5","k":-9223372036854775808}"#,
    ];
    // Columns k, n, tm, tstz.
    let want: Vec<Row> = vec![
        (
            vec![
                i(9_000_000_000_000_000_000),
                n(1000.0),
                t("10:30:00+00"),
                t("2024-07-25 10:30:00+00"),
            ],
            vec![],
        ),
        (
            vec![Null, Null, t("10:30:00+00"), t("2024-07-25 10:30:00+00")],
            vec!["k", "n"],
        ),
        (
            vec![
                i(i64::MIN),
                Null,
                t("10:30:00+00"),
                t("2024-07-25 10:30:00+00"),
            ],
            vec!["n"],
        ),
    ];
    for mode in MODES {
        let h = sync(mode, &cat, &hand_input("edges", &datas));
        assert_typed(
            &h,
            mode,
            "edges",
            &[
                ("k", "BIGINT"),
                ("n", "DOUBLE"),
                ("tm", "TIME WITH TIME ZONE"),
                ("tstz", "TIMESTAMP WITH TIME ZONE"),
            ],
            &want,
        );
    }
}

/// The accepted text shapes, row by row (see [`every_accepted_text_shape`]):
/// a JSON value, then the cell of each of [`SHAPE_COLUMNS`] as text, or
/// `-` for NULL with a change. The column decides how the text reads:
/// `i` an integer, `x` a number, the others a temporal value as printed.
#[rustfmt::skip]
const SHAPES: &[(&str, [&str; 7])] = &[
    // Dates, and date-times without a time: midnight, UTC.
    (r#""2024-01-02""#, ["2024-01-02", "-", "-", "2024-01-02 00:00:00", "-", "2024-01-02 00:00:00+00", "-"]),
    (r#"" 2024-01-02 ""#, ["2024-01-02", "-", "-", "2024-01-02 00:00:00", "-", "2024-01-02 00:00:00+00", "-"]),
    // Date-times: T, t or a space; minutes, seconds, any fraction
    // (cut to microseconds); offsets Z, z, UTC, GMT, ±HH, ±HHMM, ±HH:MM,
    // after an optional space. A TIMESTAMP keeps the wall clock.
    (r#""2024-01-02T03:04:05Z""#, ["-", "-", "-", "2024-01-02 03:04:05", "-", "2024-01-02 03:04:05+00", "-"]),
    (r#""2024-01-02t03:04z""#, ["-", "-", "-", "2024-01-02 03:04:00", "-", "2024-01-02 03:04:00+00", "-"]),
    (r#""2024-01-02 03:04:05.1234567 +05:30""#, ["-", "-", "-", "2024-01-02 03:04:05.123456", "-", "2024-01-01 21:34:05.123456+00", "-"]),
    (r#""2024-01-02T03:04:05.5-0800""#, ["-", "-", "-", "2024-01-02 03:04:05.5", "-", "2024-01-02 11:04:05.5+00", "-"]),
    (r#""2024-01-02T03:04:05+05""#, ["-", "-", "-", "2024-01-02 03:04:05", "-", "2024-01-01 22:04:05+00", "-"]),
    (r#""2024-01-02T03:04:05 UTC""#, ["-", "-", "-", "2024-01-02 03:04:05", "-", "2024-01-02 03:04:05+00", "-"]),
    (r#""2024-01-02T03:04:05GMT""#, ["-", "-", "-", "2024-01-02 03:04:05", "-", "2024-01-02 03:04:05+00", "-"]),
    (r#""2024-01-02T03:04:05-15:59""#, ["-", "-", "-", "2024-01-02 03:04:05", "-", "2024-01-02 19:03:05+00", "-"]),
    (r#""0001-01-01T00:00:00Z""#, ["-", "-", "-", "0001-01-01 00:00:00", "-", "0001-01-01 00:00:00+00", "-"]),
    (r#""9999-12-31T23:59:59.999999Z""#, ["-", "-", "-", "9999-12-31 23:59:59.999999", "-", "9999-12-31 23:59:59.999999+00", "-"]),
    // Infinities, for dates, date-times and numbers.
    (r#""infinity""#, ["infinity", "-", "-", "infinity", "-", "infinity", "inf"]),
    (r#""-Infinity""#, ["-infinity", "-", "-", "-infinity", "-", "-infinity", "-inf"]),
    // Times: HH:MM, seconds, a fraction, an offset (a TIME drops it).
    (r#""10:00""#, ["-", "-", "10:00:00", "-", "10:00:00+00", "-", "-"]),
    (r#""23:59:59.999999+05:30""#, ["-", "-", "23:59:59.999999", "-", "23:59:59.999999+05:30", "-", "-"]),
    (r#""10:00:00.5 -08""#, ["-", "-", "10:00:00.5", "-", "10:00:00.5-08", "-", "-"]),
    (r#""10:00:00 UTC""#, ["-", "-", "10:00:00", "-", "10:00:00+00", "-", "-"]),
    // What DuckDB's casts take and these rules do not.
    (r#""10:00:00 PM""#, ["-", "-", "-", "-", "-", "-", "-"]),
    (r#""12:00:00 AM""#, ["-", "-", "-", "-", "-", "-", "-"]),
    (r#""2024-01-02T10:00:00 PM""#, ["-", "-", "-", "-", "-", "-", "-"]),
    (r#""2024-01-02 BC""#, ["-", "-", "-", "-", "-", "-", "-"]),
    (r#""2024-01-02T10:00:00 EST""#, ["-", "-", "-", "-", "-", "-", "-"]),
    (r#""2024-01-02T10:00:00 America/New_York""#, ["-", "-", "-", "-", "-", "-", "-"]),
    (r#""epoch""#, ["-", "-", "-", "-", "-", "-", "-"]),
    (r#""allballs""#, ["-", "-", "-", "-", "-", "-", "-"]),
    (r#""0000-01-01""#, ["-", "-", "-", "-", "-", "-", "-"]),
    (r#""2024-02-30""#, ["-", "-", "-", "-", "-", "-", "-"]),
    (r#""2024-01-02T24:00:00""#, ["-", "-", "-", "-", "-", "-", "-"]),
    (r#""24:00:00""#, ["-", "-", "-", "-", "-", "-", "-"]),
    (r#""2024-01-02T10:00:00+16:00""#, ["-", "-", "-", "-", "-", "-", "-"]),
    (r#""2024-01-02T10:00:00+05:60""#, ["-", "-", "-", "-", "-", "-", "-"]),
    (r#""2024-1-2""#, ["-", "-", "-", "-", "-", "-", "-"]),
    (r#""10000-01-01""#, ["-", "-", "-", "-", "-", "-", "-"]),
    (r#""2024-01-02T10:00:00Z  ""#, ["-", "-", "-", "2024-01-02 10:00:00", "-", "2024-01-02 10:00:00+00", "-"]),
    // Integers: exact, or NULL with a change; never through a DOUBLE.
    (r#""42""#, ["-", "42", "-", "-", "-", "-", "42.0"]),
    (r#"" +7 ""#, ["-", "7", "-", "-", "-", "-", "7.0"]),
    (r#""1e3""#, ["-", "1000", "-", "-", "-", "-", "1000.0"]),
    (r#""1.5""#, ["-", "-", "-", "-", "-", "-", "1.5"]),
    (r#""12345678901234567.0""#, ["-", "12345678901234567", "-", "-", "-", "-", "1.2345678901234568e16"]),
    (r#""1_000""#, ["-", "-", "-", "-", "-", "-", "-"]),
    (r#""0x10""#, ["-", "-", "-", "-", "-", "-", "-"]),
    (r#""NaN""#, ["-", "-", "-", "-", "-", "-", "NaN"]),
    ("12345678901234567.0", ["-", "12345678901234567", "-", "-", "-", "-", "1.2345678901234568e16"]),
    ("1.2345678901234567e16", ["-", "12345678901234567", "-", "-", "-", "-", "1.2345678901234568e16"]),
    ("1.0000000000000001", ["-", "-", "-", "-", "-", "-", "1.0"]),
    ("100e-2", ["-", "1", "-", "-", "-", "-", "1.0"]),
    ("-0.0", ["-", "0", "-", "-", "-", "-", "-0.0"]),
    ("9223372036854775807", ["-", "9223372036854775807", "-", "-", "-", "-", "9.223372036854776e18"]),
    ("9223372036854775808", ["-", "-", "-", "-", "-", "-", "9.223372036854776e18"]),
    ("92233720368547758070e-1", ["-", "9223372036854775807", "-", "-", "-", "-", "9.223372036854776e18"]),
];

/// The columns [`SHAPES`] gives a cell for, with their types.
const SHAPE_COLUMNS: [(&str, &str); 7] = [
    ("d", "DATE"),
    ("i", "BIGINT"),
    ("t", "TIME"),
    ("ts", "TIMESTAMP"),
    ("ttz", "TIME WITH TIME ZONE"),
    ("tz", "TIMESTAMP WITH TIME ZONE"),
    ("x", "DOUBLE"),
];

/// A row of [`SHAPES`] as the cells [`assert_typed`] expects.
fn shape_cells(cells: &[&str; 7]) -> [Option<Cell>; 7] {
    std::array::from_fn(|k| match (SHAPE_COLUMNS[k].0, cells[k]) {
        (_, "-") => None,
        ("i", v) => Some(i(v.parse().expect("an integer"))),
        ("x", v) => Some(n(v.parse().expect("a number"))),
        (_, v) => Some(t(v)),
    })
}

/// The accepted text shapes (the README's "Accepted text" table), row by
/// row: each value goes to a column of every temporal and numeric type at
/// once, and each column takes exactly the shapes its row lists. DuckDB's
/// own casts take more (`10:00 PM`, `EST`, `BC`, `epoch`), and take them
/// differently in 1.4 and 2.0; here each is NULL with a change, read alike
/// by every reader (`assert_typed` reads with DuckDB 1.4, 1.5 and 2.0).
#[test]
fn every_accepted_text_shape() {
    let cat = hand_catalog(
        "shapes",
        json!({
            "d": {"type": "string", "format": "date"},
            "i": {"type": "integer"},
            "t": {"type": "string", "format": "time", "airbyte_type": "time_without_timezone"},
            "ts": {"type": "string", "format": "date-time", "airbyte_type": "timestamp_without_timezone"},
            "ttz": {"type": "string", "format": "time", "airbyte_type": "time_with_timezone"},
            "tz": {"type": "string", "format": "date-time", "airbyte_type": "timestamp_with_timezone"},
            "x": {"type": "number"},
        }),
    );
    let columns = SHAPE_COLUMNS.map(|(name, _)| name);
    let cases: Vec<(&str, [Option<Cell>; 7])> = SHAPES
        .iter()
        .map(|(v, cells)| (*v, shape_cells(cells)))
        .collect();
    let datas: Vec<String> = cases
        .iter()
        .map(|(v, _)| format!("{{{}}}", columns.map(|c| format!("\"{c}\":{v}")).join(",")))
        .collect();
    let want: Vec<Row> = cases
        .iter()
        .map(|(_, cells)| {
            let nulled = columns
                .iter()
                .zip(cells)
                .filter(|(_, c)| c.is_none())
                .map(|(name, _)| *name)
                .collect();
            (
                cells.iter().map(|c| c.clone().unwrap_or(Null)).collect(),
                nulled,
            )
        })
        .collect();
    let refs: Vec<&str> = datas.iter().map(String::as_str).collect();
    for mode in MODES {
        let h = sync(mode, &cat, &hand_input("shapes", &refs));
        assert_typed(&h, mode, "shapes", &SHAPE_COLUMNS, &want);
    }
    // One column per stream too: a record with a value the Rust typing
    // leaves to the SQL (any time, here) goes to the SQL whole, so only
    // single-column records show that the Rust typing, where it takes a
    // value, gives what the SQL gives.
    let schemas = cat["streams"][0]["stream"]["json_schema"]["properties"].clone();
    for (k, (column, ty)) in SHAPE_COLUMNS.iter().enumerate() {
        let name = format!("shape_{column}");
        let one = hand_catalog(&name, json!({ *column: schemas[column].clone() }));
        let datas: Vec<String> = cases
            .iter()
            .map(|(v, _)| format!("{{\"{column}\":{v}}}"))
            .collect();
        let refs: Vec<&str> = datas.iter().map(String::as_str).collect();
        let want: Vec<Row> = cases
            .iter()
            .map(|(_, cells)| match &cells[k] {
                Some(cell) => (vec![cell.clone()], vec![]),
                None => (vec![Null], vec![*column]),
            })
            .collect();
        let h = sync("tables", &one, &hand_input(&name, &refs));
        assert_typed(&h, "tables", &name, &[(column, ty)], &want);
    }
}

/// A random JSON value as text: any kind, often one that looks like a
/// number, date or time, sometimes one that almost does.
fn random_value(rng: &mut Rng) -> String {
    match rng.next() % 12 {
        0 => "null".into(),
        1 => format!("{}", rng.next() as i64 >> (rng.next() % 64)),
        2 => format!("{}", rng.next() % 100_000),
        3 => format!("{:e}", (rng.next() % 1_000_000) as f64 / 7.0),
        4 => rng.pick(&["true", "false"]).into(),
        5 => "{\"k\":[1,\"x\",{\"n\":null}]}".into(),
        6 => "[1,2.5,\"three\"]".into(),
        7 => rng
            .pick(&["123456789012345678901234567890", "1e400", "-0", "0.5"])
            .into(),
        _ => format!(
            "\"{}\"",
            rng.pick(&[
                "2024-07-25",
                "2024-07-25T10:30:00Z",
                "2024-07-25 10:30:00+02:00",
                "2024-02-30",
                "10:30:00",
                "25:61:00",
                "42",
                "4.2e1",
                "NaN",
                "-Infinity",
                "1_000",
                "true",
                "FALSE",
                "",
                " ",
                "héllo \\\"quoted\\\" \\\\ back",
                "\\u0000nul",
                "epoch",
                "infinity",
                "9223372036854775808",
            ])
        ),
    }
}

#[test]
fn random_values_never_fail_and_every_null_is_explained() {
    // For every typed cell: NULL exactly when the raw value is missing or
    // null, or when a DESTINATION_TYPECAST_ERROR change names the property.
    let types = [
        ("t_string", json!({"type": "string"})),
        ("t_boolean", json!({"type": "boolean"})),
        ("t_integer", json!({"type": "integer"})),
        ("t_number", json!({"type": "number"})),
        ("t_date", json!({"type": "string", "format": "date"})),
        ("t_tstz", json!({"type": "string", "format": "date-time"})),
        (
            "t_ts",
            json!({"type": "string", "format": "date-time", "airbyte_type": "timestamp_without_timezone"}),
        ),
        ("t_timetz", json!({"type": "string", "format": "time"})),
        (
            "t_time",
            json!({"type": "string", "format": "time", "airbyte_type": "time_without_timezone"}),
        ),
        ("t_object", json!({"type": "object"})),
        ("t_array", json!({"type": "array"})),
        ("t_union", json!({"type": ["string", "integer"]})),
    ];
    let properties: serde_json::Map<String, Value> = types
        .iter()
        .map(|(name, schema)| (name.to_string(), schema.clone()))
        .collect();
    let cat = hand_catalog("fuzz", Value::Object(properties));
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let datas: Vec<String> = (0..600)
        .map(|_| {
            let mut fields: Vec<String> = Vec::new();
            for (name, _) in &types {
                // Some properties are missing altogether.
                if !rng.next().is_multiple_of(8) {
                    fields.push(format!("\"{name}\":{}", random_value(&mut rng)));
                }
            }
            format!("{{{}}}", fields.join(","))
        })
        .collect();
    let refs: Vec<&str> = datas.iter().map(String::as_str).collect();
    for mode in MODES {
        let h = sync(mode, &cat, &hand_input("fuzz", &refs));
        assert_eq!(h.count("main.fuzz"), 600, "{mode}");
        for (name, _) in &types {
            let bad = h.strings(&format!(
                "SELECT r._airbyte_data::VARCHAR, t._airbyte_meta::VARCHAR \
                 FROM main.fuzz t JOIN main._airbyte_raw_fuzz r USING (_airbyte_ab_id) \
                 WHERE (t.{name} IS NULL) IS DISTINCT FROM ( \
                   coalesce(json_type(r._airbyte_data, '/{name}'), 'NULL') = 'NULL' \
                   OR list_contains(json_extract_string(t._airbyte_meta, '$.changes[*].field'), '{name}'))"
            ));
            assert!(
                bad.is_empty(),
                "{mode} {name}: {} rows like {:?}",
                bad.len(),
                bad[0]
            );
            // A change is only ever added for a value that was there.
            let spurious = h.count(&format!(
                "main.fuzz t JOIN main._airbyte_raw_fuzz r USING (_airbyte_ab_id) \
                 WHERE list_contains(json_extract_string(t._airbyte_meta, '$.changes[*].field'), '{name}') \
                 AND (t.{name} IS NOT NULL OR coalesce(json_type(r._airbyte_data, '/{name}'), 'NULL') = 'NULL')"
            ));
            assert_eq!(spurious, 0, "{mode} {name}");
        }
    }
}

/// The append phase turns DuckDB's dictionary compression off (the raw ids
/// and documents are unique per row) and must reset it before the typed
/// tables are built, so that their low-cardinality columns keep it.
#[test]
fn typed_tables_keep_dictionary_compression_that_the_raw_append_skips() {
    let cat = hand_catalog("s", json!({"colour": {"type": "string"}}));
    // Seven long, random-looking values: FSST cannot shrink them, a
    // dictionary can.
    let colour = |v: u64| -> String {
        (0..6)
            .map(|j| {
                format!(
                    "{:016x}",
                    (v * 6 + j + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
                )
            })
            .collect()
    };
    let datas: Vec<String> = (0..5000)
        .map(|k| format!(r#"{{"colour":"{}"}}"#, colour(k % 7)))
        .collect();
    let refs: Vec<&str> = datas.iter().map(String::as_str).collect();
    let h = sync("tables", &cat, &hand_input("s", &refs));
    let methods = |table: &str, column: &str| -> Vec<String> {
        h.strings(&format!(
            "SELECT DISTINCT compression FROM pragma_storage_info('{table}') \
             WHERE column_name = '{column}' ORDER BY 1"
        ))
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect()
    };
    assert!(
        methods("main.s", "colour").contains(&"Dictionary".to_string()),
        "typed column: {:?}",
        methods("main.s", "colour")
    );
}
