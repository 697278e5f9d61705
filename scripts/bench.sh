#!/usr/bin/env bash
# Benchmark: logferry against DuckDB on the same NDJSON file, in one run.
#
#   forward:   logferry forward (decode, validate, land as zstd Parquet per tenant/hour)
#              vs DuckDB read_json -> COPY TO zstd Parquet
#   aggregate: logferry run (dedupe, rules, rollups, curated, export, load)
#              vs DuckDB's rollup (count by tenant, service, level, minute)
#
# usage: scripts/bench.sh [RECORDS]      (default 1000000)
# env:   BENCH_DIR (default $CARGO_TARGET_DIR/bench), BENCH_VENV (DuckDB's venv,
#        default ~/.cache/logferry/bench-venv), BENCH_SKIP_BUILD=1
# Prints records/s, MB/s and peak RSS side by side, and the ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
RECORDS=${1:-1000000}
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
WORK=${BENCH_DIR:-$TARGET/bench}
VENV=${BENCH_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/logferry/bench-venv}
DUCKDB_VERSION=2.0.1

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
echo "generating $RECORDS clean NDJSON records ..." >&2
"$BIN" -q generate --out "$WORK/input" --records "$RECORDS" --bad-fraction 0 \
  --duplicate-fraction 0 --cloudwatch-share 0 --data-dir "$WORK/gen"
IN=$WORK/input/workload.ndjson
BYTES=$(stat -c %s "$IN")
cat "$IN" > /dev/null   # warm the page cache for both tools

# measure NAME CMD...: runs CMD under GNU time; sets WALL (s) and RSS (MiB).
measure() {
  local name=$1; shift
  if ! "$TIME" -f "%e %M" -o "$WORK/$name.time" "$@" > "$WORK/$name.out" 2> "$WORK/$name.err"; then
    echo "$name failed:" >&2; cat "$WORK/$name.err" >&2; exit 1
  fi
  read -r WALL RSS_KB < <(tail -n 1 "$WORK/$name.time")
  RSS=$(awk -v k="$RSS_KB" 'BEGIN{printf "%.0f", k/1024}')
}
rate() { awk -v n="$1" -v w="$2" 'BEGIN{printf "%.0f", n/w}'; }
mbps() { awk -v b="$1" -v w="$2" 'BEGIN{printf "%.1f", b/1e6/w}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a/b}'; }

LF="$BIN -q --data-dir $WORK/lake --config $WORK/input/logferry.toml"
measure lf_forward $LF forward --input "$IN" --json
LF_FWD_WALL=$WALL LF_FWD_RSS=$RSS
measure duck_convert "$PY" scripts/bench_duckdb.py convert "$IN" "$WORK/duck.parquet"
DK_CONV_WALL=$WALL DK_CONV_RSS=$RSS
measure lf_run $LF run --json
LF_RUN_WALL=$WALL LF_RUN_RSS=$RSS
LF_AGG_S=$("$PY" -c "import json,sys; r=json.load(open(sys.argv[1])); print(sum(w['aggregate_ms'] for w in r['windows'])/1000)" "$WORK/lf_run.out")
measure duck_rollup "$PY" scripts/bench_duckdb.py rollup "$WORK/duck.parquet" "$WORK/duck_rollup.parquet"
DK_ROLL_WALL=$WALL DK_ROLL_RSS=$RSS
LANDED=$(du -sb "$WORK/lake/lake/landing" | cut -f1)
DUCK_OUT=$(stat -c %s "$WORK/duck.parquet")
$LF reconcile > "$WORK/reconcile.txt" || { cat "$WORK/reconcile.txt"; echo "reconcile failed" >&2; exit 1; }

echo
echo "# $RECORDS records, $(awk -v b="$BYTES" 'BEGIN{printf "%.1f", b/1e6}') MB NDJSON; $(nproc) cores; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "# logferry $("$BIN" --version | cut -d' ' -f2), duckdb $("$PY" -c 'import duckdb; print(duckdb.__version__)')"
echo
echo "| step | tool | wall s | records/s | MB/s | peak RSS MiB | output MB |"
echo "|---|---|---|---|---|---|---|"
echo "| NDJSON -> zstd Parquet | logferry forward | $LF_FWD_WALL | $(rate "$RECORDS" "$LF_FWD_WALL") | $(mbps "$BYTES" "$LF_FWD_WALL") | $LF_FWD_RSS | $(awk -v b="$LANDED" 'BEGIN{printf "%.1f", b/1e6}') |"
echo "| NDJSON -> zstd Parquet | duckdb | $DK_CONV_WALL | $(rate "$RECORDS" "$DK_CONV_WALL") | $(mbps "$BYTES" "$DK_CONV_WALL") | $DK_CONV_RSS | $(awk -v b="$DUCK_OUT" 'BEGIN{printf "%.1f", b/1e6}') |"
echo "| aggregate | logferry run (dedupe, rules, 2 rollups, curated, export, load) | $LF_RUN_WALL | $(rate "$RECORDS" "$LF_RUN_WALL") | - | $LF_RUN_RSS | - |"
echo "| aggregate | of which DataFusion SQL + writes | $LF_AGG_S | $(rate "$RECORDS" "$LF_AGG_S") | - | - | - |"
echo "| aggregate | duckdb rollup (count by tenant, service, level, minute) | $DK_ROLL_WALL | $(rate "$RECORDS" "$DK_ROLL_WALL") | - | $DK_ROLL_RSS | - |"
echo
FWD_SPEED=$(ratio "$DK_CONV_WALL" "$LF_FWD_WALL")
FWD_RSS=$(ratio "$LF_FWD_RSS" "$DK_CONV_RSS")
echo "forward vs duckdb: ${FWD_SPEED}x the records/s (target >= 2), ${FWD_RSS}x the peak RSS (target <= 0.5)"
echo "run vs duckdb rollup: $(ratio "$DK_ROLL_WALL" "$LF_RUN_WALL")x the records/s"
echo "reconcile: $(tail -n 1 "$WORK/reconcile.txt")"
