#!/usr/bin/env python3
"""Generate realistic Airbyte input for destination-duckdb: several streams,
records of a few hundred bytes with nested objects, arrays, unicode, escapes
and big numbers, a STREAM state every few thousand records, and a configured
catalog to go with it.

    scripts/generate_input.py --records 100000 --out input.jsonl --catalog catalog.json
    scripts/generate_input.py --records 1000000 --streams 200 --out many.jsonl --catalog many.json

--streams N (default 3) spreads the same --records over N streams, round
robin. The first three are `users`, `purchases` and `products`; the others
are `stream_003`, `stream_004`, ... and take the three shapes in turn
(stream k has the shape of stream k mod 3). A STATE follows every
--state-every records overall, for the stream of the record just written;
each stream gets a STREAM_STATUS at the end. With the default three streams
the output is what it has always been, byte for byte.

Deterministic for a given --seed. Written line by line: memory stays small
whatever --records is. Standard library only.
"""
import argparse
import json
import random
import sys

SHAPES = ["users", "purchases", "products"]
WORDS = ["alpha", "Grüße", "naïve", "東京", "emoji 😀", "tab\there", "quote \"q\"", "back\\slash",
         "line\nbreak", "sep\u2028", "plain", "data", "engineer", "duck"]


def stream_names(n):
    """The first three streams keep their historical names; the rest are
    numbered by position, so a name always means the same stream."""
    return [SHAPES[k] if k < len(SHAPES) else f"stream_{k:03d}" for k in range(n)]


def shape_of(k):
    return SHAPES[k % len(SHAPES)]


def schema(stream):
    """The JSON schema of a shape (a stream name of SHAPES), as a source
    would declare it: the typed relations get one column per property."""
    props = {
        "id": {"type": "integer"},
        "updated_at": {"type": "string", "format": "date-time", "airbyte_type": "timestamp_with_timezone"},
        "name": {"type": ["null", "string"]},
        "score": {"type": "number"},
        "active": {"type": "boolean"},
        "nothing": {"type": ["null", "string"]},
        "big": {"type": "number"},
    }
    if stream == "users":
        props["address"] = {"type": "object", "properties": {"city": {"type": "string"}, "zip": {"type": "string"}}}
        props["tags"] = {"type": "array", "items": {"type": "string"}}
    elif stream == "purchases":
        props["items"] = {"type": "array", "items": {"type": "object"}}
        props["user_id"] = {"type": "integer"}
    else:
        props["description"] = {"type": "string"}
        props["dims"] = {"type": "array", "items": {"type": "integer"}}
    return {"type": "object", "properties": props}


def record(rng, stream, i):
    base = {
        "id": i,
        "updated_at": f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:00:00Z",
        "name": " ".join(rng.choice(WORDS) for _ in range(3)),
        "score": round(rng.uniform(-1e6, 1e6), 6),
        "active": rng.random() < 0.5,
        "nothing": None,
    }
    if stream == "users":
        base["address"] = {"city": rng.choice(WORDS), "zip": f"{rng.randint(0, 99999):05d}",
                           "geo": {"lat": rng.uniform(-90, 90), "lon": rng.uniform(-180, 180)}}
        base["tags"] = [rng.choice(WORDS) for _ in range(rng.randint(0, 4))]
    elif stream == "purchases":
        base["items"] = [{"sku": rng.randint(1, 10**6), "qty": rng.randint(1, 9),
                          "price": round(rng.uniform(0, 500), 2)} for _ in range(rng.randint(1, 3))]
        base["user_id"] = rng.randint(1, 10**5)
    else:
        base["description"] = " ".join(rng.choice(WORDS) for _ in range(12))
        base["dims"] = [rng.randint(1, 100) for _ in range(3)]
    text = json.dumps(base, ensure_ascii=False, separators=(",", ":"))
    # Big-number literals that f64 would round: spliced in as raw JSON text.
    return text[:-1] + f',"big":{rng.randint(10**20, 10**25)}.{rng.randint(0, 10**6):06d}}}'


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--state-every", type=int, default=5_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--streams", type=int, default=3, help="number of streams (default 3)")
    ap.add_argument("--mode", default="append", choices=["append", "overwrite", "append_dedup"])
    ap.add_argument("--out", required=True, help="messages file ('-' for stdout)")
    ap.add_argument("--catalog", required=True, help="configured catalog file to write")
    a = ap.parse_args()
    if a.streams < 1:
        ap.error("--streams must be at least 1")
    rng = random.Random(a.seed)
    names = stream_names(a.streams)
    shapes = [shape_of(k) for k in range(a.streams)]

    catalog = {"streams": [{
        "stream": {"name": s, "json_schema": schema(shape), "supported_sync_modes": ["full_refresh", "incremental"]},
        "sync_mode": "incremental", "destination_sync_mode": a.mode, "cursor_field": ["updated_at"],
        "primary_key": [["id"]], "generation_id": 1, "minimum_generation_id": 0, "sync_id": 1,
    } for s, shape in zip(names, shapes)]}
    with open(a.catalog, "w") as f:
        json.dump(catalog, f, indent=1)

    out = sys.stdout if a.out == "-" else open(a.out, "w", encoding="utf-8", buffering=1 << 20)
    emitted = 1_700_000_000_000
    counts = {s: 0 for s in names}
    for i in range(a.records):
        k = i % a.streams
        s = names[k]
        counts[s] += 1
        out.write('{"type":"RECORD","record":{"stream":"%s","emitted_at":%d,"data":%s}}\n'
                  % (s, emitted + i, record(rng, shapes[k], i)))
        if (i + 1) % a.state_every == 0:
            out.write(json.dumps({"type": "STATE", "state": {"type": "STREAM", "stream": {
                "stream_descriptor": {"name": s, "namespace": None},
                "stream_state": {"cursor": i}}, "sourceStats": {"recordCount": float(counts[s])}}},
                separators=(",", ":")) + "\n")
            counts[s] = 0
    for s in names:
        out.write(json.dumps({"type": "TRACE", "trace": {"type": "STREAM_STATUS", "emitted_at": emitted,
                  "stream_status": {"stream_descriptor": {"name": s}, "status": "COMPLETE"}}},
                  separators=(",", ":")) + "\n")
    if out is not sys.stdout:
        out.close()


if __name__ == "__main__":
    main()
