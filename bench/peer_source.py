"""A minimal Airbyte source for the `pyairbyte` peer (bench/peers.py): it
answers spec, check and discover from the bench's configured catalog, and
`read` replays the bench's generated input file (RECORD, STATE and TRACE
messages, exactly as every other contender gets them). PyAirbyte runs it as
a local executable, the way it runs any installed source.

    peer_source.py --input MSGS --catalog CAT [--mode MODE] spec|check|discover|read [--config F] [--catalog F] [--state F]

The options after the command are PyAirbyte's and are accepted and ignored
(the first --catalog is the bench's). Standard library only.
"""
import json
import shutil
import sys


def emit(msg):
    sys.stdout.write(json.dumps(msg, separators=(",", ":")) + "\n")


def main(argv):
    opts, rest = {}, []
    i = 0
    while i < len(argv):
        if argv[i] in ("--input", "--catalog", "--mode") and argv[i] not in opts and not rest:
            opts[argv[i]] = argv[i + 1]
            i += 2
        else:
            rest.append(argv[i])
            i += 1
    if not rest:
        print("usage: peer_source.py --input MSGS --catalog CAT spec|check|discover|read ...", file=sys.stderr)
        return 2
    cmd = rest[0]
    if cmd == "spec":
        emit({"type": "SPEC", "spec": {"connectionSpecification": {
            "$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "properties": {}}}})
    elif cmd == "check":
        emit({"type": "CONNECTION_STATUS", "connectionStatus": {"status": "SUCCEEDED"}})
    elif cmd == "discover":
        with open(opts["--catalog"], encoding="utf-8") as f:
            configured = json.load(f)
        dedup = opts.get("--mode") == "append_dedup"
        streams = []
        for cs in configured["streams"]:
            s = dict(cs["stream"])
            s["default_cursor_field"] = cs.get("cursor_field") or []
            if dedup:
                s["source_defined_primary_key"] = cs.get("primary_key") or []
            streams.append(s)
        emit({"type": "CATALOG", "catalog": {"streams": streams}})
    elif cmd == "read":
        sys.stdout.flush()
        with open(opts["--input"], "rb") as f:
            shutil.copyfileobj(f, sys.stdout.buffer, 1 << 20)
    else:
        print(f"peer_source.py: unknown command {cmd!r}", file=sys.stderr)
        return 2
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
