#!/usr/bin/env python3
"""Feeds the first LIMIT lines of FILE to stdout at RATE lines a second, in
twentieths of a second: a slow source, for measuring what the connector does
when states arrive faster than row groups fill.

    python3 bench/throttle.py 10000 bench/out/inputs/<input>.jsonl 240000 \\
        | destination-duckdb write --config ... --catalog ...
"""
import sys
import time


def main():
    rate, path, limit = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    step = max(rate // 20, 1)
    out = sys.stdout.buffer
    start = time.monotonic()
    sent = 0
    with open(path, "rb") as f:
        for line in f:
            out.write(line)
            sent += 1
            if sent % step == 0:
                out.flush()
                ahead = sent / rate - (time.monotonic() - start)
                if ahead > 0:
                    time.sleep(ahead)
            if sent >= limit:
                break
    out.flush()


if __name__ == "__main__":
    main()
