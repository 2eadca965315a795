#!/usr/bin/env bash
# ftpgate interop suite: real FTP servers (vsftpd, pure-ftpd) x ftpgate server_mode
# (passive, active, plus "direct" = no ftpgate, as a control column) x real clients
# (curl PASV/EPSV/PORT/EPRT, lftp PASV/EPSV/PORT) x operations (retr, stor, list, empty).
#
# Every transfer is checked end to end by sha256 (download vs source; upload as
# stored on the server's disk vs source), and every client trace is checked for the
# data-connection command that the case is about (so a client silently falling back
# from EPSV to PASV, or from EPRT to PORT, fails the case).
#
# Usage (as root, on a machine with vsftpd lftp curl python3; see .ci/run):
#   tests/interop/run.sh
# Knobs (environment):
#   FTPGATE=path               ftpgate binary (default target/release, then target/debug)
#   INTEROP_SERVERS="vsftpd pure-ftpd"
#   INTEROP_MODES="direct passive active"   (direct = client straight to the server)
#   INTEROP_CLIENTS="curl-pasv curl-epsv curl-port curl-eprt lftp-pasv lftp-epsv lftp-port"
#   INTEROP_OPS="retr stor list empty"
#   INTEROP_SIZE_MIB=64        size of the random test file
#   INTEROP_PORT_LO=20000 INTEROP_PORT_HI=27999   where free ports are picked
#   INTEROP_CMD_TIMEOUT=120    seconds per client command
#   INTEROP_DEADLINE_SECS=2400 whole-suite budget; cases after it fail
#   INTEROP_KEEP=1             keep the work directory (logs, traces) for inspection
#   FTPGATE_LOG_LEVEL=info     ftpgate's log.level in the generated configs
#
# Output: one "PASS|FAIL server=... server_mode=... client=... op=... bytes=... secs=..."
# line per case, a summary table, then exactly "N passed, M failed". Exit 1 if M > 0,
# 2 if the suite itself could not set up.
set -euo pipefail

# shellcheck source=tests/interop/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

ALL_SERVERS="vsftpd pure-ftpd"
ALL_MODES="direct passive active"
ALL_CLIENTS="curl-pasv curl-epsv curl-port curl-eprt lftp-pasv lftp-epsv lftp-port"
ALL_OPS="retr stor list empty"

read -ra SERVERS <<<"${INTEROP_SERVERS:-$ALL_SERVERS}"
read -ra MODES <<<"${INTEROP_MODES:-$ALL_MODES}"
read -ra CLIENTS <<<"${INTEROP_CLIENTS:-$ALL_CLIENTS}"
read -ra OPS <<<"${INTEROP_OPS:-$ALL_OPS}"
SIZE_MIB=${INTEROP_SIZE_MIB:-64}
PORT_LO=${INTEROP_PORT_LO:-20000}
PORT_HI=${INTEROP_PORT_HI:-27999}
CMD_TIMEOUT=${INTEROP_CMD_TIMEOUT:-120}
DEADLINE_SECS=${INTEROP_DEADLINE_SECS:-2400}
BLOCK=100 # ports per passive / active range

# only_known WHAT "allowed list" values...: refuse typos instead of skipping them.
only_known() {
    local what=$1 allowed=" $2 " v
    shift 2
    for v in "$@"; do
        [[ "$allowed" == *" $v "* ]] || die "unknown $what '$v' (known: $2)"
    done
}
only_known server "$ALL_SERVERS" "${SERVERS[@]}"
only_known mode "$ALL_MODES" "${MODES[@]}"
only_known client "$ALL_CLIENTS" "${CLIENTS[@]}"
only_known op "$ALL_OPS" "${OPS[@]}"
[[ "$SIZE_MIB" =~ ^[0-9]+$ && "$SIZE_MIB" -ge 1 ]] || die "INTEROP_SIZE_MIB must be a positive integer"

need_root
need_tools curl lftp python3 sha256sum timeout setsid useradd userdel chpasswd awk od ldd
[[ " ${SERVERS[*]} " == *" vsftpd "* ]] && need_tools vsftpd
install_cleanup_trap

SUITE_START=$EPOCHREALTIME
make_work_dir ftpgate-interop
FTPHOME=$WORK/home
DL=$WORK/dl
mkdir -p "$DL" "$WORK/lftp-home"
make_ftp_user "$FTPHOME"
log "test user $FTP_USER, home $FTPHOME"

