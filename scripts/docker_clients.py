#!/usr/bin/env python3
"""Real Airbyte clients drive the connector image.

    docker_clients.py --image IMAGE [--only pyairbyte,byhand,bulk,cdk] [--keep]

pyairbyte  PyAirbyte's Docker executor (`get_destination(..., docker_image=IMAGE)`,
           offline) writes from a small source (docker_test_source.py) into the
           image, as three host users, each in a fresh project folder. PyAirbyte
           mounts `<project>/destination-duckdb` at /local; the image runs as uid
           1000, so:
             uid 1000    the folder is the connector's: check and write succeed.
             uid 1001    the folder is the user's, mode 0755: check and write fail
             and root    with the message naming uid 1000 and how to grant it; after
                         the fix the README gives (`chmod a+rwx destination-duckdb`,
                         run by that user) both succeed, and the user can read the
                         database the connector wrote.
           Every successful write is checked row by row against the source.
byhand     The README's "By hand" commands, as written there, as host user 1001.
bulk       Airbyte's Kotlin bulk CDK way to run `write`: `docker run --rm --init -i
           -w /data/job --network host -v ...:/data -v ...:/local IMAGE write --config
           destination_config.json --catalog destination_catalog.json` (relative
           paths), rows checked.
cdk        airbyte-cdk's image tests (the `image_tests` of its standard test suite,
           what `airbyte-cdk image test --image IMAGE` selects: spec in the image,
           the spec linted, check with configs mounted at /secrets/config.json, the
           spec compared with the published one); and `airbyte-cdk image test`
           itself, which cannot pick a suite for a `language:rust` connector (the
           reason is printed).

Runs as root, with docker, setpriv, and PyAirbyte, pytest and duckdb in this
Python (scripts/docker_e2e.sh makes that venv). The runs as other users need the
venv, the source and a docker socket they can reach: DOCKER_CLIENTS_SOCKET
(default /run/destination-duckdb/docker.sock, group docker). Exit status 0 when
every check holds.
"""

import argparse
import grp
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SOURCE = HERE / "docker_test_source.py"
COUNT = 150
NAME = "destination-duckdb"


class Report:
    def __init__(self):
        self.results = []

    def check(self, name, ok, detail=""):
        detail = " ".join(str(detail).split())
        self.results.append((name, bool(ok), detail))
        shown = detail if not ok else detail[:240] + ("..." if len(detail) > 240 else "")
        print(f"  {'PASS' if ok else 'FAIL'}  {name}" + (f": {shown}" if shown else ""), flush=True)
        return ok


def expected_rows():
    out = subprocess.run([sys.executable, str(SOURCE), "records", str(COUNT)], capture_output=True, text=True,
                         check=True).stdout
    rows = {}
    for line in out.splitlines():
        r = json.loads(line)
        rows.setdefault(r["stream"], []).append(r["data"])
    return rows


def table_rows(db, stream):
    con = duckdb.connect(str(db), read_only=True)
    try:
        return [json.loads(r[0]) for r in con.sql(
            f'SELECT _airbyte_data::VARCHAR FROM main."_airbyte_raw_{stream}"').fetchall()]
    finally:
        con.close()


def same_rows(db, expected):
    """'' when every stream's table holds exactly the source's records."""
    problems = []
    for stream, want in expected.items():
        try:
            got = table_rows(db, stream)
        except Exception as e:  # noqa: BLE001
            problems.append(f"{stream}: {e}")
            continue
        key = lambda d: json.dumps(d, sort_keys=True)  # noqa: E731
        if sorted(map(key, got)) != sorted(map(key, want)):
            problems.append(f"{stream}: {len(got)} rows, {len(want)} expected, contents differ")
    return "; ".join(problems)


# ------------------------------------------------------------------ PyAirbyte

CHILD = r"""
import json, os, sys, traceback
import airbyte as ab
image, source, count, attempt = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
out = {"uid": os.getuid(), "check": None, "write": None}
src = ab.get_source("source-dd-test", config={"count": count}, local_executable=source, streams="*")
dst = ab.get_destination("destination-duckdb", config={"destination_path": "pyairbyte.duckdb"}, docker_image=image)
try:
    dst.check()
    out["check"] = "ok"
except Exception as e:
    out["check"] = "failed: " + str(e) + " " + repr(getattr(e, "__dict__", {}))
try:
    r = dst.write(src, cache=False, state_cache=False)
    out["write"] = "ok"
except Exception as e:
    out["write"] = "failed: " + str(e) + " " + repr(getattr(e, "__dict__", {}))
print("RESULT " + json.dumps(out))
"""


