#!/usr/bin/env python3
"""Assertions for scripts/faker_e2e.sh (not meant to be run by hand, but it can be).

    faker_e2e_check.py messages  --label L --src SRC.jsonl --dst DST.jsonl [--state-loaded N]
    faker_e2e_check.py state-file --dst DST.jsonl --out STATE.json
    faker_e2e_check.py catalog   --discover DISCOVER.jsonl --mode incremental_append --out CAT.json
    faker_e2e_check.py tables    --label L --db FILE.duckdb --catalog CAT.json SRC.jsonl [SRC.jsonl ...]

`messages` checks one sync's protocol traffic: every destination stdout line is
one AirbyteMessage, every STATE the source sent comes back in order, unchanged
but for `destinationStats.recordCount` (equal to the records of that stream
since its previous state, and to the source's own `sourceStats.recordCount`).

`state-file` turns the destination's echoed states into a source `--state` file:
the last echoed state per stream, exactly as echoed.

`catalog` builds a configured catalog (all streams incremental/append or
full_refresh/overwrite) from `source-faker discover` output.

`tables` opens the DuckDB file read-only with the `duckdb` Python package and
checks that each `main._airbyte_raw_<stream>` (and its typed view
`main.<stream>`, row for row) holds exactly the records of the
given source outputs (data compared with key order and number spelling kept),
with the raw table layout of the README's "Tables" section.

Exit status 0 when every check passes, 1 otherwise (each failure printed).
"""
import argparse
import collections
import json
import re
import sys

MESSAGE_BODY = {
    "RECORD": "record",
    "STATE": "state",
    "LOG": "log",
    "SPEC": "spec",
    "CONNECTION_STATUS": "connectionStatus",
    "CATALOG": "catalog",
    "TRACE": "trace",
    "CONTROL": "control",
    "DESTINATION_CATALOG": "destination_catalog",
}
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
EXPECTED_COLUMNS = [
    ("_airbyte_ab_id", "VARCHAR"),
    ("_airbyte_emitted_at", "TIMESTAMP WITH TIME ZONE"),
    ("_airbyte_data", "JSON"),
    ("_airbyte_meta", "JSON"),
    ("_airbyte_generation_id", "BIGINT"),
]
MAX_REPORTED = 10  # per kind of failure, to keep the output readable


class Failures:
    def __init__(self, label):
        self.label = label
        self.items = []
        self.kinds = collections.Counter()

    def add(self, kind, text):
        self.kinds[kind] += 1
        if self.kinds[kind] <= MAX_REPORTED:
            self.items.append(text)
        elif self.kinds[kind] == MAX_REPORTED + 1:
            self.items.append(f"... further '{kind}' failures not shown")

    def finish(self, ok_text):
        if self.items:
            print(f"FAIL [{self.label}]:", file=sys.stderr)
            for item in self.items:
                print(f"  - {item}", file=sys.stderr)
            n = sum(self.kinds.values())
            print(f"  ({n} failed assertion(s))", file=sys.stderr)
            return 1
        print(f"ok   [{self.label}] {ok_text}")
        return 0


# ---------------------------------------------------------------------------
# Order- and spelling-preserving JSON: objects as lists of pairs, numbers as
# their literal text, so that two values compare equal only if they would be
# written the same way (bar insignificant whitespace and string escapes).

class Num(str):
    pass


class Obj(list):
    pass


def parse_exact(text):
    return json.loads(text, object_pairs_hook=Obj, parse_int=Num, parse_float=Num,
                      parse_constant=Num)


def canon(value):
    if isinstance(value, Num):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Obj):
        return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + canon(v) for k, v in value) + "}"
    if isinstance(value, list):
        return "[" + ",".join(canon(v) for v in value) + "]"
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    raise TypeError(type(value))


def canon_text(text):
    return canon(parse_exact(text))


def without_key(pairs, key):
    return Obj((k, v) for k, v in pairs if k != key)


def get(pairs, key, default=None):
    for k, v in pairs:
        if k == key:
            return v
    return default


def compact(text):
    """True if the JSON text has no whitespace outside its strings."""
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in " \t\r\n":
            return False
    return True


# ---------------------------------------------------------------------------

def stream_key(descriptor):
    ns = descriptor.get("namespace") or None
    return (ns, descriptor.get("name"))