SRC=$FTPHOME/src.bin
SRC_BYTES=$((SIZE_MIB * 1024 * 1024))
log "generating $SIZE_MIB MiB of random data"
head -c "$SRC_BYTES" /dev/urandom >"$SRC"
: >"$FTPHOME/empty.bin"
chown "$FTP_USER:" "$SRC" "$FTPHOME/empty.bin"
SRC_SHA=$(sha256sum "$SRC" | cut -d' ' -f1)
EMPTY_SHA=$(sha256sum </dev/null | cut -d' ' -f1)

# ---------------------------------------------------------------- ports ----
# Per server: control port + passive range. Per (server, proxied mode): ftpgate
# control port + passive_ports + server_active_ports.
sizes=()
for s in "${SERVERS[@]}"; do
    sizes+=(1 "$BLOCK")
    for m in "${MODES[@]}"; do
        [[ $m == direct ]] || sizes+=(1 "$BLOCK" "$BLOCK")
    done
done
pick_ports "$PORT_LO" "$PORT_HI" "${sizes[@]}"
declare -A SRV_PORT SRV_PASV GW_PORT GW_PASV GW_ACT
i=0
for s in "${SERVERS[@]}"; do
    SRV_PORT[$s]=${PORT_FIRST[i]}
    SRV_PASV[$s]="${PORT_FIRST[i + 1]} ${PORT_LAST[i + 1]}"
    i=$((i + 2))
    for m in "${MODES[@]}"; do
        [[ $m == direct ]] && continue
        GW_PORT[$s.$m]=${PORT_FIRST[i]}
        GW_PASV[$s.$m]="${PORT_FIRST[i + 1]} ${PORT_LAST[i + 1]}"
        GW_ACT[$s.$m]="${PORT_FIRST[i + 2]} ${PORT_LAST[i + 2]}"
        i=$((i + 3))
    done
done

# -------------------------------------------------------------- clients ----
# Each client function runs one bounded command; stdout to $OUT_FILE (for list),
# the protocol trace to $TRACE. Arguments: CLIENT PORT OP REMOTE LOCAL.

curl_mode_args() {
    case $1 in
    curl-pasv) echo "--ftp-pasv --disable-epsv" ;;
    curl-epsv) echo "--ftp-pasv" ;;
    curl-port) echo "-P - --disable-eprt" ;;
    curl-eprt) echo "-P -" ;;
    esac
}

run_curl() {
    local client=$1 port=$2 op=$3 remote=$4 lpath=$5 url
    local -a args
    read -ra args <<<"$(curl_mode_args "$client")"
    # --no-ftp-skip-pasv-ip: use the address in the 227 reply (curl >= 7.74 ignores
    # it by default), so a proxy that advertises a wrong address is caught.
    args+=(-sS -v --no-ftp-skip-pasv-ip --connect-timeout 10 --max-time "$CMD_TIMEOUT"
        -u "$FTP_USER:$FTP_PASS")
    url="ftp://127.0.0.1:$port/"
    case $op in
    retr | empty) timeout -k 5 $((CMD_TIMEOUT + 10)) curl "${args[@]}" -o "$lpath" "$url$remote" >"$OUT_FILE" 2>"$TRACE" ;;
    stor) timeout -k 5 $((CMD_TIMEOUT + 10)) curl "${args[@]}" -T "$lpath" "$url$remote" >"$OUT_FILE" 2>"$TRACE" ;;
    list) timeout -k 5 $((CMD_TIMEOUT + 10)) curl "${args[@]}" "$url" >"$OUT_FILE" 2>"$TRACE" ;;
    esac
}

run_lftp() {
    local client=$1 port=$2 op=$3 remote=$4 lpath=$5 script=$WORK/lftp.script
    {
        echo "set cmd:fail-exit yes"
        echo "set ftp:ssl-allow no"
        echo "set net:max-retries 1"
        echo "set net:persist-retries 0"
        echo "set net:timeout 20"
        echo "set net:reconnect-interval-base 1"
        echo "set xfer:clobber yes"
        case $client in
        lftp-pasv) echo "set ftp:passive-mode on"; echo "set ftp:prefer-epsv no" ;;
        lftp-epsv) echo "set ftp:passive-mode on"; echo "set ftp:prefer-epsv yes" ;;
        lftp-port) echo "set ftp:passive-mode off"; echo "set ftp:port-ipv4 127.0.0.1" ;;
        esac
        echo "open -u $FTP_USER,$FTP_PASS -p $port ftp://127.0.0.1"
        case $op in
        retr | empty) echo "get $remote -o $lpath" ;;
        stor) echo "put $lpath -o $remote" ;;
        list) echo "ls" ;;
        esac
        echo "bye"
    } >"$script"
    HOME=$WORK/lftp-home XDG_CONFIG_HOME=$WORK/lftp-home XDG_DATA_HOME=$WORK/lftp-home \
        timeout -k 5 "$CMD_TIMEOUT" lftp -d -f "$script" >"$OUT_FILE" 2>"$TRACE"
}

