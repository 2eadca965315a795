#!/usr/bin/env bash
# The project's test command: the Rust tests (unit + integration, release profile),
# then the interop suite against real vsftpd and pure-ftpd (tests/interop/run.sh,
# needs root; see .ci/run for the packages), the FTPS interop suite against vsftpd,
# pure-ftpd and proftpd with TLS (tests/interop/tls.sh), the operations suite (xferlog
# against vsftpd's own, rotation on SIGHUP, metrics; tests/interop/ops.sh), the
# deployment suite (demo, HAProxy scale-out, Kubernetes manifests, the Debian package;
# tests/deploy/run.sh), and the network-namespace lab.
# Exits non-zero if any part fails; all run even if one fails, so one CI run shows
# everything. The last line adds up the parts' "N passed, M failed". The fuzz targets' checks (tests/proto_props.rs) and
# the session core's property test run with raised case counts: the CI fuzz smoke.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2

rust_rc=0
interop_rc=0
tls_rc=0
ops_rc=0
deploy_rc=0
lab_rc=0
interop_out=$(mktemp)
tls_out=$(mktemp)
ops_out=$(mktemp)
deploy_out=$(mktemp)
lab_out=$(mktemp)
trap 'rm -f "$interop_out" "$tls_out" "$ops_out" "$deploy_out" "$lab_out"' EXIT

echo "=== cargo fmt --check && cargo clippy && cargo build --release && cargo test --release"
{ cargo fmt --all -- --check &&
    cargo clippy --all-targets -- -D warnings &&
    cargo build --release &&
    PROTO_PROPS_CASES="${PROTO_PROPS_CASES:-50000}" SESSION_PROPS_CASES="${SESSION_PROPS_CASES:-20000}" \
        cargo test --release; } || rust_rc=$?

echo "=== tests/interop/run.sh"
FTPGATE=${FTPGATE:-$PWD/target/release/ftpgate} ./tests/interop/run.sh | tee "$interop_out"
interop_rc=${PIPESTATUS[0]}

echo "=== tests/interop/tls.sh"
FTPGATE=${FTPGATE:-$PWD/target/release/ftpgate} ./tests/interop/tls.sh | tee "$tls_out"
tls_rc=${PIPESTATUS[0]}

echo "=== tests/interop/ops.sh"
FTPGATE=${FTPGATE:-$PWD/target/release/ftpgate} ./tests/interop/ops.sh | tee "$ops_out"
ops_rc=${PIPESTATUS[0]}

echo "=== tests/deploy/run.sh"
FTPGATE=${FTPGATE:-$PWD/target/release/ftpgate} ./tests/deploy/run.sh | tee "$deploy_out"
deploy_rc=${PIPESTATUS[0]}

echo "=== tests/lab/run.sh"
FTPGATE=${FTPGATE:-$PWD/target/release/ftpgate} ./tests/lab/run.sh | tee "$lab_out"
lab_rc=${PIPESTATUS[0]}

status() { if [[ $1 == 0 ]]; then echo ok; else echo "FAILED (exit $1)"; fi; }
echo "=== rust tests: $(status "$rust_rc"); interop: $(status "$interop_rc"); tls: $(status "$tls_rc"); ops: $(status "$ops_rc"); deploy: $(status "$deploy_rc"); lab: $(status "$lab_rc")"
# counts N M from a part's last "N passed, M failed" line; a part that printed none
# counts as one failure
counts() {
    local last
    last=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$1" | tail -n 1 || true)
    if [[ $last =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
        echo "${BASH_REMATCH[1]} ${BASH_REMATCH[2]}"
    else
        echo "0 1"
    fi
}
read -r ip ifl <<<"$(counts "$interop_out")"
read -r tp tfl <<<"$(counts "$tls_out")"
read -r op ofl <<<"$(counts "$ops_out")"
read -r dp dfl <<<"$(counts "$deploy_out")"
read -r lp lfl <<<"$(counts "$lab_out")"
echo "$((ip + tp + op + dp + lp)) passed, $((ifl + tfl + ofl + dfl + lfl)) failed"
((rust_rc == 0 && interop_rc == 0 && tls_rc == 0 && ops_rc == 0 && deploy_rc == 0 && lab_rc == 0))
