#!/usr/bin/env bash
# Benchmark: logferry against DuckDB on the same data, in one run, and
# logferry's scaling curve.
#
#   forward: logferry forward (decode, validate, land as zstd Parquet per
#            tenant/hour) vs DuckDB read_json -> COPY TO zstd Parquet, on the
#            same NDJSON file;
#   run:     logferry run (dedupe, three rules, two rollups, curated rows,
#            dead letters, export and load copies) vs DuckDB doing the same
#            work on the same landed Parquet (scripts/bench_duckdb.py run);
#            and logferry run again with a 2 GiB pool and zstd level 3
#            (DuckDB's memory class and level) instead of the defaults;
#   export:  the bytes logferry ships over the transit link for the window's
#            log_records vs DuckDB's zstd Parquet of the same rows, and the
#            egress cost per million records of each;
#   scaling: one hour holding each of BENCH_SCALE records: forward and run
#            time and peak RSS per step (memory should stay flat).
#
# usage: scripts/bench.sh [RECORDS]     (default 1000000: the comparison size)
# env:   BENCH_SCALE    records per scaling step (default "1000000 5000000
#                       20000000"; "" skips the curve; the comparison size is
#                       measured once either way)
#        BENCH_DIR (default $CARGO_TARGET_DIR/bench), BENCH_VENV (DuckDB's
#        venv, default ~/.cache/logferry/bench-venv), BENCH_SKIP_BUILD=1
# Each step needs about 12 KB of disk per record (NDJSON, lake, export,
# warehouse, spill); the NDJSON is removed once forwarded.
set -euo pipefail
cd "$(dirname "$0")/.."
RECORDS=${1:-1000000}
SCALE=${BENCH_SCALE-1000000 5000000 20000000}
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
WORK=${BENCH_DIR:-$TARGET/bench}
VENV=${BENCH_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/logferry/bench-venv}
DUCKDB_VERSION=2.0.1
# Egress price per GB over the transit link: the cost model's own.
EGRESS_USD_PER_GB=$(awk '/^\[cost.prices.transit_egress\]/{f=1} f&&/^usd/{print $3; exit}' jobs/core/default.toml)

if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  cargo build --release -p logferry --locked
fi
BIN=$TARGET/release/logferry
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import duckdb" 2>/dev/null; then
  echo "installing DuckDB $DUCKDB_VERSION into $VENV" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "duckdb==$DUCKDB_VERSION"
fi
PY=$VENV/bin/python
TIME=/usr/bin/time
[ -x "$TIME" ] || { echo "needs GNU time at /usr/bin/time (Debian package 'time')" >&2; exit 1; }

rm -rf "$WORK"
mkdir -p "$WORK"

# measure NAME CMD...: runs CMD under GNU time; sets WALL (s) and RSS (MiB).
measure() {
  local name=$1; shift
  if ! "$TIME" -f "%e %M" -o "$WORK/$name.time" "$@" > "$WORK/$name.out" 2> "$WORK/$name.err"; then
    echo "$name failed:" >&2; tail -n 20 "$WORK/$name.err" >&2; exit 1
  fi
  read -r WALL RSS_KB < <(tail -n 1 "$WORK/$name.time")
  RSS=$(awk -v k="$RSS_KB" 'BEGIN{printf "%.0f", k/1024}')
}
rate() { awk -v n="$1" -v w="$2" 'BEGIN{printf "%.0f", n/w}'; }
mb() { awk -v b="$1" 'BEGIN{printf "%.1f", b/1e6}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a/b}'; }
# The JSON of a run: sum of a window field.
run_sum() { "$PY" -c "import json,sys; r=json.load(open(sys.argv[1])); print(sum(w.get(sys.argv[2]) or 0 for w in r['windows']))" "$1" "$2"; }

