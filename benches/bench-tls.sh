#!/usr/bin/env bash
# ftpgate FTPS benchmark: vsftpd with TLS on loopback, ftpgate (release build) in front
# of it, every figure measured through ftpgate and directly to the same vsftpd in the
# same run, with the ratio proxy/direct. The plain-FTP figures are benches/bench.sh's.
#
# Figures (all passive: curl EPSV, ftpgate server_mode=passive; TLS as negotiated,
# TLS 1.3, TLS_AES_256_GCM_SHA384 on every leg with OpenSSL 3 and rustls):
#   - FTPS -> ftpgate -> FTPS: RETR and STOR of one BENCH_SIZE_MIB file, curl --ssl-reqd
#     (AUTH TLS, PROT P) to an ftpgate listener with tls.mode explicit and
#     require_reuse true, ftpgate to vsftpd with route.tls explicit, data private;
#     vsftpd forces TLS on logins and data and has require_ssl_reuse=YES. The direct
#     figure is the same curl command straight to that vsftpd.
#   - plain -> ftpgate -> FTPS: the same transfers with plain curl to a listener
#     without TLS, ftpgate adding TLS (PROT P) towards the same vsftpd. There is no
#     plain path to an FTPS-only server, so the direct figure is the FTPS one above.
#   - ftpgate CPU seconds (utime+stime from /proc/PID/stat) per GiB moved, per figure.
#   - session setup with TLS on both legs (connect + AUTH TLS + login + PBSZ/PROT P +
#     PASV + LIST + QUIT, python ftplib FTP_TLS, benches/session_setup.py --tls), median
#     and p90 over BENCH_SESSIONS sessions run one after another, through ftpgate
#     (listener require_reuse false) vs directly. ftplib does not resume TLS sessions on
#     data connections, so this figure uses a second vsftpd with require_ssl_reuse=NO
#     (ftpgate still resumes on its leg to the server, ftplib direct does not).
# RETR goes to /dev/null; STOR reads the source from tmpfs (/dev/shm when it has room)
# and vsftpd writes it there. Transfers alternate direct / FTPS gate / plain gate,
# BENCH_REPEAT rounds, median of each. Every transfer is checked: RETR byte count and
# 226, STOR size on the server's disk; with BENCH_VERIFY=1 (default) also the SHA-256
# of every stored file and of one untimed download through each gateway path.
# The test CA and the server certificate (SAN IP:127.0.0.1, DNS:localhost) are made
# with openssl at run time and deleted with everything else on exit.
#
# Usage (as root; needs vsftpd curl python3 openssl):
#   benches/bench-tls.sh
#   BENCH_SIZE_MIB=128 BENCH_SESSIONS=20 benches/bench-tls.sh      # quick run
# Knobs: BENCH_SIZE_MIB=1024 BENCH_REPEAT=3 BENCH_SESSIONS=100 BENCH_VERIFY=1
#        BENCH_PORT_LO=12000 BENCH_PORT_HI=19999 FTPGATE=path FTPGATE_LOG_LEVEL=info
#        BENCH_TIMEOUT=600 (seconds per client command)
#        BENCH_KEEP=1 keeps the work directory (configs, logs, the PKI; not the data)
# Ports: the same range as benches/bench.sh (see there for why); picked at run time,
# so the two benchmarks can run at once (but should not: they share the CPU).
# A full run (1 GiB) takes about 3 minutes on the 2-core development machine.
# The machine is small and shared: treat single runs as rough, compare ratios; the
# load average before and after the measurements is printed with the table.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/interop/lib.sh
source "$BENCH_DIR/../tests/interop/lib.sh"

SIZE_MIB=${BENCH_SIZE_MIB:-1024}
REPEAT=${BENCH_REPEAT:-3}
SESSIONS=${BENCH_SESSIONS:-100}
VERIFY=${BENCH_VERIFY:-1}
KEEP=${BENCH_KEEP:-0}
PORT_LO=${BENCH_PORT_LO:-12000}
PORT_HI=${BENCH_PORT_HI:-19999}
CMD_TIMEOUT=${BENCH_TIMEOUT:-600}
for v in SIZE_MIB REPEAT SESSIONS CMD_TIMEOUT; do
    [[ ${!v} =~ ^[0-9]+$ && ${!v} -ge 1 ]] || die "BENCH_$v must be a positive integer"
