#!/usr/bin/env bash
# End-to-end test against a real Airbyte source: airbyte-source-faker (PyPI)
# piped into destination-duckdb, three syncs on one DuckDB file:
#
#   1. incremental/append, fresh file          -> tables hold sync 1's records
#   2. incremental/append, --state built from the states the destination echoed
#      in sync 1, larger count                 -> tables hold sync 1 + sync 2
#   3. full_refresh/overwrite                  -> tables hold exactly sync 3
#
# Each sync also checks that both sides exit 0, that every destination stdout
# line is an AirbyteMessage, and that every source STATE is echoed in order
# with destinationStats.recordCount equal to the source's count. The table
# contents are read back with the `duckdb` Python package (an independent
# reader) and compared record by record with what the source sent.
#
# Usage: scripts/faker_e2e.sh [--bin PATH] [--count N] [--seed S] [--venv DIR] [--keep]
#
# Environment (flags win):
#   DESTINATION_DUCKDB_BIN  destination binary
#                           (default ${CARGO_TARGET_DIR:-~/.cache/destination-duckdb/target}/release/destination-duckdb)
#   FAKER_VENV              virtualenv for the source and the reader
#                           (default ~/.cache/destination-duckdb/faker-venv; created on first use, ~2 min)
#   FAKER_COUNT             users/purchases per sync 1 and 3; sync 2 uses twice as many (default 1000)
#   FAKER_SEED              source seed (default 42)
#   FAKER_E2E_TIMEOUT       seconds allowed per process before it is killed (default 300)
#   PYTHON                  interpreter used to create the venv (default python3.11, else python3)
#   FAKER_DATA_DIR          folder with the configured faker catalogs (default
#                           tests/data/airbyte/faker in the repo; if they are not there, the script
#                           builds the same catalogs from `source-faker discover`)
#   KEEP_TMP=1              keep the scratch folder (printed) instead of deleting it
#
# Exit status: 0 if every assertion held, 1 if one failed, 2 on a setup problem.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
faker_dir="${FAKER_DATA_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/data/airbyte/faker}"

bin="${DESTINATION_DUCKDB_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/destination-duckdb/target}/release/destination-duckdb}"
venv="${FAKER_VENV:-$HOME/.cache/destination-duckdb/faker-venv}"
count="${FAKER_COUNT:-1000}"
seed="${FAKER_SEED:-42}"
limit="${FAKER_E2E_TIMEOUT:-300}"
keep="${KEEP_TMP:-0}"

# Versions the captures in acceptance-data/faker came from.
FAKER_PIN="airbyte-source-faker==7.2.1"
CDK_PIN="airbyte-cdk==6.61.6"
DUCKDB_PIN="duckdb>=2.0,<2.1"

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
die() { echo "SETUP ERROR: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --bin) bin="$2"; shift 2 ;;
        --count) count="$2"; shift 2 ;;
        --seed) seed="$2"; shift 2 ;;
        --venv) venv="$2"; shift 2 ;;
        --keep) keep=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done

[[ "$count" =~ ^[1-9][0-9]*$ ]] || die "count must be a positive integer, got '$count'"
[[ "$seed" =~ ^-?[0-9]+$ ]] || die "seed must be an integer, got '$seed'"
[ -x "$bin" ] || die "destination binary not found or not executable: $bin
  build it with 'cargo build --release', or pass --bin / DESTINATION_DUCKDB_BIN"
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"

# ---------------------------------------------------------------- virtualenv
venv_ready() {
    [ -x "$venv/bin/source-faker" ] && "$venv/bin/python" - "$FAKER_PIN" "$DUCKDB_PIN" <<'EOF' 2>/dev/null
import sys
from importlib.metadata import version
want_faker = sys.argv[1].split("==")[1]
assert version("airbyte-source-faker") == want_faker
assert version("duckdb").startswith("2.0.")
import duckdb, source_faker  # noqa: F401
EOF
}

if ! venv_ready; then
    python="${PYTHON:-}"
    if [ -z "$python" ]; then
        if command -v python3.11 >/dev/null 2>&1; then python=python3.11; else python=python3; fi
    fi
    echo "== setting up $venv (one-off, about 2 minutes)"
    [ -x "$venv/bin/python" ] || "$python" -m venv "$venv" || die "'$python -m venv $venv' failed"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$FAKER_PIN" "$CDK_PIN" "$DUCKDB_PIN" \
        || die "pip install of $FAKER_PIN $CDK_PIN $DUCKDB_PIN into $venv failed"
    venv_ready || die "$venv is still not usable after pip install"
fi
py="$venv/bin/python"
check=("$py" "$here/faker_e2e_check.py")