def as_user(uid, gid, docker_gid):
    if uid == 0:
        return []
    return ["setpriv", f"--reuid={uid}", f"--regid={gid}", f"--groups={docker_gid}"]


def pyairbyte(image, report, work, socket):
    expected = expected_rows()
    # Where every user can run it (the repository may be under root's home).
    source = work / "docker_test_source.py"
    shutil.copy(SOURCE, source)
    os.chmod(source, 0o755)
    try:
        docker_gid = grp.getgrnam("docker").gr_gid
    except KeyError:
        docker_gid = 0
    for uid in (1000, 1001, 0):
        label = f"PyAirbyte as host uid {uid}"
        project = Path(tempfile.mkdtemp(prefix=f"pyairbyte-{uid}-", dir=work))
        os.chown(project, uid, uid)
        os.chmod(project, 0o755)
        env = {
            "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
            "HOME": str(project),
            "DOCKER_HOST": f"unix://{socket}",
            "AIRBYTE_OFFLINE_MODE": "1",
            "DO_NOT_TRACK": "1",
            "AIRBYTE_PROJECT_DIR": str(project),
            "AIRBYTE_LOGGING_ROOT": str(project / "logs"),
            "LANG": "C.UTF-8",
        }
        for k in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
            if k in os.environ:
                env[k] = os.environ[k]

        def attempt(n):
            started = time.monotonic()
            r = subprocess.run(as_user(uid, uid, docker_gid) + [sys.executable, "-c", CHILD, image, str(source),
                                                                 str(COUNT), str(n)],
                               cwd=project, env=env, capture_output=True, text=True, timeout=600)
            line = [l for l in r.stdout.splitlines() if l.startswith("RESULT ")]
            if not line:
                return {"check": f"no result (exit {r.returncode}): {r.stderr[-1500:]}", "write": None,
                        "stderr": r.stderr}, 0
            result = json.loads(line[-1][7:])
            result["stderr"] = r.stderr  # what the user's terminal shows: the connector's stderr
            return result, time.monotonic() - started

        mount = project / NAME
        db = mount / "pyairbyte.duckdb"
        result, seconds = attempt(1)
        if uid == 1000:
            report.check(f"{label}: check succeeds", result["check"] == "ok", str(result["check"])[:600])
            report.check(f"{label}: write succeeds ({seconds:.0f} s)", result["write"] == "ok",
                         str(result["write"])[:600])
            problems = same_rows(db, expected) if db.exists() else "no database"
            report.check(f"{label}: every source record is in the database", not problems, problems)
        else:
            owner = mount.stat().st_uid if mount.exists() else None
            needles = ("runs as uid 1000", f"belongs to uid {uid} ", "chmod a+rwx")
            # PyAirbyte puts check's FAILED message in its exception; a failed
            # write's error reaches the user on the connector's stderr.
            check_text, write_text = str(result["check"]), str(result["write"])
            report.check(f"{label}: check fails, naming uid 1000, the folder's owner and how to grant access",
                         check_text.startswith("failed") and all(w in check_text for w in needles),
                         check_text[check_text.find("Failure Reason"):][:400])
            stderr_lines = [l for l in result["stderr"].splitlines() if "runs as uid" in l]
            report.check(f"{label}: write fails, with the same words on the user's terminal",
                         write_text.startswith("failed") and any(all(w in l for w in needles) for l in stderr_lines),
                         (stderr_lines[-1] if stderr_lines else write_text)[:400])
            report.check(f"{label}: PyAirbyte made the mounted folder, owned by the host user",
                         owner == uid, f"owner {owner}")
            # The fix the README gives, run by the user themselves.
            fix = subprocess.run(as_user(uid, uid, docker_gid) + ["chmod", "a+rwx", str(mount)],
                                 capture_output=True, text=True)
            result, seconds = attempt(2)
            report.check(f"{label}, after `chmod a+rwx {NAME}`: check and write succeed ({seconds:.0f} s)",
                         fix.returncode == 0 and result["check"] == "ok" and result["write"] == "ok",
                         f"{fix.stderr} check {str(result['check'])[:300]}, write {str(result['write'])[:300]}")
            problems = same_rows(db, expected) if db.exists() else "no database"
            report.check(f"{label}, after the fix: every source record is in the database",
                         not problems, problems)
            read = subprocess.run(as_user(uid, uid, docker_gid) + [
                sys.executable, "-c",
                "import duckdb, sys; con = duckdb.connect(sys.argv[1], read_only=True); "
                "print(con.sql('SELECT count(*) FROM main._airbyte_raw_users').fetchone()[0])", str(db)],
                capture_output=True, text=True, env=env, cwd=project)
            report.check(f"{label}: the user reads the database the connector wrote",
                         read.returncode == 0 and read.stdout.strip() == str(COUNT),
                         (read.stdout + read.stderr).strip()[-300:])