def key_text(key):
    ns, name = key
    return name if ns is None else f"{ns}.{name}"


def read_source(path, fails=None):
    """Return (records per stream: list of (data_canon, emitted_at)), states: list of
    (line_no, raw_text, parsed, expected_count), log messages)."""
    records = collections.defaultdict(list)
    since_state = collections.Counter()
    states = []
    logs = []
    with open(path, encoding="utf-8") as f:
        for no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                msg = json.loads(line)
            except ValueError:
                if fails:
                    fails.add("source", f"source line {no} is not JSON (the destination should have failed on it)")
                continue
            kind = msg.get("type") if isinstance(msg, dict) else None
            if kind == "RECORD":
                rec = msg["record"]
                key = (rec.get("namespace") or None, rec["stream"])
                raw_data = get(get(parse_exact(line), "record"), "data")
                records[key].append((canon(raw_data), rec.get("emitted_at")))
                since_state[key] += 1
            elif kind == "STATE":
                st = msg["state"]
                st_type = st.get("type", "LEGACY")
                if st_type == "STREAM":
                    key = stream_key(st["stream"]["stream_descriptor"])
                    expected = since_state[key]
                    since_state[key] = 0
                else:
                    expected = sum(since_state.values())
                    since_state.clear()
                states.append((no, line.rstrip("\n"), st, expected))
            elif kind == "LOG":
                logs.append(msg["log"].get("message", ""))
    return records, states, logs


def cmd_messages(a):
    fails = Failures(a.label)
    records, src_states, logs = read_source(a.src, fails)

    # Every destination stdout line is one AirbyteMessage.
    dst_states = []
    types = collections.Counter()
    with open(a.dst, encoding="utf-8", errors="replace") as f:
        for no, line in enumerate(f, 1):
            text = line.rstrip("\n")
            try:
                msg = json.loads(text)
            except ValueError:
                fails.add("stdout", f"destination stdout line {no} is not JSON: {text[:200]!r}")
                continue
            kind = msg.get("type") if isinstance(msg, dict) else None
            body = MESSAGE_BODY.get(kind)
            if body is None or not isinstance(msg.get(body), dict):
                fails.add("stdout", f"destination stdout line {no} is not an AirbyteMessage: {text[:200]!r}")
                continue
            types[kind] += 1
            if not compact(text):
                fails.add("compact", f"destination stdout line {no} is not compact JSON: {text[:200]!r}")
            if kind == "TRACE" and msg["trace"].get("type") == "ERROR":
                fails.add("error", f"destination reported an error (line {no}): {text[:500]}")
            if kind == "STATE":
                dst_states.append((no, text, msg))

    # Every source STATE echoed, in order, unchanged apart from destinationStats.
    if len(dst_states) != len(src_states):
        fails.add("states", f"source emitted {len(src_states)} STATE messages, destination echoed {len(dst_states)}")
    for i, (src, dst) in enumerate(zip(src_states, dst_states), 1):
        s_no, s_text, s_state, expected = src
        d_no, d_text, d_msg = dst
        where = f"state #{i} (source line {s_no}, destination line {d_no})"
        d_state = d_msg["state"]
        src_exact = parse_exact(s_text)
        dst_exact = parse_exact(d_text)
        src_state_exact = without_key(get(src_exact, "state"), "destinationStats")
        dst_state_exact = without_key(get(dst_exact, "state"), "destinationStats")
        if canon(src_state_exact) != canon(dst_state_exact) or canon(without_key(src_exact, "state")) != canon(without_key(dst_exact, "state")):
            fails.add("echo", f"{where} not echoed unchanged:\n      sent: {s_text[:400]}\n      echo: {d_text[:400]}")
            continue
        stats = d_state.get("destinationStats")
        count = stats.get("recordCount") if isinstance(stats, dict) else None
        if not isinstance(count, (int, float)) or isinstance(count, bool):
            fails.add("stats", f"{where}: echo lacks a numeric destinationStats.recordCount: {d_text[:400]}")
            continue
        source_count = (s_state.get("sourceStats") or {}).get("recordCount")
        if count != expected:
            fails.add("stats", f"{where}: destinationStats.recordCount={count}, expected {expected} (records of "
                               f"the {s_state.get('type')} state's scope since the previous state; the source's "
                               f"sourceStats.recordCount={source_count})")
        elif source_count is not None and count != source_count:
            fails.add("stats", f"{where}: destinationStats.recordCount={count} matches the {expected} records "
                               f"sent, but not the source's own sourceStats.recordCount={source_count}")

    # The source really resumed from the states it was given (source-faker logs them).
    if a.state_loaded is not None:
        loaded = [m for m in logs if m.startswith("Setting state of SourceFaker stream to ") and not m.endswith(" {}")]
        if len(loaded) != a.state_loaded:
            fails.add("resume", f"expected the source to log {a.state_loaded} non-empty 'Setting state' lines "
                                f"(one per stream), found {len(loaded)}: the --state file was not taken up")

    counts = ", ".join(f"{key_text(k)}={len(v)}" for k, v in sorted(records.items(), key=lambda kv: kv[0][1]))
    mix = ", ".join(f"{k}={v}" for k, v in sorted(types.items()))
    return fails.finish(f"source records: {counts}; {len(src_states)} states sent, "
                        f"{len(dst_states)} echoed with matching counts; destination stdout: {mix}")


