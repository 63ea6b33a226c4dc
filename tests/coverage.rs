//! Typed tables (`typed_output: tables`) never drift from their raw tables:
//! whatever changes the raw rows other than by appending (an overwrite's
//! swap, a refresh, a table made again), and wherever a sync is cut off, the
//! next sync leaves each typed table equal to what the typed views compute
//! from the same raw rows.
//!
//! "What the views compute" is measured, not modelled: the database is
//! copied and synced with `typed_output: views` and no records, and its
//! views are read beside the tables.

use serde_json::{json, Value};

use crate::util::{global_state, lines, record, Harness, Live, Rng};

const SWAPPED: &str = "overwrite complete";

/// The two streams: `a` (appended, overwritten or refreshed) and `d`
/// (deduplicated by `k`, latest by `c`; appended or refreshed).
fn schema(dedup: bool) -> Value {
    let mut props = json!({"g": {"type": "string"}, "n": {"type": "integer"}});
    if dedup {
        props["k"] = json!({"type": "integer"});
        props["c"] = json!({"type": "integer"});
    }
    json!({"type": "object", "properties": props})
}

/// How one sync writes a stream.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    /// `append` / `append_dedup`, minimum generation 0.
    Append,
    /// `overwrite` (stream `a` only).
    Overwrite,
    /// A refresh: minimum generation = generation.
    Refresh,
}

fn configured(name: &str, mode: Mode, generation: i64) -> Value {
    let dedup = name == "d";
    let sync_mode = match (mode, dedup) {
        (Mode::Overwrite, _) => "overwrite",
        (_, true) => "append_dedup",
        (_, false) => "append",
    };
    let mut c = json!({
        "stream": {"name": name, "json_schema": schema(dedup),
                   "supported_sync_modes": ["full_refresh", "incremental"]},
        "sync_mode": "incremental",
        "destination_sync_mode": sync_mode,
        "generation_id": generation,
        "minimum_generation_id": if mode == Mode::Refresh { generation } else { 0 },
        "sync_id": generation,
    });
    if dedup {
        c["primary_key"] = json!([["k"]]);
        c["cursor_field"] = json!(["c"]);
    }
    c
}

fn catalog(modes: &[(&str, Mode)], generation: i64) -> Value {
    json!({"streams": modes.iter().map(|(n, m)| configured(n, *m, generation)).collect::<Vec<_>>()})
}

fn complete(stream: &str) -> String {
    format!(
        r#"{{"type":"TRACE","trace":{{"type":"STREAM_STATUS","emitted_at":1,"stream_status":{{"stream_descriptor":{{"name":"{stream}"}},"status":"COMPLETE"}}}}}}"#
    )
}

fn tables_harness() -> Harness {
    let h = Harness::new();
    h.write_config(
        json!({"destination_path": h.db_path().to_str().unwrap(), "typed_output": "tables"}),
    );
    h
}

/// Every typed row of `relation`, comparable: ordered by record id, JSON
/// as JSON values.
fn rows_of(h: &Harness, relation: &str, dedup: bool) -> Vec<Vec<Option<String>>> {
    let extra = if dedup {
        ", k::VARCHAR, c::VARCHAR"
    } else {
        ""
    };
    h.strings(&format!(
        "SELECT _airbyte_ab_id, _airbyte_emitted_at::VARCHAR, json(_airbyte_meta)::VARCHAR, \
         _airbyte_generation_id::VARCHAR, g, n::VARCHAR{extra} FROM main.{relation} ORDER BY _airbyte_ab_id"
    ))
}