# ------------------------------------------------------------------ bulk CDK

def bulk(image, report, work):
    data = Path(tempfile.mkdtemp(prefix="bulk-data-", dir=work))
    local = Path(tempfile.mkdtemp(prefix="bulk-local-", dir=work))
    os.chmod(data, 0o755)
    os.chown(local, 1000, 1000)
    job = data / "job"
    job.mkdir()
    catalog = {"streams": [{"stream": {"name": s, "json_schema": {"type": "object"}},
                            "sync_mode": "full_refresh", "destination_sync_mode": "overwrite",
                            "generation_id": 1, "minimum_generation_id": 1, "sync_id": 7}
                           for s in ("users", "orders")]}
    (job / "destination_config.json").write_text(json.dumps({"destination_path": "bulk.duckdb"}))
    (job / "destination_catalog.json").write_text(json.dumps(catalog))
    for f in job.iterdir():
        os.chmod(f, 0o644)
    expected = expected_rows()
    lines = []
    for i, (stream, rows) in enumerate(expected.items()):
        for row in rows:
            lines.append(json.dumps({"type": "RECORD", "record": {"stream": stream, "emitted_at": 1, "data": row}}))
        lines.append(json.dumps({"type": "TRACE", "trace": {"type": "STREAM_STATUS", "emitted_at": 1,
                                 "stream_status": {"stream_descriptor": {"name": stream}, "status": "COMPLETE"}}}))
        lines.append(json.dumps({"type": "STATE", "state": {"type": "STREAM", "stream": {
            "stream_descriptor": {"name": stream}, "stream_state": {"i": i}}}}))
    cmd = ["docker", "run", "--rm", "--init", "-i", "-w", "/data/job", "--network", "host",
           "-v", f"{data}:/data", "-v", f"{local}:/local", image,
           "write", "--config", "destination_config.json", "--catalog", "destination_catalog.json"]
    r = subprocess.run(cmd, input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=300)
    states = [l for l in r.stdout.splitlines() if json.loads(l).get("type") == "STATE"]
    report.check("bulk CDK style (--init, -w /data/job, relative paths): exit 0 and both states echoed",
                 r.returncode == 0 and len(states) == 2, f"exit {r.returncode}, {len(states)} states" +
                 ("" if r.returncode == 0 else f"; {r.stderr.strip()[-400:]}"))
    db = local / "bulk.duckdb"
    problems = same_rows(db, expected) if db.exists() else "no database in /local"
    report.check("bulk CDK style: every record is in the database", not problems, problems)
    report.check("bulk CDK style: nothing written into /data/job",
                 sorted(p.name for p in job.iterdir()) == ["destination_catalog.json", "destination_config.json"],
                 str(sorted(p.name for p in job.iterdir())))


# ------------------------------------------------------ the README, by hand

def by_hand(image, report, work, socket):
    """The README's "By hand" commands, as written, run by host user 1001."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("### By hand"):]
    block = section[section.index("```sh\n") + 6:section.index("\n```", section.index("```sh\n"))]
    block = block.replace("airbyte/destination-duckdb-rs:0.1.0", image)
    where = Path(tempfile.mkdtemp(prefix="by-hand-", dir=work))
    shutil.copytree(REPO / "examples", where / "examples")
    subprocess.run(["chown", "-R", "1001:1001", str(where)], check=True)
    try:
        docker_gid = grp.getgrnam("docker").gr_gid
    except KeyError:
        docker_gid = 0
    r = subprocess.run(as_user(1001, 1001, docker_gid) + ["sh", "-ec", block], cwd=where, capture_output=True,
                       text=True, timeout=300, env={"PATH": "/usr/bin:/bin", "HOME": str(where),
                                                    "DOCKER_HOST": f"unix://{socket}"})
    db = where / "data" / "quickstart.duckdb"
    rows = table_rows(db, "users") if db.exists() else []
    report.check("README \"By hand\" commands as host uid 1001: spec, then the example sync into data/",
                 r.returncode == 0 and db.exists() and db.stat().st_uid == 1001 and len(rows) > 0,
                 f"exit {r.returncode}, owner {db.stat().st_uid if db.exists() else None}, {len(rows)} users; "
                 f"{r.stderr.strip()[-300:] if r.returncode else ''}")


# -------------------------------------------------------- airbyte-cdk tests

SUITE = '''
from airbyte_cdk.test.standard_tests.docker_base import DockerConnectorTestSuite
from pathlib import Path


class TestImage(DockerConnectorTestSuite):
    """airbyte-cdk's Docker image tests against this connector's image."""

    @classmethod
    def get_connector_root_dir(cls) -> Path:
        return Path(__file__).resolve().parent
'''

ACCEPTANCE_CONFIG = """\
connector_image: {image}
acceptance_tests:
  spec:
    tests:
      - spec_path: spec.json
        config_path: secrets/config.json
  connection:
    tests:
      - config_path: secrets/config.json
        status: succeed
      - config_path: integration_tests/invalid_config.json
        status: failed