done
for v in VERIFY KEEP; do
    [[ ${!v} == 0 || ${!v} == 1 ]] || die "BENCH_$v must be 0 or 1"
done
# Bounded loops: cap the counts.
((REPEAT <= 20 && SESSIONS <= 10000)) || die "counts too large"

need_root
need_tools vsftpd curl python3 openssl sha256sum timeout setsid useradd userdel chpasswd awk od getconf
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
# Room for the source, one upload and one verification download.
SIZE_BYTES=$((SIZE_MIB * 1024 * 1024))
need_kib=$((3 * SIZE_BYTES / 1024 + 65536))
base=/tmp
shm_kib=$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 { print $4 }' || true)
if [[ -n $shm_kib ]] && ((shm_kib > need_kib)); then base=/dev/shm; fi
WORK=$(mktemp -d "$base/ftpgate-bench-tls.XXXXXX")
chmod 755 "$WORK"
FTPHOME=$WORK/home
if ((KEEP)); then
    CLEAN_PATHS+=("$FTPHOME") # the data goes, the configs and logs stay
    log "work directory $WORK (kept on exit: BENCH_KEEP=1)"
else
    CLEAN_PATHS+=("$WORK")
    log "work directory $WORK"
fi
make_ftp_user "$FTPHOME"

log "generating $SIZE_MIB MiB source"
head -c "$SIZE_BYTES" /dev/urandom >"$FTPHOME/src.bin"
chown -R "$FTP_USER:" "$FTPHOME"
SRC_SHA=$(sha256sum "$FTPHOME/src.bin" | awk '{ print $1 }')
CLK_TCK=$(getconf CLK_TCK)

# ---------------------------------------------------------------- PKI ----
# A throw-away CA (ca.pem) and a server certificate signed by it (server.pem,
# server.key: CN localhost, SAN IP:127.0.0.1 and DNS:localhost), valid 2 days:
# lib.sh's make_test_pki. vsftpd and ftpgate's listeners both present it.
PKI=$WORK/pki
make_test_pki "$PKI"
CA=$PKI/ca.pem

# --------------------------------------------------------------- vsftpd ----
# start_vsftpd_tls WORKDIR PORT PASV_LO PASV_HI REUSE: lib.sh's start_vsftpd with TLS on
# and forced for logins and data (an FTPS-only server), require_ssl_reuse=REUSE.
start_vsftpd_tls() {
    local extra=$1.tls.conf
    printf '%s\n' ssl_enable=YES "rsa_cert_file=$PKI/server.pem" \
        "rsa_private_key_file=$PKI/server.key" force_local_logins_ssl=YES \
        force_local_data_ssl=YES "require_ssl_reuse=$5" ssl_sslv2=NO ssl_sslv3=NO \
        ssl_tlsv1=YES ssl_ciphers=HIGH >"$extra"
    start_vsftpd "$1" "$2" "$3" "$4" "$extra"
}

# -------------------------------------------------------------- start ----
# vsftpd strict (require_ssl_reuse=YES) and lax (NO): control + passive range each;
# ftpgate: three listeners and one passive range.
pick_ports "$PORT_LO" "$PORT_HI" 1 100 1 100 1 1 1 100
SRV=${PORT_FIRST[0]} SRV_LAX=${PORT_FIRST[2]}
GW_TLS=${PORT_FIRST[4]} GW_PLAIN=${PORT_FIRST[5]} GW_SETUP=${PORT_FIRST[6]}
start_vsftpd_tls "$WORK/vsftpd" "$SRV" "${PORT_FIRST[1]}" "${PORT_LAST[1]}" YES
VSFTPD_LOGS=("$VSFTPD_LOG")
start_vsftpd_tls "$WORK/vsftpd-lax" "$SRV_LAX" "${PORT_FIRST[3]}" "${PORT_LAST[3]}" NO
VSFTPD_LOGS+=("$VSFTPD_LOG")

