# shellcheck shell=bash
# shellcheck disable=SC2016,SC2034 # bash -c scripts take their arguments in single quotes; GATE_WAIT is read by gate_start
# Topology 7 of tests/lab/run.sh (sourced by it): data.path kernel.
#
#   cli 192.0.2.10 -- 192.0.2.1 gate 198.51.100.1 -- 198.51.100.10 srv (vsftpd)
#                                 203.0.113.1 -- 203.0.113.66 thief
#
# ftpgate runs in gate (forwarding on) with data.path kernel. For every client mode and
# server_mode it checks the transfer (sha256, reply codes, who connected to whom: the
# server sees 198.51.100.1), who carried the bytes (the kernel for matching modes, with
# the file's byte count, or a little over it when segments were resent, in ftpgate's
# transfer event; the relay for mixed modes, with the reason logged) and that no rule
# outlives the transfer. Then: a third host cannot use a
# mapping; a killed ftpgate leaves its mapping, and the next start flushes it; a stopped
# ftpgate removes its table.

# kernel_rules NS: rules in ftpgate's own table (its empty base chains count none).
kernel_rules() {
    nsx "$1" nft list table inet ftpgate 2>/dev/null | grep -cE 'counter|dnat|snat' || true
}

# since FILE OFF: what FILE gained after byte OFF, without colour codes.
since() { tail -c +$(($2 + 1)) "$1" | sed -E 's/\x1b\[[0-9;]*m//g'; }

# carried_by_kernel SMODE CLIENT: 1 when the modes match (both passive or both active).
carried_by_kernel() {
    case $1 in
    passive) if is_active "$2"; then echo 0; else echo 1; fi ;;
    active) if is_active "$2"; then echo 1; else echo 0; fi ;;
    *) echo 1 ;;
    esac
}

# kernel_case: case_run, then the path and table checks.
kernel_case() {
    local want off out fwd shown=$CLIENT size=$((SIZE_MIB * 1048576)) event
    want=$(carried_by_kernel "$SMODE" "$CLIENT")
    [[ ${UPLOAD:-0} == 1 ]] && shown+=+STOR
    off=$(stat -c %s "$GATE_LOG")
    case_run
    sleep 0.3
    out=$(since "$GATE_LOG" "$off")
    fwd=$(grep -c 'data.path kernel: transfer forwarded' <<<"$out" || true)
    event=$(grep -E ' transfer( |$)' <<<"$out" | grep -E 'command=(RETR|STOR)' | tail -n1)
    if ((want)); then
        # The counters see what crossed ftpgate: a segment lost on the next hop counts
        # again when resent, and with segmentation offload the resend is a whole burst
        # (CI once saw 65160 bytes, 45 segments, over a 2 MiB file: 3%). So the count may
        # exceed the file but never fall short of it; +10% still catches a doubled or
        # wrong-direction count (the file itself is checksummed by case_run).
        lab_check "$TOPO $SMODE $shown: carried by the kernel, transfer event bytes=$size (+10%)" \
            bash -c 'b=$(sed -nE "s/.* bytes=([0-9]+) .*/\1/p" <<<"$2")
                [[ $1 == 1 && -n $b ]] && ((b >= $3 && b <= $3 + $3 / 10)) || { echo "forwarded=$1 event: $2"; exit 1; }' \
            _ "$fwd" "$event" "$size"
    else
        lab_check "$TOPO $SMODE $shown: carried by the relay (mixed modes), reason logged" \
            bash -c '[[ $1 == 0 ]] && grep -qE "uses the relay|relay fallback" <<<"$2"' _ "$fwd" "$out"
    fi
    lab_check "$TOPO $SMODE $shown: no rule left in table inet ftpgate" \
        bash -c '[[ $1 == 0 ]] || { echo "$1 rules"; exit 1; }' _ "$(kernel_rules gate)"
}

# kernel_wait_client: a session that asks for a download and never connects, so its
# mapping stays installed; backgrounded, killed by the caller.
kernel_wait_client() {
    nsx cli timeout 20 python3 -c '
import socket, sys, time
c = socket.create_connection((sys.argv[1], 21), timeout=5)
f = c.makefile("rb")
def reply():
    line = f.readline()
    while line[3:4] == b"-":
        line = f.readline()
r = reply()
for cmd in ("USER " + sys.argv[2], "PASS " + sys.argv[3], "TYPE I", "PASV", "RETR src.bin"):
    c.sendall(cmd.encode() + b"\r\n")
    if not cmd.startswith("RETR"):
        reply()
time.sleep(15)
' 192.0.2.1 "$FTP_USER" "$FTP_PASS" >/dev/null 2>&1
}

