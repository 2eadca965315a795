#!/usr/bin/env bash
# ftpgate network-namespace lab: ftpgate at NAT and firewall edges, with real vsftpd
# and pure-ftpd servers and curl/lftp clients in separate network namespaces, every
# case also run WITHOUT ftpgate (via=direct) as a negative control.
#
# Topologies (each builds its namespaces, runs its cases and tears them down):
#   1 firewall     client behind a stateful firewall that drops inbound; variants
#                  fw-nat (masquerading NAT) and fw-drop (no NAT); an active-only
#                  server (vsftpd pasv_enable=NO) shows passive client + active server
#   2 server-nat   server behind a port-forwarding NAT whose 227 carries its private
#                  address; server_pasv_address use_control / check / trust
#   3 split        one listener, inside and outside (NATed) clients, per-client advertise
#   4 v4v6         IPv4 client -> IPv6 server and IPv6 client -> IPv4 server
#   5 transparent  interception on a router: nftables REDIRECT and TPROXY
#   7 kernel       data.path kernel (tests/lab/topo_kernel.sh): client - ftpgate
#                  (forwarding) - server, every client mode x server_mode; the kernel
#                  carries matching modes, the relay mixed ones; no rule outlives its
#                  transfer; a third host cannot use a mapping; restart flushes the table
#   6 ftps         FTPS across NAT and firewalls that run the kernel FTP ALG
#                  (nf_conntrack_ftp/nf_nat_ftp): the ALG fixes plain FTP but cannot
#                  read PASV/PORT inside TLS; ftpgate terminates TLS on both legs
#                  (vsftpd with require_ssl_reuse, a test CA made at run time), plus
#                  a plain legacy client through ftpgate to the FTPS-only server
#
# Output: one "PASS|FAIL|XFAIL topology=... via=ftpgate|direct ..." line per case
# (XFAIL: a case expected to fail that failed, counted as passed), "PASS|FAIL
# topology=... check=..." lines for checks that are no transfer (nftables counters),
# a Markdown table, then "N passed, M failed". Exit 1 on any failure; 2 when the lab cannot set up.
# Without network namespaces: a SKIP banner and exit 0, unless CI is set (then 2).
#
# Knobs: LAB_TOPOS="1 2 3 4 5 6 7"  LAB_SIZE_MIB=2  LAB_CMD_TIMEOUT=20  LAB_KEEP=1 (keep
# the work dir)  LAB_VERBOSE=1 (print failing traces)  FTPGATE=path
set -uo pipefail

# shellcheck source=tests/lab/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

read -ra TOPOS <<<"${LAB_TOPOS:-1 2 3 4 5 6 7}"
SIZE_MIB=${LAB_SIZE_MIB:-2}

skip_or_fail() {
    printf '\n%s\n' "################################################################"
    printf '%s\n' "SKIP: network-namespace lab not run: $1"
    printf '%s\n\n' "################################################################"
    if [[ -n "${CI:-}" ]]; then
        echo "CI is set: the lab must run in CI; failing."
        echo "0 passed, 1 failed"
        exit 2
    fi
    echo "0 passed, 0 failed"
    exit 0
}

[[ $(id -u) -eq 0 ]] || skip_or_fail "not root (needs ip netns, nftables, a local FTP user)"
for t in ip nft vsftpd curl lftp openssl python3 sha256sum timeout setsid ss; do
    command -v "$t" >/dev/null 2>&1 || skip_or_fail "missing tool: $t"
done
install_lab_trap
clean_stale
probe="${LAB_PREFIX}probe"
if ! err=$(ip netns add "$probe" 2>&1); then
    skip_or_fail "ip netns add failed: $err"
fi
LAB_NS+=("$probe")
if ! err=$(ip -n "$probe" link add p0 type veth peer name p1 2>&1); then
    skip_or_fail "cannot create veth pairs in a namespace: $err"
fi
ns_del "$probe"
LAB_NS=()

find_ftpgate || {
    log "building ftpgate (cargo build --release)"
    (cd "$REPO_ROOT" && cargo build --release >&2) || die "cargo build --release failed"
    find_ftpgate || die "no ftpgate binary"
}
ensure_pureftpd

LAB_START=$EPOCHREALTIME
WORK=$(mktemp -d /tmp/ftpgate-lab.XXXXXX)
chmod 755 "$WORK"
if [[ "${LAB_KEEP:-0}" == 1 ]]; then log "keeping work directory $WORK"; else CLEAN_PATHS+=("$WORK"); fi
mkdir -p "$WORK/dl" "$WORK/lftp-home"
make_ftp_user "$WORK/home"
head -c $((SIZE_MIB * 1024 * 1024)) /dev/urandom >"$WORK/home/src.bin"
chown "$FTP_USER:" "$WORK/home/src.bin"
SRC_SHA=$(sha256sum <"$WORK/home/src.bin" | cut -d' ' -f1)
log "ftpgate $FTPGATE_BIN; user $FTP_USER; ${SIZE_MIB} MiB test file; work dir $WORK"

