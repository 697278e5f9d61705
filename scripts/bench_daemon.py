#!/usr/bin/env python3
"""The daemon benchmark (scripts/bench-daemon.sh runs it): one logferry
daemon on the embedded default, a micro-batch schedule of rate(1 second),
its inbox fed at a steady rate over several tenants with records stamped at
the moment they are emitted (scripts/bench_feed.py).

Prints, per rate, next to the target: records/s fed and loaded, end-to-end
latency P50/P95/P99 (event time -> queryable in the warehouse, per record,
from the daemon's logferry_end_to_end_latency_seconds histogram, after a
warm-up), the backlog left when the feed stops, and the daemon's RSS over
time (peak, and the mean of the first and last thirds: flat or growing).
After each run the daemon is stopped with SIGTERM (it must exit 0) and
`logferry reconcile` must balance, with every record fed in the warehouse.

usage: bench_daemon.py BIN WORKDIR [--rates 4000] [--seconds 120]
       [--warmup 15] [--tenants 8]
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
TARGET_P95_S = 5.0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config(tenants, port):
    t = "".join(
        f'[[tenant]]\nid = "tenant-{i:04d}"\nstreams = ["logs-tenant-{i:04d}"]\n\n'
        for i in range(tenants)
    )
    return (
        f'[daemon]\nlisten = "127.0.0.1:{port}"\ninbox_interval = "250ms"\n\n'
        '[[schedule]]\nname = "micro-batch"\njob = "run"\nexpression = "rate(1 second)"\n\n'
        + t
    )


METRIC = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")
LABEL = re.compile(r'(\w+)="([^"]*)"')


def scrape(port):
    """The daemon's metrics: {(name, frozenset(labels)): value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = METRIC.match(line)
        if m:
            labels = frozenset(LABEL.findall(m.group(2) or ""))
            out[(m.group(1), labels)] = float(m.group(3))
    return out


def total(metrics, name, **want):
    return sum(
        v
        for (n, labels), v in metrics.items()
        if n == name and all((k, w) in labels for k, w in want.items())
    )


def buckets(metrics):
    """Cumulative latency buckets summed over tenants: {le: count}."""
    b = {}
    for (n, labels), v in metrics.items():
        if n == "logferry_end_to_end_latency_seconds_bucket":
            le = dict(labels)["le"]
            le = float("inf") if le == "+Inf" else float(le)
            b[le] = b.get(le, 0) + v
    return b