"""


def cdk(image, report, work):
    # A connector folder as airbyte-cdk expects one: its name, metadata.yaml,
    # acceptance-test-config.yml and the configs it lists.
    root = Path(tempfile.mkdtemp(prefix="cdk-", dir=work)) / "destination-duckdb-rs"
    (root / "secrets").mkdir(parents=True)
    (root / "integration_tests").mkdir()
    shutil.copy(REPO / "metadata.yaml", root / "metadata.yaml")
    shutil.copy(REPO / "spec.json", root / "spec.json")
    # Relative: under the image's /local, an anonymous volume owned by uid 1000.
    (root / "secrets" / "config.json").write_text(json.dumps({"destination_path": "cdk.duckdb"}))
    shutil.copy(REPO / "tests/data/airbyte/duckdb_invalid_config.json", root / "integration_tests/invalid_config.json")
    (root / "acceptance-test-config.yml").write_text(ACCEPTANCE_CONFIG.format(image=image))
    (root / "test_image.py").write_text(SUITE)

    cdk_cli = Path(sys.executable).parent / "airbyte-cdk"
    r = subprocess.run([str(cdk_cli), "image", "test", "--image", image, str(root)], capture_output=True,
                       text=True, timeout=600, cwd=root)
    tail = (r.stdout + r.stderr).strip().splitlines()
    reason = next((l for l in reversed(tail) if "language" in l.lower()), tail[-1] if tail else "")
    print(f"        `airbyte-cdk image test --image {image}`: exit {r.returncode}: {reason.strip()}")
    report.check("`airbyte-cdk image test` cannot pick a suite for language:rust (so its suite is run directly)",
                 r.returncode != 0 and "rust" in reason, reason.strip())

    started = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "airbyte_cdk.test.standard_tests.pytest_hooks",
                        "-m", "image_tests", "--connector-image", image, "-rA", "-q", "--no-header",
                        "-p", "no:cacheprovider", str(root / "test_image.py")],
                       capture_output=True, text=True, timeout=900, cwd=root)
    lines = r.stdout.strip().splitlines()
    summary = [l for l in lines if l.startswith(("PASSED", "FAILED", "SKIPPED", "ERROR"))]
    for l in summary:
        # Skip reasons name a path in the venv first; the reason is what matters.
        print(f"        {l.split(': ', 1)[-1][:300] if l.startswith('SKIPPED') else l[:300]}")
    passed = [l for l in summary if l.startswith("PASSED")]
    bad = [l for l in summary if l.startswith(("FAILED", "ERROR"))]
    report.check(f"airbyte-cdk image tests ({time.monotonic() - started:.0f} s): spec, spec lint, check "
                 "(succeed and failed configs), config matches spec",
                 r.returncode == 0 and not bad and len(passed) >= 4,
                 lines[-1] if lines else r.stderr[-800:])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--image", required=True)
    ap.add_argument("--only", default="pyairbyte,byhand,bulk,cdk")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    socket = os.environ.get("DOCKER_CLIENTS_SOCKET", "/run/destination-duckdb/docker.sock")
    if os.geteuid() != 0:
        print("SETUP ERROR: run as root (the other host users are made with setpriv)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="docker-clients-"))
    os.chmod(work, 0o755)
    report = Report()
    started = time.monotonic()
    wanted = set(args.only.split(","))
    print(f"== real clients against {args.image}")
    try:
        if "pyairbyte" in wanted:
            pyairbyte(args.image, report, work, socket)
        if "byhand" in wanted:
            by_hand(args.image, report, work, socket)
        if "bulk" in wanted:
            bulk(args.image, report, work)
        if "cdk" in wanted:
            cdk(args.image, report, work)
    finally:
        if args.keep:
            print(f"scratch folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    failed = [r for r in report.results if not r[1]]
    print(f"== client checks: {len(report.results) - len(failed)} of {len(report.results)} passed "
          f"in {time.monotonic() - started:.0f} s")
    for name, _, detail in failed:
        print(f"FAIL {name}: {detail}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