CLIENTS4=(curl-pasv curl-epsv curl-port curl-eprt lftp-pasv lftp-port)
NFT_DIR=$REPO_ROOT/deploy/nftables

# gate_cfg FILE SERVER_MODE PASV_POLICY: an ftpgate config; listeners YAML on stdin.
gate_cfg() {
    {
        echo "listeners:"
        cat
        cat <<EOF
acl:
  servers: { allow: [198.51.100.0/24, "2001:db8::/32"] }
data:
  passive_ports: 50000-50099
  server_mode: $2
  server_active_ports: 40000-40099
  server_pasv_address: $3
  path: ${GATE_DATA_PATH:-relay}
timeouts: { connect: 3s, data_accept: 6s, banner: 10s }
log: { level: "${FTPGATE_LOG_LEVEL:-info}", format: text }
EOF
    } >"$1"
}

# nft_packets NS COUNTER: the packet count of a named counter in NS's table ip snat_fw.
nft_packets() {
    nsx "$1" nft list counter ip snat_fw "$2" | sed -nE 's/.*packets ([0-9]+).*/\1/p'
}

# is_active CLIENT: does this client mode make the client listen (PORT/EPRT)?
is_active() { [[ $1 == *-port || $1 == *-eprt ]]; }

# ================================================================ 1 ====
# cli(192.0.2.10) -- fw(192.0.2.1 | 203.0.113.2) -- edge(203.0.113.1 | 198.51.100.1) -- srv(198.51.100.10)
topo_firewall() {
    local variant=$1 s c m servers
    TOPO=firewall-$variant
    log "=== topology 1: $TOPO"
    ns_add cli && ns_add fw router && ns_add edge router && ns_add srv || return 1
    link cli eth0 fw inside && link fw outside edge outside && link edge srvside srv eth0 || return 1
    addr cli eth0 192.0.2.10/24
    addr fw inside 192.0.2.1/24
    addr fw outside 203.0.113.2/24
    addr edge outside 203.0.113.1/24
    addr edge srvside 198.51.100.1/24
    addr srv eth0 198.51.100.10/24
    route cli default via 192.0.2.1
    route fw 198.51.100.0/24 via 203.0.113.1
    route edge 192.0.2.0/24 via 203.0.113.2
    route srv default via 198.51.100.1
    nft_load fw "$NFT_DIR/edge-firewall.nft" || return 1
    if [[ $variant == fw-drop ]]; then
        nsx fw nft delete table ip fw_nat || return 1
        servers=(vsftpd pure-ftpd vsftpd-nopasv)
    else
        servers=(vsftpd pure-ftpd)
    fi
    no_ftp_helper fw edge || return 1
    start_servers srv "${servers[@]}"
    local peer_direct=192.0.2.10
    [[ $variant == fw-nat ]] && peer_direct=203.0.113.2

    # Without ftpgate: passive works through the firewall (NAT or not), active never
    # does (the NATed PORT names a private address / inbound connections are dropped);
    # the active-only server cannot serve this client at all.
    VIA=direct SMODE=- CNS=cli HOST=198.51.100.10 WHERE=behind-$variant
    for s in "${servers[@]}"; do
        for c in "${CLIENTS4[@]}"; do
            SERVER=$s CLIENT=$c PORT=$(srv_port "$s")
            if is_active "$c" || [[ $s == vsftpd-nopasv ]]; then EXPECT=fail; else EXPECT=ok WANT_PEER=$peer_direct; fi
            case_run
        done
    done
    for m in passive active; do
        gate_cfg "$WORK/gate-$TOPO-$m.yaml" "$m" use_control <<EOF
  - { name: vsftpd, bind: "203.0.113.1:21", route: { kind: fixed, upstreams: ["198.51.100.10:21"], source: 198.51.100.1 } }
  - { name: pure, bind: "203.0.113.1:2121", route: { kind: fixed, upstreams: ["198.51.100.10:2121"], source: 198.51.100.1 } }
  - { name: nopasv, bind: "203.0.113.1:2100", route: { kind: fixed, upstreams: ["198.51.100.10:2100"], source: 198.51.100.1 } }
EOF
        GATE_WAIT="203.0.113.1 21"
        gate_start edge "$WORK/gate-$TOPO-$m.yaml" "$TOPO-$m" || return 1
        VIA=ftpgate SMODE=$m HOST=203.0.113.1
        for s in "${servers[@]}"; do
            for c in "${CLIENTS4[@]}"; do
                SERVER=$s CLIENT=$c PORT=$(srv_port "$s")
                if is_active "$c"; then
                    # NAT: the PORT names 192.0.2.10 but the session comes from
                    # 203.0.113.2 -> ftpgate refuses it (501). No NAT: ftpgate's
                    # connection to the client is dropped by the firewall (425).
                    EXPECT=fail
                    if [[ $variant == fw-nat ]]; then WANT_CODE=501; else WANT_CODE=425; fi
                elif [[ $s == vsftpd-nopasv && $m == passive ]]; then
                    EXPECT=fail
                else
                    EXPECT=ok WANT_PEER=198.51.100.1 WANT_SRV_CMD=${m/passive/PASV}
                    WANT_SRV_CMD=${WANT_SRV_CMD/active/PORT}
                    [[ $c == curl-pasv || $c == lftp-pasv ]] && WANT_227=203.0.113.1
                fi
                case_run
            done
        done
        gate_stop
    done
    teardown
}