# One ftpgate, three listeners:
#   ftps  - FTPS clients (require_reuse true: curl resumes) -> FTPS vsftpd (strict)
#   plain - plain clients -> FTPS vsftpd (strict), PROT P towards it
#   setup - FTPS clients (require_reuse false: ftplib) -> FTPS vsftpd (lax)
GW_DIR=$WORK/gw
GW_LOG=$GW_DIR/ftpgate.log
mkdir -p "$GW_DIR"
upstream_tls="tls: { mode: explicit, ca: $CA, server_name: localhost, data: private }"
cat >"$GW_DIR/ftpgate.yaml" <<EOF
listeners:
  - name: ftps
    bind: 127.0.0.1:$GW_TLS
    tls: { mode: explicit, cert: $PKI/server.pem, key: $PKI/server.key, require_reuse: true }
    route:
      kind: fixed
      upstreams: [127.0.0.1:$SRV]
      $upstream_tls
  - name: plain
    bind: 127.0.0.1:$GW_PLAIN
    route:
      kind: fixed
      upstreams: [127.0.0.1:$SRV]
      $upstream_tls
  - name: setup
    bind: 127.0.0.1:$GW_SETUP
    tls: { mode: explicit, cert: $PKI/server.pem, key: $PKI/server.key, require_reuse: false }
    route:
      kind: fixed
      upstreams: [127.0.0.1:$SRV_LAX]
      $upstream_tls
data:
  passive_ports: ${PORT_FIRST[7]}-${PORT_LAST[7]}
  advertise:
    - clients: 0.0.0.0/0
      address: auto
  server_mode: passive
timeouts: { connect: 10s, idle: 900s, data_accept: 30s }
limits: { max_sessions: 1000 }
log: { level: ${FTPGATE_LOG_LEVEL:-info}, format: text }
EOF
"$FTPGATE_BIN" check -c "$GW_DIR/ftpgate.yaml" >"$GW_DIR/check.out" 2>&1 || {
    cat "$GW_DIR/check.out" >&2
    die "ftpgate check rejected $GW_DIR/ftpgate.yaml"
}
start_ftpgate "$GW_DIR/ftpgate.yaml" "$GW_LOG" "$GW_TLS" || die "ftpgate did not come up"
GW_PID=$FTPGATE_PID
for p in "$GW_PLAIN" "$GW_SETUP"; do
    wait_banner "$p" 20 "$GW_PID" || die "ftpgate did not greet on 127.0.0.1:$p"
done
log "vsftpd :$SRV (require_ssl_reuse=YES), :$SRV_LAX (NO); ftpgate ftps :$GW_TLS, plain :$GW_PLAIN, setup :$GW_SETUP"

# show_failure WHAT: on a failed measurement, show what the logs say, and stop.
show_failure() {
    log "measurement failed: $1"
    for f in "$WORK/curl.err" "$GW_LOG" "${VSFTPD_LOGS[@]}"; do
        [[ -s $f ]] || continue
        echo "--- $f (last 15 lines)" >&2
        tail -n 15 "$f" | sed -E "s/\x1b\[[0-9;]*m//g" | sed -E 's/^(> |---> )PASS .*/\1PASS ****/' >&2
    done
    exit 1
}

# median: of the numbers on stdin.
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# curl_args PATH: the curl options for one path (direct, gate-tls, gate-plain); sets
# CURL_ARGS and CURL_PORT.
curl_args() {
    CURL_ARGS=(-sS -v --no-ftp-skip-pasv-ip --ftp-pasv --connect-timeout 10 --max-time "$CMD_TIMEOUT"
        -u "$FTP_USER:$FTP_PASS")
    case $1 in
    direct) CURL_PORT=$SRV ;;
    gate-tls) CURL_PORT=$GW_TLS ;;
    gate-plain) CURL_PORT=$GW_PLAIN ;;
    esac
    if [[ $1 != gate-plain ]]; then CURL_ARGS+=(--ssl-reqd --cacert "$CA"); fi
}

# check_trace PATH WHAT: the curl trace shows TLS with PROT P (or, for the plain client,
# no AUTH at all) and a 226.
check_trace() {
    if [[ $1 == gate-plain ]]; then
        ! grep -q '^> AUTH' "$WORK/curl.err" || show_failure "$2: the plain client sent AUTH"
    else
        grep -q '^> PROT P' "$WORK/curl.err" || show_failure "$2: no PROT P in the client trace"
        grep -q '^\* SSL connection using' "$WORK/curl.err" || show_failure "$2: no TLS in the client trace"
    fi
    grep -q '^< 226' "$WORK/curl.err" || show_failure "$2: no 226 reply"
}

