#!/usr/bin/env bash
# Local servers that speak the cloud protocols logferry uses, for the tests:
#   moto server             S3 and Kinesis              (PyPI moto[server]==5.2.5)
#   gcp-storage-emulator    GCS JSON API                (PyPI gcp-storage-emulator==2026.7.19)
#   bqemulator              BigQuery REST API, DuckDB   (PyPI bqemulator==1.4.0, duckdb 2.0.1)
# and the tools the tests check exported artefacts with: cfn-lint (CloudFormation)
# and python-hcl2 (Terraform), in a venv of their own.
#
# usage: scripts/emulators.sh start|stop|status
#
# start installs the pinned versions (each in its own venv, under
#   ${LOGFERRY_CACHE:-~/.cache/logferry}/emulators), starts the servers on
#   127.0.0.1, waits until each answers, creates the S3 bucket, the GCS bucket
#   and the Kinesis streams logs-tenant-0000 .. logs-tenant-0007, and writes
#   target/emulators.env (export lines pointing logferry at them) and
#   target/emulators.toml (a logferry config using them).
# stop ends exactly the processes start started (their pids are in
#   target/emulators/).
# Ports: LOGFERRY_EMULATOR_PORT_BASE (default 45000): moto +0, GCS +1,
#   BigQuery REST +2, BigQuery gRPC +3.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
STATE=$ROOT/target/emulators
CACHE=${LOGFERRY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/logferry}/emulators
BASE=${LOGFERRY_EMULATOR_PORT_BASE:-45000}
MOTO_PORT=$BASE
GCS_PORT=$((BASE + 1))
BQ_PORT=$((BASE + 2))
BQ_GRPC_PORT=$((BASE + 3))
HOST=127.0.0.1
LAKE_BUCKET=logferry-lake
EXPORT_BUCKET=logferry-export
PROJECT=test-project
DATASET=logferry
TENANTS=8

MOTO_PIN="moto[server]==5.2.5"
GCS_PIN="gcp-storage-emulator==2026.7.19"
BQ_PINS="bqemulator==1.4.0 duckdb==2.0.1 numpy==2.4.6"
TOOLS_PINS="cfn-lint==1.58.0 python-hcl2==8.1.4 jsonschema==4.23.0"

log() { echo "emulators: $*" >&2; }

# venv NAME PINS...: a venv with exactly these pins, reused while they match.
venv() {
  local name=$1; shift
  local dir=$CACHE/venv-$name want="$*"
  if [ -x "$dir/bin/python" ] && [ "$(cat "$dir/.pins" 2>/dev/null)" = "$want" ]; then
    return
  fi
  log "installing $want into $dir"
  rm -rf "$dir"
  python3 -m venv "$dir"
  "$dir/bin/pip" install -q --disable-pip-version-check "$@"
  echo "$want" > "$dir/.pins"
}

# wait_for NAME PIDFILE URL: polls URL until it answers 200 or the process dies.
wait_for() {
  local name=$1 pidfile=$2 url=$3 i
  for i in $(seq 1 300); do
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      log "$name exited while starting; its log:"; tail -n 30 "$STATE/$name.log" >&2; exit 1
    fi
    if curl -sf -o /dev/null "$url"; then
      return
    fi
    sleep 0.1
  done
  log "$name did not answer at $url within 30 s; its log:"; tail -n 30 "$STATE/$name.log" >&2; exit 1
}

# start_bg NAME CMD...: starts CMD in the background with its own log and pid file.
start_bg() {
  local name=$1; shift
  "$@" > "$STATE/$name.log" 2>&1 &
  echo $! > "$STATE/$name.pid"
}