# check_trace CLIENT: the trace must show the data-connection command this client
# mode is about and none of the others (no silent fallback).
check_trace() {
    local client=$1 want forbid
    case $client in
    curl-pasv) want='^> PASV' forbid='^> (EPSV|PORT|EPRT)' ;;
    curl-epsv) want='^> EPSV' forbid='^> (PASV|PORT|EPRT)' ;;
    curl-port) want='^> PORT' forbid='^> (PASV|EPSV|EPRT)' ;;
    curl-eprt) want='^> EPRT' forbid='^> (PASV|EPSV|PORT)' ;;
    lftp-pasv) want='^---> PASV' forbid='^---> (EPSV|PORT|EPRT)' ;;
    lftp-epsv) want='^---> EPSV' forbid='^---> (PASV|PORT|EPRT)' ;;
    lftp-port) want='^---> (PORT|EPRT)' forbid='^---> (PASV|EPSV)' ;;
    esac
    if ! grep -Eq "$want" "$TRACE"; then
        REASON="trace has no ${want#^} command"
        return 1
    fi
    if grep -Eq "$forbid" "$TRACE"; then
        REASON="client fell back: trace has $(grep -Eo "$forbid" "$TRACE" | head -n1)"
        return 1
    fi
}

# check_addresses SERVER MODE: prove that addresses were rewritten, not forwarded.
# Client side: every 227/229 reply the client saw must point at 127.0.0.1 and into
# the passive range of whoever it talked to (the server when direct, ftpgate
# otherwise); a proxy that forwards the server's reply fails here. Server side
# (vsftpd only: pure-ftpd has no protocol log without syslog): for this case the
# server must have received only PASV/EPSV with server_mode=passive, and only
# PORT/EPRT into ftpgate's server_active_ports with server_mode=active.
check_addresses() {
    local server=$1 mode=$2 line p cmds
    if [[ $mode == direct ]]; then
        check_passive_replies '^(<|<---) ' "${SRV_PASV[$server]}" "the server's" || return 1
    else
        check_passive_replies '^(<|<---) ' "${GW_PASV[$server.$mode]}" "ftpgate's" || return 1
    fi
    [[ $mode == direct || $server != vsftpd ]] && return 0
    cmds=$(tail -c +$((${LOG_OFF[$VSFTPD_LOG]:-0} + 1)) "$VSFTPD_LOG" |
        sed -nE 's/.*FTP command: Client "[^"]*", "((PORT|EPRT|PASV|EPSV).*)"$/\1/p')
    if [[ $mode == passive ]]; then
        if ! grep -Eq '^(PASV|EPSV)' <<<"$cmds" || grep -Eq '^(PORT|EPRT)' <<<"$cmds"; then
            REASON="server_mode=passive but vsftpd received: $(tr '\n' ';' <<<"$cmds")"
            return 1
        fi
        return 0
    fi
    if [[ -z $cmds ]] || grep -Eq '^(PASV|EPSV)' <<<"$cmds"; then
        REASON="server_mode=active but vsftpd received: $(tr '\n' ';' <<<"$cmds")"
        return 1
    fi
    while IFS= read -r line; do
        if [[ $line =~ ^PORT\ ([0-9]+,[0-9]+,[0-9]+,[0-9]+),([0-9]+),([0-9]+) ]]; then
            p=$((BASH_REMATCH[2] * 256 + BASH_REMATCH[3]))
        elif [[ $line =~ ^EPRT\ \|[12]\|[^|]+\|([0-9]+)\| ]]; then
            p=${BASH_REMATCH[1]}
        else
            REASON="vsftpd received an unparsable $line"
            return 1
        fi
        in_range "$p" "${GW_ACT[$server.$mode]}" || {
            REASON="vsftpd was asked to connect to port $p, outside ftpgate's server_active_ports ${GW_ACT[$server.$mode]/ /-}: $line"
            return 1
        }
    done <<<"$cmds"
}

# ---------------------------------------------------------------- cases ----
PASSED=0
FAILED=0
declare -A TALLY_PASS TALLY_TOTAL

