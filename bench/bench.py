"""Benchmark destination-duckdb (`ours`) against baselines on the same
generated Airbyte input, on the same machine, in the same run:

  ours         $BIN write --config CFG --catalog CAT < input, into a fresh file,
               with the binary's default config (whatever its default
               typed_output is)
  ours_off     the same with "typed_output": "off" (raw tables only)
  ours_views   the same with "typed_output": "views"
  ours_tables  the same with "typed_output": "tables" (typed tables written
               as the records arrive, deduplicated ones merged at the end)
  duckdb_bulk  DuckDB's own read_ndjson + INSERT ... SELECT (bench/baselines.py)
  per_row      json.loads + executemany per STATE, like the official Python
               connector (bench/baselines.py), on a capped prefix of the input
  storage_floor  not a loader: DuckDB copying the same rows, already built in
               memory, into a fresh file in one transaction (bench/baselines.py);
               only the copy is timed. What storing these rows costs at least.

With --peers (or naming them in --contenders), other tools that load the same
records into DuckDB run too, each from its own virtualenv (bench/peers.py):
pyairbyte, dlt and target_duckdb. Their rows are counted per stream in the
tables they create; a wrong count is reported in the table and makes the run
exit non-zero at the end, after every contender has run.

Inputs are generated for every --sizes x --streams pair (the same total
records spread over 3, 21, 200 ... streams). Every contender runs in a child
process of its own; wall time and peak RSS (wait4 rusage) are those of that
child. Each result is checked: the row counts of main._airbyte_raw_<stream>
must match the input, `ours*` must echo every STATE, and every typed relation
must hold one row per record (append) or per distinct key (append_dedup).
Any mismatch exits non-zero. After the table, a TARGETS block prints each
target (bench/README.md, "Targets") that the run measured, with its ratio and
PASS or MISS (a MISS does not change the exit code). Run it through bench/run, which
prepares the Python environment. See bench/README.md.
"""
import argparse
import datetime
import hashlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb

import peers as peerlib

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
GENERATOR = REPO / "scripts" / "generate_input.py"
BASELINES = HERE / "baselines.py"
# The storage format every contender's file is written in: the connector's
# default `storage_version` (README, Configuration), which DuckDB 1.0 and later
# can read. The Python baselines are told to write it too, so they store the
# same tables the same way (DuckDB 2.0's own default format compresses strings
# differently; see bench/README.md, "Caveats").
STORAGE_VERSION = "v1.0.0"
CONTENDERS = ("ours", "ours_off", "ours_views", "ours_tables", "duckdb_bulk", "per_row", "storage_floor")
PEERS = tuple(peerlib.PEERS)
# typed_output each of our contenders sets in its config; None = the binary's default.
TYPED = {"ours": None, "ours_off": "off", "ours_views": "views", "ours_tables": "tables"}
# What information_schema.tables says for each kind of typed relation.
RELATION_KIND = {"VIEW": "views", "BASE TABLE": "tables"}
MIB_LIMIT = 256
RAW_COLUMNS = ["_airbyte_ab_id", "_airbyte_emitted_at", "_airbyte_data", "_airbyte_meta", "_airbyte_generation_id"]


class BenchError(Exception):
    pass


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def parse_size(text):
    t = text.strip().lower().replace("_", "")
    mult = 1
    if t.endswith("k"):
        mult, t = 1_000, t[:-1]
    elif t.endswith("m"):
        mult, t = 1_000_000, t[:-1]
    try:
        n = int(float(t) * mult)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a record count: {text!r}")
    if n <= 0:
        raise argparse.ArgumentTypeError(f"record count must be positive: {text!r}")
    return n


def default_bin():
    target = os.environ.get("CARGO_TARGET_DIR") or str(Path.home() / ".cache/destination-duckdb/target")
    return str(Path(target) / "release" / "destination-duckdb")


# ---------------------------------------------------------------- inputs

def generator_digest():
    return hashlib.sha256(GENERATOR.read_bytes()).hexdigest()[:8]


META_VERSION = 2


def scan_input(path):
    """Count records per stream, and keep every STATE with the
    destinationStats.recordCount the spec asks for (for STREAM states: the
    records of that stream since its previous state). The generator writes a
    fixed key order, so a prefix test classifies nearly every line; anything
    else is parsed."""
    rec_prefix = b'{"type":"RECORD","record":{"stream":"'
    state_prefix = b'{"type":"STATE"'
    per_stream, since, states = {}, {}, []

    def record(namespace, name):
        per_stream[name] = per_stream.get(name, 0) + 1
        since[(namespace or "", name)] = since.get((namespace or "", name), 0) + 1

    def state(st):
        expected = None
        if st.get("type") == "STREAM":
            desc = st["stream"]["stream_descriptor"]
            key = (desc.get("namespace") or "", desc["name"])
            expected = since.pop(key, 0)
        states.append({"state": st, "record_count": expected})

    with open(path, "rb") as f:
        for line in f:
            if line.startswith(rec_prefix):
                end = line.index(b'"', len(rec_prefix))
                record(None, line[len(rec_prefix):end].decode())
            elif line.startswith(state_prefix):
                state(json.loads(line)["state"])
            elif line.strip():
                msg = json.loads(line)
                if msg.get("type") == "RECORD":
                    record(msg["record"].get("namespace"), msg["record"]["stream"])
                elif msg.get("type") == "STATE":
                    state(msg["state"])
    return {"version": META_VERSION, "records": sum(per_stream.values()), "per_stream": per_stream,
            "states": len(states), "state_messages": states, "bytes": os.path.getsize(path)}