def cmd_state_file(a):
    last = collections.OrderedDict()
    with open(a.dst, encoding="utf-8") as f:
        for line in f:
            msg = json.loads(line)
            if msg.get("type") == "STATE":
                st = msg["state"]
                if st.get("type") == "STREAM":
                    last[stream_key(st["stream"]["stream_descriptor"])] = st
                else:
                    last[("<global>", None)] = st
    if not last:
        print("FAIL [state file]: the destination echoed no STATE to resume from", file=sys.stderr)
        return 1
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(list(last.values()), f)
    print(f"ok   [state file] {len(last)} echoed state(s) -> {a.out}")
    return 0


def cmd_catalog(a):
    """Configured catalog from `source-faker discover` output, every stream in one mode."""
    catalog = None
    with open(a.discover, encoding="utf-8") as f:
        for line in f:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if isinstance(msg, dict) and msg.get("type") == "CATALOG":
                catalog = msg["catalog"]
    if catalog is None:
        print(f"FAIL [catalog] no CATALOG message in {a.discover}", file=sys.stderr)
        return 1
    streams = []
    for stream in catalog["streams"]:
        if a.mode == "incremental_append":
            streams.append({"stream": stream, "sync_mode": "incremental", "destination_sync_mode": "append",
                            "cursor_field": stream["default_cursor_field"],
                            "primary_key": stream["source_defined_primary_key"]})
        else:
            streams.append({"stream": stream, "sync_mode": "full_refresh", "destination_sync_mode": "overwrite"})
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump({"streams": streams}, f, indent=1)
    return 0