# ---------------------------------------------------------------- scratch
work="$(mktemp -d "${TMPDIR:-/tmp}/faker-e2e.XXXXXX")"
cleanup() {
    if [ "$keep" = 1 ]; then echo "scratch folder kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

db="$work/db/faker.duckdb"   # the destination creates db/
"$py" -c 'import json, sys; print(json.dumps({"destination_path": sys.argv[1]}))' "$db" > "$work/destination.json"

# The configured catalogs captured in acceptance-data/faker; on a machine without
# them, the same catalogs built from `source-faker discover`.
cat_append="$faker_dir/faker_configured_catalog_incremental_append.json"
cat_overwrite="$faker_dir/faker_configured_catalog_full_refresh_overwrite.json"
if [ ! -f "$cat_append" ] || [ ! -f "$cat_overwrite" ]; then
    echo '{}' > "$work/empty.json"
    "$venv/bin/source-faker" discover --config "$work/empty.json" > "$work/discover.jsonl" 2> "$work/discover.err" \
        || { tail -n 20 "$work/discover.err" >&2; die "source-faker discover failed"; }
    cat_append="$work/catalog_incremental_append.json"
    cat_overwrite="$work/catalog_full_refresh_overwrite.json"
    "${check[@]}" catalog --discover "$work/discover.jsonl" --mode incremental_append --out "$cat_append" || exit 2
    "${check[@]}" catalog --discover "$work/discover.jsonl" --mode full_refresh_overwrite --out "$cat_overwrite" || exit 2
fi

failed=0
started=$SECONDS

# run_sync NAME FAKER_COUNT CATALOG [STATE_FILE]: source | tee | destination
run_sync() {
    local name="$1" n="$2" catalog="$3" state="${4:-}"
    local cfg="$work/$name.source.json"
    printf '{"count": %s, "seed": %s}\n' "$n" "$seed" > "$cfg"
    local state_args=()
    [ -n "$state" ] && state_args=(--state "$state")
    local t0=$SECONDS
    set +e
    timeout "$limit" "$venv/bin/source-faker" read --config "$cfg" --catalog "$catalog" "${state_args[@]}" \
            2> "$work/$name.source.err" \
        | tee "$work/$name.source.jsonl" \
        | timeout "$limit" "$bin" write --config "$work/destination.json" --catalog "$catalog" \
            > "$work/$name.dest.jsonl" 2> "$work/$name.dest.err"
    local rc=("${PIPESTATUS[@]}")
    set -e
    echo "   $name: source exit ${rc[0]}, destination exit ${rc[2]}, $((SECONDS - t0)) s"
    local ok=1
    if [ "${rc[2]}" != 0 ]; then
        ok=0
        echo "FAIL [$name] destination exited ${rc[2]}$( [ "${rc[2]}" = 124 ] && echo " (timed out after ${limit}s)"); its stdout and stderr end with:" >&2
        tail -n 5 "$work/$name.dest.jsonl" >&2
        tail -n 20 "$work/$name.dest.err" >&2
    fi
    if [ "${rc[1]}" != 0 ]; then
        ok=0
        echo "FAIL [$name] tee exited ${rc[1]}: the destination stopped reading its input early" >&2
    fi
    if [ "${rc[0]}" != 0 ]; then
        ok=0
        if [ "${rc[1]}" != 0 ]; then
            echo "FAIL [$name] source-faker exited ${rc[0]} (its output pipe was closed)" >&2
        else
            echo "FAIL [$name] source-faker exited ${rc[0]}$( [ "${rc[0]}" = 124 ] && echo " (timed out after ${limit}s)"); its stderr ends with:" >&2
            tail -n 20 "$work/$name.source.err" >&2
        fi
    fi
    [ $ok = 1 ]
}

echo "== faker end-to-end: $bin"
echo "   source $("$py" -c 'from importlib.metadata import version as v; print("airbyte-source-faker", v("airbyte-source-faker"), "/ airbyte-cdk", v("airbyte-cdk"), "/ reader duckdb", v("duckdb"))')"
echo "   count $count, seed $seed, scratch $work"
echo "   catalogs $cat_append, $cat_overwrite"

# ---- sync 1: incremental append into a fresh file
echo "== sync 1: incremental/append, count=$count"
if run_sync sync1 "$count" "$cat_append"; then
    "${check[@]}" messages --label "sync 1 messages" --src "$work/sync1.source.jsonl" --dst "$work/sync1.dest.jsonl" || failed=1
    "${check[@]}" tables --label "sync 1 tables" --db "$db" --catalog "$cat_append" \
        "$work/sync1.source.jsonl" || failed=1
else
    failed=1
fi

# ---- sync 2: incremental append, resumed from the echoed states
if [ $failed = 0 ]; then
    echo "== sync 2: incremental/append from the echoed states, count=$((2 * count))"
    "${check[@]}" state-file --dst "$work/sync1.dest.jsonl" --out "$work/sync2.state.json" || failed=1
fi
if [ $failed = 0 ]; then
    if run_sync sync2 "$((2 * count))" "$cat_append" "$work/sync2.state.json"; then
        streams=$("$py" -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["streams"]))' "$cat_append")
        "${check[@]}" messages --label "sync 2 messages" --src "$work/sync2.source.jsonl" \
            --dst "$work/sync2.dest.jsonl" --state-loaded "$streams" || failed=1
        "${check[@]}" tables --label "sync 2 tables" --db "$db" --catalog "$cat_append" \
            "$work/sync1.source.jsonl" "$work/sync2.source.jsonl" || failed=1
    else
        failed=1
    fi
fi

# ---- sync 3: full refresh overwrite
if [ $failed = 0 ]; then
    echo "== sync 3: full_refresh/overwrite, count=$count"
    if run_sync sync3 "$count" "$cat_overwrite"; then
        "${check[@]}" messages --label "sync 3 messages" --src "$work/sync3.source.jsonl" --dst "$work/sync3.dest.jsonl" || failed=1
        "${check[@]}" tables --label "sync 3 tables" --db "$db" --catalog "$cat_overwrite" \
            "$work/sync3.source.jsonl" || failed=1
    else
        failed=1
    fi
fi

echo "== summary ($((SECONDS - started)) s)"
if [ $failed = 0 ]; then
    echo "PASS: 3 syncs (append, resumed append, overwrite) from airbyte-source-faker into $bin"
    exit 0
fi
echo "FAILED: see the FAIL lines above (the first failing sync stops the run)." >&2
[ "$keep" = 1 ] || echo "Re-run with --keep to inspect the inputs, outputs and database." >&2
exit 1