def ensure_input(work, n, seed, state_every, mode="append", streams=3):
    """Generated input for n records over `streams` streams, cached under
    work/inputs keyed by size, streams, seed, state interval, mode and the
    generator's content. The generator writes straight to disk; its output
    and catalog are written under temporary names and renamed, so an
    interrupted run never leaves a half file that looks done."""
    d = work / "inputs"
    d.mkdir(parents=True, exist_ok=True)
    key = f"n{n}-streams{streams}-seed{seed}-state{state_every}-gen{generator_digest()}"
    if mode != "append":
        key += f"-{mode}"
    msgs, cat, meta = d / f"{key}.jsonl", d / f"{key}.catalog.json", d / f"{key}.meta.json"
    if msgs.exists() and cat.exists():
        try:
            info = json.loads(meta.read_text())
        except (OSError, ValueError):
            info = {}
        if info.get("version") == META_VERSION and info.get("bytes") == msgs.stat().st_size:
            return msgs, cat, info
    else:
        log(f"generating {n} records over {streams} streams (seed {seed}, a state every {state_every}) -> {msgs}")
        tmp_msgs, tmp_cat = d / f".{key}.jsonl.tmp", d / f".{key}.catalog.json.tmp"
        subprocess.run([sys.executable, str(GENERATOR), "--records", str(n), "--seed", str(seed),
                        "--state-every", str(state_every), "--mode", mode, "--streams", str(streams),
                        "--out", str(tmp_msgs), "--catalog", str(tmp_cat)],
                       check=True)
        os.replace(tmp_cat, cat)
        os.replace(tmp_msgs, msgs)
    info = scan_input(msgs)
    if info["records"] != n:
        raise BenchError(f"{msgs} holds {info['records']} records, expected {n}")
    meta.write_text(json.dumps(info))
    return msgs, cat, info


def warm_cache(path):
    """Read the file once so every contender starts with it in the page cache."""
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass


# ---------------------------------------------------------------- running

def tree_rss_mib(pid):
    """Resident memory of a process and all its descendants, MiB (shared
    pages counted in each)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except (OSError, ValueError):
            pass
    return total / 1024


def mem_available_mib():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    return float("inf")


class Watchdog(threading.Thread):
    """Kills a child's process group when the group's resident memory passes
    limit_mib, or when the machine is about to run out (MemAvailable below
    reserve_mib): the peers can take many GB, and the machine is shared.
    Polls from a thread of its own so the wall time of the child is not
    quantised by the polling."""

    def __init__(self, pid, limit_mib, reserve_mib):
        super().__init__(daemon=True)
        self.pid, self.limit, self.reserve = pid, limit_mib, reserve_mib
        self.done, self.reason = threading.Event(), None

    def run(self):
        while not self.done.wait(0.5):
            rss, avail = tree_rss_mib(self.pid), mem_available_mib()
            if rss > self.limit or avail < self.reserve:
                self.reason = (f"killed at {rss:,.0f} MiB resident (limit {self.limit:,} MiB), "
                               f"{avail:,.0f} MiB left on the machine (reserve {self.reserve:,} MiB)")
                try:
                    os.killpg(self.pid, signal.SIGKILL)
                except OSError:
                    pass
                return


def run_child(argv, stdin_path, stdout_path, stderr_path, env=None, cwd=None, rss_limit_mib=None,
              reserve_mib=None):
    """Run one child; return (exit code, wall seconds, peak RSS MiB, why it
    was killed or None). The peak is the child's ru_maxrss from wait4, which
    Linux reports as the largest of the child and the descendants it waited
    for (not their sum). With rss_limit_mib the child runs in a process group
    of its own, watched by a Watchdog."""
    with open(stdin_path, "rb") as fin, open(stdout_path, "wb") as fout, open(stderr_path, "wb") as ferr:
        t0 = time.perf_counter()
        p = subprocess.Popen(argv, stdin=fin, stdout=fout, stderr=ferr, env=env, cwd=cwd,
                             start_new_session=rss_limit_mib is not None)
        dog = None
        if rss_limit_mib is not None:
            dog = Watchdog(p.pid, rss_limit_mib, reserve_mib)
            dog.start()
        try:
            _, status, usage = os.wait4(p.pid, 0)
        except BaseException:
            p.kill()
            p.wait()
            raise
        finally:
            if dog:
                dog.done.set()
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
    if dog:
        dog.join()
    # Linux reports ru_maxrss in KiB.
    return p.returncode, wall, usage.ru_maxrss / 1024, dog.reason if dog else None


def tail(path, limit=2000):
    try:
        data = Path(path).read_bytes()
    except OSError:
        return ""
    return data[-limit:].decode("utf-8", "replace")


def remove_db(db):
    """The database and the files the connector keeps beside it."""
    for suffix in ("", ".wal", ".writer.lock"):
        Path(str(db) + suffix).unlink(missing_ok=True)


def verify_tables(db, catalog_path, expected, who):
    """Row counts of main._airbyte_raw_<stream> must equal the input's, each
    table must have the five raw columns, and the file must be in
    STORAGE_VERSION's format."""
    catalog = json.loads(Path(catalog_path).read_text())
    con = duckdb.connect(str(db), read_only=True)
    try:
        problems, total = [], 0
        tags = con.execute("SELECT tags FROM duckdb_databases() WHERE database_name = current_database()").fetchone()[0]
        version = (tags or {}).get("storage_version", "")
        if not version.startswith(STORAGE_VERSION):
            problems.append(f"the file is in storage format {version!r}, not {STORAGE_VERSION}")
        for cs in catalog["streams"]:
            name = cs["stream"]["name"]
            table = "_airbyte_raw_" + name
            cols = [r[0] for r in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = 'main' "
                "AND table_name = ? ORDER BY ordinal_position", [table]).fetchall()]
            if not cols:
                problems.append(f"table main.{table} is missing")
                continue
            missing = [c for c in RAW_COLUMNS if c not in cols]
            if missing:
                problems.append(f"main.{table} lacks columns {missing}")
            got = con.execute(f'SELECT count(*) FROM main."{table}"').fetchone()[0]
            want = expected["per_stream"].get(name, 0)
            total += got
            if got != want:
                problems.append(f"main.{table} has {got} rows, expected {want}")
        if total != expected["records"]:
            problems.append(f"{total} rows in all, expected {expected['records']}")
    finally:
        con.close()
    if problems:
        raise BenchError(f"{who}: wrong result in {db}:\n  " + "\n  ".join(problems))
    return total


