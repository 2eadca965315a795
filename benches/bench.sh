#!/usr/bin/env bash
# ftpgate benchmark: one invocation measures, against the same vsftpd,
#   direct       the client talks to vsftpd itself
#   relay        ftpgate in front (its user-space splice relay, data.path: relay)
#   kernel       ftpgate with data.path: kernel (nftables DNAT+SNAT, the kernel forwards
#                the data connections); routed topology only, see below
#   mod_proxy    ProFTPD 1.3.8 with mod_proxy (Debian's proftpd-mod-proxy), a reverse proxy
# and prints every figure as median [min-max] over the runs, with its ratio to direct
# and the target of issue 12 beside it.
#
# Two topologies:
#   loopback     everything on 127.0.0.1 (direct, relay, mod_proxy), as before.
#   routed       three network namespaces, client 192.0.2.2 - 192.0.2.1 gw 198.51.100.1 -
#                198.51.100.2 server, ip_forward=1 in gw (the namespace lab's helpers,
#                tests/lab/lib.sh). direct-routed is the client reaching vsftpd through
#                the forwarding namespace with no proxy; relay and kernel are ftpgate in
#                gw. The kernel path cannot work on loopback (ftpgate falls back to the
#                relay for loopback peers), so it is measured here only.
#
# Figures (loopback unless said):
#   - RETR and STOR of one BENCH_SIZE_MIB file, MiB/s, passive (curl EPSV; ftpgate
#     server_mode=passive; mod_proxy ProxyDataTransferPolicy PASV) and active (curl EPRT;
#     server_mode=active; ProxyDataTransferPolicy PORT). RETR goes to /dev/null, STOR
#     reads from tmpfs (/dev/shm when it has room) and vsftpd writes there.
#   - proxy CPU seconds per GiB moved: utime+stime (+ reaped children) of the proxy's
#     process tree from /proc (ftpgate is one process; proftpd forks one per session).
#   - routed: RETR and STOR passive and active, direct-routed, relay, kernel; ftpgate CPU;
#     the kernel path's set-up per transfer (the netlink batch installing one mapping,
#     µs, from the gate's setup_us log field at debug level for ftpgate::kernel).
#   - BENCH_SMALL_FILES files of BENCH_SMALL_KIB KiB in one lftp session (`mirror`), wall s.
#   - session setup (connect + login + PASV + LIST + QUIT, python ftplib), median and p90
#     of BENCH_SESSIONS sessions in a row (benches/session_setup.py); each run gives one
#     median and one p90, and the table shows the median of those over the runs.
#   - BENCH_CONCURRENT sessions at once (benches/concurrent_sessions.py), logged in 5 ms apart
#     (vsftpd's fixed listen backlog of 32 drops a burst), then all downloading a
#     BENCH_CONC_KIB KiB file at once, SHA-256 checked: wall s, failures, and the
#     peak of the summed PSS of the proxy's process tree (sampled every 50 ms; PSS, not
#     RSS, so that the pages proftpd's forked sessions share are counted once).
# Every figure is run BENCH_REPEAT times (the small-file figure BENCH_MIRROR_REPEAT
# times, it is noisy), direct and proxies alternating so that drift hits them alike.
# The FTPS figures (TLS on one or both legs) are benches/bench-tls.sh's.
#
# ProFTPD: proftpd-core, proftpd-mod-crypto (mod_proxy needs OpenSSL's symbols, which
# the proftpd binary does not link; loading mod_tls.so brings them) and
# proftpd-mod-proxy are taken out of their .debs (apt-get download + dpkg-deb -x, as
# the interop suite does) into benches/.cache/proftpd-proxy and run in the foreground.
#
# Usage (as root; needs vsftpd curl lftp python3 ip nft, apt-get for the first run):
#   benches/bench.sh
#   BENCH_SIZE_MIB=256 BENCH_SESSIONS=30 BENCH_MIRROR_REPEAT=3 benches/bench.sh   # quick run
# Knobs: BENCH_SIZE_MIB=1024 BENCH_REPEAT=3 BENCH_MIRROR_REPEAT=5 BENCH_SESSIONS=100
#        BENCH_SMALL_FILES=1000 BENCH_SMALL_KIB=4 BENCH_CONCURRENT=200 BENCH_CONC_KIB=1024
#        BENCH_ROUTED=1 (0 skips the namespaces) BENCH_PORT_LO=12000 BENCH_PORT_HI=19999
#        FTPGATE=path FTPGATE_LOG_LEVEL=info BENCH_TIMEOUT=600 (seconds per client command)
# Ports: the default 12000-19999 overlaps neither the Rust tests' data ports
# (28000-32749, tests/common/mod.rs) nor the interop suite's (20000-27999,
# tests/interop/run.sh), and stays below the kernel's ephemeral range (32768-60999 by
# default, /proc/sys/net/ipv4/ip_local_port_range), so a benchmark can run beside the
# test suites without a port collision. Inside the namespaces the same range is used.
# The machine is small and shared: treat single runs as rough, compare ratios.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# The lab's helpers (namespaces, veth, servers in namespaces) and, through them, the
# interop suite's (cleanup registry, ports, user, vsftpd, ftpgate).
# shellcheck source=tests/lab/lib.sh
source "$BENCH_DIR/../tests/lab/lib.sh"

