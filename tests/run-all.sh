#!/usr/bin/env bash
# The project's test command: the Rust tests (unit + integration, release profile),
# then the interop suite against real vsftpd and pure-ftpd (tests/interop/run.sh,
# needs root; see .ci/run for the packages). Exits non-zero if either fails; both run
# even if the first fails, so one CI run shows everything. The last line is the
# interop suite's "N passed, M failed".
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2

rust_rc=0
interop_rc=0
interop_out=$(mktemp)
trap 'rm -f "$interop_out"' EXIT

echo "=== cargo fmt --check && cargo clippy && cargo build --release && cargo test --release"
{ cargo fmt --all -- --check &&
    cargo clippy --all-targets -- -D warnings &&
    cargo build --release &&
    cargo test --release; } || rust_rc=$?

echo "=== tests/interop/run.sh"
FTPGATE=${FTPGATE:-$PWD/target/release/ftpgate} ./tests/interop/run.sh | tee "$interop_out"
interop_rc=${PIPESTATUS[0]}

status() { if [[ $1 == 0 ]]; then echo ok; else echo "FAILED (exit $1)"; fi; }
echo "=== rust tests: $(status "$rust_rc"); interop: $(status "$interop_rc")"
last=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$interop_out" | tail -n 1 || true)
echo "${last:-0 passed, 1 failed}"
((rust_rc == 0 && interop_rc == 0))