# ================================================================ 2 ====
# cli(203.0.113.10) -- edge(203.0.113.1 | 198.51.100.1) -- natr(198.51.100.20 | 192.0.2.1) -- srv(192.0.2.10)
topo_server_nat() {
    local s c pol m
    TOPO=server-nat
    log "=== topology 2: $TOPO"
    ns_add cli && ns_add edge router && ns_add natr router && ns_add srv || return 1
    link cli eth0 edge outside && link edge srvside natr outside && link natr inside srv eth0 || return 1
    addr cli eth0 203.0.113.10/24
    addr edge outside 203.0.113.1/24
    addr edge srvside 198.51.100.1/24
    addr natr outside 198.51.100.20/24
    addr natr inside 192.0.2.1/24
    addr srv eth0 192.0.2.10/24
    route cli default via 203.0.113.1
    route natr default via 198.51.100.1
    route srv default via 192.0.2.1
    nft_load natr "$NFT_DIR/server-nat.nft" || return 1
    start_servers srv vsftpd pure-ftpd

    # Without ftpgate: the 227 names 192.0.2.10, unreachable -> PASV fails; EPSV and
    # active work (the DNAT/masquerade handle them).
    VIA=direct SMODE=- CNS=cli HOST=198.51.100.20 WHERE=outside
    for s in vsftpd pure-ftpd; do
        for c in "${CLIENTS4[@]}"; do
            SERVER=$s CLIENT=$c PORT=$(srv_port "$s")
            if [[ $c == curl-pasv || $c == lftp-pasv ]]; then EXPECT=fail; else EXPECT=ok WANT_PEER=203.0.113.10; fi
            case_run
        done
    done
    for pm in passive:use_control active:use_control passive:check passive:trust; do
        m=${pm%%:*} pol=${pm##*:}
        gate_cfg "$WORK/gate-$TOPO-$m-$pol.yaml" "$m" "$pol" <<EOF
  - { name: vsftpd, bind: "203.0.113.1:21", route: { kind: fixed, upstreams: ["198.51.100.20:21"] } }
  - { name: pure, bind: "203.0.113.1:2121", route: { kind: fixed, upstreams: ["198.51.100.20:2121"] } }
EOF
        GATE_WAIT="203.0.113.1 21"
        gate_start edge "$WORK/gate-$TOPO-$m-$pol.yaml" "$TOPO-$m-$pol" || return 1
        VIA=ftpgate SMODE="$m/$pol" HOST=203.0.113.1
        for s in vsftpd pure-ftpd; do
            for c in "${CLIENTS4[@]}"; do
                SERVER=$s CLIENT=$c PORT=$(srv_port "$s")
                if [[ $pol == use_control ]]; then
                    EXPECT=ok WANT_PEER=198.51.100.1
                    [[ $m == passive ]] && WANT_SRV_CMD=PASV
                    [[ $m == active ]] && WANT_SRV_CMD=PORT
                else
                    # check: 227 names 192.0.2.10 != control 198.51.100.20 -> 425;
                    # trust: ftpgate connects to 192.0.2.10, unreachable -> 425.
                    [[ $c == curl-pasv || $c == curl-port || $c == lftp-pasv ]] || continue
                    EXPECT=fail WANT_CODE=425
                fi
                case_run
            done
        done
        gate_stop
    done
    teardown
}

# ================================================================ 3 ====
# incli(192.0.2.10/25) -- edge(lan 192.0.2.1/25 | dmz 192.0.2.129/25 | 198.51.100.1) -- srv(198.51.100.10)
#                          edge dmz -- gw(192.0.2.130/25 | outside 203.0.113.1,.2) -- outcli(203.0.113.10)
topo_split() {
    local s c m loc
    TOPO=split-horizon
    log "=== topology 3: $TOPO"
    ns_add incli && ns_add outcli && ns_add gw router && ns_add edge router && ns_add srv || return 1
    link incli eth0 edge lan && link edge dmz gw dmz && link gw outside outcli eth0 && link edge srvside srv eth0 || return 1
    addr incli eth0 192.0.2.10/25
    addr edge lan 192.0.2.1/25
    addr edge dmz 192.0.2.129/25
    addr edge srvside 198.51.100.1/24
    addr gw dmz 192.0.2.130/25
    addr gw outside 203.0.113.1/24 203.0.113.2/24
    addr outcli eth0 203.0.113.10/24 # no default route: only what is published on 203.0.113.0/24
    addr srv eth0 198.51.100.10/24
    route incli default via 192.0.2.1
    route edge default via 192.0.2.130
    route gw 192.0.2.0/25 via 192.0.2.129
    route gw 198.51.100.0/24 via 192.0.2.129
    route srv default via 198.51.100.1
    nft_load gw "$NFT_DIR/split-horizon.nft" || return 1
    start_servers srv vsftpd pure-ftpd

    # Without ftpgate: inside clients reach the server directly; outside clients get it
    # published on 203.0.113.2, but its 227 names 198.51.100.10 -> PASV fails outside.
    VIA=direct SMODE=-
    for loc in inside outside; do
        if [[ $loc == inside ]]; then CNS=incli HOST=198.51.100.10; else CNS=outcli HOST=203.0.113.2; fi
        WHERE=$loc
        for s in vsftpd pure-ftpd; do
            for c in "${CLIENTS4[@]}"; do
                SERVER=$s CLIENT=$c PORT=$(srv_port "$s") EXPECT=ok
                if [[ $loc == outside && ($c == curl-pasv || $c == lftp-pasv) ]]; then EXPECT=fail; fi
                case_run
            done
        done
    done
    for m in passive active; do
        gate_cfg "$WORK/gate-$TOPO-$m.yaml" "$m" use_control <<EOF
  - name: vsftpd
    bind: "192.0.2.1:21"
    route: { kind: fixed, upstreams: ["198.51.100.10:21"], source: 198.51.100.1 }
    advertise:
      - { clients: 192.0.2.0/24, address: auto }
      - { clients: 0.0.0.0/0, address: 203.0.113.1 }
  - name: pure
    bind: "192.0.2.1:2121"
    route: { kind: fixed, upstreams: ["198.51.100.10:2121"], source: 198.51.100.1 }
    advertise:
      - { clients: 192.0.2.0/24, address: auto }
      - { clients: 0.0.0.0/0, address: 203.0.113.1 }
EOF
        GATE_WAIT="192.0.2.1 21"
        gate_start edge "$WORK/gate-$TOPO-$m.yaml" "$TOPO-$m" || return 1
        VIA=ftpgate SMODE=$m
        for loc in inside outside; do
            if [[ $loc == inside ]]; then CNS=incli HOST=192.0.2.1; else CNS=outcli HOST=203.0.113.1; fi
            WHERE=$loc
            for s in vsftpd pure-ftpd; do
                for c in "${CLIENTS4[@]}"; do
                    SERVER=$s CLIENT=$c PORT=$(srv_port "$s") EXPECT=ok WANT_PEER=198.51.100.1
                    [[ $c == curl-pasv || $c == lftp-pasv ]] && WANT_227=$HOST
                    case_run
                done
            done
        done
        gate_stop
    done
    teardown
}

# ================================================================ 4 ====
# cli4(192.0.2.10) / cli6(2001:db8:1::10) -- edge -- srv(198.51.100.10, 2001:db8:2::10)
topo_v4v6() {
    local s c m
    TOPO=v4v6
    log "=== topology 4: $TOPO"
    ns_add cli4 && ns_add cli6 && ns_add edge router && ns_add srv || return 1
    link cli4 eth0 edge c4 && link cli6 eth0 edge c6 && link edge srvside srv eth0 || return 1
    addr cli4 eth0 192.0.2.10/24
    addr cli6 eth0 2001:db8:1::10/64
    addr edge c4 192.0.2.1/24
    addr edge c6 2001:db8:1::1/64
    addr edge srvside 198.51.100.1/24 2001:db8:2::1/64
    addr srv eth0 198.51.100.10/24 2001:db8:2::10/64
    route cli4 default via 192.0.2.1
    route cli6 default via 2001:db8:1::1
    route srv default via 198.51.100.1
    route srv default via 2001:db8:2::1
    start_servers srv vsftpd pure-ftpd
    # curl and lftp always use EPSV/EPRT on IPv6, so PASV (and LPSV/LPRT, which
    # ftpgate never supports) on an IPv6 leg is sent by hand (ftpraw.py)
    local -a C6=(curl-epsv curl-eprt lftp-pasv lftp-port)

    # Without ftpgate an IPv4-only client cannot reach an IPv6 server (and back).
    VIA=direct SMODE=- EXPECT=fail
    for s in vsftpd pure-ftpd; do
        for c in "${CLIENTS4[@]}"; do
            WHERE=v4-client-to-v6-server CNS=cli4 HOST=2001:db8:2::10 SERVER=$s CLIENT=$c PORT=$(srv_port "$s") EXPECT=fail
            case_run
        done
        for c in "${C6[@]}"; do
            WHERE=v6-client-to-v4-server CNS=cli6 HOST=198.51.100.10 SERVER=$s CLIENT=$c PORT=$(srv_port "$s") EXPECT=fail
            case_run
        done
    done
    for m in passive active; do
        gate_cfg "$WORK/gate-$TOPO-$m.yaml" "$m" use_control <<EOF
  - { name: v4v6-vsftpd, bind: "192.0.2.1:21", route: { kind: fixed, upstreams: ["[2001:db8:2::10]:21"] } }
  - { name: v4v6-pure, bind: "192.0.2.1:2121", route: { kind: fixed, upstreams: ["[2001:db8:2::10]:2121"] } }
  - { name: v6v4-vsftpd, bind: "[2001:db8:1::1]:21", route: { kind: fixed, upstreams: ["198.51.100.10:21"] } }
  - { name: v6v4-pure, bind: "[2001:db8:1::1]:2121", route: { kind: fixed, upstreams: ["198.51.100.10:2121"] } }
EOF
        GATE_WAIT="192.0.2.1 21
2001:db8:1::1 21"
        gate_start edge "$WORK/gate-$TOPO-$m.yaml" "$TOPO-$m" || return 1
        VIA=ftpgate SMODE=$m
        for s in vsftpd pure-ftpd; do
            for c in "${CLIENTS4[@]}"; do
                WHERE=v4-client-to-v6-server CNS=cli4 HOST=192.0.2.1 SERVER=$s CLIENT=$c PORT=$(srv_port "$s")
                EXPECT=ok WANT_PEER=2001:db8:2::1
                [[ $c == curl-pasv || $c == lftp-pasv ]] && WANT_227=192.0.2.1
                [[ $m == passive ]] && WANT_SRV_CMD=PASV
                [[ $m == active ]] && WANT_SRV_CMD=PORT
                case_run
            done
            for c in "${C6[@]}"; do
                WHERE=v6-client-to-v4-server CNS=cli6 HOST=2001:db8:1::1 SERVER=$s CLIENT=$c PORT=$(srv_port "$s")
                EXPECT=ok WANT_PEER=198.51.100.1
                [[ $m == passive ]] && WANT_SRV_CMD=PASV
                [[ $m == active ]] && WANT_SRV_CMD=PORT
                case_run
            done
            # PASV cannot carry an IPv6 address: 425; LPSV/LPRT: 502 on both legs
            WHERE=v6-client-to-v4-server CNS=cli6 HOST=2001:db8:1::1 CLIENT=raw-pasv EXPECT=fail WANT_CODE=425
            case_run
            for c in raw-lpsv raw-lprt; do
                WHERE=v6-client-to-v4-server CNS=cli6 HOST=2001:db8:1::1 CLIENT=$c EXPECT=fail WANT_CODE=502
                case_run
                WHERE=v4-client-to-v6-server CNS=cli4 HOST=192.0.2.1 CLIENT=$c EXPECT=fail WANT_CODE=502
                case_run
            done
        done
        gate_stop
    done
    teardown
}

# ================================================================ 5 ====
# cli(192.0.2.10) -- rtr(lan 192.0.2.1 | wan 198.51.100.1, ftpgate) -- srv(198.51.100.10)
topo_transparent() {
    local s c m kind
    TOPO=transparent
    log "=== topology 5: $TOPO"
    ns_add cli && ns_add rtr router && ns_add srv || return 1
    link cli eth0 rtr lan && link rtr wan srv eth0 || return 1
    addr cli eth0 192.0.2.10/24
    addr rtr lan 192.0.2.1/24
    addr rtr wan 198.51.100.1/24
    addr srv eth0 198.51.100.10/24
    route cli default via 192.0.2.1
    route srv default via 198.51.100.1
    start_servers srv vsftpd pure-ftpd

    for kind in redirect tproxy; do
        TOPO=transparent-$kind
        # Without interception (no rules loaded yet): a plain router; every mode works
        # and the server sees the client itself.
        nsx rtr nft delete table ip ftpgate_redirect 2>/dev/null
        VIA=direct SMODE=- CNS=cli HOST=198.51.100.10 WHERE=client
        for s in vsftpd pure-ftpd; do
            for c in "${CLIENTS4[@]}"; do
                SERVER=$s CLIENT=$c PORT=$(srv_port "$s") EXPECT=ok WANT_PEER=192.0.2.10
                case_run
            done
        done
        if [[ $kind == redirect ]]; then
            nft_load rtr "$NFT_DIR/redirect.nft" || return 1
        else
            nsx rtr ip rule add fwmark 0x1 lookup 100 || return 1
            nsx rtr ip route add local 0.0.0.0/0 dev lo table 100 || return 1
            nft_load rtr "$NFT_DIR/tproxy.nft" || return 1
        fi
        for m in passive active; do
            local tp=""
            [[ $kind == tproxy ]] && tp=", tproxy: true"
            gate_cfg "$WORK/gate-$TOPO-$m.yaml" "$m" use_control <<EOF
  - { name: intercept, bind: "192.0.2.1:2021", route: { kind: transparent, source: 198.51.100.1$tp } }
EOF
            GATE_WAIT=""
            gate_start rtr "$WORK/gate-$TOPO-$m.yaml" "$TOPO-$m" || return 1
            # transparent listeners refuse a session to themselves: wait for the socket
            timeout 20 bash -c "until ip netns exec $(ns rtr) ss -Hltn 'sport = :2021' | grep -q .; do sleep 0.1; done" ||
                { log "ftpgate did not listen on :2021"; return 1; }
            VIA=ftpgate SMODE=$m CNS=cli HOST=198.51.100.10 WHERE=client
            for s in vsftpd pure-ftpd; do
                for c in "${CLIENTS4[@]}"; do
                    SERVER=$s CLIENT=$c PORT=$(srv_port "$s") EXPECT=ok WANT_PEER=198.51.100.1
                    [[ $m == passive ]] && WANT_SRV_CMD=PASV
                    [[ $m == active ]] && WANT_SRV_CMD=PORT
                    # REDIRECT: passive listeners on the router's lan address;
                    # TPROXY: on the intercepted (server's) address
                    if [[ $c == curl-pasv || $c == lftp-pasv ]]; then
                        if [[ $kind == redirect ]]; then WANT_227=192.0.2.1; else WANT_227=198.51.100.10; fi
                    fi
                    case_run
                done
            done
            gate_stop
        done
    done
    teardown
}

# ================================================================ 6 ====
# cli(192.0.2.10) -- fw(192.0.2.1 | 203.0.113.2) -- natr(outside 203.0.113.1, 203.0.113.3 |
#     srvside 198.51.100.1/26 -- srv(198.51.100.10): vsftpd-tls :21, vsftpd-plain :2121
#     dmz     198.51.100.129/26 -- gate(198.51.100.130): ftpgate, published as 203.0.113.3
#     lan     198.51.100.65/26 -- lan(198.51.100.70): an inside client)
#
# FTPS across NAT and firewalls. Both the client's firewall (fw: masquerading, drops
# inbound) and the servers' NAT (natr: publishes only the servers' control ports on
# 203.0.113.1 and leaves their data connections to the ALG) run the kernel FTP ALG
# (nf_conntrack_ftp + nf_nat_ftp, a `ct helper` on the control ports). For plain FTP the
# ALG rewrites the 227 to 203.0.113.1, the client's PORT to 203.0.113.2 and opens every
# data connection; inside TLS it sees nothing: the 227 keeps the private 198.51.100.10,
# the PORT keeps 192.0.2.10 and no data connection is let through. ftpgate in the DMZ
# terminates TLS on both legs, advertises the NAT's public 203.0.113.3 to outside
# clients and needs only its own published ports (21 and its passive range), no ALG.
# Its inside "legacy" listener takes plain FTP and adds TLS towards the FTPS-only
# server (route.tls).
topo_ftps() {
    local c m nft srvcmd
    TOPO=ftps
    log "=== topology 6: $TOPO"
    ns_add cli && ns_add fw router && ns_add natr router && ns_add srv && ns_add gate && ns_add lan || return 1
    link cli eth0 fw inside && link fw outside natr outside || return 1
    link natr srvside srv eth0 && link natr dmz gate eth0 && link natr lan lan eth0 || return 1
    addr cli eth0 192.0.2.10/24
    addr fw inside 192.0.2.1/24
    addr fw outside 203.0.113.2/24 # no default route: the nets behind natr are unreachable
    addr natr outside 203.0.113.1/24 203.0.113.3/24
    addr natr srvside 198.51.100.1/26
    addr natr lan 198.51.100.65/26
    addr natr dmz 198.51.100.129/26
    addr srv eth0 198.51.100.10/26
    addr lan eth0 198.51.100.70/26
    addr gate eth0 198.51.100.130/26
    route cli default via 192.0.2.1
    route srv default via 198.51.100.1
    route lan default via 198.51.100.65
    route gate default via 198.51.100.129
    nft=$WORK/ftps-fw.nft
    cat >"$nft" <<'NFT'
# the client's firewall: masquerading, stateful, inbound dropped, FTP ALG on 21/2121
table ip cfw {
    ct helper ftp-alg { type "ftp" protocol tcp; }
    chain prerouting {
        type filter hook prerouting priority filter; policy accept;
        iifname "inside" tcp dport { 21, 2121 } ct helper set "ftp-alg"
    }
    chain forward {
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        ct state new iifname "inside" accept
    }
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "outside" masquerade
    }
}
NFT
    nft_load fw "$nft" || return 1
    nft=$WORK/ftps-natr.nft
    cat >"$nft" <<'NFT'
# the servers' NAT and firewall: the FTP servers are published on 203.0.113.1, control
# ports only (their data connections are left to the FTP ALG, as "related"); ftpgate on
# 203.0.113.3 with its passive range 50000-50099, no ALG.
table ip snat_fw {
    ct helper ftp-alg { type "ftp" protocol tcp; }
    # evidence for the lab: packets of the control connections given the ALG (FTPS on
    # 21, plain on 2121), and of the data connections it let through as "related"
    counter alg_ftps { }
    counter alg_plain { }
    counter alg_related { }
    chain prerouting_nat {
        type nat hook prerouting priority dstnat; policy accept;
        iifname "outside" ip daddr 203.0.113.1 tcp dport { 21, 2121 } dnat to 198.51.100.10
        iifname "outside" ip daddr 203.0.113.3 tcp dport { 21, 50000-50099 } dnat to 198.51.100.130
    }
    chain prerouting {
        type filter hook prerouting priority filter; policy accept;
        iifname "outside" ip daddr 198.51.100.10 tcp dport 21 ct helper set "ftp-alg" counter name "alg_ftps"
        iifname "outside" ip daddr 198.51.100.10 tcp dport 2121 ct helper set "ftp-alg" counter name "alg_plain"
    }
    chain forward {
        type filter hook forward priority filter; policy drop;
        ct state related counter name "alg_related"
        ct state established,related accept
        # from outside: only what prerouting_nat published
        ct state new iifname "outside" ct status dnat accept
        # the inside nets may open anything (ftpgate to the server, active data out)
        ct state new iifname { "srvside", "dmz", "lan" } accept
    }
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "outside" ip saddr 198.51.100.130 snat to 203.0.113.3
        oifname "outside" ip saddr 198.51.100.0/24 snat to 203.0.113.1
    }
}
NFT
    nft_load natr "$nft" || return 1
    lab_tls_certs "$WORK/tls" "DNS:ftp.internal.example,IP:198.51.100.10,IP:203.0.113.1" \
        "DNS:ftps.example.net,IP:203.0.113.3,IP:198.51.100.130"
    start_servers srv vsftpd-tls vsftpd-plain
    local -a FTPS=(ftps-curl-pasv ftps-curl-epsv ftps-curl-port ftps-lftp-pasv ftps-lftp-port)

    # Without ftpgate, from behind the client's firewall. Plain FTP: the two ALGs make
    # every mode work (the 227 the client sees is rewritten to the public 203.0.113.1).
    VIA=direct SMODE=- CNS=cli HOST=203.0.113.1 WHERE=behind-fw-alg SERVER=vsftpd-plain PORT=2121
    for c in "${CLIENTS4[@]}"; do
        CLIENT=$c EXPECT=ok WANT_PEER=203.0.113.2
        [[ $c == curl-pasv || $c == lftp-pasv ]] && WANT_227=203.0.113.1
        case_run
    done
    local rel0 rel1 tls0
    rel0=$(nft_packets natr alg_related)
    lab_check alg-on-plain-control num_check "$(nft_packets natr alg_plain)" -gt 0
    lab_check alg-opened-plain-data num_check "$rel0" -ge "${#CLIENTS4[@]}"
    tls0=$(nft_packets natr alg_ftps)
    # FTPS: the 227 carries the server's private address (curl and lftp told to use
    # it), EPSV's data connection is not let through (no ALG expectation), the PORT
    # names the client's private address (vsftpd: 500 Illegal PORT); a plain client
    # cannot log in (530).
    SERVER=vsftpd-tls PORT=21
    for c in "${FTPS[@]}"; do
        CLIENT=$c EXPECT=fail
        case $c in
        *-pasv) WANT_227=198.51.100.10 ;; *-epsv) WANT_CODE=229 ;; *-port) WANT_CODE=500 ;;
        esac
        case_run
    done
    CLIENT=curl-pasv EXPECT=fail WANT_CODE=530
    case_run
    # The ALG was assigned to the FTPS control connections (by the same rule as for
    # plain FTP) and let no data connection through for them.
    rel1=$(nft_packets natr alg_related)
    lab_check alg-on-ftps-control num_check "$(nft_packets natr alg_ftps)" -gt "$tls0"
    lab_check alg-opened-no-ftps-data num_check "$rel1" -eq "$rel0"
    # ... and from the inside, no NAT in the way: the FTPS server works with these
    # clients (TLS, session reuse on data connections) in every mode. (Not curl's
    # active mode: curl 7.87-7.88 never starts TLS on an accepted data connection,
    # curl/curl#10666; lftp covers active FTPS.) Without session reuse: vsftpd's 522
    # (which curl, stopping at the closed data connection, does not read: its log).
    CNS=lan HOST=198.51.100.10 WHERE=inside
    for c in "${FTPS[@]}"; do
        [[ $c == ftps-curl-port ]] && continue
        CLIENT=$c EXPECT=ok WANT_PEER=198.51.100.70
        [[ $c == *-pasv ]] && WANT_227=198.51.100.10
        case_run
    done
    CLIENT=ftps-curl-epsv EXPECT=ok UPLOAD=1 WANT_PEER=198.51.100.70
    case_run
    CLIENT=ftps-curl-epsv-noreuse EXPECT=fail WANT_LOG='"522 SSL connection failed: session reuse required"'
    case_run
    CLIENT=curl-pasv EXPECT=fail WANT_CODE=530
    case_run

    for m in passive active; do
        gate_cfg "$WORK/gate-$TOPO-$m.yaml" "$m" use_control <<YAML
  - name: ftps
    bind: "198.51.100.130:21"
    tls: { mode: required, cert: "$LAB_TLS/gate.pem", key: "$LAB_TLS/gate.key", data: required, require_reuse: true }
    route:
      kind: fixed
      upstreams: ["198.51.100.10:21"]
      tls: { mode: explicit, ca: "$LAB_TLS/ca.pem", server_name: ftp.internal.example, data: private }
    advertise:
      - { clients: 198.51.100.0/24, address: auto }
      - { clients: 0.0.0.0/0, address: 203.0.113.3 }
  - name: legacy
    bind: "198.51.100.130:2121"
    route:
      kind: fixed
      upstreams: ["198.51.100.10:21"]
      tls: { mode: explicit, ca: "$LAB_TLS/ca.pem", data: private }
