#!/usr/bin/env bash
# ftpgate benchmark: vsftpd on loopback, ftpgate (release build) in front of it, and
# each figure measured through ftpgate and directly, with the ratio proxy/direct.
#
# Figures:
#   - RETR and STOR throughput (MiB/s) of one BENCH_SIZE_MIB file, passive (curl EPSV,
#     ftpgate server_mode=passive) and active (curl EPRT, ftpgate server_mode=active);
#     RETR goes to /dev/null, STOR reads the source from tmpfs (/dev/shm when it has
#     room) and vsftpd writes it there. Median of BENCH_REPEAT runs.
#   - ftpgate CPU seconds (utime+stime from /proc/PID/stat) per GiB moved, per figure.
#   - BENCH_SMALL_FILES files of BENCH_SMALL_KIB KiB fetched in one lftp session
#     (`mirror`), wall time.
#   - session setup (connect + login + PASV + LIST + QUIT, python ftplib), median and
#     p90 over BENCH_SESSIONS sessions run one after another.
# The FTPS figures (TLS on one or both legs) are benches/bench-tls.sh's.
#
# Usage (as root; needs vsftpd curl lftp python3):
#   benches/bench.sh
#   BENCH_SIZE_MIB=256 BENCH_SESSIONS=30 benches/bench.sh      # quick run
# Knobs: BENCH_SIZE_MIB=1024 BENCH_REPEAT=3 BENCH_MIRROR_REPEAT=7 BENCH_SESSIONS=100 BENCH_SMALL_FILES=1000
#        BENCH_SMALL_KIB=4 BENCH_PORT_LO=12000 BENCH_PORT_HI=19999 FTPGATE=path
#        FTPGATE_LOG_LEVEL=info BENCH_TIMEOUT=600 (seconds per client command)
# Ports: the default 12000-19999 overlaps neither the Rust tests' data ports
# (28000-32749, tests/common/mod.rs) nor the interop suite's (20000-27999,
# tests/interop/run.sh), and stays below the kernel's ephemeral range (32768-60999 by
# default, /proc/sys/net/ipv4/ip_local_port_range), so a benchmark can run beside the
# test suites without a port collision.
# The machine is small and shared: treat single runs as rough, compare ratios.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/interop/lib.sh
source "$BENCH_DIR/../tests/interop/lib.sh"

SIZE_MIB=${BENCH_SIZE_MIB:-1024}
REPEAT=${BENCH_REPEAT:-3}
SESSIONS=${BENCH_SESSIONS:-100}
SMALL_FILES=${BENCH_SMALL_FILES:-1000}
SMALL_KIB=${BENCH_SMALL_KIB:-4}
PORT_LO=${BENCH_PORT_LO:-12000}
PORT_HI=${BENCH_PORT_HI:-19999}
CMD_TIMEOUT=${BENCH_TIMEOUT:-600}
for v in SIZE_MIB REPEAT SESSIONS SMALL_FILES SMALL_KIB; do
    [[ ${!v} =~ ^[0-9]+$ && ${!v} -ge 1 ]] || die "BENCH_$v must be a positive integer"
done
# Bounded loops: cap the counts.
((REPEAT <= 20 && SESSIONS <= 10000 && SMALL_FILES <= 100000)) || die "counts too large"

need_root
need_tools vsftpd curl lftp python3 timeout setsid useradd userdel chpasswd awk od getconf
install_cleanup_trap

# ------------------------------------------------------------- binary ----
if [[ -z ${FTPGATE:-} ]]; then
    if [[ ! -x $REPO_ROOT/target/release/ftpgate ]]; then
        log "building ftpgate (cargo build --release)"
        (cd "$REPO_ROOT" && cargo build --release) >&2 || die "cargo build --release failed"
    fi
    FTPGATE=$REPO_ROOT/target/release/ftpgate
