#!/usr/bin/env bash
# Scale-out through HAProxy: deploy/haproxy/haproxy.cfg (its documentation addresses
# replaced by loopback ones) in front of two ftpgate instances and one vsftpd.
#
#   client 127.0.0.1 -> HAProxy 127.0.0.10 (control, and one data frontend per slice)
#                    -> ftpgate gate1 on 127.0.0.11 / gate2 on 127.0.0.12, PROXY v2
#                    -> vsftpd 127.0.0.1
#
# Checks: 200 concurrent sessions from one client address with checksummed RETR and
# STOR, 0 failures; both instances served; every session log line of both names the
# real client (127.0.0.1), never HAProxy; then gate1 is stopped (SIGTERM: it drains,
# /readyz says 503, HAProxy takes it out) and 30 more sessions all succeed on gate2;
# last, the same SESSIONS-session wave on gate2 alone, for the wall time of one
# instance beside that of two. The figures (walls, spread) are printed as "figure:"
# lines; on this machine both instances share the same cores, so two are not faster.
#
# Usage (as root, with haproxy vsftpd python3; see .ci/run): tests/deploy/haproxy.sh
# Knobs: FTPGATE=path, HAPROXY_SESSIONS=200, INTEROP_PORT_LO/HI, INTEROP_KEEP=1.
# Output: PASS/FAIL lines, then exactly "N passed, M failed".
set -euo pipefail

# shellcheck source=tests/interop/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/../interop" && pwd)/lib.sh"
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

SESSIONS=${HAPROXY_SESSIONS:-200}

need_root
# HAProxy sizes its descriptor table from maxconn; this machine's hard limit may be
# below what the shipped maxconn needs, so the test lowers maxconn to fit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
MAXCONN=$(($(ulimit -n) / 3))
need_tools haproxy vsftpd python3 curl
install_cleanup_trap
find_ftpgate || die "no ftpgate binary"
make_work_dir ftpgate-haproxy

# vsftpd control, vsftpd passive, the control port (on .10, .11 and .12), two admin
# ports, two passive slices.
# A slice is wider than the sessions: the last wave puts all of them on one instance.
pick_ports "${INTEROP_PORT_LO:-20000}" "${INTEROP_PORT_HI:-27999}" 1 400 1 2 300 300
V_PORT=${PORT_FIRST[0]}
CTRL=${PORT_FIRST[2]}
ADMIN1=${PORT_FIRST[3]}
ADMIN2=$((ADMIN1 + 1))
S1_LO=${PORT_FIRST[4]} S1_HI=${PORT_LAST[4]}
S2_LO=${PORT_FIRST[5]} S2_HI=${PORT_LAST[5]}

make_ftp_user "$WORK/home"
head -c $((256 * 1024 + 17)) /dev/urandom >"$WORK/home/down.bin"
chown -R "$FTP_USER:" "$WORK/home"
printf 'max_clients=1000\nmax_per_ip=1000\n' >"$WORK/vsftpd.extra"
start_vsftpd "$WORK" "$V_PORT" "${PORT_FIRST[1]}" "${PORT_LAST[1]}" "$WORK/vsftpd.extra"

gate_config() { # gate_config N IP ADMIN SLICE_LO SLICE_HI
    cat >"$WORK/gate$1.yaml" <<EOF
listeners:
  - name: public
    bind: $2:$CTRL
    proxy_protocol: { trusted: [127.0.0.10/32] }
    route: { kind: fixed, upstreams: [127.0.0.1:$V_PORT] }
data:
  passive_ports: $4-$5
  advertise: [{ clients: 0.0.0.0/0, address: 127.0.0.10 }]
  server_active_ports: $4-$5
admin: { bind: $2:$3 }
limits: { max_sessions: 2000, max_sessions_per_ip: 2000 }
timeouts: { shutdown_grace: 20s }
log: { level: info, format: text }
EOF
}
gate_config 1 127.0.0.11 "$ADMIN1" "$S1_LO" "$S1_HI"
gate_config 2 127.0.0.12 "$ADMIN2" "$S2_LO" "$S2_HI"
for n in 1 2; do
    start_bg "$WORK/gate$n.log" "$FTPGATE_BIN" run -c "$WORK/gate$n.yaml"
    eval "GATE${n}_PID=$BG_PID"
done
for n in 1 2; do
    wait_accept "$CTRL" 1 >/dev/null 2>&1 || true
    admin=$ADMIN1
    [[ $n == 2 ]] && admin=$ADMIN2
    for _ in $(seq 100); do
        curl -fs "http://127.0.0.1$n:$admin/readyz" >/dev/null 2>&1 && break
        sleep 0.1
    done
    check "gate$n is ready" "$(ok curl -fso /dev/null "http://127.0.0.1$n:$admin/readyz")"
done