# run_op SERVER MODE CLIENT OP PORT: one case; sets BYTES, SECS, REASON; 0 = pass.
run_op() {
    local server=$1 mode=$2 client=$3 op=$4 port=$5 rc=0 t0 remote lpath sha got
    local runner=run_curl
    [[ $client == lftp-* ]] && runner=run_lftp
    BYTES=0
    SECS=0
    REASON=
    OUT_FILE=$WORK/case.out
    TRACE=$WORK/case.trace
    : >"$OUT_FILE"
    : >"$TRACE"
    case $op in
    retr)
        remote=src.bin lpath=$DL/retr.bin
        rm -f "$lpath"
        ;;
    empty)
        remote=empty.bin lpath=$DL/empty.bin
        rm -f "$lpath"
        ;;
    stor)
        remote="up-$server-$mode-$client.bin" lpath=$SRC
        rm -f "$FTPHOME/$remote"
        ;;
    list) remote='' lpath='' ;;
    esac
    t0=$EPOCHREALTIME
    "$runner" "$client" "$port" "$op" "$remote" "$lpath" || rc=$?
    SECS=$(elapsed "$t0")
    case $op in
    retr | empty) [[ -f $lpath ]] && BYTES=$(stat -c %s "$lpath") ;;
    stor) [[ -f $FTPHOME/$remote ]] && BYTES=$(stat -c %s "$FTPHOME/$remote") ;;
    list) BYTES=$(stat -c %s "$OUT_FILE") ;;
    esac
    if ((rc != 0)); then
        REASON="$client exited $rc"
        ((rc == 124)) && REASON+=" (timed out after ${CMD_TIMEOUT}s)"
        return 1
    fi
    check_trace "$client" || return 1
    check_addresses "$server" "$mode" || return 1
    case $op in
    retr | empty)
        # curl does not create the output file for a 0-byte download.
        [[ $op == empty && ! -e $lpath ]] && : >"$lpath"
        [[ -f $lpath ]] || { REASON="no downloaded file"; return 1; }
        BYTES=$(stat -c %s "$lpath")
        sha=$SRC_SHA
        [[ $op == empty ]] && sha=$EMPTY_SHA
        got=$(sha256sum "$lpath" | cut -d' ' -f1)
        rm -f "$lpath"
        [[ $got == "$sha" ]] || { REASON="sha256 mismatch: got $got want $sha (bytes=$BYTES)"; return 1; }
        ;;
    stor)
        [[ -f $FTPHOME/$remote ]] || { REASON="no stored file $FTPHOME/$remote"; return 1; }
        BYTES=$(stat -c %s "$FTPHOME/$remote")
        got=$(sha256sum "$FTPHOME/$remote" | cut -d' ' -f1)
        rm -f "$FTPHOME/$remote"
        [[ $got == "$SRC_SHA" ]] || { REASON="stored sha256 mismatch: got $got want $SRC_SHA (bytes=$BYTES)"; return 1; }
        ;;
    list)
        BYTES=$(stat -c %s "$OUT_FILE")
        if ! tr -d '\r' <"$OUT_FILE" | grep -Eq "[[:space:]]${SRC_BYTES}[[:space:]].*[[:space:]]src\.bin\$"; then
            REASON="listing lacks 'src.bin' with size $SRC_BYTES"
            return 1
        fi
        if ! tr -d '\r' <"$OUT_FILE" | grep -Eq "[[:space:]]empty\.bin\$"; then
            REASON="listing lacks 'empty.bin'"
            return 1
        fi
        ;;
    esac
}


# report SERVER MODE CLIENT OP STATUS: print the case line, count it, and on failure
# show the reason, the client's trace and the logs.
report() {
    local server=$1 mode=$2 client=$3 op=$4 status=$5 word=PASS key="$1 $2"
    ((status == 0)) || word=FAIL
    echo "$word server=$server server_mode=$mode client=$client op=$op bytes=$BYTES secs=$SECS"
    TALLY_TOTAL[$key.$client]=$((${TALLY_TOTAL[$key.$client]:-0} + 1))
    if ((status == 0)); then
        PASSED=$((PASSED + 1))
        TALLY_PASS[$key.$client]=$((${TALLY_PASS[$key.$client]:-0} + 1))
        return 0
    fi
    FAILED=$((FAILED + 1))
    echo "    reason: $REASON"
    if [[ -s ${TRACE:-} ]]; then
        echo "    --- client trace (last 25 lines)"
        tail -n 25 "$TRACE" | mask_pass | sed 's/^/    | /'
    fi
    show_logs
}