fi
find_ftpgate || die "no ftpgate binary"
log "ftpgate: $FTPGATE_BIN ($("$FTPGATE_BIN" --version 2>&1 | head -n1 || true))"

# ------------------------------------------------------------ workdir ----
SIZE_BYTES=$((SIZE_MIB * 1024 * 1024))
need_kib=$(((2 * SIZE_BYTES + SMALL_FILES * SMALL_KIB * 2048) / 1024 + 65536))
base=/tmp
shm_kib=$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 { print $4 }' || true)
if [[ -n $shm_kib ]] && ((shm_kib > need_kib)); then base=/dev/shm; fi
WORK=$(mktemp -d "$base/ftpgate-bench.XXXXXX")
chmod 755 "$WORK"
CLEAN_PATHS+=("$WORK")
log "work directory $WORK"
FTPHOME=$WORK/home
make_ftp_user "$FTPHOME"

log "generating $SIZE_MIB MiB source and $SMALL_FILES x $SMALL_KIB KiB files"
head -c "$SIZE_BYTES" /dev/urandom >"$FTPHOME/src.bin"
mkdir -p "$FTPHOME/small"
head -c $((SMALL_KIB * 1024)) /dev/urandom >"$WORK/small.tmpl"
for ((i = 0; i < SMALL_FILES; i++)); do
    cp "$WORK/small.tmpl" "$FTPHOME/small/f$i.bin"
done
chown -R "$FTP_USER:" "$FTPHOME"
CLK_TCK=$(getconf CLK_TCK)

# -------------------------------------------------------------- start ----
# vsftpd: control + passive range; ftpgate x2 (server_mode passive, active):
# control + passive_ports + server_active_ports each.
pick_ports "$PORT_LO" "$PORT_HI" 1 100 1 100 100 1 100 100
SRV=${PORT_FIRST[0]}
start_vsftpd "$WORK/vsftpd" "$SRV" "${PORT_FIRST[1]}" "${PORT_LAST[1]}"
declare -A GW_PORT GW_PID
i=2
for mode in passive active; do
    GW_PORT[$mode]=${PORT_FIRST[i]}
    mkdir -p "$WORK/gw-$mode"
    write_ftpgate_config "$WORK/gw-$mode/ftpgate.yaml" "${PORT_FIRST[i]}" "$SRV" \
        "${PORT_FIRST[i + 1]}" "${PORT_LAST[i + 1]}" "${PORT_FIRST[i + 2]}" "${PORT_LAST[i + 2]}" "$mode"
    start_ftpgate "$WORK/gw-$mode/ftpgate.yaml" "$WORK/gw-$mode/ftpgate.log" "${PORT_FIRST[i]}" ||
        die "ftpgate (server_mode=$mode) did not come up"
    GW_PID[$mode]=$FTPGATE_PID
    i=$((i + 3))
done
log "vsftpd :$SRV; ftpgate passive :${GW_PORT[passive]}, active :${GW_PORT[active]}"

# show_failure: on a failed measurement, show what the logs say.
show_failure() {
    log "measurement failed: $1"
    for f in "$WORK/curl.err" "$WORK/gw-passive/ftpgate.log" "$WORK/gw-active/ftpgate.log" "$VSFTPD_LOG"; do
        [[ -s $f ]] || continue
        echo "--- $f (last 15 lines)" >&2
        tail -n 15 "$f" | sed -E "s/\x1b\[[0-9;]*m//g" | sed -E 's/^(> |---> )PASS .*/\1PASS ****/' >&2
    done
    exit 1
}