# transfer OP PATH: one timed curl RETR/STOR; prints "secs cpu_secs" (ftpgate's CPU, 0
# for direct).
transfer() {
    local op=$1 path=$2 t0 t1 c0=0 c1=0 got what="$1 $2"
    curl_args "$path"
    rm -f "$FTPHOME/up.bin"
    [[ $path != direct ]] && c0=$(proc_cpu_ticks "$GW_PID")
    t0=$EPOCHREALTIME
    if [[ $op == RETR ]]; then
        got=$(timeout -k 5 $((CMD_TIMEOUT + 10)) curl "${CURL_ARGS[@]}" -w '%{size_download}' -o /dev/null \
            "ftp://127.0.0.1:$CURL_PORT/src.bin" 2>"$WORK/curl.err") || show_failure "$what"
    else
        timeout -k 5 $((CMD_TIMEOUT + 10)) curl "${CURL_ARGS[@]}" -T "$FTPHOME/src.bin" \
            "ftp://127.0.0.1:$CURL_PORT/up.bin" 2>"$WORK/curl.err" || show_failure "$what"
    fi
    t1=$EPOCHREALTIME
    [[ $path != direct ]] && c1=$(proc_cpu_ticks "$GW_PID")
    check_trace "$path" "$what"
    if [[ $op == RETR ]]; then
        [[ $got == "$SIZE_BYTES" ]] || show_failure "$what: downloaded $got bytes, want $SIZE_BYTES"
    else
        got=$(stat -c %s "$FTPHOME/up.bin" 2>/dev/null || echo 0)
        ((got == SIZE_BYTES)) || show_failure "$what: stored $got bytes, want $SIZE_BYTES"
        if ((VERIFY)); then
            [[ $(sha256sum "$FTPHOME/up.bin" | awk '{ print $1 }') == "$SRC_SHA" ]] ||
                show_failure "$what: the stored file's SHA-256 differs from the source's"
        fi
        rm -f "$FTPHOME/up.bin"
    fi
    awk -v a="$t0" -v b="$t1" -v c="$((c1 - c0))" -v hz="$CLK_TCK" 'BEGIN { printf "%.6f %.3f\n", b - a, c / hz }'
}

# verify_download PATH: one untimed RETR to a file, compared with the source's SHA-256.
verify_download() {
    local path=$1 what="RETR $1 (checksum)"
    curl_args "$path"
    rm -f "$WORK/retr.bin"
    timeout -k 5 $((CMD_TIMEOUT + 10)) curl "${CURL_ARGS[@]}" -o "$WORK/retr.bin" \
        "ftp://127.0.0.1:$CURL_PORT/src.bin" 2>"$WORK/curl.err" || show_failure "$what"
    check_trace "$path" "$what"
    [[ $(sha256sum "$WORK/retr.bin" | awk '{ print $1 }') == "$SRC_SHA" ]] ||
        show_failure "$what: the download's SHA-256 differs from the source's"
    rm -f "$WORK/retr.bin"
}

PATHS=(direct gate-tls gate-plain)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
if ((VERIFY)); then
    for path in gate-tls gate-plain; do verify_download "$path"; done
    log "downloads through ftpgate match the source's SHA-256"
fi
# The TLS parameters the client leg negotiated (from the last curl trace).
curl_args gate-tls
timeout -k 5 30 curl "${CURL_ARGS[@]}" "ftp://127.0.0.1:$GW_TLS/" >/dev/null 2>"$WORK/curl.err" ||
    show_failure "LIST gate-tls"
TLS_CLIENT_LEG=$(grep -m1 -Eo 'SSL connection using .*' "$WORK/curl.err" | sed 's/SSL connection using //' || true)
curl_args direct
timeout -k 5 30 curl "${CURL_ARGS[@]}" "ftp://127.0.0.1:$SRV/" >/dev/null 2>"$WORK/curl.err" ||
    show_failure "LIST direct"
TLS_DIRECT=$(grep -m1 -Eo 'SSL connection using .*' "$WORK/curl.err" | sed 's/SSL connection using //' || true)