stop() {
  local f pid
  for f in "$STATE"/*.pid; do
    [ -e "$f" ] || continue
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$f"
  done
  log "stopped"
}

status() {
  local f up=0
  for f in "$STATE"/*.pid; do
    [ -e "$f" ] || continue
    if kill -0 "$(cat "$f")" 2>/dev/null; then echo "$(basename "$f" .pid): running (pid $(cat "$f"))"; up=1
    else echo "$(basename "$f" .pid): not running"; fi
  done
  [ "$up" = 1 ]
}

start() {
  command -v curl > /dev/null || { log "curl is needed"; exit 1; }
  mkdir -p "$STATE" "$CACHE"
  stop 2> /dev/null || true
  venv moto "$MOTO_PIN"
  venv gcs "$GCS_PIN"
  # shellcheck disable=SC2086
  venv bq $BQ_PINS
  # shellcheck disable=SC2086
  venv tools $TOOLS_PINS

  rm -rf "$STATE/gcs"
  mkdir -p "$STATE/gcs/.cloudstorage"
  # bqemulator INSTALLs DuckDB's spatial extension from the network at start
  # and exits when that fails (this machine has no network): skip it.
  cat > "$STATE/start_bqemulator.py" <<'EOF'
"""Starts bqemulator without DuckDB's spatial extension (no GEOGRAPHY)."""
import sys

from bqemulator.storage.engine import DuckDBEngine

DuckDBEngine._load_spatial = lambda self: None

from bqemulator.cli import main

if __name__ == "__main__":
    sys.exit(main())
EOF

  # The recorder (off until a test starts it) writes the requests here: the
  # IAM test compares the calls logferry makes with what its roles grant.
  : > "$STATE/moto_recording"
  start_bg moto env MOTO_RECORDER_FILEPATH="$STATE/moto_recording" \
    "$CACHE/venv-moto/bin/moto_server" -H "$HOST" -p "$MOTO_PORT"
  start_bg gcs "$CACHE/venv-gcs/bin/gcp-storage-emulator" -d "$STATE/gcs" start \
    --host "$HOST" --port "$GCS_PORT" --default-bucket "$EXPORT_BUCKET"
  BQEMU_ENABLE_FORMAT_EXTENSIONS=false BQEMU_GCS_LOCAL_ROOT="$STATE/gcs/.cloudstorage" \
    start_bg bigquery "$CACHE/venv-bq/bin/python" "$STATE/start_bqemulator.py" start \
    --rest-host "$HOST" --rest-port "$BQ_PORT" --grpc-host "$HOST" --grpc-port "$BQ_GRPC_PORT" \
    --project "$PROJECT"
  wait_for moto "$STATE/moto.pid" "http://$HOST:$MOTO_PORT/moto-api/"
  wait_for gcs "$STATE/gcs.pid" "http://$HOST:$GCS_PORT/"
  wait_for bigquery "$STATE/bigquery.pid" "http://$HOST:$BQ_PORT/readyz"

  # S3 bucket (object_store has no create-bucket call) and Kinesis streams.
  AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=us-east-1 \
    "$CACHE/venv-moto/bin/python" - "http://$HOST:$MOTO_PORT" "$LAKE_BUCKET" "$TENANTS" <<'EOF'
import sys, time, boto3
endpoint, bucket, tenants = sys.argv[1], sys.argv[2], int(sys.argv[3])
s3 = boto3.client("s3", endpoint_url=endpoint)
s3.create_bucket(Bucket=bucket)
k = boto3.client("kinesis", endpoint_url=endpoint)
for i in range(tenants):
    name = "logs-tenant-%04d" % i
    k.create_stream(StreamName=name, ShardCount=2)
for i in range(tenants):
    name = "logs-tenant-%04d" % i
    for _ in range(100):
        if k.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE":
            break
        time.sleep(0.1)
    else:
        sys.exit("stream %s did not become ACTIVE" % name)
EOF

  {
    echo "# Written by scripts/emulators.sh: points logferry at the local emulators."
    echo "[storage]"
    echo "lake = \"s3://$LAKE_BUCKET/lake\""
    echo "export = \"gs://$EXPORT_BUCKET/export\""
    echo
    echo "[aws]"
    echo "allow_http = true"
    echo
    echo "[daemon]"
    echo "kinesis = true"
    echo
    echo "[warehouse]"
    echo "kind = \"bigquery\""
    echo "# The emulator has no partition decorators, which sealing a day uses;"
    echo "# daily partitions append each window until the day's seal."
    echo "partitioning = \"day\""
    echo
    for i in $(seq 0 $((TENANTS - 1))); do
      t=$(printf "tenant-%04d" "$i")
      echo "[[tenant]]"
      echo "id = \"$t\""
      echo "streams = [\"logs-$t\"]"
      echo "log_groups = [\"/tenants/$t/\"]"
      echo
    done
  } > "$ROOT/target/emulators.toml"

  cat > "$ROOT/target/emulators.env" <<EOF
# Written by scripts/emulators.sh start: source it to point logferry at the emulators.
export LOGFERRY_CONFIG=$ROOT/target/emulators.toml
export AWS_ENDPOINT_URL=http://$HOST:$MOTO_PORT
export AWS_ACCESS_KEY_ID=test
export AWS_SECRET_ACCESS_KEY=test
export AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1
export AWS_ALLOW_HTTP=true
export STORAGE_EMULATOR_HOST=http://$HOST:$GCS_PORT
export BIGQUERY_EMULATOR_HOST=http://$HOST:$BQ_PORT
export BIGQUERY_PROJECT=$PROJECT
export BIGQUERY_DATASET=$DATASET
export LOGFERRY_EMULATOR_LAKE=s3://$LAKE_BUCKET
export LOGFERRY_EMULATOR_EXPORT=gs://$EXPORT_BUCKET
export LOGFERRY_EMULATOR_GCS_ROOT=$STATE/gcs/.cloudstorage
export LOGFERRY_MOTO_RECORDING=$STATE/moto_recording
export LOGFERRY_CFN_LINT=$CACHE/venv-tools/bin/cfn-lint
export LOGFERRY_TOOLS_PYTHON=$CACHE/venv-tools/bin/python
EOF
  log "running: moto on $MOTO_PORT, GCS on $GCS_PORT, BigQuery on $BQ_PORT; environment in target/emulators.env"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
