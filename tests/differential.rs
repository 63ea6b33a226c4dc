//! Typed tables written as records arrive equal the typed views, on random
//! records: the same input goes to a `views` database and a `tables`
//! database, and every typed relation is compared row by row, column by
//! column. The values come from one pool for every column type, so each
//! type meets every kind of value: the ones the Rust typing takes, the ones
//! it leaves to the SQL (numbers as strings, other date-time shapes, times,
//! infinities ...), and the ones that do not fit (NULL and a NULLED change).
//!
//! JSON columns and `_airbyte_meta` are compared as JSON values
//! (`json(x)`): the tables keep a value's text as the source sent it where
//! the views keep DuckDB's rewriting of it. Everything else is compared as
//! DuckDB prints it.

use serde_json::json;

use crate::util::{global_state, lines, record, Harness, Rng};

/// A value of every kind, as JSON text.
const POOL: &[&str] = &[
    "null",
    "true",
    "false",
    "0",
    "-0",
    "7",
    "-12",
    "9223372036854775807",
    "9223372036854775808",
    "123456789012345678901234567890",
    "1.5",
    "1.50",
    "-0.0",
    "1e3",
    "1E-7",
    "2.5e+10",
    "1e400",
    r#""""#,
    r#""abc""#,
    r#""true""#,
    r#"" TRUE ""#,
    r#""False""#,
    r#""1""#,
    r#"" 12 ""#,
    r#""1.5""#,
    r#""1_000""#,
    r#""1e3""#,
    r#""2024-01-02""#,
    r#""2024-02-30""#,
    r#""2024-02-29""#,
    r#""2023-02-29""#,
    r#""2024-01-02T03:04:05Z""#,
    r#""2024-01-02T03:04:05.123456+05:30""#,
    r#""2024-01-02t03:04:05.1-08:00""#,
    r#""2024-01-02 03:04:05""#,
    r#""2024-01-02T03:04""#,
    r#""2024-01-02T03:04:05+0530""#,
    r#""2024-01-02T03:04:05 UTC""#,
    r#""2024-01-02T24:00:00Z""#,
    r#""0001-01-01T00:00:00Z""#,
    r#""9999-12-31T23:59:59.999999Z""#,
    r#""2024-01-02T03:04:05.1234567Z""#,
    r#""10:11:12""#,
    r#""10:11:12.5+02:00""#,
    r#""infinity""#,
    r#""a\u00e9\n\"q\"""#,
    r#""\ud83d\ude00""#,
    r#""\u0000x""#,
    r#"{"a":1,"b":[1,2]}"#,
    r#"{ "a" : 1.50 , "b":"\u00e9"}"#,
    "[]",
    r#"[1,"x",null]"#,
    "{}",
];

/// One property per column type (names say which), plus the record number
/// `n`, and for dedup the key `k`, the cursor `c` and the CDC delete marker.
fn schema(dedup: bool) -> serde_json::Value {
    let mut props = json!({
        "n": {"type": "integer"},
        "s": {"type": "string"},
        "b": {"type": "boolean"},
        "i": {"type": "integer"},
        "d": {"type": "number"},
        "dt": {"type": "string", "format": "date"},
        "ts": {"type": "string", "format": "date-time", "airbyte_type": "timestamp_without_timezone"},
        "tz": {"type": "string", "format": "date-time"},
        "t": {"type": "string", "format": "time", "airbyte_type": "time_without_timezone"},
        "ttz": {"type": "string", "format": "time"},
        "j": {},
        "o": {"type": "object"},
        "a": {"type": "array"},
    });
    if dedup {
        props["k"] = json!({"type": "integer"});
        props["c"] = json!({"type": ["null", "integer"]});
        props["_ab_cdc_deleted_at"] = json!({"type": ["null", "string"], "format": "date-time"});
    }
    json!({"type": "object", "properties": props})
}