YAML
        GATE_WAIT="198.51.100.130 21
198.51.100.130 2121"
        gate_start gate "$WORK/gate-$TOPO-$m.yaml" "$TOPO-$m" || return 1
        srvcmd=PASV
        [[ $m == active ]] && srvcmd=PORT
        # FTPS from behind the client's firewall, through the servers' NAT: every
        # passive mode works, the 227 carries the published 203.0.113.3 and the server
        # sees only ftpgate. Active cannot work behind a masquerading NAT (the PORT
        # inside TLS names 192.0.2.10, the session comes from 203.0.113.2): 501.
        VIA=ftpgate SMODE=$m CNS=cli HOST=203.0.113.3 WHERE=behind-fw-alg SERVER=vsftpd-tls PORT=21
        for c in "${FTPS[@]}"; do
            CLIENT=$c
            if is_active "$c"; then
                EXPECT=fail WANT_CODE=501
            else
                EXPECT=ok WANT_PEER=198.51.100.130 WANT_SRV_CMD=$srvcmd
                [[ $c == *-pasv ]] && WANT_227=203.0.113.3
            fi
            case_run
        done
        for c in ftps-curl-pasv ftps-lftp-pasv; do
            CLIENT=$c EXPECT=ok UPLOAD=1 WANT_PEER=198.51.100.130 WANT_SRV_CMD=$srvcmd WANT_227=203.0.113.3
            case_run
        done
        # tls.require_reuse: a data connection that does not resume the control
        # session is closed (425; curl stops at the closed data connection and may not
        # read the reply, so ftpgate's log is checked); tls.mode required: a plain
        # client gets 530 at USER
        CLIENT=ftps-curl-epsv-noreuse EXPECT=fail WANT_LOG="TLS on the client's data connection: the TLS handshake did not resume the control connection's session
 code=425( |$)"
        case_run
        CLIENT=curl-pasv EXPECT=fail WANT_CODE=530
        case_run
        # A legacy (plain) inside client on the legacy listener: ftpgate adds TLS
        # towards the FTPS-only server; active works too (no NAT inside).
        CNS=lan HOST=198.51.100.130 PORT=2121 WHERE=inside-legacy
        for c in "${CLIENTS4[@]}"; do
            CLIENT=$c EXPECT=ok WANT_PEER=198.51.100.130 WANT_SRV_CMD=$srvcmd
            [[ $c == curl-pasv || $c == lftp-pasv ]] && WANT_227=198.51.100.130
            case_run
        done
        CLIENT=curl-epsv EXPECT=ok UPLOAD=1 WANT_PEER=198.51.100.130 WANT_SRV_CMD=$srvcmd
        case_run
        gate_stop
    done
    teardown
}

