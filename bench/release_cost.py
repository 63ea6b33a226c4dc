#!/usr/bin/env python3
"""What letting go of the database file while the input is idle costs, and
taking it back (README, "Reading the file during a sync").

Loads N records over S streams (the bench generator's input, cached under
bench/out/inputs), then runs one more sync that sends a small batch of every
stream and a state, pauses until the connector says it let go of the file,
and does so CYCLES times. The connector logs how long each release (a
checkpoint, then DETACH) and each reopen (ATTACH) took; this prints them,
and the time a DuckDB 1.4 reader (if --reader names its Python) needs to
open the file read-only and count one table during a pause.

    bench/release_cost.py --records 10M --streams 200 --cycles 5

Needs the connector built (`cargo build --release`) and Python 3.11+. The
database is kept under bench/out/release-cost/ for reruns (--reuse).
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench  # noqa: E402  (the generator and its cache)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=bench.parse_size, default=bench.parse_size("10M"))
    ap.add_argument("--streams", type=int, default=200)
    ap.add_argument("--cycles", type=int, default=5)
    ap.add_argument("--batch", type=int, default=20, help="records per stream per cycle (default 20)")
    ap.add_argument("--typed-output", choices=["views", "tables", "off"], default="views",
                    help="the config's typed_output (default views, the connector's default)")
    ap.add_argument("--bin", default=str(bench.default_bin()))
    ap.add_argument("--reader", default=None, help="a Python with duckdb 1.4 to time a reader's open")
    ap.add_argument("--reuse", action="store_true", help="keep the database loaded by an earlier run")
    args = ap.parse_args()

    work = HERE / "out" / "release-cost"
    work.mkdir(parents=True, exist_ok=True)
    db = work / f"n{args.records}-s{args.streams}-{args.typed_output}.duckdb"
    msgs, cat, info = bench.ensure_input(HERE / "out", args.records, 42, 5_000, streams=args.streams)
    config = work / "config.json"
    config.write_text(json.dumps({"destination_path": str(db), "release_idle_seconds": 1,
                                  "typed_output": args.typed_output}))
    if not (args.reuse and db.exists()):
        bench.remove_db(db)
        bench.log(f"loading {info['records']} records into {db}")
        started = time.monotonic()
        with open(msgs, "rb") as f:
            subprocess.run([args.bin, "write", "--config", str(config), "--catalog", str(cat)],
                           stdin=f, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        bench.log(f"loaded in {time.monotonic() - started:.1f} s")

    streams = [s["stream"]["name"] for s in json.loads(cat.read_text())["streams"]]
    proc = subprocess.Popen([args.bin, "write", "--config", str(config), "--catalog", str(cat)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    readers = []
    events = []
    cond = threading.Condition()

    def watch_stderr():
        for line in proc.stderr:
            m = re.search(r"(let go of|open again).*?seconds=([0-9.]+)", line)
            if m:
                with cond:
                    events.append((m.group(1), float(m.group(2))))
                    cond.notify_all()

    def drain_stdout():
        for _ in proc.stdout:
            pass

    threading.Thread(target=watch_stderr, daemon=True).start()
    threading.Thread(target=drain_stdout, daemon=True).start()

    def wait_for(kind, count):
        with cond:
            while sum(1 for k, _ in events if k == kind) < count:
                if not cond.wait(timeout=600):
                    raise SystemExit(f"no '{kind}' within 10 minutes")

    first = streams[0]
    for cycle in range(args.cycles):
        lines = []
        for s in streams:
            for i in range(args.batch):
                data = {"id": -1 - i, "cycle": cycle, "pad": "x" * 200}
                lines.append(json.dumps({"type": "RECORD", "record": {"stream": s, "emitted_at": 0, "data": data}}))
        lines.append(json.dumps({"type": "STATE", "state": {"type": "GLOBAL", "global": {"shared_state": {"cycle": cycle}}}}))
        proc.stdin.write("\n".join(lines) + "\n")
        proc.stdin.flush()
        if cycle > 0:
            wait_for("open again", cycle)
        wait_for("let go of", cycle + 1)
        if args.reader:
            t0 = time.monotonic()
            subprocess.run([args.reader, "-c",
                            f"import duckdb; c = duckdb.connect({str(db)!r}, read_only=True); "
                            f"c.execute('SELECT count(*) FROM main._airbyte_raw_{first}').fetchall()"],
                           check=True)
            readers.append(time.monotonic() - t0)
    proc.stdin.close()
    proc.wait()
    released = [s for k, s in events if k == "let go of"]
    reopened = [s for k, s in events if k == "open again"]

    def show(name, xs):
        if xs:
            print(f"{name:<28} median {statistics.median(xs) * 1000:8.1f} ms  "
                  f"(min {min(xs) * 1000:.1f}, max {max(xs) * 1000:.1f}, n={len(xs)})")

    print(f"database: {info['records']:,} records in {args.streams} streams, typed_output {args.typed_output}, "
          f"{os.path.getsize(db) / (1 << 20):,.0f} MiB; {args.batch} records per stream per cycle")
    show("release (checkpoint+close)", released)
    show("reopen (attach)", reopened)
    show("reader open+count (py)", readers)
    return 0 if proc.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
