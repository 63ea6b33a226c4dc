"""Benchmark destination-duckdb (`ours`) against two baselines on the same
generated Airbyte input, on the same machine, in the same run:

  ours         $BIN write --config CFG --catalog CAT < input, into a fresh file
               (typed output as views, the default)
  ours_tables  the same with "typed_output": "tables" (typed tables
               materialised at the end of the sync)
  duckdb_bulk  DuckDB's own read_ndjson + INSERT ... SELECT (bench/baselines.py)
  per_row      json.loads + executemany per STATE, like the official Python
               connector (bench/baselines.py), on a capped prefix of the input
  storage_floor  not a loader: DuckDB copying the same rows, already built in
               memory, into a fresh file in one transaction (bench/baselines.py);
               only the copy is timed. What storing these rows costs at least.

Every contender runs in a child process of its own; wall time and peak RSS
(wait4 rusage) are those of that child. Each result is checked: the row counts
of main._airbyte_raw_<stream> must match the input, and `ours` must echo every
STATE. Any mismatch exits non-zero. Run it through bench/run, which prepares
the Python environment. See bench/README.md.
"""
import argparse
import datetime
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import duckdb

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
GENERATOR = REPO / "scripts" / "generate_input.py"
BASELINES = HERE / "baselines.py"
CONTENDERS = ("ours", "ours_tables", "duckdb_bulk", "per_row", "storage_floor")
TYPED = {"ours": "views", "ours_tables": "tables"}
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


