#!/usr/bin/env bash
# Builds the Lambda functions as `bootstrap` zips for the provided.al2023
# runtime, then prints each one's size and the newest glibc symbol version it
# needs (Amazon Linux 2023 has glibc 2.34):
#
#   target/lambda/<arch>/logferry-forwarder.zip  client-side forwarder (lean)
#   target/lambda/<arch>/logferry-lander.zip     lander (lean)
#   target/lambda/<arch>/logferry-lambda.zip     scheduled runner (everything)
#
# Usage: scripts/lambda-build.sh [--arch x86_64|arm64|all] [--profile NAME]
#                                [--functions forwarder,lander,runner]
#                                [--config FILE] [--gcp-key FILE]
#
# --config adds FILE to the lander and runner zips as logferry.toml (what
# `logferry deploy render` writes to lambda/logferry.toml; the rendered
# functions read /var/task/logferry.toml); --gcp-key adds the exporter's
# service account key to the runner zip as gcp-key.json.
#
# arm64 is cross-built: it needs `rustup target add aarch64-unknown-linux-gnu`
# and a C cross compiler for the crates with C code (zstd, aws-lc):
# Debian's `gcc-aarch64-linux-gnu` (and `libc6-dev-arm64-cross`), which this
# script installs with apt-get when missing.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
ARCH=x86_64
PROFILE=lambda
FUNCTIONS=forwarder,lander,runner
CONFIG=
GCP_KEY=
while (($#)); do
  case "$1" in
    --config) CONFIG=$(realpath "$2"); shift 2 ;;
    --gcp-key) GCP_KEY=$(realpath "$2"); shift 2 ;;
    --arch) ARCH=$2; shift 2 ;;
    --profile) PROFILE=$2; shift 2 ;;
    --functions) FUNCTIONS=$2; shift 2 ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "lambda-build: unknown argument $1" >&2; exit 2 ;;
  esac
done
log() { echo "lambda-build: $*" >&2; }
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
case "$ARCH" in
  all) ARCHES=(x86_64 arm64) ;;
  x86_64|arm64) ARCHES=("$ARCH") ;;
  *) echo "lambda-build: --arch is x86_64, arm64 or all" >&2; exit 2 ;;
esac

cross_arm64() {
  rustup target list --installed | grep -qx aarch64-unknown-linux-gnu \
    || rustup target add aarch64-unknown-linux-gnu >&2
  if ! command -v aarch64-linux-gnu-gcc >/dev/null; then
    log "installing gcc-aarch64-linux-gnu (Debian package)"
    SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get install -y -q --no-install-recommends gcc-aarch64-linux-gnu libc6-dev-arm64-cross >&2
  fi
  export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
  export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
  export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
}

# The newest GLIBC_x.y a binary's dynamic symbols name.
glibc_needed() {
  readelf -W --dyn-syms "$1" 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1
}

zip_one() { # bootstrap zip [name=file ...]: the executable bit, deterministic
  python3 - "$@" <<'EOF'
import sys, zipfile
src, dst, extra = sys.argv[1], sys.argv[2], sys.argv[3:]
def entry(name, mode):
    info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
    info.external_attr = mode << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    return info
with zipfile.ZipFile(dst, "w") as z:
    with open(src, "rb") as f:
        z.writestr(entry("bootstrap", 0o100755), f.read(), compresslevel=9)
    for e in extra:
        name, path = e.split("=", 1)
        with open(path, "rb") as f:
            z.writestr(entry(name, 0o100644), f.read(), compresslevel=9)
EOF
}

rows=()
too_new=()
for arch in "${ARCHES[@]}"; do
  case "$arch" in
    x86_64) triple=x86_64-unknown-linux-gnu ;;
    arm64) triple=aarch64-unknown-linux-gnu; cross_arm64 ;;
  esac
  out="$ROOT/target/lambda/$arch"
  mkdir -p "$out"
  IFS=, read -ra fns <<<"$FUNCTIONS"
  for f in "${fns[@]}"; do
    case "$f" in
      forwarder) bin=logferry-forwarder; args=(-p logferry-lambdas --bin "$bin") ;;
      lander) bin=logferry-lander; args=(-p logferry-lambdas --bin "$bin") ;;
      runner) bin=logferry-lambda; args=(-p logferry --features lambda --bin "$bin") ;;
      *) echo "lambda-build: unknown function $f" >&2; exit 2 ;;
    esac
    log "building $bin for $arch (profile $PROFILE)"
    start=$(date +%s)
    cargo build --locked --profile "$PROFILE" --target "$triple" "${args[@]}" >&2
    secs=$(($(date +%s) - start))
    exe="$TARGET_DIR/$triple/$PROFILE/$bin"
    mkdir -p "$out/$bin"
    cp "$exe" "$out/$bin/bootstrap"
    extra=()
    if [ "$f" != forwarder ] && [ -n "$CONFIG" ]; then extra+=("logferry.toml=$CONFIG"); fi
    if [ "$f" = runner ] && [ -n "$GCP_KEY" ]; then extra+=("gcp-key.json=$GCP_KEY"); fi
    zip_one "$out/$bin/bootstrap" "$out/$bin.zip" ${extra[@]+"${extra[@]}"}
    need=$(glibc_needed "$exe")
    if [ "$(printf '%s\n' "$need" GLIBC_2.34 | sort -V | tail -1)" != GLIBC_2.34 ]; then
      too_new+=("$bin ($arch) needs $need")
    fi
    rows+=("$(awk -v b="$bin" -v a="$arch" -v s="$(stat -c %s "$out/$bin/bootstrap")" \
      -v z="$(stat -c %s "$out/$bin.zip")" -v g="$(glibc_needed "$exe")" -v t="${secs}s" \
      'BEGIN { printf "%-20s %-7s %9.1f %9.1f %-12s %6s", b, a, s / 1e6, z / 1e6, g, t }')")
  done
done
printf '%-20s %-7s %9s %9s %-12s %6s\n' function arch "binary MB" "zip MB" "needs" build
printf '%s\n' "${rows[@]}"
echo "zips in target/lambda/<arch>/ (limit for a direct upload: 50 MB)"
if ((${#too_new[@]})); then
  printf 'lambda-build: %s: provided.al2023 has glibc 2.34, so it will not start there\n' "${too_new[@]}" >&2
  exit 1
fi
