#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls this script): formatting,
# lints, then every unit and integration test, the emulator-backed ones
# included. It installs and starts the emulators itself (scripts/emulators.sh,
# pinned versions in a cache directory) and stops them on exit.
# Then it runs the README's marked command blocks as written
# (scripts/readme-check.sh). Needs a Rust toolchain (rustup, with rustfmt and
# clippy), Python 3 with venv and pip (for the emulators and tools), curl,
# systemd-analyze, and apt-get for Prometheus and Chromium (scripts/tools.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
echo "== cargo fmt --check" >&2
cargo fmt --all -- --check
echo "== emulators" >&2
scripts/emulators.sh start
trap 'scripts/emulators.sh stop' EXIT
# shellcheck disable=SC1091
source target/emulators.env
echo "== tools (Prometheus, promtool, Chromium)" >&2
scripts/tools.sh
# shellcheck disable=SC1091
source target/tools.env
echo "== cargo clippy" >&2
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
echo "== cargo test" >&2
cargo test --workspace --all-features --locked
echo "== README commands" >&2
scripts/readme-check.sh
