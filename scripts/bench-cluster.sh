#!/usr/bin/env bash
# Benchmark: a 30-day ad-hoc query over the lake, `logferry sql` run in its
# own process against the same query on Ballista's standalone cluster
# ([cluster] scheduler = "standalone": a scheduler and an executor started
# inside the `logferry sql` process) and on a cluster of processes
# (`logferry cluster scheduler` and one `logferry cluster executor` on this
# machine, what a deployment runs), on the same landed Parquet. Prints the
# time and peak RSS of each (best and median of BENCH_REPEAT runs), and
# checks that both return the same rows.
#
# usage: scripts/bench-cluster.sh [RECORDS]   (default 2000000, over 30 days)
# env:   BENCH_DIR (default $CARGO_TARGET_DIR/bench-cluster), BENCH_REPEAT
#        (default 3), BENCH_SKIP_BUILD=1
# Builds logferry with --features ballista (the first time, DataFusion is
# rebuilt with Ballista's features: some 45 minutes on two cores).
set -euo pipefail
cd "$(dirname "$0")/.."
RECORDS=${1:-2000000}
REPEAT=${BENCH_REPEAT:-3}
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
WORK=${BENCH_DIR:-$TARGET/bench-cluster}
TIME=/usr/bin/time
[ -x "$TIME" ] || { echo "needs GNU time at /usr/bin/time (Debian package 'time')" >&2; exit 1; }
if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  cargo build --release -p logferry --features ballista --locked
fi
BIN=$TARGET/release/logferry
# Thirty days of records: older than forward's default 14-day limit.
export LOGFERRY__FORWARD__MAX_AGE=31d

rm -rf "$WORK"
mkdir -p "$WORK"
echo "generating $RECORDS clean records over 30 days ..." >&2
"$BIN" -q generate --out "$WORK/input" --records "$RECORDS" --bad-fraction 0 \
  --duplicate-fraction 0 --cloudwatch-share 0 --span 30d --data-dir "$WORK/gen" > /dev/null
rm -rf "$WORK/gen"
lf=("$BIN" -q --data-dir "$WORK/lake" --config "$WORK/input/logferry.toml")
echo "forwarding ..." >&2
"${lf[@]}" forward --input "$WORK/input/workload.ndjson" > /dev/null
rm -f "$WORK/input/workload.ndjson"
OBJECTS=$(find "$WORK/lake/lake/landing" -name '*.parquet' | wc -l)
LANDED=$(du -sb "$WORK/lake/lake/landing" | cut -f1)

# Per tenant and day: records, services, errors, message bytes, the
# slowest-looking request (a join back to the day's largest message).
QUERY="WITH days AS (
  SELECT tenant_id, date_trunc('day', \"timestamp\") AS day, count(*) AS records,
         count(DISTINCT service) AS services,
         sum(CASE WHEN level IN ('ERROR', 'FATAL') THEN 1 ELSE 0 END) AS errors,
         sum(length(message)) AS message_bytes, max(length(message)) AS longest
  FROM landing GROUP BY 1, 2)
SELECT d.tenant_id, d.day, d.records, d.services, d.errors, d.message_bytes,
       count(l.event_id) AS longest_messages
FROM days d JOIN landing l
  ON l.tenant_id = d.tenant_id AND date_trunc('day', l.\"timestamp\") = d.day
 AND length(l.message) = d.longest
GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1, 2"

# run TARGET: the query REPEAT times; prints "best median rss_mib rows".
run() {
  local target=$1 walls=() rss=0 name=${1//[^a-z0-9]/_}
  for i in $(seq "$REPEAT"); do
    if ! LOGFERRY__CLUSTER__SCHEDULER=$target "$TIME" -f "%e %M" -o "$WORK/$name.time" \
        "${lf[@]}" sql --format csv "$QUERY" > "$WORK/$name.csv" 2> "$WORK/$name.err"; then
      echo "the query on \"$target\" failed:" >&2; tail -n 20 "$WORK/$name.err" >&2; exit 1
    fi
    read -r wall kb < "$WORK/$name.time"
    walls+=("$wall")
    [ "$kb" -gt "$rss" ] && rss=$kb
  done
  printf '%s\n' "${walls[@]}" | sort -n | awk -v rss="$rss" -v rows="$(($(wc -l < "$WORK/$name.csv") - 1))" \
    '{w[NR]=$1} END{printf "%s %s %.0f %d\n", w[1], w[int((NR+1)/2)], rss/1024, rows}'
}

echo "the query in this process ..." >&2
read -r L_BEST L_MED L_RSS L_ROWS < <(run "")
echo "the query on the standalone cluster ..." >&2
read -r C_BEST C_MED C_RSS C_ROWS < <(run standalone)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
SCHED=$(free_port) FLIGHT=$(free_port) GRPC=$(free_port)
"${lf[@]}" cluster scheduler --bind "127.0.0.1:$SCHED" 2> "$WORK/scheduler.log" &
PIDS=($!)
"${lf[@]}" cluster executor --scheduler "127.0.0.1:$SCHED" --bind-host 127.0.0.1 \
  --external-host 127.0.0.1 --port "$FLIGHT" --grpc-port "$GRPC" 2> "$WORK/executor.log" &
PIDS+=($!)
trap 'kill "${PIDS[@]}" 2>/dev/null || true' EXIT
sleep 2
echo "the query on a scheduler and an executor process ..." >&2
read -r P_BEST P_MED P_RSS P_ROWS < <(run "df://127.0.0.1:$SCHED")
for other in standalone "df___127_0_0_1_$SCHED"; do
  if ! cmp -s "$WORK/.csv" "$WORK/$other.csv"; then
    echo "the cluster ($other) returned other rows than this process:" >&2
    diff "$WORK/.csv" "$WORK/$other.csv" | head -n 20 >&2
    exit 1
  fi
done

echo
echo "# a 30-day query over $RECORDS records: $OBJECTS landing objects, $(awk -v b="$LANDED" 'BEGIN{printf "%.1f", b/1e6}') MB; $(nproc) cores"
echo "# logferry $("$BIN" --version | cut -d' ' -f2); best and median of $REPEAT runs, each a new process"
echo
echo "| where | best s | median s | peak RSS MiB | rows |"
echo "|---|---|---|---|---|"
echo "| this process (DataFusion) | $L_BEST | $L_MED | $L_RSS | $L_ROWS |"
echo "| standalone Ballista cluster (in the client) | $C_BEST | $C_MED | $C_RSS | $C_ROWS |"
echo "| scheduler + one executor (processes; client RSS) | $P_BEST | $P_MED | $P_RSS | $P_ROWS |"
echo
echo "standalone / local time: $(awk -v a="$C_MED" -v b="$L_MED" 'BEGIN{printf "%.2f", a/b}')x, processes / local: $(awk -v a="$P_MED" -v b="$L_MED" 'BEGIN{printf "%.2f", a/b}')x (medians); same rows: yes"