def cmd_tables(a):
    import duckdb

    fails = Failures(a.label)
    with open(a.catalog, encoding="utf-8") as f:
        catalog = json.load(f)
    expected = collections.defaultdict(list)
    for src in a.sources:
        records, _, _ = read_source(src)
        for key, rows in records.items():
            expected[key].extend(rows)
    streams = [s["stream"]["name"] for s in catalog["streams"]]

    con = duckdb.connect(a.db, read_only=True)
    try:
        tables = con.execute(
            "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = current_database() "
            "ORDER BY 1, 2").fetchall()
        in_main = {t for s, t in tables if s == "main"}
        wanted = {f"_airbyte_raw_{s}" for s in streams}
        if in_main != wanted:
            fails.add("tables", f"tables in schema main are {sorted(in_main)}, expected {sorted(wanted)}")
        others = [f"{s}.{t}" for s, t in tables if s != "main"]
        if others:
            print(f"note [{a.label}] tables outside schema main: {others}")

        summary = []
        for name in streams:
            table = f"_airbyte_raw_{name}"
            if table not in in_main:
                continue
            cols = con.execute(
                "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = current_database() "
                "AND schema_name = 'main' AND table_name = ? ORDER BY column_index", [table]).fetchall()
            if [tuple(c) for c in cols] != EXPECTED_COLUMNS:
                fails.add("columns", f"main.{table} columns are {cols}, expected {EXPECTED_COLUMNS}")
                continue
            rows = con.execute(
                f'SELECT _airbyte_ab_id, epoch_ms(_airbyte_emitted_at), _airbyte_data::VARCHAR, '
                f'_airbyte_meta::VARCHAR, _airbyte_generation_id FROM main."{table}"').fetchall()
            want = expected.get((None, name), [])
            summary.append(f"{name}={len(rows)}")
            if len(rows) != len(want):
                fails.add("count", f"main.{table} holds {len(rows)} rows, expected {len(want)} "
                                   f"(records the source sent in {', '.join(a.sources)})")
            ids = [r[0] for r in rows]
            bad_ids = [i for i in ids if not isinstance(i, str) or not UUID4.match(i)]
            if bad_ids:
                fails.add("ab_id", f"main.{table}: {len(bad_ids)} _airbyte_ab_id values are not UUID v4, e.g. {bad_ids[0]!r}")
            if len(set(ids)) != len(ids):
                fails.add("ab_id", f"main.{table}: _airbyte_ab_id has {len(ids) - len(set(ids))} duplicates")
            meta_bad = [r[3] for r in rows if json.loads(r[3]) != {"sync_id": None, "changes": []}]
            if meta_bad:
                fails.add("meta", f"main.{table}: {len(meta_bad)} rows have _airbyte_meta other than "
                                  f'{{"sync_id":null,"changes":[]}}, e.g. {meta_bad[0]}')
            gen_bad = [r[4] for r in rows if r[4] is not None]
            if gen_bad:
                fails.add("generation", f"main.{table}: {len(gen_bad)} rows have a _airbyte_generation_id "
                                        f"({gen_bad[0]}) though the catalog has none")
            # The typed view: one row per raw row (append/overwrite), one
            # column per schema property, and faker's values all fit.
            props = set((next(s for s in catalog["streams"] if s["stream"]["name"] == name)
                         ["stream"]["json_schema"].get("properties") or {}))
            typed_cols = {c for (c,) in con.execute(
                "SELECT column_name FROM duckdb_columns() WHERE database_name = current_database() "
                "AND schema_name = 'main' AND table_name = ? AND column_name NOT LIKE '\\_airbyte\\_%' ESCAPE '\\'",
                [name]).fetchall()}
            if typed_cols != props:
                fails.add("typed", f"main.{name} has columns {sorted(typed_cols)}, the schema {sorted(props)}")
            n_typed, n_cast_errors = con.execute(
                f"SELECT count(*), count(*) FILTER (WHERE _airbyte_meta::VARCHAR LIKE '%DESTINATION_TYPECAST_ERROR%') "
                f'FROM main."{name}"').fetchone()
            if n_typed != len(rows) or n_cast_errors:
                fails.add("typed", f"main.{name} has {n_typed} rows ({n_cast_errors} with typecast errors), "
                                   f"raw has {len(rows)}")
            got = collections.Counter((canon_text(r[2]), r[1]) for r in rows)
            exp = collections.Counter(want)
            missing = exp - got
            extra = got - exp
            if missing or extra:
                fails.add("content", f"main.{table}: {sum(missing.values())} sent records are missing and "
                                     f"{sum(extra.values())} rows were not sent (data+emitted_at compared exactly)")
                for (data, ms), _ in list(missing.items())[:2]:
                    fails.add("content-sample", f"missing from main.{table}: emitted_at={ms} data={data[:300]}")
                for (data, ms), _ in list(extra.items())[:2]:
                    fails.add("content-sample", f"unexpected in main.{table}: emitted_at={ms} data={data[:300]}")
    finally:
        con.close()
    return fails.finish(f"{a.db}: " + ", ".join(summary) + " rows, content identical to the records sent")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("messages")
    m.add_argument("--label", required=True)
    m.add_argument("--src", required=True)
    m.add_argument("--dst", required=True)
    m.add_argument("--state-loaded", type=int)
    s = sub.add_parser("state-file")
    s.add_argument("--dst", required=True)
    s.add_argument("--out", required=True)
    c = sub.add_parser("catalog")
    c.add_argument("--discover", required=True)
    c.add_argument("--mode", required=True, choices=["incremental_append", "full_refresh_overwrite"])
    c.add_argument("--out", required=True)
    t = sub.add_parser("tables")
    t.add_argument("--label", required=True)
    t.add_argument("--db", required=True)
    t.add_argument("--catalog", required=True)
    t.add_argument("sources", nargs="+")
    a = ap.parse_args()
    return {"messages": cmd_messages, "state-file": cmd_state_file, "catalog": cmd_catalog,
            "tables": cmd_tables}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