SIZE_MIB=${BENCH_SIZE_MIB:-1024}
REPEAT=${BENCH_REPEAT:-3}
MIRROR_REPEAT=${BENCH_MIRROR_REPEAT:-5}
SESSIONS=${BENCH_SESSIONS:-100}
SMALL_FILES=${BENCH_SMALL_FILES:-1000}
SMALL_KIB=${BENCH_SMALL_KIB:-4}
CONCURRENT=${BENCH_CONCURRENT:-200}
CONC_KIB=${BENCH_CONC_KIB:-1024}
ROUTED=${BENCH_ROUTED:-1}
PORT_LO=${BENCH_PORT_LO:-12000}
PORT_HI=${BENCH_PORT_HI:-19999}
CMD_TIMEOUT=${BENCH_TIMEOUT:-600}
for v in SIZE_MIB REPEAT MIRROR_REPEAT SESSIONS SMALL_FILES SMALL_KIB CONCURRENT CONC_KIB; do
    [[ ${!v} =~ ^[0-9]+$ && ${!v} -ge 1 ]] || die "BENCH_$v must be a positive integer"
done
# Bounded loops: cap the counts.
((REPEAT <= 20 && MIRROR_REPEAT <= 20 && SESSIONS <= 10000 && SMALL_FILES <= 100000 && CONCURRENT <= 1000)) ||
    die "counts too large"

need_root
need_tools vsftpd curl lftp python3 timeout setsid useradd userdel chpasswd awk od getconf sha256sum
((ROUTED == 0)) || need_tools ip nft
install_lab_trap
clean_stale

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

# ----------------------------------------------------------- mod_proxy ----
MP_CACHE=${BENCH_PROFTPD_CACHE:-$BENCH_DIR/.cache/proftpd-proxy}
unpack_debs "$MP_CACHE" usr/sbin/proftpd proftpd-core proftpd-mod-crypto proftpd-mod-proxy
MP_BIN=$MP_CACHE/root/usr/sbin/proftpd
MP_MODULES=$MP_CACHE/root/usr/lib/proftpd
[[ -f $MP_MODULES/mod_proxy.so ]] || die "no mod_proxy.so in $MP_MODULES"
MP_VERSION=$(sed -nE 's/.*MOD_PROXY_VERSION[^"]*"([^"]+)".*/\1/p' "$MP_MODULES/mod_proxy.so" 2>/dev/null | head -n1)
[[ -n $MP_VERSION ]] || MP_VERSION=$(grep -ao 'mod_proxy/[0-9.]*' "$MP_MODULES/mod_proxy.so" | head -n1 || true)
log "mod_proxy: $MP_BIN ($("$MP_BIN" -v 2>&1 | head -n1), ${MP_VERSION:-mod_proxy})"

# start_modproxy DIR PORT UPSTREAM PASV_LO PASV_HI POLICY: proftpd -n as a reverse proxy
# on 127.0.0.1:PORT to vsftpd at 127.0.0.1:UPSTREAM; POLICY is ProxyDataTransferPolicy
# (PASV: mod_proxy opens passive data connections to vsftpd; PORT: active). The client
# chooses its own mode towards mod_proxy (PassivePorts for its passive side). Logins go
# through to vsftpd (no ProxyOptions UseReverseProxyAuth). Sets MP_PID.
start_modproxy() {
    local dir=$1 port=$2 up=$3 plo=$4 phi=$5 policy=$6
    mkdir -p "$dir/tables"
    cat >"$dir/proftpd.conf" <<EOF
ServerName "ftpgate bench mod_proxy"
ServerType standalone
Port $port
DefaultAddress 127.0.0.1
SocketBindTight on
UseIPv6 off
User nobody
Group nogroup
MaxInstances 1000
PassivePorts $plo $phi
PidFile $dir/proftpd.pid
ScoreboardFile $dir/proftpd.scoreboard
DelayTable none
WtmpLog off
UseReverseDNS off
TimeoutIdle 300
ModulePath $MP_MODULES
LoadModule mod_tls.c
LoadModule mod_proxy.c
SystemLog $dir/proftpd.system.log
ProxyEngine on
ProxyRole reverse
ProxyReverseServers ftp://127.0.0.1:$up
ProxyTables $dir/tables
ProxyLog $dir/proxy.log
ProxyDataTransferPolicy $policy
ProxyTimeoutConnect 10
EOF
    start_bg "$dir/proftpd.stderr" "$MP_BIN" -n -c "$dir/proftpd.conf"
    MP_PID=$BG_PID
    if ! wait_banner "$port" 20 "$MP_PID"; then
        cat "$dir/proftpd.stderr" >&2
        die "proftpd mod_proxy ($policy) did not come up on 127.0.0.1:$port"
    fi
}

