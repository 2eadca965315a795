#!/usr/bin/env bash
# `ftpgate demo` smoke test: start it on a free loopback port, fetch the sample file
# with curl in passive and active mode and check it against the SHA-256 the demo prints,
# list and upload, then Ctrl-C (SIGINT): exit status 0 and the temporary directory gone.
#
# Usage: tests/deploy/demo.sh   (needs curl; FTPGATE=path to use another binary)
# Output: one PASS/FAIL line per check, then exactly "N passed, M failed".
set -euo pipefail

# shellcheck source=tests/interop/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/../interop" && pwd)/lib.sh"


need_tools curl sha256sum python3
install_cleanup_trap
find_ftpgate || die "no ftpgate binary"
make_work_dir ftpgate-demo-test

pick_ports "${INTEROP_PORT_LO:-20000}" "${INTEROP_PORT_HI:-27999}" 1
PORT=${PORT_FIRST[0]}
LOG=$WORK/demo.log
start_bg "$LOG" "$FTPGATE_BIN" demo --bind "127.0.0.1:$PORT"
DEMO_PID=$BG_PID
wait_banner "$PORT" 20 "$DEMO_PID" || { cat "$LOG" >&2; die "the demo did not greet on $PORT"; }

want=$(awk '$1 == "sample-1MiB.bin" { print $4 }' "$LOG")
dir=$(sed -nE 's/.*an FTP server \(anonymous, (.*)\/files\) behind.*/\1/p' "$LOG")
check "the demo prints the sample's SHA-256" "$(ok test ${#want} = 64)" "$(head -20 "$LOG")"
check "the demo's directory exists while it runs" "$(ok test -d "$dir/files")" "$dir"

URL=ftp://127.0.0.1:$PORT
cd "$WORK"
curl -sS --max-time 30 "$URL/sample-1MiB.bin" -o passive.bin || true
check "curl passive RETR matches" "$(ok test "$(sha256sum <passive.bin | cut -d' ' -f1)" = "$want")"
curl -sS --max-time 30 -P - "$URL/sample-1MiB.bin" -o active.bin || true
check "curl active RETR matches" "$(ok test "$(sha256sum <active.bin | cut -d' ' -f1)" = "$want")"
listing=$(curl -sS --max-time 30 "$URL/" || true)
check "curl LIST shows the samples" "$(ok grep -q 'sample-1MiB.bin' <<<"$listing")" "$listing"
printf 'uploaded through ftpgate\n' >up.txt
curl -sS --max-time 30 -T up.txt "$URL/up.txt" || true
check "curl STOR lands in the served directory" "$(ok cmp -s up.txt "$dir/files/up.txt")"
check "each session is logged" "$(ok grep -q 'session opened' "$LOG")"

kill -INT "$DEMO_PID"
status=0
for _ in $(seq 100); do kill -0 "$DEMO_PID" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$DEMO_PID" 2>/dev/null; then status=124; else wait "$DEMO_PID" || status=$?; fi
check "Ctrl-C ends the demo with status 0" "$(ok test "$status" = 0)" "status $status"
check "the demo's directory is removed" "$(ok test ! -e "$dir")" "$dir"

summary