# The shipped HAProxy file, its addresses and ports made local.
sed -e "s/192\.0\.2\.10:21/127.0.0.10:$CTRL/; s/192\.0\.2\.11:21/127.0.0.11:$CTRL/; s/192\.0\.2\.12:21/127.0.0.12:$CTRL/" \
    -e "s/192\.0\.2\.10:50000-50499/127.0.0.10:$S1_LO-$S1_HI/; s/192\.0\.2\.10:50500-50999/127.0.0.10:$S2_LO-$S2_HI/" \
    -e "s/192\.0\.2\./127.0.0./g" -e "s/maxconn 20000/maxconn $MAXCONN/" \
    -e "/server gate1 .* check port/s/port 9121/port $ADMIN1/; /server gate2 .* check port/s/port 9121/port $ADMIN2/" \
    "$REPO_ROOT/deploy/haproxy/haproxy.cfg" >"$WORK/haproxy.cfg"
check "the generated HAProxy file is valid" "$(ok haproxy -c -q -f "$WORK/haproxy.cfg")" "$(haproxy -c -f "$WORK/haproxy.cfg" 2>&1 | tail -3)"
start_bg "$WORK/haproxy.log" haproxy -db -f "$WORK/haproxy.cfg"
HAPROXY_PID=$BG_PID
wait_banner "$CTRL" 20 "$HAPROXY_PID" 2>/dev/null || true
# HAProxy's wait_banner above ran on 127.0.0.1; the listener is 127.0.0.10: ask it.
for _ in $(seq 100); do
    python3 - "$CTRL" <<'PY' && break
import socket, sys
s = socket.create_connection(("127.0.0.10", int(sys.argv[1])), timeout=2)
sys.exit(0 if s.recv(4).startswith(b"220") else 1)
PY
    sleep 0.2
done

load() { # load COUNT TAG
    timeout 300 python3 "$HERE/ftpload.py" 127.0.0.10 "$CTRL" "$FTP_USER" "$FTP_PASS" "$1" \
        "$WORK/home/down.bin" "$WORK/home" "$2"
}
sessions_on() { grep -c 'session opened' "$WORK/gate$1.log" || true; }

t0=$(date +%s.%N)
out=$(load "$SESSIONS" wave1 2>&1 || true)
wall2=$(echo "$(date +%s.%N) - $t0" | bc)
check "$SESSIONS concurrent sessions through HAProxy, checksummed RETR+STOR" \
    "$(ok grep -qx "sessions=$SESSIONS ok=$SESSIONS failed=0" <<<"$out")" "$(tail -5 <<<"$out")"
s1=$(sessions_on 1)
s2=$(sessions_on 2)
echo "figure: $SESSIONS sessions through HAProxy to two instances: wall ${wall2%???????} s, gate1 $s1, gate2 $s2"
check "both instances served ($s1 + $s2)" "$(ok test "$s1" -gt 0 -a "$s2" -gt 0 -a $((s1 + s2)) -ge "$SESSIONS")"
check "every session names the real client" \
    "$(ok test "$(grep -h 'session opened' "$WORK"/gate?.log | grep -vc 'client.addr=127.0.0.1:')" = 0)" \
    "$(grep -h 'session opened' "$WORK"/gate?.log | grep -v 'client.addr=127.0.0.1:' | head -2)"
check "no session names HAProxy" "$(ok test "$(grep -hc 'client.addr=127.0.0.10:' "$WORK"/gate?.log | paste -sd+ | bc)" = 0)"
check "no data connection was refused" "$(ok test "$(grep -hc 'data connection' "$WORK"/gate?.log | paste -sd+ | bc)" = 0)"

# Stop gate1: it drains, its /readyz goes 503, HAProxy sends new sessions to gate2.
kill -TERM "$GATE1_PID"
for _ in $(seq 200); do kill -0 "$GATE1_PID" 2>/dev/null || break; sleep 0.1; done
status=0
if kill -0 "$GATE1_PID" 2>/dev/null; then status=124; else wait "$GATE1_PID" || status=$?; fi
check "gate1 drains and exits 0" "$(ok test "$status" = 0)" "status $status"
before=$(sessions_on 2)
out=$(load 30 wave2 2>&1 || true)
check "30 sessions after gate1 stopped all succeed" \
    "$(ok grep -qx "sessions=30 ok=30 failed=0" <<<"$out")" "$(tail -5 <<<"$out")"
check "gate2 took them all" "$(ok test $(($(sessions_on 2) - before)) = 30)" "$(($(sessions_on 2) - before))"

before=$(sessions_on 2)
t0=$(date +%s.%N)
out=$(load "$SESSIONS" wave3 2>&1 || true)
wall1=$(echo "$(date +%s.%N) - $t0" | bc)
check "$SESSIONS sessions on gate2 alone, checksummed RETR+STOR" \
    "$(ok grep -qx "sessions=$SESSIONS ok=$SESSIONS failed=0" <<<"$out")" "$(tail -5 <<<"$out")"
check "gate2 took all $SESSIONS" "$(ok test $(($(sessions_on 2) - before)) = "$SESSIONS")" "$(($(sessions_on 2) - before))"
echo "figure: $SESSIONS sessions through HAProxy to one instance: wall ${wall1%???????} s (two instances: ${wall2%???????} s)"

summary