# ------------------------------------------------------------ workdir ----
SIZE_BYTES=$((SIZE_MIB * 1024 * 1024))
need_kib=$(((2 * SIZE_BYTES + SMALL_FILES * SMALL_KIB * 2048) / 1024 + CONC_KIB + 65536))
base=/tmp
shm_kib=$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 { print $4 }' || true)
if [[ -n $shm_kib ]] && ((shm_kib > need_kib)); then base=/dev/shm; fi
WORK=$(mktemp -d "$base/ftpgate-bench.XXXXXX")
chmod 755 "$WORK"
CLEAN_PATHS+=("$WORK")
log "work directory $WORK"
FTPHOME=$WORK/home
make_ftp_user "$FTPHOME"

log "generating $SIZE_MIB MiB source, $SMALL_FILES x $SMALL_KIB KiB files, one $CONC_KIB KiB file"
head -c "$SIZE_BYTES" /dev/urandom >"$FTPHOME/src.bin"
mkdir -p "$FTPHOME/small"
head -c $((SMALL_KIB * 1024)) /dev/urandom >"$WORK/small.tmpl"
for ((i = 0; i < SMALL_FILES; i++)); do
    cp "$WORK/small.tmpl" "$FTPHOME/small/f$i.bin"
done
head -c $((CONC_KIB * 1024)) /dev/urandom >"$FTPHOME/conc.bin"
CONC_SHA=$(sha256sum <"$FTPHOME/conc.bin" | cut -d' ' -f1)
chown -R "$FTP_USER:" "$FTPHOME"
CLK_TCK=$(getconf CLK_TCK)

# -------------------------------------------------------------- start ----
# vsftpd: control + passive range; ftpgate x2 (server_mode passive, active): control +
# passive_ports + server_active_ports each; mod_proxy x2 (PASV, PORT): control +
# PassivePorts each. vsftpd's range is three times BENCH_CONCURRENT: it binds a random
# port of its range and gives up after 10 taken ones ("500 OOPS: vsf_sysutil_bind"),
# which a range barely wider than the sessions (2/3 taken) does for about 1 in 50.
W=$((CONCURRENT + 100))
WS=$((3 * CONCURRENT + 100))
pick_ports "$PORT_LO" "$PORT_HI" 1 "$WS" 1 "$W" 100 1 100 "$W" 1 "$W" 1 100
SRV=${PORT_FIRST[0]}
printf 'max_clients=%s\nmax_per_ip=%s\n' $((CONCURRENT + 100)) $((CONCURRENT + 100)) >"$WORK/vsftpd.extra"
start_vsftpd "$WORK/vsftpd" "$SRV" "${PORT_FIRST[1]}" "${PORT_LAST[1]}" "$WORK/vsftpd.extra"
LOOP_VSFTPD_LOG=$VSFTPD_LOG
declare -A PORT PID # PORT[path-mode], PID[path-mode] (path relay|mod_proxy, mode passive|active)
i=2
for mode in passive active; do
    mkdir -p "$WORK/gw-$mode"
    write_ftpgate_config "$WORK/gw-$mode/ftpgate.yaml" "${PORT_FIRST[i]}" "$SRV" \
        "${PORT_FIRST[i + 1]}" "${PORT_LAST[i + 1]}" "${PORT_FIRST[i + 2]}" "${PORT_LAST[i + 2]}" "$mode"
    # Every benchmark client comes from 127.0.0.1: lift the per-address cap (default
    # 100) above BENCH_CONCURRENT, or the concurrent figure measures the cap.
    sed -i "s/^limits: { max_sessions: 1000 }$/limits: { max_sessions: 2000, max_sessions_per_ip: 2000 }/" "$WORK/gw-$mode/ftpgate.yaml"
    grep -q max_sessions_per_ip "$WORK/gw-$mode/ftpgate.yaml" || die "could not lift limits.max_sessions_per_ip"
    start_ftpgate "$WORK/gw-$mode/ftpgate.yaml" "$WORK/gw-$mode/ftpgate.log" "${PORT_FIRST[i]}" ||
        die "ftpgate (server_mode=$mode) did not come up"
    PORT[relay-$mode]=${PORT_FIRST[i]} PID[relay-$mode]=$FTPGATE_PID
    i=$((i + 3))
