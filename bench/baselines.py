"""The baselines that destination-duckdb is compared with, each run by
bench.py in a child process of its own so that its wall time and peak RSS
are measured alone.

  duckdb_bulk  DuckDB loads the message file itself with read_ndjson and
               INSERT ... SELECT into the same five-column raw tables.
  per_row      The way the official Python connector loads: json.loads every
               line, buffer the rows, and at every STATE flush them with a
               parameterised INSERT ... VALUES (?, ?, ?, ?, ?) via executemany.
  storage_floor  Not a loader: what DuckDB itself spends storing these rows.
               The rows are first built in their final five-column form in
               in-memory tables (not timed); the timed part copies them into a
               fresh file in one transaction, with all cores, then checkpoints
               and closes. No parsing, no commits along the way: a lower bound
               for any loader that writes the same tables.

Both write a small JSON result file: records loaded, the time spent inside the
process from before connecting to after closing the database (interpreter
start-up and `import duckdb` are left out, which favours the baselines), and
the per-table row counts they saw.
"""
import argparse
import datetime
import json
import os
import sys
import time
import uuid

import duckdb

COLUMNS = ("_airbyte_ab_id VARCHAR, _airbyte_emitted_at TIMESTAMP WITH TIME ZONE, "
           "_airbyte_data JSON, _airbyte_meta JSON, _airbyte_generation_id BIGINT")


def ident(name):
    return '"' + name.replace('"', '""') + '"'


def literal(text):
    return "'" + text.replace("'", "''") + "'"


def load_streams(catalog_path):
    """(name, table, meta JSON text, generation_id) per configured stream."""
    with open(catalog_path, encoding="utf-8") as f:
        catalog = json.load(f)
    out = []
    for cs in catalog["streams"]:
        name = cs["stream"]["name"]
        meta = json.dumps({"sync_id": cs.get("sync_id"), "changes": []}, separators=(",", ":"))
        out.append((name, "main." + ident("_airbyte_raw_" + name), meta, cs.get("generation_id")))
    return out


def fresh_db(path, storage_version):
    for p in (path, path + ".wal"):
        if os.path.exists(p):
            os.remove(p)
    config = {"storage_compatibility_version": storage_version} if storage_version else {}
    return duckdb.connect(path, config=config)


def attach_options(storage_version):
    return f" (STORAGE_VERSION {literal(storage_version)})" if storage_version else ""


def create_tables(con, streams):
    for _, table, _, _ in streams:
        con.execute(f"CREATE TABLE {table} ({COLUMNS})")


def count_rows(con, streams):
    return {name: con.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for name, table, _, _ in streams}


def bulk(a, streams):
    """read_ndjson with an explicit schema: `type` as text and `record` as a
    struct whose `data` field is read as JSON, so DuckDB's JSON reader does
    the parsing (multi-threaded) and data stays JSON text."""
    src = (f"read_ndjson({literal(a.input)}, columns={{'type': 'VARCHAR', "
           f"'record': 'STRUCT(stream VARCHAR, emitted_at BIGINT, data JSON)'}})")
    con = fresh_db(a.db, a.storage_version)
    create_tables(con, streams)
    select = ("SELECT gen_random_uuid()::VARCHAR, to_timestamp({e} / 1000), {d}, ?::JSON, ?::BIGINT "
              "FROM {src} WHERE {where}")
    if a.method == "stage":
        # One pass over the file into a temporary table, then one
        # INSERT ... SELECT per stream from it.
        con.execute("CREATE TEMP TABLE stage AS SELECT record.stream AS stream, record.emitted_at AS e, "
                    f"record.data AS d FROM {src} WHERE type = 'RECORD'")
        for name, table, meta, gen in streams:
            con.execute(f"INSERT INTO {table} " + select.format(e="e", d="d", src="stage", where="stream = ?"),
                        [meta, gen, name])
        con.execute("DROP TABLE stage")
    else:
        # One streaming pass over the file per stream: no staging memory,
        # the file is parsed once per stream.
        for name, table, meta, gen in streams:
            con.execute(f"INSERT INTO {table} " + select.format(
                e="record.emitted_at", d="record.data", src=src,
                where="type = 'RECORD' AND record.stream = ?"), [meta, gen, name])
    con.execute("CHECKPOINT")
    rows = count_rows(con, streams)
    con.close()
    return rows


