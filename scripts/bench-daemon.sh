#!/usr/bin/env bash
# Benchmark of the daemon: the embedded default with a micro-batch schedule
# of rate(1 second), its inbox fed at a steady rate over 8 tenants with
# records stamped as they are emitted. Prints records/s fed and loaded,
# end-to-end latency P50/P95/P99 (event time -> queryable in the warehouse)
# next to the target (P95 <= 5 s), and the daemon's RSS over time.
#
# usage: scripts/bench-daemon.sh [RATES]       (default 4000; e.g. 4000,8000)
# env:   BENCH_SECONDS (feed time, default 120), BENCH_WARMUP (default 15),
#        BENCH_TENANTS (default 8), BENCH_DIR (default $CARGO_TARGET_DIR/bench-daemon),
#        BENCH_SKIP_BUILD=1
# Exit status 1 when a rate misses the P95 target.
set -euo pipefail
cd "$(dirname "$0")/.."
RATES=${1:-4000}
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
WORK=${BENCH_DIR:-$TARGET/bench-daemon}

if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  cargo build --release -p logferry --locked
fi
mkdir -p "$WORK"
exec python3 scripts/bench_daemon.py "$TARGET/release/logferry" "$WORK" \
  --rates "$RATES" --seconds "${BENCH_SECONDS:-120}" --warmup "${BENCH_WARMUP:-15}" \
  --tenants "${BENCH_TENANTS:-8}"
