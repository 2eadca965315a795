#!/usr/bin/env bash
# No cliff at scale (issue 12): ftpgate runs as an unprivileged user (nobody, so the
# kernel's per-user pipe budget, pipe-user-pages-soft, applies), vsftpd behind it on
# loopback, and the same 200 downloads are made twice: by 20 concurrent clients (10
# each, one after another) and by CONC_HIGH (200) at once. Every download is
# sha256-checked (openssl: coreutils sha256sum would be the bottleneck); the run fails if any failed, or if the aggregate throughput at
# CONC_HIGH is below CONC_MIN_RATIO (0.85) of that at CONC_LOW.
#
# Usage (as root; needs vsftpd curl python3 setpriv openssl sha256sum):
#   benches/concurrent.sh
#   CONC_HIGH=500 CONC_TRANSFERS=500 benches/concurrent.sh
# Knobs: CONC_LOW=20 CONC_HIGH=200 CONC_TRANSFERS=200 (per round; a multiple of both)
#        CONC_SIZES_MIB="16 32 48 64" (the files, fetched round-robin) CONC_ROUNDS=1
#        CONC_MIN_RATIO=0.85 CONC_USER=nobody BENCH_PORT_LO=12000 BENCH_PORT_HI=19999
#        FTPGATE=path CONC_TIMEOUT=600 (seconds per round)
# Ports as benches/bench.sh: 12000-19999, clear of the test suites' ranges.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/interop/lib.sh
source "$BENCH_DIR/../tests/interop/lib.sh"

LOW=${CONC_LOW:-20}
HIGH=${CONC_HIGH:-200}
TRANSFERS=${CONC_TRANSFERS:-200}
ROUNDS=${CONC_ROUNDS:-1}
SIZES=${CONC_SIZES_MIB:-16 32 48 64}
MIN_RATIO=${CONC_MIN_RATIO:-0.85}
RUN_USER=${CONC_USER:-nobody}
PORT_LO=${BENCH_PORT_LO:-12000}
PORT_HI=${BENCH_PORT_HI:-19999}
ROUND_TIMEOUT=${CONC_TIMEOUT:-600}
for v in LOW HIGH TRANSFERS ROUNDS ROUND_TIMEOUT; do
    [[ ${!v} =~ ^[0-9]+$ && ${!v} -ge 1 ]] || die "$v must be a positive integer"
done
# Bounded: at most 1000 clients at once and 5000 transfers a round.
((HIGH <= 1000 && TRANSFERS <= 5000 && ROUNDS <= 10)) || die "counts too large"
((TRANSFERS % LOW == 0 && TRANSFERS % HIGH == 0)) || die "CONC_TRANSFERS must be a multiple of CONC_LOW and CONC_HIGH"

need_root
need_tools vsftpd curl python3 setpriv openssl sha256sum timeout setsid useradd userdel chpasswd awk od getconf
install_cleanup_trap
find_ftpgate || die "no ftpgate binary"
log "ftpgate: $FTPGATE_BIN, run as $RUN_USER; pipe-user-pages-soft $(cat /proc/sys/fs/pipe-user-pages-soft), -hard $(cat /proc/sys/fs/pipe-user-pages-hard)"
# Each client holds a control and a data connection on both legs, and a listener.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# ------------------------------------------------------------ workdir ----
base=/tmp
[[ -d /dev/shm ]] && base=/dev/shm
WORK=$(mktemp -d "$base/ftpgate-conc.XXXXXX")
chmod 755 "$WORK"
CLEAN_PATHS+=("$WORK")
FTPHOME=$WORK/home
make_ftp_user "$FTPHOME"
declare -a FILES=()
declare -A SUM
for s in $SIZES; do
    [[ $s =~ ^[0-9]+$ && $s -ge 1 && $s -le 1024 ]] || die "bad size $s in CONC_SIZES_MIB"
    head -c $((s * 1024 * 1024)) /dev/urandom >"$FTPHOME/f$s.bin"
    SUM[f$s.bin]=$(sha256sum "$FTPHOME/f$s.bin" | awk '{ print $1 }')
    FILES+=("f$s.bin")