done
for mode in passive active; do
    policy=PASV
    [[ $mode == active ]] && policy=PORT
    start_modproxy "$WORK/mp-$mode" "${PORT_FIRST[i]}" "$SRV" "${PORT_FIRST[i + 1]}" "${PORT_LAST[i + 1]}" "$policy"
    PORT[mod_proxy-$mode]=${PORT_FIRST[i]} PID[mod_proxy-$mode]=$MP_PID
    i=$((i + 2))
done
PORT[direct-passive]=$SRV PORT[direct-active]=$SRV PID[direct-passive]=0 PID[direct-active]=0
log "vsftpd :$SRV; ftpgate :${PORT[relay-passive]} (passive) :${PORT[relay-active]} (active);" \
    "mod_proxy :${PORT[mod_proxy-passive]} (PASV) :${PORT[mod_proxy-active]} (PORT)"

# show_failure: on a failed measurement, show what the logs say.
show_failure() {
    local f
    log "measurement failed: $1"
    for f in "$WORK/curl.err" "$WORK"/gw-*/ftpgate.log "$WORK"/ftpgate-*.log "$WORK"/mp-*/proxy.log \
        "$WORK"/mp-*/proftpd.stderr "$LOOP_VSFTPD_LOG" "$WORK"/srv-*/vsftpd.log; do
        [[ -s $f ]] || continue
        echo "--- $f (last 15 lines)" >&2
        tail -n 15 "$f" | sed -E "s/\x1b\[[0-9;]*m//g" | mask_pass >&2
    done
    exit 1
}

# stats: "median min max" of the numbers on stdin.
stats() {
    sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print "- - -"; exit }
        m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        print m, v[1], v[NR] }'
}

# tree_cpu_ticks PID: utime+stime+cutime+cstime (clock ticks) summed over PID and its
# descendants (fields 14-17 of /proc/PID/stat; comm may contain spaces).
tree_cpu_ticks() {
    # a process may exit between the glob and the read: cat then fails, which is fine
    { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v root="$1" '{
        pid = $1; sub(/^.*\) /, ""); ppid[pid] = $2; t[pid] = $12 + $13 + $14 + $15 }
        END { s = 0; for (p in t) { q = p; for (d = 0; d < 64 && q != "" && q != 0; d++) {
            if (q == root) { s += t[p]; break } q = ppid[q] } } print s }'
}

# transfer OP MODE HOST PORT PID [NS]: one curl RETR/STOR (client in namespace NS if
# given); prints "secs cpu_secs" (cpu of PID's process tree, 0 if PID is 0).
transfer() {
    local op=$1 mode=$2 host=$3 port=$4 pid=$5 nsn=${6:-} t0 t1 c0=0 c1=0 got
    local -a args=(-sS -v --no-ftp-skip-pasv-ip --connect-timeout 10 --max-time "$CMD_TIMEOUT" -u "$FTP_USER:$FTP_PASS")
    local -a pre=()
    [[ -n $nsn ]] && pre=(ip netns exec "$(ns "$nsn")")
    if [[ $mode == active ]]; then args+=(-P -); else args+=(--ftp-pasv); fi
    rm -f "$FTPHOME/up.bin"
    [[ $pid != 0 ]] && c0=$(tree_cpu_ticks "$pid")
    t0=$EPOCHREALTIME
    if [[ $op == RETR ]]; then
        "${pre[@]}" timeout -k 5 $((CMD_TIMEOUT + 10)) curl "${args[@]}" -o /dev/null "ftp://$host:$port/src.bin" 2>"$WORK/curl.err" ||
            show_failure "$op $mode via $host:$port"
    else
        "${pre[@]}" timeout -k 5 $((CMD_TIMEOUT + 10)) curl "${args[@]}" -T "$FTPHOME/src.bin" "ftp://$host:$port/up.bin" 2>"$WORK/curl.err" ||
            show_failure "$op $mode via $host:$port"
    fi
    t1=$EPOCHREALTIME
    if [[ $pid != 0 ]]; then
        sleep 0.3 # let a forking proxy's session process exit and be reaped into cutime
        c1=$(tree_cpu_ticks "$pid")
    fi
    if [[ $op == RETR ]]; then
        got=$(grep -Eo '^< 226' "$WORK/curl.err" | head -n1 || true)
        [[ -n $got ]] || show_failure "$op $mode via $host:$port: no 226 reply"
    else
        got=$(stat -c %s "$FTPHOME/up.bin" 2>/dev/null || echo 0)
        ((got == SIZE_BYTES)) || show_failure "$op $mode via $host:$port: stored $got bytes, want $SIZE_BYTES"
        rm -f "$FTPHOME/up.bin"
    fi
    awk -v a="$t0" -v b="$t1" -v c="$((c1 - c0))" -v hz="$CLK_TCK" 'BEGIN { printf "%.6f %.3f\n", b - a, c / hz }'
}