# median: of the numbers on stdin.
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# transfer OP MODE PORT PID: one curl RETR/STOR; prints "secs cpu_secs" (cpu of PID, 0 if none).
transfer() {
    local op=$1 mode=$2 port=$3 pid=$4 t0 t1 c0=0 c1=0 got
    local -a args=(-sS -v --no-ftp-skip-pasv-ip --connect-timeout 10 --max-time "$CMD_TIMEOUT" -u "$FTP_USER:$FTP_PASS")
    if [[ $mode == active ]]; then args+=(-P -); else args+=(--ftp-pasv); fi
    rm -f "$FTPHOME/up.bin"
    [[ $pid != 0 ]] && c0=$(proc_cpu_ticks "$pid")
    t0=$EPOCHREALTIME
    if [[ $op == RETR ]]; then
        timeout -k 5 $((CMD_TIMEOUT + 10)) curl "${args[@]}" -o /dev/null "ftp://127.0.0.1:$port/src.bin" 2>"$WORK/curl.err" ||
            show_failure "$op $mode via port $port"
    else
        timeout -k 5 $((CMD_TIMEOUT + 10)) curl "${args[@]}" -T "$FTPHOME/src.bin" "ftp://127.0.0.1:$port/up.bin" 2>"$WORK/curl.err" ||
            show_failure "$op $mode via port $port"
    fi
    t1=$EPOCHREALTIME
    [[ $pid != 0 ]] && c1=$(proc_cpu_ticks "$pid")
    if [[ $op == RETR ]]; then
        got=$(grep -Eo '^< 226' "$WORK/curl.err" | head -n1 || true)
        [[ -n $got ]] || show_failure "$op $mode: no 226 reply"
    else
        got=$(stat -c %s "$FTPHOME/up.bin" 2>/dev/null || echo 0)
        ((got == SIZE_BYTES)) || show_failure "$op $mode: stored $got bytes, want $SIZE_BYTES"
        rm -f "$FTPHOME/up.bin"
    fi
    awk -v a="$t0" -v b="$t1" -v c="$((c1 - c0))" -v hz="$CLK_TCK" 'BEGIN { printf "%.6f %.3f\n", b - a, c / hz }'
}

declare -A R # results: R[figure.direct], R[figure.gate], R[figure.cpu]
SIZE_GIB=$(awk -v b="$SIZE_BYTES" 'BEGIN { printf "%.6f", b / 1073741824 }')

for op in RETR STOR; do
    for mode in passive active; do
        for path in direct gate; do
            port=$SRV pid=0
            if [[ $path == gate ]]; then port=${GW_PORT[$mode]} pid=${GW_PID[$mode]}; fi
            : >"$WORK/secs" && : >"$WORK/cpu"
            for ((r = 0; r < REPEAT; r++)); do
                read -r secs cpu < <(transfer "$op" "$mode" "$port" "$pid")
                [[ -n ${secs:-} ]] || exit 1
                echo "$secs" >>"$WORK/secs"
                echo "$cpu" >>"$WORK/cpu"
            done
            secs=$(median <"$WORK/secs")
            R[$op-$mode.$path]=$(awk -v s="$secs" -v m="$SIZE_MIB" 'BEGIN { printf "%.1f", m / s }')
            if [[ $path == gate ]]; then
                R[$op-$mode.cpu]=$(median <"$WORK/cpu" | awk -v g="$SIZE_GIB" '{ printf "%.3f", $1 / g }')
            fi
            log "$op $mode $path: ${R[$op-$mode.$path]} MiB/s"
        done
    done
done