topo_kernel() {
    local m c out waiter i
    TOPO=kernel
    log "=== topology 7: $TOPO"
    command -v nft >/dev/null || return 1
    ns_add cli && ns_add gate router && ns_add srv && ns_add thief || return 1
    link cli eth0 gate cside && link gate sside srv eth0 && link thief eth0 gate tside || return 1
    addr cli eth0 192.0.2.10/24
    addr gate cside 192.0.2.1/24
    addr gate sside 198.51.100.1/24
    addr gate tside 203.0.113.1/24
    addr srv eth0 198.51.100.10/24
    addr thief eth0 203.0.113.66/24
    route cli default via 192.0.2.1
    route srv default via 198.51.100.1
    route thief default via 203.0.113.1
    start_servers srv vsftpd
    # Without ftpgate the routed path works as well: the kernel forwards the client's
    # own connections (what the benchmark's kernel figures compare with).
    VIA=direct SMODE=- CNS=cli HOST=198.51.100.10 SERVER=vsftpd PORT=21 WHERE=routed
    for c in curl-epsv curl-eprt; do
        CLIENT=$c EXPECT=ok
        case_run
    done
    for m in passive active client; do
        GATE_DATA_PATH=kernel FTPGATE_LOG_LEVEL="info,ftpgate::kernel=debug" \
            gate_cfg "$WORK/gate-$TOPO-$m.yaml" "$m" use_control \
            <<<'  - { name: kpath, bind: "192.0.2.1:21", route: { kind: fixed, upstreams: ["198.51.100.10:21"] } }'
        GATE_WAIT="192.0.2.1 21"
        gate_start gate "$WORK/gate-$TOPO-$m.yaml" "$TOPO-$m" || return 1
        VIA=ftpgate SMODE=$m CNS=cli HOST=192.0.2.1 SERVER=vsftpd PORT=21 WHERE=routed
        for c in "${CLIENTS4[@]}"; do
            CLIENT=$c EXPECT=ok WANT_PEER=198.51.100.1
            [[ $c == curl-pasv || $c == lftp-pasv ]] && WANT_227=192.0.2.1
            kernel_case
        done
        for c in curl-epsv curl-eprt; do
            CLIENT=$c EXPECT=ok UPLOAD=1 WANT_PEER=198.51.100.1
            kernel_case
        done
        if [[ $m == passive ]]; then
            # A third host connecting to the advertised port first gets nothing (the
            # mapping matches the session's client only); the client still gets the file.
            out=$(nsx cli timeout 40 python3 "$LAB_DIR/kpath_steal.py" 192.0.2.1 21 \
                "$FTP_USER" "$FTP_PASS" src.bin "$(ns thief)" 2>&1)
            lab_check "$TOPO: a third host cannot use the mapping" \
                bash -c '[[ $1 == *"stolen=0 sha256=$2 reply=226"* ]] || { echo "$1"; exit 1; }' _ "$out" "$SRC_SHA"
            # Killed while a mapping waits for its client: the next start flushes it.
            kernel_wait_client &
            waiter=$!
            for ((i = 0; i < 50; i++)); do
                [[ $(kernel_rules gate) -gt 0 ]] && break
                sleep 0.1
            done
            lab_check "$TOPO: a mapping is installed while its client is awaited" \
                bash -c '[[ $1 -gt 0 ]]' _ "$(kernel_rules gate)"
            kill -KILL "$GATE_PID" 2>/dev/null
            sleep 0.3
            lab_check "$TOPO: a killed ftpgate leaves its mapping behind" \
                bash -c '[[ $1 -gt 0 ]]' _ "$(kernel_rules gate)"
            kill "$waiter" 2>/dev/null
            wait "$waiter" 2>/dev/null
            gate_stop
            gate_start gate "$WORK/gate-$TOPO-$m.yaml" "$TOPO-$m-restart" || return 1
            lab_check "$TOPO: a new ftpgate flushes its table at start" \
                bash -c '[[ $1 == 0 ]] || { echo "$1 rules"; exit 1; }' _ "$(kernel_rules gate)"
        fi
        gate_stop
        lab_check "$TOPO $m: a stopped ftpgate removes its table" \
            bash -c '! ip netns exec "$1" nft list table inet ftpgate >/dev/null 2>&1' _ "$(ns gate)"
    done
    teardown
}