declare -A R # R[figure|path] = "median min max"
SIZE_GIB=$(awk -v b="$SIZE_BYTES" 'BEGIN { printf "%.6f", b / 1073741824 }')
NA=()           # "figure|path|why" for the cells a path cannot fill

# bulk TOPO PATHS...: RETR/STOR x passive/active, BENCH_REPEAT rounds, each round
# running every path in turn. Uses host_of/port_of/pid_of/ns_of PATH MODE.
bulk() {
    local topo=$1 op mode path r secs cpu
    shift
    for op in RETR STOR; do
        for mode in ${BULK_MODES:-passive active}; do
            for path in "$@"; do : >"$WORK/secs.$path" && : >"$WORK/cpu.$path"; done
            for ((r = 0; r < REPEAT; r++)); do
                for path in "$@"; do
                    read -r secs cpu < <(transfer "$op" "$mode" "$(host_of "$path")" "$(port_of "$path" "$mode")" \
                        "$(pid_of "$path" "$mode")" "$(ns_of "$path")")
                    [[ -n ${secs:-} ]] || { log "$topo $op $mode $path: the transfer gave no figure"; exit 1; }
                    awk -v s="$secs" -v m="$SIZE_MIB" 'BEGIN { printf "%.1f\n", m / s }' >>"$WORK/secs.$path"
                    awk -v c="$cpu" -v g="$SIZE_GIB" 'BEGIN { printf "%.3f\n", c / g }' >>"$WORK/cpu.$path"
                done
            done
            for path in "$@"; do
                R[$topo-$op-$mode|$path]=$(stats <"$WORK/secs.$path")
                [[ $path == direct* ]] || R[$topo-cpu-$op-$mode|$path]=$(stats <"$WORK/cpu.$path")
                log "$topo $op $mode $path: ${R[$topo-$op-$mode|$path]} MiB/s (median min max)"
            done
        done
    done
}

# ------------------------------------------------------- loopback bulk ----
host_of() { echo 127.0.0.1; }
port_of() { echo "${PORT[$1-$2]}"; }
pid_of() { echo "${PID[$1-$2]}"; }
ns_of() { :; }
LOOP_PATHS=(direct relay mod_proxy)
bulk loop "${LOOP_PATHS[@]}"

# ---------------------------------------------------------- small files ----
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
    ((n == SMALL_FILES)) || show_failure "mirror via port $port got $n files, want $SMALL_FILES"
    echo
}
for path in "${LOOP_PATHS[@]}"; do : >"$WORK/mirror.$path"; done
for ((r = 0; r < MIRROR_REPEAT; r++)); do
    for path in "${LOOP_PATHS[@]}"; do mirror "${PORT[$path-passive]}" >>"$WORK/mirror.$path"; done
done
for path in "${LOOP_PATHS[@]}"; do
    R[mirror|$path]=$(stats <"$WORK/mirror.$path")
    log "mirror $path: ${R[mirror|$path]} s"
done

# -------------------------------------------------------- session setup ----
for path in "${LOOP_PATHS[@]}"; do : >"$WORK/setup-median.$path" && : >"$WORK/setup-p90.$path"; done
for ((r = 0; r < REPEAT; r++)); do
    for path in "${LOOP_PATHS[@]}"; do
        out=$(BENCH_FTP_USER=$FTP_USER BENCH_FTP_PASS=$FTP_PASS timeout -k 5 "$CMD_TIMEOUT" \
            python3 "$BENCH_DIR/session_setup.py" 127.0.0.1 "${PORT[$path-passive]}" "$SESSIONS" 2>"$WORK/curl.err") ||
            show_failure "session setup via $path"
        read -r med p90 _ _ <<<"$out"
        echo "$med" >>"$WORK/setup-median.$path"
        echo "$p90" >>"$WORK/setup-p90.$path"
    done
done
for path in "${LOOP_PATHS[@]}"; do
    R[setup-median|$path]=$(stats <"$WORK/setup-median.$path")
    R[setup-p90|$path]=$(stats <"$WORK/setup-p90.$path")
    log "session setup $path: median ${R[setup-median|$path]} ms, p90 ${R[setup-p90|$path]} ms"
done

# ------------------------------------------------- concurrent sessions ----
for path in "${LOOP_PATHS[@]}"; do : >"$WORK/conc-wall.$path" && : >"$WORK/conc-fail.$path" && : >"$WORK/conc-rss.$path"; done
for ((r = 0; r < REPEAT; r++)); do
    for path in "${LOOP_PATHS[@]}"; do
        root=${PID[$path-passive]}
        out=$(BENCH_FTP_USER=$FTP_USER BENCH_FTP_PASS=$FTP_PASS timeout -k 5 "$CMD_TIMEOUT" \
            python3 "$BENCH_DIR/concurrent_sessions.py" 127.0.0.1 "${PORT[$path-passive]}" "$CONCURRENT" conc.bin "$CONC_SHA" \
            "$root" 2>"$WORK/conc.err") || show_failure "concurrent sessions via $path"
        [[ -s $WORK/conc.err ]] && sed "s/^/    $path: /" "$WORK/conc.err" >&2
        read -r wall fails rss <<<"$out"
        echo "$wall" >>"$WORK/conc-wall.$path"
        echo "$fails" >>"$WORK/conc-fail.$path"
        awk -v k="$rss" 'BEGIN { printf "%.1f\n", k / 1024 }' >>"$WORK/conc-rss.$path"
        sleep 1 # let the sessions' processes and sockets go before the next round
    done
