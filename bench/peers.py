"""Peers: other tools that load the same records into DuckDB, run by
bench.py as extra contenders when it is given --peers. Each is installed from
PyPI into a virtualenv of its own under $BENCH_PEERS_VENV (default
~/.cache/destination-duckdb/peers-venv/<peer>), because they want different
duckdb versions, and is fed the way its users feed it:

  pyairbyte      PyAirbyte (`airbyte` package) reading a local source
                 executable (bench/peer_source.py, which replays the input
                 file) with get_source(..., local_executable=...) into its
                 DuckDBCache: source.read(cache=DuckDBCache(db_path=...)).
  dlt            dlt with one @dlt.resource per stream yielding the parsed
                 `data` dicts, into dlt.pipeline(destination=
                 dlt.destinations.duckdb(path)).
  target_duckdb  the Singer target-duckdb CLI, Singer messages (SCHEMA per
                 stream, RECORD, STATE) piped to its stdin. The conversion
                 from the Airbyte input is done once, untimed, before the run.

Subcommands:

  setup [PEER...]        create/refresh the venvs (bench/run --peers does this)
  versions PEER          print the installed versions as JSON
  run PEER ...           load one input (pyairbyte, dlt); runs in the peer's venv
  count PEER ...         count rows per stream in the tables the peer made

The module itself needs only the standard library: bench.py imports it for
PEERS and to_singer(); the peer libraries are imported inside `run`.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "peer_source.py"

# Pinned so that a rerun measures the same code; `versions` prints what is
# actually installed, and bench.py records it with the results.
PEERS = {
    "pyairbyte": {"requirements": ["airbyte==0.71.3", "duckdb==1.4.3"],
                  "packages": ["airbyte", "duckdb", "airbyte-cdk"]},
    "dlt": {"requirements": ["dlt[duckdb]==1.31.0", "duckdb==2.0.1"],
            "packages": ["dlt", "duckdb"]},
    "target_duckdb": {"requirements": ["target-duckdb==0.8.0", "duckdb==2.0.1"],
                      "packages": ["target-duckdb", "duckdb"]},
}

# What each peer's child process needs in its environment: no telemetry, no
# connector registry look-up (PyAirbyte would otherwise fetch its registry).
CHILD_ENV = {"AIRBYTE_OFFLINE_MODE": "1", "DO_NOT_TRACK": "1", "RUNTIME__DLTHUB_TELEMETRY": "false"}


def venv_root():
    return Path(os.environ.get("BENCH_PEERS_VENV") or Path.home() / ".cache/destination-duckdb/peers-venv")


def venv(peer):
    return venv_root() / peer


def python(peer):
    return venv(peer) / "bin" / "python"


def marker(peer):
    return venv(peer) / ".peer-ready"


def installed(peer):
    """The versions recorded when the peer's venv was last set up for its
    current pins, or None if it needs (re)installing."""
    try:
        info = json.loads(marker(peer).read_text())
    except (OSError, ValueError):
        return None
    if info.get("requirements") != PEERS[peer]["requirements"] or not python(peer).exists():
        return None
    return info


def log(msg):
    print(f"peers: {msg}", file=sys.stderr, flush=True)


def setup(peers, base_python):
    for peer in peers:
        if installed(peer):
            continue
        d = venv(peer)
        if not python(peer).exists():
            log(f"creating virtualenv {d}")
            d.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run([base_python, "-m", "venv", str(d)], check=True)
        reqs = PEERS[peer]["requirements"]
        log(f"installing {' '.join(reqs)} into {d} (once; a few minutes)")
        subprocess.run([str(python(peer)), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *reqs],
                       check=True)
        versions = json.loads(subprocess.run([str(python(peer)), __file__, "versions", peer],
                                             check=True, capture_output=True, text=True).stdout)
        marker(peer).write_text(json.dumps({"requirements": reqs, "versions": versions}))
    for peer in peers:
        v = installed(peer)["versions"]
        log(f"{peer}: " + ", ".join(f"{k} {v[k]}" for k in v) + f" in {venv(peer)}")


def versions(peer):
    from importlib.metadata import version, PackageNotFoundError
    out = {}
    for pkg in PEERS[peer]["packages"]:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


# ---------------------------------------------------------------- Singer input

def to_singer(msgs, catalog_path, out_path):
    """Airbyte messages -> Singer messages: a SCHEMA per catalog stream (its
    JSON schema; key_properties = the primary key for append_dedup streams,
    none otherwise), then each RECORD as {"type": "RECORD", "stream", "record"}
    with the record's data text copied byte for byte, each STATE as
    {"type": "STATE", "value": <the Airbyte state>}. TRACE messages have no
    Singer counterpart and are dropped."""
    catalog = json.loads(Path(catalog_path).read_text())
    tmp = Path(str(out_path) + ".tmp")
    prefix = b'{"type":"RECORD","record":{"stream":"'
    with open(msgs, "rb") as fin, open(tmp, "wb", buffering=1 << 20) as fout:
        for cs in catalog["streams"]:
            keys = ([p[0] for p in cs.get("primary_key") or []]
                    if cs.get("destination_sync_mode") == "append_dedup" else [])
            fout.write(json.dumps({"type": "SCHEMA", "stream": cs["stream"]["name"], "schema": cs["stream"]["json_schema"],
                                   "key_properties": keys}, separators=(",", ":")).encode() + b"\n")
        for line in fin:
            if line.startswith(prefix):
                # {"type":"RECORD","record":{"stream":"S","emitted_at":N,"data":{...}}}\n
                end = line.index(b'"', len(prefix))
                data = line.index(b',"data":', end) + len(b',"data":')
                fout.write(b'{"type":"RECORD","stream":"' + line[len(prefix):end] + b'","record":'
                           + line[data:].rstrip()[:-2] + b"}\n")
                continue
            if not line.strip():
                continue
            msg = json.loads(line)
            if msg.get("type") == "RECORD":
                r = msg["record"]
                fout.write(json.dumps({"type": "RECORD", "stream": r["stream"], "record": r["data"]}).encode() + b"\n")
            elif msg.get("type") == "STATE":
                fout.write(json.dumps({"type": "STATE", "value": msg["state"]}).encode() + b"\n")
    os.replace(tmp, out_path)


def target_duckdb_config(db, mode):
    """target-duckdb's config: the file and the schema; without key
    properties (append) it needs primary_key_required off."""
    return {"path": str(db), "default_target_schema": "main", "primary_key_required": mode == "append_dedup"}


# ---------------------------------------------------------------- run

def stream_names(catalog_path):
    return [cs["stream"]["name"] for cs in json.loads(Path(catalog_path).read_text())["streams"]]


def run_pyairbyte(a, scratch):
    import airbyte as ab
    from airbyte.caches import DuckDBCache

    exe = scratch / "source-bench"
    exe.write_text("#!/bin/sh\nexec %s %s --input %s --catalog %s --mode %s \"$@\"\n" % (
        sys.executable, SOURCE, a.input, a.catalog, a.mode))
    exe.chmod(0o755)
    t0 = time.perf_counter()
    source = ab.get_source("source-bench", config={}, local_executable=str(exe), streams="*")
    cache = DuckDBCache(db_path=a.db, schema_name="main", cache_dir=scratch / "cache")
    result = source.read(cache=cache, write_strategy="merge" if a.mode == "append_dedup" else "append")
    elapsed = time.perf_counter() - t0
    return elapsed, {"processed_records": getattr(result, "processed_records", None)}


def run_dlt(a, scratch):
    import dlt

    dedup = a.mode == "append_dedup"

    def stream_resource(name):
        prefix = ('{"type":"RECORD","record":{"stream":"%s",' % name).encode()

        @dlt.resource(name=name, write_disposition="merge" if dedup else "append",
                      primary_key="id" if dedup else None)
        def records():
            with open(a.input, "rb") as f:
                for line in f:
                    if line.startswith(prefix):
                        yield json.loads(line)["record"]["data"]
        return records

    t0 = time.perf_counter()
    pipeline = dlt.pipeline(pipeline_name="bench", pipelines_dir=str(scratch / "pipelines"),
                            destination=dlt.destinations.duckdb(str(a.db)), dataset_name="main")
    info = pipeline.run([stream_resource(n) for n in stream_names(a.catalog)])
    elapsed = time.perf_counter() - t0
    return elapsed, {"load_packages": len(info.loads_ids)}


def run(a):
    scratch = Path(a.scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    elapsed, extra = {"pyairbyte": run_pyairbyte, "dlt": run_dlt}[a.peer](a, scratch)
    Path(a.result).write_text(json.dumps({"peer": a.peer, "elapsed_s": elapsed, **extra}))


# ---------------------------------------------------------------- count

def count(a):
    """Rows per stream in the tables the peer created, found by name: the
    table in schema main (where each peer is told to write) whose name is the
    stream's, case-insensitively. dlt's merge also leaves same-named tables in
    main_staging, which are not the result. A stream with no table, or with
    several, is reported as such."""
    import duckdb

    con = duckdb.connect(a.db, read_only=True)
    tables = con.execute("SELECT table_schema, table_name FROM information_schema.tables "
                         "WHERE table_type = 'BASE TABLE'").fetchall()
    out = {}
    for name in stream_names(a.catalog):
        found = [(s, t) for s, t in tables if s == "main" and t.lower() == name.lower()]
        if len(found) != 1:
            out[name] = {"error": f"{len(found)} tables named {name!r}", "tables": [f"{s}.{t}" for s, t in tables]}
            continue
        s, t = found[0]
        out[name] = {"table": f"{s}.{t}", "rows": con.execute(f'SELECT count(*) FROM "{s}"."{t}"').fetchone()[0]}
    con.close()
    print(json.dumps(out))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("setup")
    p.add_argument("peers", nargs="*", default=list(PEERS))
    p.add_argument("--python", default=os.environ.get("BENCH_PYTHON", "python3"))
    p = sub.add_parser("versions")
    p.add_argument("peer", choices=list(PEERS))
    p = sub.add_parser("run")
    p.add_argument("peer", choices=["pyairbyte", "dlt"])
    for opt in ("--input", "--catalog", "--db", "--scratch", "--result"):
        p.add_argument(opt, required=True)
    p.add_argument("--mode", default="append")
    p = sub.add_parser("count")
    p.add_argument("peer", choices=list(PEERS))
    p.add_argument("--db", required=True)
    p.add_argument("--catalog", required=True)
    a = ap.parse_args()
    if a.cmd == "setup":
        unknown = [x for x in a.peers if x not in PEERS]
        if unknown:
            ap.error(f"unknown peers {unknown}; choose from {', '.join(PEERS)}")
        setup(a.peers, a.python)
    elif a.cmd == "versions":
        print(json.dumps(versions(a.peer)))
    elif a.cmd == "run":
        run(a)
    else:
        count(a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
