#!/usr/bin/env python3
"""Feeds a logferry inbox at a steady rate, as a real source would.

Every INTERVAL seconds, the records emitted during that interval (RATE per
second over TENANTS tenants, each stamped with the moment it was emitted)
are written to one NDJSON file, which is renamed into place when complete
(names starting with . are ignored by the inbox). Prints, as JSON, the
records written and the wall time taken.

usage: bench_feed.py INBOX --rate 4000 --seconds 120 [--tenants 8]
       [--interval 0.25] [--seed 1]
"""

import argparse
import json
import os
import random
import time

LEVELS = ["INFO"] * 80 + ["WARN"] * 12 + ["ERROR"] * 6 + ["DEBUG"] * 2
SERVICES = ["api", "auth", "billing", "search", "worker", "gateway"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("inbox")
    ap.add_argument("--rate", type=float, default=4000)
    ap.add_argument("--seconds", type=float, default=120)
    ap.add_argument("--tenants", type=int, default=8)
    ap.add_argument("--interval", type=float, default=0.25)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    os.makedirs(a.inbox, exist_ok=True)
    start = time.time()
    emitted = 0
    n = 0
    next_at = start + a.interval
    while True:
        now = time.time()
        if now < next_at:
            time.sleep(next_at - now)
        end = min(next_at, start + a.seconds)
        # The records due by `end`, spread evenly over the interval.
        due = int((end - start) * a.rate) - emitted
        first = next_at - a.interval
        lines = []
        for i in range(due):
            t = first + (end - first) * (i + 0.5) / max(due, 1)
            tenant = rng.randrange(a.tenants)
            lines.append(
                json.dumps(
                    {
                        "stream": f"logs-tenant-{tenant:04d}",
                        "timestamp": int(t * 1000),
                        "level": rng.choice(LEVELS),
                        "service": rng.choice(SERVICES),
                        "message": f"request {emitted + i} handled in {rng.randrange(1, 900)} ms",
                        "request_id": f"{rng.getrandbits(64):016x}",
                        "seq": emitted + i,
                    },
                    separators=(",", ":"),
                )
            )
        if lines:
            tmp = os.path.join(a.inbox, f".feed-{n:06d}.tmp")
            with open(tmp, "w") as f:
                f.write("\n".join(lines) + "\n")
            os.rename(tmp, os.path.join(a.inbox, f"feed-{n:06d}.ndjson"))
            n += 1
        emitted += due
        if end >= start + a.seconds:
            break
        next_at += a.interval
    print(json.dumps({"records": emitted, "files": n, "seconds": time.time() - start}))


if __name__ == "__main__":
    main()