done
for path in "${LOOP_PATHS[@]}"; do
    R[conc-wall|$path]=$(stats <"$WORK/conc-wall.$path")
    R[conc-fail|$path]=$(stats <"$WORK/conc-fail.$path")
    [[ $path == direct ]] || R[conc-rss|$path]=$(stats <"$WORK/conc-rss.$path")
    log "$CONCURRENT concurrent $path: wall ${R[conc-wall|$path]} s, failures ${R[conc-fail|$path]}, peak PSS ${R[conc-rss|$path]:--} MiB"
done

for key in "${!PID[@]}"; do
    [[ ${PID[$key]} == 0 ]] || kill -0 "${PID[$key]}" 2>/dev/null || die "$key exited during the benchmark"
done

# -------------------------------------------------------------- routed ----
# Three namespaces: client (192.0.2.2) - gw (192.0.2.1 | 198.51.100.1, forwarding) -
# server (198.51.100.2). vsftpd in server; ftpgate in gw, once with data.path relay and
# once with data.path kernel (each for server_mode passive and active).
# Kernel-path rows are n/a (with the reason) when the binary refuses data.path.
ROUTED_PATHS=(direct-routed relay-routed kernel)
KERNEL_NA=""
routed_gate_config() { # FILE SERVER_MODE DATA_PATH CTRL PASV_LO PASV_HI ACT_LO ACT_HI
    cat >"$1" <<EOF
listeners:
  - name: default
    bind: 192.0.2.1:$4
    route:
      kind: fixed
      upstreams: [198.51.100.2:$R_SRV]
data:
  path: $3
  passive_ports: $5-$6
  advertise:
    - clients: 0.0.0.0/0
      address: auto
  server_mode: $2
  server_active_ports: $7-$8
timeouts: { connect: 10s, idle: 900s, data_accept: 30s }
limits: { max_sessions: 1000 }
log: { level: ${FTPGATE_LOG_LEVEL:-info}, format: text }
EOF
    # data.path is new: an older binary knows no such key; the relay default is then
    # what it runs anyway, so leave the key out for it.
    if [[ $3 == relay ]] && ! "$FTPGATE_BIN" check -c "$1" >/dev/null 2>&1; then
        sed -i '/^  path: relay$/d' "$1"
    fi
}
if ((ROUTED)); then
    # Namespaces are our own, so fixed ports (in the benchmark's range) are safe there.
    R_SRV=12021 S_PLO=12300 S_PHI=12399
    for n in client "gw router" server; do
        # shellcheck disable=SC2086 # "gw router": name and role
        ns_add $n || die "could not create namespace $n"
    done
    link client eth0 gw c0 || die "could not create the client-gw veth link"
    link gw s0 server eth0 || die "could not create the gw-server veth link"
    addr client eth0 192.0.2.2/24
    addr gw c0 192.0.2.1/24
    addr gw s0 198.51.100.1/24
    addr server eth0 198.51.100.2/24
    route client default via 192.0.2.1
    route server default via 198.51.100.1
    TOPO=routed # read by the lab helpers
    srv_start_vsftpd server "$WORK/srv-routed" "$R_SRV" "$S_PLO" "$S_PHI" "max_clients=300
