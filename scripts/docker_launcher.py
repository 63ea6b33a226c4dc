#!/usr/bin/env python3
"""Runs the connector image the way Airbyte's launcher runs it, and compares it
with the binary outside Docker.

    docker_launcher.py --image IMAGE --bin HOST_BINARY [--keep]

Airbyte (airbyte-platform's workload launcher, 2025-2026) replaces the image's
ENTRYPOINT with `sh -c <wrapper>`. The wrapper exits 127 when AIRBYTE_ENTRYPOINT
is empty, runs `eval "$AIRBYTE_ENTRYPOINT <operation> <args>"` in the
background, polls every 10 s for a `TERMINATED` file (then kills the
connector), and writes the exit code to TEMP_EXIT_CODE.txt before it moves that
to exitCode.txt. `spec` and `check` run in /config with their output redirected
to /config/jobOutput.json; `write` runs in /dest with stdin, stdout and stderr
redirected from and to named pipes there, which other containers hold. /config
and /dest are emptyDir volumes (world-writable), /local a host folder. With
rootless workloads the connector runs as uid/gid 1000 with every capability
dropped and no privilege escalation; a custom connector never gets network
access here (--network none: it needs none).

Each check below runs containers that way (one container per operation) and
fails loudly. What is checked:

  spec            jobOutput.json is the host binary's spec, byte for byte; the
                  protocol_version Airbyte accepts (0.0.0-0.3.0, or none)
  check           SUCCEEDED on a /local owned by uid 1000; FAILED on a root-owned
                  0755 /local with a message that names uid 1000 and how to grant it
  write refusal   on that /local, a config_error with the same words, before any
                  record is read (stdin is held open, the connector must end)
  replay          every acceptance-data sync (tests/data/airbyte) through the
                  image and through the host binary: the same exit code, the same
                  STATE lines byte for byte, the same rows in every table and view
  kill + resume   TERMINATED mid-sync: the file opens, every record before the last
                  echoed state is in it once, and a second sync from that state
                  ends with every record (duplicates only after that state)
  bad input       missing config, unreadable catalog, empty stdin, stdin cut in the
                  middle of a line: the same exit code, failure type, message
                  (paths aside), states and rows as outside Docker
  nothing else    `docker diff` of every container is empty, and /config and /dest
                  hold only what the launcher put there and the exit-code file

Needs: docker (DOCKER_HOST as set up), the `duckdb` Python package, root (to make
a root-owned /local and uid-1000 folders). Exit status 0 when every check holds.
"""

import argparse
import collections
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import duckdb

REPO = Path(__file__).resolve().parent.parent
ACCEPTANCE = REPO / "tests" / "data" / "airbyte"
CONNECTOR_UID = 1000
TERMINATION_CHECK_SECONDS = 10  # the launcher's polling interval
CONTAINER_TIMEOUT = 300

# The wrapper, as the launcher templates it (ContainerCommandFactory); the
# operation goes where @OPERATION@ is.
WRAPPER = """\
# fail loudly if entry point not set
if [ -z "$AIRBYTE_ENTRYPOINT" ]; then
  echo "Entrypoint was not set! AIRBYTE_ENTRYPOINT must be set in the container."
  exit 127
else
  echo "Using AIRBYTE_ENTRYPOINT: $AIRBYTE_ENTRYPOINT"
fi

# run connector in background and store PID
(@OPERATION@) &
CHILD_PID=$!

# run busy loop in background that checks for termination file and if present kills the connector operation and exits
(while true; do if [ -f TERMINATED ]; then kill $CHILD_PID; exit 0; fi; sleep @INTERVAL@; done) &

# wait on connector operation
wait $CHILD_PID
EXIT_CODE=$?

# write its exit code to a file for the sidecar
echo $EXIT_CODE > TEMP_EXIT_CODE.txt
mv TEMP_EXIT_CODE.txt exitCode.txt

# propagate connector exit code by assuming it
exit $EXIT_CODE
"""

OPERATIONS = {
    "spec": 'eval "$AIRBYTE_ENTRYPOINT spec" > /config/jobOutput.json',
    "check": 'eval "$AIRBYTE_ENTRYPOINT check --config /config/connectionConfiguration.json" '
    "> /config/jobOutput.json",
    "write": 'eval "$AIRBYTE_ENTRYPOINT write --config /dest/connectorConfig.json '
    '--catalog /dest/catalog.json" 2> stderr > stdout < stdin',
}

# What the launcher sets besides the image's own env (a sample; the data
# channel ones matter to the connector).
LAUNCHER_ENV = {
    "USE_STREAM_CAPABLE_STATE": "true",
    "WORKER_CONNECTOR_IMAGE": "airbyte/destination-duckdb-rs",
    "WORKER_JOB_ID": "1",
    "WORKER_JOB_ATTEMPT": "0",
    "DEPLOYMENT_MODE": "OSS",
}
WRITE_ENV = {"DATA_CHANNEL_MEDIUM": "STDIO", "DATA_CHANNEL_FORMAT": "JSONL"}