# step N: one hour holding N clean records, forwarded and run; with
# COMPARE=1, DuckDB does the same work beside it. Appends a row to the curve.
CURVE=()
step() {
  local n=$1 dir=$WORK/$1
  mkdir -p "$dir"
  # Every record in the current hour (at least a minute of it).
  local into=$(( $(date +%s) % 3600 ))
  if [ "$into" -lt 60 ]; then sleep $(( 61 - into )); into=61; fi
  echo "[$n] generating one hour of $n clean NDJSON records ..." >&2
  "$BIN" -q generate --out "$dir/input" --records "$n" --bad-fraction 0 \
    --duplicate-fraction 0 --cloudwatch-share 0 --span "${into}s" --data-dir "$dir/gen" > /dev/null
  rm -rf "$dir/gen"
  local in=$dir/input/workload.ndjson
  local bytes; bytes=$(stat -c %s "$in")
  cat "$in" > /dev/null   # warm the page cache for both tools
  local lf="$BIN -q --data-dir $dir/lake --config $dir/input/logferry.toml"
  echo "[$n] logferry forward ..." >&2
  measure "fwd-$n" $lf forward --input "$in" --json
  local fwd_wall=$WALL fwd_rss=$RSS
  local landed; landed=$(du -sb "$dir/lake/lake/landing" | cut -f1)
  if [ "${COMPARE:-0}" = 1 ]; then
    echo "[$n] duckdb convert ..." >&2
    measure "duck-convert-$n" "$PY" scripts/bench_duckdb.py convert "$in" "$dir/duck.parquet"
    DK_CONV_WALL=$WALL DK_CONV_RSS=$RSS
    DK_CONV_OUT=$(stat -c %s "$dir/duck.parquet")
    rm -f "$dir/duck.parquet"
    FWD_WALL=$fwd_wall FWD_RSS=$fwd_rss FWD_OUT=$landed NDJSON_BYTES=$bytes
    echo "[$n] duckdb run (same work, same landed Parquet) ..." >&2
    measure "duck-run-$n" "$PY" scripts/bench_duckdb.py run "$dir/lake/lake/landing" "$dir/duck-run"
    DK_RUN_WALL=$WALL DK_RUN_RSS=$RSS
    DK_CURATED=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['curated_bytes'])" "$WORK/duck-run-$n.out")
    rm -rf "$dir/duck-run"
  fi
  rm -f "$in"
  # The same run with DuckDB's memory class and zstd level, on a copy of
  # the landed lake: what the defaults (a 512 MiB pool, zstd 6 for the text
  # columns, for the transit link's bytes) cost in time.
  if [ "${COMPARE:-0}" = 1 ]; then
    cp -a "$dir/lake" "$dir/lake-fast"
    echo "[$n] logferry run, 2 GiB pool and zstd 3 ..." >&2
    LOGFERRY__AGGREGATE__MEMORY_LIMIT=2147483648 LOGFERRY__AGGREGATE__ZSTD_LEVEL=3 \
      measure "run-fast-$n" "$BIN" -q --data-dir "$dir/lake-fast" --config "$dir/input/logferry.toml" run --json
    FAST_WALL=$WALL FAST_RSS=$RSS FAST_SHIPPED=$(run_sum "$WORK/run-fast-$n.out" curated_bytes)
    rm -rf "$dir/lake-fast"
  fi
  echo "[$n] logferry run ..." >&2
  measure "run-$n" $lf run --json
  local run_wall=$WALL run_rss=$RSS
  local shipped; shipped=$(run_sum "$WORK/run-$n.out" curated_bytes)
  local sent; sent=$(run_sum "$WORK/run-$n.out" bytes_sent)
  $lf reconcile > "$WORK/reconcile-$n.txt" || { cat "$WORK/reconcile-$n.txt"; echo "reconcile failed" >&2; exit 1; }
  local spilled; spilled=$(run_sum "$WORK/run-$n.out" spilled_bytes)
  if [ "${COMPARE:-0}" = 1 ]; then
    RUN_WALL=$run_wall RUN_RSS=$run_rss SHIPPED=$shipped SENT=$sent
  fi
  CURVE+=("| $n | $(mb "$bytes") | $fwd_wall | $(rate "$n" "$fwd_wall") | $fwd_rss | $run_wall | $(rate "$n" "$run_wall") | $run_rss | $(mb "$spilled") |")
  rm -rf "$dir"
}