max_per_ip=300"
    nsx client timeout 20 python3 "$INTEROP_DIR/ftpwait.py" 198.51.100.2 "$R_SRV" 15 ||
        die "routed topology: the client namespace cannot reach vsftpd through gw"
    # relay gate: control 12031, passive 12100-12149, active 12200-12249;
    # kernel gate: control 12032, passive 12150-12199, active 12250-12299.
    routed_gate_config "$WORK/ftpgate-kernel.yaml" passive kernel 12032 12150 12199 12250 12299
    if ! "$FTPGATE_BIN" check -c "$WORK/ftpgate-kernel.yaml" >"$WORK/kernel.check" 2>&1; then
        if grep -qi 'path' "$WORK/kernel.check"; then
            KERNEL_NA="binary has no data.path"
        else
            KERNEL_NA="ftpgate check refused the kernel config: $(sed -E 's/\x1b\[[0-9;]*m//g' "$WORK/kernel.check" | tail -n1 | cut -c1-80)"
        fi
        log "kernel path: n/a ($KERNEL_NA)"
        ROUTED_PATHS=(direct-routed relay-routed)
    fi
    declare -A RPID RPORT
    host_of() { if [[ $1 == direct-routed ]]; then echo 198.51.100.2; else echo 192.0.2.1; fi; }
    port_of() { if [[ $1 == direct-routed ]]; then echo "$R_SRV"; else echo "${RPORT[$1]}"; fi; }
    pid_of() { if [[ $1 == direct-routed ]]; then echo 0; else echo "${RPID[$1]}"; fi; }
    ns_of() { echo client; }
    # One server_mode at a time, so that only one kernel-path ftpgate owns its
    # nftables table at any moment; relay and kernel gates run side by side.
    for mode in passive active; do
        started=()
        for dpath in relay kernel; do
            [[ $dpath == kernel && -n $KERNEL_NA ]] && continue
            if [[ $dpath == relay ]]; then set -- 12031 12100 12149 12200 12249; else set -- 12032 12150 12199 12250 12299; fi
            routed_gate_config "$WORK/ftpgate-$dpath-$mode.yaml" "$mode" "$dpath" "$@"
            GATE_WAIT="192.0.2.1 $1"
            # The kernel gate logs each mapping's install time (setup_us, debug level).
            klog=${RUST_LOG:-}
            [[ $dpath == kernel ]] && klog="${FTPGATE_LOG_LEVEL:-info},rustls=error,rustables=warn,ftpgate::kernel=debug"
            if [[ -n $klog ]]; then
                RUST_LOG=$klog gate_start gw "$WORK/ftpgate-$dpath-$mode.yaml" "$dpath-$mode"
            else
                gate_start gw "$WORK/ftpgate-$dpath-$mode.yaml" "$dpath-$mode"
            fi || show_failure "ftpgate ($dpath, server_mode=$mode) in gw"
            p=$dpath
            [[ $dpath == relay ]] && p=relay-routed
            RPID[$p]=$GATE_PID RPORT[$p]=$1
            started+=("$GATE_PID")
        done
        BULK_MODES=$mode bulk routed "${ROUTED_PATHS[@]}"
        for GATE_PID in "${started[@]}"; do gate_stop; done
    done
    # Mapping set-up per transfer: the netlink batch that installs one flow's rules,
    # as the kernel gate timed it (passive and active transfers together), in µs.
    if [[ -z $KERNEL_NA ]]; then
        sed -E 's/\x1b\[[0-9;]*m//g' "$WORK"/ftpgate-kernel-*.log | grep -o 'setup_us=[0-9]*' | cut -d= -f2 >"$WORK/kernel-setup" || true
        R[ksetup|kernel]=$(stats <"$WORK/kernel-setup")
        KSETUP_N=$(wc -l <"$WORK/kernel-setup")
        log "kernel mapping set-up: ${R[ksetup|kernel]} µs (median min max) over $KSETUP_N mappings"
    fi
fi

# -------------------------------------------------------------- report ----
# fmt CELL: "median [min–max]" of a stats triple, "-" for none.
fmt() {
    local m lo hi
    read -r m lo hi <<<"${1:-- - -}"
    if [[ $m == - ]]; then echo -; elif [[ $lo == "$hi" ]]; then echo "$m [$lo]"; else echo "$m [$lo–$hi]"; fi
}
med() { local m _x; read -r m _x <<<"${1:-- -}"; echo "$m"; }
ratio() { awk -v d="$(med "$1")" -v p="$(med "$2")" 'BEGIN { if (d > 0 && p != "-") printf "%.2f", p / d; else print "-" }'; }
# verdict VALUE OP LIMIT: "met" or "MISSED" (OP ge or le), "-" when VALUE is not a number.
verdict() {
    awk -v v="$1" -v op="$2" -v l="$3" 'BEGIN { if (v !~ /^[0-9.]+$/) { print "-"; exit }
        ok = (op == "ge") ? (v + 0 >= l + 0) : (v + 0 <= l + 0); print (ok ? "met" : "MISSED") }'
}
# T_<path> (the target for a path's row) are read by figure_rows through ${!name}.
# shellcheck disable=SC2034
row() { printf '%-34s %-14s %-26s %8s  %s\n' "$1" "$2" "$3" "$4" "$5"; }
# figure_rows LABEL KEY RATIO_KIND PATHS...: one row per path. RATIO_KIND: ratio (to the
# first path, direct) or none. TARGET_<path> variables hold "op limit what" for the path.
figure_rows() {
    local label=$1 key=$2 kind=$3 path first="" r t op lim
    shift 3
    for path in "$@"; do
        [[ -z $first ]] && first=$path
        r=-
        [[ $kind == ratio ]] && r=$(ratio "${R[$key|$first]:-}" "${R[$key|$path]:-}")
        t=""
        local tv="T_${path//-/_}"
        if [[ -n ${!tv:-} ]]; then
            read -r op lim <<<"${!tv}"
            if [[ $kind == ratio ]]; then
                t="target ${op/ge/≥}${lim}× $(verdict "$r" "$op" "$lim")"
            else
                t="target ${op/le/≤}${lim} $(verdict "$(med "${R[$key|$path]:-}")" "$op" "$lim")"
            fi
            t=${t/le/≤}
        fi
        local cell
        cell=$(fmt "${R[$key|$path]:-}")
        for na in "${NA[@]}"; do [[ $na == "$key|$path|"* ]] && cell="n/a (${na##*|})"; done
        row "$label" "$path" "$cell" "$r" "$t"
        label=""
    done
}