# mirror PORT: fetch the small files in one lftp session; prints wall seconds.
mirror() {
    local port=$1 t0 n
    rm -rf "$WORK/mirror"
    mkdir -p "$WORK/mirror" "$WORK/lftp-home"
    cat >"$WORK/mirror.lftp" <<EOF
set cmd:fail-exit yes
set ftp:ssl-allow no
set net:max-retries 1
set net:timeout 20
set ftp:passive-mode on
set mirror:parallel-transfer-count 1
open -u $FTP_USER,$FTP_PASS -p $port ftp://127.0.0.1
mirror small $WORK/mirror/small
bye
EOF
    t0=$EPOCHREALTIME
    HOME=$WORK/lftp-home XDG_CONFIG_HOME=$WORK/lftp-home XDG_DATA_HOME=$WORK/lftp-home \
        timeout -k 5 "$CMD_TIMEOUT" lftp -f "$WORK/mirror.lftp" >"$WORK/curl.err" 2>&1 ||
        show_failure "lftp mirror via port $port"
    elapsed "$t0"
    n=$(find "$WORK/mirror/small" -type f | wc -l)
    ((n == SMALL_FILES)) || show_failure "mirror got $n files, want $SMALL_FILES"
    echo
}
# Alternate direct and ftpgate runs so drift on a shared machine hits both alike; the
# small-file figure is latency-bound and noisy, so it takes BENCH_MIRROR_REPEAT runs.
MIRROR_REPEAT=${BENCH_MIRROR_REPEAT:-7}
: >"$WORK/mirror.direct"
: >"$WORK/mirror.gate"
for ((r = 0; r < MIRROR_REPEAT; r++)); do
    mirror "$SRV" >>"$WORK/mirror.direct"
    mirror "${GW_PORT[passive]}" >>"$WORK/mirror.gate"
done
R[mirror.direct]=$(median <"$WORK/mirror.direct")
R[mirror.gate]=$(median <"$WORK/mirror.gate")
log "mirror (median of $MIRROR_REPEAT): direct ${R[mirror.direct]} s, ftpgate ${R[mirror.gate]} s"

for path in direct gate; do
    port=$SRV
    [[ $path == gate ]] && port=${GW_PORT[passive]}
    out=$(BENCH_FTP_USER=$FTP_USER BENCH_FTP_PASS=$FTP_PASS \
        timeout -k 5 "$CMD_TIMEOUT" python3 "$BENCH_DIR/session_setup.py" 127.0.0.1 "$port" "$SESSIONS" 2>"$WORK/curl.err") ||
        show_failure "session setup via port $port"
    read -r R[setup-median.$path] R[setup-p90.$path] _ _ <<<"$out"
done
log "session setup done"

for mode in passive active; do
    kill -0 "${GW_PID[$mode]}" 2>/dev/null || die "ftpgate (server_mode=$mode) exited during the benchmark"
done

# ------------------------------------------------------------- report ----
ratio() { awk -v p="$2" -v d="$1" 'BEGIN { if (d > 0) printf "%.2f", p / d; else print "-" }'; }
row() { printf '%-40s %12s %12s %8s\n' "$1" "$2" "$3" "$4"; }
echo
echo "ftpgate benchmark: vsftpd on loopback; file ${SIZE_MIB} MiB (median of $REPEAT), $SMALL_FILES x ${SMALL_KIB} KiB, $SESSIONS sessions; $(nproc) cores"
row figure direct ftpgate proxy/direct
for op in RETR STOR; do
    for mode in passive active; do
        k=$op-$mode
        label="$op $mode ($([[ $mode == passive ]] && echo EPSV || echo EPRT)) MiB/s"
        row "$label" "${R[$k.direct]}" "${R[$k.gate]}" "$(ratio "${R[$k.direct]}" "${R[$k.gate]}")"
    done
done
for op in RETR STOR; do
    for mode in passive active; do
        row "ftpgate CPU s/GiB, $op $mode" - "${R[$op-$mode.cpu]}" -
    done
done
row "mirror $SMALL_FILES x ${SMALL_KIB} KiB, wall s (median of $MIRROR_REPEAT)" "${R[mirror.direct]}" "${R[mirror.gate]}" "$(ratio "${R[mirror.direct]}" "${R[mirror.gate]}")"
row "session setup median ms" "${R[setup-median.direct]}" "${R[setup-median.gate]}" "$(ratio "${R[setup-median.direct]}" "${R[setup-median.gate]}")"
row "session setup p90 ms" "${R[setup-p90.direct]}" "${R[setup-p90.gate]}" "$(ratio "${R[setup-p90.direct]}" "${R[setup-p90.gate]}")"