COMPARE=1 step "$RECORDS"
for n in $SCALE; do
  [ "$n" = "$RECORDS" ] && continue
  step "$n"
done

echo
echo "# $RECORDS records in one hour, $(mb "$NDJSON_BYTES") MB NDJSON; $(nproc) cores; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "# logferry $("$BIN" --version | cut -d' ' -f2), duckdb $("$PY" -c 'import duckdb; print(duckdb.__version__)')"
echo
echo "| step | tool | wall s | records/s | peak RSS MiB | output MB |"
echo "|---|---|---|---|---|---|"
echo "| NDJSON -> zstd Parquet | logferry forward | $FWD_WALL | $(rate "$RECORDS" "$FWD_WALL") | $FWD_RSS | $(mb "$FWD_OUT") |"
echo "| NDJSON -> zstd Parquet | duckdb | $DK_CONV_WALL | $(rate "$RECORDS" "$DK_CONV_WALL") | $DK_CONV_RSS | $(mb "$DK_CONV_OUT") |"
echo "| dedupe, rules, rollups, curated, DLQ, export + load copies | logferry run | $RUN_WALL | $(rate "$RECORDS" "$RUN_WALL") | $RUN_RSS | $(mb "$SHIPPED") curated |"
echo "| the same, [aggregate] memory_limit 2 GiB and zstd_level 3 | logferry run | $FAST_WALL | $(rate "$RECORDS" "$FAST_WALL") | $FAST_RSS | $(mb "$FAST_SHIPPED") curated |"
echo "| the same work on the same landed Parquet | duckdb | $DK_RUN_WALL | $(rate "$RECORDS" "$DK_RUN_WALL") | $DK_RUN_RSS | $(mb "$DK_CURATED") curated |"
echo
echo "forward: $(ratio "$DK_CONV_WALL" "$FWD_WALL")x DuckDB's records/s (target >= 2), $(ratio "$FWD_RSS" "$DK_CONV_RSS")x its peak RSS (target <= 0.5)"
echo "run:     $(ratio "$RUN_WALL" "$DK_RUN_WALL")x DuckDB's time (target <= 1.0), $(ratio "$RUN_RSS" "$DK_RUN_RSS")x its peak RSS"
echo "         $(ratio "$FAST_WALL" "$DK_RUN_WALL")x its time and $(ratio "$FAST_RSS" "$DK_RUN_RSS")x its peak RSS with a 2 GiB pool and zstd 3, shipping $(ratio "$DK_CURATED" "$FAST_SHIPPED")x fewer bytes"
echo "export:  log_records ships $(mb "$SHIPPED") MB, DuckDB's zstd Parquet of the same rows $(mb "$DK_CURATED") MB: $(ratio "$DK_CURATED" "$SHIPPED")x fewer bytes (target >= 1.2); all tables $(mb "$SENT") MB"
echo "egress:  \$$(awk -v b="$SHIPPED" -v n="$RECORDS" -v p="$EGRESS_USD_PER_GB" 'BEGIN{printf "%.4f", b/1e9*p*1e6/n}') per million records (logferry) vs \$$(awk -v b="$DK_CURATED" -v n="$RECORDS" -v p="$EGRESS_USD_PER_GB" 'BEGIN{printf "%.4f", b/1e9*p*1e6/n}') (DuckDB's Parquet), at \$$EGRESS_USD_PER_GB/GB"
if [ -n "$SCALE" ]; then
  echo
  echo "# scaling: one hour (one window) holding N records"
  echo
  echo "| records | NDJSON MB | forward s | forward rec/s | forward RSS MiB | run s | run rec/s | run RSS MiB | spilled MB |"
  echo "|---|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${CURVE[@]}"
fi
echo
echo "reconcile: $(tail -n 1 "$WORK/reconcile-$RECORDS.txt")"