def ensure_input(work, n, seed, state_every, mode="append"):
    """Generated input for n records, cached under work/inputs keyed by size,
    seed, state interval and the generator's content. Written under temporary
    names and renamed, so an interrupted run never leaves a half file that
    looks done."""
    d = work / "inputs"
    d.mkdir(parents=True, exist_ok=True)
    key = f"n{n}-seed{seed}-state{state_every}-gen{generator_digest()}"
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
        log(f"generating {n} records (seed {seed}, a state every {state_every}) -> {msgs}")
        tmp_msgs, tmp_cat = d / f".{key}.jsonl.tmp", d / f".{key}.catalog.json.tmp"
        subprocess.run([sys.executable, str(GENERATOR), "--records", str(n), "--seed", str(seed),
                        "--state-every", str(state_every), "--mode", mode, "--out", str(tmp_msgs),
                        "--catalog", str(tmp_cat)],
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

def run_child(argv, stdin_path, stdout_path, stderr_path):
    """Run one child; return (exit code, wall seconds, peak RSS MiB)."""
    with open(stdin_path, "rb") as fin, open(stdout_path, "wb") as fout, open(stderr_path, "wb") as ferr:
        t0 = time.perf_counter()
        p = subprocess.Popen(argv, stdin=fin, stdout=fout, stderr=ferr)
        try:
            _, status, usage = os.wait4(p.pid, 0)
        except BaseException:
            p.kill()
            p.wait()
            raise
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
    # Linux reports ru_maxrss in KiB.
    return p.returncode, wall, usage.ru_maxrss / 1024


def tail(path, limit=2000):
    try:
        data = Path(path).read_bytes()
    except OSError:
        return ""
    return data[-limit:].decode("utf-8", "replace")


def remove_db(db):
    for p in (db, Path(str(db) + ".wal")):
        if p.exists():
            p.unlink()


def verify_tables(db, catalog_path, expected, who):
    """Row counts of main._airbyte_raw_<stream> must equal the input's, and
    each table must have the five raw columns."""
    catalog = json.loads(Path(catalog_path).read_text())
    con = duckdb.connect(str(db), read_only=True)
    try:
        problems, total = [], 0
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


def check_ours_stdout(stdout_path, info):
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
                raise BenchError(f"ours: stdout line {i} is not JSON: {line[:200]!r}")
            kind = msg.get("type")
            if kind == "STATE":
                echoed.append(msg.get("state") or {})
            elif kind == "TRACE" and (msg.get("trace") or {}).get("type") == "ERROR":
                errors.append((msg["trace"].get("error") or {}).get("message"))
    if errors:
        raise BenchError(f"ours: reported errors: {errors}")
    expected = info["state_messages"]
    if len(echoed) != len(expected):
        raise BenchError(f"ours: echoed {len(echoed)} STATE messages, expected {len(expected)}")
    for i, (got, want) in enumerate(zip(echoed, expected), 1):
        stats = got.pop("destinationStats", None)
        sent = dict(want["state"])
        sent.pop("destinationStats", None)
        if got != sent:
            raise BenchError(f"ours: STATE #{i} echoed as {json.dumps(got)[:300]}, sent {json.dumps(sent)[:300]}")
        if want["record_count"] is not None:
            count = (stats or {}).get("recordCount")
            if count != want["record_count"]:
                raise BenchError(f"ours: STATE #{i} has destinationStats.recordCount {count!r}, "
                                 f"expected {want['record_count']}")
    return len(echoed)


SCAN_TYPED = """
import json, sys, time, duckdb
db, names = sys.argv[1], json.loads(sys.argv[2])
con = duckdb.connect(db, read_only=True)
con.execute("SET enable_progress_bar = false")
t0 = time.perf_counter()
typed = {n: con.execute(f'SELECT count(*), sum(hash(t)) FROM main."{n}" t').fetchone()[0] for n in names}
seconds = time.perf_counter() - t0
raw = {n: con.execute(f'SELECT count(*) FROM main."_airbyte_raw_{n}"').fetchone()[0] for n in names}
print(json.dumps({"seconds": seconds, "typed": typed, "raw": raw}))
"""


def scan_typed(db, catalog_path, who):
    """Reads every typed relation whole (a hash over all columns of every
    row) and checks it has one row per raw row (the generator's ids are
    unique, so append_dedup keeps them all). Returns the seconds the scans
    took: the query-side cost of views versus tables. Runs in a child
    process: memory this process touches would inflate the peak RSS that
    later children (forked from it) report."""
    catalog = json.loads(Path(catalog_path).read_text())
    names = [cs["stream"]["name"] for cs in catalog["streams"]]
    p = subprocess.run([sys.executable, "-c", SCAN_TYPED, str(db), json.dumps(names)],
                       capture_output=True, text=True)
    if p.returncode != 0:
        raise BenchError(f"{who}: reading the typed relations failed:\n{p.stderr[-2000:]}")
    result = json.loads(p.stdout)
    for name in names:
        if result["typed"][name] != result["raw"][name]:
            raise BenchError(f"{who}: typed relation main.{name} has {result['typed'][name]} rows, "
                             f"raw has {result['raw'][name]}")
    return result["seconds"]


def run_ours(args, run_dir, tag, msgs, cat, info, who="ours"):
    db = run_dir / f"{who}-{tag}.duckdb"
    cfg = run_dir / f"{who}-{tag}.config.json"
    out, err = run_dir / f"{who}-{tag}.stdout", run_dir / f"{who}-{tag}.stderr"
    remove_db(db)
    cfg.write_text(json.dumps({"destination_path": str(db), "typed_output": TYPED[who]}))
    code, wall, rss = run_child([args.bin, "write", "--config", str(cfg), "--catalog", str(cat)], msgs, out, err)
    if code != 0:
        raise BenchError(f"{who}: exit code {code}\n--- stderr (tail) ---\n{tail(err)}\n--- stdout (tail) ---\n{tail(out)}")
    states = check_ours_stdout(out, info)
    rows = verify_tables(db, cat, info, who)
    query_s = scan_typed(db, cat, who)
    if not args.keep_db:
        remove_db(db)
    return {"records": rows, "seconds": wall, "wall_s": wall, "peak_rss_mib": rss, "states_echoed": states,
            "typed_scan_s": query_s}


def run_baseline(args, kind, run_dir, tag, msgs, cat, info, extra):
    db = run_dir / f"{kind}-{tag}.duckdb"
    res = run_dir / f"{kind}-{tag}.result.json"
    out, err = run_dir / f"{kind}-{tag}.stdout", run_dir / f"{kind}-{tag}.stderr"
    remove_db(db)
    if res.exists():
        res.unlink()
    argv = [sys.executable, str(BASELINES), kind, "--input", str(msgs), "--catalog", str(cat),
            "--db", str(db), "--result", str(res)] + extra
    code, wall, rss = run_child(argv, os.devnull, out, err)
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


def summarize(runs, input_bytes):
    secs = statistics.median(r["seconds"] for r in runs)
    records = runs[0]["records"]
    return {
        "records": records,
        "input_bytes": input_bytes,
        "median_seconds": secs,
        "median_wall_s": statistics.median(r["wall_s"] for r in runs),
        "records_per_s": records / secs,
        "mb_per_s": input_bytes / 1e6 / secs,
        "median_peak_rss_mib": statistics.median(r["peak_rss_mib"] for r in runs),
        "median_typed_scan_s": (statistics.median(r["typed_scan_s"] for r in runs)
                                if "typed_scan_s" in runs[0] else None),
        "runs": runs,
    }


# ---------------------------------------------------------------- output

def fmt_rate(x):
    return f"{x:,.0f}"


def print_table(results, contenders):
    headers = ["records", "contender", "loaded", "records/s", "MB/s", "peak RSS MiB", "time s", "wall s", "typed scan s"]
    rows = []
    for size in results:
        for name in contenders:
            c = size["contenders"].get(name)
            if c is None:
                continue
            rows.append([f"{size['records']:,}", name, f"{c['records']:,}", fmt_rate(c["records_per_s"]),
                         f"{c['mb_per_s']:.1f}", f"{c['median_peak_rss_mib']:.1f}",
                         f"{c['median_seconds']:.3f}", f"{c['median_wall_s']:.3f}",
                         "-" if c.get("median_typed_scan_s") is None else f"{c['median_typed_scan_s']:.3f}"])
        rows.append(None)
    widths = [max(len(h), *(len(r[i]) for r in rows if r)) for i, h in enumerate(headers)]
    line = "  ".join(h.rjust(w) if i != 1 else h.ljust(w) for i, (h, w) in enumerate(zip(headers, widths)))
    print(line)
    print("-" * len(line))
    for r in rows:
        if r is None:
            continue
        print("  ".join(v.rjust(w) if i != 1 else v.ljust(w) for i, (v, w) in enumerate(zip(r, widths))))
    print()
    if any(size["ratios"] for size in results):
        print("ratios (ours records/s / theirs records/s; RSS = ours peak RSS / theirs):")
    for size in results:
        parts = []
        for name, r in size["ratios"].items():
            parts.append(f"vs {name}: {r['throughput']:.2f}x throughput, RSS {r['rss']:.2f}x")
        if parts:
            print(f"  {size['records']:>12,} records  " + "   ".join(parts))
    for size in results:
        v, t = size["contenders"].get("ours"), size["contenders"].get("ours_tables")
        if v and t:
            print(f"  {size['records']:>12,} records  typed output: tables write at "
                  f"{t['records_per_s'] / v['records_per_s']:.2f}x the throughput of views; a full scan of the "
                  f"typed relations takes {t['median_typed_scan_s']:.3f} s (tables) vs "
                  f"{v['median_typed_scan_s']:.3f} s (views)")
    ours_rss = [(s["records"], s["contenders"]["ours"]["median_peak_rss_mib"])
                for s in results if "ours" in s["contenders"]]
    if len(ours_rss) > 1:
        print("ours peak RSS by size: " + ", ".join(f"{n:,}: {m:.1f} MiB" for n, m in ours_rss))
    print()
    print("medians over repeats. time s = what records/s and MB/s use: the whole child process for ours;")
    print("for the Python baselines the time inside the process (connect to close), without interpreter")
    print("start-up. wall s = whole child process for all. per_row loads only a capped prefix.")
    print("typed scan s = reading every typed relation whole after the sync (views type the JSON at query time).")
    if "storage_floor" in contenders:
        print("storage_floor = DuckDB copying the finished rows from memory into a fresh file in one transaction;")
        print("only that copy is timed, and its RSS includes the rows held in memory: a lower bound, not a loader.")


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100k",
                    help="comma-separated record counts, k/M suffixes allowed (default 100k)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per contender and size; medians are reported (default 3)")
    ap.add_argument("--seed", type=int, default=42, help="generator seed (default 42)")
    ap.add_argument("--state-every", type=parse_size, default=5_000,
                    help="a STATE message every this many records in the generated input (default 5000)")
    ap.add_argument("--per-row-cap", type=parse_size, default=20_000,
                    help="per_row loads at most this many records, a prefix of the input (default 20000)")
    ap.add_argument("--bin", default=None, help=f"destination-duckdb binary (default {default_bin()})")
    ap.add_argument("--work-dir", default=str(HERE / "out"), help="inputs, scratch databases, results (default bench/out)")
    ap.add_argument("--contenders", default=",".join(CONTENDERS),
                    help=f"comma-separated subset of {', '.join(CONTENDERS)} (default all)")
    ap.add_argument("--bulk-method", choices=["stage", "scan"], default="stage",
                    help="duckdb_bulk: 'stage' reads the file once into a temp table then splits it by stream; "
                         "'scan' runs one streaming read_ndjson pass per stream (default stage)")
    ap.add_argument("--keep-db", action="store_true", help="keep the databases written (default: deleted after checking)")
    ap.add_argument("--mode", default="append", choices=["append", "append_dedup"],
                    help="destination_sync_mode of the generated catalog (default append)")
    ap.add_argument("--smoke", action="store_true",
                    help="tiny run for CI: 3000 records with a state every 500, repeat 1, per-row cap 1000")
    args = ap.parse_args()

    if args.smoke:
        args.sizes, args.repeat, args.per_row_cap, args.state_every = "3000", 1, 1000, 500
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    contenders = [c.strip() for c in args.contenders.split(",") if c.strip()]
    unknown = [c for c in contenders if c not in CONTENDERS]
    if unknown or not contenders:
        ap.error(f"unknown contenders {unknown}; choose from {', '.join(CONTENDERS)}")
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    args.bin = os.path.abspath(args.bin or default_bin())
    if "ours" in contenders and not os.access(args.bin, os.X_OK):
        raise BenchError(f"binary not found or not executable: {args.bin}\n"
                         "  build it with `cargo build --release`, pass --bin, or leave it out with "
                         "--contenders duckdb_bulk,per_row")

    work = Path(args.work_dir).resolve()
    run_dir = work / "runs"
    run_dir.mkdir(parents=True, exist_ok=True)
    started = datetime.datetime.now()

    bin_version = None
    if "ours" in contenders:
        v = subprocess.run([args.bin, "--version"], capture_output=True, text=True)
        bin_version = v.stdout.strip() or None

    results = []
    for n in sizes:
        msgs, cat, info = ensure_input(work, n, args.seed, args.state_every, args.mode)
        cap = min(n, args.per_row_cap)
        if "per_row" in contenders:
            pr_msgs, pr_cat, pr_info = ensure_input(work, cap, args.seed, args.state_every) if cap < n else (msgs, cat, info)
            warm_cache(pr_msgs)
        warm_cache(msgs)
        runs = {c: [] for c in contenders}
        for i in range(args.repeat):
            # Contenders take turns within each repeat, so slow drifts in
            # machine load spread over all of them.
            for c in contenders:
                tag = f"n{n}-r{i}"
                log(f"{n} records, repeat {i + 1}/{args.repeat}: {c}")
                if c in TYPED:
                    r = run_ours(args, run_dir, tag, msgs, cat, info, c)
                elif c == "duckdb_bulk":
                    r = run_baseline(args, c, run_dir, tag, msgs, cat, info, ["--method", args.bulk_method])
                elif c == "storage_floor":
                    r = run_baseline(args, c, run_dir, tag, msgs, cat, info, [])
                else:
                    r = run_baseline(args, c, run_dir, tag, pr_msgs, pr_cat, pr_info, ["--limit", str(cap)])
                runs[c].append(r)
        summary = {"records": n, "input_bytes": info["bytes"], "states": info["states"], "contenders": {}, "ratios": {}}
        for c in contenders:
            nbytes = pr_info["bytes"] if c == "per_row" else info["bytes"]
            summary["contenders"][c] = summarize(runs[c], nbytes)
        if "ours" in contenders:
            ours = summary["contenders"]["ours"]
            for c in contenders:
                if c != "ours":
                    theirs = summary["contenders"][c]
                    summary["ratios"][c] = {
                        "throughput": ours["records_per_s"] / theirs["records_per_s"],
                        "rss": ours["median_peak_rss_mib"] / theirs["median_peak_rss_mib"],
                    }
        results.append(summary)

    print()
    print_table(results, contenders)

    git_rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True).stdout.strip() or None
    report = {
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.datetime.now().isoformat(timespec="seconds"),
        "settings": {"sizes": sizes, "repeat": args.repeat, "seed": args.seed, "state_every": args.state_every, "per_row_cap": args.per_row_cap,
                     "bulk_method": args.bulk_method, "contenders": contenders, "smoke": args.smoke, "mode": args.mode},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "duckdb_python": duckdb.__version__},
        "ours": {"bin": args.bin, "version": bin_version, "git": git_rev},
        "results": results,
    }
    path = work / f"results-{started.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=1))
    print(f"\nresults written to {path}")
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