# --------------------------------------------------------------------- output

class Report:
    def __init__(self):
        self.results = []  # (name, ok, detail)

    def check(self, name, ok, detail=""):
        detail = " ".join(str(detail).split())
        self.results.append((name, bool(ok), detail))
        shown = detail if not ok else detail[:160] + ("..." if len(detail) > 160 else "")
        print(f"  {'PASS' if ok else 'FAIL'}  {name}" + (f": {shown}" if shown else ""), flush=True)
        return ok

    def failed(self):
        return [r for r in self.results if not r[1]]


def die(msg):
    print(f"SETUP ERROR: {msg}", file=sys.stderr)
    sys.exit(2)


def docker(*args, check=True, timeout=120):
    r = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")
    return r


# ---------------------------------------------------------------- the launcher

class Outcome:
    """What one launcher run produced."""

    def __init__(self):
        self.exit_code = None  # the container's (the wrapper's)
        self.exit_file = None  # exitCode.txt
        self.temp_exit_file_left = False
        self.stdout_lines = []  # write: the stdout pipe; spec/check: jobOutput.json
        self.stderr = ""
        self.logs = ""  # the wrapper's own output
        self.diff = []  # `docker diff`, mount points aside
        self.stray = []  # files in /config or /dest the launcher did not put there
        self.seconds = 0.0

    def messages(self):
        out = []
        for line in self.stdout_lines:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                out.append({"type": "<not JSON>", "line": line})
        return out

    def of_type(self, kind):
        return [m for m in self.messages() if m.get("type") == kind]

    def state_lines(self):
        return [l for l in self.stdout_lines if json.loads(l).get("type") == "STATE"]

    def trace_errors(self):
        return [m["trace"]["error"] for m in self.of_type("TRACE") if m["trace"].get("type") == "ERROR"]


def make_dir(path, mode, owner=None):
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, mode)
    if owner is not None:
        os.chown(path, owner, owner)
    return path


def write_file(path, text, mode=0o644):
    path.write_text(text)
    os.chmod(path, mode)


def unblock_fifo(path, for_reader):
    """Lets a thread blocked opening `path` go on: a reader gets EOF, a
    writer a reader that goes away (EPIPE)."""
    flags = (os.O_WRONLY if for_reader else os.O_RDONLY) | os.O_NONBLOCK
    try:
        fd = os.open(path, flags)
        os.close(fd)
    except OSError:
        pass


def launch(image, operation, *, local, config, catalog=None, feed=None, on_line=None,
           env=None, work=None, config_name=None, catalog_file_mode=0o644, timeout=CONTAINER_TIMEOUT):
    """Runs `operation` in a container the launcher's way.

    `feed(write)` is called in a thread with a function that writes bytes to
    the connector's stdin pipe; when it returns, the pipe is closed (EOF).
    `on_line(line, pod)` sees every stdout line as it comes.
    """
    pod = Path(tempfile.mkdtemp(prefix=f"pod-{operation}-", dir=work))
    config_dir = make_dir(pod / "config", 0o777)
    dest_dir = make_dir(pod / "dest", 0o777)
    placed = {"config": set(), "dest": set()}
    if operation == "check":
        write_file(config_dir / "connectionConfiguration.json", json.dumps(config))
        placed["config"].add("connectionConfiguration.json")
    if operation == "write":
        write_file(dest_dir / (config_name or "connectorConfig.json"), json.dumps(config))
        placed["dest"].add(config_name or "connectorConfig.json")
        if catalog is not None:
            write_file(dest_dir / "catalog.json", json.dumps(catalog), catalog_file_mode)
            placed["dest"].add("catalog.json")
        for pipe in ("stdin", "stdout", "stderr"):
            os.mkfifo(dest_dir / pipe)
            os.chmod(dest_dir / pipe, 0o666)
            placed["dest"].add(pipe)
    workdir = "/dest" if operation == "write" else "/config"
    script = WRAPPER.replace("@OPERATION@", OPERATIONS[operation]).replace(
        "@INTERVAL@", str(TERMINATION_CHECK_SECONDS))
    name = f"dd-launcher-{operation}-{uuid.uuid4().hex[:12]}"
    run_env = dict(LAUNCHER_ENV)
    if operation == "write":
        run_env.update(WRITE_ENV)
    run_env.update(env or {})
    cmd = ["docker", "run", "--name", name, "--entrypoint", "sh",
           "--user", f"{CONNECTOR_UID}:{CONNECTOR_UID}", "--cap-drop", "ALL",
           "--security-opt", "no-new-privileges", "--network", "none",
           "-w", workdir,
           "-v", f"{config_dir}:/config", "-v", f"{dest_dir}:/dest", "-v", f"{local}:/local"]
    for k, v in run_env.items():
        cmd += ["-e", f"{k}={v}"]
    cmd += [image, "-c", script]

    out = Outcome()
    threads = []
    if operation == "write":
        def read_stdout():
            with open(dest_dir / "stdout", "rb") as f:
                for raw in f:
                    line = raw.decode("utf-8").rstrip("\n")
                    out.stdout_lines.append(line)
                    if on_line:
                        on_line(line, pod)

        def read_stderr():
            with open(dest_dir / "stderr", "rb") as f:
                out.stderr = f.read().decode("utf-8", "replace")

        def write_stdin():
            try:
                with open(dest_dir / "stdin", "wb", buffering=0) as f:
                    def send(data):
                        f.write(data)
                    if feed:
                        feed(send)
            except BrokenPipeError:
                pass

        threads = [threading.Thread(target=t, daemon=True) for t in (read_stdout, read_stderr, write_stdin)]
        for t in threads:
            t.start()

    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        logs, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        docker("kill", name, check=False)
        logs, _ = proc.communicate()
        out.logs = logs + f"\n<killed after {timeout} s>"
    out.seconds = time.monotonic() - started
    out.logs = out.logs or logs
    out.exit_code = proc.returncode
    if operation == "write":
        unblock_fifo(dest_dir / "stdout", for_reader=True)
        unblock_fifo(dest_dir / "stderr", for_reader=True)
        unblock_fifo(dest_dir / "stdin", for_reader=False)
        for t in threads:
            t.join(timeout=30)
    else:
        job = config_dir / "jobOutput.json"
        out.stdout_lines = job.read_text().splitlines() if job.exists() else []
        placed["config"].add("jobOutput.json")
    work_dir = dest_dir if operation == "write" else config_dir
    exit_file = work_dir / "exitCode.txt"
    out.exit_file = exit_file.read_text().strip() if exit_file.exists() else None
    out.temp_exit_file_left = (work_dir / "TEMP_EXIT_CODE.txt").exists()
    placed["dest" if operation == "write" else "config"].update({"exitCode.txt", "TERMINATED"})
    for sub, names in (("config", placed["config"]), ("dest", placed["dest"])):
        for p in sorted((pod / sub).iterdir()):
            if p.name not in names:
                out.stray.append(f"/{sub}/{p.name}")
    mounts = {"/config", "/dest", "/local"}
    diff = docker("diff", name, check=False).stdout.split("\n")
    out.diff = [l for l in diff if l.strip() and l.split(maxsplit=1)[-1] not in mounts]
    docker("rm", "-f", name, check=False)
    shutil.rmtree(pod, ignore_errors=True)
    return out