done
chown -R "$FTP_USER:" "$FTPHOME"
log "files: ${FILES[*]} in $WORK"

# -------------------------------------------------------------- start ----
# vsftpd: control + passive range; ftpgate: control + passive range.
pasv=$((HIGH + 100))
pick_ports "$PORT_LO" "$PORT_HI" 1 "$pasv" 1 "$pasv"
SRV=${PORT_FIRST[0]} GW=${PORT_FIRST[2]}
cat >"$WORK/vsftpd.extra" <<EOF
max_clients=$((HIGH * 2))
max_per_ip=$((HIGH * 2))
xferlog_enable=NO
log_ftp_protocol=NO
EOF
start_vsftpd "$WORK/vsftpd" "$SRV" "${PORT_FIRST[1]}" "${PORT_LAST[1]}" "$WORK/vsftpd.extra"
mkdir -p "$WORK/gw"
cat >"$WORK/gw/ftpgate.yaml" <<EOF
listeners:
  - name: default
    bind: 127.0.0.1:$GW
    route:
      kind: fixed
      upstreams: [127.0.0.1:$SRV]
data:
  passive_ports: ${PORT_FIRST[3]}-${PORT_LAST[3]}
  advertise:
    - clients: 0.0.0.0/0
      address: auto
  server_mode: passive
timeouts: { connect: 10s, idle: 900s, data_accept: 30s }
limits: { max_sessions: $((HIGH * 2)), max_sessions_per_ip: $((HIGH * 2)) }
log: { level: ${FTPGATE_LOG_LEVEL:-info}, format: text }
EOF
chmod 644 "$WORK/gw/ftpgate.yaml"
start_bg "$WORK/gw/ftpgate.log" setpriv --reuid="$RUN_USER" --regid="$(id -gn "$RUN_USER")" --clear-groups -- "$FTPGATE_BIN" run -c "$WORK/gw/ftpgate.yaml"
GW_PID=$BG_PID
wait_banner "$GW" 20 "$GW_PID" || { tail -n 30 "$WORK/gw/ftpgate.log" >&2; die "ftpgate did not come up"; }
log "vsftpd :$SRV, ftpgate :$GW (pid $GW_PID, user $(ps -o user= -p "$GW_PID" | tr -d ' '))"