def per_row(a, streams):
    by_name = {name: (table, meta, gen) for name, table, meta, gen in streams}
    con = fresh_db(a.db, a.storage_version)
    create_tables(con, streams)
    buffers = {name: [] for name in by_name}
    loaded = 0

    def flush():
        # One transaction per flush. Per-statement autocommit (what a bare
        # executemany does) is several times slower still; this is the
        # baseline's best case.
        con.execute("BEGIN TRANSACTION")
        for name, rows in buffers.items():
            if rows:
                con.executemany(f"INSERT INTO {by_name[name][0]} VALUES (?, ?, ?, ?, ?)", rows)
                rows.clear()
        con.execute("COMMIT")

    utc = datetime.timezone.utc
    with open(a.input, "rb") as f:
        for line in f:
            if not line.strip():
                continue
            msg = json.loads(line)
            kind = msg.get("type")
            if kind == "RECORD":
                if a.limit is not None and loaded >= a.limit:
                    break
                rec = msg["record"]
                _, meta, gen = by_name[rec["stream"]]
                buffers[rec["stream"]].append((
                    str(uuid.uuid4()),
                    datetime.datetime.fromtimestamp(rec["emitted_at"] / 1000, utc),
                    json.dumps(rec["data"]),
                    meta,
                    gen,
                ))
                loaded += 1
            elif kind == "STATE":
                flush()
    flush()
    con.execute("CHECKPOINT")
    rows = count_rows(con, streams)
    con.close()
    return rows


def storage_floor(a, streams):
    """Returns (rows, seconds): only the copy into the file is timed."""
    con = duckdb.connect(":memory:")
    src = (f"read_ndjson({literal(a.input)}, columns={{'type': 'VARCHAR', "
           f"'record': 'STRUCT(stream VARCHAR, emitted_at BIGINT, data JSON)'}})")
    con.execute("CREATE TABLE stage AS SELECT record.stream AS stream, record.emitted_at AS e, "
                f"record.data AS d FROM {src} WHERE type = 'RECORD'")
    for i, (name, _, meta, gen) in enumerate(streams):
        con.execute(f"CREATE TABLE rows_{i} AS SELECT gen_random_uuid()::VARCHAR AS i, "
                    "to_timestamp(e / 1000) AS t, d, ?::JSON AS m, ?::BIGINT AS g FROM stage WHERE stream = ?",
                    [meta, gen, name])
    con.execute("DROP TABLE stage")
    for p in (a.db, a.db + ".wal"):
        if os.path.exists(p):
            os.remove(p)
    t0 = time.perf_counter()
    con.execute(f"ATTACH {literal(a.db)} AS dst{attach_options(a.storage_version)}")
    con.execute("BEGIN TRANSACTION")
    for i, (_, table, _, _) in enumerate(streams):
        con.execute(f"CREATE TABLE dst.{table} ({COLUMNS})")
        con.execute(f"INSERT INTO dst.{table} SELECT * FROM rows_{i}")
    con.execute("COMMIT")
    con.execute("CHECKPOINT dst")
    con.execute("DETACH dst")
    elapsed = time.perf_counter() - t0
    con.execute(f"ATTACH {literal(a.db)} AS dst (READ_ONLY)")
    con.execute("USE dst")
    rows = count_rows(con, streams)
    con.close()
    return rows, elapsed


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", choices=["duckdb_bulk", "per_row", "storage_floor"])
    ap.add_argument("--input", required=True, help="AirbyteMessage JSON lines")
    ap.add_argument("--catalog", required=True, help="configured catalog")
    ap.add_argument("--db", required=True, help="DuckDB file to create (replaced if present)")
    ap.add_argument("--result", required=True, help="where to write the JSON result")
    ap.add_argument("--method", choices=["stage", "scan"], default="stage", help="duckdb_bulk: how to split streams")
    ap.add_argument("--limit", type=int, default=None, help="per_row: stop after this many records")
    ap.add_argument("--storage-version", default=None,
                    help="storage format of the new file (e.g. v1.0.0, ours by default); DuckDB's own if unset")
    a = ap.parse_args()

    streams = load_streams(a.catalog)
    t0 = time.perf_counter()
    if a.kind == "storage_floor":
        rows, elapsed = storage_floor(a, streams)
    else:
        rows = bulk(a, streams) if a.kind == "duckdb_bulk" else per_row(a, streams)
        elapsed = time.perf_counter() - t0
    with open(a.result, "w") as f:
        json.dump({"kind": a.kind, "elapsed_s": elapsed, "rows": rows, "records": sum(rows.values()),
                   "duckdb_version": duckdb.__version__}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