# --------------------------------------------------------------- the host side

def host_run(binary, args, *, stdin_bytes=b"", cwd, env=None):
    e = dict(os.environ)
    e.pop("DESTINATION_DUCKDB_LOCAL_ROOT", None)
    e.update(env or {})
    r = subprocess.run([binary, *args], input=stdin_bytes, capture_output=True, cwd=cwd, env=e, timeout=300)
    o = Outcome()
    o.exit_code = r.returncode
    o.stdout_lines = r.stdout.decode("utf-8").splitlines()
    o.stderr = r.stderr.decode("utf-8", "replace")
    return o


# Columns that differ between two identical syncs: a fresh UUID per row, and
# when the connector's own bookkeeping rows were written.
RANDOM_COLUMNS = {"_airbyte_ab_id", "_airbyte_raw_id"}
INTERNAL_SCHEMA = "_airbyte_internal"
WALL_CLOCK_COLUMNS = {"recorded_at", "updated_at"}


def relations(db_path):
    """Every table and view of the database: name -> (columns, sorted rows),
    without the columns that differ between identical syncs."""
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        names = con.sql(
            "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = current_database() "
            "UNION ALL SELECT schema_name, view_name FROM duckdb_views() "
            "WHERE database_name = current_database() AND NOT internal ORDER BY ALL").fetchall()
        out = {}
        for schema, name in names:
            q = f'"{schema.replace(chr(34), chr(34) * 2)}"."{name.replace(chr(34), chr(34) * 2)}"'
            cur = con.execute(f"SELECT * FROM {q}")
            cols = [d[0] for d in cur.description]
            drop = RANDOM_COLUMNS | (WALL_CLOCK_COLUMNS if schema == INTERNAL_SCHEMA else set())
            keep = [i for i, c in enumerate(cols) if c not in drop]
            rows = sorted(repr(tuple(row[i] for i in keep)) for row in cur.fetchall())
            out[f"{schema}.{name}"] = ([cols[i] for i in keep], rows)
        return out
    finally:
        con.close()


def configured(catalog_file):
    """A configured catalog, made the acceptance tests' way from a plain one."""
    plain = json.loads(catalog_file.read_text())
    if plain["streams"] and "stream" in plain["streams"][0]:
        return plain
    return {"streams": [{"stream": s, "sync_mode": "full_refresh", "destination_sync_mode": "overwrite",
                         "cursor_field": [], "primary_key": [], "sync_id": 42, "generation_id": 12,
                         "minimum_generation_id": 12} for s in plain["streams"]]}