# worker ID COUNT OUT: COUNT downloads one after another, each file round-robin;
# appends "file sha256 curl_status" per download to OUT.
worker() {
    local id=$1 count=$2 out=$3 k f sum rc
    for ((k = 0; k < count; k++)); do
        f=${FILES[$(((id + k) % ${#FILES[@]}))]}
        rc=0
        sum=$(set -o pipefail
            curl -sS --ftp-pasv --connect-timeout 20 --max-time "$ROUND_TIMEOUT" -u "$FTP_USER:$FTP_PASS" \
                "ftp://127.0.0.1:$GW/$f" 2>>"$WORK/curl.err" | openssl dgst -sha256 -r | awk '{ print $1 }') || rc=$?
        echo "$f $sum $rc" >>"$out"
    done
}

# round CLIENTS: TRANSFERS downloads by CLIENTS at once; prints "secs MiB failures
# cpu_s_per_GiB" (ftpgate's utime+stime over the round per GiB moved).
round() {
    local clients=$1 per out=$WORK/round.$1 t0 t1 i failed mib c0 c1
    per=$((TRANSFERS / clients))
    : >"$out"
    c0=$(proc_cpu_ticks "$GW_PID")
    t0=$EPOCHREALTIME
    local -a pids=()
    # The workers start 5 ms apart (2.5 s for 500): ftpgate passes each new session
    # straight on to vsftpd, whose listen backlog is a fixed 32, and 500 connects in
    # one burst left some handshakes waiting out SYN-ACK retransmits past curl's
    # connect timeout (5 of 500 once). The figure is about the data path at scale;
    # the downloads still all run at once.
    for ((i = 0; i < clients; i++)); do
        worker "$i" "$per" "$out" &
        pids+=("$!")
        sleep 0.005
    done
    # Bounded: the workers' curls time out; the whole round is bounded too.
    local deadline=$((SECONDS + ROUND_TIMEOUT + 30)) pid
    for pid in "${pids[@]}"; do
        while kill -0 "$pid" 2>/dev/null; do
            ((SECONDS < deadline)) || { kill "${pids[@]}" 2>/dev/null; die "round with $clients clients timed out"; }
            sleep 0.05
        done
        wait "$pid" 2>/dev/null || true
    done
    t1=$EPOCHREALTIME
    c1=$(proc_cpu_ticks "$GW_PID")
    failed=0 mib=0
    while read -r f sum rc; do
        if [[ $rc != 0 || $sum != "${SUM[$f]}" ]]; then
            failed=$((failed + 1))
        else
            mib=$((mib + ${f//[^0-9]/}))
        fi
    done <"$out"
    failed=$((failed + TRANSFERS - $(wc -l <"$out")))
    awk -v a="$t0" -v b="$t1" -v m="$mib" -v f="$failed" -v c="$((c1 - c0))" -v hz="$CLK_TCK" \
        'BEGIN { printf "%.3f %d %d %.3f\n", b - a, m, f, (m > 0 ? c / hz / (m / 1024) : 0) }'
}

declare -A TP CPU
CLK_TCK=$(getconf CLK_TCK)
: >"$WORK/curl.err"
fail=0
for ((r = 0; r < ROUNDS; r++)); do
    for c in "$LOW" "$HIGH"; do
        read -r secs mib failed cpu < <(round "$c")
        tp=$(awk -v m="$mib" -v s="$secs" 'BEGIN { printf "%.1f", m / s }')
        log "round $r: $c concurrent: $TRANSFERS downloads, $mib MiB in ${secs}s = $tp MiB/s, $failed failed, ftpgate CPU $cpu s/GiB"
        TP[$c]="${TP[$c]:-} $tp"
        CPU[$c]="${CPU[$c]:-} $cpu"
        ((failed == 0)) || fail=1
    done
done
kill -0 "$GW_PID" 2>/dev/null || die "ftpgate exited during the benchmark"
median() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
lo=$(median <<<"${TP[$LOW]}")
hi=$(median <<<"${TP[$HIGH]}")
ratio=$(awk -v a="$lo" -v b="$hi" 'BEGIN { printf "%.2f", b / a }')
fallbacks=$(grep -c "copying through user space" "$WORK/gw/ftpgate.log" || true)
echo
echo "ftpgate as $RUN_USER, vsftpd on loopback, $TRANSFERS downloads of ${SIZES// /,} MiB per round, $ROUNDS round(s); $(nproc) cores"
printf '%-36s %10s\n' "$LOW concurrent MiB/s" "$lo" "$HIGH concurrent MiB/s" "$hi" "ratio $HIGH/$LOW (want >= $MIN_RATIO)" "$ratio" \
    "ftpgate CPU s/GiB at $LOW" "$(median <<<"${CPU[$LOW]}")" "ftpgate CPU s/GiB at $HIGH" "$(median <<<"${CPU[$HIGH]}")" \
    "splice fallback warnings" "$fallbacks"
if ((fail)); then
    log "FAIL: downloads failed; curl says:"
    sort "$WORK/curl.err" | uniq -c | sort -rn | head -n 5 >&2
    exit 1
fi
awk -v r="$ratio" -v m="$MIN_RATIO" 'BEGIN { exit !(r >= m) }' || { log "FAIL: ratio $ratio < $MIN_RATIO"; exit 1; }
log "PASS"