/// What the views compute from `h`'s raw rows: a copy of the database,
/// synced with `typed_output: views`, no records, the streams appended.
fn views_of(h: &Harness, streams: &[&str]) -> Harness {
    let v = Harness::new();
    for suffix in ["", ".wal"] {
        let from = format!("{}{suffix}", h.db_path().display());
        if std::path::Path::new(&from).exists() {
            std::fs::copy(&from, format!("{}{suffix}", v.db_path().display())).unwrap();
        }
    }
    v.write_config(
        json!({"destination_path": v.db_path().to_str().unwrap(), "typed_output": "views"}),
    );
    let modes: Vec<(&str, Mode)> = streams.iter().map(|s| (*s, Mode::Append)).collect();
    v.write_catalog(&catalog(&modes, 0));
    v.write(b"").assert_ok();
    v
}

/// Each stream's typed table equals its view over the same raw rows.
fn assert_no_drift(h: &Harness, streams: &[&str], context: &str) {
    let views = views_of(h, streams);
    for s in streams {
        let dedup = *s == "d";
        let (table, view) = (rows_of(h, s, dedup), rows_of(&views, s, dedup));
        assert_eq!(
            table.len(),
            view.len(),
            "{context}: stream {s}: typed table rows vs view rows"
        );
        assert_eq!(table, view, "{context}: stream {s}");
    }
}

fn records(stream: &str, tag: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            record(
                stream,
                1_700_000_000_000 + i as i64,
                &format!(r#"{{"g":"{tag}","n":{i}}}"#),
            )
        })
        .collect()
}

fn terminate_after_swap(mut live: Live) {
    assert!(
        live.wait_for_log(SWAPPED),
        "the overwrite completes while stdin stays open"
    );
    let status = live.terminate();
    assert!(!status.success(), "a cancelled sync fails: {status:?}");
}

/// The review's case: a refresh replaced the raw rows (DuckDB reuses their
/// rowids) and was cut off before its typed table was rebuilt. The next
/// syncs must not append to the stale table as if it covered the new rows.
#[test]
fn a_refresh_cut_off_after_its_swap_leaves_no_drift() {
    for cut in ["sigterm", "bad line"] {
        let h = tables_harness();
        h.write_catalog(&catalog(&[("a", Mode::Refresh)], 1));
        let mut input = records("a", "gen1", 100);
        input.push(global_state(1));
        h.write(lines(&input).as_bytes()).assert_ok();

        h.write_catalog(&catalog(&[("a", Mode::Refresh)], 2));
        let mut input = records("a", "gen2", 150);
        input.push(global_state(2));
        input.push(complete("a"));
        let mut live = h.spawn_write();
        live.send(&lines(&input));
        match cut {
            "sigterm" => terminate_after_swap(live),
            _ => {
                assert!(live.wait_for_log(SWAPPED), "the overwrite completes");
                live.send("not json\n");
                live.close_stdin();
                assert!(!live.child.wait().unwrap().success(), "a bad line fails");
            }
        }
        // Cut off between the swap and the rebuild: the typed table went
        // with the old rows, none of which it may keep.
        let typed_tables = h.strings(
            "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' AND table_name = 'a'",
        );
        if !typed_tables.is_empty() {
            let orphans = h.count(
                "main.a WHERE _airbyte_ab_id NOT IN (SELECT _airbyte_ab_id FROM main._airbyte_raw_a)",
            );
            assert_eq!(orphans, 0, "{cut}: typed rows whose raw rows are gone");
        }

        h.write_catalog(&catalog(&[("a", Mode::Append)], 2));
        for _ in 0..2 {
            let input = [records("a", "next", 1), vec![global_state(3)]].concat();
            h.write(lines(&input).as_bytes()).assert_ok();
        }
        let count = |table: &str| {
            h.strings(&format!(
                "SELECT _airbyte_data->>'g' AS g, count(*)::VARCHAR FROM main.{table} GROUP BY g ORDER BY g"
            ))
        };
        let raw = count("_airbyte_raw_a");
        let typed = h.strings("SELECT g, count(*)::VARCHAR FROM main.a GROUP BY g ORDER BY g");
        let want = vec![
            vec![Some("gen2".to_string()), Some("150".to_string())],
            vec![Some("next".to_string()), Some("2".to_string())],
        ];
        assert_eq!(raw, want, "{cut}: the raw table");
        assert_eq!(typed, want, "{cut}: the typed table");
        assert_no_drift(&h, &["a"], cut);
    }
}