past_deadline() {
    awk -v a="$SUITE_START" -v b="$EPOCHREALTIME" -v d="$DEADLINE_SECS" 'BEGIN { exit !(b - a > d) }'
}

# run_column SERVER MODE PORT LOGS...: all clients x ops against one endpoint.
run_column() {
    local server=$1 mode=$2 port=$3 client op st
    shift 3
    for client in "${CLIENTS[@]}"; do
        for op in "${OPS[@]}"; do
            mark_logs "$@"
            if past_deadline; then
                BYTES=0 SECS=0 REASON="suite deadline of ${DEADLINE_SECS}s passed" TRACE=
                report "$server" "$mode" "$client" "$op" 1
                continue
            fi
            st=0
            run_op "$server" "$mode" "$client" "$op" "$port" || st=1
            if ((st != 0)) && [[ $mode != direct ]] && ! kill -0 "$FTPGATE_PID" 2>/dev/null; then
                REASON="$REASON; ftpgate (pid $FTPGATE_PID) is no longer running"
            fi
            report "$server" "$mode" "$client" "$op" "$st"
        done
    done
}

# fail_column SERVER MODE REASON: every case of a column fails, loudly, with REASON.
fail_column() {
    local client op
    for client in "${CLIENTS[@]}"; do
        for op in "${OPS[@]}"; do
            BYTES=0 SECS=0 REASON=$3 TRACE=
            LOG_OFF=()
            report "$1" "$2" "$client" "$op" 1
        done
    done
}

# big_case SERVER MODE PORT: a file over 4 GiB (sparse, with random blocks at the start,
# across the 4 GiB boundary and at the end, so a 32-bit counter or offset bug shows)
# downloaded through ftpgate and checksummed as it arrives. INTEROP_BIG=0 skips it.
big_case() {
    local server=$1 mode=$2 port=$3 big=$FTPHOME/big.bin got rc=0 t0 blk
    local size=$((4 * 1024 * 1024 * 1024 + 123457))
    if [[ ! -f $big ]]; then
        truncate -s "$size" "$big"
        for blk in 0 $((4 * 1024 * 1024 / 4 - 1)) $((size / 4096 - 1)); do
            dd if=/dev/urandom of="$big" bs=4096 seek="$blk" count=2 conv=notrunc status=none
        done
        truncate -s "$size" "$big"
        chown "$FTP_USER:" "$big"
        BIG_SHA=$(sha256sum "$big" | cut -d' ' -f1)
    fi
    REASON="curl or the transfer failed"
    t0=$EPOCHREALTIME
    got=$(timeout -k 5 300 curl -sS --ftp-pasv --no-ftp-skip-pasv-ip --connect-timeout 10 \
        -u "$FTP_USER:$FTP_PASS" "ftp://127.0.0.1:$port/big.bin" -o - | sha256sum | cut -d' ' -f1) || rc=1
    BYTES=$size SECS=$(elapsed "$t0") TRACE=
    if [[ $got != "$BIG_SHA" ]]; then
        rc=1
        REASON="sha256 of the >4 GiB download is $got, want $BIG_SHA"
    fi
    report "$server" "$mode" curl-epsv retr-4GiB "$rc"
}

# One-off cases about ftpgate itself, reported in the same format.
gate_case() { # SERVER MODE OP STATUS REASON [SECS]
    BYTES=0 SECS=${6:-0} REASON=$5 TRACE=
    report "$1" "$2" ftpgate "$3" "$4"
}

# ----------------------------------------------------------------- main ----
HAVE_GATE=0
for m in "${MODES[@]}"; do [[ $m == direct ]] || HAVE_GATE=1; done
if ((HAVE_GATE)); then
    if find_ftpgate; then
        log "ftpgate: $FTPGATE_BIN ($("$FTPGATE_BIN" --version 2>&1 | head -n1 || true))"
    else
        FTPGATE_BIN=
    fi
fi