# shellcheck source=tests/lab/topo_kernel.sh
source "$LAB_DIR/topo_kernel.sh"

for t in "${TOPOS[@]}"; do
    t_start=$EPOCHREALTIME
    case $t in
    1) topo_firewall fw-nat || { log "topology 1 (fw-nat) setup failed"; FAILED=$((FAILED + 1)); teardown; }
       topo_firewall fw-drop || { log "topology 1 (fw-drop) setup failed"; FAILED=$((FAILED + 1)); teardown; } ;;
    2) topo_server_nat || { log "topology 2 setup failed"; FAILED=$((FAILED + 1)); teardown; } ;;
    3) topo_split || { log "topology 3 setup failed"; FAILED=$((FAILED + 1)); teardown; } ;;
    4) topo_v4v6 || { log "topology 4 setup failed"; FAILED=$((FAILED + 1)); teardown; } ;;
    5) topo_transparent || { log "topology 5 setup failed"; FAILED=$((FAILED + 1)); teardown; } ;;
    6) topo_ftps || { log "topology 6 setup failed"; FAILED=$((FAILED + 1)); teardown; } ;;
    7) topo_kernel || { log "topology 7 setup failed"; FAILED=$((FAILED + 1)); teardown; } ;;
    *) die "unknown topology $t (1-7)" ;;
    esac
    log "topology $t took $(elapsed "$t_start") s"
done

print_table
echo "lab took $(elapsed "$LAB_START") s"
echo "$PASSED passed, $FAILED failed"
((FAILED == 0))