def check_ours_stdout(stdout_path, info, who="ours"):
    """Every stdout line must be a JSON AirbyteMessage and none a TRACE
    ERROR; the STATEs must come back one for one, in order, unchanged but for
    destinationStats, whose recordCount must be right for STREAM states."""
    echoed, errors = [], []
    with open(stdout_path, "rb") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                msg = json.loads(line)
            except ValueError:
                raise BenchError(f"{who}: stdout line {i} is not JSON: {line[:200]!r}")
            kind = msg.get("type")
            if kind == "STATE":
                echoed.append(msg.get("state") or {})
            elif kind == "TRACE" and (msg.get("trace") or {}).get("type") == "ERROR":
                errors.append((msg["trace"].get("error") or {}).get("message"))
    if errors:
        raise BenchError(f"{who}: reported errors: {errors}")
    expected = info["state_messages"]
    if len(echoed) != len(expected):
        raise BenchError(f"{who}: echoed {len(echoed)} STATE messages, expected {len(expected)}")
    for i, (got, want) in enumerate(zip(echoed, expected), 1):
        stats = got.pop("destinationStats", None)
        sent = dict(want["state"])
        sent.pop("destinationStats", None)
        if got != sent:
            raise BenchError(f"{who}: STATE #{i} echoed as {json.dumps(got)[:300]}, sent {json.dumps(sent)[:300]}")
        if want["record_count"] is not None:
            count = (stats or {}).get("recordCount")
            if count != want["record_count"]:
                raise BenchError(f"{who}: STATE #{i} has destinationStats.recordCount {count!r}, "
                                 f"expected {want['record_count']}")
    return len(echoed)


SCAN_TYPED = """
import json, sys, time, duckdb
db, names, key = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
con = duckdb.connect(db, read_only=True)
con.execute("SET enable_progress_bar = false")
kinds = dict(con.execute("SELECT table_name, table_type FROM information_schema.tables "
                         "WHERE table_schema = 'main'").fetchall())
typed, t0 = {}, time.perf_counter()
for n in names:
    if n in kinds:
        typed[n] = con.execute(f'SELECT count(*), sum(hash(t)) FROM main."{n}" t').fetchone()[0]
seconds = time.perf_counter() - t0
raw, keys = {}, {}
for n in names:
    raw[n] = con.execute(f'SELECT count(*) FROM main."_airbyte_raw_{n}"').fetchone()[0]
    if key and n in typed:
        expr = " || chr(31) || ".join(f"coalesce(json_extract_string(_airbyte_data, '{p}'), chr(30))" for p in key[n])
        keys[n] = con.execute(f'SELECT count(DISTINCT {expr}) FROM main."_airbyte_raw_{n}"').fetchone()[0]
print(json.dumps({"seconds": seconds if typed else None, "typed": typed, "raw": raw, "keys": keys,
                  "kinds": {n: kinds.get(n) for n in names}}))
"""


def json_path(field_path):
    return "$" + "".join('."' + part.replace('"', '\\"') + '"' for part in field_path)


