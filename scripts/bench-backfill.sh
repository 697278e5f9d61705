#!/usr/bin/env bash
# Benchmark of a backfill: DAYS days x 8 tenants of generated records
# (default 30 days, 1,000,000 records) forwarded and run once on the
# embedded default, a validation rule changed, then the whole range
# backfilled. Prints each step's wall time, records/s and peak RSS next to
# the first run of the same data (the baseline: what the backfill redoes),
# and the backfill's plan.
#
# usage: scripts/bench-backfill.sh [RECORDS]
# env:   BENCH_DAYS (default 30), BENCH_DIR (default $CARGO_TARGET_DIR/bench-backfill),
#        BENCH_SKIP_BUILD=1, BENCH_BIN (default the release build)
set -euo pipefail
cd "$(dirname "$0")/.."
RECORDS=${1:-1000000}
DAYS=${BENCH_DAYS:-30}
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
WORK=${BENCH_DIR:-$TARGET/bench-backfill}
TIME=/usr/bin/time
[ -x "$TIME" ] || { echo "needs GNU time at /usr/bin/time (Debian package 'time')" >&2; exit 1; }
if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  cargo build --release -p logferry --locked
fi
BIN=${BENCH_BIN:-$TARGET/release/logferry}

rm -rf "$WORK"
mkdir -p "$WORK/sql"
cp -r sql/dedupe.sql sql/rules sql/rollups "$WORK/sql/"
cat > "$WORK/bench.toml" <<TOML
[forward]
max_age = "$((DAYS + 2))d"
[aggregate]
sql_dir = "$WORK/sql"
TOML
LF="$BIN -q --data-dir $WORK/data --config $WORK/bench.toml"
echo "generating $RECORDS records over $DAYS days ..." >&2
$LF generate --out "$WORK/input" --records "$RECORDS" --span "${DAYS}d"
cat "$WORK/input/logferry.toml" >> "$WORK/bench.toml"

# measure NAME CMD...: runs CMD under GNU time; sets WALL (s) and RSS (MiB).
measure() {
  local name=$1; shift
  echo "$name ..." >&2
  if ! "$TIME" -f "%e %M" -o "$WORK/$name.time" "$@" > "$WORK/$name.out" 2> "$WORK/$name.err"; then
    echo "$name failed:" >&2; cat "$WORK/$name.err" >&2; exit 1
  fi
  read -r WALL RSS_KB < <(tail -n 1 "$WORK/$name.time")
  RSS=$(awk -v k="$RSS_KB" 'BEGIN{printf "%.0f", k/1024}')
}
json() { python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print($2)" "$WORK/$1.out"; }
rate() { awk -v n="$1" -v w="$2" 'BEGIN{printf "%.0f", n/w}'; }
row() { echo "| $1 | $2 | $3 | ${5:-$(rate "$RECORDS" "$2")} | $4 |"; }

FROM=$(date -u -d "@$(( $(date +%s) - DAYS * 86400 - 86400 ))" +%F)
TO=$(date -u +%F)
measure forward_ndjson $LF forward --input "$WORK/input/workload.ndjson" --json
F1=$WALL R1=$RSS
measure forward_cwl $LF forward --input "$WORK/input/workload.cwl" --format cloudwatch --json
F2=$WALL R2=$RSS
measure run $LF run --json
RUN_WALL=$WALL RUN_RSS=$RSS
WINDOWS=$(json run "len(r['windows'])")

# The rule changes: DEBUG is no longer a level.
sed -i "s/'DEBUG', //" "$WORK/sql/rules/invalid_level.sql"
measure plan $LF backfill --from "$FROM" --to "$TO" --plan --json
PARTS=$(json plan "r['partitions']")
JOBS=$(json plan "', '.join(f'{t} {n}' for t, n in r['jobs_per_table'].items())")
measure backfill $LF backfill --from "$FROM" --to "$TO" --json
BF_WALL=$WALL BF_RSS=$RSS
DONE=$(json backfill "len(r['done'])")
measure resume $LF backfill --from "$FROM" --to "$TO" --json
RS_WALL=$WALL
measure reload $LF backfill --from "$FROM" --to "$TO" --reload --json
RL_WALL=$WALL RL_RSS=$RSS
$LF reconcile > "$WORK/reconcile.txt" || { cat "$WORK/reconcile.txt"; echo "reconcile failed" >&2; exit 1; }
DEBUG_LEFT=$($LF sql --format csv "SELECT count(*) FROM warehouse WHERE level = 'DEBUG'" | tail -n 1)
[ "$DEBUG_LEFT" = 0 ] || { echo "the backfill left $DEBUG_LEFT DEBUG rows in the warehouse" >&2; exit 1; }

echo
echo "# $RECORDS records over $DAYS days x 8 tenants ($WINDOWS windows); $(nproc) cores; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "# plan: $PARTS partitions ($FROM .. $TO), load jobs per table: $JOBS"
echo
echo "| step | wall s | peak RSS MiB | records/s | what |"
echo "|---|---|---|---|---|"
row "forward (NDJSON + CloudWatch)" "$(awk -v a="$F1" -v b="$F2" 'BEGIN{print a+b}')" "$(( R1 > R2 ? R1 : R2 ))" "lands the range"
row "run (baseline)" "$RUN_WALL" "$RUN_RSS" "first aggregate, export, load of every window"
row "backfill (recompute)" "$BF_WALL" "$BF_RSS" "$DONE partitions recomputed with the changed rule and replaced"
row "backfill again" "$RS_WALL" "-" "resumed: every partition already done" "-"
row "backfill --reload" "$RL_WALL" "$RL_RSS" "every partition loaded again from the exported runs"
echo
echo "(reports: $WORK/*.out)"