/// Raw rows replaced by hand between syncs, as many as before (their
/// rowids reused after a checkpoint), are noticed too: the typed table's
/// coverage is checked against the rows, not only counted.
#[test]
fn raw_rows_replaced_by_hand_are_noticed() {
    let h = tables_harness();
    h.write_catalog(&catalog(&[("a", Mode::Append)], 1));
    let input = [records("a", "first", 100), vec![global_state(1)]].concat();
    h.write(lines(&input).as_bytes()).assert_ok();
    {
        let conn = duckdb::Connection::open(h.db_path()).unwrap();
        conn.execute_batch(
            "DELETE FROM main._airbyte_raw_a; CHECKPOINT; \
             INSERT INTO main._airbyte_raw_a \
             SELECT uuid()::VARCHAR, now(), '{\"g\":\"by hand\",\"n\":1}', '{\"changes\":[]}', 1 \
             FROM range(100); CHECKPOINT;",
        )
        .unwrap();
    }
    let input = [records("a", "next", 1), vec![global_state(2)]].concat();
    h.write(lines(&input).as_bytes()).assert_ok();
    assert_eq!(h.count("main.a"), 101);
    assert_no_drift(&h, &["a"], "by hand");
}

/// A typed table altered by hand (a column renamed, dropped, retyped or
/// added) is rebuilt by the next sync, appended and deduplicated streams
/// alike, rather than failing every sync or keeping the edit.
#[test]
fn typed_tables_altered_by_hand_are_rebuilt() {
    let keyed = |tag: &str, from: usize| -> Vec<String> {
        (from..from + 6)
            .map(|i| {
                let data = format!(r#"{{"g":"{tag}","n":{i},"k":{},"c":{i}}}"#, i % 3);
                record("d", 1_700_000_000_000 + i as i64, &data)
            })
            .collect()
    };
    for edit in [
        "RENAME COLUMN g TO g2",
        "DROP COLUMN g",
        "ALTER n TYPE VARCHAR",
        "ADD COLUMN extra INTEGER",
    ] {
        let h = tables_harness();
        let streams = [("a", Mode::Append), ("d", Mode::Append)];
        h.write_catalog(&catalog(&streams, 1));
        let input = [
            records("a", "first", 6),
            keyed("first", 0),
            vec![global_state(1)],
        ];
        h.write(lines(&input.concat()).as_bytes()).assert_ok();
        {
            let conn = duckdb::Connection::open(h.db_path()).unwrap();
            conn.execute_batch(&format!(
                "ALTER TABLE main.a {edit}; ALTER TABLE main.d {edit};"
            ))
            .unwrap();
        }
        let input = [
            records("a", "next", 6),
            keyed("next", 6),
            vec![global_state(2)],
        ];
        h.write(lines(&input.concat()).as_bytes()).assert_ok();
        assert_eq!(h.count("main.a"), 12, "{edit}");
        assert_eq!(h.count("main.d"), 3, "{edit}: one row per key");
        assert_no_drift(&h, &["a", "d"], edit);
    }
}

/// How a sync of the random sequence ends.
#[derive(Clone, Copy, Debug)]
enum End {
    /// End of input: everything commits, truncates swap.
    Clean,
    /// A line that is no JSON after everything else.
    BadLine,
    /// A TRACE ERROR in the input, then the end: nothing swaps at the end.
    TraceError,
    /// SIGTERM right after the first swap (when there is one to wait for).
    TermAfterSwap,
    /// SIGKILL once this many states came back.
    KillAfterStates(usize),
}

/// One sync of the sequence: random records for each stream, states every
/// 40 records, COMPLETE for some streams, and the given end. Returns
/// whether it ended cleanly.
fn random_sync(h: &Harness, rng: &mut Rng, step: usize, modes: &[(&str, Mode)], end: End) -> bool {
    let mut input = Vec::new();
    let mut states = 0;
    for (name, _) in modes {
        let n = rng.below(160);
        for i in 0..n {
            let data = if *name == "d" {
                format!(
                    r#"{{"g":"s{step}","n":{i},"k":{},"c":{}}}"#,
                    rng.below(30),
                    rng.below(5)
                )
            } else {
                format!(r#"{{"g":"s{step}","n":{i}}}"#)
            };
            input.push(record(name, 1_700_000_000_000 + rng.below(3) as i64, &data));
            if i % 40 == 39 {
                states += 1;
                input.push(global_state(states));
            }
        }
        states += 1;
        input.push(global_state(states));
        if rng.below(4) != 0 {
            input.push(complete(name));
        }
    }
    // A truncating stream that reports COMPLETE swaps while stdin is open.
    let swaps = modes
        .iter()
        .any(|(name, m)| *m != Mode::Append && input.contains(&complete(name)));
    match end {
        End::Clean => h.write(lines(&input).as_bytes()).code == Some(0),
        End::BadLine | End::TraceError => {
            input.push(match end {
                End::BadLine => "{not json".to_string(),
                _ => r#"{"type":"TRACE","trace":{"type":"ERROR","emitted_at":1,"error":{"message":"source failed"}}}"#.to_string(),
            });
            h.write(lines(&input).as_bytes()).code == Some(0)
        }
        End::TermAfterSwap if swaps => {
            let mut live = h.spawn_write();
            live.send(&lines(&input));
            assert!(live.wait_for_log(SWAPPED), "the swap happens");
            live.terminate();
            false
        }
        End::TermAfterSwap => h.write(lines(&input).as_bytes()).code == Some(0),
        End::KillAfterStates(k) => {
            let mut live = h.spawn_write();
            live.send(&lines(&input));
            // Every state of the input comes back while stdin stays open.
            for _ in 0..k.min(states as usize) {
                live.next_state();
            }
            live.kill();
            false
        }
    }
}

/// Random sequences of syncs (appends, deduplicated appends, overwrites,
/// refreshes, retried generations), each ended cleanly or cut off at a
/// random point: by a bad line, a source error, SIGTERM right after a
/// swap, or SIGKILL after some states. After a clean sync every typed table
/// equals its view; after a cut one, the next sync (here one with no
/// records) makes it so.
#[test]
fn typed_tables_equal_the_views_after_any_sequence_of_syncs() {
    let streams = ["a", "d"];
    for seed in [0x9e37_79b9_7f4a_7c15u64, 1, 77, 4242] {
        let mut rng = Rng(seed);
        let h = tables_harness();
        let mut generation = 1;
        for step in 0..7 {
            // A retry keeps its generation; a new job takes the next.
            if rng.below(3) != 0 {
                generation += 1;
            }
            let a = [Mode::Append, Mode::Overwrite, Mode::Refresh][rng.below(3)];
            let d = [Mode::Append, Mode::Refresh][rng.below(2)];
            let modes = [("a", a), ("d", d)];
            h.write_catalog(&catalog(&modes, generation));
            let end = match rng.below(6) {
                0 => End::BadLine,
                1 => End::TraceError,
                2 => End::TermAfterSwap,
                3 => End::KillAfterStates(rng.below(5)),
                _ => End::Clean,
            };
            let context = format!("seed {seed}, step {step}, {modes:?}, {end:?}");
            if !random_sync(&h, &mut rng, step, &modes, end) {
                // The next sync: no records, nothing replaced.
                h.write_catalog(&catalog(
                    &[("a", Mode::Append), ("d", Mode::Append)],
                    generation,
                ));
                h.write(b"").assert_ok();
            }
            assert_no_drift(&h, &streams, &context);
        }
    }
}
