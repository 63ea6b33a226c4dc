"""Reads a DuckDB file with the `duckdb` package this Python has, for the
tests' cross-version checks: stdin is JSON {"db": path, "queries": [sql]},
stdout is JSON [rows per query], each value text or null (the queries cast
to VARCHAR themselves). The session time zone is UTC, so zoned values print
as the tests' own reader (no ICU) prints them."""
import json
import sys

import duckdb

job = json.load(sys.stdin)
con = duckdb.connect(job["db"], read_only=True)
con.execute("SET TimeZone = 'UTC'")
out = []
for sql in job["queries"]:
    out.append([[None if v is None else str(v) for v in row] for row in con.execute(sql).fetchall()])
json.dump({"version": duckdb.__version__, "rows": out}, sys.stdout)
