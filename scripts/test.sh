#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls this script):
# formatting, lints, then every unit and integration test.
# Needs a Rust toolchain (rustup, with rustfmt and clippy); everything else
# the tests use is built from this repository.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
echo "== cargo fmt --check" >&2
cargo fmt --all -- --check
echo "== cargo clippy" >&2
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test" >&2
cargo test --workspace --locked