def quantile(b, q):
    """Quantile q of a cumulative histogram, interpolated in its bucket."""
    les = sorted(b)
    n = b[les[-1]] if les else 0
    if n == 0:
        return float("nan")
    rank = q * n
    prev_le, prev_c = 0.0, 0.0
    for le in les:
        c = b[le]
        if c >= rank:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * (rank - prev_c) / max(c - prev_c, 1e-9)
        prev_le, prev_c = le, c
    return les[-1]


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def bench(bin_, work, rate, seconds, warmup, tenants):
    d = os.path.join(work, f"rate-{rate}")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    port = free_port()
    cfg = os.path.join(d, "bench.toml")
    with open(cfg, "w") as f:
        f.write(config(tenants, port))
    data = os.path.join(d, "data")
    base = [bin_, "--data-dir", data, "--config", cfg]
    log = open(os.path.join(d, "daemon.log"), "w")
    env = dict(os.environ, LOGFERRY_LOG="warn")
    daemon = subprocess.Popen(base + ["daemon"], stdout=subprocess.DEVNULL, stderr=log, env=env)
    t0 = time.time()
    while True:
        try:
            scrape(port)
            break
        except OSError:
            if daemon.poll() is not None or time.time() - t0 > 60:
                sys.exit(f"the daemon did not start: see {log.name}")
            time.sleep(0.1)

    samples = []  # (t, rss KiB)
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            r = rss_kib(daemon.pid)
            if r:
                samples.append((time.time(), r))
            stop.wait(1.0)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    feed = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "bench_feed.py"), os.path.join(data, "inbox"),
         "--rate", str(rate), "--seconds", str(seconds), "--tenants", str(tenants)],
        stdout=subprocess.PIPE,
    )
    start = time.time()
    time.sleep(warmup)
    m0 = scrape(port)
    t_warm = time.time()
    fed = json.loads(feed.communicate()[0])
    t_fed = time.time()
    m1 = scrape(port)
    loaded_at_end = total(m1, "logferry_records_total", stage="load", outcome="loaded")
    # Drain: everything fed loaded (at most a minute).
    while True:
        m2 = scrape(port)
        loaded = total(m2, "logferry_records_total", stage="load", outcome="loaded")
        accepted = total(m2, "logferry_records_total", stage="forward", outcome="accepted")
        received = total(m2, "logferry_records_total", stage="forward", outcome="received")
        if received >= fed["records"] and loaded >= accepted or time.time() - t_fed > 60:
            break
        time.sleep(0.5)
    t_drained = time.time()
    stop.set()
    sampler.join()
    daemon.send_signal(signal.SIGTERM)
    code = daemon.wait(timeout=120)
    log.close()
    if code != 0:
        sys.exit(f"the daemon exited {code} on SIGTERM: see {log.name}")

    b0, b2 = buckets(m0), buckets(m2)
    window = {le: b2.get(le, 0) - b0.get(le, 0) for le in b2}
    loaded0 = total(m0, "logferry_records_total", stage="load", outcome="loaded")
    loaded1 = total(m1, "logferry_records_total", stage="load", outcome="loaded")
    schedule_ok = total(m2, "logferry_schedule_runs_total", schedule="micro-batch", outcome="ok")
    skipped = total(m2, "logferry_schedule_runs_total", schedule="micro-batch", outcome="skipped")
    failed = total(m2, "logferry_schedule_runs_total", schedule="micro-batch", outcome="failed")

    rec = subprocess.run(base + ["reconcile", "--json"], capture_output=True, text=True)
    r = json.loads(rec.stdout)
    if rec.returncode != 0 or r["totals"]["received"] != fed["records"]:
        sys.exit(f"reconcile does not balance, or the records fed are not all there:\n{rec.stdout}")
    count = subprocess.run(
        base + ["sql", "--format", "csv", "SELECT count(*) FROM warehouse"],
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()[1]
    if int(count) != fed["records"]:
        sys.exit(f"{fed['records']} records fed, {count} in the warehouse")

    after = [s for s in samples if s[0] >= t_warm]
    third = max(len(after) // 3, 1)
    mean = lambda xs: sum(x for _, x in xs) / max(len(xs), 1) / 1024
    return {
        "rate": rate,
        "seconds": seconds,
        "fed": fed["records"],
        "fed_per_s": fed["records"] / fed["seconds"],
        "loaded_per_s": (loaded1 - loaded0) / (t_fed - t_warm),
        "backlog_at_end": int(fed["records"] - loaded_at_end - r["totals"]["duplicates"]),
        "drain_s": t_drained - t_fed,
        "p50": quantile(window, 0.50),
        "p95": quantile(window, 0.95),
        "p99": quantile(window, 0.99),
        "observed": window.get(float("inf"), 0),
        "rss_peak": max((x for _, x in samples), default=0) / 1024,
        "rss_first": mean(after[:third]),
        "rss_last": mean(after[-third:]),
        "rss_by_minute": [
            round(mean([s for s in after if t_warm + 60 * m <= s[0] < t_warm + 60 * (m + 1)]), 1)
            for m in range(int((after[-1][0] - t_warm) // 60) + 1 if after else 0)
        ],
        "runs_ok": schedule_ok,
        "runs_skipped": skipped,
        "runs_failed": failed,
        "warehouse_rows": int(count),
        "elapsed": time.time() - start,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bin")
    ap.add_argument("work")
    ap.add_argument("--rates", default="4000")
    ap.add_argument("--seconds", type=float, default=120)
    ap.add_argument("--warmup", type=float, default=15)
    ap.add_argument("--tenants", type=int, default=8)
    a = ap.parse_args()
    rows = []
    for rate in [int(x) for x in a.rates.split(",")]:
        print(f"rate {rate}/s for {a.seconds:.0f} s over {a.tenants} tenants ...", file=sys.stderr)
        rows.append(bench(a.bin, a.work, rate, a.seconds, a.warmup, a.tenants))
    print()
    print(f"# logferry daemon, embedded default, micro-batch rate(1 second), inbox fed as NDJSON "
          f"every 250 ms over {a.tenants} tenants; {os.cpu_count()} cores")
    print(f"# latency: event time -> queryable, per record, after {a.warmup:.0f} s of warm-up; "
          f"target P95 <= {TARGET_P95_S:.0f} s")
    print()
    print("| rate/s | fed rec/s | loaded rec/s | P50 s | P95 s | P99 s | P95 target | "
          "backlog at stop | RSS first third MiB | RSS last third MiB | peak RSS MiB | runs ok/skipped/failed |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    ok = True
    for x in rows:
        meets = x["p95"] <= TARGET_P95_S
        ok &= meets
        print(f"| {x['rate']} | {x['fed_per_s']:.0f} | {x['loaded_per_s']:.0f} | {x['p50']:.2f} | "
              f"{x['p95']:.2f} | {x['p99']:.2f} | {'met' if meets else 'MISSED'} (5) | "
              f"{x['backlog_at_end']} | {x['rss_first']:.0f} | {x['rss_last']:.0f} | "
              f"{x['rss_peak']:.0f} | {x['runs_ok']:.0f}/{x['runs_skipped']:.0f}/{x['runs_failed']:.0f} |")
    for x in rows:
        print(f"\nRSS MiB by minute after warm-up, {x['rate']}/s: "
              + " ".join(f"{v:.0f}" for v in x["rss_by_minute"]))
    with open(os.path.join(a.work, "bench-daemon.json"), "w") as f:
        json.dump(rows, f, indent=2)
    print(f"\n(full figures: {os.path.join(a.work, 'bench-daemon.json')})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