def scan_typed(db, catalog_path, who, want_kind):
    """Finds the typed relation of each stream (main."<stream>"), checks its
    kind (view or table) against want_kind ("views", "tables", "off", or None
    for whatever the binary's default is, as long as every stream has the
    same), reads each whole (a hash over all columns of every row) and checks
    it holds one row per raw row, or per distinct primary key for
    append_dedup streams. Returns (seconds the scans took, the kind found):
    the query-side cost of views versus tables. Runs in a child process:
    memory this process touches would inflate the peak RSS that later
    children (forked from it) report."""
    catalog = json.loads(Path(catalog_path).read_text())
    names = [cs["stream"]["name"] for cs in catalog["streams"]]
    dedup = {cs["stream"]["name"]: [json_path(p) for p in cs.get("primary_key") or []]
             for cs in catalog["streams"] if cs.get("destination_sync_mode") == "append_dedup"}
    p = subprocess.run([sys.executable, "-c", SCAN_TYPED, str(db), json.dumps(names), json.dumps(dedup)],
                       capture_output=True, text=True)
    if p.returncode != 0:
        raise BenchError(f"{who}: reading the typed relations failed:\n{p.stderr[-2000:]}")
    result = json.loads(p.stdout)
    found = {RELATION_KIND.get(k, k) if k else "off" for k in result["kinds"].values()}
    if len(found) != 1:
        raise BenchError(f"{who}: streams have different typed relations: {result['kinds']}")
    kind = found.pop()
    if want_kind is not None and kind != want_kind:
        raise BenchError(f"{who}: typed_output {want_kind} left typed relations of kind {kind}: {result['kinds']}")
    for name in names:
        if name not in result["typed"]:
            continue
        want, what = result["raw"][name], "raw rows"
        if name in dedup:
            want, what = (result["keys"][name], "distinct keys") if dedup[name] else (want, "raw rows")
        if result["typed"][name] != want:
            raise BenchError(f"{who}: typed relation main.{name} has {result['typed'][name]} rows, "
                             f"expected {want} ({what})")
    return result["seconds"], kind


def run_ours(args, run_dir, tag, msgs, cat, info, who="ours"):
    db = run_dir / f"{who}-{tag}.duckdb"
    cfg = run_dir / f"{who}-{tag}.config.json"
    out, err = run_dir / f"{who}-{tag}.stdout", run_dir / f"{who}-{tag}.stderr"
    remove_db(db)
    config = {"destination_path": str(db)}
    if TYPED[who] is not None:
        config["typed_output"] = TYPED[who]
    cfg.write_text(json.dumps(config))
    code, wall, rss, _ = run_child([args.bin, "write", "--config", str(cfg), "--catalog", str(cat)], msgs, out, err)
    if code != 0:
        raise BenchError(f"{who}: exit code {code}\n--- stderr (tail) ---\n{tail(err)}\n--- stdout (tail) ---\n{tail(out)}")
    states = check_ours_stdout(out, info, who)
    rows = verify_tables(db, cat, info, who)
    query_s, kind = scan_typed(db, cat, who, TYPED[who])
    if not args.keep_db:
        remove_db(db)
    return {"records": rows, "seconds": wall, "wall_s": wall, "peak_rss_mib": rss, "states_echoed": states,
            "typed_scan_s": query_s, "typed_output": kind}


def run_baseline(args, kind, run_dir, tag, msgs, cat, info, extra):
    db = run_dir / f"{kind}-{tag}.duckdb"
    res = run_dir / f"{kind}-{tag}.result.json"
    out, err = run_dir / f"{kind}-{tag}.stdout", run_dir / f"{kind}-{tag}.stderr"
    remove_db(db)
    if res.exists():
        res.unlink()
    argv = [sys.executable, str(BASELINES), kind, "--input", str(msgs), "--catalog", str(cat),
            "--db", str(db), "--result", str(res), "--storage-version", STORAGE_VERSION] + extra
    code, wall, rss, _ = run_child(argv, os.devnull, out, err)
    if code != 0 or not res.exists():
        raise BenchError(f"{kind}: exit code {code}\n--- stderr (tail) ---\n{tail(err)}")
    result = json.loads(res.read_text())
    rows = verify_tables(db, cat, info, kind)
    if result["records"] != rows:
        raise BenchError(f"{kind}: reported {result['records']} records, tables hold {rows}")
    if not args.keep_db:
        remove_db(db)
    # Throughput uses the time measured inside the child (connect to close),
    # leaving out interpreter start-up and `import duckdb`: in the baselines' favour.
    return {"records": rows, "seconds": result["elapsed_s"], "wall_s": wall, "peak_rss_mib": rss}


def singer_input(msgs, cat):
    """The Singer version of an input, for target_duckdb: converted once,
    untimed, and cached next to it."""
    path = Path(str(msgs)[:-len(".jsonl")] + ".singer.jsonl")
    if not path.exists() or path.stat().st_mtime < Path(msgs).stat().st_mtime:
        log(f"converting {msgs.name} to Singer messages for target_duckdb")
        peerlib.to_singer(msgs, cat, path)
    return path