const TYPED: [&str; 12] = [
    "s", "b", "i", "d", "dt", "ts", "tz", "t", "ttz", "j", "o", "a",
];

/// The values each column mostly gets: its own kind in its usual shapes
/// (which the Rust typing takes) and kinds that do not fit it. A record
/// with one of [`POOL`]'s other values (one value in forty) is mostly
/// typed by the SQL instead, so both paths and their mix are compared.
fn usual(column: &str) -> &'static [&'static str] {
    match column {
        "s" => &[
            r#""abc""#,
            r#""""#,
            r#""a\u00e9\n\"q\"""#,
            r#""\ud83d\ude00""#,
            r#""true""#,
            "null",
        ],
        "b" => &[
            "true",
            "false",
            r#""true""#,
            r#""False""#,
            r#""abc""#,
            "7",
            "{}",
            "[]",
            "null",
        ],
        "i" => &[
            "0",
            "-0",
            "7",
            "-12",
            "9223372036854775807",
            "true",
            r#"{"a":1}"#,
            "null",
        ],
        "d" => &[
            "1.5",
            "1.50",
            "-0.0",
            "1e3",
            "1E-7",
            "2.5e+10",
            "7",
            "123456789012345678901234567890",
            "false",
            "[]",
        ],
        "dt" => &[
            r#""2024-01-02""#,
            r#""2024-02-29""#,
            r#""0001-01-01""#,
            "7",
            "true",
            "null",
        ],
        "ts" => &[
            r#""2024-01-02T03:04:05""#,
            r#""2024-01-02 03:04:05.5""#,
            r#""2024-01-02t03:04:05.000001""#,
            "1.5",
            "{}",
        ],
        "tz" => &[
            r#""2024-01-02T03:04:05Z""#,
            r#""2024-01-02T03:04:05.123456+05:30""#,
            r#""2024-01-02t03:04:05.1-08:00""#,
            r#""2024-01-02 03:04:05""#,
            r#""0001-01-01T00:00:00Z""#,
            r#""9999-12-31T23:59:59.999999Z""#,
            r#""1969-12-31T23:59:59.5+14:00""#,
            "7",
        ],
        "t" | "ttz" => &["null", "7", "{}", "false"],
        _ => &[
            r#"{"a":1,"b":[1,2]}"#,
            r#"{ "a" : 1.50 , "b":"\u00e9"}"#,
            "[]",
            r#"[1,"x",null]"#,
            "{}",
            "3",
            r#""s""#,
            "null",
        ],
    }
}
const JSON_COLUMNS: [&str; 3] = ["j", "o", "a"];

