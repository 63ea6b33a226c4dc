#!/usr/bin/env python3
"""A small, deterministic Airbyte source for scripts/docker_clients.py: the
source PyAirbyte reads from (as a `local_executable`) while it drives the
destination image. Standard library only, so any python3 runs it.

    docker_test_source.py spec
    docker_test_source.py check --config CONFIG
    docker_test_source.py discover --config CONFIG
    docker_test_source.py read --config CONFIG --catalog CATALOG [--state STATE]
    docker_test_source.py records COUNT        (what `read` sends, as JSON lines of
                                                {"stream": ..., "data": ...}, for checking)

Config: {"count": N}, the records per stream (default 100). Streams `users`
and `orders`; their data has nesting, unicode, a 30-digit number and nulls,
so a row that comes out different from what went in shows.
"""
import json
import sys

STREAMS = ("users", "orders")


def emit(message):
    sys.stdout.write(json.dumps(message, ensure_ascii=False, separators=(",", ":")) + "\n")


def records(count):
    for i in range(count):
        yield "users", {"id": i, "name": f"user-{i} \u00e9\u4e2d", "address": {"city": f"c{i % 7}", "zip": None},
                        "balance": "123456789012345678901234567890"[: 10 + i % 20]}
    for i in range(count):
        yield "orders", {"id": i, "user_id": (i * 7) % count, "amount": round(i * 1.25, 2),
                         "tags": ["a", "b"][: i % 3], "big": 123456789012345678901234567890}


def schema(stream):
    return {"type": "object", "properties": {"id": {"type": "integer"}}, "additionalProperties": True}


def option(name):
    args = sys.argv[2:]
    return args[args.index(name) + 1] if name in args else None


def main():
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "records":
        for stream, data in records(int(sys.argv[2])):
            print(json.dumps({"stream": stream, "data": data}, ensure_ascii=False))
        return 0
    if command == "spec":
        emit({"type": "SPEC", "spec": {"connectionSpecification": {
            "$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
            "properties": {"count": {"type": "integer", "minimum": 0}}}}})
        return 0
    config = json.load(open(option("--config"))) if option("--config") else {}
    count = int(config.get("count", 100))
    if command == "check":
        emit({"type": "CONNECTION_STATUS", "connectionStatus": {"status": "SUCCEEDED"}})
        return 0
    if command == "discover":
        emit({"type": "CATALOG", "catalog": {"streams": [
            {"name": s, "json_schema": schema(s), "supported_sync_modes": ["full_refresh"]} for s in STREAMS]}})
        return 0
    if command == "read":
        catalog = json.load(open(option("--catalog")))
        wanted = {c["stream"]["name"] for c in catalog["streams"]}
        emitted_at = 1700000000000
        done = set()
        for stream, data in records(count):
            if stream not in wanted:
                continue
            emit({"type": "RECORD", "record": {"stream": stream, "data": data, "emitted_at": emitted_at}})
            emitted_at += 1
        for stream in STREAMS:
            if stream in wanted and stream not in done:
                emit({"type": "STATE", "state": {"type": "STREAM", "stream": {
                    "stream_descriptor": {"name": stream}, "stream_state": {"done": True}}}})
                done.add(stream)
        return 0
    print(f"unknown command {command!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