def run_peer(args, name, run_dir, tag, msgs, cat, info):
    """One peer in a child process of its own, from its own virtualenv; its
    rows are then counted per stream (by a second, untimed child in the same
    virtualenv, whose duckdb wrote the file). A wrong count does not stop the
    run: it is returned as "error" and fails the run at the end."""
    py = peerlib.python(name)
    # DuckDB names the database after the file: keep it an identifier.
    stem = f"{name}_{tag}".replace("-", "_")
    db, scratch = run_dir / f"{stem}.duckdb", run_dir / f"{stem}.scratch"
    res = run_dir / f"{stem}.result.json"
    out, err = run_dir / f"{stem}.stdout", run_dir / f"{stem}.stderr"
    remove_db(db)
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    if res.exists():
        res.unlink()
    env = dict(os.environ, **peerlib.CHILD_ENV)
    if name == "target_duckdb":
        cfg = scratch / "config.json"
        cfg.write_text(json.dumps(peerlib.target_duckdb_config(db, args.mode)))
        argv, stdin = [str(py.parent / "target-duckdb"), "--config", str(cfg)], singer_input(msgs, cat)
        env["TMPDIR"] = str(scratch)  # its per-batch CSV files
    else:
        argv = [str(py), str(HERE / "peers.py"), "run", name, "--input", str(msgs), "--catalog", str(cat),
                "--db", str(db), "--scratch", str(scratch), "--result", str(res), "--mode", args.mode]
        stdin = os.devnull
    code, wall, rss, killed = run_child(argv, stdin, out, err, env=env, cwd=str(scratch),
                                        rss_limit_mib=args.peer_rss_limit, reserve_mib=args.peer_mem_reserve)
    if killed:
        # Not a wrong result but no result either: shown as such, and the
        # run goes on with the other contenders.
        log(f"{name}: {killed} after {wall:.0f} s")
        if not args.keep_db:
            remove_db(db)
            shutil.rmtree(scratch, ignore_errors=True)
        return {"records": 0, "seconds": wall, "wall_s": wall, "peak_rss_mib": rss, "killed": killed,
                "error": f"{name}: {killed} after {wall:.0f} s ({tag})"}
    if code != 0:
        raise BenchError(f"{name}: exit code {code}\n--- stderr (tail) ---\n{tail(err)}")
    # target-duckdb is timed whole, like ours; the Python peers from after
    # their imports to the end of the load, like the baselines.
    seconds = json.loads(res.read_text())["elapsed_s"] if res.exists() else wall
    p = subprocess.run([str(py), str(HERE / "peers.py"), "count", name, "--db", str(db), "--catalog", str(cat)],
                       capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise BenchError(f"{name}: counting its rows failed:\n{p.stderr[-2000:]}")
    counts = json.loads(p.stdout)
    problems, rows = [], 0
    for stream, want in info["per_stream"].items():
        c = counts.get(stream) or {"error": "not in the catalog"}
        if "error" in c:
            problems.append(f"stream {stream}: {c['error']}")
            continue
        rows += c["rows"]
        if c["rows"] != want:
            problems.append(f"{c['table']} has {c['rows']:,} rows, expected {want:,}")
    if not args.keep_db:
        remove_db(db)
        shutil.rmtree(scratch, ignore_errors=True)
    r = {"records": rows, "seconds": seconds, "wall_s": wall, "peak_rss_mib": rss}
    if problems:
        r["error"] = f"{name}: wrong result ({tag}):\n  " + "\n  ".join(problems)
        log(r["error"])
    return r


def summarize(runs, input_bytes):
    secs = statistics.median(r["seconds"] for r in runs)
    records = runs[0]["records"]
    scans = [r["typed_scan_s"] for r in runs if r.get("typed_scan_s") is not None]
    errors = [r["error"] for r in runs if r.get("error")]
    return {
        "records": records,
        "errors": errors,
        "input_bytes": input_bytes,
        "median_seconds": secs,
        "median_wall_s": statistics.median(r["wall_s"] for r in runs),
        "records_per_s": records / secs,
        "mb_per_s": input_bytes / 1e6 / secs,
        "median_peak_rss_mib": statistics.median(r["peak_rss_mib"] for r in runs),
        "median_typed_scan_s": statistics.median(scans) if scans else None,
        "typed_output": runs[0].get("typed_output"),
        "killed": [r["killed"] for r in runs if r.get("killed")],
        "runs": runs,
    }


# ---------------------------------------------------------------- targets

def target(name, value, op, threshold, unit="x"):
    """One line of the TARGETS block. op is '>=', '<=' or None (reported only)."""
    if op is None:
        verdict = "info"
    elif op == ">=":
        verdict = "PASS" if value >= threshold else "MISS"
    else:
        verdict = "PASS" if value <= threshold else "MISS"
    return {"target": name, "value": value, "op": op, "threshold": threshold, "unit": unit, "verdict": verdict}


def compute_targets(results, mode):
    """The targets (bench/README.md, "Targets") that this run has the inputs
    for, in that section's order. Each compares contenders of the same run
    (same machine load), medians over the repeats."""
    by = {(r["records"], r["streams"]): r["contenders"] for r in results}
    sizes = sorted({r["records"] for r in results})
    streams = sorted({r["streams"] for r in results})
    out = []

    def ours(n, s):
        return by.get((n, s), {}).get("ours")

    # Typed tables as the default output, at >= 0.8x the throughput of
    # raw-only output: the typed tables' ratio (the default's when the default
    # is tables, else ours_tables'), and which output the default is.
    for n in sizes:
        for s in streams:
            c = by.get((n, s), {})
            kind = c["ours"]["typed_output"] if "ours" in c else None
            tables = c["ours"] if kind == "tables" else c.get("ours_tables")
            if tables and "ours_off" in c:
                who = "default (tables)" if kind == "tables" else "ours_tables"
                out.append(target(f"{n:,} records, {s} streams, {mode}: typed tables, {who} vs off, throughput",
                                  tables["records_per_s"] / c["ours_off"]["records_per_s"], ">=", 0.8))
            if kind is not None:
                out.append(dict(target(f"{n:,} records, {s} streams: the default typed output is tables",
                                       1.0 if kind == "tables" else 0.0, None, None),
                                verdict="PASS" if kind == "tables" else f"MISS ({kind})", unit="flag"))
    # Many streams: the same records over more streams, wall time vs 3 streams.
    for n in sizes:
        base = ours(n, 3)
        for s in streams:
            if s != 3 and base and ours(n, s):
                out.append(target(f"{n:,} records: {s} streams vs 3 streams, wall time",
                                  ours(n, s)["median_wall_s"] / base["median_wall_s"], "<=", 1.25))
    # Peak RSS with the defaults.
    for n in sizes:
        for s in streams:
            if ours(n, s):
                out.append(target(f"{n:,} records, {s} streams: ours peak RSS",
                                  ours(n, s)["median_peak_rss_mib"], "<=", MIB_LIMIT, " MiB"))
    # Against DuckDB's own path, and the storage floor (reported).
    for n in sizes:
        for s in streams:
            c = by.get((n, s), {})
            if "ours" in c and "duckdb_bulk" in c:
                out.append(target(f"{n:,} records, {s} streams: ours vs duckdb_bulk, throughput",
                                  c["ours"]["records_per_s"] / c["duckdb_bulk"]["records_per_s"],
                                  ">=", 1.5 if n >= 1_000_000 else 1.0))
            if "ours" in c and "storage_floor" in c:
                out.append(target(f"{n:,} records, {s} streams: ours vs storage_floor, throughput",
                                  c["ours"]["records_per_s"] / c["storage_floor"]["records_per_s"], None, None))
    # Memory growth with size.
    for s in streams:
        for small, large, limit in ((100_000, 1_000_000, 2.0), (1_000_000, 10_000_000, 1.1)):
            if ours(small, s) and ours(large, s):
                out.append(target(f"{s} streams: ours peak RSS {large:,} vs {small:,} records",
                                  ours(large, s)["median_peak_rss_mib"] / ours(small, s)["median_peak_rss_mib"],
                                  "<=", limit))
    return out


def print_targets(targets):
    if not targets:
        return
    print()
    print("TARGETS (bench/README.md, Targets; ratios within this run, medians over repeats; a MISS does not fail the run)")
    width = max(len(t["target"]) for t in targets)
    for t in targets:
        if t["unit"] == "flag":
            value, want = "", ""
        elif t["unit"] == "x":
            value = f"{t['value']:.2f}x"
            want = "" if t["op"] is None else f"{t['op']} {t['threshold']:g}x"
        else:
            value = f"{t['value']:.1f}{t['unit']}"
            want = f"{t['op']} {t['threshold']:g}{t['unit']}"
        print(f"  {t['target'].ljust(width)}  {value:>10}  {want:<12}  {t['verdict']}")


# ---------------------------------------------------------------- output

def fmt_rate(x):
    return f"{x:,.0f}"


def print_table(results, contenders):
    headers = ["records", "streams", "contender", "loaded", "records/s", "MB/s", "peak RSS MiB", "time s", "wall s",
               "typed scan s"]
    left = headers.index("contender")
    rows = []
    for size in results:
        for name in contenders:
            c = size["contenders"].get(name)
            if c is None:
                continue
            label = name if not c.get("typed_output") or name == "ours_off" else f"{name} ({c['typed_output']})"
            loaded = f"{c['records']:,}" + (" KILLED" if c.get("killed") else " WRONG" if c["errors"] else "")
            rows.append([f"{size['records']:,}", str(size["streams"]), label, loaded,
                         fmt_rate(c["records_per_s"]), f"{c['mb_per_s']:.1f}", f"{c['median_peak_rss_mib']:.1f}",
                         f"{c['median_seconds']:.3f}", f"{c['median_wall_s']:.3f}",
                         "-" if c.get("median_typed_scan_s") is None else f"{c['median_typed_scan_s']:.3f}"])
        rows.append(None)
    widths = [max(len(h), *(len(r[i]) for r in rows if r)) for i, h in enumerate(headers)]

    def fmt(values):
        return "  ".join(v.ljust(w) if i == left else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths)))

    line = fmt(headers)
    print(line)
    print("-" * len(line))
    for r in rows:
        if r is not None:
            print(fmt(r))
    print()
    if any(size["ratios"] for size in results):
        print("ratios (ours records/s / theirs records/s; RSS = ours peak RSS / theirs):")
    for size in results:
        parts = []
        for name, r in size["ratios"].items():
            parts.append(f"vs {name}: {r['throughput']:.2f}x throughput, RSS {r['rss']:.2f}x")
        if parts:
            print(f"  {size['records']:>12,} records, {size['streams']:>3} streams  " + "   ".join(parts))
    for size in results:
        off = size["contenders"].get("ours_off")
        for name in ("ours", "ours_views", "ours_tables"):
            c = size["contenders"].get(name)
            if off and c and c.get("median_typed_scan_s") is not None:
                print(f"  {size['records']:>12,} records, {size['streams']:>3} streams  {name} ({c['typed_output']}) "
                      f"writes at {c['records_per_s'] / off['records_per_s']:.2f}x the throughput of ours_off; "
                      f"a full scan of its typed relations takes {c['median_typed_scan_s']:.3f} s")
    for s in sorted({size["streams"] for size in results}):
        ours_rss = [(size["records"], size["contenders"]["ours"]["median_peak_rss_mib"])
                    for size in results if size["streams"] == s and "ours" in size["contenders"]]
        if len(ours_rss) > 1:
            print(f"ours peak RSS by size, {s} streams: " + ", ".join(f"{n:,}: {m:.1f} MiB" for n, m in ours_rss))
    print()
    print("medians over repeats. time s = what records/s and MB/s use: the whole child process for ours;")
    print("for the Python baselines the time inside the process (connect to close), without interpreter")
    print("start-up. wall s = whole child process for all. per_row loads only a capped prefix.")
    print("ours (X) = the typed output the binary's default config produced; typed scan s = reading every")
    print("typed relation whole after the sync (views type the JSON at query time).")
    if any(c in PEERS for c in contenders):
        print("peers: time s = the whole process for target_duckdb (like ours); for pyairbyte and dlt the time")
        print("after their imports (like the baselines). Their peak RSS is the largest process of the child's")
        print("tree (PyAirbyte's source runs as a child of it). WRONG = rows missing or extra in some stream;")
        print("KILLED = stopped by --peer-rss-limit or --peer-mem-reserve (time s is then when it was killed).")
    if "storage_floor" in contenders:
        print("storage_floor = DuckDB copying the finished rows from memory into a fresh file in one transaction;")
        print("only that copy is timed, and its RSS includes the rows held in memory: a lower bound, not a loader.")


