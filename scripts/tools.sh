#!/usr/bin/env bash
# The real consumers the tests hand logferry's output to, from Debian's
# packages: Prometheus (a server that scrapes the daemon, and promtool, which
# checks the exposition and the alerting rules) and Chromium (headless: renders
# the HTML report and takes a screenshot). Installs what is missing with
# apt-get, then writes target/tools.env, which the tests read.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
log() { echo "tools: $*" >&2; }
need=()
command -v promtool >/dev/null && command -v prometheus >/dev/null || need+=(prometheus)
command -v chromium >/dev/null || need+=(chromium)
if ((${#need[@]})); then
  log "installing ${need[*]} (Debian packages)"
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  if ! $SUDO apt-get install -y -q --no-install-recommends "${need[@]}" >&2; then
    $SUDO apt-get update -q >&2
    $SUDO apt-get install -y -q --no-install-recommends "${need[@]}" >&2
  fi
fi
mkdir -p "$ROOT/target"
cat > "$ROOT/target/tools.env" <<ENV
# Written by scripts/tools.sh: where the test suite finds its tools.
export LOGFERRY_PROMTOOL=$(command -v promtool)
export LOGFERRY_PROMETHEUS=$(command -v prometheus)
export LOGFERRY_CHROMIUM=$(command -v chromium)
ENV
log "promtool $(promtool --version 2>&1 | head -1 | awk '{print $3}'), chromium $(chromium --version 2>/dev/null | awk '{print $2}'); environment in target/tools.env"