REPLAYS = [
    (f"{v}/{n}_catalog.json", f"{v}/{n}_messages.txt")
    for v in ("v0", "v1", "legacy")
    for n in ("data_type_array_object_test", "data_type_array_test", "data_type_basic_test",
              "data_type_object_test", "edge_case", "exchange_rate", "namespace",
              "number_data_type_array_test", "number_data_type_test")
] + [
    ("v0/every_time_type_configured_catalog.json", "v0/every_time_type_messages.txt"),
    ("v0/problematic_types_configured_catalog.json", "v0/problematic_types_messages_in.txt"),
    ("v0/users_with_generation_id_configured_catalog.json", "v0/users_with_generation_id_messages.txt"),
    ("v1/data_type_number_type_test_catalog.json", "v1/nan_type_test_message.txt"),
    ("v1/exchange_rate_catalog.json", "v1/infinity_type_test_message.txt"),
    ("faker/faker_configured_catalog_incremental_append.json", "faker/faker_read_count10.jsonl"),
    ("duckdb_configured_catalog.json", "duckdb_messages.jsonl"),
]


# ----------------------------------------------------------------- the checks

class Checks:
    def __init__(self, image, binary, work, report):
        self.image = image
        self.binary = binary
        self.work = work
        self.report = report
        self.root = os.geteuid() == 0

    def folder(self, label, writable):
        """A folder for /local: owned by uid 1000 (what the README tells users
        to do), or as users often get it: root-owned, mode 0755."""
        d = Path(tempfile.mkdtemp(prefix=f"local-{label}-", dir=self.work))
        if writable:
            if self.root:
                os.chown(d, CONNECTOR_UID, CONNECTOR_UID)
                os.chmod(d, 0o755)
            else:
                os.chmod(d, 0o777)
        else:
            os.chmod(d, 0o755 if self.root else 0o555)
        return d

    def common(self, label, o, expect_exit):
        r = self.report
        r.check(f"{label}: container exit code {expect_exit}", o.exit_code == expect_exit,
                "" if o.exit_code == expect_exit else
                f"got {o.exit_code}; logs: {o.logs.strip()[-400:]}; stderr: {o.stderr.strip()[-600:]}")
        ok = o.exit_file == str(expect_exit) and not o.temp_exit_file_left
        r.check(f"{label}: exitCode.txt says {expect_exit} (TEMP_EXIT_CODE.txt moved)", ok,
                "" if ok else f"exitCode.txt {o.exit_file!r}, TEMP_EXIT_CODE.txt left: {o.temp_exit_file_left}")
        ok = "Using AIRBYTE_ENTRYPOINT: /usr/local/bin/destination-duckdb" in o.logs
        r.check(f"{label}: AIRBYTE_ENTRYPOINT set in the image", ok, "" if ok else o.logs.strip()[:300])
        r.check(f"{label}: nothing written outside the mounts (docker diff)", not o.diff, "; ".join(o.diff))
        r.check(f"{label}: nothing but the exit code added to /config and /dest", not o.stray, ", ".join(o.stray))

    # -- spec and check
    def spec(self):
        o = launch(self.image, "spec", local=self.folder("spec", True), config=None, work=self.work)
        self.common("spec", o, 0)
        host = host_run(self.binary, ["spec"], cwd=self.work)
        self.report.check("spec: jobOutput.json equals the host binary's spec", o.stdout_lines == host.stdout_lines,
                          f"{o.stdout_lines[:1]} vs {host.stdout_lines[:1]}")
        specs = o.of_type("SPEC")
        version = specs[0]["spec"].get("protocol_version") if len(specs) == 1 else "<no single SPEC>"
        ok = version is None or (isinstance(version, str) and
                                 tuple(int(x) for x in version.split(".")) <= (0, 3, 0))
        self.report.check("spec: one SPEC, protocol_version within 0.0.0-0.3.0 (or unset)",
                          len(specs) == 1 and ok, f"protocol_version {version!r}")

    def check(self):
        local = self.folder("check-ok", True)
        o = launch(self.image, "check", local=local, config={"destination_path": "/local/destination.duckdb"},
                   work=self.work)
        self.common("check on a uid-1000 /local", o, 0)
        st = o.of_type("CONNECTION_STATUS")
        self.report.check("check on a uid-1000 /local: SUCCEEDED",
                          len(st) == 1 and st[0]["connectionStatus"]["status"] == "SUCCEEDED", o.stdout_lines)

        walled = self.folder("check-walled", False)
        o = launch(self.image, "check", local=walled, config={"destination_path": "/local/destination.duckdb"},
                   work=self.work)
        self.common("check on a root-owned 0755 /local", o, 0)
        st = o.of_type("CONNECTION_STATUS")
        msg = st[0]["connectionStatus"].get("message", "") if len(st) == 1 else ""
        self.report.check("check on a root-owned 0755 /local: FAILED",
                          len(st) == 1 and st[0]["connectionStatus"]["status"] == "FAILED", o.stdout_lines)
        self.report.check("check on a root-owned 0755 /local: the message names uid 1000 and how to grant it",
                          all(w in msg for w in ("uid 1000", "folder mounted at `/local`", "chown")), msg)
        print(f"        message: {msg}")
        self.report.check("check on a root-owned 0755 /local: nothing created there", not any(walled.iterdir()))

    def write_refused(self):
        walled = self.folder("write-walled", False)
        released = threading.Event()

        def feed(send):
            # The first records, then the pipe stays open: the connector must
            # refuse without waiting for the rest of its input.
            send(b'{"type":"RECORD","record":{"stream":"s","emitted_at":1,"data":{"n":1}}}\n')
            released.wait(CONTAINER_TIMEOUT)

        catalog = {"streams": [{"stream": {"name": "s", "json_schema": {"type": "object"}},
                                "sync_mode": "incremental", "destination_sync_mode": "append"}]}
        o = launch(self.image, "write", local=walled, config={"destination_path": "destination.duckdb"},
                   catalog=catalog, feed=feed, work=self.work, timeout=60)
        released.set()
        self.common("write on a root-owned 0755 /local", o, 1)
        errors = o.trace_errors()
        msg = errors[0].get("message", "") if errors else ""
        self.report.check("write on a root-owned 0755 /local: one config_error, no state, while stdin is open",
                          len(errors) == 1 and errors[0].get("failure_type") == "config_error"
                          and not o.of_type("STATE") and o.seconds < 50, f"{o.stdout_lines} in {o.seconds:.1f} s")
        self.report.check("write on a root-owned 0755 /local: the message names uid 1000 and how to grant it",
                          all(w in msg for w in ("uid 1000", "folder mounted at `/local`", "chown")), msg)
        self.report.check("write on a root-owned 0755 /local: nothing created there", not any(walled.iterdir()))

    # -- the acceptance data, inside and outside
    def replay(self):
        differences = []
        for catalog_file, messages_file in REPLAYS:
            label = messages_file
            catalog = configured(ACCEPTANCE / catalog_file)
            data = (ACCEPTANCE / messages_file).read_bytes()
            host_dir = Path(tempfile.mkdtemp(prefix="host-", dir=self.work))
            (host_dir / "catalog.json").write_text(json.dumps(catalog))
            (host_dir / "config.json").write_text(json.dumps({"destination_path": str(host_dir / "replay.duckdb")}))
            host = host_run(self.binary, ["write", "--config", str(host_dir / "config.json"),
                                          "--catalog", str(host_dir / "catalog.json")],
                            stdin_bytes=data, cwd=host_dir)
            local = self.folder("replay", True)
            o = launch(self.image, "write", local=local, config={"destination_path": "replay.duckdb"},
                       catalog=catalog, feed=lambda send, d=data: send(d), work=self.work)
            problems = []
            if o.exit_code != host.exit_code or o.exit_file != str(host.exit_code):
                problems.append(f"exit {o.exit_code}/{o.exit_file} vs host {host.exit_code}")
            if o.state_lines() != host.state_lines():
                problems.append(f"states differ: {len(o.state_lines())} vs {len(host.state_lines())}")
            if [e.get("failure_type") for e in o.trace_errors()] != [e.get("failure_type") for e in host.trace_errors()]:
                problems.append(f"errors {o.trace_errors()} vs {host.trace_errors()}")
            if o.diff or o.stray:
                problems.append(f"wrote outside /local: {o.diff + o.stray}")
            inside = local / "replay.duckdb"
            a = relations(inside) if inside.exists() else {}
            if inside.exists() != (host_dir / "replay.duckdb").exists():
                problems.append("one side made no database")
            elif inside.exists():
                b = relations(host_dir / "replay.duckdb")
                if a != b:
                    problems.append(f"relations differ: {sorted(set(a) ^ set(b)) or [k for k in a if a[k] != b.get(k)]}")
            rows = sum(len(v[1]) for v in a.values())
            self.report.check(f"replay {label}: same exit, states and rows inside and outside Docker",
                              not problems, "; ".join(problems) or
                              f"exit {o.exit_code}, {len(o.state_lines())} states, {rows} rows in all relations")
            if problems:
                differences.append(label)
            shutil.rmtree(host_dir, ignore_errors=True)
            shutil.rmtree(local, ignore_errors=True)
        return differences

    # -- TERMINATED mid-sync, then a resumed sync
    def kill_and_resume(self):
        stream = "events"
        catalog = {"streams": [{"stream": {"name": stream, "json_schema": {"type": "object"},
                                           "supported_sync_modes": ["incremental"]},
                                "sync_mode": "incremental", "destination_sync_mode": "append"}]}
        chunk, chunks = 1000, 400

        def lines_from(start, stop):
            for i in range(start, stop):
                yield (json.dumps({"type": "RECORD", "record": {
                    "stream": stream, "emitted_at": 1700000000000 + i,
                    "data": {"id": i, "payload": "p" * 100}}}) + "\n").encode()
                if (i + 1) % chunk == 0:
                    yield (json.dumps({"type": "STATE", "state": {
                        "type": "STREAM", "stream": {"stream_descriptor": {"name": stream},
                                                     "stream_state": {"last_id": i}}}}) + "\n").encode()

        total = chunk * chunks
        local = self.folder("kill", True)
        terminated_at = {}
        stop = threading.Event()

        def feed(send):
            buf = []
            for line in lines_from(0, total):
                buf.append(line)
                if line.startswith(b'{"type": "STATE"'):
                    send(b"".join(buf))
                    buf = []
                    if stop.wait(0.25):  # a slow source: the connector echoes as it goes
                        return
            send(b"".join(buf))

        def on_line(line, pod):
            msg = json.loads(line)
            if msg.get("type") == "STATE" and "t" not in terminated_at:
                if msg["state"]["stream"]["stream_state"]["last_id"] >= 5 * chunk - 1:
                    (pod / "dest" / "TERMINATED").touch()  # what the orchestrator does
                    terminated_at["t"] = time.monotonic()

        o = launch(self.image, "write", local=local, config={"destination_path": "kill.duckdb"},
                   catalog=catalog, feed=feed, on_line=on_line, work=self.work)
        stop.set()
        states = o.of_type("STATE")
        last = states[-1]["state"]["stream"]["stream_state"]["last_id"] if states else -1
        errors = o.trace_errors()
        how = (f"{len(states)} states echoed (last_id {last}); exit {o.exit_code}, exitCode.txt {o.exit_file}; "
               f"connector's own error: {errors[0]['failure_type'] + ': ' + errors[0]['message'] if errors else 'none (killed)'}")
        print(f"        TERMINATED: {how}")
        self.report.check("kill: the wrapper ended the sync mid-way (TERMINATED)",
                          "t" in terminated_at and 0 <= last < total - 1 and o.exit_code not in (0, None),
                          how)
        self.report.check("kill: nothing written outside the mounts", not o.diff and not o.stray, o.diff + o.stray)
        db = local / "kill.duckdb"
        try:
            con = duckdb.connect(str(db), read_only=True)
            ids = [r[0] for r in con.sql(
                f"SELECT (_airbyte_data->>'id')::BIGINT FROM main._airbyte_raw_{stream}").fetchall()]
            con.close()
            opened = True
        except Exception as e:  # noqa: BLE001 - the point is whether it opens
            ids, opened = [], False
            print(f"        could not open {db}: {e}")
        seen = collections.Counter(ids)
        self.report.check("kill: the file opens and holds every record up to the last echoed state, once",
                          opened and last >= 0 and all(seen[i] == 1 for i in range(last + 1)),
                          f"{len(ids)} rows, {last + 1} covered by the last state")

        # The platform restarts the source from the last echoed state.
        def feed_rest(send):
            send(b"".join(lines_from(last + 1, total)))

        o2 = launch(self.image, "write", local=local, config={"destination_path": "kill.duckdb"},
                    catalog=catalog, feed=feed_rest, work=self.work)
        self.common("resume after the kill", o2, 0)
        con = duckdb.connect(str(db), read_only=True)
        counts = dict(con.sql(f"SELECT (_airbyte_data->>'id')::BIGINT AS id, count(*) FROM "
                              f"main._airbyte_raw_{stream} GROUP BY id").fetchall())
        con.close()
        missing = [i for i in range(total) if i not in counts]
        twice_before = [i for i in range(last + 1) if counts.get(i, 0) != 1]
        dupes = sum(c - 1 for i, c in counts.items() if i > last)
        self.report.check("resume: every record is in the file, those up to the killed sync's last state once",
                          not missing and not twice_before and all(c <= 2 for c in counts.values()),
                          f"{len(counts)} distinct of {total}; {dupes} re-sent records after the last echoed "
                          f"state were already committed; missing {missing[:5]}")
        shutil.rmtree(local, ignore_errors=True)

    # -- SIGTERM straight to the connector, inside and outside
    def sigterm(self):
        """The wrapper's kill reaches its subshell, not the connector (see
        kill_and_resume); a SIGTERM that does reach it (`docker stop`, whose
        PID 1 is the connector when the image's ENTRYPOINT runs) must end the
        sync as it does outside Docker."""
        stream = "events"
        catalog = {"streams": [{"stream": {"name": stream, "json_schema": {"type": "object"}},
                                "sync_mode": "incremental", "destination_sync_mode": "append"}]}

        def chunk(n):
            lines = [json.dumps({"type": "RECORD", "record": {"stream": stream, "emitted_at": 1,
                                                              "data": {"id": n * 100 + i}}}) for i in range(100)]
            lines.append(json.dumps({"type": "STATE", "state": {"type": "STREAM", "stream": {
                "stream_descriptor": {"name": stream}, "stream_state": {"n": n}}}}))
            return ("\n".join(lines) + "\n").encode()

        def drive(proc, stop):
            """Feeds chunks slowly, reads stdout; sends `stop()` after 3 states."""
            got = []
            stopped = threading.Event()

            def reader():
                for raw in proc.stdout:
                    line = raw.decode().rstrip("\n")
                    got.append(line)
                    states = sum(1 for l in got if json.loads(l).get("type") == "STATE")
                    if states == 3 and not stopped.is_set():
                        stopped.set()
                        stop()
            t = threading.Thread(target=reader, daemon=True)
            t.start()
            try:
                for n in range(600):
                    if stopped.is_set() and n > 0 and proc.poll() is not None:
                        break
                    proc.stdin.write(chunk(n))
                    proc.stdin.flush()
                    time.sleep(0.2)
                proc.stdin.close()
            except (BrokenPipeError, ValueError):
                pass
            proc.wait(timeout=120)
            t.join(timeout=30)
            return got

        results = {}
        local = self.folder("sigterm", True)
        write_file(local / "config.json", json.dumps({"destination_path": "sigterm.duckdb"}))
        write_file(local / "catalog.json", json.dumps(catalog))
        name = f"dd-sigterm-{uuid.uuid4().hex[:12]}"
        proc = subprocess.Popen(["docker", "run", "-i", "--name", name, "--cap-drop", "ALL", "--security-opt",
                                 "no-new-privileges", "--network", "none", "-v", f"{local}:/local", self.image,
                                 "write", "--config", "/local/config.json", "--catalog", "/local/catalog.json"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        got = drive(proc, lambda: docker("stop", name, check=False))
        results["inside"] = (proc.returncode, got, local / "sigterm.duckdb")
        diff = [l for l in docker("diff", name, check=False).stdout.split("\n") if l.strip() and not l.endswith("/local")]
        docker("rm", "-f", name, check=False)

        host_dir = Path(tempfile.mkdtemp(prefix="host-sigterm-", dir=self.work))
        (host_dir / "config.json").write_text(json.dumps({"destination_path": str(host_dir / "sigterm.duckdb")}))
        (host_dir / "catalog.json").write_text(json.dumps(catalog))
        proc = subprocess.Popen([self.binary, "write", "--config", str(host_dir / "config.json"),
                                 "--catalog", str(host_dir / "catalog.json")], cwd=host_dir,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        got = drive(proc, lambda p=proc: p.send_signal(signal.SIGTERM))
        results["outside"] = (proc.returncode, got, host_dir / "sigterm.duckdb")

        summary = {}
        for side, (code, lines, db) in results.items():
            msgs = [json.loads(l) for l in lines]
            states = [m for m in msgs if m["type"] == "STATE"]
            errors = [(m["trace"]["error"]["failure_type"], m["trace"]["error"]["message"]) for m in msgs
                      if m["type"] == "TRACE" and m["trace"].get("type") == "ERROR"]
            last = states[-1]["state"]["stream"]["stream_state"]["n"] if states else -1
            con = duckdb.connect(str(db), read_only=True)
            ids = [r[0] for r in con.sql(f"SELECT (_airbyte_data->>'id')::BIGINT FROM main._airbyte_raw_{stream}")
                   .fetchall()]
            con.close()
            summary[side] = (code, errors, sorted(ids) == list(range((last + 1) * 100)))
            print(f"        SIGTERM {side} Docker: exit {code}, {len(states)} states, {len(ids)} rows, "
                  f"error {errors}")
        inside, outside = summary["inside"], summary["outside"]
        self.report.check("SIGTERM to the connector (docker stop): the same exit code and error as outside Docker",
                          inside[:2] == outside[:2] and inside[0] == 1 and len(inside[1]) == 1,
                          f"inside {inside[:2]}, outside {outside[:2]}")
        self.report.check("SIGTERM to the connector: both files hold exactly the records of the echoed states",
                          inside[2] and outside[2], f"inside {inside[2]}, outside {outside[2]}")
        self.report.check("SIGTERM to the connector: nothing written outside /local", not diff, diff)
        shutil.rmtree(local, ignore_errors=True)
        shutil.rmtree(host_dir, ignore_errors=True)

    # -- bad input, inside and outside
    def bad_input(self):
        catalog = {"streams": [{"stream": {"name": "s", "json_schema": {"type": "object"}},
                                "sync_mode": "incremental", "destination_sync_mode": "append"}]}
        good = (b'{"type":"RECORD","record":{"stream":"s","emitted_at":1,"data":{"n":1}}}\n'
                b'{"type":"STATE","state":{"type":"GLOBAL","global":{"shared_state":{"n":1}}}}\n')
        cases = [
            # label, inside-config-name, catalog mode, stdin bytes
            ("missing config file", "missing", "ok", good),
            ("unreadable catalog", None, "unreadable", good),
            ("stdin closed before any message", None, "ok", b""),
            ("stdin closed in the middle of a line", None, "ok",
             good + b'{"type":"RECORD","record":{"stream":"s","emitted_at":2,"da'),
        ]
        for label, config_mode, catalog_mode, data in cases:
            local = self.folder("bad", True)
            host_dir = Path(tempfile.mkdtemp(prefix="host-bad-", dir=self.work))
            os.chmod(host_dir, 0o755)
            config = {"destination_path": "bad.duckdb"}
            (host_dir / "config.json").write_text(json.dumps({"destination_path": str(host_dir / "bad.duckdb")}))
            (host_dir / "catalog.json").write_text(json.dumps(catalog))
            host_args = ["write", "--config", str(host_dir / ("missing.json" if config_mode else "config.json")),
                         "--catalog", str(host_dir / "catalog.json")]
            host_env = {}
            binary = self.binary
            if catalog_mode == "unreadable":
                os.chmod(host_dir / "catalog.json", 0o600)
                # Root reads anything: outside Docker too, run as uid 1000.
                if self.root:
                    copy = host_dir / "bin"
                    shutil.copy(self.binary, copy)
                    os.chmod(copy, 0o755)
                    binary = "setpriv"
                    host_args = [f"--reuid={CONNECTOR_UID}", f"--regid={CONNECTOR_UID}", "--clear-groups",
                                 str(copy)] + host_args
            host = host_run(binary, host_args, stdin_bytes=data, cwd=host_dir, env=host_env)

            def feed(send, d=data):
                if d:
                    send(d)
            # Inside: a config under another name (so the launcher's path is
            # missing), or a catalog that only root may read.
            o = launch(self.image, "write", local=local, config=config, catalog=catalog,
                       catalog_file_mode=0o600 if catalog_mode == "unreadable" else 0o644,
                       config_name="elsewhere.json" if config_mode else None, feed=feed, work=self.work)
            problems = []
            if o.exit_code != host.exit_code:
                problems.append(f"exit {o.exit_code} vs host {host.exit_code}")

            def norm(errors, paths):
                out = []
                for e in errors:
                    m = e.get("message", "")
                    for p in paths:
                        m = m.replace(p, "<PATH>")
                    out.append((e.get("failure_type"), m))
                return out
            inside = norm(o.trace_errors(), ["/dest/connectorConfig.json", "/dest/catalog.json", "/local/bad.duckdb"])
            outside = norm(host.trace_errors(), [host_args[-3], host_args[-1], str(host_dir / "bad.duckdb")])
            if inside != outside:
                problems.append(f"errors {inside} vs {outside}")
            if o.state_lines() != host.state_lines():
                problems.append(f"states {o.state_lines()} vs {host.state_lines()}")
            a = relations(local / "bad.duckdb") if (local / "bad.duckdb").exists() else None
            b = relations(host_dir / "bad.duckdb") if (host_dir / "bad.duckdb").exists() else None
            if a != b:
                problems.append("databases differ: " + (
                    "one side has none" if a is None or b is None else
                    ", ".join(k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k))))
            if o.diff or o.stray:
                problems.append(f"wrote outside /local: {o.diff + o.stray}")
            detail = "; ".join(problems) or f"exit {o.exit_code}, " + (
                f"{inside[0][0]}: {inside[0][1]}" if inside else f"{len(o.state_lines())} states")
            self.report.check(f"bad input, {label}: as outside Docker", not problems, detail)
            shutil.rmtree(host_dir, ignore_errors=True)
            shutil.rmtree(local, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--image", required=True)
    ap.add_argument("--bin", required=True, help="the same version of the binary, built on the host")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    ap.add_argument("--only", help="comma-separated: spec,check,refuse,replay,kill,sigterm,bad")
    args = ap.parse_args()
    if shutil.which("docker") is None:
        die("docker is not on PATH")
    if docker("image", "inspect", args.image, check=False).returncode != 0:
        die(f"image {args.image} not found; build it first")
    binary = str(Path(args.bin).resolve())
    if not os.access(binary, os.X_OK):
        die(f"host binary {binary} is missing")
    work = Path(tempfile.mkdtemp(prefix="docker-launcher-"))
    os.chmod(work, 0o755)
    report = Report()
    checks = Checks(args.image, binary, work, report)
    wanted = set((args.only or "spec,check,refuse,replay,kill,sigterm,bad").split(","))
    started = time.monotonic()
    print(f"== Airbyte's launcher against {args.image} (uid {CONNECTOR_UID}, --cap-drop ALL, "
          f"no-new-privileges, --network none); host binary {binary}")
    try:
        if "spec" in wanted:
            checks.spec()
        if "check" in wanted:
            checks.check()
        if "refuse" in wanted:
            checks.write_refused()
        if "replay" in wanted:
            checks.replay()
        if "kill" in wanted:
            checks.kill_and_resume()
        if "sigterm" in wanted:
            checks.sigterm()
        if "bad" in wanted:
            checks.bad_input()
    finally:
        if args.keep:
            print(f"scratch folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    failed = report.failed()
    print(f"== launcher checks: {len(report.results) - len(failed)} of {len(report.results)} passed "
          f"in {time.monotonic() - started:.0f} s")
    for name, _, detail in failed:
        print(f"FAIL {name}: {detail}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