# ---------------------------------------------------------------- main

def parse_list(text, parse, what):
    try:
        values = [parse(v) for v in text.split(",") if v.strip()]
    except (ValueError, argparse.ArgumentTypeError) as e:
        raise SystemExit(f"bench: bad {what} {text!r}: {e}")
    if not values:
        raise SystemExit(f"bench: no {what} in {text!r}")
    return values


def parse_streams(text):
    n = int(text)
    if n < 1:
        raise ValueError("a stream count must be at least 1")
    return n


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100k",
                    help="comma-separated record counts, k/M suffixes allowed (default 100k)")
    ap.add_argument("--streams", default="3",
                    help="comma-separated stream counts, each crossed with every size: the same records spread "
                         "over that many streams (default 3; the many-streams targets want 3,21,200)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per contender and input; medians are reported (default 3)")
    ap.add_argument("--seed", type=int, default=42, help="generator seed (default 42)")
    ap.add_argument("--state-every", type=parse_size, default=5_000,
                    help="a STATE message every this many records in the generated input (default 5000)")
    ap.add_argument("--per-row-cap", type=parse_size, default=20_000,
                    help="per_row loads at most this many records, a prefix of the input (default 20000)")
    ap.add_argument("--bin", default=None, help=f"destination-duckdb binary (default {default_bin()})")
    ap.add_argument("--work-dir", default=str(HERE / "out"), help="inputs, scratch databases, results (default bench/out)")
    ap.add_argument("--contenders", default=",".join(CONTENDERS),
                    help=f"comma-separated subset of {', '.join(CONTENDERS + PEERS)} (default: all but the "
                         "peers). At 10M records leave out per_row, storage_floor and duckdb_bulk unless you "
                         "mean to wait (and to give them several GB)")
    ap.add_argument("--peers", action="store_true",
                    help=f"also run the peers ({', '.join(PEERS)}), each from its own virtualenv that bench/run "
                         "installs on first use. They are slow: use --repeat 1")
    ap.add_argument("--peer-rss-limit", type=int, default=20_480, metavar="MIB",
                    help="kill a peer whose processes hold more than this resident memory (default 20480 MiB; "
                         "dlt took 15.7 GB at 1M records)")
    ap.add_argument("--peer-mem-reserve", type=int, default=2_048, metavar="MIB",
                    help="kill a peer when the machine's MemAvailable drops below this (default 2048 MiB)")
    ap.add_argument("--bulk-method", choices=["stage", "scan"], default="stage",
                    help="duckdb_bulk: 'stage' reads the file once into a temp table then splits it by stream; "
                         "'scan' runs one streaming read_ndjson pass per stream (default stage)")
    ap.add_argument("--keep-db", action="store_true", help="keep the databases written (default: deleted after checking)")
    ap.add_argument("--mode", default="append", choices=["append", "append_dedup"],
                    help="destination_sync_mode of the generated catalog (default append)")
    ap.add_argument("--smoke", action="store_true",
                    help="tiny run for CI: 3000 records over 3 and 21 streams with a state every 500, repeat 1, "
                         "per-row cap 1000")
    args = ap.parse_args()

    if args.smoke:
        args.sizes, args.streams, args.repeat, args.per_row_cap, args.state_every = "3000", "3,21", 1, 1000, 500
    sizes = parse_list(args.sizes, parse_size, "sizes")
    stream_counts = parse_list(args.streams, parse_streams, "stream counts")
    contenders = [c.strip() for c in args.contenders.split(",") if c.strip()]
    if args.peers:
        contenders += [p for p in PEERS if p not in contenders]
    unknown = [c for c in contenders if c not in CONTENDERS + PEERS]
    if unknown or not contenders:
        ap.error(f"unknown contenders {unknown}; choose from {', '.join(CONTENDERS + PEERS)}")
    peer_versions = {}
    for p in contenders:
        if p in PEERS:
            info = peerlib.installed(p)
            if not info:
                raise BenchError(f"peer {p} is not installed in {peerlib.venv(p)}: run through bench/run "
                                 "with --peers, which installs it")
            peer_versions[p] = info["versions"]
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    args.bin = os.path.abspath(args.bin or default_bin())
    ours_wanted = [c for c in contenders if c in TYPED]
    if ours_wanted and not os.access(args.bin, os.X_OK):
        raise BenchError(f"binary not found or not executable: {args.bin}\n"
                         "  build it with `cargo build --release`, pass --bin, or leave it out with "
                         "--contenders duckdb_bulk,per_row,storage_floor")

    work = Path(args.work_dir).resolve()
    run_dir = work / "runs"
    run_dir.mkdir(parents=True, exist_ok=True)
    started = datetime.datetime.now()

    bin_version = None
    if ours_wanted:
        v = subprocess.run([args.bin, "--version"], capture_output=True, text=True)
        bin_version = v.stdout.strip() or None

    results = []
    for n in sizes:
        for streams in stream_counts:
            msgs, cat, info = ensure_input(work, n, args.seed, args.state_every, args.mode, streams)
            cap = min(n, args.per_row_cap)
            if "per_row" in contenders:
                pr_msgs, pr_cat, pr_info = (ensure_input(work, cap, args.seed, args.state_every, "append", streams)
                                            if cap < n else (msgs, cat, info))
                warm_cache(pr_msgs)
            warm_cache(msgs)
            runs = {c: [] for c in contenders}
            for i in range(args.repeat):
                # Contenders take turns within each repeat, so slow drifts in
                # machine load spread over all of them.
                for c in contenders:
                    tag = f"n{n}-s{streams}-r{i}"
                    log(f"{n} records, {streams} streams, repeat {i + 1}/{args.repeat}: {c}")
                    if c in TYPED:
                        r = run_ours(args, run_dir, tag, msgs, cat, info, c)
                    elif c == "duckdb_bulk":
                        r = run_baseline(args, c, run_dir, tag, msgs, cat, info, ["--method", args.bulk_method])
                    elif c == "storage_floor":
                        r = run_baseline(args, c, run_dir, tag, msgs, cat, info, [])
                    elif c in PEERS:
                        r = run_peer(args, c, run_dir, tag, msgs, cat, info)
                    else:
                        r = run_baseline(args, c, run_dir, tag, pr_msgs, pr_cat, pr_info, ["--limit", str(cap)])
                    runs[c].append(r)
            summary = {"records": n, "streams": streams, "mode": args.mode, "input_bytes": info["bytes"],
                       "states": info["states"], "contenders": {}, "ratios": {}}
            for c in contenders:
                nbytes = pr_info["bytes"] if c == "per_row" else info["bytes"]
                summary["contenders"][c] = summarize(runs[c], nbytes)
            if "ours" in contenders:
                ours = summary["contenders"]["ours"]
                for c in contenders:
                    if c != "ours" and summary["contenders"][c]["records_per_s"] > 0:
                        theirs = summary["contenders"][c]
                        summary["ratios"][c] = {
                            "throughput": ours["records_per_s"] / theirs["records_per_s"],
                            "rss": ours["median_peak_rss_mib"] / theirs["median_peak_rss_mib"],
                        }
            results.append(summary)

    print()
    for p, v in peer_versions.items():
        print(f"peer {p}: " + ", ".join(f"{k} {ver}" for k, ver in v.items()))
    if peer_versions:
        print()
    print_table(results, contenders)
    targets = compute_targets(results, args.mode)
    print_targets(targets)

    git_rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True).stdout.strip() or None
    report = {
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.datetime.now().isoformat(timespec="seconds"),
        "settings": {"sizes": sizes, "streams": stream_counts, "repeat": args.repeat, "seed": args.seed,
                     "state_every": args.state_every, "per_row_cap": args.per_row_cap,
                     "bulk_method": args.bulk_method, "contenders": contenders, "smoke": args.smoke, "mode": args.mode},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "duckdb_python": duckdb.__version__},
        "ours": {"bin": args.bin, "version": bin_version, "git": git_rev},
        "peers": peer_versions,
        "results": results,
        "targets": targets,
    }
    path = work / f"results-{started.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=1))
    print(f"\nresults written to {path}")
    errors = [e for size in results for c in size["contenders"].values() for e in c["errors"]]
    if errors:
        raise BenchError("wrong results:\n" + "\n".join(errors))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        print(f"bench: FAILED: {e}", file=sys.stderr)
        sys.exit(1)
    except subprocess.CalledProcessError as e:
        print(f"bench: FAILED: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        sys.exit(130)
