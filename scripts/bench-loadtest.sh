#!/usr/bin/env bash
# The load test benchmark through `logferry loadtest`: the `benchmark`
# scenario (10,000 records/s over 10 tenants for 5 minutes of real time) on
# the embedded default (the inbox, the daemon, the local warehouse), and
# `benchmark-emulators` (1,000 records/s over 10 tenants: moto does not take
# 10,000/s; BENCH_EMULATORS_SCENARIO=benchmark tries) on the emulators
# (PutRecords into Kinesis on moto, the daemon following the streams, GCS,
# the BigQuery emulator), one after the other. Prints, side by
# side: records/s sent and made queryable, end-to-end latency P50/P95 (event
# time -> queryable, every record) against each target (5 s embedded, the
# guide's 30 s on the emulators), CPU seconds, peak RSS, lost records and the
# cost per million records against BigQuery streaming inserts; writes each
# run's HTML report next to its data.
#
# usage: scripts/bench-loadtest.sh [embedded|emulators|both]   (default both)
# env:   BENCH_SCALE (time scale, default 1: five real minutes),
#        BENCH_DIR (default $CARGO_TARGET_DIR/bench-loadtest), BENCH_SKIP_BUILD=1
set -euo pipefail
cd "$(dirname "$0")/.."
WHICH=${1:-both}
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
WORK=${BENCH_DIR:-$TARGET/bench-loadtest}
SCALE=${BENCH_SCALE:-1}
BIN=$TARGET/release/logferry
if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  cargo build --release -p logferry --locked
fi
mkdir -p "$WORK"
case $WHICH in embedded|both) rm -rf "$WORK/embedded" ;; esac
case $WHICH in emulators|both) rm -rf "$WORK/emulators" ;; esac
run() { # name, target, scenario, [config]
  local name=$1 target=$2 scenario=$3 config=()
  [ -n "${4:-}" ] && config=(--config "$4")
  echo "== $name: logferry loadtest $scenario --target $target --time-scale $SCALE" >&2
  set +e
  "$BIN" --data-dir "$WORK/$name" "${config[@]}" loadtest "$scenario" --target "$target" \
    --time-scale "$SCALE" --drain-timeout 300s --json --report "$WORK/$name.html" > "$WORK/$name.json"
  echo "exit status $?" >&2
  set -e
  "$BIN" --data-dir "$WORK/$name" "${config[@]}" cost --since 1h --json > "$WORK/$name.cost.json" || true
}
case $WHICH in embedded|both) run embedded embedded benchmark ;; esac
case $WHICH in emulators|both)
  scripts/emulators.sh start
  # shellcheck disable=SC1091
  source target/emulators.env
  id="bench-$(date +%s)"
  cat > "$WORK/emulators.toml" <<TOML
[storage]
lake = "$LOGFERRY_EMULATOR_LAKE/$id/lake"
export = "$LOGFERRY_EMULATOR_EXPORT/$id/export"
[aws]
allow_http = true
[kinesis]
# The streams outlive a run on the emulators: read only what this run puts.
start = "latest"
[warehouse]
kind = "bigquery"
partitioning = "day"
[bigquery]
dataset = "${id//-/_}"
poll_initial = "20ms"
# The emulator enforces no load job quota: a one-second micro-batch.
load_jobs_per_table_per_day = 200000
load_jobs_per_project_per_day = 1000000
table_updates_per_10s = 20
TOML
  run emulators emulators "${BENCH_EMULATORS_SCENARIO:-benchmark-emulators}" "$WORK/emulators.toml"
  ;;
esac
python3 - "$WORK" <<'PY'
import json, os, sys
work = sys.argv[1]
rows = []
for name, target_ms in (("embedded", 5000), ("emulators", 30000)):
    p = os.path.join(work, name + ".json")
    if not os.path.exists(p) or os.path.getsize(p) == 0:
        continue
    r = json.load(open(p))
    t = {x["name"]: x for x in r["trends"]}["e2e_latency"]
    c = json.load(open(os.path.join(work, name + ".cost.json")))["cost"]
    alt = {a["name"]: a["per_million_usd"] for a in c["alternatives"]}
    rows.append((name, r, t, target_ms, c, alt))
print("| target | sent rec/s | queryable rec/s | P50 s | P95 s | P95 target | met | CPU s | peak RSS MiB | sent | lost | reconciled | $/M logferry | $/M streaming inserts | $/M Storage Write API |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for name, r, t, target, c, alt in rows:
    print(f"| {name} | {r['sent_per_s']:.0f} | {r['loaded_per_s']:.0f} | {t['med']/1000:.2f} | {t['p95']/1000:.2f} "
          f"| {target/1000:.0f} s | {'yes' if t['p95'] <= target else 'NO'} | {r['cpu_s']:.0f} | {r['peak_rss_bytes']/1048576:.0f} "
          f"| {r['sent']} | {r['lost']} | {r['reconciled']} | {c['per_million_usd'] or 0:.4f} "
          f"| {alt.get('BigQuery streaming inserts (legacy)', 0):.4f} | {alt.get('BigQuery Storage Write API', 0):.4f} |")
PY