/// `count` random records for stream `t`, numbered from `first`.
fn records(rng: &mut Rng, first: usize, count: usize, dedup: bool) -> Vec<String> {
    let mut out = Vec::new();
    for n in first..first + count {
        let mut fields = vec![format!(r#""n":{n}"#)];
        for p in TYPED {
            // About one property in eight is missing.
            if rng.below(8) != 0 {
                let value = if rng.below(40) == 0 {
                    POOL[rng.below(POOL.len())]
                } else {
                    let usual = usual(p);
                    usual[rng.below(usual.len())]
                };
                fields.push(format!(r#""{p}":{value}"#));
            }
        }
        if dedup {
            fields.push(format!(r#""k":{}"#, rng.below(25)));
            if rng.below(6) != 0 {
                fields.push(format!(r#""c":{}"#, rng.below(5)));
            }
            if rng.below(9) == 0 {
                fields.push(r#""_ab_cdc_deleted_at":"2024-01-01T00:00:00Z""#.to_string());
            }
        }
        // Some records carry changes of their own, which NULLED ones join.
        let data = format!("{{{}}}", fields.join(","));
        let line = if rng.below(10) == 0 {
            format!(
                r#"{{"type":"RECORD","record":{{"stream":"t","emitted_at":{},"data":{data},"meta":{{"changes":[{{"field":"x","change":"TRUNCATED","reason":"SOURCE_RECORD_SIZE_LIMITATION"}}]}}}}}}"#,
                1_700_000_000_000 + rng.below(3) as i64
            )
        } else {
            record("t", 1_700_000_000_000 + rng.below(3) as i64, &data)
        };
        out.push(line);
    }
    out
}

fn harness(mode: &str, dedup: bool) -> Harness {
    let h = Harness::new();
    h.write_config(
        json!({"destination_path": h.db_path().to_str().unwrap(), "typed_output": mode}),
    );
    let mut stream = json!({
        "stream": {"name": "t", "json_schema": schema(dedup)},
        "sync_mode": "incremental",
        "destination_sync_mode": if dedup { "append_dedup" } else { "append" },
    });
    if dedup {
        stream["primary_key"] = json!([["k"]]);
        stream["cursor_field"] = json!(["c"]);
    }
    h.write_catalog(&json!({"streams": [stream]}));
    h
}

/// Rows of text, NULL as None.
type Rows = Vec<Vec<Option<String>>>;

/// Every row of the typed relation by record number, each column as
/// comparable text.
fn typed_rows(h: &Harness) -> Rows {
    h.strings(&typed_query())
}

/// The query [`typed_rows`] reads.
fn typed_query() -> String {
    let mut columns = vec![
        "_airbyte_emitted_at::VARCHAR".to_string(),
        "json(_airbyte_meta)::VARCHAR".to_string(),
        "_airbyte_generation_id::VARCHAR".to_string(),
        "n::VARCHAR".to_string(),
    ];
    for p in TYPED {
        columns.push(if JSON_COLUMNS.contains(&p) {
            format!("json(\"{p}\")::VARCHAR")
        } else {
            format!("\"{p}\"::VARCHAR")
        });
    }
    format!("SELECT {} FROM main.t ORDER BY n", columns.join(", "))
}

/// The same random records, synced into a `views` and a `tables` database.
struct Pair {
    views: Harness,
    tables: Harness,
    rng: Rng,
    dedup: bool,
}

impl Pair {
    fn new(seed: u64, dedup: bool) -> Pair {
        Pair {
            views: harness("views", dedup),
            tables: harness("tables", dedup),
            rng: Rng(seed),
            dedup,
        }
    }

    /// Syncs `count` new records (numbered from `n * count`) and a state
    /// into both; both exit 0. Returns the `tables` run.
    fn sync(&mut self, n: usize, count: usize) -> crate::util::Run {
        let mut input = records(&mut self.rng, n * count, count, self.dedup);
        input.push(global_state(n as i64));
        let input = lines(&input);
        self.views.write(input.as_bytes()).assert_ok();
        let run = self.tables.write(input.as_bytes());
        run.assert_ok();
        run
    }

    /// Every typed row of the views, then of the tables.
    fn rows(&self) -> (Rows, Rows) {
        (typed_rows(&self.views), typed_rows(&self.tables))
    }

    /// Changes both catalogs alike.
    fn edit_catalogs(&self, edit: impl Fn(&mut serde_json::Value)) {
        for h in [&self.views, &self.tables] {
            let mut catalog = crate::util::read_json(&h.catalog_path());
            edit(&mut catalog);
            h.write_catalog(&catalog);
        }
    }
}

fn differential(seed: u64, dedup: bool) {
    let mut pair = Pair::new(seed, dedup);
    for sync in 0..3 {
        pair.sync(sync, 300);
        let (v, t) = pair.rows();
        assert!(!v.is_empty(), "seed {seed}: rows to compare");
        assert_eq!(v.len(), t.len(), "seed {seed}, sync {sync}: row counts");
        for (a, b) in v.iter().zip(&t) {
            assert_eq!(a, b, "seed {seed}, sync {sync}, dedup {dedup}");
        }
    }
    // The views read alike in DuckDB 1.4, 1.5 and 2.0, on every kind of
    // value.
    crate::util::assert_readers_agree(&pair.views, &[typed_query()]);
}

#[test]
fn typed_tables_equal_the_views_on_random_records() {
    for seed in [0x9e37_79b9_7f4a_7c15, 42, 7_777_777] {
        differential(seed, false);
    }
}

#[test]
fn deduplicated_typed_tables_equal_the_views_on_random_records() {
    for seed in [0x9e37_79b9_7f4a_7c15, 42, 7_777_777] {
        differential(seed, true);
    }
}

/// A crash between the raw commit and the typed commit leaves raw rows the
/// typed table lacks, and a registry count that says so: the next sync
/// rebuilds the typed table, which then equals the views again. Emulated
/// here by taking rows out of the typed table and its count.
#[test]
fn a_typed_table_behind_its_raw_table_is_rebuilt() {
    for dedup in [false, true] {
        let mut pair = Pair::new(99, dedup);
        for sync in 0..2 {
            let run = pair.sync(sync, 200);
            if sync == 1 {
                assert!(run.stderr.contains(r#"how="rebuilt""#), "{}", run.stderr);
            }
            let (v, t) = pair.rows();
            assert_eq!(v, t, "dedup {dedup}");
            let conn = duckdb::Connection::open(pair.tables.db_path()).unwrap();
            conn.execute_batch(
                "DELETE FROM main.t WHERE rowid IN (SELECT rowid FROM main.t LIMIT 3); \
                 UPDATE _airbyte_internal.typed_relations SET watermark_count = watermark_count - 3",
            )
            .unwrap();
        }
    }
}

/// A deduplicated table is only merged into while its primary key and
/// cursor stay what they were: a catalog that changes them (or turns
/// deduplication off) gets its typed table rebuilt, equal to the views.
#[test]
fn a_typed_table_of_another_key_is_rebuilt() {
    let mut pair = Pair::new(5, true);
    pair.sync(0, 200);
    pair.edit_catalogs(|c| c["streams"][0]["primary_key"] = json!([["n"]]));
    pair.sync(1, 200);
    let (v, t) = pair.rows();
    assert_eq!(v, t, "by the new key");
    pair.edit_catalogs(|c| c["streams"][0]["destination_sync_mode"] = json!("append"));
    pair.sync(2, 200);
    let (v, t) = pair.rows();
    assert_eq!(v, t, "not deduplicated");
}

/// Typed rows that cannot be written (here: a column of a deduplicated
/// stream's staging table changed by hand to a type the rows do not fit) do
/// not fail a sync whose raw rows are committed: every state is echoed, and
/// the typed table is rebuilt from the raw rows at the end, equal to the
/// views again. A typed table altered so is rebuilt before the records
/// come, and the typed rows are written.
#[test]
fn typed_rows_that_cannot_be_written_do_not_fail_the_sync() {
    for dedup in [false, true] {
        let mut pair = Pair::new(11, dedup);
        for sync in 0..2 {
            if sync == 1 {
                let conn = duckdb::Connection::open(pair.tables.db_path()).unwrap();
                // Where the typed rows go: the table, or a dedup stream's
                // staging table.
                let target = if dedup {
                    r#"_airbyte_internal."staged.main.t""#
                } else {
                    "main.t"
                };
                conn.execute_batch(&format!("ALTER TABLE {target} ALTER COLUMN n TYPE VARCHAR"))
                    .unwrap();
            }
            let run = pair.sync(sync, 200);
            assert_eq!(run.states().len(), 1, "dedup {dedup}: the state is echoed");
            if sync == 1 {
                let expected = if dedup {
                    "typed rows could not be written"
                } else {
                    "columns are not the ones it was made with"
                };
                assert!(run.stderr.contains(expected), "{}", run.stderr);
            }
            let (v, t) = pair.rows();
            assert_eq!(v, t, "dedup {dedup}, sync {sync}");
        }
    }
}
