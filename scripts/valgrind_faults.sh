#!/usr/bin/env bash
# Runs the connector under valgrind's memcheck through the paths where the
# process ends abnormally or tears down after an error: a dedup merge with
# CDC deletes, bad input while appenders hold rows (the rollback and the
# appenders' drop), SIGTERM in the middle of a sync, and a
# file-size limit (EFBIG) that fails the final checkpoint. It fails when
# valgrind reports an invalid read, write or free, or memory that our code
# definitely leaked.
#
# DuckDB itself reports one "conditional jump depends on uninitialised
# value" inside RowGroupCollection::GetCheckpointTask (its code, not a
# memory error); that kind is counted and printed, not failed on.
#
# Usage: scripts/valgrind_faults.sh [path/to/destination-duckdb]
# About 2 minutes; valgrind makes DuckDB ~30x slower.
set -euo pipefail

bin="${1:-${CARGO_TARGET_DIR:-$HOME/.cache/destination-duckdb/target}/release/destination-duckdb}"
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)"; exit 2; }
[ -x "$bin" ] || { echo "no binary at $bin: cargo build --release first"; exit 2; }
work="$(mktemp -d)"
[ -n "${KEEP:-}" ] && echo "keeping $work" || trap 'rm -rf "$work"' EXIT
cd "$work"

cat > catalog.json <<'EOF'
{"streams":[{"stream":{"name":"s","json_schema":{"type":"object","properties":{"id":{"type":"integer"},"v":{"type":"integer"},"_ab_cdc_deleted_at":{"type":"string"}}}},
 "destination_sync_mode":"append_dedup","primary_key":[["id"]],"cursor_field":["v"]}]}
EOF
records() { # records FIRST COUNT [deleted]
    python3 - "$@" <<'EOF'
import json, sys
first, count = int(sys.argv[1]), int(sys.argv[2])
deleted = len(sys.argv) > 3
for i in range(first, first + count):
    data = {"id": i % 50, "v": i, "pad": "x" * 200}
    if deleted and i % 7 == 0:
        data["_ab_cdc_deleted_at"] = "2024-01-01T00:00:00Z"
    print(json.dumps({"type": "RECORD", "record": {"stream": "s", "emitted_at": i, "data": data}}))
    if i % 100 == 99:
        print(json.dumps({"type": "STATE", "state": {"type": "GLOBAL", "global": {"shared_state": {"i": i}}}}))
EOF
}

failures=0
uninit=0
run() { # run NAME EXPECTED_EXIT CONFIG_JSON INPUT_FILE [prefix command...]
    local name="$1" expect="$2" config="$3" input="$4"
    shift 4
    echo "$config" > "config-$name.json"
    set +e
    "$@" valgrind --quiet --leak-check=full --show-leak-kinds=definite --log-file="vg-$name.log" \
        "$bin" write --config "config-$name.json" --catalog catalog.json < "$input" > "out-$name.jsonl" 2> "err-$name.log"
    local code=$?
    set -e
    local bad
    bad=$(grep -cE "Invalid (read|write|free)|Mismatched free|Source and destination overlap|definitely lost in [1-9]" "vg-$name.log" || true)
    uninit=$((uninit + $(grep -c "uninitialised value" "vg-$name.log" || true)))
    if [ "$bad" -ne 0 ]; then
        echo "FAIL $name: valgrind reported memory errors (vg-$name.log):"; cat "vg-$name.log"; failures=$((failures + 1))
    elif [ "$expect" != "any" ] && [ "$code" != "$expect" ]; then
        echo "FAIL $name: exit $code, expected $expect"; tail -3 "out-$name.jsonl" "err-$name.log"; failures=$((failures + 1))
    else
        echo "ok   $name (exit $code)"
    fi
}

db="$work/db.duckdb"
records 0 1000 > first.jsonl
records 1000 1000 deleted > second.jsonl
run merge-create 0 "{\"destination_path\":\"$db\",\"typed_output\":\"tables\"}" first.jsonl
run merge-cdc 0 "{\"destination_path\":\"$db\",\"typed_output\":\"tables\"}" second.jsonl

# Bad input after 950 records held in open appenders: the rollback, the
# appenders' discard and their drop.
records 0 950 > bad.jsonl
echo '{"type":"RECORD","record":{"stream":"nope","emitted_at":1,"data":{}}}' >> bad.jsonl
run bad-input-rollback 1 "{\"destination_path\":\"$work/bad.duckdb\"}" bad.jsonl

# SIGTERM while records stream in.
records 0 3000 > long.jsonl
run sigterm any "{\"destination_path\":\"$work/term.duckdb\"}" long.jsonl \
    timeout --signal=TERM 8
# A 600 KiB file-size limit: the WAL or the final checkpoint hits EFBIG.
run file-size-limit 1 "{\"destination_path\":\"$work/efbig.duckdb\"}" long.jsonl \
    bash -c 'ulimit -f 600; exec "$@"' ulimit

echo "valgrind: $failures failing scenario(s); $uninit uninitialised-value report(s) inside DuckDB"
[ "$failures" -eq 0 ]