declare -A R # results: R[op-path] MiB/s, R[op-path.cpu] s/GiB
SIZE_GIB=$(awk -v b="$SIZE_BYTES" 'BEGIN { printf "%.6f", b / 1073741824 }')
for op in RETR STOR; do
    for path in "${PATHS[@]}"; do : >"$WORK/$op-$path.secs" && : >"$WORK/$op-$path.cpu"; done
    # Alternate the paths so drift on a shared machine hits all alike.
    for ((r = 0; r < REPEAT; r++)); do
        for path in "${PATHS[@]}"; do
            read -r secs cpu < <(transfer "$op" "$path")
            [[ -n ${secs:-} ]] || exit 1
            echo "$secs" >>"$WORK/$op-$path.secs"
            echo "$cpu" >>"$WORK/$op-$path.cpu"
        done
    done
    for path in "${PATHS[@]}"; do
        secs=$(median <"$WORK/$op-$path.secs")
        R[$op-$path]=$(awk -v s="$secs" -v m="$SIZE_MIB" 'BEGIN { printf "%.1f", m / s }')
        R[$op-$path.cpu]=$(median <"$WORK/$op-$path.cpu" | awk -v g="$SIZE_GIB" '{ printf "%.3f", $1 / g }')
        log "$op $path: ${R[$op-$path]} MiB/s"
    done
done

# Session setup, TLS on both legs, against the vsftpd without require_ssl_reuse.
for path in direct gate; do
    port=$SRV_LAX
    [[ $path == gate ]] && port=$GW_SETUP
    out=$(BENCH_FTP_USER=$FTP_USER BENCH_FTP_PASS=$FTP_PASS timeout -k 5 "$CMD_TIMEOUT" \
        python3 "$BENCH_DIR/session_setup.py" --tls "$CA" 127.0.0.1 "$port" "$SESSIONS" 2>"$WORK/curl.err") ||
        show_failure "session setup (FTPS) via port $port"
    read -r R[setup-median.$path] R[setup-p90.$path] _ _ <<<"$out"
done
log "session setup done"

LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
kill -0 "$GW_PID" 2>/dev/null || die "ftpgate exited during the benchmark"
if grep -q panicked "$GW_LOG"; then die "ftpgate's log says it panicked: $GW_LOG"; fi

# ------------------------------------------------------------- report ----
ratio() { awk -v p="$2" -v d="$1" 'BEGIN { if (d > 0) printf "%.2f", p / d; else print "-" }'; }
row() { printf '%-46s %12s %12s %8s\n' "$1" "$2" "$3" "$4"; }
echo
echo "ftpgate FTPS benchmark: vsftpd (TLS forced) on loopback; file ${SIZE_MIB} MiB (median of $REPEAT), $SESSIONS sessions; $(nproc) cores"
echo "load average (1/5/15 min) before the measurements: $LOAD_BEFORE, after: $LOAD_AFTER"
echo "client leg TLS: ${TLS_CLIENT_LEG:-?} (curl to ftpgate); direct: ${TLS_DIRECT:-?} (curl to vsftpd)"
echo "direct = the same client straight to the same vsftpd over FTPS (PROT P); plain -> FTPS has no"
echo "plain direct path (the server is FTPS-only), so it is compared with the direct FTPS figure"
row figure direct ftpgate proxy/direct
for op in RETR STOR; do
    row "$op FTPS -> ftpgate -> FTPS, MiB/s" "${R[$op-direct]}" "${R[$op-gate-tls]}" "$(ratio "${R[$op-direct]}" "${R[$op-gate-tls]}")"
done
for op in RETR STOR; do
    row "$op plain -> ftpgate -> FTPS, MiB/s" "${R[$op-direct]}" "${R[$op-gate-plain]}" "$(ratio "${R[$op-direct]}" "${R[$op-gate-plain]}")"
done
for op in RETR STOR; do
    row "ftpgate CPU s/GiB, $op FTPS -> FTPS" - "${R[$op-gate-tls.cpu]}" -
done
for op in RETR STOR; do
    row "ftpgate CPU s/GiB, $op plain -> FTPS" - "${R[$op-gate-plain.cpu]}" -
done
row "FTPS session setup median ms" "${R[setup-median.direct]}" "${R[setup-median.gate]}" "$(ratio "${R[setup-median.direct]}" "${R[setup-median.gate]}")"
row "FTPS session setup p90 ms" "${R[setup-p90.direct]}" "${R[setup-p90.gate]}" "$(ratio "${R[setup-p90.direct]}" "${R[setup-p90.gate]}")"