for server in "${SERVERS[@]}"; do
    sdir=$WORK/$server
    mkdir -p "$sdir"
    read -r plo phi <<<"${SRV_PASV[$server]}"
    log "starting $server on 127.0.0.1:${SRV_PORT[$server]} (passive $plo-$phi)"
    case $server in
    vsftpd)
        start_vsftpd "$sdir" "${SRV_PORT[$server]}" "$plo" "$phi"
        SERVER_PID=$VSFTPD_PID SERVER_LOGS=("$VSFTPD_LOG" "$VSFTPD_OUT")
        ;;
    pure-ftpd)
        start_pureftpd "$sdir" "${SRV_PORT[$server]}" "$plo" "$phi"
        SERVER_PID=$PUREFTPD_PID SERVER_LOGS=("$PUREFTPD_LOG" "$PUREFTPD_OUT")
        ;;
    esac

    for mode in "${MODES[@]}"; do
        if [[ $mode == direct ]]; then
            log "== $server direct"
            run_column "$server" direct "${SRV_PORT[$server]}" "${SERVER_LOGS[@]}"
            continue
        fi
        log "== $server via ftpgate server_mode=$mode"
        if [[ -z $FTPGATE_BIN ]]; then
            fail_column "$server" "$mode" "no ftpgate binary (build it, or set FTPGATE=path)"
            continue
        fi
        gdir=$WORK/$server-$mode
        mkdir -p "$gdir"
        cfg=$gdir/ftpgate.yaml
        glog=$gdir/ftpgate.log
        read -r gplo gphi <<<"${GW_PASV[$server.$mode]}"
        read -r galo gahi <<<"${GW_ACT[$server.$mode]}"
        write_ftpgate_config "$cfg" "${GW_PORT[$server.$mode]}" "${SRV_PORT[$server]}" \
            "$gplo" "$gphi" "$galo" "$gahi" "$mode"
        t0=$EPOCHREALTIME
        if ! timeout -k 5 30 "$FTPGATE_BIN" check -c "$cfg" >"$gdir/check.out" 2>&1; then
            gate_case "$server" "$mode" check 1 "ftpgate check -c rejected the generated config: $(tail -n 5 "$gdir/check.out" | tr '\n' ' ')" "$(elapsed "$t0")"
            echo "    --- config"
            sed 's/^/    | /' "$cfg"
        else
            gate_case "$server" "$mode" check 0 "" "$(elapsed "$t0")"
        fi
        log "ftpgate on 127.0.0.1:${GW_PORT[$server.$mode]} -> ${SRV_PORT[$server]} (passive $gplo-$gphi, active $galo-$gahi)"
        if ! start_ftpgate "$cfg" "$glog" "${GW_PORT[$server.$mode]}"; then
            fail_column "$server" "$mode" "ftpgate did not come up (see log below)"
            tail -n 30 "$glog" | sed -E 's/\x1b\[[0-9;]*m//g; s/^/    | /'
            stop_pid "$FTPGATE_PID"
            continue
        fi
        run_column "$server" "$mode" "${GW_PORT[$server.$mode]}" "$glog" "${SERVER_LOGS[@]}"
        if [[ $server == vsftpd && $mode == passive && ${INTEROP_BIG:-1} == 1 ]]; then
            big_case "$server" "$mode" "${GW_PORT[$server.$mode]}"
        fi
        if kill -0 "$FTPGATE_PID" 2>/dev/null; then
            gate_case "$server" "$mode" still-running 0 ""
        else
            gate_case "$server" "$mode" still-running 1 "ftpgate exited during the column"
        fi
        if grep -q 'panicked' "$glog"; then
            gate_case "$server" "$mode" no-panic 1 "ftpgate log has a panic: $(grep -m1 'panicked' "$glog")"
        else
            gate_case "$server" "$mode" no-panic 0 ""
        fi
        stop_pid "$FTPGATE_PID"
    done
    kill -0 "$SERVER_PID" 2>/dev/null || log "WARNING: $server exited during the run"
    stop_pid "$SERVER_PID"
done

# ---------------------------------------------------------------- table ----
echo
echo "summary (passed/total per column; columns are clients):"
printf '  %-10s %-8s' server mode
for c in "${CLIENTS[@]}"; do printf ' %-10s' "$c"; done
printf ' %-10s\n' ftpgate
for server in "${SERVERS[@]}"; do
    for mode in "${MODES[@]}"; do
        printf '  %-10s %-8s' "$server" "$mode"
        for c in "${CLIENTS[@]}" ftpgate; do
            k="$server $mode.$c"
            if [[ -n ${TALLY_TOTAL[$k]:-} ]]; then
                printf ' %-10s' "${TALLY_PASS[$k]:-0}/${TALLY_TOTAL[$k]}"
            else
                printf ' %-10s' -
            fi
        done
        echo
    done
done
log "suite took $(elapsed "$SUITE_START") s"
echo "$PASSED passed, $FAILED failed"
((FAILED == 0))
