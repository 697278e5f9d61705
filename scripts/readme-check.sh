#!/usr/bin/env bash
# Runs the README's marked command blocks (<!-- readme-check --> before a
# ```sh fence) as written, in a scratch directory, in the dev profile and
# with small workloads: `cargo run --release` becomes `cargo run`,
# ./target/release/logferry the dev binary, every --records N (and a demo
# without one) --records $README_RECORDS, /tmp/ the scratch directory.
# Fails when any command fails. scripts/test.sh (CI) runs it.
#
# usage: scripts/readme-check.sh        env: README_RECORDS (default 20000)
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
RECORDS=${README_RECORDS:-20000}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/logferry-readme.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

python3 - "$REPO/README.md" "$WORK/readme.sh" "$REPO" "$TARGET/debug/logferry" "$RECORDS" "$WORK" <<'PY'
import re, shlex, sys
readme, out, repo, bin_, records, work = sys.argv[1:]
lines = open(readme).read().splitlines()
blocks, i = [], 0
while i < len(lines):
    if lines[i].startswith("<!-- readme-check"):
        j = i + 1
        while not lines[j].startswith("```"):
            j += 1
        assert lines[j].strip() == "```sh", f"README line {j + 1}: a marked block must be ```sh"
        k = j + 1
        while not lines[k].startswith("```"):
            k += 1
        blocks.append((j + 2, lines[j + 1:k]))
        i = k
    i += 1
assert blocks, "no <!-- readme-check --> block in the README"
q = shlex.quote
with open(out, "w") as f:
    f.write("set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n")
    for start, block in blocks:
        f.write(f"# README.md line {start}\n")
        for line in block:
            # The README's own /tmp paths first: the repository and the
            # scratch directory may themselves be under /tmp.
            line = line.replace("/tmp/", work + "/tmp/")
            line = line.replace("cargo run --release -p logferry",
                                f"cargo run --quiet --manifest-path {q(repo + '/Cargo.toml')} -p logferry")
            line = line.replace("./target/release/logferry", q(bin_))
            # The repository's example configurations, from the scratch directory.
            line = line.replace(" config/", " " + q(repo + "/config") + "/")
            line = re.sub(r"--records \d+", f"--records {records}", line)
            if re.search(r"\bdemo\b", line) and "--records" not in line and not line.lstrip().startswith("#"):
                line = line.rstrip() + f" --records {records}"
            f.write(line + "\n")
print(f"{len(blocks)} README block(s), {sum(len(b) for _, b in blocks)} lines", file=sys.stderr)
PY
if curl -s -o /dev/null 127.0.0.1:9464/healthz; then
  echo "something already listens on 127.0.0.1:9464 (a logferry daemon?): the README's daemon needs it" >&2
  exit 1
fi
mkdir -p "$WORK/tmp"
cd "$WORK"
# A new user's environment: nothing of the test suite's (emulators.env).
for v in $(compgen -e | grep -E '^(LOGFERRY|AWS|STORAGE_EMULATOR|BIGQUERY)' || true); do unset "$v"; done
echo "== README commands (in $WORK)" >&2
timeout 1800 bash -x "$WORK/readme.sh"
echo "== README commands: all passed" >&2