echo
echo "ftpgate benchmark, $(date -u +%Y-%m-%dT%H:%MZ): $(nproc) cores; file ${SIZE_MIB} MiB; every figure median [min–max] of $REPEAT runs"
echo "(small files: of $MIRROR_REPEAT); $SMALL_FILES x ${SMALL_KIB} KiB; $SESSIONS sessions per setup run; $CONCURRENT concurrent x ${CONC_KIB} KiB."
echo "ftpgate $("$FTPGATE_BIN" --version 2>&1 | head -n1); ProFTPD $("$MP_BIN" -v 2>&1 | head -n1 | awk '{print $NF}') ${MP_VERSION:-mod_proxy}; vsftpd $(dpkg-query -W -f '${Version}' vsftpd 2>/dev/null || echo '?')"
echo "loopback: direct, relay (ftpgate), mod_proxy. ×direct: ratio of medians (throughput: higher is better; times: lower)."
row figure path "median [min–max]" ×direct target
for op in RETR STOR; do
    for mode in passive active; do
        lim=0.90
        [[ $op == STOR ]] && lim=0.85
        T_relay="ge $lim"
        figure_rows "$op $mode ($([[ $mode == passive ]] && echo EPSV || echo EPRT)) MiB/s" "loop-$op-$mode" ratio "${LOOP_PATHS[@]}"
    done
done
for op in RETR STOR; do
    for mode in passive active; do
        T_relay="le 0.25"
        figure_rows "proxy CPU s/GiB, $op $mode" "loop-cpu-$op-$mode" none relay mod_proxy
    done
done
T_relay="le 1.2"
figure_rows "$SMALL_FILES x ${SMALL_KIB} KiB mirror, wall s" mirror ratio "${LOOP_PATHS[@]}"
T_relay="le 1.1"
figure_rows "session setup median, ms" setup-median ratio "${LOOP_PATHS[@]}"
T_relay="le 1.3"
figure_rows "session setup p90, ms" setup-p90 ratio "${LOOP_PATHS[@]}"
T_relay="le 1.3"
figure_rows "$CONCURRENT concurrent, wall s" conc-wall ratio "${LOOP_PATHS[@]}"
if [[ $(med "${R[conc-fail|direct]}") != 0 ]]; then
    echo "  ! direct had failed sessions (see the lines above the table for their errors), so direct's wall is not a"
    echo "    fair baseline and the ratios above are not the figure the target means"
fi
# shellcheck disable=SC2034 # read by figure_rows
T_relay="le 0"
figure_rows "$CONCURRENT concurrent, failures" conc-fail none "${LOOP_PATHS[@]}"
unset T_relay
figure_rows "$CONCURRENT concurrent, peak PSS MiB" conc-rss none relay mod_proxy
if ((ROUTED)); then
    echo
    echo "routed: client 192.0.2.2 -> gw 192.0.2.1|198.51.100.1 (forwarding) -> vsftpd 198.51.100.2, three namespaces"
    row figure path "median [min–max]" ×direct target
    for op in RETR STOR; do
        for mode in passive active; do
            for fig in "routed-$op-$mode|$op $mode MiB/s|ratio|ge 0.97|0" "routed-cpu-$op-$mode|ftpgate CPU s/GiB, $op $mode|none|le 0.02|1"; do
                IFS='|' read -r key label kind T_kernel skip <<<"$fig"
                figure_rows "$label" "$key" "$kind" "${ROUTED_PATHS[@]:skip}"
                [[ -z $KERNEL_NA ]] || row "" kernel "n/a ($KERNEL_NA)" - "target $(sed 's/ge /≥/; s/le /≤/' <<<"$T_kernel")$([[ $kind == ratio ]] && echo ×)"
            done
        done
    done
    unset T_kernel
    [[ -n $KERNEL_NA ]] || figure_rows "kernel mapping set-up, µs (n=$KSETUP_N)" ksetup none kernel
fi
echo "direct has no proxy, so no CPU or memory figure; mod_proxy has none in the routed topology (loopback only)."
